//! `cairn serve`: open the store, load the modules, recover interrupted runs
//! and serve the HTTP API.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;

use crate::domain::ModuleName;
use crate::executor::{ClusterOptions, Executor, Limits, SystemClock};
use crate::http::{AccessControl, Api, ApiLimits};
use crate::runtime::{GuestLimits, Runtime};
use crate::store::{PgOptions, PgStore, SqliteOptions, SqliteStore, Store, Synchronous};
use crate::triggers::Manifest;

/// A module to deploy at start-up: `NAME=FILE.wasm[,ROUTES.json]`.
#[derive(Debug, Clone)]
pub struct DeploySpec {
    pub name: ModuleName,
    pub component: PathBuf,
    /// Its routes manifest, if it has routes.
    pub routes: Option<PathBuf>,
}

impl std::str::FromStr for DeploySpec {
    type Err = String;

    fn from_str(spec: &str) -> Result<Self, Self::Err> {
        let Some((name, files)) = spec.split_once('=') else {
            return Err(format!(
                "{spec:?}: expected NAME=FILE.wasm or NAME=FILE.wasm,ROUTES.json"
            ));
        };
        let (component, routes) = match files.split_once(',') {
            Some((component, routes)) => (component, Some(PathBuf::from(routes))),
            None => (files, None),
        };
        Ok(Self {
            name: ModuleName::parse(name).map_err(|e| e.0)?,
            component: PathBuf::from(component),
            routes,
        })
    }
}

/// Everything `cairn serve` is configured with.
#[derive(Debug, Clone)]
pub struct ServeConfig {
    pub listen: SocketAddr,
    pub data_dir: PathBuf,
    /// Where compiled modules are kept; `None`: `data_dir/compiled`. Hosts
    /// of one build may share one (files are written whole, then renamed).
    pub compiled_dir: Option<PathBuf>,
    /// `postgres://...` to share a PostgreSQL database with other hosts;
    /// `None`: the embedded SQLite file in `data_dir`.
    pub database: Option<String>,
    /// The PostgreSQL schema of Cairn's tables.
    pub database_schema: String,
    /// The most PostgreSQL connections of the host's main pool.
    pub database_connections: u32,
    /// This host's executor id on a shared database (default: a new UUID).
    pub executor_id: Option<String>,
    /// Leases and polling on a shared database.
    pub cluster: ClusterOptions,
    /// Modules to deploy at start-up.
    pub deploy: Vec<DeploySpec>,
    pub synchronous: Synchronous,
    pub limits: Limits,
    pub guest: GuestLimits,
    pub api: ApiLimits,
    /// Bearer tokens; open (no tokens) is allowed on loopback only.
    pub access: AccessControl,
}

