//! The table of every route of the host's own API (the routes modules
//! declare for `/app/` are in `crate::triggers`): its method, its path
//! pattern, the role it needs, and the endpoint that serves it. The router
//! dispatches from it, access control reads the role from it, 405s list
//! its methods, and a test holds it equal to the OpenAPI document, so none
//! of them can drift from what is served.

use super::access::Role;

/// What serves a route.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Endpoint {
    Health,
    Metrics,
    OpenApi,
    /// The operator's console: one document for every `/ui/` page.
    Console,
    ListModules,
    GetModule,
    PutModule,
    ListRuns,
    StartRun,
    GetRun,
    SendMessage,
    Cancel,
    Resume,
    Fork,
    Result,
    Steps,
    Events,
    Event,
    Messages,
    Streams,
    Stream,
    BulkCancel,
    BulkResume,
    ListQueues,
    GetQueue,
    PutQueue,
    DeleteQueue,
    ListSchedules,
    GetSchedule,
    PutSchedule,
    DeleteSchedule,
    PauseSchedule,
    ResumeSchedule,
    TriggerSchedule,
    BackfillSchedule,
    /// A route a module declared, under `/app/`.
    Trigger,
}

/// One route of the API.
#[derive(Debug, Clone, Copy)]
pub struct Route {
    pub method: &'static str,
    /// `{name}` is one path segment; `{path}` (last) the rest of the path.
    pub pattern: &'static str,
    pub role: Role,
    pub endpoint: Endpoint,
}

const fn route(
    method: &'static str,
    pattern: &'static str,
    role: Role,
    endpoint: Endpoint,
) -> Route {
    Route {
        method,
        pattern,
        role,
        endpoint,
    }
}

use Endpoint as E;
use Role::{Admin, Invoke, Metrics, Public};

pub const ROUTES: &[Route] = &[
    // Liveness, the API's description and the console's pages: no data
    // (the console reads the API with the token it is given).
    route("GET", "/healthz", Public, E::Health),
    route("GET", "/metrics", Metrics, E::Metrics),
    route("GET", "/openapi.json", Public, E::OpenApi),
    route("GET", "/ui", Public, E::Console),
    route("GET", "/ui/runs", Public, E::Console),
    route("GET", "/ui/runs/{id}", Public, E::Console),
    route("GET", "/ui/modules", Public, E::Console),
    route("GET", "/ui/modules/{name}", Public, E::Console),
    route("GET", "/v1/modules", Invoke, E::ListModules),
    route("GET", "/v1/modules/{name}", Invoke, E::GetModule),
    route("PUT", "/v1/modules/{name}", Admin, E::PutModule),
    route("GET", "/v1/workflows", Invoke, E::ListRuns),
    route("POST", "/v1/workflows", Invoke, E::StartRun),
    route("GET", "/v1/workflows/{id}", Invoke, E::GetRun),
    route(
        "POST",
        "/v1/workflows/{id}/messages",
        Invoke,
        E::SendMessage,
    ),
    route("GET", "/v1/workflows/{id}/messages", Invoke, E::Messages),
    route("POST", "/v1/workflows/{id}/cancel", Admin, E::Cancel),
    route("POST", "/v1/workflows/{id}/resume", Admin, E::Resume),
    route("POST", "/v1/workflows/{id}/fork", Admin, E::Fork),
    route("GET", "/v1/workflows/{id}/result", Invoke, E::Result),
    route("GET", "/v1/workflows/{id}/steps", Invoke, E::Steps),
    route("GET", "/v1/workflows/{id}/events", Invoke, E::Events),
    route("GET", "/v1/workflows/{id}/events/{key}", Invoke, E::Event),
    route("GET", "/v1/workflows/{id}/streams", Invoke, E::Streams),
    route(
        "GET",
        "/v1/workflows/{id}/streams/{name}",
        Invoke,
        E::Stream,
    ),
    route("POST", "/v1/bulk/cancel", Admin, E::BulkCancel),
    route("POST", "/v1/bulk/resume", Admin, E::BulkResume),
    route("GET", "/v1/queues", Invoke, E::ListQueues),
    route("GET", "/v1/queues/{name}", Invoke, E::GetQueue),
    route("PUT", "/v1/queues/{name}", Admin, E::PutQueue),
    route("DELETE", "/v1/queues/{name}", Admin, E::DeleteQueue),
    route("GET", "/v1/schedules", Invoke, E::ListSchedules),
    route("GET", "/v1/schedules/{name}", Invoke, E::GetSchedule),
    route("PUT", "/v1/schedules/{name}", Admin, E::PutSchedule),
    route("DELETE", "/v1/schedules/{name}", Admin, E::DeleteSchedule),
    route(
        "POST",
        "/v1/schedules/{name}/pause",
        Admin,
        E::PauseSchedule,
    ),
    route(
        "POST",
        "/v1/schedules/{name}/resume",
        Admin,
        E::ResumeSchedule,
    ),
    route(
        "POST",
        "/v1/schedules/{name}/trigger",
        Admin,
        E::TriggerSchedule,
    ),
    route(
        "POST",
        "/v1/schedules/{name}/backfill",
        Admin,
        E::BackfillSchedule,
    ),
    // The routes modules declare; `{path}` spans the rest of the path.
    route("GET", "/app/{path}", Invoke, E::Trigger),
    route("POST", "/app/{path}", Invoke, E::Trigger),
    route("PUT", "/app/{path}", Invoke, E::Trigger),
    route("PATCH", "/app/{path}", Invoke, E::Trigger),
    route("DELETE", "/app/{path}", Invoke, E::Trigger),
];

