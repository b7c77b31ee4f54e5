//! Cairn, a durable workflow host for WebAssembly components.
//!
//! Workflows are components that target the `cairn:workflow` world (see
//! `wit/`). The host journals every effect of a run in a database, so a run
//! survives crashes and resumes where it was, and serves an HTTP API to
//! upload modules, start runs and read their events.
//!
//! ```no_run
//! # async fn example() -> Result<(), Box<dyn std::error::Error>> {
//! use cairn::server::{ServeConfig, serve};
//!
//! let config = ServeConfig::new("127.0.0.1:8080".parse()?, "./cairn-data".into());
//! serve(config, std::future::pending()).await?;
//! # Ok(())
//! # }
//! ```
//!
//! Layers: [`domain`] (ids, statuses, records), [`store`] (persistence),
//! [`runtime`] (wasmtime), [`executor`] (run lifecycle), [`http`] (the API).
pub mod client;
pub mod cpu;
pub mod domain;
pub mod executor;
pub mod http;
pub mod metrics;
pub mod runtime;
pub mod server;
pub mod store;
pub mod telemetry;
pub mod triggers;
