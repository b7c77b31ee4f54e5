//! Access control: bearer tokens of two kinds. The admin token may do
//! anything; invoke tokens may start runs and read them. Tokens are compared
//! in constant time (through their SHA-256 digests, so their lengths do not
//! leak either) and never logged.

use hyper::{Method, StatusCode, header};
use sha2::{Digest, Sha256};

use super::error::ApiError;
use super::guard::TOKEN_PARAMETER;
use super::query::Query;

/// What a route needs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Role {
    /// Anyone: liveness.
    Public,
    /// Start runs, read runs, events and modules.
    Invoke,
    /// Deploy modules, cancel, resume and fork runs.
    Admin,
    /// `/metrics`: open from loopback; from elsewhere the admin token or
    /// the metrics token (invoke tokens do not see it).
    Metrics,
}

/// Who is asking, as far as limits per client go: the token it presented
/// (by a prefix of its digest; tokens are not kept), or else the address it
/// connects from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Caller {
    Token([u8; 8]),
    Address(std::net::IpAddr),
    /// A request that came with neither (served without a socket).
    Unknown,
}

impl std::fmt::Display for Caller {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Caller::Token(_) => f.write_str("this token"),
            Caller::Address(address) => write!(f, "address {address}"),
            Caller::Unknown => f.write_str("this client"),
        }
    }
}

/// The address a request came from, put in its extensions by the accept
/// loop.
#[derive(Debug, Clone, Copy)]
pub struct PeerAddr(pub std::net::SocketAddr);

/// The shortest token accepted.
pub const MIN_TOKEN_CHARS: usize = 16;

/// The configured tokens, kept as digests.
#[derive(Clone, Default)]
pub struct AccessControl {
    admin: Option<[u8; 32]>,
    invoke: Vec<[u8; 32]>,
    metrics: Option<[u8; 32]>,
}

impl std::fmt::Debug for AccessControl {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AccessControl")
            .field("admin", &self.admin.map(|_| "<redacted>"))
            .field("invoke", &format!("{} token(s)", self.invoke.len()))
            .field("metrics", &self.metrics.map(|_| "<redacted>"))
            .finish()
    }
}

fn digest(token: &str) -> [u8; 32] {
    Sha256::digest(token.as_bytes()).into()
}

/// Equal without an early exit, so timing tells nothing about where two
/// digests differ.
fn same(a: &[u8; 32], b: &[u8; 32]) -> bool {
    a.iter().zip(b).fold(0u8, |diff, (x, y)| diff | (x ^ y)) == 0
}

impl AccessControl {
    /// No tokens: everything is open (the host refuses this off loopback).
    pub fn open() -> Self {
        Self::default()
    }

    /// The admin token and the invoke tokens, each at least
    /// [`MIN_TOKEN_CHARS`] characters: an empty or short token (a stray
    /// comma in `CAIRN_INVOKE_TOKENS`, a placeholder) is refused, with which
    /// one it was, rather than let anyone in who guesses it.
    pub fn new(admin: Option<&str>, invoke: &[String]) -> Result<Self, String> {
        Ok(Self {
            admin: admin
                .map(|token| checked_token("the admin token".into(), token))
                .transpose()?,
            invoke: invoke
                .iter()
                .enumerate()
                .map(|(n, token)| checked_token(format!("invoke token #{}", n + 1), token))
                .collect::<Result<_, _>>()?,
            metrics: None,
        })
    }

    /// A token that reads `/metrics` and nothing else, for a scraper.
    pub fn with_metrics_token(mut self, token: Option<&str>) -> Result<Self, String> {
        self.metrics = token
            .map(|token| checked_token("the metrics token".into(), token))
            .transpose()?;
        Ok(self)
    }

    pub fn is_open(&self) -> bool {
        self.admin.is_none() && self.invoke.is_empty()
    }

    /// The role the request's bearer token grants.
    fn granted(&self, token: Option<&str>) -> Option<Role> {
        let token = token?.trim();
        let presented = digest(token);
        // Check every token, whatever matches, to keep the time constant.
        let admin = self.admin.as_ref().is_some_and(|a| same(a, &presented));
        let invoke = self
            .invoke
            .iter()
            .fold(false, |found, t| found | same(t, &presented));
        if admin {
            Some(Role::Admin)
        } else if invoke {
            Some(Role::Invoke)
        } else {
            None
        }
    }

    /// Allow the request, or say why not (401 without a valid token, 403
    /// with a token that does not grant enough), and say who the caller
    /// is. The token comes in the `Authorization` header, or with
    /// `query_token` (event streams, which browsers open without headers)
    /// as `?access_token=` of a GET.
    pub fn check<B>(
        &self,
        request: &hyper::Request<B>,
        needed: Role,
        query_token: bool,
    ) -> Result<Caller, ApiError> {
        let by_address = || match request.extensions().get::<PeerAddr>() {
            Some(PeerAddr(peer)) => Caller::Address(peer.ip()),
            None => Caller::Unknown,
        };
        if needed == Role::Public || self.is_open() {
            return Ok(by_address());
        }
        let header = request
            .headers()
            .get(header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.strip_prefix("Bearer "));
        if needed == Role::Metrics {
            return self.check_metrics(request, header).map(|()| by_address());
        }
        // Browsers' EventSource cannot send headers: reads may carry the
        // token in the query instead.
        let token = match header {
            Some(token) => Some(token.to_owned()),
            None if query_token && request.method() == Method::GET => {
                Query::parse(request.uri().query().unwrap_or(""))
                    .ok()
                    .and_then(|query| query.get(TOKEN_PARAMETER).map(str::to_owned))
            }
            None => None,
        };
        match self.granted(token.as_deref()) {
            None => Err(ApiError::with_status(
                StatusCode::UNAUTHORIZED,
                "unauthorized",
                "this route needs a bearer token: send `Authorization: Bearer <token>` (or, for an event stream, `?access_token=<token>`) with an invoke or admin token of this host",
            )),
            Some(granted) if granted < needed => Err(ApiError::with_status(
                StatusCode::FORBIDDEN,
                "forbidden",
                "this route needs the admin token; the token sent is an invoke token",
            )),
            Some(_) => {
                let digest = digest(token.as_deref().unwrap_or_default().trim());
                let mut prefix = [0; 8];
                prefix.copy_from_slice(&digest[..8]);
                Ok(Caller::Token(prefix))
            }
        }
    }
}

