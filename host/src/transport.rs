//! How clients reach the host: Streamable HTTP at `/mcp` (both protocol eras on one
//! endpoint, chosen per request), `GET /health`, and stdio for one local client.

use std::sync::Arc;

use axum::Router;
use axum::body::Body;
use axum::extract::{Request, State};
use axum::http::{Method, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use rmcp::ServiceExt;
use rmcp::transport::streamable_http_server::session::local::LocalSessionManager;
use rmcp::transport::{StreamableHttpServerConfig, StreamableHttpService};
use serde_json::json;
use tokio_util::sync::CancellationToken;

use crate::session::{Session, Shared};

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
}

/// The axum router: `/mcp` and `/health`.
pub fn router(shared: Arc<Shared>, options: HttpOptions, shutdown: CancellationToken) -> Router {
    let mut hosts: Vec<String> = ["localhost", "127.0.0.1", "::1", "[::1]"].map(String::from).to_vec();
    hosts.extend(options.allowed_hosts);
    let mut origins: Vec<String> = LOOPBACK_ORIGINS.map(String::from).to_vec();
    origins.extend(options.allowed_origins);
    let config = StreamableHttpServerConfig::default()
        .with_allowed_hosts(hosts)
        .with_allowed_origins(origins)
        .with_max_request_body_bytes(options.max_request_body_bytes)
        .with_cancellation_token(shutdown.child_token());
    let factory_shared = shared.clone();
    let mcp = StreamableHttpService::new(
        move || Ok(Session::new(factory_shared.clone())),
        Arc::new(LocalSessionManager::default()),
        config,
    );
    let limit = options.max_request_body_bytes;
    Router::new()
        .nest_service("/mcp", mcp)
        .layer(axum::middleware::from_fn(move |request, next| reject_malformed(request, next, limit)))
        .route("/health", get(health))
        .with_state(shared)
}

fn jsonrpc_error(status: StatusCode, code: i32, message: String) -> Response {
    let body = json!({ "jsonrpc": "2.0", "id": null, "error": { "code": code, "message": message } });
    (status, axum::Json(body)).into_response()
}

/// Answer what is not a single JSON-RPC message with a JSON-RPC error before it reaches the
/// protocol layer: malformed JSON (-32700) and batches (-32600, removed in 2025-06-18).
async fn reject_malformed(request: Request, next: Next, limit: usize) -> Response {
    if request.method() != Method::POST {
        return next.run(request).await;
    }
    let (parts, body) = request.into_parts();
    let bytes = match axum::body::to_bytes(body, limit).await {
        Ok(bytes) => bytes,
        Err(_) => {
            let message = format!("Payload Too Large: the request body exceeds {limit} bytes");
            return jsonrpc_error(StatusCode::PAYLOAD_TOO_LARGE, -32600, message);
        }
    };
    match serde_json::from_slice::<serde_json::Value>(&bytes) {
        Err(error) => {
            return jsonrpc_error(StatusCode::BAD_REQUEST, -32700, format!("Parse error: {error}"));
        }
        Ok(serde_json::Value::Array(_)) => {
            let message = "Invalid Request: JSON-RPC batches are not supported (removed in MCP 2025-06-18)";
            return jsonrpc_error(StatusCode::BAD_REQUEST, -32600, message.to_owned());
        }
        Ok(_) => {}
    }
    next.run(Request::from_parts(parts, Body::from(bytes))).await
}

async fn health(State(shared): State<Arc<Shared>>) -> axum::Json<serde_json::Value> {
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
        "peers": { "up": [], "down": [] },
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

/// Serve one client over stdin/stdout until it disconnects.
pub async fn serve_stdio(shared: Arc<Shared>) -> anyhow::Result<()> {
    let service = Session::new(shared).serve(rmcp::transport::stdio()).await?;
    service.waiting().await?;
    Ok(())
}
