//! `GET /metrics`: the host's metrics in the OpenMetrics text format, with
//! the gauges of what is in flight read at the moment of the scrape; and
//! the route template a request is counted under.

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::header::{self, HeaderValue};
use hyper::{Method, Response};

use super::api_routes;
use super::query::path_segments;
use super::respond::ApiResult;
use super::router::{Api, Body};
use crate::metrics::{KindLabels, QueueLabels, StateLabels, metrics};

const CONTENT_TYPE: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";

impl Api {
    pub(super) async fn metrics(&self) -> ApiResult {
        let metrics = metrics();
        let executor = self.executor();
        let load = executor.load();
        let parked = executor.parked_count().await?;
        let gauge = |n: u64| i64::try_from(n).unwrap_or(i64::MAX);
        for (state, count) in [
            ("executing", load.live_instances as u64),
            ("waiting_for_instance", load.queued_runs as u64),
            ("parked", parked),
        ] {
            metrics
                .runs
                .get_or_create(&StateLabels { state })
                .set(gauge(count));
        }
        // A queue emptied since the last scrape shows 0, not its old depth.
        metrics.queued.clear();
        for (queue, depth) in executor.queue_depths().await? {
            let queue = queue.map(|q| q.to_string()).unwrap_or_default();
            metrics
                .queued
                .get_or_create(&QueueLabels { queue })
                .set(gauge(depth.enqueued));
        }
        let waits = self.wait_counts();
        for (kind, count) in [
            ("poll", waits.polls),
            ("stream", waits.streams),
            ("trigger", waits.triggers),
        ] {
            metrics
                .open_waits
                .get_or_create(&KindLabels { kind })
                .set(gauge(count as u64));
        }
        Ok(text_response(metrics.encode()))
    }
}

fn text_response(text: String) -> Response<Body> {
    let mut response = Response::new(Full::new(Bytes::from(text)).boxed());
    response
        .headers_mut()
        .insert(header::CONTENT_TYPE, HeaderValue::from_static(CONTENT_TYPE));
    response
}

/// What a request is counted under: its API route's template
/// (`/v1/workflows/{id}`; every trigger is `/app/{path}`), `unrouted` for
/// paths no route serves, and its method, or `other` for one no route
/// has, so that no client can make the label sets grow.
pub(super) fn route_label(method: &Method, path: &str) -> (&'static str, &'static str) {
    let method = match *method {
        Method::GET => "GET",
        Method::POST => "POST",
        Method::PUT => "PUT",
        Method::PATCH => "PATCH",
        Method::DELETE => "DELETE",
        Method::HEAD => "HEAD",
        Method::OPTIONS => "OPTIONS",
        _ => "other",
    };
    let route = path_segments(path).ok().and_then(|segments| {
        let segments: Vec<&str> = segments.iter().map(String::as_str).collect();
        api_routes::find(method, &segments)
            .or_else(|| api_routes::find("POST", &segments))
            .map(|route| route.pattern)
    });
    (method, route.unwrap_or("unrouted"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn requests_are_counted_under_their_route_template() {
        assert_eq!(
            route_label(&Method::GET, "/v1/workflows/run-1/events/step1"),
            ("GET", "/v1/workflows/{id}/events/{key}")
        );
        assert_eq!(
            route_label(&Method::DELETE, "/app/orders/7"),
            ("DELETE", "/app/{path}")
        );
        assert_eq!(
            route_label(&Method::GET, "/no/such/path"),
            ("GET", "unrouted")
        );
        let odd = Method::from_bytes(b"BREW").unwrap();
        assert_eq!(route_label(&odd, "/healthz").0, "other");
    }
}
