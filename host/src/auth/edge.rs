//! The HTTP edge of authentication, per the MCP authorization spec for a protected resource:
//! `401` with `WWW-Authenticate: Bearer resource_metadata=...` for a missing or bad token, the
//! RFC 9728 metadata document, and `403 insufficient_scope` for a call outside the grant.

use std::collections::HashMap;
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
pub(crate) const METADATA_PATH: &str = "/.well-known/oauth-protected-resource";

/// How much of a refused request's body is read before answering.
const UNREAD_BODY_LIMIT: usize = 1 << 20;

const SESSION_HEADER: &str = "mcp-session-id";

/// Legacy sessions one identity may hold open at once. Each session is a task and buffers at
/// rmcp until it ends; past this, that identity's `initialize` is refused (429) until it ends
/// one (`DELETE`) or one goes idle. Generous for real clients, which open one or a few.
pub(crate) const MAX_SESSIONS_PER_IDENTITY: usize = 64;

/// Legacy sessions open on the listener across all identities. Past this, every new session is
/// refused (503) until some end: a binding of a live session is never forgotten to make room,
/// since a forgotten binding would let any token holder who learns the id use the session.
pub(crate) const MAX_SESSIONS: usize = 10_000;

/// The JSON-RPC error code of an `initialize` refused over a session limit.
pub(crate) const SESSION_LIMIT: i32 = -32028;

/// What the authentication middleware needs.
pub struct Gate {
    verifier: Verifier,
    audit: Arc<AuditLog>,
    /// `http` or `https`, for the URLs in the metadata.
    scheme: &'static str,
    sessions: Arc<SessionTable>,
}

/// The open sessions and the limits on them.
struct SessionTable {
    open: Mutex<Sessions>,
    per_identity: usize,
    total: usize,
}

/// The legacy sessions opened through this gate, each bound to the identity that opened it
/// (issuer and subject), so that another token holder who learns a session id cannot use it.
/// A session id not here is refused: this gate did not open it, or it has ended.
#[derive(Default)]
struct Sessions {
    /// Session id → its owner's key.
    owners: HashMap<String, String>,
    /// Owner key → its sessions open or being opened.
    held: HashMap<String, usize>,
    /// Slots reserved by an `initialize` not yet answered.
    opening: usize,
}

impl Sessions {
    fn release(&mut self, owner: &str) {
        if let Some(count) = self.held.get_mut(owner) {
            *count = count.saturating_sub(1);
            if *count == 0 {
                self.held.remove(owner);
            }
        }
    }
}

/// Why a new session was refused.
#[derive(Debug, thiserror::Error)]
pub(crate) enum SessionRefused {
    #[error(
        "{who} already has {limit} open sessions, the most one identity may hold: end one (DELETE /mcp with its \
         Mcp-Session-Id) or let one go idle before opening another"
    )]
    PerIdentity { who: String, limit: usize },
    #[error("this host has {limit} open sessions, the most it holds; try again once some have ended")]
    Total { limit: usize },
}

/// A new session's place, reserved while its `initialize` is answered: [`SessionSlot::bind`]
/// binds the session to its opener; dropped unbound (no session came of it), the place is freed.
pub(crate) struct SessionSlot {
    table: Arc<SessionTable>,
    owner: String,
    bound: bool,
}

impl SessionSlot {
    /// The `initialize` opened session `id`: it is its opener's from now on.
    pub(crate) fn bind(mut self, id: &str) {
        self.bound = true;
        let Ok(mut sessions) = self.table.open.lock() else { return };
        sessions.opening = sessions.opening.saturating_sub(1);
        if let Some(previous) = sessions.owners.insert(id.to_owned(), self.owner.clone()) {
            // A reused id (never seen from rmcp's random ids): the old binding's place is freed.
            sessions.release(&previous);
        }
    }
}

impl Drop for SessionSlot {
    fn drop(&mut self) {
        if self.bound {
            return;
        }
        if let Ok(mut sessions) = self.table.open.lock() {
            sessions.opening = sessions.opening.saturating_sub(1);
            sessions.release(&self.owner);
        }
    }
}

impl Gate {
    pub fn new(verifier: Verifier, audit: Arc<AuditLog>, scheme: &'static str) -> Self {
        let sessions = SessionTable::new(MAX_SESSIONS_PER_IDENTITY, MAX_SESSIONS);
        Self { verifier, audit, scheme, sessions }
    }

    /// The caller of a request outside `/mcp` (e.g. `/health`), if its token is valid.
    pub(crate) fn caller(&self, headers: &HeaderMap) -> Option<Arc<Identity>> {
        header_token(headers).and_then(|token| self.verifier.verify(token)).ok()
    }

