//! The parking benchmark, on a real `cairn serve` (release build, SQLite
//! unless told otherwise, `--park-after-ms 0`):
//!
//! 1. wake-up latency: a message sent to a parked run (short journal) →
//!    the woken run's next event read from its live stream;
//! 2. replay cost: a `collect` run that parks after each message, so each
//!    message resumes it by replaying its whole journal: the wake-up
//!    latency with about 10 and about 1,000 journal entries;
//! 3. N `approval` runs parked in `recv` (default 100,000): how long they
//!    took to start and park, the host's resident memory and the database
//!    bytes per parked run;
//! 4. the seed benchmark (16 clients) on that host and on a second host
//!    with nothing parked, in turns (`--rounds`, default 3: this machine's
//!    disk and CPU vary from minute to minute, and turns cancel the drift),
//!    and the share the first keeps of the second's throughput.
//!
//! cargo run --release -p cairn-tests --bin park_bench -- [--parked N]
//!     [--seconds N] [--rounds N] [--wakes N] [-- serve args]

use std::path::Path;
use std::time::{Duration, Instant};

use anyhow::{Context, bail, ensure};
use cairn_tests::seed::{self, percentile};
use cairn_tests::{Client, Host, SseStream, examples};
use serde_json::{Value, json};
use tokio::task::JoinSet;

struct Options {
    parked: usize,
    seconds: u64,
    rounds: usize,
    wakes: usize,
    serve_args: Vec<String>,
}

fn parse_options() -> anyhow::Result<Options> {
    let mut options = Options {
        parked: 100_000,
        seconds: 8,
        rounds: 3,
        wakes: 200,
        serve_args: Vec::new(),
    };
    let mut args = std::env::args().skip(1);
    while let Some(arg) = args.next() {
        match arg.as_str() {
            "--parked" => options.parked = args.next().context("--parked N")?.parse()?,
            "--seconds" => options.seconds = args.next().context("--seconds N")?.parse()?,
            "--rounds" => options.rounds = args.next().context("--rounds N")?.parse()?,
            "--wakes" => options.wakes = args.next().context("--wakes N")?.parse()?,
            "--" => options.serve_args.extend(args.by_ref()),
            other => {
                bail!("unknown argument {other:?}; see the comment at the top of park_bench.rs")
            }
        }
    }
    Ok(options)
}

/// Bytes of the files in `dir` (the SQLite database and its WAL).
fn dir_bytes(dir: &Path) -> anyhow::Result<u64> {
    let mut total = 0;
    for entry in std::fs::read_dir(dir)? {
        let entry = entry?;
        if entry.file_type()?.is_file() {
            total += entry.metadata()?.len();
        }
    }
    Ok(total)
}

async fn parked_count(client: &Client) -> anyhow::Result<u64> {
    let health = client.get("/healthz").await?.body;
    health["parked_runs"]
        .as_u64()
        .context("parked_runs in /healthz")
}

