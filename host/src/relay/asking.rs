//! A relayed call of a legacy session whose peer needs something from the client mid-call.
//!
//! The peer (2026-07-28) asks with an MRTR `input_required` result; a 2025-11-25 client is
//! asked with server-to-client requests instead. The relay sends them on the call's own
//! response stream (where the 2025-11-25 transport says requests about a call belong), under
//! ids of its own; the client's answers come back as POSTs in the session, which the HTTP edge
//! hands to `LegacySessions::answer`. The relay then retries the call at the peer with the
//! answers and the peer's `requestState`, as a 2026-07-28 client would, passing the peer's
//! notifications on, until the peer answers.

// Sampling is deprecated by SEP-2577 (2026-07-28) but is live in 2025-11-25.
#![allow(deprecated)]

use std::sync::Arc;

use axum::body::Body;
use axum::http::{HeaderValue, header};
use axum::response::Response;
use bytes::Bytes;
use futures::StreamExt;
use rmcp::ErrorData as McpError;
use rmcp::model::{CreateMessageRequestParams, ElicitRequestParams};
use serde_json::{Map, Value, json};
use tokio::sync::mpsc;

use super::{Audit, Expected, PeerAnswer, Settled, data_event, is_input_required, post, settle};
use crate::call::CallError;
use crate::federation::{Peer, Relay};
use crate::held::HOLD_LIMIT;
use crate::legacy_sessions::{RelayedCall, SessionFacts};
use crate::session::call_error;

/// How many rounds of questions a call may take before the relay gives up on a peer that keeps
/// asking (the session's limit too).
const MAX_INPUT_ROUNDS: usize = 10;

/// A legacy session's call whose peer needs, or may need, the client.
pub(super) struct Asking {
    pub peer: Arc<Peer>,
    pub relay: Arc<Relay>,
    /// The request as the peer got it.
    pub request: Value,
    pub headers: reqwest::header::HeaderMap,
    pub session: String,
    pub facts: Arc<SessionFacts>,
    pub expected: Expected,
    pub audit: Audit,
    pub tracked: Option<RelayedCall>,
}

/// Answer the client with an SSE stream: the peer's notifications, the questions the peer
/// needs answered, and the call's answer at the end.
pub(super) fn respond(asking: Asking, first: PeerAnswer, deadline: tokio::time::Instant) -> Response {
    let (events, mut stream) = mpsc::channel::<Bytes>(16);
    tokio::spawn(async move {
        let cancelled = asking.tracked.as_ref().map(|t| t.cancelled.clone()).unwrap_or_default();
        let outcome = tokio::select! {
            outcome = asking.rounds(first, deadline, &events) => outcome,
            () = cancelled.cancelled() => {
                Err(CallError::Upstream(McpError::internal_error("the request was cancelled", None)))
            }
            // The client went away: dropping the peer's request tells the peer.
            () = events.closed() => {
                asking.audit.done("error: the client closed the response stream".to_owned());
                return;
            }
        };
        let answer = match outcome {
            Ok(answer) => answer,
            Err(error) => {
                let error = call_error(error);
                asking.audit.done(format!("error: {}", error.message));
                json!({ "jsonrpc": "2.0", "id": asking.expected.id, "error": error })
            }
        };
        let _ = events.send(data_event(&answer)).await;
    });
    let body =
        futures::stream::poll_fn(move |cx| stream.poll_recv(cx).map(|b| b.map(Ok::<_, std::convert::Infallible>)));
    let mut response = Response::new(Body::from_stream(body));
    let headers = response.headers_mut();
    headers.insert(header::CONTENT_TYPE, HeaderValue::from_static("text/event-stream"));
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    response
}

impl Asking {
    fn failed(&self, message: String) -> CallError {
        CallError::Peer { peer: self.peer.name().to_owned(), message }
    }

    /// Drive the call to its answer (settled and audited), asking the client as often as the
    /// peer needs.
    async fn rounds(
        &self,
        mut answer: PeerAnswer,
        mut deadline: tokio::time::Instant,
        events: &mpsc::Sender<Bytes>,
    ) -> Result<Value, CallError> {
        for _ in 0..MAX_INPUT_ROUNDS {
            let message = self.final_message(answer, deadline, events).await?;
            if !is_input_required(&message) {
                return match settle(self.peer.name(), &self.expected, &self.audit, message.clone())? {
                    Settled::AsIs => Ok(message),
                    Settled::Rewritten(answer) => Ok(answer),
                };
            }
            let result = &message["result"];
            let responses = self.ask_client(result.get("inputRequests"), events).await?;
            let mut retry = self.request.clone();
            retry["params"]["inputResponses"] = Value::Object(responses);
            if let Some(state) = result.get("requestState") {
                retry["params"]["requestState"] = state.clone();
            }
            (answer, deadline) =
                post(&self.peer, &self.relay, &retry, &self.audit.identity, self.headers.clone()).await?;
        }
        Err(self.failed(format!("kept asking for input after {MAX_INPUT_ROUNDS} rounds")))
    }

