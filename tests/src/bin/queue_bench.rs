//! The flow-control benchmark, on a real `cairn serve` (release build,
//! SQLite unless told otherwise):
//!
//! 1. enqueue-to-start latency at 1,000 queued runs: 1,000 seed runs wait
//!    in a queue held shut (concurrency 1, taken by a run that waits); the
//!    queue is opened (its limit removed) and each run's start
//!    (`dequeued_at`) is measured from that moment: p50, p99, and how long
//!    the last one took;
//! 2. the dequeue rate with 16 producers: 16 clients enqueue seed runs into
//!    a queue of no limit for `--seconds`; runs started per second while
//!    they produce, and the producers' enqueue rate;
//! 3. `--schedules N` (default 1,000) schedules firing every second for
//!    `--seconds`: ticks fired per second, and the host's CPU time per tick
//!    and per second (from `/healthz`), each tick a run that ends at once.
//!
//! cargo run --release -p cairn-tests --bin queue_bench -- [--queued N]
//!     [--seconds N] [-- serve args]

use std::time::{Duration, Instant, SystemTime};

use anyhow::{Context, bail};
use bytes::Bytes;
use cairn_tests::seed::percentile;
use cairn_tests::{Client, Host, examples};
use serde_json::{Value, json};
use tokio::task::JoinSet;

struct Options {
    schedules: usize,
    queued: usize,
    seconds: u64,
    serve_args: Vec<String>,
}

fn parse_options() -> anyhow::Result<Options> {
    let mut options = Options {
        schedules: 1000,
        queued: 1000,
        seconds: 8,
        serve_args: Vec::new(),
    };
    let mut args = std::env::args().skip(1);
    while let Some(arg) = args.next() {
        match arg.as_str() {
            "--queued" => options.queued = args.next().context("--queued N")?.parse()?,
            "--schedules" => options.schedules = args.next().context("--schedules N")?.parse()?,
            "--seconds" => options.seconds = args.next().context("--seconds N")?.parse()?,
            "--" => options.serve_args.extend(args.by_ref()),
            other => {
                bail!("unknown argument {other:?}; see the comment at the top of queue_bench.rs")
            }
        }
    }
    Ok(options)
}

fn millis(value: &Value) -> anyhow::Result<i64> {
    let text = value.as_str().context("a timestamp")?;
    Ok(humantime::parse_rfc3339(text)?
        .duration_since(SystemTime::UNIX_EPOCH)?
        .as_millis() as i64)
}

async fn put_queue(client: &Client, name: &str, settings: Value) -> anyhow::Result<()> {
    let body = Bytes::from(serde_json::to_vec(&settings)?);
    let reply = client
        .send(
            hyper::Method::PUT,
            &format!("/v1/queues/{name}"),
            Some("application/json"),
            body,
        )
        .await?;
    if !reply.status.is_success() {
        bail!("PUT queue {name}: {} {}", reply.status, reply.body);
    }
    Ok(())
}

async fn enqueue(client: &Client, queue: &str, id: &str) -> anyhow::Result<()> {
    let reply = client
        .post_json(
            "/v1/workflows",
            &json!({"module": "steps", "workflow": "steps_workflow", "id": id, "queue": queue}),
        )
        .await?;
    if reply.status != 202 {
        bail!("enqueueing {id}: {} {}", reply.status, reply.body);
    }
    Ok(())
}

