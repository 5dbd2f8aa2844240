//! Tool calls relayed to a 2026-07-28 peer over HTTP as JSON, without decoding them into
//! rmcp's types and encoding them again on both sides of this host: stateless calls, and calls
//! of legacy (2025-11-25) sessions.
//!
//! Why: through rmcp's server and then its client, a forwarded call cost this host as much CPU
//! as serving a call from a plugin does (measured with `cargo bench --bench http_calls`: one
//! hop kept ~50% of direct throughput). A stateless 2026-07-28 request is self-contained, so
//! the host can read it once, rewrite the tool's name and the `_meta` the peer must see, and
//! pass the peer's answer back, changing only what the normal path changes too (an MRTR
//! `requestState`, sealed to the method and entry).
//!
//! A legacy session's call is made a 2026-07-28 request for the peer with what the session
//! agreed (`crate::legacy_sessions`): its client's capabilities, its log level. Its answer
//! loses the `resultType` a legacy client does not know; the client's `notifications/cancelled`
//! stops it; what the peer asks mid-call is asked of the client by `asking`.
//!
//! The relay takes only requests it can judge exactly as the normal path would; anything else
//! (an MRTR retry, a browser `Origin`, missing or unusual headers, a tool whose consent policy
//! is not `allow`, a tool name that needs encoding in a header, a peer over stdio or on
//! 2025-11-25) goes the normal way, where rmcp validates it and the session decides. The
//! normal path's rules hold here: the caller's grant, the rate limit, the loop guard and hop
//! limit, the peer's time limit and the audit record.

use std::sync::Arc;

use axum::body::Body;
use axum::http::request::Parts;
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use bytes::Bytes;
use futures::StreamExt;
use rmcp::ErrorData as McpError;
use serde_json::{Map, Value, json};

use crate::auth::consent::Policy;
use crate::auth::gate::{Method, Permit, Use};
use crate::auth::{EntryKind, Identity};
use crate::call::{CallError, Charge, EventBudget};
use crate::catalog::Owner;
use crate::federation::credentials::CALLER_KEY;
use crate::federation::{MAX_CALL_EVENT_BYTES, MAX_CALL_EVENTS};
use crate::federation::{Peer, Relay, loops};
use crate::legacy_sessions::{LegacySessions, RelayedCall, SessionFacts};
use crate::session::{Shared, StateBinding, call_error};

mod asking;

const PROTOCOL: &str = "2026-07-28";
const META_PROTOCOL: &str = "io.modelcontextprotocol/protocolVersion";
const META_CAPABILITIES: &str = "io.modelcontextprotocol/clientCapabilities";
const META_LOG_LEVEL: &str = "io.modelcontextprotocol/logLevel";
/// The most of a peer's JSON answer the relay reads.
const MAX_ANSWER_BYTES: usize = 32 << 20;
/// The most of a peer's refusal (a non-2xx answer) quoted in the error.
const MAX_REFUSAL_BYTES: usize = 4096;

/// Which `Host` headers the listener serves (the same list rmcp checks on the normal path).
pub struct RelayScope {
    /// Each allowed host name, and its port if the entry names one (parsed once: every POST
    /// is checked).
    hosts: Vec<(String, Option<u16>)>,
}

impl RelayScope {
    pub fn new(hosts: &[String]) -> Self {
        let hosts = hosts
            .iter()
            .filter_map(|allowed| allowed.parse::<axum::http::uri::Authority>().ok())
            .map(|allowed| (allowed.host().to_owned(), allowed.port_u16()))
            .collect();
        Self { hosts }
    }

    /// Whether a request passes the DNS-rebinding guard as rmcp would judge it, without being
    /// a browser's (those take the normal path, where rmcp checks their `Origin`).
    pub fn admits(&self, headers: &HeaderMap) -> bool {
        !headers.contains_key(header::ORIGIN) && self.host_allowed(headers)
    }

    fn host_allowed(&self, headers: &HeaderMap) -> bool {
        let Some(host) = headers.get(header::HOST).and_then(|h| h.to_str().ok()) else { return false };
        let Ok(authority) = host.parse::<axum::http::uri::Authority>() else { return false };
        self.hosts.iter().any(|(name, port)| {
            name.eq_ignore_ascii_case(authority.host()) && port.is_none_or(|port| authority.port_u16() == Some(port))
        })
    }
}

/// Who asks, as far as the relay must know.
enum Caller {
    /// A 2026-07-28 request: its own `_meta` tells the peer what it must know.
    Stateless { capabilities: Map<String, Value> },
    /// A call in a legacy session; the host tells the peer what the session agreed, and asks
    /// the client what the peer needs (see `asking`).
    Legacy { session: String, facts: Arc<SessionFacts> },
}

/// A request the relay may take, as read from it.
struct Call<'a> {
    headers: &'a HeaderMap,
    id: &'a Value,
    name: &'a str,
    /// The tool's arguments (`{}` when the request has none), to bind a sealed state to.
    arguments: Value,
    /// The caller's progress token, the only one whose progress reaches it.
    progress_token: Option<Value>,
    caller: Caller,
}

impl Call<'_> {
    fn is_legacy(&self) -> bool {
        matches!(self.caller, Caller::Legacy { .. })
    }
}

