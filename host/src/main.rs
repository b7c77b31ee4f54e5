//! The `cairn` command: the host (`cairn serve`) and a client of its API.
//!
//! One file (about 900 lines) on purpose: most of it is clap's declarations
//! of the flags and subcommands, each a few lines of doc comment and field,
//! read top to bottom like the `--help` they become; the logic is thin
//! forwarding to the library. Splitting the `queue` and `schedule`
//! subcommands out (`cli/`) is the step when it grows further.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use anyhow::{Context, bail};
use cairn::client::{Client, Reply};
use cairn::executor::AllowList;
use cairn::http::AccessControl;
use cairn::server::{DeploySpec, ServeConfig, serve};
use cairn::store::Synchronous;
use cairn::telemetry::{self, TraceExport};
use clap::{Parser, Subcommand};

/// mimalloc rather than glibc's malloc: a request allocates and frees
/// across threads (a tokio worker makes a value, the store's writer or the
/// span exporter drops it), which glibc pays for in arena locks and
/// consolidation; measured in the README's Benchmark section.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[derive(Parser, Debug)]
#[command(
    name = "cairn",
    version,
    about = "A durable workflow host for WebAssembly components"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Run the host: the HTTP API over a durable store.
    Serve(Box<ServeArgs>),
    /// Upload a workflow module (a component file) under a name.
    Deploy {
        name: String,
        file: PathBuf,
        /// The module's routes manifest (JSON); see the README's HTTP triggers.
        #[arg(long)]
        routes: Option<PathBuf>,
        /// Hosts the module's steps may call over HTTP (`name` or
        /// `name:port`, comma-separated), within the host's --allow-outbound.
        #[arg(long, value_delimiter = ',')]
        allowed_hosts: Vec<String>,
        #[command(flatten)]
        server: ServerArg,
    },
    /// Copy a host's SQLite database to FILE while the host serves (a
    /// consistent copy, through SQLite's online backup API). To restore,
    /// stop the host and put the copy in place as `cairn.db` of its data
    /// directory.
    Backup {
        file: PathBuf,
        /// The host's data directory (its database is `cairn.db` in it).
        #[arg(long, env = "CAIRN_DATA_DIR", default_value = "./cairn-data")]
        data_dir: PathBuf,
    },
    /// Start a workflow run.
    Start {
        module: String,
        workflow: String,
        /// The input, as JSON.
        #[arg(long, default_value = "null")]
        input: String,
        /// The run's id (an idempotency key); generated when absent.
        #[arg(long)]
        id: Option<String>,
        #[command(flatten)]
        admission: AdmissionArgs,
        #[command(flatten)]
        server: ServerArg,
    },
    /// Manage queues: how many runs of theirs execute at once, how fast
    /// they start.
    #[command(subcommand)]
    Queue(QueueCommand),
    /// Manage schedules: a workflow started on every tick of a cron
    /// expression.
    #[command(subcommand)]
    Schedule(ScheduleCommand),
    /// Wait for an event of a run and print its value.
    Event {
        id: String,
        key: String,
        #[arg(long, default_value_t = 60_000)]
        timeout_ms: u64,
        #[command(flatten)]
        server: ServerArg,
    },
    /// Show a run's status.
    Status {
        id: String,
        #[command(flatten)]
        server: ServerArg,
    },
    /// Cancel a PENDING run (admin).
    Cancel {
        id: String,
        #[command(flatten)]
        server: ServerArg,
    },
    /// Resume a CANCELLED run (admin).
    Resume {
        id: String,
        #[command(flatten)]
        server: ServerArg,
    },
    /// Fork a run (admin): a new run that re-runs it from a step.
    Fork {
        id: String,
        /// The first operation to run again; those before it are copied.
        #[arg(long)]
        from_step: u32,
        /// The new run's id; generated when absent.
        #[arg(long)]
        new_id: Option<String>,
        #[command(flatten)]
        server: ServerArg,
    },
    /// List runs, newest first.
    List {
        /// ENQUEUED, PENDING, SUCCESS, ERROR, CANCELLED or
        /// MAX_RECOVERY_ATTEMPTS_EXCEEDED.
        #[arg(long)]
        status: Option<String>,
        /// Only runs admitted through this queue.
        #[arg(long)]
        queue: Option<String>,
        #[arg(long)]
        module: Option<String>,
        #[arg(long)]
        workflow: Option<String>,
        #[arg(long, default_value_t = 50)]
        limit: u32,
        /// The `next_cursor` of the previous page.
        #[arg(long)]
        cursor: Option<String>,
        #[command(flatten)]
        server: ServerArg,
    },
    /// Show a run's journal.
    Steps {
        id: String,
        #[command(flatten)]
        server: ServerArg,
    },
    /// Send a run a message.
    Send {
        id: String,
        topic: String,
        /// The message, as JSON.
        #[arg(long)]
        message: String,
        /// A duplicate of an idempotency key already delivered is not
        /// delivered again.
        #[arg(long)]
        idempotency_key: Option<String>,
        #[command(flatten)]
        server: ServerArg,
    },
}

