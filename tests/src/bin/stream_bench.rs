//! The stream benchmark, on real `cairn serve` hosts (release build,
//! SQLite unless told otherwise): a `tokens` run appends `--values` values,
//! each stamped with the wall-clock time the workflow wrote it at, pausing
//! `--pause-ms` between them; readers follow the stream, and each value's
//! latency is the time from its stamp (just before its append commits) to
//! the moment a reader holds it. Two readers: Server-Sent Events and a loop
//! of JSON long-polls. Reported as p50/p99/max.
//!
//! With `--hosts 2` (give them one PostgreSQL: `-- --database postgres://...`)
//! the run executes on the first host and the readers read from the second:
//! the wake-up crosses hosts through the database's notifications.
//!
//! cargo run --release -p cairn-tests --bin stream_bench -- [--values N]
//!     [--pause-ms N] [--hosts 1|2] [-- serve args]

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use anyhow::{Context, bail, ensure};
use cairn_tests::seed::percentile;
use cairn_tests::{Client, Host, SseStream, examples};
use serde_json::{Value, json};

struct Options {
    values: u64,
    pause_ms: u64,
    hosts: usize,
    serve_args: Vec<String>,
}

fn parse_options() -> anyhow::Result<Options> {
    let mut options = Options {
        values: 500,
        pause_ms: 5,
        hosts: 1,
        serve_args: Vec::new(),
    };
    let mut args = std::env::args().skip(1);
    while let Some(arg) = args.next() {
        match arg.as_str() {
            "--values" => options.values = args.next().context("--values N")?.parse()?,
            "--pause-ms" => options.pause_ms = args.next().context("--pause-ms N")?.parse()?,
            "--hosts" => options.hosts = args.next().context("--hosts N")?.parse()?,
            "--" => options.serve_args.extend(args.by_ref()),
            other => {
                bail!("unknown argument {other:?}; see the comment at the top of stream_bench.rs")
            }
        }
    }
    ensure!((1..=2).contains(&options.hosts), "--hosts is 1 or 2");
    Ok(options)
}

fn now_us() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |since| since.as_micros() as u64)
}

/// How long ago (µs clock) the value was stamped.
fn latency(value: &Value) -> anyhow::Result<Duration> {
    let at = value["at_us"].as_u64().context("a stamped value")?;
    Ok(Duration::from_micros(now_us().saturating_sub(at)))
}

/// Follow the stream over SSE until it closes.
async fn follow_sse(url: String, id: String) -> anyhow::Result<Vec<Duration>> {
    let mut stream =
        SseStream::open(&url, &format!("/v1/workflows/{id}/streams/tokens"), &[]).await?;
    let mut latencies = Vec::new();
    while let Some(event) = stream.next(Duration::from_secs(60)).await? {
        if event.event == "cairn:closed" {
            break;
        }
        latencies.push(latency(&event.json())?);
    }
    Ok(latencies)
}

/// Follow the stream with JSON long-polls until it closes.
async fn follow_json(client: Client, id: String) -> anyhow::Result<Vec<Duration>> {
    let mut latencies = Vec::new();
    let mut offset = 0;
    loop {
        let reply = client
            .get(&format!(
                "/v1/workflows/{id}/streams/tokens?offset={offset}&timeout_ms=30000"
            ))
            .await?;
        ensure!(reply.status == 200, "{}", reply.body);
        for entry in reply.body["values"].as_array().context("values")? {
            latencies.push(latency(&entry["value"])?);
        }
        offset = reply.body["next_offset"].as_u64().context("next_offset")?;
        if reply.body["closed"] == true {
            return Ok(latencies);
        }
    }
}

fn report(what: &str, mut latencies: Vec<Duration>) {
    latencies.sort();
    let ms = |d: Duration| d.as_secs_f64() * 1e3;
    println!(
        "{what:<28} {:>5} values  p50 {:>6.2} ms  p99 {:>6.2} ms  max {:>6.2} ms",
        latencies.len(),
        ms(percentile(&latencies, 0.5)),
        ms(percentile(&latencies, 0.99)),
        ms(*latencies.last().unwrap_or(&Duration::ZERO)),
    );
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let options = parse_options()?;
    let dir = tempfile::tempdir()?;
    let serve_args: Vec<&str> = options.serve_args.iter().map(String::as_str).collect();
    let mut hosts = Vec::new();
    for n in 0..options.hosts {
        hosts.push(Host::start(&dir.path().join(n.to_string()), &serve_args).await?);
    }
    let writer = &hosts[0];
    let reader = hosts.last().expect("a host");
    cairn_tests::deploy_example(&writer.client, "streams", examples::STREAMS, None).await?;
    println!(
        "stream benchmark: {} values, {} ms apart; readers on host {} of {}; serve args: {:?}",
        options.values, options.pause_ms, options.hosts, options.hosts, options.serve_args
    );
    for round in ["warm-up", "measured"] {
        let id = format!("bench-{round}");
        // The readers are waiting before the run starts.
        let sse = tokio::spawn(follow_sse(reader.url.clone(), id.clone()));
        let polls = tokio::spawn(follow_json(reader.client.clone(), id.clone()));
        tokio::time::sleep(Duration::from_millis(200)).await;
        let count = if round == "warm-up" {
            20
        } else {
            options.values
        };
        let started = writer
            .client
            .start(
                "streams",
                "tokens",
                json!({"count": count, "pause_ms": options.pause_ms, "stamp": true}),
                Some(&id),
            )
            .await?;
        ensure!(started.status.is_success(), "{}", started.body);
        let (sse, polls) = (sse.await??, polls.await??);
        ensure!(
            sse.len() as u64 == count && polls.len() as u64 == count,
            "lost values"
        );
        if round == "measured" {
            report("append -> SSE reader", sse);
            report("append -> long-poll reader", polls);
        }
    }
    Ok(())
}