/// The one value of a header, if it has exactly one.
fn single<'a>(headers: &'a HeaderMap, name: &str) -> Option<&'a str> {
    let mut values = headers.get_all(name).iter();
    let value = values.next()?.to_str().ok()?;
    values.next().is_none().then_some(value)
}

/// The media types of a header, without parameters.
fn media_types(headers: &HeaderMap, name: header::HeaderName) -> impl Iterator<Item = &str> {
    headers
        .get_all(name)
        .into_iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .map(|v| v.split(';').next().unwrap_or_default().trim())
}

/// Whether a header's value goes to the peer as it is (rmcp Base64-encodes other values).
fn plain_header_value(value: &str) -> bool {
    !value.is_empty() && value.bytes().all(|b| b.is_ascii_graphic()) && !value.starts_with("=?")
}

/// Whether the request is one the relay judges as the normal path would, and what it says.
fn eligible<'a>(
    scope: &RelayScope,
    sessions: &LegacySessions,
    parts: &'a Parts,
    message: &'a Value,
) -> Option<Call<'a>> {
    let headers = &parts.headers;
    if !scope.admits(headers) {
        return None;
    }
    let content_type = media_types(headers, header::CONTENT_TYPE).collect::<Vec<_>>();
    if content_type.len() != 1 || !content_type[0].eq_ignore_ascii_case("application/json") {
        return None;
    }
    let accepts = |wanted: &str| media_types(headers, header::ACCEPT).any(|m| m.eq_ignore_ascii_case(wanted));
    if !accepts("application/json") || !accepts("text/event-stream") {
        return None;
    }
    let message = message.as_object()?;
    if message.len() != 4 || message.get("jsonrpc")? != "2.0" || message.get("method")? != "tools/call" {
        return None;
    }
    let id = message.get("id").filter(|id| id.is_string() || id.is_u64() || id.is_i64())?;
    let params = message.get("params")?.as_object()?;
    if params.keys().any(|key| !matches!(key.as_str(), "name" | "arguments" | "_meta")) {
        return None;
    }
    let name = params.get("name")?.as_str()?;
    if params.get("arguments").is_some_and(|a| !a.is_object()) {
        return None;
    }
    let caller = if headers.contains_key("mcp-session-id") {
        legacy_caller(sessions, headers, name, params.get("_meta"))?
    } else {
        if single(headers, "mcp-protocol-version")? != PROTOCOL
            || single(headers, "mcp-method")? != "tools/call"
            || single(headers, "mcp-name")? != name
        {
            return None;
        }
        let meta = params.get("_meta")?.as_object()?;
        if meta.get(META_PROTOCOL)? != PROTOCOL {
            return None;
        }
        Caller::Stateless { capabilities: meta.get(META_CAPABILITIES)?.as_object()?.clone() }
    };
    let arguments = params.get("arguments").cloned().unwrap_or_else(|| json!({}));
    let progress_token = params.get("_meta").and_then(|meta| meta.get("progressToken")).cloned();
    Some(Call { headers, id, name, arguments, progress_token, caller })
}

/// The session of a legacy request the relay may take: one this host opened, with the headers
/// rmcp would accept for it.
fn legacy_caller(sessions: &LegacySessions, headers: &HeaderMap, name: &str, meta: Option<&Value>) -> Option<Caller> {
    let session = single(headers, "mcp-session-id")?;
    let facts = sessions.get(session)?;
    if single(headers, "mcp-protocol-version")? != facts.protocol {
        return None;
    }
    // The SEP-2243 headers are optional before 2026-07-28, but must match when present.
    if headers.contains_key("mcp-method") && single(headers, "mcp-method")? != "tools/call" {
        return None;
    }
    if headers.contains_key("mcp-name") && single(headers, "mcp-name")? != name {
        return None;
    }
    // A legacy request with a 2026-07-28 request's `_meta` is the normal path's to judge.
    if let Some(meta) = meta {
        let meta = meta.as_object()?;
        if meta.contains_key(META_PROTOCOL) || meta.contains_key(META_CAPABILITIES) {
            return None;
        }
    }
    Some(Caller::Legacy { session: session.to_owned(), facts })
}