/// How `cairn start` asks for a run to be admitted, if not at once.
#[derive(clap::Args, Debug)]
struct AdmissionArgs {
    /// Admit the run through this queue: ENQUEUED until it has room.
    #[arg(long)]
    queue: Option<String>,
    /// Lower leaves first, in a queue that honours priorities.
    #[arg(long)]
    priority: Option<i32>,
    /// Refused while a run of the queue with this id is ENQUEUED or PENDING.
    #[arg(long)]
    deduplication_id: Option<String>,
    /// The partition of a partitioned queue.
    #[arg(long)]
    partition_key: Option<String>,
    /// Start no earlier than this (RFC 3339, or ms since the epoch).
    #[arg(long)]
    start_at: Option<String>,
    /// Start no earlier than this many ms from now.
    #[arg(long)]
    delay_ms: Option<u64>,
}

impl AdmissionArgs {
    /// Add the admission's fields to a start request's body.
    fn add_to(self, body: &mut serde_json::Value) {
        let start_at = self.start_at.map(|at| match at.parse::<i64>() {
            Ok(ms) => serde_json::Value::from(ms),
            Err(_) => serde_json::Value::from(at),
        });
        let fields = [
            ("queue", self.queue.map(serde_json::Value::from)),
            ("priority", self.priority.map(serde_json::Value::from)),
            (
                "deduplication_id",
                self.deduplication_id.map(serde_json::Value::from),
            ),
            (
                "partition_key",
                self.partition_key.map(serde_json::Value::from),
            ),
            ("start_at", start_at),
            ("delay_ms", self.delay_ms.map(serde_json::Value::from)),
        ];
        for (name, value) in fields {
            if let Some(value) = value {
                body[name] = value;
            }
        }
    }
}

#[derive(Subcommand, Debug)]
enum QueueCommand {
    /// Create a queue or replace its settings (admin); a limit left out is
    /// no limit.
    Put {
        name: String,
        /// Runs of the queue PENDING at once, across all hosts.
        #[arg(long)]
        concurrency: Option<u32>,
        /// Runs of the queue executing on one host at once.
        #[arg(long)]
        per_host_concurrency: Option<u32>,
        /// At most this many runs leave per --rate-period-ms.
        #[arg(long, requires = "rate_period_ms")]
        rate_limit: Option<u32>,
        #[arg(long, requires = "rate_limit")]
        rate_period_ms: Option<u64>,
        /// Runs leave by priority (lower first), then in arrival order.
        #[arg(long)]
        priority: bool,
        /// The limits hold per partition key.
        #[arg(long)]
        partitioned: bool,
        #[command(flatten)]
        server: ServerArg,
    },
    /// List the queues with their depths.
    List {
        #[command(flatten)]
        server: ServerArg,
    },
    /// Show a queue and its depth.
    Get {
        name: String,
        #[command(flatten)]
        server: ServerArg,
    },
    /// Delete a queue no run waits in (admin).
    Delete {
        name: String,
        #[command(flatten)]
        server: ServerArg,
    },
}

