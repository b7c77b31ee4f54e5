//! A small HTTP client of the Cairn API, for the CLI and the test suite.

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::{Method, Request, StatusCode, Uri};
use hyper_util::client::legacy::Client as HyperClient;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;

#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    #[error("invalid server URL {0:?}: expected e.g. http://127.0.0.1:8080")]
    InvalidUrl(String),
    #[error("cannot reach the server at {url}: {detail}")]
    Unreachable { url: String, detail: String },
    #[error("the server's answer is not JSON: {0}")]
    NotJson(String),
}

/// A response: its status and its JSON body (`null` when empty).
#[derive(Debug, Clone)]
pub struct Reply {
    pub status: StatusCode,
    pub headers: hyper::HeaderMap,
    pub body: serde_json::Value,
}

impl Reply {
    /// `error.code` of an error response.
    pub fn error_code(&self) -> Option<&str> {
        self.body["error"]["code"].as_str()
    }
}

/// Talks to one Cairn server over HTTP/1.1 with pooled keep-alive
/// connections. Cheap to clone.
#[derive(Clone)]
pub struct Client {
    base: String,
    http: HyperClient<HttpConnector, Full<Bytes>>,
    /// `Bearer <token>`, sent with every request when set.
    authorization: Option<String>,
}

impl std::fmt::Debug for Client {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Client")
            .field("base", &self.base)
            .field(
                "authorization",
                &self.authorization.as_ref().map(|_| "<redacted>"),
            )
            .finish()
    }
}

impl Client {
    pub fn new(base: &str) -> Result<Self, ClientError> {
        let base = base.trim_end_matches('/').to_owned();
        if !base.starts_with("http://") || base.parse::<Uri>().is_err() {
            return Err(ClientError::InvalidUrl(base));
        }
        let mut connector = HttpConnector::new();
        connector.set_nodelay(true);
        let http = HyperClient::builder(TokioExecutor::new())
            .pool_max_idle_per_host(64)
            .build(connector);
        Ok(Self {
            base,
            http,
            authorization: None,
        })
    }

    /// The same client, sending `token` as its bearer token.
    pub fn with_token(&self, token: &str) -> Self {
        Self {
            authorization: Some(format!("Bearer {token}")),
            ..self.clone()
        }
    }

    pub fn base(&self) -> &str {
        &self.base
    }

    /// Send a request; `path` starts with `/` and is already encoded.
    pub async fn send(
        &self,
        method: Method,
        path: &str,
        content_type: Option<&str>,
        body: Bytes,
    ) -> Result<Reply, ClientError> {
        let content_type: Vec<(&str, &str)> = content_type
            .map(|value| ("content-type", value))
            .into_iter()
            .collect();
        self.send_with_headers(method, path, &content_type, body)
            .await
    }

    /// [`Client::send`] with these headers (`Host` among them, to override
    /// the URL's).
    pub async fn send_with_headers(
        &self,
        method: Method,
        path: &str,
        headers: &[(&str, &str)],
        body: Bytes,
    ) -> Result<Reply, ClientError> {
        let (status, headers, bytes) = self.exchange(method, path, headers, body).await?;
        let body = if bytes.is_empty() {
            serde_json::Value::Null
        } else {
            serde_json::from_slice(&bytes).map_err(|e| {
                ClientError::NotJson(format!("{e}: {}", String::from_utf8_lossy(&bytes)))
            })?
        };
        Ok(Reply {
            status,
            headers,
            body,
        })
    }

    /// `GET path`, its body as text (`/metrics`).
    pub async fn get_text(&self, path: &str) -> Result<(StatusCode, String), ClientError> {
        let (status, _, bytes) = self.exchange(Method::GET, path, &[], Bytes::new()).await?;
        Ok((status, String::from_utf8_lossy(&bytes).into_owned()))
    }

    async fn exchange(
        &self,
        method: Method,
        path: &str,
        headers: &[(&str, &str)],
        body: Bytes,
    ) -> Result<(StatusCode, hyper::HeaderMap, Bytes), ClientError> {
        let url = format!("{}{path}", self.base);
        let mut request = Request::builder().method(method).uri(&url);
        for (name, value) in headers {
            request = request.header(*name, *value);
        }
        if let Some(authorization) = &self.authorization {
            request = request.header(hyper::header::AUTHORIZATION, authorization);
        }
        let request = request
            .body(Full::new(body))
            .map_err(|_| ClientError::InvalidUrl(url.clone()))?;
        let unreachable = |detail: String| ClientError::Unreachable {
            url: url.clone(),
            detail,
        };
        let response = self
            .http
            .request(request)
            .await
            .map_err(|e| unreachable(format!("{e:?}")))?;
        let status = response.status();
        let headers = response.headers().clone();
        let bytes = response
            .into_body()
            .collect()
            .await
            .map_err(|e| unreachable(e.to_string()))?
            .to_bytes();
        Ok((status, headers, bytes))
    }

    pub async fn get(&self, path: &str) -> Result<Reply, ClientError> {
        self.send(Method::GET, path, None, Bytes::new()).await
    }

    pub async fn post_json(
        &self,
        path: &str,
        body: &serde_json::Value,
    ) -> Result<Reply, ClientError> {
        let bytes = Bytes::from(serde_json::to_vec(body).expect("a JSON value serialises"));
        self.send(Method::POST, path, Some("application/json"), bytes)
            .await
    }

