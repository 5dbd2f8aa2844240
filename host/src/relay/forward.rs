//! The relayed call on its way to the peer: the request as the peer gets it (the tool's name
//! there, the hosts crossed), its headers, the POST with the peer's time limit, and the peer's
//! answer read within limits.

use std::sync::Arc;

use axum::http::{HeaderMap, header};
use axum::response::Response;
use futures::StreamExt;
use rmcp::ErrorData as McpError;
use serde_json::{Value, json};

use crate::auth::Identity;
use crate::call::CallError;
use crate::federation::credentials::CALLER_KEY;
use crate::federation::{Peer, Relay, loops};
use crate::telemetry;

use super::*;

/// The request as the peer gets it: the tool's name there, the hosts crossed.
pub(super) fn outgoing(peer: &Peer, local_name: &str, message: &Value) -> Result<Value, CallError> {
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
    Ok(outgoing)
}

/// How a peer answered a relayed request.
pub(super) enum PeerAnswer {
    /// A JSON answer, read (and its text, to pass on unchanged).
    Message(Value, Vec<u8>),
    /// An SSE stream, not yet read.
    Stream(reqwest::Response),
}

/// Post `request` to the peer; its answer, or the error its refusal (a non-2xx status) says.
pub(super) async fn post(
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

/// Send the call to the peer and turn its answer into this host's.
pub(super) async fn forward(
    peer: &Arc<Peer>,
    relay: &Arc<Relay>,
    local_name: &str,
    call: &Call<'_>,
    message: &Value,
    audit: &Audit,
) -> Result<Response, CallError> {
    let mut request = outgoing(peer, local_name, message)?;
    let headers = peer_headers(call.headers, local_name)?;
    // Under the call's span when it is traced (the caller's request span is current): the
    // request to the peer gets a span of its own, whose context its `_meta` carries.
    let span = telemetry::send("tools/call", Some(local_name), peer.name(), Some(&telemetry::JsonId(call.id)));
    if let Some(span) = &span
        && let Some(meta) =
            request.get_mut("params").and_then(|params| params.get_mut("_meta")).and_then(Value::as_object_mut)
    {
        telemetry::inject(span, meta);
    }
    let posted = post(peer, relay, &request, &audit.identity, headers).await;
    if let Some(span) = &span {
        let ending = match &posted {
            Ok((PeerAnswer::Message(answer, _), _)) => telemetry::Ending::of_answer(answer),
            Ok((PeerAnswer::Stream(_), _)) => telemetry::Ending::Ok,
            Err(error) => telemetry::Ending::of_call_error(error),
        };
        // The caller's span records a peer's answer too: it is passed on as it came. A failure
        // to get one is the relay's to record (it answers the caller with its own error).
        if let Ok((PeerAnswer::Message(..), _)) = &posted {
            telemetry::record_current(ending.clone());
        }
        telemetry::end_request(span, ending);
    }
    let (answer, deadline) = posted?;
    match answer {
        PeerAnswer::Stream(response) => Ok(relay_stream(peer.clone(), response, call, audit, deadline)),
        PeerAnswer::Message(answer, bytes) => match settle(peer.name(), &Expected::from(call), audit, answer)? {
            Settled::AsIs => Ok(json_response(bytes)),
            Settled::Rewritten(answer) => Ok(json_response(answer.to_string())),
        },
    }
}

/// The `Mcp-*` headers the peer gets: the caller's (its `Mcp-Param-*` ones too, which the
/// peer checks against the arguments), with the name the peer knows the tool by.
pub(super) fn peer_headers(caller: &HeaderMap, local_name: &str) -> Result<reqwest::header::HeaderMap, CallError> {
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
pub(super) async fn read_limited(
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
