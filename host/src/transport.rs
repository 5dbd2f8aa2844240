//! How clients reach the host: Streamable HTTP at `/mcp` (both protocol eras on one
//! endpoint, chosen per request), `GET /health`, and stdio for one local client.

use std::sync::Arc;

use axum::Router;
use axum::body::Body;
use axum::extract::{Request, State};
use axum::http::{HeaderValue, Method, StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use bytes::{Bytes, BytesMut};
use http_body_util::BodyExt;
use rmcp::ServiceExt;
use rmcp::transport::streamable_http_server::session::local::LocalSessionManager;
use rmcp::transport::{StreamableHttpServerConfig, StreamableHttpService};
use serde_json::json;
use std::time::Duration;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::auth::Identity;
use crate::auth::edge::{self, Gate};
use crate::relay::{self, RelayScope};
use crate::session::{Session, Shared};

pub(crate) mod config;
mod jsonrpc;
mod rebinding;

const SESSION_HEADER: &str = "mcp-session-id";

/// Origins of loopback pages; any other browser origin is refused (DNS-rebinding guard).
const LOOPBACK_ORIGINS: [&str; 6] = [
    "http://localhost:*",
    "http://127.0.0.1:*",
    "http://[::1]:*",
    "https://localhost:*",
    "https://127.0.0.1:*",
    "https://[::1]:*",
];

/// What the HTTP listener needs besides the shared session state.
pub struct HttpOptions {
    pub allowed_hosts: Vec<String>,
    pub allowed_origins: Vec<String>,
    pub max_request_body_bytes: usize,
    /// How long a legacy session may go without a request before the host ends it.
    pub session_idle: Duration,
    /// Bearer-token authentication; `None` serves every (loopback) client as the local user.
    pub gate: Option<Arc<Gate>>,
}

/// The axum router: `/mcp` and `/health`.
/// Cancelling `streams` ends every SSE stream and session; `requests` tracks each POST until
/// its response has been sent in full (an SSE reply included), so shutdown can wait for them.
pub fn router(shared: Arc<Shared>, options: HttpOptions, streams: CancellationToken, requests: TaskTracker) -> Router {
    let mut hosts: Vec<String> = ["localhost", "127.0.0.1", "::1", "[::1]"].map(String::from).to_vec();
    hosts.extend(options.allowed_hosts);
    let scope = Arc::new(RelayScope::new(&hosts));
    let mut origins: Vec<String> = LOOPBACK_ORIGINS.map(String::from).to_vec();
    origins.extend(options.allowed_origins);
    let rebinding = Arc::new(rebinding::Rebinding::new(&hosts, &origins));
    let config = StreamableHttpServerConfig::default()
        .with_allowed_hosts(hosts)
        .with_allowed_origins(origins)
        .with_max_request_body_bytes(options.max_request_body_bytes)
        .with_cancellation_token(streams.child_token())
        // A stateless (2026-07-28) request whose handler sends nothing before its result is
        // answered with plain JSON rather than a one-event SSE stream; cheaper for both ends,
        // and rmcp falls back to SSE as soon as a notification comes first.
        .with_json_response(true);
    let factory_shared = shared.clone();
    // The host ends idle sessions itself (`end_idle_sessions`): calls the relay serves never
    // reach rmcp's session worker, whose own idle timer would end a busy session.
    let mut manager = LocalSessionManager::default();
    manager.session_config.keep_alive = None;
    let manager = Arc::new(manager);
    let idle = IdleSweep { limit: options.session_idle, gate: options.gate.clone() };
    tokio::spawn(end_idle_sessions(shared.clone(), manager.clone(), idle, streams.child_token()));
    let mcp = StreamableHttpService::new(move || Ok(Session::new(factory_shared.clone())), manager, config);
    let limit = options.max_request_body_bytes;
    let gate = options.gate;
    let gate_for_health = gate.clone();
    let edge_shared = shared.clone();
    let check_gate = gate.clone();
    let mut mcp = Router::new().nest_service("/mcp", mcp).layer(axum::middleware::from_fn(move |request, next| {
        let edge = Edge { shared: edge_shared.clone(), gate: check_gate.clone(), scope: scope.clone(), limit };
        track_until_sent(request, next, requests.clone(), edge)
    }));
    if let Some(gate) = gate {
        // Outermost: a request without a valid token is answered before its body is read.
        mcp = mcp.layer(axum::middleware::from_fn_with_state(gate.clone(), edge::authenticate)).merge(
            Router::new()
                .route(edge::METADATA_PATH, get(edge::metadata))
                .route(&format!("{}/mcp", edge::METADATA_PATH), get(edge::metadata))
                .with_state(gate)
                .layer(axum::middleware::from_fn_with_state(rebinding.clone(), rebinding::guard)),
        );
    }
    // rmcp guards `/mcp` against DNS rebinding; the routes beside it get the same guard.
    mcp.merge(
        Router::new()
            .route("/health", get(health))
            .with_state((shared, gate_for_health))
            .layer(axum::middleware::from_fn_with_state(rebinding, rebinding::guard)),
    )
}

fn jsonrpc_error(status: StatusCode, code: i32, message: String) -> Response {
    let body = json!({ "jsonrpc": "2.0", "id": null, "error": { "code": code, "message": message } });
    (status, axum::Json(body)).into_response()
}

/// What the `/mcp` middleware checks a POST against.
struct Edge {
    shared: Arc<Shared>,
    gate: Option<Arc<Gate>>,
    scope: Arc<RelayScope>,
    limit: usize,
}

/// When a legacy session counts as idle, and the gate that must forget an ended session.
struct IdleSweep {
    limit: Duration,
    gate: Option<Arc<Gate>>,
}

/// End the legacy sessions nobody used for `limit`, until `stop`.
async fn end_idle_sessions(
    shared: Arc<Shared>,
    manager: Arc<LocalSessionManager>,
    IdleSweep { limit, gate }: IdleSweep,
    stop: CancellationToken,
) {
    use rmcp::transport::streamable_http_server::session::SessionManager;
    let mut every = tokio::time::interval(limit / 10);
    loop {
        tokio::select! {
            _ = every.tick() => {}
            () = stop.cancelled() => return,
        }
        for id in shared.legacy.idle(limit) {
            tracing::debug!(session = %id, "ending an idle session");
            // Also sessions rmcp already ended for its own reasons: the listener issued them,
            // so the sweep finds them once unused, and the gate forgets them here.
            if let Some(gate) = &gate {
                gate.end_session(&id);
            }
            let _ = manager.close_session(&id.into()).await;
        }
    }
}

/// Note a request of a legacy session, when it begins and when its response has been sent,
/// and the session an `initialize` opened.
fn note_session_use(shared: &Arc<Shared>, request: &Request) -> Option<impl Drop + Send + 'static> {
    struct Ended(Arc<Shared>, String);
    impl Drop for Ended {
        fn drop(&mut self) {
            self.0.legacy.used(&self.1);
        }
    }
    let id = request.headers().get(SESSION_HEADER)?.to_str().ok()?.to_owned();
    shared.legacy.used(&id);
    Some(Ended(shared.clone(), id))
}

