//! The first layer a POST to `/mcp` passes: it must carry one JSON-RPC message. Malformed JSON
//! (-32700), a batch (-32600, removed in 2025-06-18), a body over the limit (413) and what
//! rmcp would misjudge (see `jsonrpc`) are answered here; a message that passes goes on with
//! its parsed form in the request's extensions ([`Message`]), so the layers after this one
//! read it without parsing the body again.

use axum::body::Body;
use axum::extract::{Request, State};
use axum::http::{HeaderValue, Method, StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use bytes::{Bytes, BytesMut};
use http_body_util::BodyExt;
use serde_json::{Value, json};

use super::jsonrpc;

/// The JSON-RPC message of a POST that passed this layer.
#[derive(Clone, Debug)]
pub(super) struct Message(pub Value);

/// A message that passed this layer as a well-formed `tools/call`, as rmcp's type reads it.
#[derive(Clone, Debug)]
pub(super) struct ParsedToolCall(pub Box<jsonrpc::ToolCall>);

/// A JSON-RPC error answered by the edge, for a message it could not read an id from.
pub(super) fn jsonrpc_error(status: StatusCode, code: i32, message: String) -> Response {
    let body = json!({ "jsonrpc": "2.0", "id": null, "error": { "code": code, "message": message } });
    (status, axum::Json(body)).into_response()
}

/// Let a POST through only as one JSON-RPC message of at most `limit` bytes.
pub(super) async fn single_message(State(limit): State<usize>, request: Request, next: Next) -> Response {
    if request.method() != Method::POST {
        return next.run(request).await;
    }
    let (mut parts, body) = request.into_parts();
    let bytes = match read_body(body, limit).await {
        Ok(bytes) => bytes,
        Err(BodyError::TooLarge) => {
            let message = format!("Payload Too Large: the request body exceeds {limit} bytes");
            let mut response = jsonrpc_error(StatusCode::PAYLOAD_TOO_LARGE, -32600, message);
            // Whatever of the body went unread leaves the connection unusable for another request.
            response.headers_mut().insert(header::CONNECTION, HeaderValue::from_static("close"));
            return response;
        }
        Err(BodyError::Broken) => return StatusCode::BAD_REQUEST.into_response(),
    };
    let message = match serde_json::from_slice::<Value>(&bytes) {
        Err(error) => {
            return jsonrpc_error(StatusCode::BAD_REQUEST, -32700, format!("Parse error: {error}"));
        }
        Ok(Value::Array(_)) => {
            let message = "Invalid Request: JSON-RPC batches are not supported (removed in MCP 2025-06-18)";
            return jsonrpc_error(StatusCode::BAD_REQUEST, -32600, message.to_owned());
        }
        Ok(message) => message,
    };
    match jsonrpc::checked(&message, &bytes, &parts.headers) {
        Err(invalid) => return invalid.into_response(),
        Ok(Some(call)) => {
            parts.extensions.insert(ParsedToolCall(Box::new(call)));
        }
        Ok(None) => {}
    }
    parts.extensions.insert(Message(message));
    next.run(Request::from_parts(parts, Body::from(bytes))).await
}

enum BodyError {
    TooLarge,
    Broken,
}

/// Read a body of at most `limit` bytes. Past the limit, keep reading (and discarding) up to
/// `limit` more so that a slightly oversized request still gets its 413: closing a socket with
/// unread data makes the kernel reset it, and the client may lose the answer.
async fn read_body(mut body: Body, limit: usize) -> Result<Bytes, BodyError> {
    let mut bytes = BytesMut::new();
    let mut discarded = 0usize;
    while let Some(frame) = body.frame().await {
        let Ok(data) = frame.map_err(|_| BodyError::Broken)?.into_data() else { continue };
        if discarded == 0 && bytes.len() + data.len() <= limit {
            bytes.extend_from_slice(&data);
            continue;
        }
        discarded += data.len();
        if discarded > limit {
            break;
        }
    }
    if discarded > 0 { Err(BodyError::TooLarge) } else { Ok(bytes.freeze()) }
}