impl ServeConfig {
    pub fn new(listen: SocketAddr, data_dir: PathBuf) -> Self {
        Self {
            listen,
            data_dir,
            compiled_dir: None,
            database: None,
            database_schema: "cairn".into(),
            database_connections: 10,
            executor_id: None,
            cluster: ClusterOptions::default(),
            deploy: Vec::new(),
            synchronous: Synchronous::Full,
            limits: Limits::default(),
            guest: GuestLimits::default(),
            api: ApiLimits::default(),
            access: AccessControl::open(),
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum ServeError {
    #[error("cannot use data directory {path}: {detail}")]
    DataDir { path: String, detail: String },
    #[error("cannot open the database: {0}")]
    Store(#[from] crate::store::StoreError),
    #[error(transparent)]
    Runtime(#[from] crate::runtime::RuntimeError),
    #[error("cannot deploy {name} from {path}: {detail}")]
    Deploy {
        name: String,
        path: String,
        detail: String,
    },
    #[error("start-up failed: {0}")]
    Executor(#[from] crate::executor::ExecutorError),
    #[error(
        "refusing to serve on {0} without access tokens: anyone who can reach it could deploy code. Set an admin token (--admin-token or CAIRN_ADMIN_TOKEN) and invoke tokens (--invoke-token or CAIRN_INVOKE_TOKENS), or listen on a loopback address"
    )]
    Insecure(SocketAddr),
    #[error("cannot listen on {addr}: {detail}")]
    Listen { addr: SocketAddr, detail: String },
    #[error(
        "data directory {0} is in use by another cairn host (its cairn.lock is held); give each host a --data-dir of its own"
    )]
    DataDirInUse(String),
}

/// How long a starting host waits for its data directory's lock: a host
/// restarted at once may find its predecessor still exiting.
const DATA_DIR_LOCK_WAIT: std::time::Duration = std::time::Duration::from_secs(5);

/// Hold `data_dir`'s lock file for as long as the returned file lives: two
/// hosts on one directory would both recover (and so execute) its runs.
/// The kernel releases the lock when the process ends, however it ends.
async fn lock_data_dir(data_dir: &std::path::Path) -> Result<std::fs::File, ServeError> {
    let path = data_dir.join("cairn.lock");
    let failed = |detail: String| ServeError::DataDir {
        path: path.display().to_string(),
        detail,
    };
    let file = std::fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(&path)
        .map_err(|e| failed(e.to_string()))?;
    let deadline = tokio::time::Instant::now() + DATA_DIR_LOCK_WAIT;
    loop {
        match file.try_lock() {
            Ok(()) => return Ok(file),
            Err(std::fs::TryLockError::WouldBlock) if tokio::time::Instant::now() < deadline => {
                tokio::time::sleep(std::time::Duration::from_millis(50)).await;
            }
            Err(std::fs::TryLockError::WouldBlock) => {
                return Err(ServeError::DataDirInUse(data_dir.display().to_string()));
            }
            Err(std::fs::TryLockError::Error(e)) => return Err(failed(e.to_string())),
        }
    }
}

/// Run the host until `shutdown` completes. Prints one line to stdout once
/// it accepts connections: `cairn listening on http://ADDR`.
pub async fn serve(
    config: ServeConfig,
    shutdown: impl std::future::Future<Output = ()>,
) -> Result<(), ServeError> {
    if config.access.is_open() && !config.listen.ip().is_loopback() {
        return Err(ServeError::Insecure(config.listen));
    }
    let data_dir_error = |detail: std::io::Error| ServeError::DataDir {
        path: config.data_dir.display().to_string(),
        detail: detail.to_string(),
    };
    std::fs::create_dir_all(&config.data_dir).map_err(data_dir_error)?;
    let _data_dir_lock = lock_data_dir(&config.data_dir).await?;
    let store: Arc<dyn Store> = match &config.database {
        None => {
            let mut sqlite = SqliteOptions::new(config.data_dir.join("cairn.db"));
            sqlite.synchronous = config.synchronous;
            Arc::new(SqliteStore::open(sqlite).await?)
        }
        Some(url) => {
            let mut options = PgOptions::new(url.clone());
            options.schema = config.database_schema.clone();
            options.max_connections = config.database_connections;
            if let Some(id) = &config.executor_id {
                options.executor_id = id.clone();
            }
            options.lease = config.cluster.lease;
            let store = PgStore::open(options).await?;
            tracing::info!(
                executor = store.executor_id(),
                "using PostgreSQL, shared with other hosts"
            );
            Arc::new(store)
        }
    };
    // Each host compiles the modules it runs and keeps its own copies.
    let compiled = config
        .compiled_dir
        .clone()
        .unwrap_or_else(|| config.data_dir.join("compiled"));
    let runtime = Runtime::new(Some(compiled), config.guest.clone())?;
    let executor = Executor::new(
        store.clone(),
        runtime,
        Arc::new(SystemClock),
        config.limits.clone(),
    )
    .await?;

    for DeploySpec {
        name,
        component: path,
        routes,
    } in &config.deploy
    {
        let deploy_error = |detail: String| ServeError::Deploy {
            name: name.to_string(),
            path: path.display().to_string(),
            detail,
        };
        let bytes = std::fs::read(path).map_err(|e| deploy_error(e.to_string()))?;
        let manifest = match routes {
            None => Manifest::default(),
            Some(routes) => std::fs::read(routes)
                .map_err(|e| format!("reading {}: {e}", routes.display()))
                .and_then(|json| Manifest::parse(&json))
                .map_err(deploy_error)?,
        };
        let put = executor
            .deploy(name.clone(), bytes, Default::default(), manifest)
            .await
            .map_err(|e| deploy_error(e.to_string()))?;
        tracing::info!(module = %name, version = %put.module.version, workflows = ?put.module.workflows, "deployed");
    }

    let report = executor.recover().await?;
    if report.resumed + report.exceeded > 0 {
        tracing::info!(
            resumed = report.resumed,
            gave_up = report.exceeded,
            "recovered interrupted runs"
        );
    }
    if store.shared() {
        executor.start_cluster_duties(config.cluster).await?;
    }

    let listener = tokio::net::TcpListener::bind(config.listen)
        .await
        .map_err(|e| ServeError::Listen {
            addr: config.listen,
            detail: e.to_string(),
        })?;
    let addr = listener.local_addr().map_err(|e| ServeError::Listen {
        addr: config.listen,
        detail: e.to_string(),
    })?;
    if config.access.is_open() {
        tracing::warn!(
            %addr,
            "no access tokens configured: the API is open to anyone on this machine (development mode); set --admin-token and --invoke-token to require them"
        );
    }
    // Last: scripts and tests take this line to mean the host is ready.
    println!("cairn listening on http://{addr}");
    tracing::info!(%addr, data_dir = %config.data_dir.display(), "serving");
    let api = Api::new(executor, config.api.clone(), config.access.clone());
    crate::http::serve(listener, api, shutdown)
        .await
        .map_err(|e| ServeError::Listen {
            addr,
            detail: e.to_string(),
        })
}