/// Answer the request by relaying it to the peer that owns its tool, or `None` to leave it to
/// the normal path.
pub async fn try_relay(shared: &Arc<Shared>, scope: &RelayScope, parts: &Parts, message: &Value) -> Option<Response> {
    let call = eligible(scope, &shared.legacy, parts, message)?;
    let route = shared.catalog.tool(call.name)?;
    let Owner::Peer(peer) = &route.owner else { return None };
    let relay = peer.relay()?;
    // A legacy caller sends no `Mcp-Param-*` headers, and the relay does not make them.
    if !plain_header_value(&route.local_name) || (call.is_legacy() && route.param_headers) {
        return None;
    }
    let identity = match parts.extensions.get::<Arc<Identity>>() {
        Some(identity) => identity.clone(),
        // With `[auth]` the edge names every caller; the session refuses one it did not.
        None if shared.guard.requires_token => return None,
        None => shared.guard.local.clone(),
    };
    // A question for the user is the session's to ask.
    if shared.guard.consent_policy(call.name, route.annotations.as_ref()) != Policy::Allow {
        return None;
    }
    let tracked = match &call.caller {
        Caller::Legacy { session, .. } => Some(shared.legacy.track_call(session, call.id)?),
        Caller::Stateless { .. } => None,
    };
    let used = Use {
        method: Method::CallTool,
        kind: EntryKind::Tool,
        entry: call.name,
        grant_name: call.name,
        annotations: route.annotations.as_ref(),
    };
    let permit = match shared.guard.admit(&identity, &used) {
        Ok(permit) => permit,
        Err(error) => {
            tracing::debug!(tool = call.name, reason = %error.message, "the relay's gate refused a tools/call");
            return Some(error_response(&call, &error));
        }
    };
    let audit = Audit {
        shared: shared.clone(),
        binding: Arc::new(StateBinding::new("tools/call", call.name, &identity, &call.arguments)),
        identity,
        permit: Arc::new(std::sync::Mutex::new(Some(permit))),
    };
    let era = if call.is_legacy() { "a legacy session's" } else { "a stateless" };
    tracing::debug!(tool = call.name, peer = peer.name(), "relaying {era} tools/call");
    let cancelled = tracked.as_ref().map(|t| t.cancelled.clone()).unwrap_or_default();
    let outcome = tokio::select! {
        outcome = forward(peer, &relay, &route.local_name, &call, message, &audit, tracked) => outcome,
        () = cancelled.cancelled() => Err(CallError::Upstream(McpError::internal_error("the request was cancelled", None))),
    };
    Some(match outcome {
        Ok(response) => response,
        Err(error) => {
            let error = call_error(error);
            audit.done(format!("error: {}", error.message));
            error_response(&call, &error)
        }
    })
}

/// The gate's permit for one relayed call, finished (audited) when its answer is known, and
/// what a state sealed for its caller is bound to.
#[derive(Clone)]
struct Audit {
    shared: Arc<Shared>,
    identity: Arc<Identity>,
    binding: Arc<StateBinding>,
    permit: Arc<std::sync::Mutex<Option<Permit>>>,
}

impl Audit {
    fn done(&self, outcome: String) {
        if let Some(permit) = self.permit.lock().ok().and_then(|mut permit| permit.take()) {
            permit.finish(outcome);
        }
    }
}

/// The request as the peer gets it: the tool's name there, the hosts crossed, and for a
/// legacy caller the `_meta` of a 2026-07-28 request (what the session agreed: its client's
/// capabilities, its log level).
fn outgoing(peer: &Peer, local_name: &str, call: &Call<'_>, message: &Value) -> Result<Value, CallError> {
    let mut outgoing = message.clone();
    let params = outgoing["params"].as_object_mut().ok_or_else(|| CallError::InvalidParams("no params".into()))?;
    params.insert("name".to_owned(), Value::String(local_name.to_owned()));
    let meta = params.entry("_meta").or_insert_with(|| json!({}));
    let meta = meta.as_object_mut().ok_or_else(|| CallError::InvalidParams("_meta must be an object".into()))?;
    // Only a token this host mints says who the caller is; no client sets it.
    meta.remove(CALLER_KEY);
    let mut via = loops::via(meta);
    peer.check_hops(&via)?;
    via.push(peer.host_id().to_owned());
    meta.insert(loops::VIA_KEY.to_owned(), json!(via));
    if let Caller::Legacy { facts, .. } = &call.caller {
        meta.insert(META_PROTOCOL.to_owned(), json!(PROTOCOL));
        meta.insert(META_CAPABILITIES.to_owned(), Value::Object(facts.capabilities.clone()));
        meta.insert(META_LOG_LEVEL.to_owned(), json!(facts.log_level()));
    }
    Ok(outgoing)
}

/// How a peer answered a relayed request.
enum PeerAnswer {
    /// A JSON answer, read (and its text, to pass on unchanged).
    Message(Value, Vec<u8>),
    /// An SSE stream, not yet read.
    Stream(reqwest::Response),
}

/// Post `request` to the peer; its answer, or the error its refusal (a non-2xx status) says.
async fn post(
    peer: &Peer,
    relay: &Relay,
    request: &Value,
    caller: &Identity,
    headers: reqwest::header::HeaderMap,
) -> Result<(PeerAnswer, tokio::time::Instant), CallError> {
    let body = serde_json::to_vec(request).map_err(|e| CallError::InvalidParams(e.to_string()))?;
    let deadline = tokio::time::Instant::now() + peer.timeout();
    let response = peer.relay_post(relay, body, caller, headers, deadline).await?;
    let status = response.status();
    let is_sse = response
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.trim_start().to_ascii_lowercase().starts_with("text/event-stream"));
    if !status.is_success() {
        let text = read_limited(peer, response, MAX_REFUSAL_BYTES, deadline, true).await?;
        let text = String::from_utf8_lossy(&text);
        if let Ok(answer) = serde_json::from_str::<Value>(&text)
            && let Some(error) = answer.get("error").and_then(|e| serde_json::from_value::<McpError>(e.clone()).ok())
        {
            return Err(CallError::Upstream(error));
        }
        return Err(CallError::Peer {
            peer: peer.name().to_owned(),
            message: format!("answered HTTP {status}: {}", text.trim()),
        });
    }
    if is_sse {
        return Ok((PeerAnswer::Stream(response), deadline));
    }
    let bytes = read_limited(peer, response, MAX_ANSWER_BYTES, deadline, false).await?;
    let answer = serde_json::from_slice(&bytes).map_err(|e| CallError::Peer {
        peer: peer.name().to_owned(),
        message: format!("answered with invalid JSON: {e}"),
    })?;
    Ok((PeerAnswer::Message(answer, bytes), deadline))
}

