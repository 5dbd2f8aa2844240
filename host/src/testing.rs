//! Test support for the in-process tests of the session, the relay and the peer: an audit log
//! read back from memory, an MCP server to stand in for a peer (served by rmcp over HTTP on
//! 127.0.0.1, in the test's own process), and the configuration of a peer reached by URL.
//!
//! Every wait here is bounded ([`LIMIT`]), so a test that goes wrong fails instead of hanging.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use rmcp::model::{
    CallToolRequestParams, CallToolResponse, CallToolResult, CancelledNotificationParam, ContentBlock, ListToolsResult,
    PaginatedRequestParams, ProgressNotificationParam, ProtocolVersion, ServerCapabilities, ServerConfig, Tool,
};
use rmcp::service::{NotificationContext, RequestContext};
use rmcp::transport::streamable_http_server::session::local::LocalSessionManager;
use rmcp::transport::{StreamableHttpServerConfig, StreamableHttpService};
use rmcp::{ErrorData as McpError, RoleServer, ServerHandler};
use serde_json::{Value, json};
use tokio::sync::mpsc;

use crate::auth::audit::AuditLog;
use crate::config::{PeerConfig, PeerConnect, PeerCredentials, PeerTarget};
use crate::federation::loops;

/// The longest any one step of a test may take.
pub(crate) const LIMIT: Duration = Duration::from_secs(20);

/// `future`, or a panic naming `what` once [`LIMIT`] has passed.
pub(crate) async fn within<T>(what: &str, future: impl Future<Output = T>) -> T {
    match tokio::time::timeout(LIMIT, future).await {
        Ok(value) => value,
        Err(_) => panic!("{what}: no result within {} s", LIMIT.as_secs()),
    }
}

/// An audit log whose lines the test reads back.
#[derive(Clone, Default)]
pub(crate) struct AuditBuffer(Arc<Mutex<Vec<u8>>>);