    /// Reserve a place for a session `identity` is opening (its `initialize`), within the
    /// limits; a refusal is audited.
    pub(crate) fn reserve_session(self: &Arc<Self>, identity: &Identity) -> Result<SessionSlot, SessionRefused> {
        let refused = self.sessions.reserve(&identity.limit_key()).map_err(|limit| match limit {
            Limit::PerIdentity => {
                SessionRefused::PerIdentity { who: identity.describe(), limit: self.sessions.per_identity }
            }
            Limit::Total => SessionRefused::Total { limit: self.sessions.total },
        });
        if let Err(refusal) = &refused {
            self.audit.record(Record {
                identity: Some(identity),
                method: "initialize",
                entry: "",
                decision: Decision::Denied(refusal.to_string()),
                outcome: None,
                duration: None,
            });
        }
        refused
    }

    /// Session `id` has ended (its client deleted it, or it went idle): forget its binding, so
    /// that its id is refused from now on and its opener may open another in its place.
    pub(crate) fn end_session(&self, id: &str) {
        self.sessions.end(id);
    }

    /// The sessions bound to their openers now.
    pub(crate) fn bound_sessions(&self) -> Vec<String> {
        self.sessions.open.lock().map(|sessions| sessions.owners.keys().cloned().collect()).unwrap_or_default()
    }