/// Whether an answer is an MRTR `input_required` result.
fn is_input_required(answer: &Value) -> bool {
    answer.get("result").and_then(|r| r.get("resultType")).and_then(Value::as_str) == Some("input_required")
}

/// Send the call to the peer and turn its answer into this host's.
async fn forward(
    peer: &Arc<Peer>,
    relay: &Arc<Relay>,
    local_name: &str,
    call: &Call<'_>,
    message: &Value,
    audit: &Audit,
    tracked: Option<RelayedCall>,
) -> Result<Response, CallError> {
    let request = outgoing(peer, local_name, call, message)?;
    let headers = match call.caller {
        Caller::Stateless { .. } => peer_headers(call.headers, local_name)?,
        Caller::Legacy { .. } => legacy_peer_headers(local_name)?,
    };
    let (answer, deadline) = post(peer, relay, &request, &audit.identity, headers.clone()).await?;
    if let Caller::Legacy { session, facts } = &call.caller {
        let asking = || asking::Asking {
            peer: peer.clone(),
            relay: relay.clone(),
            request,
            headers,
            session: session.clone(),
            facts: facts.clone(),
            expected: Expected::from(call),
            audit: audit.clone(),
            tracked,
        };
        let needs_the_client = match &answer {
            PeerAnswer::Message(answer, _) => is_input_required(answer),
            PeerAnswer::Stream(_) => true,
        };
        if needs_the_client {
            return Ok(asking::respond(asking(), answer, deadline));
        }
    }
    match answer {
        PeerAnswer::Stream(response) => Ok(relay_stream(peer.clone(), response, call, audit, deadline)),
        PeerAnswer::Message(answer, bytes) => match settle(peer.name(), &Expected::from(call), audit, answer)? {
            Settled::AsIs => Ok(json_response(bytes)),
            Settled::Rewritten(answer) => Ok(json_response(answer.to_string())),
        },
    }
}

/// The headers a legacy caller's request gets for the peer: a 2026-07-28 request's.
fn legacy_peer_headers(local_name: &str) -> Result<reqwest::header::HeaderMap, CallError> {
    let mut headers = reqwest::header::HeaderMap::new();
    headers.insert("mcp-protocol-version", reqwest::header::HeaderValue::from_static(PROTOCOL));
    headers.insert("mcp-method", reqwest::header::HeaderValue::from_static("tools/call"));
    let name = reqwest::header::HeaderValue::from_str(local_name)
        .map_err(|_| CallError::InvalidParams(format!("the tool name {local_name:?} cannot go in a header")))?;
    headers.insert("mcp-name", name);
    Ok(headers)
}

/// The `Mcp-*` headers the peer gets: the caller's (its `Mcp-Param-*` ones too, which the
/// peer checks against the arguments), with the name the peer knows the tool by.
fn peer_headers(caller: &HeaderMap, local_name: &str) -> Result<reqwest::header::HeaderMap, CallError> {
    let mut headers = reqwest::header::HeaderMap::new();
    for (name, value) in caller {
        let name = name.as_str();
        if name.starts_with("mcp-") && name != "mcp-session-id" && name != "mcp-name" {
            let name = reqwest::header::HeaderName::from_bytes(name.as_bytes())
                .map_err(|e| CallError::InvalidParams(e.to_string()))?;
            let value = reqwest::header::HeaderValue::from_bytes(value.as_bytes())
                .map_err(|e| CallError::InvalidParams(e.to_string()))?;
            headers.append(name, value);
        }
    }
    let name = reqwest::header::HeaderValue::from_str(local_name)
        .map_err(|_| CallError::InvalidParams(format!("the tool name {local_name:?} cannot go in a header")))?;
    headers.insert("mcp-name", name);
    Ok(headers)
}

/// Read at most `limit` bytes of the peer's answer before the deadline (`truncate`: stop
/// there; otherwise more is an error).
async fn read_limited(
    peer: &Peer,
    response: reqwest::Response,
    limit: usize,
    deadline: tokio::time::Instant,
    truncate: bool,
) -> Result<Vec<u8>, CallError> {
    let mut body = response.bytes_stream();
    let mut bytes = Vec::new();
    loop {
        let chunk = match tokio::time::timeout_at(deadline, body.next()).await {
            Err(_) => return Err(peer.timed_out()),
            Ok(None) => return Ok(bytes),
            Ok(Some(chunk)) => chunk.map_err(|e| CallError::PeerUnavailable {
                peer: peer.name().to_owned(),
                reason: crate::federation::credentials::with_causes(&e),
            })?,
        };
        if bytes.len() + chunk.len() > limit {
            if truncate {
                bytes.extend_from_slice(&chunk[..limit - bytes.len()]);
                return Ok(bytes);
            }
            return Err(CallError::Peer {
                peer: peer.name().to_owned(),
                message: format!("answered with more than {limit} bytes"),
            });
        }
        bytes.extend_from_slice(&chunk);
    }
}