async fn track_until_sent(request: Request, next: Next, requests: TaskTracker, edge: Edge) -> Response {
    let session_use = note_session_use(&edge.shared, &request);
    let opens_a_session = session_use.is_none() && request.method() == Method::POST;
    let response = track_requests(request, next, requests, &edge).await;
    if opens_a_session && let Some(id) = response.headers().get(SESSION_HEADER).and_then(|v| v.to_str().ok()) {
        edge.shared.legacy.issued(id);
    }
    let Some(session_use) = session_use else { return response };
    response.map(|body| {
        Body::new(body.map_frame(move |frame| {
            let _ = &session_use;
            frame
        }))
    })
}

async fn track_requests(request: Request, next: Next, requests: TaskTracker, edge: &Edge) -> Response {
    if request.method() == Method::DELETE {
        let session = request.headers().get(SESSION_HEADER).and_then(|v| v.to_str().ok()).map(str::to_owned);
        let mut response = next.run(request).await;
        if let Some(session) = session
            && response.status().is_success()
        {
            edge.shared.legacy.close(&session);
            // rmcp says 202; the Python SDK client takes only 200 or 204 for a session ended
            // (and logs a warning otherwise).
            if response.status() == StatusCode::ACCEPTED {
                *response.status_mut() = StatusCode::NO_CONTENT;
                *response.body_mut() = Body::empty();
            }
        }
        return response;
    }
    if request.method() != Method::POST {
        return next.run(request).await;
    }
    let in_flight = requests.token();
    let response = reject_malformed(request, next, edge).await;
    // The token lives as long as the response body: hyper drops it once the last byte is out.
    response.map(|body| {
        Body::new(body.map_frame(move |frame| {
            let _ = &in_flight;
            frame
        }))
    })
}