#[derive(Subcommand, Debug)]
enum ScheduleCommand {
    /// Create a schedule or replace what it starts and when (admin).
    Put {
        name: String,
        #[arg(long)]
        module: String,
        #[arg(long)]
        workflow: String,
        /// Five fields (minute hour day month weekday), or six with
        /// seconds first: `*/10 * * * * *`.
        #[arg(long)]
        cron: String,
        /// A JSON object each run gets, with `schedule` and `scheduled_at`
        /// added.
        #[arg(long)]
        input: Option<String>,
        /// An IANA time zone; UTC by default.
        #[arg(long)]
        timezone: Option<String>,
        /// skip (default), buffer_one, allow_all or cancel_running.
        #[arg(long)]
        overlap: Option<String>,
        /// Ticks missed while no host was up fire if at most this old.
        #[arg(long)]
        catch_up_ms: Option<u64>,
        #[command(flatten)]
        server: ServerArg,
    },
    /// List the schedules.
    List {
        #[command(flatten)]
        server: ServerArg,
    },
    /// Show a schedule.
    Get {
        name: String,
        #[command(flatten)]
        server: ServerArg,
    },
    /// Delete a schedule; its runs stay (admin).
    Delete {
        name: String,
        #[command(flatten)]
        server: ServerArg,
    },
    /// Stop firing ticks (admin).
    Pause {
        name: String,
        #[command(flatten)]
        server: ServerArg,
    },
    /// Fire again from the next tick after now (admin).
    Resume {
        name: String,
        #[command(flatten)]
        server: ServerArg,
    },
    /// Fire once now, by hand (admin).
    Trigger {
        name: String,
        #[command(flatten)]
        server: ServerArg,
    },
    /// Fire every tick in [--from, --to), each once (admin).
    Backfill {
        name: String,
        /// RFC 3339, or ms since the epoch.
        #[arg(long)]
        from: String,
        #[arg(long)]
        to: String,
        #[command(flatten)]
        server: ServerArg,
    },
}

#[derive(clap::Args, Debug)]
struct ServerArg {
    /// The Cairn server to talk to.
    #[arg(long, env = "CAIRN_SERVER", default_value = "http://127.0.0.1:8080")]
    server: String,
    /// The bearer token to send, if the server requires one.
    #[arg(long, env = "CAIRN_TOKEN", hide_env_values = true)]
    token: Option<String>,
}