/// Start `count` approvals that wait a day for their decision, from 32
/// clients, and wait until all of them are parked.
async fn park_approvals(
    client: &Client,
    prefix: &str,
    count: usize,
) -> anyhow::Result<Vec<String>> {
    let ids: Vec<String> = (0..count).map(|i| format!("{prefix}-{i}")).collect();
    let mut starters = JoinSet::new();
    for chunk in ids.chunks(count.div_ceil(32).max(1)) {
        let (client, chunk) = (client.clone(), chunk.to_vec());
        starters.spawn(async move {
            for id in chunk {
                let input = json!({"subject": "bench", "timeout_ms": 86_400_000});
                let started = client
                    .start("approvals", "approval", input, Some(&id))
                    .await?;
                ensure!(started.status == 202, "{id}: {}", started.body);
            }
            anyhow::Ok(())
        });
    }
    while let Some(done) = starters.join_next().await {
        done??;
    }
    let before = parked_count(client).await?;
    let deadline = Instant::now() + Duration::from_secs(600);
    while parked_count(client).await? < before.max(count as u64) {
        ensure!(
            Instant::now() < deadline,
            "the runs did not all park in 600 s"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    Ok(ids)
}

/// An open live stream of run `id`, past the `already` events it has.
async fn stream_past(url: &str, id: &str, already: usize) -> anyhow::Result<SseStream> {
    let mut stream = SseStream::open(url, &format!("/v1/workflows/{id}/events"), &[]).await?;
    ensure!(stream.status == 200, "stream of {id}: {}", stream.status);
    for _ in 0..already {
        stream
            .next(Duration::from_secs(30))
            .await?
            .context("the stream ended")?;
    }
    Ok(stream)
}

async fn send(client: &Client, id: &str, topic: &str, message: Value) -> anyhow::Result<()> {
    let body = json!({"topic": topic, "message": message});
    let sent = client
        .post_json(&format!("/v1/workflows/{id}/messages"), &body)
        .await?;
    ensure!(sent.status == 202, "message to {id}: {}", sent.body);
    Ok(())
}

/// Send a decision to each parked approval in `ids`, one at a time, and
/// time it until the run's next event (`status`) arrives on its stream.
async fn wake_latencies(
    url: &str,
    client: &Client,
    ids: &[String],
) -> anyhow::Result<Vec<Duration>> {
    let mut latencies = Vec::with_capacity(ids.len());
    for id in ids {
        // subject and status are set before the run waits.
        let mut stream = stream_past(url, id, 2).await?;
        let sent = Instant::now();
        send(
            client,
            id,
            "decision",
            json!({"approved": true, "by": "bench"}),
        )
        .await?;
        let event = stream
            .next(Duration::from_secs(30))
            .await?
            .context("stream ended")?;
        ensure!(event.event == "status", "{id}: {event:?}");
        latencies.push(sent.elapsed());
    }
    latencies.sort();
    Ok(latencies)
}

/// Feed a `collect` run `count` messages, one at a time, each waking it
/// from parked; the latency of each, in order.
async fn replay_latencies(
    url: &str,
    client: &Client,
    count: usize,
) -> anyhow::Result<Vec<Duration>> {
    let id = "replay-bench";
    let started = client
        .start("approvals", "collect", json!({"count": count}), Some(id))
        .await?;
    ensure!(started.status == 202, "collect: {}", started.body);
    // `received` = 0 first.
    let mut stream = stream_past(url, id, 1).await?;
    let mut latencies = Vec::with_capacity(count);
    for n in 1..=count {
        // Parked again before each message: the next one replays everything.
        let deadline = Instant::now() + Duration::from_secs(30);
        while parked_count(client).await? == 0 {
            ensure!(Instant::now() < deadline, "the collect run did not park");
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
        let sent = Instant::now();
        send(client, id, "item", json!(n)).await?;
        let event = stream
            .next(Duration::from_secs(30))
            .await?
            .context("stream ended")?;
        ensure!(event.json() == json!(n), "received {n}: {event:?}");
        latencies.push(sent.elapsed());
    }
    Ok(latencies)
}

fn ms(duration: Duration) -> f64 {
    duration.as_secs_f64() * 1e3
}

/// A host with the steps and approvals modules, in `dir`.
async fn start_host(dir: &Path, args: &[&str]) -> anyhow::Result<Host> {
    let host = Host::start(dir, args).await?;
    for (name, path) in [
        ("steps", examples::STEPS),
        ("approvals", examples::APPROVALS),
    ] {
        let deployed = host.client.deploy(name, examples::bytes(path)).await?;
        ensure!(
            deployed.status.is_success(),
            "deploy {name}: {}",
            deployed.body
        );
    }
    Ok(host)
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let options = parse_options()?;
    let (dir, empty_dir) = (tempfile::tempdir()?, tempfile::tempdir()?);
    let mut serve_args = vec!["--park-after-ms".to_owned(), "0".to_owned()];
    serve_args.extend(options.serve_args.iter().cloned());
    let args: Vec<&str> = serve_args.iter().map(String::as_str).collect();
    let host = start_host(dir.path(), &args).await?;
    let client = host.client.clone();
    println!("parking benchmark; serve args: {serve_args:?}");

    // Wake-up latency and replay cost first, while the database is small.
    let wake_ids = park_approvals(&client, "wake", options.wakes).await?;
    let wakes = wake_latencies(&host.url, &client, &wake_ids).await?;
    println!(
        "wake-up (message sent -> next event on the run's stream), {} runs: p50 {:.2} ms  p99 {:.2} ms  max {:.2} ms",
        wakes.len(),
        ms(percentile(&wakes, 0.5)),
        ms(percentile(&wakes, 0.99)),
        ms(*wakes.last().context("no wake-ups")?),
    );
    let replays = replay_latencies(&host.url, &client, 505).await?;
    for (entries, around) in [(10, 5), (1000, 500)] {
        let mut window: Vec<Duration> = replays[around - 3..around + 2].to_vec();
        window.sort();
        println!(
            "resume by replay, journal of about {entries} entries: median {:.2} ms of messages {}..{}",
            ms(window[2]),
            around - 2,
            around + 2
        );
    }

    let rss_before = host.resident_bytes()?;
    let bytes_before = dir_bytes(dir.path())?;
    let started = Instant::now();
    park_approvals(&client, "parked", options.parked).await?;
    let took = started.elapsed();
    let rss = host.resident_bytes()?;
    let bytes = dir_bytes(dir.path())?;
    println!(
        "{} runs started and parked in {:.1} s ({:.0}/s); host RSS {:.0} MiB (before {:.0} MiB); database {:.1} MiB, {:.0} bytes per parked run (the whole run: its record, journal, events, wait)",
        options.parked,
        took.as_secs_f64(),
        options.parked as f64 / took.as_secs_f64(),
        rss as f64 / 1048576.0,
        rss_before as f64 / 1048576.0,
        bytes as f64 / 1048576.0,
        (bytes.saturating_sub(bytes_before)) as f64 / options.parked as f64,
    );

    let empty = start_host(empty_dir.path(), &args).await?;
    let seconds = Duration::from_secs(options.seconds);
    let (beside_hosts, alone_hosts) = ([client.clone()], [empty.client.clone()]);
    for hosts in [&beside_hosts, &alone_hosts] {
        // Not counted: warms connections, the instance cache and SQLite's
        // page cache, and lets the disk absorb the burst of parking.
        seed::measure(hosts, 16, seconds).await?;
    }
    let (mut beside_ops, mut alone_ops) = (0.0, 0.0);
    for round in 1..=options.rounds {
        let beside = seed::measure(&beside_hosts, 16, seconds).await?;
        print!(
            "round {round}, seed beside {} parked runs: ",
            options.parked
        );
        beside.print();
        let alone = seed::measure(&alone_hosts, 16, seconds).await?;
        print!("round {round}, seed on a host with none:   ");
        alone.print();
        beside_ops += beside.throughput();
        alone_ops += alone.throughput();
    }
    println!(
        "beside {} parked runs the seed keeps {:.0}% of its throughput ({:.0} vs {:.0} ops/s over {} rounds); host RSS after {:.0} MiB",
        options.parked,
        100.0 * beside_ops / alone_ops,
        beside_ops / options.rounds as f64,
        alone_ops / options.rounds as f64,
        options.rounds,
        host.resident_bytes()? as f64 / 1048576.0
    );

    // A restart finds the parked runs and leaves them parked.
    host.kill().await?;
    let restarted = Instant::now();
    let host = Host::start(dir.path(), &args).await?;
    let listening = restarted.elapsed();
    let parked_now = parked_count(&host.client).await?;
    println!(
        "restart with {parked_now} parked runs: listening after {:.2} s, host RSS {:.0} MiB",
        listening.as_secs_f64(),
        host.resident_bytes()? as f64 / 1048576.0
    );
    Ok(())
}
