//! What a request must be to come in, and what of it goes on: an open host
//! (no tokens, loopback only) serves only requests addressed to loopback
//! from no other site, so neither a web page nor a DNS-rebinding page can
//! drive it; and credentials stop at the front door, so neither a guest
//! nor the database ever sees a token or a cookie.

use hyper::header::{self, HeaderMap};
use hyper::{Request, StatusCode, Uri};

use super::error::ApiError;
use super::query::percent_decode;

/// The query parameter that may carry a token (for event streams, which
/// browsers open without headers).
pub(super) const TOKEN_PARAMETER: &str = "access_token";

/// Whether `authority` (a `Host` header or an origin's host and port)
/// names this machine's loopback interface.
fn is_loopback(authority: &str) -> bool {
    let host = match authority.strip_prefix('[') {
        // [::1]:8080
        Some(rest) => rest.split(']').next().unwrap_or(""),
        None => authority
            .rsplit_once(':')
            .map_or(authority, |(host, port)| {
                if port.chars().all(|c| c.is_ascii_digit()) {
                    host
                } else {
                    authority
                }
            }),
    };
    let host = host.to_ascii_lowercase();
    host == "localhost"
        || host.ends_with(".localhost")
        || host == "::1"
        || host
            .parse::<std::net::Ipv4Addr>()
            .is_ok_and(|ip| ip.is_loopback())
}

/// Refuse a request to an open host that is addressed to another name
/// (DNS rebinding) or sent by another site's page (`Origin`).
pub(super) fn check_open_host(headers: &HeaderMap) -> Result<(), ApiError> {
    let host = headers
        .get(header::HOST)
        .and_then(|h| h.to_str().ok())
        .unwrap_or("");
    if !is_loopback(host) {
        return Err(ApiError::with_status(
            StatusCode::FORBIDDEN,
            "not_loopback",
            format!(
                "this host has no access tokens, so it serves only requests addressed to loopback (Host: localhost, 127.0.0.1 or [::1]); got Host: {host:?}. Configure --admin-token to serve other names"
            ),
        ));
    }
    if let Some(origin) = headers.get(header::ORIGIN) {
        let origin = origin.to_str().unwrap_or("");
        let authority = origin
            .strip_prefix("http://")
            .or_else(|| origin.strip_prefix("https://"))
            .unwrap_or("");
        if !is_loopback(authority) {
            return Err(ApiError::with_status(
                StatusCode::FORBIDDEN,
                "cross_site",
                format!(
                    "this host has no access tokens and refuses requests from other sites' pages (Origin: {origin:?}); only loopback origins are served"
                ),
            ));
        }
    }
    Ok(())
}

/// The request without its credentials: no `Authorization`, `Cookie` or
/// `Proxy-Authorization` header and no `access_token` in the query, so
/// that neither a guest (a handler, or a workflow route's `request` input)
/// nor the store sees them.
pub(super) fn without_credentials<B>(mut request: Request<B>) -> Request<B> {
    let headers = request.headers_mut();
    for name in [
        header::AUTHORIZATION,
        header::COOKIE,
        header::PROXY_AUTHORIZATION,
    ] {
        headers.remove(name);
    }
    if let Some(query) = request.uri().query()
        && query.contains(TOKEN_PARAMETER)
    {
        let kept: Vec<&str> = query
            .split('&')
            .filter(|pair| {
                let key = pair.split('=').next().unwrap_or("");
                percent_decode(&key.replace('+', " ")).as_deref() != Some(TOKEN_PARAMETER)
            })
            .collect();
        let path = request.uri().path().to_owned();
        let path_and_query = if kept.is_empty() {
            path
        } else {
            format!("{path}?{}", kept.join("&"))
        };
        let mut parts = request.uri().clone().into_parts();
        if let Ok(rebuilt) = path_and_query.parse() {
            parts.path_and_query = Some(rebuilt);
            if let Ok(uri) = Uri::from_parts(parts) {
                *request.uri_mut() = uri;
            }
        }
    }
    request
}