#[derive(clap::Args, Debug)]
struct ServeArgs {
    /// Address to listen on; port 0 picks a free port.
    #[arg(long, env = "CAIRN_LISTEN", default_value = "127.0.0.1:8080")]
    listen: SocketAddr,
    /// Where the database and compiled modules live.
    #[arg(long, env = "CAIRN_DATA_DIR", default_value = "./cairn-data")]
    data_dir: PathBuf,
    /// Where compiled modules are kept (default: `compiled/` in the data
    /// directory); hosts of one build may share one, and compile a module
    /// once between them.
    #[arg(long, env = "CAIRN_COMPILED_DIR")]
    compiled_dir: Option<PathBuf>,
    /// Deploy a module at start-up, as NAME=FILE.wasm, or
    /// NAME=FILE.wasm,ROUTES.json with its routes manifest (repeatable).
    #[arg(long, value_name = "NAME=FILE[,ROUTES]")]
    deploy: Vec<String>,
    /// "full" (default) fsyncs every commit and survives power loss;
    /// "normal" survives a host crash only, and is faster.
    #[arg(long, env = "CAIRN_SQLITE_SYNCHRONOUS", default_value = "full")]
    sqlite_synchronous: Synchronous,
    /// Recoveries of one run before it ends MAX_RECOVERY_ATTEMPTS_EXCEEDED.
    #[arg(long, env = "CAIRN_MAX_RECOVERY_ATTEMPTS", default_value_t = 10)]
    max_recovery_attempts: u32,
    /// Largest module upload, in bytes.
    #[arg(long, env = "CAIRN_MAX_UPLOAD_BYTES", default_value_t = 50 * 1024 * 1024)]
    max_upload_bytes: usize,
    /// Largest event value, workflow input or output, in bytes.
    #[arg(long, env = "CAIRN_MAX_VALUE_BYTES", default_value_t = 1024 * 1024)]
    max_value_bytes: usize,
    /// Journaled operations (host calls) one run may make.
    #[arg(long, env = "CAIRN_MAX_JOURNAL_ENTRIES", default_value_t = 10_000)]
    max_journal_entries: u32,
    /// Bytes one run may store: its journal, events, and messages sent and
    /// received; past it the run fails.
    #[arg(long, env = "CAIRN_MAX_RUN_BYTES", default_value_t = 64 * 1024 * 1024)]
    max_run_bytes: u64,
    /// Largest linear memory of a guest instance, in bytes.
    #[arg(long, env = "CAIRN_MAX_MEMORY_BYTES", default_value_t = 64 * 1024 * 1024)]
    max_memory_bytes: usize,
    /// Most core WebAssembly instances one component may create: a Rust
    /// guest creates a handful, CPython's (componentize-py) about 40.
    #[arg(long, env = "CAIRN_MAX_CORE_INSTANCES", default_value_t = 128)]
    max_core_instances: u32,
    /// Longest a guest may compute without calling the host, in milliseconds.
    #[arg(long, env = "CAIRN_CPU_SLICE_MS", default_value_t = 5_000)]
    cpu_slice_ms: u64,
    /// CPU time one execution of a run (or one handler call) may use in
    /// all, however often it calls the host, in ms.
    #[arg(long, env = "CAIRN_MAX_CPU_MS", default_value_t = 300_000)]
    max_cpu_ms: u64,
    /// Guest instances alive at once; further runs queue for a slot.
    #[arg(long, env = "CAIRN_MAX_LIVE_INSTANCES", default_value_t = 1000)]
    max_live_instances: usize,
    /// How long a waiting run keeps its instance before it parks (gives up
    /// the instance and its slot, to be woken and replayed), in ms; 0 parks
    /// at once.
    #[arg(long, env = "CAIRN_PARK_AFTER_MS", default_value_t = 1000)]
    park_after_ms: u64,
    /// Delete finished runs (with their journal, events, messages and
    /// children) this long after they ended, e.g. `30d` or `12h`; then
    /// module versions no run uses. Unset: runs are kept for ever.
    #[arg(long, env = "CAIRN_RETENTION", value_parser = parse_retention)]
    retention: Option<Duration>,
    /// The longest a handler instance lives, its response included, in ms.
    #[arg(long, env = "CAIRN_HANDLER_TIMEOUT_MS", default_value_t = 330_000)]
    handler_timeout_ms: u64,
    /// Runs queued for an instance slot before start requests get 503.
    #[arg(long, env = "CAIRN_MAX_QUEUED_RUNS", default_value_t = 10_000)]
    max_queued_runs: usize,
    /// Requests of each kind waiting at once — long-polls (events,
    /// results), event streams, trigger calls: a pool each — before
    /// requests of that kind get 503.
    #[arg(long, env = "CAIRN_MAX_PENDING_WAITS", default_value_t = 10_000)]
    max_pending_waits: usize,
    /// Waiting requests one client (a token, or an address when it sends
    /// none) may hold across all kinds before it gets 429.
    #[arg(long, env = "CAIRN_MAX_WAITS_PER_CLIENT", default_value_t = 1_000)]
    max_waits_per_client: usize,
    /// Longest life of an event stream, in ms; the client reconnects with
    /// Last-Event-ID and misses nothing.
    #[arg(long, env = "CAIRN_MAX_STREAM_MS", default_value_t = 3_600_000)]
    max_stream_ms: u64,
    /// How long a response write may make no progress (a client that
    /// stopped reading) before its connection is closed, in ms.
    #[arg(long, env = "CAIRN_WRITE_STALL_TIMEOUT_MS", default_value_t = 30_000)]
    write_stall_timeout_ms: u64,
    /// How long a client may take to send its request headers, in ms.
    #[arg(long, env = "CAIRN_HEADER_READ_TIMEOUT_MS", default_value_t = 30_000)]
    header_read_timeout_ms: u64,
    /// How long a client may take to send a request body, in ms.
    #[arg(long, env = "CAIRN_BODY_READ_TIMEOUT_MS", default_value_t = 30_000)]
    body_read_timeout_ms: u64,
    /// The admin bearer token: deploy (and everything invoke tokens may do).
    #[arg(long, env = "CAIRN_ADMIN_TOKEN", hide_env_values = true)]
    admin_token: Option<String>,
    /// Export traces over OTLP (HTTP/protobuf) to this collector, e.g.
    /// `http://127.0.0.1:4318`; without it, the standard
    /// `OTEL_EXPORTER_OTLP_ENDPOINT` (and the other `OTEL_*` variables) are
    /// honoured, and with neither no spans are exported.
    #[arg(long, env = "CAIRN_OTLP_ENDPOINT")]
    otlp_endpoint: Option<String>,
    /// A bearer token that reads `/metrics` and nothing else, for a
    /// scraper off this machine (from loopback `/metrics` is open).
    #[arg(long, env = "CAIRN_METRICS_TOKEN", hide_env_values = true)]
    metrics_token: Option<String>,
    /// An invoke bearer token: start runs, read runs and events (repeatable;
    /// the environment variable takes a comma-separated list).
    #[arg(
        long,
        env = "CAIRN_INVOKE_TOKENS",
        hide_env_values = true,
        value_delimiter = ','
    )]
    invoke_token: Vec<String>,
    /// Hosts that modules may allow their steps to call over HTTP (`name`
    /// for any port, or `name:port`; repeatable, or comma-separated). Empty
    /// by default: no outgoing HTTP at all. Internal addresses (loopback,
    /// private, link-local) are reached only when listed as addresses or
    /// ranges (`127.0.0.1`, `10.0.0.0/8`), not through a name.
    #[arg(long, env = "CAIRN_ALLOW_OUTBOUND", value_delimiter = ',')]
    allow_outbound: Vec<String>,
    /// `postgres://user:password@host:port/database` to share a PostgreSQL
    /// database with other hosts (tables in the schema `cairn`); default:
    /// the embedded SQLite file in --data-dir.
    #[arg(long, env = "CAIRN_DATABASE", hide_env_values = true)]
    database: Option<String>,
    /// The PostgreSQL schema of Cairn's tables: different schemas let
    /// separate Cairn deployments share one database.
    #[arg(long, env = "CAIRN_DATABASE_SCHEMA", default_value = "cairn")]
    database_schema: String,
    /// PostgreSQL connections this host keeps at most (plus 2 for leases
    /// and 1 for notifications).
    #[arg(long, env = "CAIRN_DATABASE_CONNECTIONS", default_value_t = 10)]
    database_connections: u32,
    /// This host's id on a shared database (default: a new UUID per start).
    #[arg(long, env = "CAIRN_EXECUTOR_ID")]
    executor_id: Option<String>,
    /// How long a host's hold on its runs lasts without renewal, in ms; a
    /// host that dies has its runs taken over this long after (PostgreSQL).
    #[arg(long, env = "CAIRN_LEASE_MS", default_value_t = 10_000)]
    lease_ms: u64,
    /// The longest a waiter misses a lost change notification, in ms; also
    /// how often modules are reloaded (PostgreSQL).
    #[arg(long, env = "CAIRN_POLL_INTERVAL_MS", default_value_t = 1_000)]
    poll_interval_ms: u64,
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    match cli.command {
        Command::Serve(args) => {
            let export = init_tracing(args.otlp_endpoint.as_deref())?;
            let mut config = ServeConfig::new(args.listen, args.data_dir);
            config.compiled_dir = args.compiled_dir;
            config.synchronous = args.sqlite_synchronous;
            if let Some(url) = &args.database {
                if !(url.starts_with("postgres://") || url.starts_with("postgresql://")) {
                    bail!(
                        "--database must be a postgres:// URL (SQLite, the default, needs no --database)"
                    );
                }
                config.database = Some(url.clone());
            }
            config.executor_id = args.executor_id.clone();
            config.database_schema = args.database_schema.clone();
            config.database_connections = args.database_connections.max(1);
            if args.lease_ms < 300 || args.poll_interval_ms == 0 {
                bail!("--lease-ms must be at least 300 and --poll-interval-ms at least 1");
            }
            config.cluster.lease = Duration::from_millis(args.lease_ms);
            config.cluster.poll_interval = Duration::from_millis(args.poll_interval_ms);
            config.limits.max_recovery_attempts = args.max_recovery_attempts;
            config.limits.max_value_bytes = args.max_value_bytes;
            config.limits.max_journal_entries = args.max_journal_entries;
            config.limits.max_run_bytes = args.max_run_bytes;
            config.limits.max_live_instances = args.max_live_instances.max(1);
            // Workflow instances, as many handler instances again, and a few
            // for uploads being validated.
            config.guest.max_instances =
                u32::try_from(args.max_live_instances.max(1) * 2 + 16).unwrap_or(u32::MAX);
            config.limits.max_queued_runs = args.max_queued_runs;
            config.limits.park_after = Duration::from_millis(args.park_after_ms);
            config.limits.retention = args.retention;
            config.limits.handler_timeout = Duration::from_millis(args.handler_timeout_ms.max(1));
            config.limits.allowed_hosts = AllowList::parse(&args.allow_outbound)
                .map_err(|e| anyhow::anyhow!("--allow-outbound: {e}"))?;
            config.api.max_pending_waits = args.max_pending_waits;
            config.api.max_waits_per_client = args.max_waits_per_client.max(1);
            config.api.max_stream_lifetime = Duration::from_millis(args.max_stream_ms.max(1));
            config.api.write_stall_timeout =
                Duration::from_millis(args.write_stall_timeout_ms.max(1));
            config.api.header_read_timeout = Duration::from_millis(args.header_read_timeout_ms);
            config.api.body_read_timeout = Duration::from_millis(args.body_read_timeout_ms);
            config.guest.max_memory_bytes = args.max_memory_bytes;
            config.guest.max_core_instances_per_component = args.max_core_instances.max(1);
            config.guest.cpu_slice = Duration::from_millis(args.cpu_slice_ms);
            config.guest.cpu_budget = Duration::from_millis(args.max_cpu_ms.max(1));
            config.access = AccessControl::new(args.admin_token.as_deref(), &args.invoke_token)
                .and_then(|access| access.with_metrics_token(args.metrics_token.as_deref()))
                .map_err(|e| anyhow::anyhow!("{e}"))?;
            config.api.max_upload_bytes = args.max_upload_bytes;
            // A start request carries an input of up to max_value_bytes.
            config.api.max_json_body_bytes = args.max_value_bytes + 64 * 1024;
            for spec in &args.deploy {
                config.deploy.push(
                    spec.parse::<DeploySpec>()
                        .map_err(|e| anyhow::anyhow!("--deploy {e}"))?,
                );
            }
            let served = serve(config, shutdown_signal()).await;
            if let Some(export) = export {
                tokio::task::spawn_blocking(move || export.shutdown()).await?;
            }
            served?;
            Ok(())
        }
        Command::Deploy {
            name,
            file,
            routes,
            allowed_hosts,
            server,
        } => {
            let bytes =
                std::fs::read(&file).with_context(|| format!("reading {}", file.display()))?;
            let routes = routes
                .map(|path| {
                    std::fs::read(&path).with_context(|| format!("reading {}", path.display()))
                })
                .transpose()?;
            let settings = match allowed_hosts.as_slice() {
                [] => String::new(),
                hosts => format!("allowed_hosts={}", hosts.join(",")),
            };
            print_reply(
                client(&server)?
                    .deploy_with_settings(&name, bytes, routes, &settings)
                    .await?,
            )
        }
        Command::Backup { file, data_dir } => {
            let started = std::time::Instant::now();
            let report = cairn::store::backup_sqlite(&data_dir.join("cairn.db"), &file)
                .map_err(|e| anyhow::anyhow!("{e}"))?;
            println!(
                "backed up {} pages ({} bytes) to {} in {} ms",
                report.pages,
                report.bytes,
                file.display(),
                started.elapsed().as_millis()
            );
            Ok(())
        }
        Command::Start {
            module,
            workflow,
            input,
            id,
            admission,
            server,
        } => {
            let input: serde_json::Value = serde_json::from_str(&input)
                .context("--input must be JSON, e.g. '{\"a\": 1}' or '\"text\"'")?;
            let mut body =
                serde_json::json!({"module": module, "workflow": workflow, "input": input});
            if let Some(id) = id {
                body["id"] = id.into();
            }
            admission.add_to(&mut body);
            print_reply(client(&server)?.post_json("/v1/workflows", &body).await?)
        }
        Command::Queue(command) => queue_command(command).await,
        Command::Schedule(command) => schedule_command(command).await,
        Command::Event {
            id,
            key,
            timeout_ms,
            server,
        } => print_reply(client(&server)?.event(&id, &key, timeout_ms).await?),
        Command::Status { id, server } => print_reply(client(&server)?.status(&id).await?),
        Command::List {
            status,
            queue,
            module,
            workflow,
            limit,
            cursor,
            server,
        } => {
            let mut query = vec![("limit", limit.to_string())];
            for (name, value) in [
                ("status", status),
                ("queue", queue),
                ("module", module),
                ("workflow", workflow),
                ("cursor", cursor),
            ] {
                if let Some(value) = value {
                    query.push((name, value));
                }
            }
            print_reply(client(&server)?.list_runs(&query).await?)
        }
        Command::Steps { id, server } => print_reply(client(&server)?.steps(&id).await?),
        Command::Fork {
            id,
            from_step,
            new_id,
            server,
        } => {
            let mut body = serde_json::json!({"from_step": from_step});
            if let Some(new_id) = new_id {
                body["id"] = new_id.into();
            }
            let path = format!("/v1/workflows/{}/fork", cairn::http::encode_segment(&id));
            print_reply(client(&server)?.post_json(&path, &body).await?)
        }
        Command::Cancel { id, server } => {
            print_reply(client(&server)?.run_action(&id, "cancel").await?)
        }
        Command::Resume { id, server } => {
            print_reply(client(&server)?.run_action(&id, "resume").await?)
        }
        Command::Send {
            id,
            topic,
            message,
            idempotency_key,
            server,
        } => {
            let message: serde_json::Value = serde_json::from_str(&message)
                .context("--message must be JSON, e.g. '{\"approved\": true}'")?;
            print_reply(
                client(&server)?
                    .send_message(&id, &topic, message, idempotency_key.as_deref())
                    .await?,
            )
        }
    }
}

