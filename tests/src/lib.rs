//! The harness of Cairn's end-to-end tests and benchmark: the guest example
//! components, and the real `cairn` binary started on a free port with its
//! own data directory, driven over HTTP.

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::OnceLock;
use std::time::Duration;

use anyhow::{Context, bail};
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::{Child, Command};

pub use cairn::client::{Client, Reply};
pub use gateway::FakeGateway;
pub use sse::{SseEvent, SseStream};

pub mod browser;
pub mod seed;

mod gateway;
mod sse;

/// The guest example components, built by this crate's `build.rs`.
pub mod examples {
    pub const STEPS: &str = env!("CAIRN_EXAMPLE_STEPS");
    pub const ORDERS: &str = env!("CAIRN_EXAMPLE_ORDERS");
    pub const FAULTY: &str = env!("CAIRN_EXAMPLE_FAULTY");
    /// Messages: an approval waiting for a decision, a collector.
    pub const APPROVALS: &str = env!("CAIRN_EXAMPLE_APPROVALS");
    /// Child workflows: a fan-out and its `square` children.
    pub const FANOUT: &str = env!("CAIRN_EXAMPLE_FANOUT");
    /// Misbehaving guests for the sandbox tests; not in [`ALL`].
    pub const HOSTILE: &str = env!("CAIRN_EXAMPLE_HOSTILE");
    /// A guest that imports the file system; its upload is refused.
    pub const HOSTILE_FS: &str = env!("CAIRN_EXAMPLE_HOSTILE_FS");
    /// The seed's `eventListener`: an HTTP handler, with its routes.
    pub const EVENT_LISTENER: &str = env!("CAIRN_EXAMPLE_EVENT_LISTENER");
    pub const PAYMENTS: &str = env!("CAIRN_EXAMPLE_PAYMENTS");
    /// Streams: a token writer, a step that writes, a follower.
    pub const STREAMS: &str = env!("CAIRN_EXAMPLE_STREAMS");
    pub const EVENT_LISTENER_ROUTES: &str = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../guest-examples/event-listener/routes.json"
    );
    pub const ORDERS_ROUTES: &str = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../guest-examples/orders/routes.json"
    );

    /// Every example, as (module name, component path).
    pub const ALL: [(&str, &str); 3] = [("steps", STEPS), ("orders", ORDERS), ("faulty", FAULTY)];

    pub fn bytes(path: &str) -> Vec<u8> {
        std::fs::read(path).unwrap_or_else(|e| panic!("reading {path}: {e}"))
    }
}

/// The Python and JavaScript guests, built by `scripts/build-polyglot.sh`
/// (which `scripts/test.sh` runs) with componentize-py and componentize-js
/// from their registries, nothing composed into them by hand.
pub mod polyglot {
    use std::path::PathBuf;

    /// A guest language's components: a workflow module with the seed's
    /// workflows (`steps_workflow`, `steps_with_pause`, `fail`, `approve`)
    /// and the seed's handler (`GET /events`).
    #[derive(Debug, Clone, Copy)]
    pub struct Guest {
        pub language: &'static str,
        dir: &'static str,
    }

    pub const PYTHON: Guest = Guest {
        language: "python",
        dir: "python",
    };
    pub const JS: Guest = Guest {
        language: "js",
        dir: "js",
    };

    impl Guest {
        fn component(&self, name: &str) -> Vec<u8> {
            let path = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
                .join("../target/polyglot")
                .join(self.dir)
                .join(format!("{name}.wasm"));
            std::fs::read(&path).unwrap_or_else(|e| {
                panic!(
                    "{} ({e}): build the Python and JS guests with `bash scripts/build-polyglot.sh` (scripts/test.sh does)",
                    path.display()
                )
            })
        }

        pub fn steps(&self) -> Vec<u8> {
            self.component("steps")
        }

        pub fn handler(&self) -> Vec<u8> {
            self.component("handler")
        }
    }
}