/// Answer what is not a single JSON-RPC message with a JSON-RPC error before it reaches the
/// protocol layer: malformed JSON (-32700) and batches (-32600, removed in 2025-06-18); and
/// answer a use of an entry outside the caller's grant with `403 insufficient_scope`; relay
/// what the relay takes (see `crate::relay`).
async fn reject_malformed(request: Request, next: Next, edge: &Edge) -> Response {
    let (shared, limit) = (&edge.shared, edge.limit);
    let (parts, body) = request.into_parts();
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
    let message = match serde_json::from_slice::<serde_json::Value>(&bytes) {
        Err(error) => {
            return jsonrpc_error(StatusCode::BAD_REQUEST, -32700, format!("Parse error: {error}"));
        }
        Ok(serde_json::Value::Array(_)) => {
            let message = "Invalid Request: JSON-RPC batches are not supported (removed in MCP 2025-06-18)";
            return jsonrpc_error(StatusCode::BAD_REQUEST, -32600, message.to_owned());
        }
        Ok(message) => message,
    };
    if let Err(invalid) = jsonrpc::check(&message, &bytes, &parts.headers) {
        return invalid.into_response();
    }
    // An `initialize` opens a legacy session: under `[auth]` it must fit the caller's limits,
    // and the session is bound to the caller before the client learns its id.
    if let Some(gate) = &edge.gate
        && let Some(identity) = parts.extensions.get::<Arc<Identity>>()
        && !parts.headers.contains_key(SESSION_HEADER)
        && message.get("method").and_then(|m| m.as_str()) == Some("initialize")
    {
        let slot = match gate.reserve_session(identity) {
            Ok(slot) => slot,
            Err(refusal) => {
                return Gate::session_refused(&refusal, message.get("id").unwrap_or(&serde_json::Value::Null));
            }
        };
        let response = next.run(Request::from_parts(parts, Body::from(bytes))).await;
        if let Some(id) = response.headers().get(SESSION_HEADER).and_then(|v| v.to_str().ok()) {
            slot.bind(id);
        }
        return response;
    }
    if let Some(gate) = edge.gate.as_deref()
        && let Some(identity) = parts.extensions.get::<Arc<Identity>>()
        && let Some((kind, name)) = shared.entry_of(&message)
        && !identity.allows(kind, &name)
    {
        shared.guard.audit.record(crate::auth::audit::Record {
            identity: Some(identity),
            method: message.get("method").and_then(|m| m.as_str()).unwrap_or_default(),
            entry: &name,
            decision: crate::auth::audit::Decision::Denied(edge::denied_message(identity, kind, &name)),
            outcome: None,
            duration: None,
        });
        return gate.forbidden(&parts.headers, identity, kind, &name);
    }
    // A client's answer to a question the relay asked it (see `relay`) is not rmcp's; nor is
    // the cancellation of a relayed call (which still goes on to the session). Both only from
    // where the relay takes calls.
    let relay_may_see = edge.scope.admits(&parts.headers);
    if relay_may_see
        && let Some(session) = parts.headers.get(SESSION_HEADER).and_then(|v| v.to_str().ok())
        && message.get("method").is_none()
        && (message.get("result").is_some() || message.get("error").is_some())
        && shared.legacy.answer(session, &message)
    {
        return StatusCode::ACCEPTED.into_response();
    }
    if relay_may_see
        && message.get("method").and_then(|m| m.as_str()) == Some("notifications/cancelled")
        && let Some(session) = parts.headers.get(SESSION_HEADER).and_then(|v| v.to_str().ok())
        && let Some(request_id) = message.get("params").and_then(|p| p.get("requestId"))
    {
        shared.legacy.cancel(session, request_id);
    }
    if let Some(response) = relay::try_relay(shared, &edge.scope, &parts, &message).await {
        return response;
    }
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

/// `GET /health`. With `[auth]`, a caller without a valid token (a liveness probe, say) gets
/// counts only: the names of plugins and peers are for authenticated callers.
async fn health(
    State((shared, gate)): State<(Arc<Shared>, Option<Arc<Gate>>)>,
    headers: axum::http::HeaderMap,
) -> axum::Json<serde_json::Value> {
    let (up, down) = shared.federation.health();
    if let Some(gate) = gate
        && gate.caller(&headers).is_none()
    {
        return axum::Json(json!({
            "ready": true,
            "plugins": { "loaded": shared.catalog.plugins().len(), "failed": shared.catalog.failures().len() },
            "peers": { "up": up.len(), "down": down.len() },
        }));
    }
    let plugins: Vec<_> = shared
        .catalog
        .plugins()
        .iter()
        .map(|p| {
            json!({
                "name": p.name,
                "tools": p.tools.len(),
                "resources": p.resources.len() + p.resource_templates.len(),
                "prompts": p.prompts.len(),
            })
        })
        .collect();
    axum::Json(json!({
        "ready": true,
        "plugins": { "loaded": plugins, "failed": shared.catalog.failures() },
        "peers": { "up": up, "down": down },
    }))
}

/// Serve HTTP on `listener` until `shutdown` is cancelled.
pub async fn serve_http(
    listener: tokio::net::TcpListener,
    router: Router,
    shutdown: CancellationToken,
) -> std::io::Result<()> {
    use axum::serve::ListenerExt;
    // Without TCP_NODELAY an SSE reply written in pieces waits on the client's delayed ACK
    // (~40 ms a call, measured).
    let listener = listener.tap_io(|stream| {
        let _ = stream.set_nodelay(true);
    });
    axum::serve(listener, router).with_graceful_shutdown(async move { shutdown.cancelled().await }).await
}

/// Serve HTTPS on `listener` until `shutdown` is cancelled.
pub async fn serve_https(
    listener: crate::tls::TlsListener,
    router: Router,
    shutdown: CancellationToken,
) -> std::io::Result<()> {
    axum::serve(listener, router).with_graceful_shutdown(async move { shutdown.cancelled().await }).await
}

/// Serve one client over stdin/stdout until it disconnects.
pub async fn serve_stdio(shared: Arc<Shared>) -> anyhow::Result<()> {
    let service = Session::new(shared).serve(rmcp::transport::stdio()).await?;
    service.waiting().await?;
    Ok(())
}