/// The role a request to a path no route serves needs: the same as a read,
/// so a client learns nothing of the API's paths without a token.
pub const UNROUTED: Role = Invoke;

/// Whether decoded path `segments` fit `pattern`.
pub fn matches(pattern: &str, segments: &[&str]) -> bool {
    let parts: Vec<&str> = pattern.trim_start_matches('/').split('/').collect();
    if parts.last() == Some(&"{path}") {
        // A trigger route: its prefix, then at least one more segment.
        let prefix = &parts[..parts.len() - 1];
        return segments.len() > prefix.len()
            && prefix
                .iter()
                .zip(segments)
                .all(|(part, segment)| part == segment);
    }
    parts.len() == segments.len()
        && parts
            .iter()
            .zip(segments)
            .all(|(part, segment)| part.starts_with('{') || part == segment)
}

/// The route serving `method` on `segments`, if any.
pub fn find(method: &str, segments: &[&str]) -> Option<&'static Route> {
    ROUTES
        .iter()
        .find(|route| route.method == method && matches(route.pattern, segments))
}

/// The methods served on a path, for a 405's `Allow`; `None` if no route
/// has that path.
pub fn allowed_methods(segments: &[&str]) -> Option<String> {
    let methods: Vec<&str> = ROUTES
        .iter()
        .filter(|route| matches(route.pattern, segments))
        .map(|route| route.method)
        .collect();
    (!methods.is_empty()).then(|| methods.join(", "))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parameters_match_one_segment() {
        assert!(matches("/v1/workflows/{id}", &["v1", "workflows", "a/b"]));
        assert!(!matches("/v1/workflows/{id}", &["v1", "workflows"]));
        assert!(!matches("/v1/workflows/{id}", &["v1", "modules", "x"]));
    }

    #[test]
    fn allowed_methods_list_every_method_of_a_path() {
        assert_eq!(
            allowed_methods(&["v1", "modules", "steps"]).as_deref(),
            Some("GET, PUT")
        );
        assert_eq!(allowed_methods(&["v2"]), None);
    }

    #[test]
    fn the_openapi_document_describes_exactly_the_routes() {
        let document: serde_json::Value =
            serde_json::from_str(include_str!("assets/openapi.json")).unwrap();
        let mut documented: Vec<(String, String)> = document["paths"]
            .as_object()
            .unwrap()
            .iter()
            .flat_map(|(path, item)| {
                item.as_object()
                    .unwrap()
                    .keys()
                    // Path-level parameters are not an operation.
                    .filter(|key| *key != "parameters")
                    .map(move |method| (method.to_uppercase(), path.clone()))
            })
            .collect();
        let mut served: Vec<(String, String)> = ROUTES
            .iter()
            .map(|route| (route.method.to_string(), route.pattern.to_string()))
            .collect();
        documented.sort();
        served.sort();
        assert_eq!(documented, served);
    }

    /// Every route in the table reaches a handler of the real router: the
    /// answer is never the router's own "no route" 404 or a 405.
    #[tokio::test]
    async fn the_router_serves_every_route_in_the_table() {
        use std::sync::Arc;

        use bytes::Bytes;
        use http_body_util::{BodyExt, Full};

        use crate::executor::{Executor, Limits, SystemClock};
        use crate::http::{AccessControl, Api, ApiLimits};
        use crate::runtime::{GuestLimits, Runtime};
        use crate::store::{SqliteOptions, SqliteStore};

        let dir = tempfile::tempdir().unwrap();
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
        let api = Api::new(executor, ApiLimits::default(), AccessControl::open());
        for Route {
            method, pattern, ..
        } in ROUTES
        {
            let path = pattern
                .split('/')
                .map(|part| if part.starts_with('{') { "x" } else { part })
                .collect::<Vec<_>>()
                .join("/");
            let request = hyper::Request::builder()
                .method(*method)
                .uri(format!("{path}?timeout_ms=0"))
                .body(Full::new(Bytes::new()))
                .unwrap();
            let response = api.handle(request).await;
            let status = response.status();
            let body = response.into_body().collect().await.unwrap().to_bytes();
            let body = String::from_utf8_lossy(&body);
            assert_ne!(
                status,
                hyper::StatusCode::METHOD_NOT_ALLOWED,
                "{method} {path}: {body}"
            );
            assert!(
                !body.contains("\"code\":\"not_found\""),
                "{method} {path} has no handler: {body}"
            );
        }
    }
}
