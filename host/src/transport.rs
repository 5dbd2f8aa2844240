//! How clients reach the host: Streamable HTTP at `/mcp` (both protocol eras on one
//! endpoint, chosen per request), WebSocket at `/ws` (an addition: one legacy session per
//! connection), `GET /health` and `GET /ready`, and stdio for one local client.

use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::extract::{Request, State};
use axum::middleware::{Next, from_fn_with_state};
use axum::response::Response;
use axum::routing::get;
use rmcp::ServiceExt;
use rmcp::transport::streamable_http_server::session::local::LocalSessionManager;
use rmcp::transport::{StreamableHttpServerConfig, StreamableHttpService};
use serde_json::json;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::auth::edge::{self, Gate};
use crate::relay::{DirectPeer, RelayLayer};
use crate::session::{Session, Shared, TracedSession};
use admission::Admission;
use message::{Message, ParsedToolCall};

mod admission;
pub(crate) mod config;
mod jsonrpc;
mod message;
mod rebinding;
mod sessions;
mod stdio;
mod websocket;

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
    /// How often `/ws` pings each connection (and how long one may stay silent).
    pub websocket_ping: Duration,
    /// Each open `/ws` connection: upgraded connections are no longer the HTTP server's, so
    /// shutdown waits for these (they close once `streams` is cancelled).
    pub websockets: TaskTracker,
}

/// rmcp answers a stateless request that sends nothing before its result with JSON; the
/// relay's direct path, which answers such requests itself, does so too.
const JSON_RESPONSE: bool = true;

/// The axum router: `/mcp`, `/ws`, `/health`, `/ready` and `/metrics`.
/// Cancelling `streams` ends every SSE stream and session; `requests` tracks each POST until
/// its response has been sent in full (an SSE reply included), so shutdown can wait for them.
pub fn router(shared: Arc<Shared>, options: HttpOptions, streams: CancellationToken, requests: TaskTracker) -> Router {
    crate::metrics::install();
    let mut hosts: Vec<String> = ["localhost", "127.0.0.1", "::1", "[::1]"].map(String::from).to_vec();
    hosts.extend(options.allowed_hosts);
    let relay_hosts = hosts.clone();
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
        .with_json_response(JSON_RESPONSE);
    let factory_shared = shared.clone();
    // The host ends a legacy session nobody has used for `session_idle` (see `HostSessions`).
    let manager = Arc::new(sessions::HostSessions::new(LocalSessionManager::default()));
    let every = (options.session_idle / 10).clamp(Duration::from_millis(100), Duration::from_secs(30));
    tokio::spawn(sessions::end_idle_sessions(manager.clone(), options.session_idle, every, streams.child_token()));
    if let Some(gate) = &options.gate {
        tokio::spawn(sessions::forget_ended_sessions(gate.clone(), manager.clone(), every, streams.child_token()));
    }
    let mcp = StreamableHttpService::new(
        move || Ok(TracedSession::new(Session::new(factory_shared.clone()))),
        manager.clone(),
        config,
    );
    let direct = DirectPeer::new(JSON_RESPONSE, streams.child_token());
    let relay = Arc::new(RelayLayer::new(shared.clone(), &relay_hosts, direct));
    // `/ws`: the Host/Origin guard first, then (with `[auth]`) the bearer token, as for `/mcp`.
    let websocket = Arc::new(websocket::WebSocketEdge::new(
        shared.clone(),
        options.gate.clone(),
        websocket::WebSocketOptions {
            max_message_bytes: options.max_request_body_bytes,
            ping_every: options.websocket_ping,
            streams: streams.child_token(),
            requests: requests.clone(),
            connections: options.websockets,
        },
    ));
    let mut ws = Router::new().route("/ws", get(websocket::upgrade)).with_state(websocket);
    if let Some(gate) = &options.gate {
        ws = ws.layer(from_fn_with_state(gate.clone(), edge::authenticate));
    }
    let ws = ws.layer(from_fn_with_state(rebinding.clone(), rebinding::guard));
    // The layers of `/mcp`, outermost first: the bearer token (with `[auth]`; a request without
    // a valid one is answered before its body is read), the account of requests and sessions,
    // one JSON-RPC message, the token applied to that message (with `[auth]`), the relay, then
    // rmcp's service and the session.
    let gate = options.gate;
    // rmcp's service is shared, not cloned: axum clones a route's service for every request,
    // and rmcp's clones its whole config (the allowed hosts and origins) again in each call.
    let mcp = Arc::new(mcp);
    let serve_mcp = axum::routing::any(move |request: Request| {
        let mcp = mcp.clone();
        async move { mcp.handle(request).await }
    });
    let mut mcp = Router::new()
        .route("/mcp", serve_mcp.clone())
        .route("/mcp/", serve_mcp.clone())
        .route("/mcp/{*rest}", serve_mcp)
        .layer(from_fn_with_state(relay.clone(), pre_dispatch));
    if let Some(gate) = &gate {
        let admission = Arc::new(Admission { gate: gate.clone(), shared: shared.clone() });
        mcp = mcp.layer(from_fn_with_state(admission, admission::admit));
    }
    mcp = mcp
        .layer(from_fn_with_state(options.max_request_body_bytes, message::single_message))
        .layer(from_fn_with_state(requests, sessions::track));
    if let Some(gate) = &gate {
        mcp = mcp.layer(from_fn_with_state(gate.clone(), edge::authenticate)).merge(
            Router::new()
                .route(edge::METADATA_PATH, get(edge::metadata))
                .route(&format!("{}/mcp", edge::METADATA_PATH), get(edge::metadata))
                .with_state(gate.clone())
                .layer(from_fn_with_state(rebinding.clone(), rebinding::guard)),
        );
    }
    // rmcp guards `/mcp` against DNS rebinding; the routes beside it get the same guard.
    mcp.merge(ws).merge(
        Router::new()
            .route("/health", get(health))
            .route("/ready", get(ready))
            .route("/metrics", get(metrics))
            .with_state(Arc::new(Health { shared, gate, relay, sessions: manager }))
            .layer(from_fn_with_state(rebinding, rebinding::guard)),
    )
}

