//! Request parsing and routing never panic and never answer 5xx: any method,
//! path, query, headers and body get a response from the API.
#![no_main]

use std::sync::{Arc, OnceLock};

use arbitrary::Arbitrary;
use bytes::Bytes;
use cairn::executor::{Executor, Limits, SystemClock};
use cairn::http::{AccessControl, Api, ApiLimits};
use cairn::runtime::{GuestLimits, Runtime};
use cairn::store::{SqliteOptions, SqliteStore};
use http_body_util::Full;
use libfuzzer_sys::fuzz_target;

#[derive(Arbitrary, Debug)]
struct Input {
    method: u8,
    path: String,
    body: Vec<u8>,
    token: Option<String>,
}

struct World {
    tokio: tokio::runtime::Runtime,
    api: Api,
    _dir: tempfile::TempDir,
}

fn world() -> &'static World {
    static WORLD: OnceLock<World> = OnceLock::new();
    WORLD.get_or_init(|| {
        let tokio = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        let dir = tempfile::tempdir().unwrap();
        let api = tokio.block_on(async {
            let store = SqliteStore::open(SqliteOptions::new(dir.path().join("cairn.db")))
                .await
                .unwrap();
            let runtime = Runtime::new(None, GuestLimits::default()).unwrap();
            let executor = Executor::new(
                Arc::new(store),
                runtime,
                Arc::new(SystemClock),
                Limits::default(),
            )
            .await
            .unwrap();
            let limits = ApiLimits {
                // Long-polls must not stall the fuzzer.
                max_event_timeout: std::time::Duration::ZERO,
                default_event_timeout: std::time::Duration::ZERO,
                ..ApiLimits::default()
            };
            Api::new(
                executor,
                limits,
                AccessControl::new(
                    Some("admin-token-for-fuzzing"),
                    &["invoke-token-for-fuzzing".into()],
                )
                .expect("tokens of 16 characters or more"),
            )
        });
        World {
            tokio,
            api,
            _dir: dir,
        }
    })
}

const METHODS: [&str; 6] = ["GET", "POST", "PUT", "DELETE", "PATCH", "OPTIONS"];

fuzz_target!(|input: Input| {
    let world = world();
    let method = METHODS[usize::from(input.method) % METHODS.len()];
    let mut request = hyper::Request::builder()
        .method(method)
        .uri(format!("/{}", input.path));
    if let Some(token) = &input.token {
        request = request.header("authorization", format!("Bearer {token}"));
    }
    // Paths that are not valid URIs are refused by the HTTP parser before
    // they reach the API; only valid requests are the API's to answer.
    let Ok(request) = request.body(Full::new(Bytes::from(input.body))) else {
        return;
    };
    let response = world.tokio.block_on(world.api.handle(request));
    assert!(
        !response.status().is_server_error(),
        "{method} /{}: {}",
        input.path,
        response.status()
    );
});
