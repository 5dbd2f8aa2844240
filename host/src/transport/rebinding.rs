//! The DNS-rebinding guard for the routes beside `/mcp` (`/health` and the RFC 9728 metadata):
//! the Host and Origin allow-lists judged as rmcp judges them for `/mcp`, with its answers. A
//! page that rebinds its name to this host must not read plugin names, failure paths or peer
//! URLs from `/health` any more than call tools at `/mcp`.

use std::sync::Arc;

use axum::extract::{Request, State};
use axum::http::{HeaderMap, StatusCode, Uri, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};

/// The allow-lists, parsed once (every request is checked).
pub(super) struct Rebinding {
    hosts: Vec<(String, Option<u16>)>,
    origins: Vec<AllowedOrigin>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Origin {
    Null,
    Tuple { scheme: String, host: String, port: Option<u16> },
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum AllowedPort {
    /// `:*`
    Any,
    /// No port in the entry: any port, as rmcp 3.11 still takes it.
    Unspecified,
    Exact(u16),
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum AllowedOrigin {
    Null,
    Tuple { scheme: String, host: String, port: AllowedPort },
}

impl Rebinding {
    /// The same lists the `/mcp` service is configured with.
    pub(super) fn new(hosts: &[String], origins: &[String]) -> Self {
        Self {
            hosts: hosts.iter().filter_map(|allowed| allowed_host(allowed)).collect(),
            origins: origins.iter().filter_map(|allowed| allowed_origin(allowed)).collect(),
        }
    }

    /// `Err` with rmcp's answer (403, or 400 for a Host header that is not an authority).
    pub(super) fn check(&self, uri: &Uri, headers: &HeaderMap) -> Result<(), Refusal> {
        let (host, port) = request_host(uri, headers)?;
        let host_allowed = self.hosts.is_empty()
            || self.hosts.iter().any(|(name, allowed)| *name == host && allowed.is_none_or(|p| port == Some(p)));
        if !host_allowed {
            tracing::warn!(%host, "refused a request with a Host not allowed (possible DNS rebinding)");
            return Err(forbidden("Forbidden: Host header is not allowed"));
        }
        let Some(origin) = headers.get(header::ORIGIN) else { return Ok(()) };
        if self.origins.is_empty() {
            return Ok(());
        }
        let origin = origin.to_str().map_err(|_| forbidden("Forbidden: Invalid Origin header encoding"))?;
        let origin = parse_origin(origin).ok_or_else(|| forbidden("Forbidden: Invalid Origin header"))?;
        if !self.origins.iter().any(|allowed| origin_matches(allowed, &origin)) {
            tracing::warn!(?origin, "refused a request with an Origin not allowed (possible cross-origin attack)");
            return Err(forbidden("Forbidden: Origin header is not allowed"));
        }
        Ok(())
    }
}

/// The axum middleware: a request the guard refuses never reaches its handler.
pub(super) async fn guard(State(rebinding): State<Arc<Rebinding>>, request: Request, next: Next) -> Response {
    match rebinding.check(request.uri(), request.headers()) {
        Ok(()) => next.run(request).await,
        Err(refusal) => refusal.into_response(),
    }
}

/// A refused request: rmcp's status and plain-text message.
#[derive(Debug)]
pub(super) struct Refusal {
    pub status: StatusCode,
    pub message: &'static str,
}

impl IntoResponse for Refusal {
    fn into_response(self) -> Response {
        (self.status, self.message).into_response()
    }
}

fn forbidden(message: &'static str) -> Refusal {
    Refusal { status: StatusCode::FORBIDDEN, message }
}

fn bad_request(message: &'static str) -> Refusal {
    Refusal { status: StatusCode::BAD_REQUEST, message }
}

/// Lowercase, without IPv6 brackets: `[::1]` and `::1` are one host.
fn normalize_host(host: &str) -> String {
    host.trim_matches('[').trim_matches(']').to_ascii_lowercase()
}

fn allowed_host(allowed: &str) -> Option<(String, Option<u16>)> {
    let allowed = allowed.trim();
    if allowed.is_empty() {
        return None;
    }
    match allowed.parse::<axum::http::uri::Authority>() {
        Ok(authority) => Some((normalize_host(authority.host()), authority.port_u16())),
        // `::1` is no authority (its colons read as a port), but names a host all the same.
        Err(_) => Some((normalize_host(allowed), None)),
    }
}

/// The request's host and port: its Host header, or the URI's authority (HTTP/2).
fn request_host(uri: &Uri, headers: &HeaderMap) -> Result<(String, Option<u16>), Refusal> {
    if let Some(host) = headers.get(header::HOST) {
        let host = host.to_str().map_err(|_| bad_request("Bad Request: Invalid Host header encoding"))?;
        let authority =
            host.parse::<axum::http::uri::Authority>().map_err(|_| bad_request("Bad Request: Invalid Host header"))?;
        return Ok((normalize_host(authority.host()), authority.port_u16()));
    }
    let authority = uri.authority().ok_or_else(|| bad_request("Bad Request: missing Host header"))?;
    Ok((normalize_host(authority.host()), authority.port_u16()))
}

fn parse_origin(value: &str) -> Option<Origin> {
    let value = value.trim();
    if value.is_empty() {
        return None;
    }
    if value.eq_ignore_ascii_case("null") {
        return Some(Origin::Null);
    }
    let uri = value.parse::<Uri>().ok()?;
    let scheme = uri.scheme_str()?.to_ascii_lowercase();
    let authority = uri.authority()?;
    Some(Origin::Tuple { scheme, host: normalize_host(authority.host()), port: authority.port_u16() })
}

fn allowed_origin(value: &str) -> Option<AllowedOrigin> {
    let value = value.trim();
    if let Some(base) = value.strip_suffix(":*") {
        let Origin::Tuple { scheme, host, port: None } = parse_origin(base)? else { return None };
        return Some(AllowedOrigin::Tuple { scheme, host, port: AllowedPort::Any });
    }
    Some(match parse_origin(value)? {
        Origin::Null => AllowedOrigin::Null,
        Origin::Tuple { scheme, host, port } => {
            AllowedOrigin::Tuple { scheme, host, port: port.map_or(AllowedPort::Unspecified, AllowedPort::Exact) }
        }
    })
}

fn origin_matches(allowed: &AllowedOrigin, origin: &Origin) -> bool {
    match (allowed, origin) {
        (AllowedOrigin::Null, Origin::Null) => true,
        (
            AllowedOrigin::Tuple { scheme: a_scheme, host: a_host, port: a_port },
            Origin::Tuple { scheme, host, port },
        ) => {
            let port_matches = match a_port {
                AllowedPort::Any | AllowedPort::Unspecified => true,
                // An origin leaves out its scheme's default port (RFC 6454 §6.2).
                AllowedPort::Exact(allowed) => port.or_else(|| default_port(scheme)) == Some(*allowed),
            };
            a_scheme == scheme && a_host == host && port_matches
        }
        _ => false,
    }
}

fn default_port(scheme: &str) -> Option<u16> {
    match scheme {
        "http" => Some(80),
        "https" => Some(443),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(pairs: &[(&'static str, &str)]) -> HeaderMap {
        let mut headers = HeaderMap::new();
        for (name, value) in pairs {
            if let Ok(value) = value.parse() {
                headers.insert(*name, value);
            }
        }
        headers
    }

    fn guard() -> Rebinding {
        let hosts = ["localhost", "127.0.0.1", "::1", "[::1]", "mcp.example.com:8443"].map(String::from);
        let origins = ["http://localhost:*", "http://[::1]:*", "https://app.example.com", "https://x.example:443"]
            .map(String::from);
        Rebinding::new(&hosts, &origins)
    }

    fn status(pairs: &[(&'static str, &str)]) -> Option<StatusCode> {
        guard().check(&Uri::from_static("/health"), &headers(pairs)).err().map(|r| r.status)
    }

    #[test]
    fn hosts_and_origins_are_judged_as_rmcp_judges_them() {
        assert_eq!(status(&[("host", "127.0.0.1:8080")]), None);
        assert_eq!(status(&[("host", "[::1]:8080")]), None);
        assert_eq!(status(&[("host", "LOCALHOST")]), None);
        assert_eq!(status(&[("host", "mcp.example.com:8443")]), None);
        assert_eq!(status(&[("host", "mcp.example.com:8444")]), Some(StatusCode::FORBIDDEN));
        assert_eq!(status(&[("host", "evil.example")]), Some(StatusCode::FORBIDDEN));
        assert_eq!(status(&[("host", "bad host")]), Some(StatusCode::BAD_REQUEST));
        assert_eq!(status(&[]), Some(StatusCode::BAD_REQUEST));
        let local = ("host", "localhost:1");
        assert_eq!(status(&[local, ("origin", "http://localhost:3000")]), None);
        assert_eq!(status(&[local, ("origin", "http://[::1]:3000")]), None);
        assert_eq!(status(&[local, ("origin", "https://app.example.com:1234")]), None);
        assert_eq!(status(&[local, ("origin", "https://x.example")]), None);
        assert_eq!(status(&[local, ("origin", "https://x.example:444")]), Some(StatusCode::FORBIDDEN));
        assert_eq!(status(&[local, ("origin", "http://evil.example")]), Some(StatusCode::FORBIDDEN));
        assert_eq!(status(&[local, ("origin", "https://localhost:3000")]), Some(StatusCode::FORBIDDEN));
        assert_eq!(status(&[local, ("origin", "null")]), Some(StatusCode::FORBIDDEN));
        assert_eq!(status(&[local, ("origin", "not an origin")]), Some(StatusCode::FORBIDDEN));
    }
}

#[cfg(test)]
mod proptests {
    use proptest::prelude::*;
    use proptest::test_runner::Config;

    use super::*;
    use crate::relay::RelayScope;

    const HOSTS: [&str; 5] = ["localhost", "127.0.0.1", "::1", "[::1]", "mcp.example.com:8443"];

    fn header_text() -> impl Strategy<Value = String> {
        prop_oneof![
            Just("localhost:8080".to_owned()),
            Just("[::1]:1".to_owned()),
            Just("mcp.example.com:8443".to_owned()),
            Just("http://localhost:3000".to_owned()),
            Just("null".to_owned()),
            "[a-zA-Z0-9.:/\\[\\]*-]{0,24}",
            any::<String>(),
        ]
    }

    proptest! {
        #![proptest_config(Config { cases: 1000, ..Config::default() })]

        /// Never a panic; a Host whose name is on no list is always refused; and what the relay
        /// takes as coming from an allowed place, the guard (rmcp's judgement) lets through.
        #[test]
        fn the_guard_refuses_foreign_hosts_and_agrees_with_the_relay(
            host in prop::option::of(header_text()),
            origin in prop::option::of(header_text()),
        ) {
            let hosts = HOSTS.map(String::from);
            let origins = ["http://localhost:*".to_owned()];
            let guard = Rebinding::new(&hosts, &origins);
            let mut headers = HeaderMap::new();
            for (name, value) in [(header::HOST, &host), (header::ORIGIN, &origin)] {
                if let Some(value) = value.as_deref().and_then(|v| v.parse().ok()) {
                    headers.insert(name, value);
                }
            }
            let passed = guard.check(&Uri::from_static("/health"), &headers).is_ok();
            if passed && let Some(host) = headers.get(header::HOST).and_then(|h| h.to_str().ok()) {
                let name = host.parse::<axum::http::uri::Authority>().map(|a| normalize_host(a.host()));
                prop_assert!(
                    name.is_ok_and(|n| ["localhost", "127.0.0.1", "::1", "mcp.example.com"].contains(&n.as_str())),
                    "let through Host {:?}", host
                );
            }
            if RelayScope::new(&hosts).admits(&headers) {
                prop_assert!(passed, "the relay admits what the guard refuses: {:?}", headers);
            }
        }
    }
}