/// Every run of `queue`, once all have ended: (created_at, dequeued_at).
async fn ended_runs(client: &Client, queue: &str, count: usize) -> anyhow::Result<Vec<(i64, i64)>> {
    let deadline = Instant::now() + Duration::from_secs(600);
    loop {
        let depth = client.get(&format!("/v1/queues/{queue}")).await?.body;
        if depth["enqueued"] == 0 && depth["pending"] == 0 {
            break;
        }
        if Instant::now() > deadline {
            bail!("queue {queue} did not drain: {depth}");
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let mut runs = Vec::with_capacity(count);
    let mut cursor: Option<String> = None;
    loop {
        let mut path = format!("/v1/workflows?queue={queue}&status=SUCCESS&limit=1000");
        if let Some(cursor) = &cursor {
            path.push_str(&format!("&cursor={cursor}"));
        }
        let page = client.get(&path).await?.body;
        for run in page["workflows"].as_array().context("a listing")? {
            runs.push((millis(&run["created_at"])?, millis(&run["dequeued_at"])?));
        }
        match page["next_cursor"].as_str() {
            Some(next) => cursor = Some(next.to_owned()),
            None => break,
        }
    }
    if runs.len() != count {
        bail!("{} of {count} runs of {queue} succeeded", runs.len());
    }
    Ok(runs)
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let options = parse_options()?;
    let dir = tempfile::tempdir()?;
    let args: Vec<&str> = options.serve_args.iter().map(String::as_str).collect();
    let host = Host::start(dir.path(), &args).await?;
    let client = host.client.clone();
    for (name, path) in [
        ("steps", examples::STEPS),
        ("approvals", examples::APPROVALS),
    ] {
        let deployed = client.deploy(name, examples::bytes(path)).await?;
        if !deployed.status.is_success() {
            bail!("deploying {name}: {}", deployed.body);
        }
    }

    // 1. A full queue opened at once.
    put_queue(&client, "held", json!({"concurrency": 1})).await?;
    client
        .post_json(
            "/v1/workflows",
            &json!({"module": "approvals", "workflow": "approval", "id": "holder",
                    "input": {"subject": "hold"}, "queue": "held"}),
        )
        .await?;
    host.expect_event("holder", "status", json!("awaiting-decision"))
        .await?;
    let mut producers = JoinSet::new();
    for worker in 0..16 {
        let client = client.clone();
        let count = options.queued;
        producers.spawn(async move {
            for n in (worker..count).step_by(16) {
                enqueue(&client, "held", &format!("held-{n}")).await?;
            }
            anyhow::Ok(())
        });
    }
    while let Some(done) = producers.join_next().await {
        done??;
    }
    let opened_at = SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)?
        .as_millis() as i64;
    put_queue(&client, "held", json!({})).await?;
    client
        .post_json(
            "/v1/workflows/holder/messages",
            &json!({"topic": "decision", "message": {"approved": true, "by": "bench"}}),
        )
        .await?;
    let mut runs = ended_runs(&client, "held", options.queued + 1).await?;
    runs.retain(|(created, _)| *created > 0);
    let mut waits: Vec<Duration> = runs
        .iter()
        .filter(|(_, started)| *started >= opened_at)
        .map(|(_, started)| Duration::from_millis((started - opened_at) as u64))
        .collect();
    waits.sort();
    println!(
        "enqueue-to-start, {} queued, queue opened at once: p50 {:.1} ms  p99 {:.1} ms  last {:.1} ms",
        waits.len(),
        percentile(&waits, 0.50).as_secs_f64() * 1000.0,
        percentile(&waits, 0.99).as_secs_f64() * 1000.0,
        waits.last().copied().unwrap_or_default().as_secs_f64() * 1000.0,
    );

    // 2. Sixteen producers into a queue of no limit.
    put_queue(&client, "open", json!({})).await?;
    let until = Instant::now() + Duration::from_secs(options.seconds);
    let began = Instant::now();
    let mut producers = JoinSet::new();
    for worker in 0..16 {
        let client = client.clone();
        producers.spawn(async move {
            let mut n = 0usize;
            while Instant::now() < until {
                enqueue(&client, "open", &format!("open-{worker}-{n}")).await?;
                n += 1;
            }
            anyhow::Ok(n)
        });
    }
    let mut produced = 0;
    while let Some(done) = producers.join_next().await {
        produced += done??;
    }
    let producing = began.elapsed();
    let runs = ended_runs(&client, "open", produced).await?;
    let first = runs.iter().map(|(_, s)| *s).min().unwrap_or_default();
    let last = runs.iter().map(|(_, s)| *s).max().unwrap_or_default();
    let mut lags: Vec<Duration> = runs
        .iter()
        .map(|(created, started)| Duration::from_millis((started - created).max(0) as u64))
        .collect();
    lags.sort();
    println!(
        "16 producers, {} s: enqueued {produced} ({:.0}/s); dequeued {:.0}/s; enqueue-to-start p50 {:.1} ms  p99 {:.1} ms",
        options.seconds,
        produced as f64 / producing.as_secs_f64(),
        produced as f64 / ((last - first).max(1) as f64 / 1000.0),
        percentile(&lags, 0.50).as_secs_f64() * 1000.0,
        percentile(&lags, 0.99).as_secs_f64() * 1000.0,
    );

    // 3. Many schedules, every second.
    for n in 0..options.schedules {
        let body = Bytes::from(serde_json::to_vec(&json!({
            "module": "steps", "workflow": "steps_with_pause", "cron": "* * * * * *",
            "input": {"pause_ms": 0}, "overlap": "allow_all"
        }))?);
        let reply = client
            .send(
                hyper::Method::PUT,
                &format!("/v1/schedules/s{n}"),
                Some("application/json"),
                body,
            )
            .await?;
        if !reply.status.is_success() {
            bail!("PUT schedule s{n}: {} {}", reply.status, reply.body);
        }
    }
    let cpu = async || -> anyhow::Result<u64> {
        let health = client.get("/healthz").await?.body;
        health["process"]["cpu_us"]
            .as_u64()
            .context("process.cpu_us in /healthz")
    };
    // Settle into the ticks, then measure whole seconds.
    tokio::time::sleep(Duration::from_secs(2)).await;
    // The counts' own reads fall outside the CPU window.
    let runs_0 = count_runs(&client).await?;
    let cpu_0 = cpu().await?;
    let began = Instant::now();
    tokio::time::sleep(Duration::from_secs(options.seconds)).await;
    let cpu_1 = cpu().await?;
    let elapsed = began.elapsed().as_secs_f64();
    let runs_1 = count_runs(&client).await?;
    let ticks = (runs_1 - runs_0) as f64;
    println!(
        "{} schedules every second, {} s: {:.0} ticks/s; host cpu {:.0} µs per tick, {:.0} ms per second",
        options.schedules,
        options.seconds,
        ticks / elapsed,
        (cpu_1 - cpu_0) as f64 / ticks.max(1.0),
        (cpu_1 - cpu_0) as f64 / 1000.0 / elapsed,
    );
    Ok(())
}

/// How many runs the schedules started (their ids start with `s`), from
/// the listing's pages.
async fn count_runs(client: &Client) -> anyhow::Result<u64> {
    let mut total = 0u64;
    let mut cursor: Option<String> = None;
    loop {
        let mut path = "/v1/workflows?id_prefix=s&limit=1000".to_owned();
        if let Some(cursor) = &cursor {
            path.push_str(&format!("&cursor={cursor}"));
        }
        let page = client.get(&path).await?.body;
        total += page["workflows"].as_array().map_or(0, Vec::len) as u64;
        match page["next_cursor"].as_str() {
            Some(next) => cursor = Some(next.to_owned()),
            None => return Ok(total),
        }
    }
}
