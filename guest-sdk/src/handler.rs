//! HTTP handlers: components that answer requests on the routes a module is
//! deployed with, and start and follow workflows as any client would.
//! Handlers are not durable; nothing they do is journaled.
//!
//! Enable the `handler` feature (and turn off the default `workflow`
//! feature, as a handler module is not a workflow module):
//!
//! ```toml
//! cairn-sdk = { version = "0.1", default-features = false, features = ["handler"] }
//! ```
//!
//! The seed's `eventListener` reads:
//!
//! ```ignore
//! use std::time::Duration;
//! use cairn_sdk::handler::{Request, Response, get_event, start_workflow};
//!
//! fn event_listener(_request: Request) -> cairn_sdk::Result<Response> {
//!     let id = start_workflow("steps", "steps_workflow", &(), None)?;
//!     let step1: Option<String> = get_event(&id, "step1", Duration::from_secs(10))?;
//!     let step2: Option<String> = get_event(&id, "step2", Duration::from_secs(10))?;
//!     Response::json(200, &(step1, step2))
//! }
//!
//! cairn_sdk::handler!(event_listener);
//! ```

use std::time::Duration;

use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::{Error, Result};

#[doc(hidden)]
pub mod bindings {
    //! Generated bindings of the `cairn:workflow` `handler` world.
    #![allow(missing_docs)]
    wit_bindgen::generate!({
        path: "wit",
        world: "handler-imports",
        default_bindings_module: "::cairn_sdk::handler::bindings",
        runtime_path: "::cairn_sdk::__private::wit_bindgen::rt",
    });
}

use bindings::cairn::workflow::client;

#[cfg(feature = "workflow")]
crate::error_from_wit!(bindings::cairn::workflow::types);

#[doc(hidden)]
pub use wasi as __wasi;

/// A request, as the handler sees it: its path is the route's own (without
/// the host's `/app` prefix).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Request {
    /// `GET`, `POST`, ...
    pub method: String,
    /// The path, e.g. `/events`.
    pub path: String,
    /// The query string, without `?`.
    pub query: Option<String>,
    /// Header names (lowercase) and values.
    pub headers: Vec<(String, Vec<u8>)>,
    /// The body's bytes.
    pub body: Vec<u8>,
}

impl Request {
    /// The body as JSON.
    pub fn json<T: DeserializeOwned>(&self) -> Result<T> {
        Ok(serde_json::from_slice(&self.body)?)
    }
}

/// A response to send.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Response {
    /// The status code.
    pub status: u16,
    /// Header names and values.
    pub headers: Vec<(String, Vec<u8>)>,
    /// The body's bytes.
    pub body: Vec<u8>,
}

impl Response {
    /// A JSON response.
    pub fn json<T: Serialize + ?Sized>(status: u16, value: &T) -> Result<Response> {
        Ok(Response {
            status,
            headers: vec![("content-type".into(), b"application/json".to_vec())],
            body: serde_json::to_vec(value)?,
        })
    }

    /// A plain-text response.
    pub fn text(status: u16, text: impl Into<String>) -> Response {
        Response {
            status,
            headers: vec![("content-type".into(), b"text/plain; charset=utf-8".to_vec())],
            body: text.into().into_bytes(),
        }
    }
}

pub use crate::RunResult;

/// Start workflow `workflow` of module `module` with `input`, and return the
/// run's id. With `id`, an existing run under that id is not started again.
pub fn start_workflow<I: Serialize + ?Sized>(
    module: &str,
    workflow: &str,
    input: &I,
    id: Option<&str>,
) -> Result<String> {
    let input = serde_json::to_string(input)?;
    client::start_workflow(module, workflow, &input, id).map_err(Error::from)
}

/// Wait up to `timeout` for event `key` of run `workflow_id`; `None` when the
/// time runs out or the run ended without setting it.
pub fn get_event<T: DeserializeOwned>(
    workflow_id: &str,
    key: &str,
    timeout: Duration,
) -> Result<Option<T>> {
    crate::decode_optional(client::get_event(workflow_id, key, crate::millis(timeout))?)
}

/// Send `message` to run `workflow_id` on `topic`; with an
/// `idempotency_key`, a duplicate is not delivered again.
pub fn send_message<T: Serialize + ?Sized>(
    workflow_id: &str,
    topic: &str,
    message: &T,
    idempotency_key: Option<&str>,
) -> Result<()> {
    let json = serde_json::to_string(message)?;
    client::send_message(workflow_id, topic, &json, idempotency_key).map_err(Error::from)
}