fn client(server: &ServerArg) -> anyhow::Result<Client> {
    let client = Client::new(&server.server)?;
    Ok(match &server.token {
        Some(token) => client.with_token(token),
        None => client,
    })
}

async fn schedule_command(command: ScheduleCommand) -> anyhow::Result<()> {
    let path = |name: &str| format!("/v1/schedules/{}", cairn::http::encode_segment(name));
    let time = |text: String| match text.parse::<i64>() {
        Ok(ms) => serde_json::Value::from(ms),
        Err(_) => serde_json::Value::from(text),
    };
    match command {
        ScheduleCommand::Put {
            name,
            module,
            workflow,
            cron,
            input,
            timezone,
            overlap,
            catch_up_ms,
            server,
        } => {
            let mut body =
                serde_json::json!({"module": module, "workflow": workflow, "cron": cron});
            if let Some(input) = input {
                body["input"] = serde_json::from_str(&input)
                    .context("--input must be a JSON object, e.g. '{\"batch\": 7}'")?;
            }
            if let Some(timezone) = timezone {
                body["timezone"] = timezone.into();
            }
            if let Some(overlap) = overlap {
                body["overlap"] = overlap.into();
            }
            if let Some(ms) = catch_up_ms {
                body["catch_up_ms"] = ms.into();
            }
            let bytes = bytes::Bytes::from(serde_json::to_vec(&body)?);
            let reply = client(&server)?
                .send(
                    hyper::Method::PUT,
                    &path(&name),
                    Some("application/json"),
                    bytes,
                )
                .await?;
            print_reply(reply)
        }
        ScheduleCommand::List { server } => {
            print_reply(client(&server)?.get("/v1/schedules").await?)
        }
        ScheduleCommand::Get { name, server } => {
            print_reply(client(&server)?.get(&path(&name)).await?)
        }
        ScheduleCommand::Delete { name, server } => {
            let reply = client(&server)?
                .send(
                    hyper::Method::DELETE,
                    &path(&name),
                    None,
                    bytes::Bytes::new(),
                )
                .await?;
            print_reply(reply)
        }
        ScheduleCommand::Pause { name, server } => {
            let action = format!("{}/pause", path(&name));
            print_reply(
                client(&server)?
                    .post_json(&action, &serde_json::json!({}))
                    .await?,
            )
        }
        ScheduleCommand::Resume { name, server } => {
            let action = format!("{}/resume", path(&name));
            print_reply(
                client(&server)?
                    .post_json(&action, &serde_json::json!({}))
                    .await?,
            )
        }
        ScheduleCommand::Trigger { name, server } => {
            let action = format!("{}/trigger", path(&name));
            print_reply(
                client(&server)?
                    .post_json(&action, &serde_json::json!({}))
                    .await?,
            )
        }
        ScheduleCommand::Backfill {
            name,
            from,
            to,
            server,
        } => {
            let action = format!("{}/backfill", path(&name));
            let body = serde_json::json!({"from": time(from), "to": time(to)});
            print_reply(client(&server)?.post_json(&action, &body).await?)
        }
    }
}