enum Settled {
    AsIs,
    Rewritten(Value),
}

/// What checking the peer's answer needs to know of the call.
struct Expected {
    id: Value,
    /// The caller's client capabilities (none for a legacy caller).
    capabilities: Map<String, Value>,
    legacy: bool,
    progress_token: Option<Value>,
    /// What of the peer's messages the call has passed on so far: the budget a forwarded call
    /// has on the normal path, so the relay lets a peer say no more than rmcp's client would.
    budget: std::sync::Mutex<EventBudget>,
}

impl Expected {
    /// What reaches the caller of a message the peer sent on the call's stream (not its
    /// answer): the message, if `passes_on` lets it through and the budget holds; once the
    /// budget is spent, a single warning instead; otherwise nothing.
    fn pass_on(&self, peer: &str, message: Value) -> Option<Value> {
        if !passes_on(&message, self.progress_token.as_ref()) {
            return None;
        }
        let mut budget = self.budget.lock().ok()?;
        let bytes = message.get("params").map_or(0, |params| params.to_string().len());
        let text = match budget.charge(bytes) {
            Charge::Send => return Some(message),
            Charge::DropAndWarn => budget.warning(&format!("peer {peer} (in a forwarded call)")),
            Charge::Drop => String::new(),
        };
        DROPPED_MESSAGES.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        (!text.is_empty()).then(|| {
            json!({ "jsonrpc": "2.0", "method": "notifications/message",
                "params": { "level": "warning", "logger": "fedmcp", "data": text } })
        })
    }
}

impl From<&Call<'_>> for Expected {
    fn from(call: &Call<'_>) -> Self {
        let capabilities = match &call.caller {
            Caller::Stateless { capabilities } => capabilities.clone(),
            Caller::Legacy { .. } => Map::new(),
        };
        Self {
            id: call.id.clone(),
            capabilities,
            legacy: call.is_legacy(),
            progress_token: call.progress_token.clone(),
            budget: std::sync::Mutex::new(EventBudget::new(MAX_CALL_EVENTS, MAX_CALL_EVENT_BYTES)),
        }
    }
}

/// Check the peer's answer to the call and audit it. An MRTR result gets its `requestState`
/// sealed as the normal path seals it, so the caller's retry is verified the same way; a
/// legacy caller gets its result without the 2026-07-28 `resultType`.
fn settle(peer: &str, call: &Expected, audit: &Audit, mut answer: Value) -> Result<Settled, CallError> {
    let failed = |message: &str| CallError::Peer { peer: peer.to_owned(), message: message.to_owned() };
    if answer.get("id") != Some(&call.id) {
        return Err(failed("answered another request"));
    }
    if let Some(error) = answer.get("error") {
        let message = error.get("message").and_then(Value::as_str).unwrap_or_default();
        audit.done(format!("error: {message}"));
        return Ok(Settled::AsIs);
    }
    let Some(result) = answer.get_mut("result").and_then(Value::as_object_mut) else {
        return Err(failed("answered without a result"));
    };
    if result.get("resultType").and_then(Value::as_str) != Some("input_required") {
        let failed = result.get("isError").and_then(Value::as_bool) == Some(true);
        audit.done(if failed { "tool error" } else { "ok" }.to_owned());
        if call.legacy && result.remove("resultType").is_some() {
            return Ok(Settled::Rewritten(answer));
        }
        return Ok(Settled::AsIs);
    }
    let mut missing = Map::new();
    for request in result.get("inputRequests").and_then(Value::as_object).into_iter().flat_map(|r| r.values()) {
        let capability = match request.get("method").and_then(Value::as_str) {
            Some("elicitation/create") => "elicitation",
            Some("sampling/createMessage") => "sampling",
            Some("roots/list") => "roots",
            other => {
                return Err(CallError::InvalidParams(format!(
                    "the peer asked for input fedmcp cannot relay: {}",
                    other.unwrap_or("(no method)")
                )));
            }
        };
        if !call.capabilities.contains_key(capability) {
            missing.insert(capability.to_owned(), json!({}));
        }
    }
    if !missing.is_empty() {
        let missing = serde_json::from_value(Value::Object(missing)).unwrap_or_default();
        return Err(CallError::Upstream(McpError::missing_required_client_capability(missing)));
    }
    if call.legacy {
        return Err(failed("asked for input without saying what (input_required with no input requests)"));
    }
    let state = result.get("requestState").and_then(Value::as_str).map(str::to_owned);
    let sealed = audit.shared.seal_state(&audit.binding, &state).map_err(CallError::Upstream)?;
    result.insert("requestState".to_owned(), Value::String(sealed));
    audit.done("input required".to_owned());
    Ok(Settled::Rewritten(answer))
}