/// The relay as a layer: what it takes never reaches rmcp.
async fn pre_dispatch(State(relay): State<Arc<RelayLayer>>, request: Request, next: Next) -> Response {
    let (mut parts, body) = request.into_parts();
    // Nothing after this layer reads the parsed message: it goes to the relay, whose direct
    // path moves the parts (and with them whatever is left in their extensions) to the session.
    if let Some(Message(message)) = parts.extensions.remove::<Message>() {
        let parsed = parts.extensions.remove::<ParsedToolCall>().map(|ParsedToolCall(call)| call);
        match relay.pre_dispatch(parts, &message, parsed).await {
            Ok(response) => return response,
            Err(returned) => parts = returned,
        }
    }
    next.run(Request::from_parts(parts, body)).await
}

/// What `/health` reports on.
struct Health {
    shared: Arc<Shared>,
    gate: Option<Arc<Gate>>,
    relay: Arc<RelayLayer>,
    sessions: Arc<sessions::HostSessions>,
}

/// `GET /health`. With `[auth]`, a caller without a valid token (a liveness probe, say) gets
/// counts only: the names of plugins and peers, and the relay's counts, are for authenticated
/// callers.
async fn health(State(health): State<Arc<Health>>, headers: axum::http::HeaderMap) -> axum::Json<serde_json::Value> {
    let shared = &health.shared;
    let (up, down) = shared.federation.health();
    // Ready once every plugin of the first load has loaded or failed (a readiness probe's
    // question); the host answers, and serves what has loaded, before that.
    let loading = shared.catalog.loading().pending();
    let ready = loading.is_empty();
    let sources = shared.catalog.sources().snapshot();
    if let Some(gate) = &health.gate
        && gate.caller(&headers).is_none()
    {
        return axum::Json(json!({
            "ready": ready,
            "loading": loading.len(),
            "plugins": { "loaded": shared.catalog.plugins().len(), "failed": shared.catalog.failures().len() },
            "peers": { "up": up.len(), "down": down.len() },
            "sources": {
                "pulled": sources.iter().filter(|s| s.error.is_none() && s.digest.is_some()).count(),
                "failed": sources.iter().filter(|s| s.error.is_some()).count(),
            },
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
        "ready": ready,
        "loading": loading,
        "plugins": { "loaded": plugins, "failed": shared.catalog.failures() },
        "peers": { "up": up, "down": down },
        "sources": sources,
        "relay": health.relay.counts(),
    }))
}

/// `GET /ready`, for a readiness probe (which judges the status alone, any 2xx or 3xx being
/// success): 200 once every plugin of the first load has loaded or failed, 503 until then,
/// with the same small JSON either way. `/health` answers 200 whatever its `ready` says (a
/// liveness probe's question: the process answers). Counts only, so no token is needed.
async fn ready(State(health): State<Arc<Health>>) -> Response {
    use axum::http::StatusCode;
    use axum::response::IntoResponse;
    let loading = health.shared.catalog.loading().pending().len();
    let status = if loading == 0 { StatusCode::OK } else { StatusCode::SERVICE_UNAVAILABLE };
    (status, axum::Json(json!({ "ready": loading == 0, "loading": loading }))).into_response()
}

/// `GET /metrics`: OpenMetrics text for Prometheus. With `[auth]`, only for a caller with a
/// valid token (a scrape job sends one as its `authorization` credentials): the names of
/// plugins and peers are not for anyone who can reach the port.
async fn metrics(State(health): State<Arc<Health>>, headers: axum::http::HeaderMap) -> Response {
    use axum::http::{StatusCode, header};
    use axum::response::IntoResponse;
    if let Some(gate) = &health.gate
        && gate.caller(&headers).is_none()
    {
        crate::metrics::denied("token");
        let body = json!({ "error": "GET /metrics needs a valid bearer token when [auth] is configured" });
        return (StatusCode::UNAUTHORIZED, [(header::WWW_AUTHENTICATE, "Bearer")], axum::Json(body)).into_response();
    }
    let shared = &health.shared;
    let peers = shared.federation.up_by_name();
    let snapshot = crate::metrics::Snapshot {
        sessions_open: health.sessions.open(),
        plugins_loaded: shared.catalog.plugins().len(),
        plugins_failed: shared.catalog.failures().len(),
        peers: &peers,
    };
    match crate::metrics::encode(&snapshot) {
        Some(text) => ([(header::CONTENT_TYPE, crate::metrics::CONTENT_TYPE)], text).into_response(),
        None => {
            let body = json!({ "error": "another metrics recorder was installed in this process before the host's" });
            (StatusCode::SERVICE_UNAVAILABLE, axum::Json(body)).into_response()
        }
    }
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

/// Serve one client over stdin/stdout until it disconnects. The client is answered at once;
/// its list requests wait for the first load (see [`Session::for_stdio`]).
pub async fn serve_stdio(shared: Arc<Shared>) -> anyhow::Result<()> {
    // When stdin and stdout are pipes (Rust and Python clients start servers so), rmcp drives
    // them on the IO reactor; `stdio()` hands every read and write to the blocking thread pool,
    // which capped tools/call near 11k calls/s against 23-30k on pipes (`cargo bench --bench
    // stdio_calls`). Anything else (a terminal, a file, the socket pair a Node.js client
    // gives) falls back to those blocking handles. The transport reads a `tools/call` without
    // rmcp's trial parse (see `stdio`).
    let (read, write) = rmcp::transport::stdio_pipes();
    let transport = stdio::StdioTransport::new(read, write);
    let service = TracedSession::new(Session::for_stdio(shared)).serve(transport).await?;
    service.waiting().await?;
    Ok(())
}