async fn queue_command(command: QueueCommand) -> anyhow::Result<()> {
    let path = |name: &str| format!("/v1/queues/{}", cairn::http::encode_segment(name));
    match command {
        QueueCommand::Put {
            name,
            concurrency,
            per_host_concurrency,
            rate_limit,
            rate_period_ms,
            priority,
            partitioned,
            server,
        } => {
            let mut body = serde_json::json!({"priority": priority, "partitioned": partitioned});
            if let Some(n) = concurrency {
                body["concurrency"] = n.into();
            }
            if let Some(n) = per_host_concurrency {
                body["per_host_concurrency"] = n.into();
            }
            if let (Some(limit), Some(period_ms)) = (rate_limit, rate_period_ms) {
                body["rate_limit"] = serde_json::json!({"limit": limit, "period_ms": period_ms});
            }
            let bytes = bytes::Bytes::from(serde_json::to_vec(&body)?);
            let reply = client(&server)?
                .send(
                    hyper::Method::PUT,
                    &path(&name),
                    Some("application/json"),
                    bytes,
                )
                .await?;
            print_reply(reply)
        }
        QueueCommand::List { server } => print_reply(client(&server)?.get("/v1/queues").await?),
        QueueCommand::Get { name, server } => {
            print_reply(client(&server)?.get(&path(&name)).await?)
        }
        QueueCommand::Delete { name, server } => {
            let reply = client(&server)?
                .send(
                    hyper::Method::DELETE,
                    &path(&name),
                    None,
                    bytes::Bytes::new(),
                )
                .await?;
            print_reply(reply)
        }
    }
}

