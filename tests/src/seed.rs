//! The seed workload, for the benchmarks: one operation starts a
//! `steps_workflow` run and reads its events `step1` and `step2` through
//! the long-poll route; [`measure`] runs it from concurrent clients.

use std::time::{Duration, Instant};

use anyhow::{Context, ensure};
use serde_json::json;

use crate::Client;

/// One seed operation; its latency.
pub async fn operation(client: &Client) -> anyhow::Result<Duration> {
    let start = Instant::now();
    let started = client
        .start("steps", "steps_workflow", json!(null), None)
        .await?;
    ensure!(
        started.status == 202,
        "start: {} {}",
        started.status,
        started.body
    );
    let id = started.body["id"].as_str().context("run id")?;
    for key in ["step1", "step2"] {
        let event = client.event(id, key, 30_000).await?;
        ensure!(
            event.status == 200,
            "{key}: {} {}",
            event.status,
            event.body
        );
    }
    Ok(start.elapsed())
}

/// Latencies of a measurement, sorted.
#[derive(Debug)]
pub struct Report {
    pub clients: usize,
    pub operations: usize,
    pub elapsed: Duration,
    pub latencies: Vec<Duration>,
}

impl Report {
    pub fn throughput(&self) -> f64 {
        self.operations as f64 / self.elapsed.as_secs_f64()
    }

    pub fn percentile(&self, p: f64) -> Duration {
        percentile(&self.latencies, p)
    }

    pub fn print(&self) {
        println!(
            "clients {:>3}  ops {:>6}  {:>8.1} ops/s  p50 {:>7.2} ms  p99 {:>7.2} ms",
            self.clients,
            self.operations,
            self.throughput(),
            self.percentile(0.50).as_secs_f64() * 1e3,
            self.percentile(0.99).as_secs_f64() * 1e3,
        );
    }
}

/// The `p` quantile (0 to 1) of sorted `latencies`.
pub fn percentile(latencies: &[Duration], p: f64) -> Duration {
    let index = ((latencies.len() as f64 - 1.0) * p).round() as usize;
    latencies[index]
}

/// Run the seed workload from `clients` clients, spread over `hosts`, for
/// `duration`.
pub async fn measure(
    hosts: &[Client],
    clients: usize,
    duration: Duration,
) -> anyhow::Result<Report> {
    let start = Instant::now();
    let deadline = start + duration;
    let workers: Vec<_> = (0..clients)
        .map(|n| {
            let client = hosts[n % hosts.len()].clone();
            tokio::spawn(async move {
                let mut latencies = Vec::new();
                while Instant::now() < deadline {
                    latencies.push(operation(&client).await?);
                }
                anyhow::Ok(latencies)
            })
        })
        .collect();
    let mut latencies = Vec::new();
    for worker in workers {
        latencies.extend(worker.await??);
    }
    let elapsed = start.elapsed();
    latencies.sort();
    Ok(Report {
        clients,
        operations: latencies.len(),
        elapsed,
        latencies,
    })
}