/// Pass the peer's SSE answer to a stateless call on event by event (its progress and log
/// notifications carry the caller's own progress token, which was forwarded unchanged),
/// settling the response.
fn relay_stream(
    peer: Arc<Peer>,
    response: reqwest::Response,
    call: &Call<'_>,
    audit: &Audit,
    deadline: tokio::time::Instant,
) -> Response {
    struct Relayed {
        events: futures::stream::BoxStream<'static, Result<sse_stream::Sse, sse_stream::Error>>,
        peer: Arc<Peer>,
        expected: Expected,
        audit: Audit,
        deadline: tokio::time::Instant,
        answered: bool,
    }
    let state = Relayed {
        events: sse_stream::SseStream::from_bytes_stream(response.bytes_stream()).boxed(),
        peer,
        expected: call.into(),
        audit: audit.clone(),
        deadline,
        answered: false,
    };
    let stream = futures::stream::unfold(Some(state), |state| async move {
        let mut state = state?;
        let failure = loop {
            match tokio::time::timeout_at(state.deadline, state.events.next()).await {
                Ok(Some(Ok(event))) => {
                    let Some(message) = event.data.as_deref().and_then(|data| serde_json::from_str::<Value>(data).ok())
                    else {
                        continue;
                    };
                    let is_answer = message.get("id") == Some(&state.expected.id)
                        && (message.get("result").is_some() || message.get("error").is_some());
                    if !is_answer {
                        if let Some(message) = state.expected.pass_on(state.peer.name(), message) {
                            return Some((Ok::<_, std::convert::Infallible>(data_event(&message)), Some(state)));
                        }
                        continue;
                    }
                    match settle(state.peer.name(), &state.expected, &state.audit, message.clone()) {
                        Ok(Settled::AsIs) => {
                            state.answered = true;
                            return Some((Ok(data_event(&message)), Some(state)));
                        }
                        Ok(Settled::Rewritten(answer)) => {
                            state.answered = true;
                            return Some((Ok(data_event(&answer)), Some(state)));
                        }
                        Err(error) => break error,
                    }
                }
                Ok(Some(Err(error))) => {
                    break CallError::PeerUnavailable {
                        peer: state.peer.name().to_owned(),
                        reason: format!("its answer stream broke: {error}"),
                    };
                }
                Ok(None) if state.answered => return None,
                Ok(None) => {
                    break CallError::PeerUnavailable {
                        peer: state.peer.name().to_owned(),
                        reason: "it closed the answer stream before answering".to_owned(),
                    };
                }
                Err(_) if state.answered => return None,
                Err(_) => break state.peer.timed_out(),
            }
        };
        let error = call_error(failure);
        state.audit.done(format!("error: {}", error.message));
        let message = json!({ "jsonrpc": "2.0", "id": state.expected.id, "error": error });
        Some((Ok(data_event(&message)), None))
    });
    let mut response = Response::new(Body::from_stream(stream));
    let headers = response.headers_mut();
    headers.insert(header::CONTENT_TYPE, HeaderValue::from_static("text/event-stream"));
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    response
}

/// A message as one SSE event of the response this host sends: data only. The peer's event
/// ids and retry hints mean nothing to this host's client (its resumption is this host's).
fn data_event(message: &Value) -> Bytes {
    format!("data: {message}\n\n").into()
}

/// How many of peers' SSE messages the relay did not pass on (see [`passes_on`]).
static DROPPED_MESSAGES: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);

/// How many of peers' SSE messages the relay has dropped since the host started.
pub fn dropped_messages() -> u64 {
    DROPPED_MESSAGES.load(std::sync::atomic::Ordering::Relaxed)
}

/// Whether a message a peer sent on a relayed call's stream, other than the call's answer,
/// reaches the caller: what the normal path passes on, and nothing else. Progress for the
/// caller's own token and log messages pass. A request of the peer's does not: a 2026-07-28
/// peer asks by MRTR (checked against what the client declared in `settle`), and a request on
/// the stream would reach a client that never declared the capability. Progress for another
/// token and any other message are dropped and counted.
fn passes_on(message: &Value, progress_token: Option<&Value>) -> bool {
    let passes = message.get("id").is_none()
        && match message.get("method").and_then(Value::as_str) {
            Some("notifications/message") => true,
            Some("notifications/progress") => {
                let token = message.get("params").and_then(|params| params.get("progressToken"));
                token.is_some() && token == progress_token
            }
            _ => false,
        };
    if !passes {
        DROPPED_MESSAGES.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        tracing::debug!(%message, "a peer's message on a relayed call's stream was not passed on");
    }
    passes
}

fn error_message(id: &Value, error: &McpError) -> Bytes {
    json!({ "jsonrpc": "2.0", "id": id, "error": error }).to_string().into()
}

/// The error answer to a call, with the HTTP status rmcp gives it on the normal path: a
/// stateless request's protocol errors are HTTP errors too; a legacy session's are not.
fn error_response(call: &Call<'_>, error: &McpError) -> Response {
    use rmcp::model::ErrorCode;
    let status = match error.code {
        _ if call.is_legacy() => StatusCode::OK,
        ErrorCode::UNSUPPORTED_PROTOCOL_VERSION
        | ErrorCode::MISSING_REQUIRED_CLIENT_CAPABILITY
        | ErrorCode::HEADER_MISMATCH => StatusCode::BAD_REQUEST,
        ErrorCode::METHOD_NOT_FOUND => StatusCode::NOT_FOUND,
        _ => StatusCode::OK,
    };
    let mut response = json_response(error_message(call.id, error));
    *response.status_mut() = status;
    response
}