    pub async fn put_json(
        &self,
        path: &str,
        body: &serde_json::Value,
    ) -> Result<Reply, ClientError> {
        let bytes = Bytes::from(serde_json::to_vec(body).expect("a JSON value serialises"));
        self.send(Method::PUT, path, Some("application/json"), bytes)
            .await
    }

    /// Upload a module.
    pub async fn deploy(&self, name: &str, component: Vec<u8>) -> Result<Reply, ClientError> {
        self.send(
            Method::PUT,
            &format!("/v1/modules/{name}"),
            Some("application/wasm"),
            Bytes::from(component),
        )
        .await
    }

    /// Upload a module with its routes manifest (JSON), as a
    /// `multipart/form-data` form; without routes, as plain bytes.
    pub async fn deploy_with_routes(
        &self,
        name: &str,
        component: Vec<u8>,
        routes: Option<Vec<u8>>,
    ) -> Result<Reply, ClientError> {
        self.deploy_with_settings(name, component, routes, "").await
    }

    /// Upload a module with its routes (optional) and its settings, a query
    /// string such as `allowed_hosts=api.example.com&run_timeout_ms=60000`.
    pub async fn deploy_with_settings(
        &self,
        name: &str,
        component: Vec<u8>,
        routes: Option<Vec<u8>>,
        settings: &str,
    ) -> Result<Reply, ClientError> {
        let path = match settings {
            "" => format!("/v1/modules/{name}"),
            query => format!("/v1/modules/{name}?{query}"),
        };
        let Some(routes) = routes else {
            return self
                .send(
                    Method::PUT,
                    &path,
                    Some("application/wasm"),
                    Bytes::from(component),
                )
                .await;
        };
        // A boundary that cannot occur in either part.
        let boundary = format!("cairn-{}", uuid::Uuid::now_v7().simple());
        let mut body = Vec::with_capacity(component.len() + routes.len() + 256);
        for (part, content_type, bytes) in [
            ("module", "application/wasm", &component),
            ("routes", "application/json", &routes),
        ] {
            body.extend_from_slice(
                format!(
                    "--{boundary}\r\nContent-Disposition: form-data; name=\"{part}\"\r\nContent-Type: {content_type}\r\n\r\n"
                )
                .as_bytes(),
            );
            body.extend_from_slice(bytes);
            body.extend_from_slice(b"\r\n");
        }
        body.extend_from_slice(format!("--{boundary}--\r\n").as_bytes());
        let content_type = format!("multipart/form-data; boundary={boundary}");
        self.send(Method::PUT, &path, Some(&content_type), Bytes::from(body))
            .await
    }

    /// Start a run; `id` is optional.
    pub async fn start(
        &self,
        module: &str,
        workflow: &str,
        input: serde_json::Value,
        id: Option<&str>,
    ) -> Result<Reply, ClientError> {
        let mut body = serde_json::json!({"module": module, "workflow": workflow, "input": input});
        if let Some(id) = id {
            body["id"] = id.into();
        }
        self.post_json("/v1/workflows", &body).await
    }

    pub async fn status(&self, id: &str) -> Result<Reply, ClientError> {
        self.get(&format!("/v1/workflows/{}", encode(id))).await
    }

    pub async fn event(&self, id: &str, key: &str, timeout_ms: u64) -> Result<Reply, ClientError> {
        self.get(&format!(
            "/v1/workflows/{}/events/{}?timeout_ms={timeout_ms}",
            encode(id),
            encode(key)
        ))
        .await
    }

    /// `GET /v1/workflows` with `query` (name, value) pairs.
    pub async fn list_runs(&self, query: &[(&str, String)]) -> Result<Reply, ClientError> {
        let query: Vec<String> = query
            .iter()
            .map(|(name, value)| format!("{name}={}", encode(value)))
            .collect();
        self.get(&format!("/v1/workflows?{}", query.join("&")))
            .await
    }

    /// `POST /v1/workflows/{id}/{action}`: `cancel` or `resume`.
    pub async fn run_action(&self, id: &str, action: &str) -> Result<Reply, ClientError> {
        self.send(
            Method::POST,
            &format!("/v1/workflows/{}/{action}", encode(id)),
            None,
            Bytes::new(),
        )
        .await
    }

    /// A run's journal.
    pub async fn steps(&self, id: &str) -> Result<Reply, ClientError> {
        self.get(&format!("/v1/workflows/{}/steps", encode(id)))
            .await
    }

    /// Send run `id` a message.
    pub async fn send_message(
        &self,
        id: &str,
        topic: &str,
        message: serde_json::Value,
        idempotency_key: Option<&str>,
    ) -> Result<Reply, ClientError> {
        let mut body = serde_json::json!({"topic": topic, "message": message});
        if let Some(key) = idempotency_key {
            body["idempotency_key"] = key.into();
        }
        self.post_json(&format!("/v1/workflows/{}/messages", encode(id)), &body)
            .await
    }

    pub async fn events(&self, id: &str) -> Result<Reply, ClientError> {
        self.get(&format!("/v1/workflows/{}/events", encode(id)))
            .await
    }
}

fn encode(segment: &str) -> String {
    crate::http::encode_segment(segment)
}