/// Read stream `name` of run `workflow_id` from `offset`, waiting up to
/// `timeout` for a value or the stream's end (not journaled).
pub fn read_stream<T: DeserializeOwned>(
    workflow_id: &str,
    name: &str,
    offset: u64,
    timeout: Duration,
) -> Result<crate::StreamChunk<T>> {
    let read = client::read_stream(workflow_id, name, offset, crate::millis(timeout))?;
    crate::StreamChunk::decode(read.values, read.closed)
}

/// Wait up to `timeout` for run `workflow_id` to end; `None` while it runs.
pub fn await_result(workflow_id: &str, timeout: Duration) -> Result<Option<RunResult>> {
    match client::await_result(workflow_id, crate::millis(timeout))? {
        Some(result) => Ok(Some(RunResult::decode(
            result.status,
            result.output,
            result.error,
        )?)),
        None => Ok(None),
    }
}

/// Export `handler`, a `fn(Request) -> Result<Response>`, as the module's
/// `wasi:http/incoming-handler`. An `Err` becomes a 500 with its message.
#[macro_export]
macro_rules! handler {
    ($handler:path) => {
        struct __CairnHandler;

        impl $crate::handler::__wasi::exports::wasi::http::incoming_handler::Guest
            for __CairnHandler
        {
            fn handle(
                request: $crate::handler::__wasi::http::types::IncomingRequest,
                out: $crate::handler::__wasi::http::types::ResponseOutparam,
            ) {
                $crate::handler::__private::serve(request, out, $handler);
            }
        }

        $crate::handler::__wasi::http::proxy::export!(__CairnHandler);
    };
}

#[doc(hidden)]
pub mod __private {
    use wasi::http::types::{
        Fields, IncomingBody, IncomingRequest, Method, OutgoingBody, OutgoingResponse,
        ResponseOutparam,
    };
    use wasi::io::streams::StreamError;

    use super::{Request, Response};

    /// Read the request, call the handler, write its response.
    pub fn serve(
        incoming: IncomingRequest,
        out: ResponseOutparam,
        handler: fn(Request) -> crate::Result<Response>,
    ) {
        let response = match read_request(&incoming) {
            Ok(request) => {
                handler(request).unwrap_or_else(|error| Response::text(500, error.to_string()))
            }
            Err(message) => Response::text(400, message),
        };
        write_response(out, response);
    }

    fn read_request(incoming: &IncomingRequest) -> Result<Request, String> {
        let method = match incoming.method() {
            Method::Get => "GET".to_owned(),
            Method::Head => "HEAD".to_owned(),
            Method::Post => "POST".to_owned(),
            Method::Put => "PUT".to_owned(),
            Method::Delete => "DELETE".to_owned(),
            Method::Connect => "CONNECT".to_owned(),
            Method::Options => "OPTIONS".to_owned(),
            Method::Trace => "TRACE".to_owned(),
            Method::Patch => "PATCH".to_owned(),
            Method::Other(other) => other,
        };
        let path_with_query = incoming.path_with_query().unwrap_or_else(|| "/".into());
        let (path, query) = match path_with_query.split_once('?') {
            Some((path, query)) => (path.to_owned(), Some(query.to_owned())),
            None => (path_with_query, None),
        };
        let headers = incoming.headers().entries();
        let body = incoming
            .consume()
            .map_err(|()| "the request body was already taken".to_owned())?;
        let mut bytes = Vec::new();
        {
            let stream = body
                .stream()
                .map_err(|()| "the request body cannot be read".to_owned())?;
            loop {
                match stream.blocking_read(64 * 1024) {
                    Ok(chunk) => bytes.extend_from_slice(&chunk),
                    Err(StreamError::Closed) => break,
                    Err(StreamError::LastOperationFailed(error)) => {
                        return Err(format!(
                            "reading the request body failed: {}",
                            error.to_debug_string()
                        ));
                    }
                }
            }
        }
        let _trailers = IncomingBody::finish(body);
        Ok(Request {
            method,
            path,
            query,
            headers,
            body: bytes,
        })
    }

    fn write_response(out: ResponseOutparam, response: Response) {
        let headers = Fields::from_list(&response.headers).unwrap_or_else(|_| Fields::new());
        let outgoing = OutgoingResponse::new(headers);
        // A status the host refuses becomes a 500 rather than a trap.
        if outgoing.set_status_code(response.status).is_err() {
            let _ = outgoing.set_status_code(500);
        }
        let Ok(body) = outgoing.body() else {
            return;
        };
        ResponseOutparam::set(out, Ok(outgoing));
        {
            let Ok(stream) = body.write() else {
                return;
            };
            // The host takes at most 4096 bytes per blocking write.
            for chunk in response.body.chunks(4096) {
                if stream.blocking_write_and_flush(chunk).is_err() {
                    return;
                }
            }
        }
        let _ = OutgoingBody::finish(body, None);
    }
}