fn json_response(body: impl Into<Bytes>) -> Response {
    let mut response = (StatusCode::OK, body.into()).into_response();
    response.headers_mut().insert(header::CONTENT_TYPE, HeaderValue::from_static("application/json"));
    response
}

#[cfg(test)]
mod tests {
    use super::*;

    fn request(headers: &[(&str, &str)]) -> Parts {
        let mut builder = axum::http::Request::post("/mcp");
        for (name, value) in headers {
            builder = builder.header(*name, *value);
        }
        builder.body(()).expect("a request").into_parts().0
    }

    const GOOD: [(&str, &str); 6] = [
        ("host", "127.0.0.1:8931"),
        ("content-type", "application/json"),
        ("accept", "application/json, text/event-stream"),
        ("mcp-protocol-version", "2026-07-28"),
        ("mcp-method", "tools/call"),
        ("mcp-name", "b__slugify"),
    ];

    fn message() -> Value {
        json!({ "jsonrpc": "2.0", "id": 3, "method": "tools/call", "params": {
            "name": "b__slugify", "arguments": { "text": "x" },
            "_meta": { META_PROTOCOL: PROTOCOL, META_CAPABILITIES: {} } } })
    }

    fn scope() -> RelayScope {
        RelayScope::new(&["localhost".to_owned(), "127.0.0.1".to_owned(), "[::1]".to_owned()])
    }

    fn with(change: (&'static str, &'static str)) -> Vec<(&'static str, &'static str)> {
        let mut headers: Vec<_> = GOOD.iter().copied().filter(|(name, _)| *name != change.0).collect();
        headers.push(change);
        headers
    }

    fn no_sessions() -> LegacySessions {
        LegacySessions::default()
    }

    #[test]
    fn only_progress_for_the_callers_token_and_log_messages_are_passed_on() {
        let token = json!(9);
        let progress = |token: Value| {
            json!({ "jsonrpc": "2.0", "method": "notifications/progress",
            "params": { "progressToken": token, "progress": 1 } })
        };
        let log =
            json!({ "jsonrpc": "2.0", "method": "notifications/message", "params": { "level": "info", "data": "x" } });
        assert!(passes_on(&progress(json!(9)), Some(&token)));
        assert!(passes_on(&log, Some(&token)));
        assert!(passes_on(&log, None));
        let dropped_before = dropped_messages();
        for dropped in [
            progress(json!(10)),
            progress(json!("9")),
            json!({ "jsonrpc": "2.0", "id": 5, "method": "sampling/createMessage", "params": { "messages": [], "maxTokens": 1 } }),
            json!({ "jsonrpc": "2.0", "id": 6, "method": "roots/list" }),
            json!({ "jsonrpc": "2.0", "method": "notifications/tools/list_changed" }),
            json!({ "jsonrpc": "2.0", "id": 3, "result": {} }),
        ] {
            assert!(!passes_on(&dropped, Some(&token)), "{dropped}");
        }
        assert!(!passes_on(&progress(json!(9)), None), "no token: no progress");
        assert!(dropped_messages() >= dropped_before + 7);
        // What is passed on is data alone: no event ids or retry hints of the peer's.
        assert_eq!(&data_event(&log)[..], format!("data: {log}\n\n").as_bytes());
    }

    #[test]
    fn a_relayed_call_passes_on_no_more_than_a_forwarded_calls_event_budget() {
        let expected = Expected {
            id: json!(1),
            capabilities: Map::new(),
            legacy: false,
            progress_token: Some(json!(9)),
            budget: std::sync::Mutex::new(EventBudget::new(MAX_CALL_EVENTS, MAX_CALL_EVENT_BYTES)),
        };
        let log =
            json!({ "jsonrpc": "2.0", "method": "notifications/message", "params": { "level": "info", "data": "x" } });
        for n in 0..MAX_CALL_EVENTS {
            assert_eq!(expected.pass_on("b", log.clone()).as_ref(), Some(&log), "message {n}");
        }
        let warning = expected.pass_on("b", log.clone()).expect("one warning");
        assert!(warning["params"]["data"].as_str().is_some_and(|d| d.contains("event budget")), "{warning}");
        assert_eq!(expected.pass_on("b", log.clone()), None, "warned once, then silent");
        // Bytes count too.
        let fresh = Expected {
            budget: std::sync::Mutex::new(EventBudget::new(MAX_CALL_EVENTS, MAX_CALL_EVENT_BYTES)),
            progress_token: None,
            ..expected
        };
        let big = json!({ "jsonrpc": "2.0", "method": "notifications/message",
            "params": { "level": "info", "data": "x".repeat(2 << 20) } });
        assert!(fresh.pass_on("b", big).is_some_and(|w| w["params"]["level"] == "warning"));
    }

