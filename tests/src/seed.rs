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
    /// What the hosts reported spending meanwhile, summed over them.
    pub hosts: HostTally,
}

/// A host's own accounting, from `/healthz`: its process's CPU time and the
/// store's writes and the commits that made them durable.
#[derive(Debug, Default, Clone, Copy)]
pub struct HostTally {
    /// `None` when a host does not report it.
    pub cpu_us: Option<u64>,
    pub writes: u64,
    pub commits: u64,
}

impl HostTally {
    /// The sum over `hosts`, read now.
    pub async fn read(hosts: &[Client]) -> anyhow::Result<Self> {
        let mut sum = HostTally {
            cpu_us: Some(0),
            ..HostTally::default()
        };
        for host in hosts {
            let health = host.get("/healthz").await?.body;
            let count = |path: &str| health.pointer(path).and_then(serde_json::Value::as_u64);
            sum.cpu_us = sum.cpu_us.zip(count("/process/cpu_us")).map(|(a, b)| a + b);
            sum.writes += count("/store/writes").unwrap_or(0);
            sum.commits += count("/store/commits").unwrap_or(0);
        }
        Ok(sum)
    }

    /// What was spent between `before` and `self`.
    pub fn since(self, before: HostTally) -> HostTally {
        HostTally {
            cpu_us: self
                .cpu_us
                .zip(before.cpu_us)
                .map(|(after, before)| after.saturating_sub(before)),
            writes: self.writes.saturating_sub(before.writes),
            commits: self.commits.saturating_sub(before.commits),
        }
    }
}

impl Report {
    pub fn throughput(&self) -> f64 {
        self.operations as f64 / self.elapsed.as_secs_f64()
    }

    pub fn percentile(&self, p: f64) -> Duration {
        percentile(&self.latencies, p)
    }

    /// The hosts' CPU time per operation, in microseconds.
    pub fn cpu_us_per_op(&self) -> Option<f64> {
        let cpu = self.hosts.cpu_us? as f64;
        Some(cpu / self.operations.max(1) as f64)
    }

    pub fn writes_per_commit(&self) -> f64 {
        self.hosts.writes as f64 / self.hosts.commits.max(1) as f64
    }

    pub fn print(&self) {
        let cpu = match self.cpu_us_per_op() {
            Some(cpu) => format!("{cpu:>6.0} µs"),
            None => "     ?   ".into(),
        };
        println!(
            "clients {:>3}  ops {:>6}  {:>8.1} ops/s  p50 {:>7.2} ms  p99 {:>7.2} ms  host cpu {cpu}/op  writes/commit {:>5.2}",
            self.clients,
            self.operations,
            self.throughput(),
            self.percentile(0.50).as_secs_f64() * 1e3,
            self.percentile(0.99).as_secs_f64() * 1e3,
            self.writes_per_commit(),
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
    let before = HostTally::read(hosts).await?;
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
    let spent = HostTally::read(hosts).await?.since(before);
    latencies.sort();
    Ok(Report {
        clients,
        operations: latencies.len(),
        elapsed,
        latencies,
        hosts: spent,
    })
}