/// Print the JSON answer; an error answer makes the command fail.
fn print_reply(reply: Reply) -> anyhow::Result<()> {
    println!("{}", serde_json::to_string_pretty(&reply.body)?);
    if reply.status.is_success() {
        Ok(())
    } else {
        bail!("the server answered {}", reply.status)
    }
}

/// The log on stderr (filtered by `CAIRN_LOG`) and, with a collector, the
/// span export (see `telemetry.rs`), which the caller shuts down at exit.
fn init_tracing(otlp_endpoint: Option<&str>) -> anyhow::Result<Option<TraceExport>> {
    use tracing_subscriber::layer::SubscriberExt;
    use tracing_subscriber::util::SubscriberInitExt;
    use tracing_subscriber::{EnvFilter, Layer};
    let filter = EnvFilter::try_from_env("CAIRN_LOG").unwrap_or_else(|_| EnvFilter::new("info"));
    let Some(endpoint) = telemetry::export_endpoint(otlp_endpoint) else {
        // No export: one global filter, the cheapest check per callsite.
        tracing_subscriber::fmt()
            .with_env_filter(filter)
            .with_writer(std::io::stderr)
            .init();
        return Ok(None);
    };
    let export = TraceExport::new(endpoint.as_deref()).map_err(|e| anyhow::anyhow!("{e}"))?;
    // A filter per layer: the log's, and the exporter's (Cairn's spans).
    let log = tracing_subscriber::fmt::layer()
        .with_writer(std::io::stderr)
        .with_filter(filter);
    tracing_subscriber::registry()
        .with(log)
        .with(export.layer())
        .init();
    Ok(Some(export))
}

async fn shutdown_signal() {
    let ctrl_c = tokio::signal::ctrl_c();
    let mut terminate = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
        .expect("SIGTERM handler");
    tokio::select! {
        _ = ctrl_c => {}
        _ = terminate.recv() => {}
    }
    tracing::info!("shutting down");
}

/// `--retention`: a duration such as `30d`, `12h` or `90m`, at least a
/// second.
fn parse_retention(value: &str) -> Result<Duration, String> {
    let window = humantime::parse_duration(value).map_err(|e| {
        format!("{value:?} is not a duration ({e}); write it as 30d, 12h, 90m or 45s")
    })?;
    if window < Duration::from_secs(1) {
        return Err(format!("{value:?} is shorter than a second"));
    }
    Ok(window)
}
