//! The peer's answer on its way back: checked, audited and, for an MRTR result, its
//! `requestState` sealed as the normal path seals it; an SSE answer passed on event by event
//! within the call's event budget (only the caller's own progress and log messages); errors
//! with the HTTP status rmcp gives them.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use axum::body::Body;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use bytes::Bytes;
use futures::StreamExt;
use rmcp::ErrorData as McpError;
use serde_json::{Map, Value, json};

use crate::call::{CallError, Charge, EventBudget};
use crate::federation::Peer;
use crate::federation::{MAX_CALL_EVENT_BYTES, MAX_CALL_EVENTS};
use crate::session::call_error;

use super::*;

pub(super) enum Settled {
    AsIs,
    Rewritten(Value),
}

/// What checking the peer's answer needs to know of the call.
pub(super) struct Expected {
    pub(super) id: Value,
    /// The caller's client capabilities.
    pub(super) capabilities: Map<String, Value>,
    pub(super) progress_token: Option<Value>,
    /// What of the peer's messages the call has passed on so far: the budget a forwarded call
    /// has on the normal path, so the relay lets a peer say no more than rmcp's client would.
    pub(super) budget: std::sync::Mutex<EventBudget>,
}

impl Expected {
    /// What reaches the caller of a message the peer sent on the call's stream (not its
    /// answer): the message, if `passes_on` lets it through and the budget holds; once the
    /// budget is spent, a single warning instead; otherwise nothing.
    pub(super) fn pass_on(&self, peer: &str, message: Value) -> Option<Value> {
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
        DROPPED_MESSAGES.fetch_add(1, Ordering::Relaxed);
        (!text.is_empty()).then(|| {
            json!({ "jsonrpc": "2.0", "method": "notifications/message",
                "params": { "level": "warning", "logger": "fedmcp", "data": text } })
        })
    }
}

impl From<&Call<'_>> for Expected {
    fn from(call: &Call<'_>) -> Self {
        Self {
            id: call.id.clone(),
            capabilities: call.capabilities.clone(),
            progress_token: call.progress_token.cloned(),
            budget: std::sync::Mutex::new(EventBudget::new(MAX_CALL_EVENTS, MAX_CALL_EVENT_BYTES)),
        }
    }
}

/// Check the peer's answer to the call and audit it. An MRTR result gets its `requestState`
/// sealed as the normal path seals it, so the caller's retry is verified the same way.
pub(super) fn settle(peer: &str, call: &Expected, audit: &Audit, mut answer: Value) -> Result<Settled, CallError> {
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
    let state = result.get("requestState").and_then(Value::as_str).map(str::to_owned);
    let sealed = audit.shared.seal_state(&audit.binding, &state).map_err(CallError::Upstream)?;
    result.insert("requestState".to_owned(), Value::String(sealed));
    audit.done("input required".to_owned());
    Ok(Settled::Rewritten(answer))
}

/// Pass the peer's SSE answer to a stateless call on event by event (its progress and log
/// notifications carry the caller's own progress token, which was forwarded unchanged),
/// settling the response.
pub(super) fn relay_stream(
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
pub(super) fn data_event(message: &Value) -> Bytes {
    format!("data: {message}\n\n").into()
}

/// How many of peers' SSE messages the relay did not pass on (see [`passes_on`]).
pub(super) static DROPPED_MESSAGES: AtomicU64 = AtomicU64::new(0);

/// Whether a message a peer sent on a relayed call's stream, other than the call's answer,
/// reaches the caller: what the normal path passes on, and nothing else. Progress for the
/// caller's own token and log messages pass. A request of the peer's does not: a 2026-07-28
/// peer asks by MRTR (checked against what the client declared in `settle`), and a request on
/// the stream would reach a client that never declared the capability. Progress for another
/// token and any other message are dropped and counted.
pub(super) fn passes_on(message: &Value, progress_token: Option<&Value>) -> bool {
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
        DROPPED_MESSAGES.fetch_add(1, Ordering::Relaxed);
        tracing::debug!(%message, "a peer's message on a relayed call's stream was not passed on");
    }
    passes
}

pub(super) fn error_message(id: &Value, error: &McpError) -> Bytes {
    json!({ "jsonrpc": "2.0", "id": id, "error": error }).to_string().into()
}

/// The error answer to a call, with the HTTP status rmcp gives it on the normal path: a
/// stateless request's protocol errors are HTTP errors too.
pub(super) fn error_response(call: &Call<'_>, error: &McpError) -> Response {
    let mut response = json_response(error_message(call.id, error));
    *response.status_mut() = error_status(error.code);
    response
}

/// The HTTP status rmcp answers a stateless request's error with (its `_meta` well-formed:
/// the relay takes no other).
pub(super) fn error_status(code: rmcp::model::ErrorCode) -> StatusCode {
    use rmcp::model::ErrorCode;
    match code {
        ErrorCode::UNSUPPORTED_PROTOCOL_VERSION
        | ErrorCode::MISSING_REQUIRED_CLIENT_CAPABILITY
        | ErrorCode::HEADER_MISMATCH => StatusCode::BAD_REQUEST,
        ErrorCode::METHOD_NOT_FOUND => StatusCode::NOT_FOUND,
        _ => StatusCode::OK,
    }
}

pub(super) fn json_response(body: impl Into<Bytes>) -> Response {
    let mut response = (StatusCode::OK, body.into()).into_response();
    response.headers_mut().insert(header::CONTENT_TYPE, HeaderValue::from_static("application/json"));
    response
}

#[cfg(test)]
mod tests {
    use super::*;

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
        let dropped_before = DROPPED_MESSAGES.load(Ordering::Relaxed);
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
        assert!(DROPPED_MESSAGES.load(Ordering::Relaxed) >= dropped_before + 7);
        // What is passed on is data alone: no event ids or retry hints of the peer's.
        assert_eq!(&data_event(&log)[..], format!("data: {log}\n\n").as_bytes());
    }

    #[test]
    fn a_relayed_call_passes_on_no_more_than_a_forwarded_calls_event_budget() {
        let expected = Expected {
            id: json!(1),
            capabilities: Map::new(),
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
}