impl AccessControl {
    /// `/metrics` from loopback, or with the admin or the metrics token.
    fn check_metrics<B>(
        &self,
        request: &hyper::Request<B>,
        token: Option<&str>,
    ) -> Result<(), ApiError> {
        let from_loopback = request
            .extensions()
            .get::<PeerAddr>()
            .is_some_and(|PeerAddr(peer)| peer.ip().is_loopback());
        if from_loopback {
            return Ok(());
        }
        let presented = token.map(|token| digest(token.trim()));
        let matches = |expected: &Option<[u8; 32]>| matches!((expected, &presented), (Some(e), Some(p)) if same(e, p));
        // Both compared, whatever the first gives, to keep the time constant.
        let admin = matches(&self.admin);
        let metrics = matches(&self.metrics);
        if admin | metrics {
            Ok(())
        } else {
            Err(ApiError::with_status(
                StatusCode::UNAUTHORIZED,
                "unauthorized",
                "/metrics is open from loopback; from elsewhere send `Authorization: Bearer <token>` with the admin token or the metrics token (--metrics-token)",
            ))
        }
    }
}

/// A token's digest, once it is long enough to be one.
fn checked_token(what: String, token: &str) -> Result<[u8; 32], String> {
    let chars = token.trim().chars().count();
    if chars < MIN_TOKEN_CHARS {
        Err(format!(
            "{what} is {chars} characters long; tokens must be at least {MIN_TOKEN_CHARS} (e.g. `openssl rand -hex 32`), and a list has no empty entries"
        ))
    } else {
        Ok(digest(token.trim()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn request(token: Option<&str>) -> hyper::Request<()> {
        let mut builder = hyper::Request::builder();
        if let Some(token) = token {
            builder = builder.header(header::AUTHORIZATION, format!("Bearer {token}"));
        }
        builder.body(()).unwrap()
    }

    const ADMIN: &str = "admin-secret-0123456789";
    const INVOKE: &str = "invoke-secret-0123456789";

    #[test]
    fn empty_and_short_tokens_are_refused_naming_which() {
        let empty = AccessControl::new(Some(ADMIN), &[INVOKE.into(), String::new()]).unwrap_err();
        assert!(empty.contains("invoke token #2 is 0 characters"), "{empty}");
        let short = AccessControl::new(Some("admin-1"), &[]).unwrap_err();
        assert!(short.contains("the admin token is 7 characters"), "{short}");
        assert!(AccessControl::new(None, &["x".repeat(16)]).is_ok());
    }

    #[test]
    fn tokens_grant_their_role_and_no_more() {
        let access = AccessControl::new(Some(ADMIN), &[INVOKE.into()]).unwrap();
        assert!(
            access
                .check(&request(Some(ADMIN)), Role::Admin, false)
                .is_ok()
        );
        assert!(
            access
                .check(&request(Some(INVOKE)), Role::Invoke, false)
                .is_ok()
        );
        let forbidden = access
            .check(&request(Some(INVOKE)), Role::Admin, false)
            .unwrap_err();
        assert_eq!(forbidden.status, StatusCode::FORBIDDEN);
        for token in [
            None,
            Some("wrong"),
            Some("admin-secret-0123456789X"),
            Some(""),
        ] {
            let refused = access
                .check(&request(token), Role::Invoke, false)
                .unwrap_err();
            assert_eq!(refused.status, StatusCode::UNAUTHORIZED, "{token:?}");
        }
        assert!(access.check(&request(None), Role::Public, false).is_ok());
    }

    #[test]
    fn reads_may_carry_the_token_in_the_query() {
        let access = AccessControl::new(Some(ADMIN), &[INVOKE.into()]).unwrap();
        let read = |method: Method, query: &str| {
            let request = hyper::Request::builder()
                .method(method)
                .uri(format!("/v1/workflows/a/events?{query}"))
                .body(())
                .unwrap();
            access.check(&request, Role::Invoke, true)
        };
        assert!(read(Method::GET, &format!("access_token={INVOKE}")).is_ok());
        assert!(read(Method::GET, "access_token=wrong").is_err());
        assert!(
            read(Method::POST, &format!("access_token={INVOKE}")).is_err(),
            "only reads take a token from the query"
        );
        let elsewhere = hyper::Request::get(format!("/v1/modules?access_token={INVOKE}"))
            .body(())
            .unwrap();
        assert!(
            access.check(&elsewhere, Role::Invoke, false).is_err(),
            "only event streams take a token from the query"
        );
    }

    #[test]
    fn without_tokens_everything_is_open() {
        assert!(
            AccessControl::open()
                .check(&request(None), Role::Admin, false)
                .is_ok()
        );
    }

    #[test]
    fn tokens_never_show_in_debug_output() {
        let access = AccessControl::new(Some(ADMIN), &[INVOKE.into()]).unwrap();
        let shown = format!("{access:?}");
        assert!(!shown.contains("secret"), "{shown}");
    }
}
