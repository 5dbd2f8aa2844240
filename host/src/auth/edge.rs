//! The HTTP edge of authentication, per the MCP authorization spec for a protected resource:
//! `401` with `WWW-Authenticate: Bearer resource_metadata=...` for a missing or bad token, the
//! RFC 9728 metadata document, and `403 insufficient_scope` for a call outside the grant.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use axum::extract::{Request, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use serde_json::json;

use super::audit::{AuditLog, Decision, Record};
use super::jwt::{TokenError, Verifier};
use super::{EntryKind, Identity};

/// Where the metadata document is served (RFC 9728, with the `/mcp` path-suffixed form too).
pub const METADATA_PATH: &str = "/.well-known/oauth-protected-resource";

/// How much of a refused request's body is read before answering.
const UNREAD_BODY_LIMIT: usize = 1 << 20;

const SESSION_HEADER: &str = "mcp-session-id";

/// Sessions remembered with their owners; past this, the oldest half is forgotten.
const MAX_SESSIONS: usize = 100_000;

/// What the authentication middleware needs.
pub struct Gate {
    verifier: Verifier,
    audit: Arc<AuditLog>,
    /// `http` or `https`, for the URLs in the metadata.
    scheme: &'static str,
    /// Legacy session id → the identity that opened it (issuer and subject), so that another
    /// token holder who learns a session id cannot use the session.
    sessions: Mutex<HashMap<String, (String, u64)>>,
    opened: AtomicU64,
}

impl Gate {
    pub fn new(verifier: Verifier, audit: Arc<AuditLog>, scheme: &'static str) -> Self {
        Self { verifier, audit, scheme, sessions: Mutex::default(), opened: AtomicU64::new(0) }
    }

    /// The caller of a request outside `/mcp` (e.g. `/health`), if its token is valid.
    pub fn caller(&self, headers: &HeaderMap) -> Option<Arc<Identity>> {
        header_token(headers).and_then(|token| self.verifier.verify(token)).ok()
    }

    /// Whether `owner` may use session `id` (sessions this gate did not see opened are refused
    /// by rmcp anyway, as unknown).
    fn session_allowed(&self, id: &str, owner: &str) -> bool {
        let Ok(sessions) = self.sessions.lock() else { return false };
        sessions.get(id).is_none_or(|(opener, _)| opener == owner)
    }

    fn session_opened(&self, id: &str, owner: String) {
        let Ok(mut sessions) = self.sessions.lock() else { return };
        let order = self.opened.fetch_add(1, Ordering::Relaxed);
        if sessions.len() >= MAX_SESSIONS {
            let cutoff = order.saturating_sub(MAX_SESSIONS as u64 / 2);
            sessions.retain(|_, (_, opened)| *opened >= cutoff);
        }
        sessions.insert(id.to_owned(), (owner, order));
    }

    fn session_closed(&self, id: &str) {
        if let Ok(mut sessions) = self.sessions.lock() {
            sessions.remove(id);
        }
    }

    fn origin(&self, headers: &HeaderMap) -> String {
        let host = headers.get(header::HOST).and_then(|h| h.to_str().ok()).unwrap_or("localhost");
        format!("{}://{host}", self.scheme)
    }

    fn resource(&self, headers: &HeaderMap) -> String {
        self.verifier.settings().resource.clone().unwrap_or_else(|| format!("{}/mcp", self.origin(headers)))
    }

    fn metadata_url(&self, headers: &HeaderMap) -> String {
        format!("{}{METADATA_PATH}/mcp", self.origin(headers))
    }

    /// The challenge sent with 401 and 403 answers.
    fn challenge(&self, headers: &HeaderMap, error: Option<(&str, &str)>, scope: Option<&str>) -> HeaderValue {
        let mut value = String::from("Bearer");
        let mut params = Vec::new();
        if let Some((code, description)) = error {
            params.push(format!("error=\"{code}\""));
            params.push(format!("error_description=\"{}\"", description.replace(['"', '\\'], "'")));
        }
        if let Some(scope) = scope {
            params.push(format!("scope=\"{}\"", scope.replace(['"', '\\'], "'")));
        }
        params.push(format!("resource_metadata=\"{}\"", self.metadata_url(headers)));
        value.push(' ');
        value.push_str(&params.join(", "));
        HeaderValue::from_str(&value).unwrap_or_else(|_| HeaderValue::from_static("Bearer"))
    }

    /// `401 Unauthorized` for a request without a valid token.
    fn unauthorized(&self, headers: &HeaderMap, error: &TokenError) -> Response {
        let description = error.to_string();
        let (code, status) = match error {
            TokenError::InQuery => ("invalid_request", StatusCode::UNAUTHORIZED),
            TokenError::Missing => ("", StatusCode::UNAUTHORIZED),
            _ => ("invalid_token", StatusCode::UNAUTHORIZED),
        };
        let challenge = self.challenge(headers, (!code.is_empty()).then_some((code, &description)), None);
        let body =
            json!({ "error": if code.is_empty() { "unauthorized" } else { code }, "error_description": description });
        let mut response = (status, axum::Json(body)).into_response();
        response.headers_mut().insert(header::WWW_AUTHENTICATE, challenge);
        response
    }