    /// The peer's answer to the call, its notifications before it passed on to the client.
    async fn final_message(
        &self,
        answer: PeerAnswer,
        deadline: tokio::time::Instant,
        events: &mpsc::Sender<Bytes>,
    ) -> Result<Value, CallError> {
        let response = match answer {
            PeerAnswer::Message(message, _) => return Ok(message),
            PeerAnswer::Stream(response) => response,
        };
        let mut stream = sse_stream::SseStream::from_bytes_stream(response.bytes_stream());
        loop {
            let event = match tokio::time::timeout_at(deadline, stream.next()).await {
                Err(_) => return Err(self.peer.timed_out()),
                Ok(None) => {
                    let reason = "it closed the answer stream before answering".to_owned();
                    return Err(CallError::PeerUnavailable { peer: self.peer.name().to_owned(), reason });
                }
                Ok(Some(Err(error))) => {
                    let reason = format!("its answer stream broke: {error}");
                    return Err(CallError::PeerUnavailable { peer: self.peer.name().to_owned(), reason });
                }
                Ok(Some(Ok(event))) => event,
            };
            let Some(message) = event.data.as_deref().and_then(|data| serde_json::from_str::<Value>(data).ok()) else {
                continue;
            };
            if message.get("id") == Some(&self.expected.id)
                && (message.get("result").is_some() || message.get("error").is_some())
            {
                return Ok(message);
            }
            let Some(message) = self.expected.pass_on(self.peer.name(), message) else { continue };
            if events.send(data_event(&message)).await.is_err() {
                return Err(CallError::Upstream(McpError::internal_error("the client went away", None)));
            }
        }
    }

    /// Ask the client each of the peer's input requests, in turn; the answers, keyed as the
    /// peer keyed its requests.
    async fn ask_client(
        &self,
        requests: Option<&Value>,
        events: &mpsc::Sender<Bytes>,
    ) -> Result<Map<String, Value>, CallError> {
        let requests = requests.and_then(Value::as_object).filter(|r| !r.is_empty());
        let requests = requests.ok_or_else(|| self.failed("asked for input without saying what".to_owned()))?;
        let mut missing = Map::new();
        for request in requests.values() {
            let capability = capability_for(request.get("method").and_then(Value::as_str))?;
            if !self.facts.capabilities.contains_key(capability) {
                missing.insert(capability.to_owned(), json!({}));
            }
        }
        if !missing.is_empty() {
            let missing = serde_json::from_value(Value::Object(missing)).unwrap_or_default();
            return Err(CallError::Upstream(McpError::missing_required_client_capability(missing)));
        }
        let mut answers = Map::new();
        for (key, request) in requests {
            let method = request.get("method").and_then(Value::as_str).unwrap_or_default();
            let params = client_params(method, request.get("params"))?;
            let (id, mut pending) = self.audit.shared.legacy.ask(&self.session);
            let question = json!({ "jsonrpc": "2.0", "id": id, "method": method, "params": params });
            if events.send(data_event(&question)).await.is_err() {
                return Err(CallError::Upstream(McpError::internal_error("the client went away", None)));
            }
            let what = capability_for(Some(method))?;
            let response = tokio::time::timeout(HOLD_LIMIT, &mut pending.answer)
                .await
                .map_err(|_| {
                    let limit = HOLD_LIMIT.as_secs();
                    McpError::internal_error(format!("the client did not answer the {what} request in {limit} s"), None)
                })
                .and_then(|answer| {
                    answer.map_err(|_| McpError::internal_error("the session ended before the client answered", None))
                })
                .map_err(CallError::Upstream)?;
            match (response.get("result"), response.get("error")) {
                (Some(result), _) => {
                    answers.insert(key.clone(), result.clone());
                }
                (None, error) => {
                    let message = error.and_then(|e| e.get("message")).and_then(Value::as_str).unwrap_or("no result");
                    let message = format!("the client failed the {what} request: {message}");
                    return Err(CallError::Upstream(McpError::internal_error(message, None)));
                }
            }
        }
        Ok(answers)
    }
}

/// The client capability an input request needs.
fn capability_for(method: Option<&str>) -> Result<&'static str, CallError> {
    match method {
        Some("elicitation/create") => Ok("elicitation"),
        Some("sampling/createMessage") => Ok("sampling"),
        Some("roots/list") => Ok("roots"),
        other => Err(CallError::InvalidParams(format!(
            "the peer asked for input fedmcp cannot relay: {}",
            other.unwrap_or("(no method)")
        ))),
    }
}

/// A request's params as a 2025-11-25 client takes them: read into rmcp's types, as the
/// session reads a plugin's requests, so that what the client gets is what the protocol says.
fn client_params(method: &str, params: Option<&Value>) -> Result<Value, CallError> {
    let params = params.cloned().unwrap_or_else(|| json!({}));
    let invalid =
        |what: &str, e: serde_json::Error| CallError::InvalidParams(format!("the {what} request is invalid: {e}"));
    let normalised = match method {
        "sampling/createMessage" => serde_json::from_value::<CreateMessageRequestParams>(params)
            .and_then(serde_json::to_value)
            .map_err(|e| invalid("sampling", e))?,
        "elicitation/create" => serde_json::from_value::<ElicitRequestParams>(params)
            .and_then(serde_json::to_value)
            .map_err(|e| invalid("elicitation", e))?,
        _ => params,
    };
    Ok(normalised)
}