/// The media type of the body (`Content-Type` without its parameters,
/// lowercase), if it names one.
pub(super) fn media_type(headers: &HeaderMap) -> Option<String> {
    let value = headers.get(header::CONTENT_TYPE)?;
    Some(
        value
            .to_str()
            .unwrap_or("")
            .split(';')
            .next()
            .unwrap_or("")
            .trim()
            .to_ascii_lowercase(),
    )
}

/// Refuse a JSON body sent as another media type: a web page can send
/// `text/plain` (or a form) anywhere without asking, JSON only where the
/// server allows it. No `Content-Type` at all is accepted (no browser
/// sends a body without one).
pub(super) fn check_json_content_type(headers: &HeaderMap) -> Result<(), ApiError> {
    let Some(media) = media_type(headers) else {
        return Ok(());
    };
    if media == "application/json"
        || (media.starts_with("application/") && media.ends_with("+json"))
    {
        return Ok(());
    }
    Err(ApiError::with_status(
        StatusCode::UNSUPPORTED_MEDIA_TYPE,
        "unsupported_media_type",
        format!(
            "this route takes a JSON body: send it with `Content-Type: application/json` (e.g. `curl --json '{{...}}'`); got {media:?}"
        ),
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(pairs: &[(&'static str, &str)]) -> HeaderMap {
        let mut map = HeaderMap::new();
        for (name, value) in pairs {
            map.insert(*name, value.parse().unwrap());
        }
        map
    }

    #[test]
    fn an_open_host_serves_loopback_names_from_loopback_pages_only() {
        for host in [
            "localhost:8080",
            "127.0.0.1:9",
            "[::1]:80",
            "localhost",
            "app.localhost:1",
        ] {
            assert!(
                check_open_host(&headers(&[("host", host)])).is_ok(),
                "{host}"
            );
        }
        for host in ["evil.example", "evil.example:8080", "10.0.0.1:80", ""] {
            assert!(
                check_open_host(&headers(&[("host", host)])).is_err(),
                "{host}"
            );
        }
        let local = [("host", "127.0.0.1:8080")];
        assert!(
            check_open_host(&headers(&[local[0], ("origin", "http://localhost:3000")])).is_ok()
        );
        let error =
            check_open_host(&headers(&[local[0], ("origin", "http://evil.example")])).unwrap_err();
        assert_eq!(error.status, StatusCode::FORBIDDEN);
        assert!(check_open_host(&headers(&[local[0], ("origin", "null")])).is_err());
    }

    #[test]
    fn credentials_are_gone_and_the_rest_of_the_query_stays() {
        let request = Request::get("/app/echo?a=1&access_token=secret&b=x%20y&access%5Ftoken=2")
            .header("authorization", "Bearer secret")
            .header("cookie", "session=1")
            .header("x-kept", "yes")
            .body(())
            .unwrap();
        let request = without_credentials(request);
        assert_eq!(request.uri().query(), Some("a=1&b=x%20y"));
        assert!(request.headers().get("authorization").is_none());
        assert!(request.headers().get("cookie").is_none());
        assert_eq!(request.headers()["x-kept"], "yes");
        let only = without_credentials(Request::get("/v1?access_token=s").body(()).unwrap());
        assert_eq!(only.uri().to_string(), "/v1");
    }

    #[test]
    fn json_bodies_come_as_json() {
        for ok in [
            "application/json",
            "application/json; charset=utf-8",
            "application/merge-patch+json",
        ] {
            assert!(
                check_json_content_type(&headers(&[("content-type", ok)])).is_ok(),
                "{ok}"
            );
        }
        assert!(check_json_content_type(&HeaderMap::new()).is_ok());
        for refused in [
            "text/plain",
            "application/x-www-form-urlencoded",
            "multipart/form-data; boundary=x",
        ] {
            let error =
                check_json_content_type(&headers(&[("content-type", refused)])).unwrap_err();
            assert_eq!(
                error.status,
                StatusCode::UNSUPPORTED_MEDIA_TYPE,
                "{refused}"
            );
        }
    }
}