    /// A refused `initialize` (request `id`): 429 over the identity's limit, 503 over the
    /// host's, with a JSON-RPC error naming the limit.
    pub(crate) fn session_refused(refusal: &SessionRefused, id: &serde_json::Value) -> Response {
        let status = match refusal {
            SessionRefused::PerIdentity { .. } => StatusCode::TOO_MANY_REQUESTS,
            SessionRefused::Total { .. } => StatusCode::SERVICE_UNAVAILABLE,
        };
        let (kind, limit) = match refusal {
            SessionRefused::PerIdentity { limit, .. } => ("sessions_per_identity", limit),
            SessionRefused::Total { limit } => ("sessions", limit),
        };
        let body = json!({
            "jsonrpc": "2.0", "id": id,
            "error": { "code": SESSION_LIMIT, "message": refusal.to_string(), "data": { "limit": kind, "max": limit } },
        });
        (status, axum::Json(body)).into_response()
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

    /// Refuse (and audit) a use of an entry outside the caller's grant, before the protocol
    /// layer sees it: `403 insufficient_scope`.
    pub(crate) fn out_of_scope(
        &self,
        headers: &HeaderMap,
        identity: &Identity,
        method: &str,
        kind: EntryKind,
        name: &str,
    ) -> Response {
        self.audit.record(Record {
            identity: Some(identity),
            method,
            entry: name,
            decision: Decision::Denied(denied_message(identity, kind, name)),
            outcome: None,
            duration: None,
        });
        self.forbidden(headers, identity, kind, name)
    }

    /// `403 Forbidden` with `insufficient_scope`: the caller may step up to `scope`.
    fn forbidden(&self, headers: &HeaderMap, identity: &Identity, kind: EntryKind, name: &str) -> Response {
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

impl SessionTable {
    fn new(per_identity: usize, total: usize) -> Arc<Self> {
        Arc::new(Self { open: Mutex::default(), per_identity, total })
    }

    fn reserve(self: &Arc<Self>, owner: &str) -> Result<SessionSlot, Limit> {
        let Ok(mut sessions) = self.open.lock() else { return Err(Limit::Total) };
        if sessions.owners.len() + sessions.opening >= self.total {
            return Err(Limit::Total);
        }
        let held = sessions.held.entry(owner.to_owned()).or_default();
        if *held >= self.per_identity {
            return Err(Limit::PerIdentity);
        }
        *held += 1;
        sessions.opening += 1;
        Ok(SessionSlot { table: self.clone(), owner: owner.to_owned(), bound: false })
    }

    /// Whether `owner` may use session `id`: only the identity that opened it, and only while
    /// it is open.
    fn session_use(&self, id: &str, owner: &str) -> Result<(), &'static str> {
        let Ok(sessions) = self.open.lock() else { return Err("the session table is unavailable") };
        match sessions.owners.get(id) {
            Some(opener) if opener == owner => Ok(()),
            Some(_) => Err("the session belongs to another identity"),
            None => Err("no such session is open"),
        }
    }

    fn end(&self, id: &str) {
        if let Ok(mut sessions) = self.open.lock()
            && let Some(owner) = sessions.owners.remove(id)
        {
            sessions.release(&owner);
        }
    }
}

/// Which session limit a new session would pass.
#[derive(Debug, PartialEq, Eq)]
enum Limit {
    PerIdentity,
    Total,
}

/// The message a caller gets for an entry outside its grant.
pub(crate) fn denied_message(identity: &Identity, kind: EntryKind, name: &str) -> String {
    format!("{} may not use {name}: its grant lacks the scope {}", identity.describe(), kind.scope_for(name))
}

/// Verify the bearer token of every request to `/mcp`; the caller's [`Identity`] goes into the
/// request's extensions for the session.
pub(crate) async fn authenticate(State(gate): State<Arc<Gate>>, mut request: Request, next: Next) -> Response {
    let verdict = bearer_token(&request).and_then(|token| gate.verifier.verify(token));
    match verdict {
        Ok(identity) => {
            let owner = identity.limit_key();
            let session = request.headers().get(SESSION_HEADER).and_then(|v| v.to_str().ok()).map(str::to_owned);
            if let Some(session) = &session
                && let Err(reason) = gate.sessions.session_use(session, &owner)
            {
                crate::metrics::denied("session_owner");
                gate.audit.record(Record {
                    identity: Some(&identity),
                    method: request.method().as_str(),
                    entry: request.uri().path(),
                    decision: Decision::Denied(reason.into()),
                    outcome: None,
                    duration: None,
                });
                // Others' sessions look like sessions that do not exist: nothing to learn.
                let body = json!({ "jsonrpc": "2.0", "id": null, "error": { "code": -32001, "message": "Session not found" } });
                return (StatusCode::NOT_FOUND, axum::Json(body)).into_response();
            }
            // New sessions are bound by the transport, which reads the `initialize` (see
            // `Gate::reserve_session`); here, ended ones are forgotten.
            let closing = request.method() == axum::http::Method::DELETE;
            request.extensions_mut().insert(identity);
            let response = next.run(request).await;
            // A DELETE rmcp answers 404 found the session already gone: forgotten all the same.
            if let Some(session) = &session
                && closing
                && (response.status().is_success() || response.status() == StatusCode::NOT_FOUND)
            {
                gate.end_session(session);
            }
            response
        }
        Err(error) => {
            crate::metrics::denied("token");
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
pub(crate) async fn metadata(State(gate): State<Arc<Gate>>, headers: HeaderMap) -> Response {
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

#[cfg(test)]
mod tests {
    use super::*;

    /// Open and bind `count` sessions for `owner`, named `<owner>-<n>`.
    fn open(table: &Arc<SessionTable>, owner: &str, count: usize) -> Vec<String> {
        (0..count)
            .map(|n| {
                let id = format!("{owner}-{n}");
                table.reserve(owner).expect("within the limits").bind(&id);
                id
            })
            .collect()
    }

    #[test]
    fn unknown_and_ended_sessions_are_refused() {
        let table = SessionTable::new(4, 100);
        assert!(table.session_use("made-up", "alice").is_err());
        let ids = open(&table, "alice", 1);
        assert_eq!(table.session_use(&ids[0], "alice"), Ok(()));
        assert!(table.session_use(&ids[0], "bob").is_err());
        table.end(&ids[0]);
        assert!(table.session_use(&ids[0], "alice").is_err());
    }

    /// Another identity filling the table never evicts a live binding: its new sessions are
    /// refused instead, and the first identity's session stays its own.
    #[test]
    fn a_full_table_refuses_new_sessions_and_keeps_live_bindings() {
        let table = SessionTable::new(8, 10);
        let alice = open(&table, "alice", 1);
        let mut bobs = Vec::new();
        for who in ["bob", "carol", "dave"] {
            bobs.extend(open(&table, who, 3));
        }
        assert_eq!(table.reserve("eve").err(), Some(Limit::Total));
        assert_eq!(table.session_use(&alice[0], "alice"), Ok(()));
        assert!(table.session_use(&alice[0], "bob").is_err());
        // Places come back as sessions end.
        table.end(&bobs[0]);
        assert!(table.reserve("eve").is_ok());
    }

    #[test]
    fn each_identity_holds_at_most_its_share() {
        let table = SessionTable::new(3, 100);
        let ids = open(&table, "bob", 3);
        assert_eq!(table.reserve("bob").err(), Some(Limit::PerIdentity));
        assert!(table.reserve("alice").is_ok(), "another identity is not held back");
        table.end(&ids[1]);
        table.reserve("bob").expect("a place freed by an ended session").bind("bob-again");
        assert_eq!(table.reserve("bob").err(), Some(Limit::PerIdentity));
    }

    /// An `initialize` that opened no session gives its place back; reserved places count
    /// against the limits while the `initialize` is in flight.
    #[test]
    fn a_slot_dropped_unbound_frees_its_place() {
        let table = SessionTable::new(2, 100);
        let first = table.reserve("bob").expect("a place");
        let second = table.reserve("bob").expect("a place");
        assert_eq!(table.reserve("bob").err(), Some(Limit::PerIdentity));
        drop(first);
        drop(second);
        open(&table, "bob", 2);
        let Ok(sessions) = table.open.lock() else { panic!("the table lock") };
        assert_eq!((sessions.owners.len(), sessions.opening, sessions.held.get("bob")), (2, 0, Some(&2)));
    }
}