/// The `cairn` binary of this build profile, built once per test process so
/// the tests always drive the current code.
pub fn cairn_binary() -> &'static Path {
    static BINARY: OnceLock<PathBuf> = OnceLock::new();
    BINARY.get_or_init(|| {
        // target/<profile>/deps/<test> or target/<profile>/<bin> -> target/<profile>/cairn
        let exe = std::env::current_exe().expect("current_exe");
        let mut profile_dir = exe.parent().expect("the executable's directory");
        if profile_dir.file_name().is_some_and(|n| n == "deps") {
            profile_dir = profile_dir.parent().expect("target/<profile>");
        }
        let release = profile_dir.file_name().is_some_and(|n| n == "release");
        let target_dir = profile_dir.parent().expect("target dir");
        let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
        let mut build = std::process::Command::new(cargo);
        build.env("CARGO_TARGET_DIR", target_dir);
        // What cargo sets for this test process describes the tests'
        // package, and build scripts that watch those variables (ring's
        // does) would run again, here and in the next `cargo test`, with
        // every crate above them: seven crates rebuilt twice per suite.
        for (name, _) in std::env::vars_os() {
            let name = name.to_string_lossy();
            let packages = ["CARGO_PKG_", "CARGO_MANIFEST_", "CARGO_BIN_EXE_"];
            let set_for_tests = [
                "CARGO_CRATE_NAME",
                "CARGO_BIN_NAME",
                "CARGO_PRIMARY_PACKAGE",
                "CARGO_TARGET_TMPDIR",
                "CARGO_RUSTC_CURRENT_DIR",
                "OUT_DIR",
            ];
            if packages.iter().any(|p| name.starts_with(p)) || set_for_tests.contains(&&*name) {
                build.env_remove(&*name);
            }
        }
        if release {
            build.args([
                "build",
                "--quiet",
                "--release",
                "-p",
                "cairn-host",
                "--bin",
                "cairn",
            ]);
        } else {
            // What `cargo test --workspace` builds (scripts/test.sh), so the
            // binary is there already.
            build.args(["test", "--quiet", "--workspace", "--no-run"]);
        }
        let status = build
            .status()
            .expect("running cargo build for the cairn binary");
        assert!(status.success(), "building the cairn binary failed");
        profile_dir.join("cairn")
    })
}

/// A running `cairn serve` process. Killed when dropped.
#[derive(Debug)]
pub struct Host {
    child: Child,
    pub url: String,
    pub client: Client,
    pub log: PathBuf,
}

impl Host {
    /// Start `cairn serve` on a free loopback port with `data_dir`, plus
    /// `extra_args`, and wait until it accepts connections.
    ///
    /// With `CAIRN_TEST_BACKEND=postgres`, a host given no `--database` of
    /// its own runs on the PostgreSQL of [`postgres_url`], in a schema and
    /// under an executor id derived from `data_dir`: a host restarted on the
    /// same directory finds its database and recovers its own runs at once.
    pub async fn start(data_dir: &Path, extra_args: &[&str]) -> anyhow::Result<Host> {
        Self::start_listening(data_dir, "127.0.0.1:0", extra_args).await
    }

    /// [`Host::start`], listening on `listen` (`0.0.0.0:0`: every address;
    /// the client then talks to it over loopback).
    pub async fn start_listening(
        data_dir: &Path,
        listen: &str,
        extra_args: &[&str],
    ) -> anyhow::Result<Host> {
        std::fs::create_dir_all(data_dir)?;
        let mut backend_args: Vec<String> = Vec::new();
        if on_postgres() && !extra_args.contains(&"--database") {
            let tag = path_tag(data_dir);
            backend_args.extend([
                "--database".into(),
                postgres_url(),
                "--database-schema".into(),
                format!("d_{tag}"),
                "--executor-id".into(),
                format!("host-{tag}"),
            ]);
        }
        let log = data_dir.join(format!("host-{}.log", unique()));
        let mut child = Command::new(cairn_binary())
            .arg("serve")
            .args(["--listen", listen])
            .arg("--data-dir")
            .arg(data_dir)
            .args(extra_args)
            .args(&backend_args)
            .env("CAIRN_LOG", "info")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(std::fs::File::create(&log)?)
            .kill_on_drop(true)
            .spawn()
            .context("spawning cairn serve")?;
        let stdout = child.stdout.take().expect("piped stdout");
        let mut lines = BufReader::new(stdout).lines();
        let url = tokio::time::timeout(Duration::from_secs(120), async {
            while let Some(line) = lines.next_line().await? {
                if let Some(url) = line.strip_prefix("cairn listening on ") {
                    return Ok(url.to_owned());
                }
            }
            bail!("cairn serve exited before listening")
        })
        .await
        .context("cairn serve did not start listening in time")?
        .with_context(|| {
            format!(
                "host log: {}",
                std::fs::read_to_string(&log).unwrap_or_default()
            )
        })?;
        // Keep draining stdout so the host never blocks on a full pipe.
        tokio::spawn(async move { while let Ok(Some(_)) = lines.next_line().await {} });
        let url = url.replace("://0.0.0.0:", "://127.0.0.1:");
        let client = Client::new(&url)?;
        Ok(Host {
            child,
            url,
            client,
            log,
        })
    }

