//! Outgoing HTTP from a workflow's steps, over the standard
//! `wasi:http/outgoing-handler` (feature `http`).
//!
//! The host sends a request only from inside a [`step`](crate::step) and
//! only to a host on the module's allow-list (`allowed_hosts`, given at
//! deploy time); anything else fails with an error of kind
//! [`ErrorKind::Http`](crate::ErrorKind::Http) that says why. Any other
//! library built on `wasi:http` works the same way.
//!
//! ```no_run
//! use cairn_sdk::{http, step};
//!
//! # fn f() -> cairn_sdk::Result<()> {
//! let quote: String = step("quote", || {
//!     let response = http::get("http://127.0.0.1:8080/quote")?;
//!     response.text()
//! })?;
//! # Ok(())
//! # }
//! ```

use wasi::http::outgoing_handler;
use wasi::http::types::{
    ErrorCode, Fields, IncomingBody, Method, OutgoingBody, OutgoingRequest, Scheme,
};
use wasi::io::streams::StreamError;

use crate::{Error, ErrorKind, Result};

/// A response: its status, headers and whole body.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Response {
    /// The HTTP status code.
    pub status: u16,
    /// The headers, in order.
    pub headers: Vec<(String, Vec<u8>)>,
    /// The body.
    pub body: Vec<u8>,
}

impl Response {
    /// The body as UTF-8 text; an error for a status that is not 2xx.
    pub fn text(self) -> Result<String> {
        let body = String::from_utf8(self.body)
            .map_err(|_| http_error("the response body is not UTF-8".into()))?;
        if !(200..300).contains(&self.status) {
            return Err(http_error(format!("status {}: {body}", self.status)));
        }
        Ok(body)
    }

    /// The body as JSON; an error for a status that is not 2xx.
    pub fn json<T: serde::de::DeserializeOwned>(self) -> Result<T> {
        let text = self.text()?;
        Ok(serde_json::from_str(&text)?)
    }
}

fn http_error(message: String) -> Error {
    Error {
        kind: ErrorKind::Http,
        message,
    }
}

/// `GET url`.
pub fn get(url: &str) -> Result<Response> {
    request("GET", url, &[], None)
}

/// `POST url` with `body` as JSON.
pub fn post_json<T: serde::Serialize + ?Sized>(url: &str, body: &T) -> Result<Response> {
    let body = serde_json::to_vec(body)?;
    request(
        "POST",
        url,
        &[("content-type", "application/json")],
        Some(&body),
    )
}

/// Send a request and read the whole response. `url` is
/// `http://` or `https://`, host, optional port, path and query.
pub fn request(
    method: &str,
    url: &str,
    headers: &[(&str, &str)],
    body: Option<&[u8]>,
) -> Result<Response> {
    let failed = |what: &str, detail: String| http_error(format!("{method} {url}: {what}{detail}"));
    let (scheme, rest) = if let Some(rest) = url.strip_prefix("http://") {
        (Scheme::Http, rest)
    } else if let Some(rest) = url.strip_prefix("https://") {
        (Scheme::Https, rest)
    } else {
        return Err(failed(
            "the URL must start with http:// or https://",
            String::new(),
        ));
    };
    let (authority, path) = match rest.find(['/', '?']) {
        Some(i) if rest[i..].starts_with('?') => (&rest[..i], format!("/{}", &rest[i..])),
        Some(i) => (&rest[..i], rest[i..].to_owned()),
        None => (rest, "/".to_owned()),
    };
    let fields: Vec<(String, Vec<u8>)> = headers
        .iter()
        .map(|(name, value)| (name.to_string(), value.as_bytes().to_vec()))
        .collect();
    let fields = Fields::from_list(&fields)
        .map_err(|e| failed("a header is not allowed: ", format!("{e:?}")))?;
    let request = OutgoingRequest::new(fields);
    let method_value = match method {
        "GET" => Method::Get,
        "HEAD" => Method::Head,
        "POST" => Method::Post,
        "PUT" => Method::Put,
        "DELETE" => Method::Delete,
        "PATCH" => Method::Patch,
        "OPTIONS" => Method::Options,
        other => Method::Other(other.to_owned()),
    };
    let set = request
        .set_method(&method_value)
        .and(request.set_scheme(Some(&scheme)))
        .and(request.set_authority(Some(authority)))
        .and(request.set_path_with_query(Some(&path)));
    set.map_err(|()| failed("the URL is not valid", String::new()))?;
    let outgoing_body = request
        .body()
        .map_err(|()| failed("the request body cannot be written", String::new()))?;
    let pending = outgoing_handler::handle(request, None).map_err(|e| failed("", describe(&e)))?;
    {
        let stream = outgoing_body
            .write()
            .map_err(|()| failed("the request body cannot be written", String::new()))?;
        // The host takes at most 4096 bytes per blocking write.
        for chunk in body.unwrap_or_default().chunks(4096) {
            stream
                .blocking_write_and_flush(chunk)
                .map_err(|e| failed("writing the request body failed: ", format!("{e:?}")))?;
        }
    }
    OutgoingBody::finish(outgoing_body, None).map_err(|e| failed("", describe(&e)))?;
    pending.subscribe().block();
    let response = match pending.get() {
        Some(Ok(Ok(response))) => response,
        Some(Ok(Err(e))) => return Err(failed("", describe(&e))),
        _ => return Err(failed("no response", String::new())),
    };
    let status = response.status();
    let headers = response.headers().entries();
    let incoming = response
        .consume()
        .map_err(|()| failed("the response body cannot be read", String::new()))?;
    let mut bytes = Vec::new();
    {
        let stream = incoming
            .stream()
            .map_err(|()| failed("the response body cannot be read", String::new()))?;
        loop {
            match stream.blocking_read(64 * 1024) {
                Ok(chunk) => bytes.extend_from_slice(&chunk),
                Err(StreamError::Closed) => break,
                Err(StreamError::LastOperationFailed(e)) => {
                    return Err(failed("reading the response failed: ", e.to_debug_string()));
                }
            }
        }
    }
    let _trailers = IncomingBody::finish(incoming);
    Ok(Response {
        status,
        headers,
        body: bytes,
    })
}

/// The host's reason, when it gave one (a refusal always does).
fn describe(error: &ErrorCode) -> String {
    match error {
        ErrorCode::InternalError(Some(message)) => message.clone(),
        other => format!("{other:?}"),
    }
}