    #[test]
    fn a_plain_stateless_tool_call_is_taken() {
        let parts = request(&GOOD);
        let message = message();
        let call = eligible(&scope(), &no_sessions(), &parts, &message).expect("eligible");
        assert_eq!((call.name, call.id, call.is_legacy()), ("b__slugify", &json!(3), false));
    }

    const LEGACY: [(&str, &str); 5] = [
        ("host", "127.0.0.1:8931"),
        ("content-type", "application/json"),
        ("accept", "application/json, text/event-stream"),
        ("mcp-protocol-version", "2025-11-25"),
        ("mcp-session-id", "s1"),
    ];

    fn legacy_message() -> Value {
        json!({ "jsonrpc": "2.0", "id": 4, "method": "tools/call", "params": {
            "name": "b__slugify", "arguments": { "text": "x" }, "_meta": { "progressToken": 9 } } })
    }

    /// A registry with session `s1` open (while the registration lives).
    fn sessions(can_be_asked: bool) -> (Arc<LegacySessions>, crate::legacy_sessions::Registration) {
        let sessions = Arc::new(LegacySessions::default());
        let mut capabilities = Map::new();
        if can_be_asked {
            capabilities.insert("sampling".to_owned(), json!({}));
        }
        let facts = SessionFacts { protocol: "2025-11-25".into(), capabilities, log_level: Arc::default() };
        let registration = sessions.register("s1".into(), facts);
        (sessions, registration)
    }

    #[test]
    fn a_call_of_a_known_legacy_session_is_taken() {
        let message = legacy_message();
        let (known, _open) = sessions(false);
        let parts = request(&LEGACY);
        let call = eligible(&scope(), &known, &parts, &message).expect("eligible");
        assert!(call.is_legacy());
        let mut with_sep_2243 = LEGACY.to_vec();
        with_sep_2243.extend([("mcp-method", "tools/call"), ("mcp-name", "b__slugify")]);
        assert!(eligible(&scope(), &known, &request(&with_sep_2243), &message).is_some());
    }

    #[test]
    fn a_legacy_call_the_session_must_judge_is_left_to_it() {
        let message = legacy_message();
        let (asks, _open) = sessions(true);
        assert!(eligible(&scope(), &asks, &request(&LEGACY), &message).is_some(), "the relay asks the client");
        let (known, _open) = sessions(false);
        assert!(eligible(&scope(), &no_sessions(), &request(&LEGACY), &message).is_none(), "unknown session");
        let swap = |change: (&'static str, &'static str)| {
            let mut headers: Vec<_> = LEGACY.iter().copied().filter(|(name, _)| *name != change.0).collect();
            headers.push(change);
            headers
        };
        let refused_headers = [
            swap(("mcp-protocol-version", "2025-06-18")),
            swap(("mcp-session-id", "s2")),
            swap(("origin", "http://localhost:3000")),
            LEGACY.iter().copied().filter(|(name, _)| *name != "mcp-protocol-version").collect(),
            swap(("mcp-name", "b__other")),
            swap(("mcp-method", "tools/list")),
        ];
        for headers in refused_headers {
            assert!(eligible(&scope(), &known, &request(&headers), &message).is_none(), "{headers:?}");
        }
        let mut modern_meta = message.clone();
        modern_meta["params"]["_meta"][META_PROTOCOL] = json!(PROTOCOL);
        let mut task = message.clone();
        task["params"]["task"] = json!({});
        for refused in [modern_meta, task] {
            assert!(eligible(&scope(), &known, &request(&LEGACY), &refused).is_none(), "{refused}");
        }
    }

    #[test]
    fn anything_the_normal_path_must_judge_is_left_to_it() {
        let message = message();
        let (known, _open) = sessions(false);
        let refused_headers = [
            with(("host", "evil.example")),
            with(("host", "127.0.0.1.evil.example:80")),
            with(("origin", "http://localhost:3000")),
            with(("mcp-session-id", "abc")),
            with(("mcp-session-id", "s1")),
            with(("content-type", "text/plain")),
            with(("accept", "application/json")),
            with(("mcp-protocol-version", "2025-11-25")),
            with(("mcp-method", "tools/list")),
            with(("mcp-name", "b__other")),
            GOOD.iter().copied().filter(|(name, _)| *name != "mcp-name").collect(),
        ];
        for headers in refused_headers {
            assert!(eligible(&scope(), &known, &request(&headers), &message).is_none(), "{headers:?}");
        }
        let parts = request(&GOOD);
        let mut retry = message.clone();
        retry["params"]["requestState"] = json!("s");
        let mut task = message.clone();
        task["params"]["task"] = json!({});
        let mut legacy_meta = message.clone();
        legacy_meta["params"]["_meta"][META_PROTOCOL] = json!("2025-11-25");
        let mut no_capabilities = message.clone();
        no_capabilities["params"]["_meta"].as_object_mut().map(|m| m.remove(META_CAPABILITIES));
        let mut notification = message.clone();
        notification.as_object_mut().map(|m| m.remove("id"));
        let mut bad_arguments = message.clone();
        bad_arguments["params"]["arguments"] = json!([1]);
        for refused in [retry, task, legacy_meta, no_capabilities, notification, bad_arguments] {
            assert!(eligible(&scope(), &no_sessions(), &parts, &refused).is_none(), "{refused}");
        }
    }
}