    /// Start a host on the shared PostgreSQL of [`postgres_url`], in
    /// `schema`, as executor `name` (its directory `dir/name`), with the
    /// given lease and poll interval, plus `extra_args`: one of several
    /// hosts on one database.
    pub async fn start_shared(
        dir: &Path,
        name: &str,
        schema: &str,
        (lease_ms, poll_ms): (u64, u64),
        extra_args: &[&str],
    ) -> anyhow::Result<Host> {
        let (url, lease, poll) = (postgres_url(), lease_ms.to_string(), poll_ms.to_string());
        let mut args = vec![
            "--database",
            &url,
            "--database-schema",
            schema,
            "--executor-id",
            name,
            "--lease-ms",
            &lease,
            "--poll-interval-ms",
            &poll,
        ];
        args.extend_from_slice(extra_args);
        Self::start(&dir.join(name), &args).await
    }

    /// Try to start a host that must refuse to start: the refusal, as the
    /// host wrote it, or an error if it started.
    pub async fn start_refused(data_dir: &Path, extra_args: &[&str]) -> anyhow::Result<String> {
        match Self::start(data_dir, extra_args).await {
            Ok(host) => bail!("the host started on {}; it should have refused", host.url),
            Err(error) => Ok(format!("{error:#}")),
        }
    }

    /// Start a host with every example passed through `--deploy`.
    pub async fn start_with_examples(data_dir: &Path, extra_args: &[&str]) -> anyhow::Result<Host> {
        let mut args: Vec<String> = examples::ALL
            .iter()
            .flat_map(|(name, path)| ["--deploy".to_owned(), format!("{name}={path}")])
            .collect();
        args.extend(extra_args.iter().map(|a| a.to_string()));
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        Self::start(data_dir, &args).await
    }

    /// Start a host and deploy `modules` (name, component path) through it.
    pub async fn start_deploying(
        data_dir: &Path,
        extra_args: &[&str],
        modules: &[(&str, &str)],
    ) -> anyhow::Result<Host> {
        let host = Self::start(data_dir, extra_args).await?;
        for (name, path) in modules {
            deploy_example(&host.client, name, path, None).await?;
        }
        Ok(host)
    }

    /// Kill the host with SIGKILL, as a crash would, and wait for it to die.
    pub async fn kill(mut self) -> anyhow::Result<()> {
        self.child.kill().await?;
        Ok(())
    }

    /// Stop the host's process (SIGSTOP), as a stall or a long pause of
    /// its machine would: it keeps its connections but answers nothing.
    pub fn pause(&self) -> anyhow::Result<()> {
        self.signal("STOP")
    }

    /// Let a paused host go on (SIGCONT).
    pub fn resume(&self) -> anyhow::Result<()> {
        self.signal("CONT")
    }

    fn signal(&self, signal: &str) -> anyhow::Result<()> {
        let pid = self.child.id().context("the host has exited")?;
        let status = std::process::Command::new("kill")
            .arg(format!("-{signal}"))
            .arg(pid.to_string())
            .status()?;
        if !status.success() {
            bail!("kill -{signal} {pid} failed: {status}");
        }
        Ok(())
    }

    /// The host process's resident memory, in bytes.
    pub fn resident_bytes(&self) -> anyhow::Result<u64> {
        let pid = self.child.id().context("the host has exited")?;
        let status = std::fs::read_to_string(format!("/proc/{pid}/status"))?;
        let kib: u64 = status
            .lines()
            .find_map(|line| line.strip_prefix("VmRSS:"))
            .context("VmRSS in /proc/PID/status")?
            .trim()
            .trim_end_matches("kB")
            .trim()
            .parse()?;
        Ok(kib * 1024)
    }

