//! Cluster chaos: two hosts on one PostgreSQL database under a mixed load
//! (durable sleeps, approvals decided by keyed messages, collectors, fan-outs
//! with children on either host), and every 0.5–2 s one fault to one host:
//! SIGKILL and restart, SIGKILL and stay down for two or three leases, or
//! SIGSTOP past its lease and then SIGCONT. Afterwards every run that was
//! acknowledged must end as designed, with nothing lost, nothing written or
//! consumed twice, the same end seen through every host, and no journal
//! write by a host that did not hold the run's epoch at the time.
//!
//! `CAIRN_CHAOS_SECONDS` (default 20) is how long faults go on: set it to
//! minutes for a soak by hand; `CAIRN_CHAOS_SEED` replays a fault sequence.

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use anyhow::{Context, bail};
use cairn_tests::{Client, Host, Reply, examples, fresh_schema, postgres_url};
use serde_json::{Value, json};
use sqlx::Row;
use tokio::time::{Instant, sleep, timeout};

const LEASE_MS: u64 = 1000;
const POLL_MS: u64 = 200;
/// Longest a request may take before the driver tries the other host (a
/// paused host accepts connections and answers nothing).
const REQUEST_TIMEOUT: Duration = Duration::from_secs(2);
const NAMES: [&str; 2] = ["chaos-a", "chaos-b"];

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_hosts_under_faults_lose_and_duplicate_nothing() -> anyhow::Result<()> {
    let seconds: u64 = std::env::var("CAIRN_CHAOS_SECONDS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(20);
    let seed: u64 = std::env::var("CAIRN_CHAOS_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| now_ms() as u64);
    eprintln!("chaos: {seconds} s of faults, seed {seed}");
    let dir = tempfile::tempdir()?;
    let cluster = Arc::new(Cluster::start(dir.path(), fresh_schema()).await?);
    let first = cluster.client(0).context("host A is up")?;
    for (name, path) in [
        ("steps", examples::STEPS),
        ("approvals", examples::APPROVALS),
        ("fanout", examples::FANOUT),
    ] {
        let deployed = first.deploy(name, examples::bytes(path)).await?;
        assert!(deployed.status.is_success(), "{}", deployed.body);
    }

    let load = {
        let cluster = cluster.clone();
        tokio::spawn(async move { drive_load(cluster, seed, Duration::from_secs(seconds)).await })
    };
    let faults = inject_faults(&cluster, seed, Duration::from_secs(seconds)).await?;
    let load = load.await??;
    cluster.heal().await?;

    let mut violations = load.violations.clone();
    let ends = collect_ends(&cluster, &load.runs).await;
    for (id, expected) in &load.runs {
        match ends.get(id) {
            Some(Ok(ends)) => {
                for (host, end) in ends.iter().enumerate() {
                    if end["status"] != "SUCCESS" || end["output"] != expected.output {
                        violations.push(format!(
                            "run {id} through host {}: expected SUCCESS with {}, got {end}",
                            NAMES[host], expected.output
                        ));
                    }
                }
                if ends[0]["status"] != ends[1]["status"] || ends[0]["output"] != ends[1]["output"]
                {
                    violations.push(format!(
                        "run {id}: the hosts disagree: {} / {}",
                        ends[0], ends[1]
                    ));
                }
            }
            Some(Err(error)) => violations.push(format!("run {id}: {error}")),
            None => violations.push(format!("run {id}: no end read")),
        }
    }
    let audit = audit_database(&cluster.schema, &load.runs).await?;
    violations.extend(audit.violations);

    let takeovers = takeover_times(&cluster.schema, &faults).await?;
    let count = |kind: Fault| faults.iter().filter(|f| f.kind == kind).count();
    eprintln!(
        "chaos: {} runs acknowledged ({} with children), {} journal writes checked; faults: {} kill+restart, {} kill+down, {} pause; take-over after a fault: {}; violations: {}",
        load.runs.len(),
        load.runs.values().filter(|r| r.children > 0).count(),
        audit.journal_rows,
        count(Fault::KillRestart),
        count(Fault::KillDown),
        count(Fault::Pause),
        summary(&takeovers),
        violations.len(),
    );
    if !violations.is_empty() {
        for (host, name) in NAMES.iter().enumerate() {
            if let Some(log) = cluster.log(host) {
                eprintln!("--- log of {name} (tail) ---\n{}", tail(&log, 60));
            }
        }
        bail!(
            "{} violations (seed {seed}):\n{}",
            violations.len(),
            violations
                .iter()
                .take(40)
                .cloned()
                .collect::<Vec<_>>()
                .join("\n")
        );
    }
    assert!(
        count(Fault::KillRestart) + count(Fault::KillDown) + count(Fault::Pause) > 0,
        "no fault was injected"
    );
    Ok(())
}

/// The two hosts; a slot is empty while its host is down.
struct Cluster {
    dir: PathBuf,
    schema: String,
    hosts: [Mutex<Option<Host>>; 2],
}

impl Cluster {
    async fn start(dir: &Path, schema: String) -> anyhow::Result<Self> {
        let a = start_host(dir, 0, &schema).await?;
        let b = start_host(dir, 1, &schema).await?;
        Ok(Self {
            dir: dir.to_owned(),
            schema,
            hosts: [Mutex::new(Some(a)), Mutex::new(Some(b))],
        })
    }

    fn client(&self, host: usize) -> Option<Client> {
        let slot = self.hosts[host].lock().unwrap();
        slot.as_ref().map(|h| h.client.clone())
    }

    fn log(&self, host: usize) -> Option<String> {
        let slot = self.hosts[host].lock().unwrap();
        slot.as_ref().map(Host::log_contents)
    }

    async fn kill(&self, host: usize) -> anyhow::Result<()> {
        let taken = self.hosts[host].lock().unwrap().take();
        if let Some(taken) = taken {
            taken.kill().await?;
        }
        Ok(())
    }

    async fn restart(&self, host: usize) -> anyhow::Result<()> {
        let started = start_host(&self.dir, host, &self.schema).await?;
        *self.hosts[host].lock().unwrap() = Some(started);
        Ok(())
    }

    fn signal(&self, host: usize, pause: bool) -> anyhow::Result<()> {
        let slot = self.hosts[host].lock().unwrap();
        let host = slot.as_ref().context("the host is down")?;
        if pause { host.pause() } else { host.resume() }
    }

    /// Both hosts up and running.
    async fn heal(&self) -> anyhow::Result<()> {
        for host in 0..2 {
            if self.client(host).is_none() {
                self.restart(host).await?;
            }
        }
        Ok(())
    }

    /// `call` on host `first`, or on the other one when `first` is down or
    /// does not answer in time, until `patience` runs out.
    async fn call<F, Fut>(&self, first: usize, patience: Duration, call: F) -> anyhow::Result<Reply>
    where
        F: Fn(Client) -> Fut,
        Fut: std::future::Future<Output = Result<Reply, cairn::client::ClientError>>,
    {
        let deadline = Instant::now() + patience;
        let mut host = first;
        loop {
            if let Some(client) = self.client(host)
                && let Ok(Ok(reply)) = timeout(REQUEST_TIMEOUT, call(client)).await
                && !reply.status.is_server_error()
            {
                return Ok(reply);
            }
            if Instant::now() >= deadline {
                bail!("no host answered within {patience:?}");
            }
            host = 1 - host;
            sleep(Duration::from_millis(20)).await;
        }
    }
}

async fn start_host(dir: &Path, host: usize, schema: &str) -> anyhow::Result<Host> {
    Host::start_shared(dir, NAMES[host], schema, (LEASE_MS, POLL_MS), &[]).await
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Fault {
    KillRestart,
    KillDown,
    Pause,
}

#[derive(Debug, Clone)]
struct Injected {
    kind: Fault,
    host: usize,
    at_ms: i64,
}

/// One fault at a time, to one host, every 0.5–2 s; the other host is up
/// throughout.
async fn inject_faults(
    cluster: &Cluster,
    seed: u64,
    duration: Duration,
) -> anyhow::Result<Vec<Injected>> {
    let mut random = Random(seed ^ 0x9e37_79b9_7f4a_7c15);
    let end = Instant::now() + duration;
    let mut faults = Vec::new();
    while Instant::now() < end {
        sleep(Duration::from_millis(500 + random.below(1500))).await;
        let host = random.below(2) as usize;
        let kind = [Fault::KillRestart, Fault::KillDown, Fault::Pause][random.below(3) as usize];
        faults.push(Injected {
            kind,
            host,
            at_ms: now_ms(),
        });
        match kind {
            Fault::KillRestart => {
                cluster.kill(host).await?;
                cluster.restart(host).await?;
            }
            Fault::KillDown => {
                cluster.kill(host).await?;
                sleep(Duration::from_millis(LEASE_MS * 2 + random.below(LEASE_MS))).await;
                cluster.restart(host).await?;
            }
            Fault::Pause => {
                cluster.signal(host, true)?;
                sleep(Duration::from_millis(
                    LEASE_MS * 3 / 2 + random.below(LEASE_MS),
                ))
                .await;
                cluster.signal(host, false)?;
            }
        }
    }
    Ok(faults)
}

/// What a run must end with.
#[derive(Debug, Clone)]
struct Expected {
    output: Value,
    /// Event writes it makes.
    event_writes: i64,
    /// Messages sent to it, each to be received once.
    messages: i64,
    children: usize,
}

#[derive(Debug, Default)]
struct Load {
    runs: BTreeMap<String, Expected>,
    violations: Vec<String>,
}

/// Start a run every 100 ms through either host, and send the messages
/// the designs need, until `duration` is over.
async fn drive_load(cluster: Arc<Cluster>, seed: u64, duration: Duration) -> anyhow::Result<Load> {
    let load = Arc::new(Mutex::new(Load::default()));
    let mut random = Random(seed);
    let end = Instant::now() + duration;
    let mut tasks = Vec::new();
    let mut n = 0;
    while Instant::now() < end {
        n += 1;
        let kind = random.below(5);
        let host = random.below(2) as usize;
        let pause_ms = 200 + random.below(1000);
        let cluster = cluster.clone();
        let load = load.clone();
        tasks.push(tokio::spawn(async move {
            let result = one_run(&cluster, n, kind, host, pause_ms).await;
            let mut load = load.lock().unwrap();
            match result {
                Ok(Some((id, expected))) => {
                    load.runs.insert(id, expected);
                }
                Ok(None) => {}
                Err(error) => load.violations.push(error.to_string()),
            }
        }));
        sleep(Duration::from_millis(100)).await;
    }
    for task in tasks {
        task.await?;
    }
    Ok(Arc::try_unwrap(load)
        .map_err(|_| anyhow::anyhow!("the load is still shared"))?
        .into_inner()
        .unwrap())
}

/// Start run number `n` of design `kind` and send it what it waits for: the
/// run and its expected end once its start was acknowledged, `None` if no
/// host acknowledged it.
async fn one_run(
    cluster: &Cluster,
    n: u64,
    kind: u64,
    host: usize,
    pause_ms: u64,
) -> anyhow::Result<Option<(String, Expected)>> {
    let id = format!("chaos-{n}");
    let (module, workflow, input, expected) = match kind {
        0 => (
            "steps",
            "steps_with_pause",
            json!({"pause_ms": pause_ms}),
            Expected {
                output: Value::Null,
                event_writes: 2,
                messages: 0,
                children: 0,
            },
        ),
        1 => (
            "approvals",
            "approval",
            json!({"subject": id, "timeout_ms": 120_000}),
            Expected {
                output: json!({"approved": true, "by": format!("ann-{n}")}),
                event_writes: 3,
                messages: 1,
                children: 0,
            },
        ),
        2 => (
            "approvals",
            "collect",
            json!({"count": 3}),
            Expected {
                output: json!([0, 1, 2]),
                event_writes: 4,
                messages: 3,
                children: 0,
            },
        ),
        3 => (
            "fanout",
            "fan_out",
            json!({"items": [1, 2, 3], "work_ms": pause_ms / 2}),
            Expected {
                output: json!([1, 4, 9]),
                event_writes: 1,
                messages: 0,
                children: 3,
            },
        ),
        _ => (
            "approvals",
            "reminder",
            json!({"message": id, "after_ms": pause_ms}),
            Expected {
                output: json!(id),
                event_writes: 2,
                messages: 0,
                children: 0,
            },
        ),
    };
    let patience = Duration::from_secs(20);
    let started = cluster
        .call(host, patience, |client| {
            let input = input.clone();
            let id = id.clone();
            async move { client.start(module, workflow, input, Some(&id)).await }
        })
        .await;
    let started = match started {
        Ok(reply) if reply.status.is_success() => reply,
        Ok(reply) => bail!("start of {id}: {} {}", reply.status, reply.body),
        // Never acknowledged: the run may or may not exist; nothing to check.
        Err(_) => return Ok(None),
    };
    let _ = started;
    let messages: Vec<(String, Value)> = match kind {
        1 => vec![(
            "decision".into(),
            json!({"approved": true, "by": format!("ann-{n}")}),
        )],
        2 => (0..3).map(|i| ("item".to_owned(), json!(i))).collect(),
        _ => Vec::new(),
    };
    for (i, (topic, message)) in messages.into_iter().enumerate() {
        let key = format!("{id}/{i}");
        let sent = cluster
            .call(1 - host, patience, |client| {
                let (id, topic, message, key) =
                    (id.clone(), topic.clone(), message.clone(), key.clone());
                async move { client.send_message(&id, &topic, message, Some(&key)).await }
            })
            .await
            .with_context(|| format!("message {key} to {id}"))?;
        if !sent.status.is_success() {
            bail!(
                "message {key} to run {id}, whose start was acknowledged: {} {}",
                sent.status,
                sent.body
            );
        }
    }
    Ok(Some((id, expected)))
}

/// Each run's end as each host reports it, waiting for it to finish.
async fn collect_ends(
    cluster: &Cluster,
    runs: &BTreeMap<String, Expected>,
) -> HashMap<String, anyhow::Result<[Value; 2]>> {
    let mut ends = HashMap::new();
    let deadline = Instant::now() + Duration::from_secs(30);
    for id in runs.keys() {
        let mut end: [Value; 2] = [Value::Null, Value::Null];
        let mut failure = None;
        for (host, slot) in end.iter_mut().enumerate() {
            let Some(client) = cluster.client(host) else {
                failure = Some(anyhow::anyhow!("host {} is down", NAMES[host]));
                break;
            };
            let left = deadline.saturating_duration_since(Instant::now());
            let path = format!(
                "/v1/workflows/{}/result?timeout_ms={}",
                cairn::http::encode_segment(id),
                left.as_millis()
            );
            match client.get(&path).await {
                Ok(reply) if reply.status == 200 => *slot = reply.body,
                Ok(reply) => {
                    failure = Some(anyhow::anyhow!(
                        "not finished through {}: {} {}",
                        NAMES[host],
                        reply.status,
                        reply.body
                    ));
                    break;
                }
                Err(error) => {
                    failure = Some(error.into());
                    break;
                }
            }
        }
        ends.insert(id.clone(), failure.map_or(Ok(end), Err));
    }
    ends
}

struct Audit {
    journal_rows: usize,
    violations: Vec<String>,
}

/// Check the database itself: every journal write carries the epoch and the
/// host that held it; every event write and message consumption once.
async fn audit_database(schema: &str, runs: &BTreeMap<String, Expected>) -> anyhow::Result<Audit> {
    let db = connect(schema).await?;
    let mut violations = Vec::new();
    // Who held each epoch of each run.
    let leases: HashMap<(String, i64), Option<String>> =
        sqlx::query("SELECT run_id, epoch, owner FROM run_leases")
            .fetch_all(&db)
            .await?
            .iter()
            .map(|row| ((row.get("run_id"), row.get("epoch")), row.get("owner")))
            .collect();
    let journal =
        sqlx::query("SELECT run_id, op, kind, epoch, writer FROM journal ORDER BY run_id, op")
            .fetch_all(&db)
            .await?;
    let mut last_epoch: HashMap<String, i64> = HashMap::new();
    for row in &journal {
        let run: String = row.get("run_id");
        let op: i64 = row.get("op");
        let epoch: Option<i64> = row.get("epoch");
        let writer: Option<String> = row.get("writer");
        let Some(epoch) = epoch else {
            violations.push(format!("run {run} op {op}: written without an epoch"));
            continue;
        };
        match leases.get(&(run.clone(), epoch)) {
            Some(owner) if *owner == writer => {}
            Some(owner) => violations.push(format!(
                "run {run} op {op}: written by {writer:?} under epoch {epoch}, which {owner:?} held"
            )),
            None => violations.push(format!(
                "run {run} op {op}: written under epoch {epoch}, which nobody was given"
            )),
        }
        let previous = last_epoch.insert(run.clone(), epoch).unwrap_or(0);
        if epoch < previous {
            violations.push(format!(
                "run {run} op {op}: written under epoch {epoch} after a write under epoch {previous}"
            ));
        }
    }
    let counts = |sql: &'static str| {
        let db = db.clone();
        async move {
            let rows = sqlx::query(sql).fetch_all(&db).await?;
            anyhow::Ok(
                rows.iter()
                    .map(|row| (row.get::<String, _>(0), row.get::<i64, _>(1)))
                    .collect::<HashMap<String, i64>>(),
            )
        }
    };
    let event_writes = counts("SELECT run_id, count(*) FROM event_history GROUP BY run_id").await?;
    let consumed = counts(
        "SELECT run_id, count(DISTINCT consumed_op) FROM messages WHERE consumed_op IS NOT NULL GROUP BY run_id",
    )
    .await?;
    let stored = counts("SELECT run_id, count(*) FROM messages GROUP BY run_id").await?;
    let children =
        counts("SELECT parent, count(*) FROM runs WHERE parent IS NOT NULL GROUP BY parent")
            .await?;
    for (id, expected) in runs {
        let got = |map: &HashMap<String, i64>| map.get(id).copied().unwrap_or(0);
        if got(&event_writes) != expected.event_writes {
            violations.push(format!(
                "run {id}: {} event writes, designed {}",
                got(&event_writes),
                expected.event_writes
            ));
        }
        if got(&stored) != expected.messages || got(&consumed) != expected.messages {
            violations.push(format!(
                "run {id}: {} messages stored and {} consumed, {} sent once each",
                got(&stored),
                got(&consumed),
                expected.messages
            ));
        }
        if got(&children) != expected.children as i64 {
            violations.push(format!(
                "run {id}: {} children, designed {}",
                got(&children),
                expected.children
            ));
        }
    }
    // The children ended once each, too.
    let unfinished: Vec<String> =
        sqlx::query_scalar("SELECT id FROM runs WHERE parent IS NOT NULL AND status <> 'SUCCESS'")
            .fetch_all(&db)
            .await?;
    for child in unfinished {
        violations.push(format!("child {child} did not succeed"));
    }
    Ok(Audit {
        journal_rows: journal.len(),
        violations,
    })
}

/// For each fault that took a host away, how long until the other host
/// had claimed a run the lost one held.
async fn takeover_times(schema: &str, faults: &[Injected]) -> anyhow::Result<Vec<i64>> {
    let db = connect(schema).await?;
    let leases =
        sqlx::query("SELECT run_id, epoch, owner, taken_at FROM run_leases ORDER BY run_id, epoch")
            .fetch_all(&db)
            .await?;
    // (taken from, taken by, when)
    let mut handovers: Vec<(String, String, i64)> = Vec::new();
    let mut previous: Option<(String, Option<String>)> = None;
    for row in &leases {
        let run: String = row.get("run_id");
        let owner: Option<String> = row.get("owner");
        if let Some((prev_run, Some(prev_owner))) = &previous
            && *prev_run == run
            && let Some(owner) = &owner
            && owner != prev_owner
        {
            handovers.push((prev_owner.clone(), owner.clone(), row.get("taken_at")));
        }
        previous = Some((run, owner));
    }
    // A fault's take-overs come before the next fault; a host that held no
    // run at the time has none.
    let until = faults
        .iter()
        .skip(1)
        .map(|next| next.at_ms)
        .chain([i64::MAX]);
    Ok(faults
        .iter()
        .zip(until)
        .filter_map(|(fault, until)| {
            handovers
                .iter()
                .filter(|(from, _, at)| {
                    from == NAMES[fault.host] && (fault.at_ms..until).contains(at)
                })
                .map(|(_, _, at)| at - fault.at_ms)
                .min()
        })
        .collect())
}

async fn connect(schema: &str) -> anyhow::Result<sqlx::PgPool> {
    let options: sqlx::postgres::PgConnectOptions = postgres_url().parse()?;
    Ok(sqlx::postgres::PgPoolOptions::new()
        .max_connections(2)
        .connect_with(options.options([("search_path", schema)]))
        .await?)
}

fn summary(times: &[i64]) -> String {
    if times.is_empty() {
        return "none".into();
    }
    let mut sorted = times.to_vec();
    sorted.sort_unstable();
    format!(
        "{} take-overs, p50 {} ms, max {} ms",
        sorted.len(),
        sorted[sorted.len() / 2],
        sorted[sorted.len() - 1]
    )
}

fn tail(log: &str, lines: usize) -> String {
    let all: Vec<&str> = log.lines().collect();
    all[all.len().saturating_sub(lines)..].join("\n")
}

fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_millis() as i64
}

/// xorshift64*: enough to vary the load and the faults, and replayable.
struct Random(u64);

impl Random {
    fn below(&mut self, n: u64) -> u64 {
        let mut x = self.0.max(1);
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        self.0 = x;
        x.wrapping_mul(0x2545_f491_4f6c_dd1d) % n
    }
}