    /// `403 Forbidden` with `insufficient_scope`: the caller may step up to `scope`.
    pub fn forbidden(&self, headers: &HeaderMap, identity: &Identity, kind: EntryKind, name: &str) -> Response {
        let scope = kind.scope_for(name);
        let message = denied_message(identity, kind, name);
        let challenge = self.challenge(headers, Some(("insufficient_scope", &message)), Some(&scope));
        let body = json!({
            "jsonrpc": "2.0", "id": null,
            "error": { "code": -32600, "message": message, "data": { "required_scope": scope } },
        });
        let mut response = (StatusCode::FORBIDDEN, axum::Json(body)).into_response();
        response.headers_mut().insert(header::WWW_AUTHENTICATE, challenge);
        response
    }
}

/// The message a caller gets for an entry outside its grant.
pub fn denied_message(identity: &Identity, kind: EntryKind, name: &str) -> String {
    format!("{} may not use {name}: its grant lacks the scope {}", identity.describe(), kind.scope_for(name))
}

/// Verify the bearer token of every request to `/mcp`; the caller's [`Identity`] goes into the
/// request's extensions for the session.
pub async fn authenticate(State(gate): State<Arc<Gate>>, mut request: Request, next: Next) -> Response {
    let verdict = bearer_token(&request).and_then(|token| gate.verifier.verify(token));
    match verdict {
        Ok(identity) => {
            let owner = identity.limit_key();
            let session = request.headers().get(SESSION_HEADER).and_then(|v| v.to_str().ok()).map(str::to_owned);
            if let Some(session) = &session
                && !gate.session_allowed(session, &owner)
            {
                gate.audit.record(Record {
                    identity: Some(&identity),
                    method: request.method().as_str(),
                    entry: request.uri().path(),
                    decision: Decision::Denied("the session belongs to another identity".into()),
                    outcome: None,
                    duration: None,
                });
                // As for a session that does not exist: nothing to learn about others' sessions.
                let body = json!({ "jsonrpc": "2.0", "id": null, "error": { "code": -32001, "message": "Session not found" } });
                return (StatusCode::NOT_FOUND, axum::Json(body)).into_response();
            }
            let closing = request.method() == axum::http::Method::DELETE;
            request.extensions_mut().insert(identity);
            let response = next.run(request).await;
            match (&session, response.headers().get(SESSION_HEADER).and_then(|v| v.to_str().ok())) {
                (None, Some(opened)) => gate.session_opened(opened, owner),
                (Some(session), _) if closing && response.status().is_success() => gate.session_closed(session),
                _ => {}
            }
            response
        }
        Err(error) => {
            gate.audit.record(Record {
                identity: None,
                method: request.method().as_str(),
                entry: request.uri().path(),
                decision: Decision::Denied(error.to_string()),
                outcome: None,
                duration: None,
            });
            let response = gate.unauthorized(request.headers(), &error);
            // Read what the client is still sending (bounded): closing a socket with unread data
            // resets it, and the client may lose the 401.
            let _ = axum::body::to_bytes(request.into_body(), UNREAD_BODY_LIMIT).await;
            response
        }
    }
}

fn bearer_token(request: &Request) -> Result<&str, TokenError> {
    let in_query = request.uri().query().is_some_and(|query| {
        query.split('&').any(|pair| pair.split('=').next().is_some_and(|key| key == "access_token"))
    });
    if in_query {
        return Err(TokenError::InQuery);
    }
    header_token(request.headers())
}

fn header_token(headers: &HeaderMap) -> Result<&str, TokenError> {
    let value = headers.get(header::AUTHORIZATION).ok_or(TokenError::Missing)?;
    let value = value.to_str().map_err(|_| TokenError::Malformed("the Authorization header is not text".into()))?;
    let (scheme, token) = value
        .split_once(' ')
        .ok_or_else(|| TokenError::Malformed("expected `Authorization: Bearer <token>`".into()))?;
    if !scheme.eq_ignore_ascii_case("bearer") || token.trim().is_empty() {
        return Err(TokenError::Malformed("expected `Authorization: Bearer <token>`".into()));
    }
    Ok(token.trim())
}

/// The RFC 9728 protected resource metadata.
pub async fn metadata(State(gate): State<Arc<Gate>>, headers: HeaderMap) -> Response {
    let settings = gate.verifier.settings();
    axum::Json(json!({
        "resource": gate.resource(&headers),
        "authorization_servers": settings.authorization_servers,
        "bearer_methods_supported": ["header"],
        "scopes_supported": ["tools:*", "resources:*", "prompts:*"],
        "resource_name": "fedmcp",
    }))
    .into_response()
}