    pub fn log_contents(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// Poll `/healthz` until `condition` holds of its body, for at most
    /// `timeout`: for conditions that only the host's load figures show.
    pub async fn await_health(
        &self,
        timeout: Duration,
        condition: impl Fn(&serde_json::Value) -> bool,
    ) -> anyhow::Result<serde_json::Value> {
        let deadline = tokio::time::Instant::now() + timeout;
        loop {
            let health = self.client.get("/healthz").await?.body;
            if condition(&health) {
                return Ok(health);
            }
            if tokio::time::Instant::now() >= deadline {
                bail!("the host's health never met the condition: {health}");
            }
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    }

    /// Wait for event `key` of run `id` to be set, and check that its value
    /// is `value`.
    pub async fn expect_event(
        &self,
        id: &str,
        key: &str,
        value: serde_json::Value,
    ) -> anyhow::Result<()> {
        let event = self.client.event(id, key, 30_000).await?;
        if event.status != 200 || event.body["value"] != value {
            bail!(
                "event {key} of run {id}: expected {value}, got {} {}",
                event.status,
                event.body
            );
        }
        Ok(())
    }

    /// Wait for run `id` to reach a terminal status and return its record.
    pub async fn result(&self, id: &str, timeout: Duration) -> anyhow::Result<serde_json::Value> {
        let reply = self
            .client
            .get(&format!(
                "/v1/workflows/{}/result?timeout_ms={}",
                cairn::http::encode_segment(id),
                timeout.as_millis()
            ))
            .await?;
        if reply.status != 200 {
            bail!(
                "run {id} did not finish in {timeout:?}: {} {}",
                reply.status,
                reply.body
            );
        }
        Ok(reply.body)
    }
}

/// Deploy the example component at `path` as module `name` through
/// `client`, with the routes manifest `routes` if any; an error unless the
/// host accepted it.
pub async fn deploy_example(
    client: &Client,
    name: &str,
    path: &str,
    routes: Option<Vec<u8>>,
) -> anyhow::Result<()> {
    let deployed = client
        .deploy_with_routes(name, examples::bytes(path), routes)
        .await?;
    if !deployed.status.is_success() {
        bail!("deploying {name}: {} {}", deployed.status, deployed.body);
    }
    Ok(())
}

/// Deploy the event-listener handler with its routes through `client`.
pub async fn deploy_event_listener(client: &Client) -> anyhow::Result<()> {
    let routes = std::fs::read(examples::EVENT_LISTENER_ROUTES)?;
    deploy_example(
        client,
        "event-listener",
        examples::EVENT_LISTENER,
        Some(routes),
    )
    .await
}

/// The PostgreSQL database of the tests: `CAIRN_TEST_POSTGRES_URL`, which
/// `scripts/test.sh` sets after starting PostgreSQL.
pub fn postgres_url() -> String {
    std::env::var("CAIRN_TEST_POSTGRES_URL")
        .unwrap_or_else(|_| "postgres://cairn:cairn@127.0.0.1:5432/cairn_test".into())
}

/// Whether the end-to-end tests run their hosts on PostgreSQL
/// (`CAIRN_TEST_BACKEND=postgres`) rather than SQLite.
pub fn on_postgres() -> bool {
    std::env::var("CAIRN_TEST_BACKEND").is_ok_and(|b| b == "postgres")
}

/// A short stable tag of a path, for names derived from it.
fn path_tag(path: &Path) -> String {
    // FNV-1a: stable across runs and Rust versions.
    let hash = path
        .as_os_str()
        .as_encoded_bytes()
        .iter()
        .fold(0xcbf2_9ce4_8422_2325u64, |h, b| {
            (h ^ u64::from(*b)).wrapping_mul(0x0000_0100_0000_01b3)
        });
    format!("{hash:016x}")
}

/// A schema of its own for one test's hosts (`--database-schema`).
pub fn fresh_schema() -> String {
    format!("t_{}", unique())
}

fn unique() -> u128 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_nanos()
}

/// Now, in ms since the Unix epoch (the hosts' clock, on this machine).
pub fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::SystemTime::UNIX_EPOCH)
        .expect("the clock is past 1970")
        .as_millis() as i64
}