impl std::io::Write for AuditBuffer {
    fn write(&mut self, bytes: &[u8]) -> std::io::Result<usize> {
        self.0.lock().map_err(|_| std::io::ErrorKind::Other)?.extend_from_slice(bytes);
        Ok(bytes.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl AuditBuffer {
    pub(crate) fn log(&self) -> Arc<AuditLog> {
        Arc::new(AuditLog::to_writer(Box::new(self.clone())))
    }

    /// Every line written so far, parsed.
    pub(crate) fn lines(&self) -> Vec<Value> {
        let bytes = self.0.lock().map(|b| b.clone()).unwrap_or_default();
        String::from_utf8_lossy(&bytes).lines().map(|line| serde_json::from_str(line).expect("a JSON line")).collect()
    }
}

/// Serve `router` on 127.0.0.1 at a port the system picks, until the test's runtime ends; its
/// `/mcp` URL.
pub(crate) async fn serve_loopback(router: axum::Router) -> String {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind loopback");
    let address = listener.local_addr().expect("local address");
    tokio::spawn(async move {
        let _ = axum::serve(listener, router).await;
    });
    format!("http://{address}/mcp")
}

/// A peer reached at `url`, connected at start, with its namespace and filters.
pub(crate) fn peer_config(name: &str, namespace: &str, url: &str) -> PeerConfig {
    PeerConfig {
        name: name.to_owned(),
        namespace: namespace.to_owned(),
        target: PeerTarget::Url(url.to_owned()),
        headers: Vec::new(),
        include: Vec::new(),
        exclude: Vec::new(),
        connect: PeerConnect::Start,
        timeout: LIMIT,
        credentials: PeerCredentials::None,
        tls: crate::tls::PeerTls::default(),
    }
}

/// What the mock peer saw.
#[derive(Debug)]
pub(crate) enum Seen {
    /// A `tools/call`: the tool's name and the request's `_meta`.
    Called { name: String, meta: Value },
    /// A `notifications/cancelled` for this request id.
    CancelledNotification(Value),
    /// The handler of a call that never ends saw its call cancelled.
    HandlerCancelled,
}

/// An MCP server standing in for a peer. Its tools: `echo` (answers with the `_meta` and
/// arguments it got), `progress` (reports progress twice, then answers), `stall` (answers only
/// when cancelled), `internal` (for filters to drop) and `looped` (listed as having passed
/// through [`MockPeer::LOOPED_HOST`], for the loop guard to drop).
#[derive(Clone)]
pub(crate) struct MockPeer {
    /// Speak only 2025-11-25 (a legacy session) rather than 2026-07-28 as well.
    legacy: bool,
    calls: Arc<AtomicUsize>,
    seen: mpsc::UnboundedSender<Seen>,
}

/// A running mock peer: its URL, how many calls it served, and what it saw.
pub(crate) struct RunningMock {
    pub url: String,
    calls: Arc<AtomicUsize>,
    pub seen: mpsc::UnboundedReceiver<Seen>,
}

impl RunningMock {
    pub(crate) fn calls(&self) -> usize {
        self.calls.load(Ordering::SeqCst)
    }

    /// The next thing the mock saw.
    pub(crate) async fn next_seen(&mut self) -> Seen {
        within("the mock peer's next event", self.seen.recv()).await.expect("the mock peer runs")
    }
}

impl MockPeer {
    /// The host id the `looped` tool claims to have passed through.
    pub(crate) const LOOPED_HOST: &str = "host-under-test";

    /// Serve a mock peer over Streamable HTTP on 127.0.0.1 (`legacy`: 2025-11-25 only).
    pub(crate) async fn start(legacy: bool) -> RunningMock {
        let (seen, receiver) = mpsc::unbounded_channel();
        let calls = Arc::new(AtomicUsize::new(0));
        let mock = Self { legacy, calls: calls.clone(), seen };
        let service = StreamableHttpService::new(
            move || Ok(mock.clone()),
            Arc::new(LocalSessionManager::default()),
            StreamableHttpServerConfig::default(),
        );
        let mut router = axum::Router::new().nest_service("/mcp", service);
        if legacy {
            router = router.layer(axum::middleware::from_fn(without_discover));
        }
        let url = serve_loopback(router).await;
        RunningMock { url, calls, seen: receiver }
    }

    fn tools() -> Vec<Tool> {
        let schema = json!({ "type": "object", "properties": { "text": { "type": "string" } } });
        let schema = Arc::new(schema.as_object().cloned().unwrap_or_default());
        let tool = |name: &str| Tool::new(name.to_owned(), format!("the mock's {name}"), schema.clone());
        let mut looped = tool("looped");
        let mut meta = rmcp::model::MetaObject::default();
        meta.insert(loops::PATH_KEY.to_owned(), json!([Self::LOOPED_HOST]));
        looped.meta = Some(meta);
        vec![tool("echo"), tool("progress"), tool("stall"), tool("internal"), looped]
    }
}

fn text(text: impl Into<String>) -> CallToolResponse {
    CallToolResult::success(vec![ContentBlock::text(text.into())]).into()
}

impl ServerHandler for MockPeer {
    fn get_info(&self) -> ServerConfig {
        ServerConfig::new(ServerCapabilities::builder().enable_tools().build())
    }

    fn supported_protocol_versions(&self) -> std::borrow::Cow<'static, [ProtocolVersion]> {
        if self.legacy {
            std::borrow::Cow::Borrowed(ProtocolVersion::known_up_to(&ProtocolVersion::V_2025_11_25))
        } else {
            std::borrow::Cow::Borrowed(ProtocolVersion::KNOWN_VERSIONS)
        }
    }

    async fn list_tools(
        &self,
        _request: Option<PaginatedRequestParams>,
        _cx: RequestContext<RoleServer>,
    ) -> Result<ListToolsResult, McpError> {
        Ok(ListToolsResult::with_all_items(Self::tools()))
    }

    async fn call_tool(
        &self,
        request: CallToolRequestParams,
        cx: RequestContext<RoleServer>,
    ) -> Result<CallToolResponse, McpError> {
        self.calls.fetch_add(1, Ordering::SeqCst);
        let meta = serde_json::to_value(&cx.meta).unwrap_or(Value::Null);
        let _ = self.seen.send(Seen::Called { name: request.name.to_string(), meta: meta.clone() });
        match &*request.name {
            "echo" => Ok(text(json!({ "meta": meta, "arguments": request.arguments }).to_string())),
            "progress" => {
                let token = cx
                    .meta
                    .get_progress_token()
                    .ok_or_else(|| McpError::invalid_params("progress needs a progress token", None))?;
                for step in [1.0, 2.0] {
                    let mut progress = ProgressNotificationParam::new(token.clone(), step);
                    progress.total = Some(2.0);
                    progress.message = Some(format!("step {step}"));
                    cx.peer
                        .notify_progress(progress)
                        .await
                        .map_err(|e| McpError::internal_error(e.to_string(), None))?;
                }
                Ok(text("progressed"))
            }
            "stall" => {
                // Long enough to outlive any test; a cancelled call ends at once.
                tokio::select! {
                    () = cx.ct.cancelled() => {
                        let _ = self.seen.send(Seen::HandlerCancelled);
                        Err(McpError::internal_error("cancelled", None))
                    }
                    () = tokio::time::sleep(LIMIT * 3) => Ok(text("stalled")),
                }
            }
            "internal" => Ok(text("internal")),
            other => Err(McpError::invalid_params(format!("no tool {other}"), None)),
        }
    }

    async fn on_cancelled(&self, notification: CancelledNotificationParam, _cx: NotificationContext<RoleServer>) {
        let id = serde_json::to_value(&notification.request_id).unwrap_or(Value::Null);
        let _ = self.seen.send(Seen::CancelledNotification(id));
    }
}

/// A 2025-11-25 server knows no `server/discover`: it answers it as a method it does not have,
/// and rmcp's client falls back to `initialize` (an rmcp server offering only 2025-11-25 would
/// instead name the versions it has, and the client would give up).
async fn without_discover(request: axum::extract::Request, next: axum::middleware::Next) -> axum::response::Response {
    use axum::response::IntoResponse;
    let (parts, body) = request.into_parts();
    let Ok(bytes) = axum::body::to_bytes(body, 1 << 20).await else {
        return axum::http::StatusCode::BAD_REQUEST.into_response();
    };
    if let Ok(message) = serde_json::from_slice::<Value>(&bytes)
        && message["method"] == "server/discover"
    {
        let refusal = json!({ "jsonrpc": "2.0", "id": message["id"],
            "error": { "code": -32601, "message": "Method not found" } });
        return axum::Json(refusal).into_response();
    }
    next.run(axum::extract::Request::from_parts(parts, axum::body::Body::from(bytes))).await
}

/// The JSON-RPC response in an HTTP answer's body: the body itself, or the SSE event that
/// carries an `id`.
pub(crate) fn response_message(body: &[u8]) -> Value {
    let body = String::from_utf8_lossy(body);
    serde_json::from_str(&body).unwrap_or_else(|_| {
        body.lines()
            .filter_map(|line| line.strip_prefix("data:"))
            .filter_map(|data| serde_json::from_str::<Value>(data.trim()).ok())
            .find(|message| message.get("id").is_some())
            .unwrap_or(Value::Null)
    })
}
