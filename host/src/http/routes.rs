//! The table of every route the host serves. The router answers 405 from
//! it, and a test holds it equal to the OpenAPI document, so the document
//! cannot drift from what is served.

/// Method and path pattern of each route; `{name}` is one path segment.
pub const ROUTES: &[(&str, &str)] = &[
    ("GET", "/healthz"),
    ("GET", "/openapi.json"),
    ("GET", "/ui/runs/{id}"),
    ("GET", "/v1/modules"),
    ("GET", "/v1/modules/{name}"),
    ("PUT", "/v1/modules/{name}"),
    ("GET", "/v1/workflows"),
    ("POST", "/v1/workflows"),
    ("GET", "/v1/workflows/{id}"),
    ("POST", "/v1/workflows/{id}/messages"),
    ("POST", "/v1/workflows/{id}/cancel"),
    ("POST", "/v1/workflows/{id}/resume"),
    ("POST", "/v1/workflows/{id}/fork"),
    ("GET", "/v1/workflows/{id}/result"),
    ("GET", "/v1/workflows/{id}/steps"),
    ("GET", "/v1/workflows/{id}/events"),
    ("GET", "/v1/workflows/{id}/events/{key}"),
    // The routes modules declare; `{path}` spans the rest of the path.
    ("GET", "/app/{path}"),
    ("POST", "/app/{path}"),
    ("PUT", "/app/{path}"),
    ("PATCH", "/app/{path}"),
    ("DELETE", "/app/{path}"),
];

/// Whether decoded path `segments` fit `pattern`.
pub fn matches(pattern: &str, segments: &[&str]) -> bool {
    let parts: Vec<&str> = pattern.trim_start_matches('/').split('/').collect();
    parts.len() == segments.len()
        && parts
            .iter()
            .zip(segments)
            .all(|(part, segment)| part.starts_with('{') || part == segment)
}

/// The methods served on a path, for a 405's `Allow`; `None` if no route
/// has that path.
pub fn allowed_methods(segments: &[&str]) -> Option<String> {
    let methods: Vec<&str> = ROUTES
        .iter()
        .filter(|(_, pattern)| matches(pattern, segments))
        .map(|(method, _)| *method)
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
            .map(|(method, path)| (method.to_string(), path.to_string()))
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
        for (method, pattern) in ROUTES {
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
