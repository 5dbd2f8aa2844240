//! A stateless (2026-07-28) `tools/call` of a plugin's tool, handed to the session without
//! rmcp's per-request service.
//!
//! Why: for every stateless request rmcp's HTTP service parses the body into its message type
//! again (trying each request type in turn), serialises it back to JSON to check the SEP-2243
//! headers, builds a fresh peer and service loop, and spawns the handler behind a one-shot
//! channel: ~100k instructions, more than the plugin's instantiation and call together
//! (callgrind, `BENCH_PROFILE=wasm BENCH_REVISION=2026-07-28` of `cargo bench --bench
//! http_calls`). The edge has read the message into rmcp's own type already; here the session
//! gets it as rmcp would hand it over: the same [`rmcp::Service::handle_request`] (which
//! checks the request's `_meta` and finishes the result as rmcp does), a context built as
//! rmcp's service loop builds it (the HTTP request's parts, its `_meta`, a peer that knows the
//! request's protocol revision, a cancellation token cancelled when the host stops or the
//! client goes away; rmcp's task-locals naming the request are not set, and nothing here reads
//! them), and the answer goes back as rmcp's JSON answer would, with the HTTP status it gives
//! errors. It relies on rmcp answering stateless requests with JSON (`with_json_response`),
//! which the transport passes on ([`DirectPeer::new`]).
//!
//! Only what nothing can be sent for before the answer is taken: rmcp switches a stateless
//! answer to an SSE stream when a notification comes first, and a session sends one only for a
//! progress token or a log level in the request's `_meta` (a stateless caller is never asked
//! mid-call: it gets an MRTR result). Anything else, and a tool whose schema asks for
//! `Mcp-Param-*` headers (rmcp checks those against the arguments), takes rmcp's path.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, OnceLock};

use axum::http::request::Parts;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use rmcp::model::{
    CallToolRequest, ClientCapabilities, ClientRequest, GetExtensions as _, GetMeta as _, Implementation,
    InitializeRequestParams, JsonRpcRequest, ProtocolVersion, RequestMetaObject, ServerJsonRpcMessage,
};
use rmcp::service::{RequestContext, RoleServer, RunningService, RxJsonRpcMessage, TxJsonRpcMessage};
use rmcp::transport::Transport;
use rmcp::{Peer, Service as _};

use tokio_util::sync::CancellationToken;

use super::{Call, plain_header_value};
use crate::catalog::Route;
use crate::session::{Session, Shared, TracedSession};

/// The `_meta` key of a stateless request's log level: with it, the session sends the call's
/// log messages as notifications.
const META_LOG_LEVEL: &str = "io.modelcontextprotocol/logLevel";

/// Whether the direct path takes an eligible call of a plugin's tool (see the module's doc).
pub(super) fn takes(call: &Call<'_>, route: &Route, request: &JsonRpcRequest<CallToolRequest>) -> bool {
    !route.param_headers
        // A name rmcp would read Base64-decoded from `Mcp-Name` is compared raw by `eligible`.
        && plain_header_value(call.name)
        && call.progress_token.is_none()
        && !call.meta.contains_key(META_LOG_LEVEL)
        // Well-formed, as rmcp checks it (a `clientCapabilities` of the wrong shape is refused
        // with a 400 there).
        && request.request.extensions.get::<RequestMetaObject>().is_some_and(|meta| {
            meta.missing_required_keys(&ProtocolVersion::V_2026_07_28).is_empty()
        })
}

/// The peer of the requests the direct path serves, made once: what rmcp's peer for a
/// stateless request knows (the revision of the `Mcp-Protocol-Version` header, the only one
/// the direct path takes, and no capabilities beyond the request's own `_meta`), with a
/// service loop whose transport delivers nothing, since nothing is sent for these requests.
pub(crate) struct DirectPeer {
    running: OnceLock<RunningService<RoleServer, Silent>>,
    /// Whether rmcp answers a stateless request with JSON: the direct path answers as it does,
    /// so it takes nothing when rmcp would answer with an SSE stream.
    pub(super) enabled: bool,
    /// Cancelled when the host stops: rmcp then answers a stateless request still running
    /// with a 500 and cancels its handler.
    shutdown: CancellationToken,
    /// Messages sent through the peer, which reach no one (see [`Undelivered`]).
    undelivered: Arc<AtomicU64>,
}

impl DirectPeer {
    /// `json_response`: rmcp's setting for stateless answers; `shutdown`: cancelled when the
    /// host stops serving requests.
    pub(crate) fn new(json_response: bool, shutdown: CancellationToken) -> Self {
        Self { running: OnceLock::new(), enabled: json_response, shutdown, undelivered: Arc::default() }
    }

    /// Messages the session sent during a directly served call (none are expected).
    pub(super) fn undelivered(&self) -> u64 {
        self.undelivered.load(Ordering::Relaxed)
    }

    fn peer(&self) -> Peer<RoleServer> {
        let running = self.running.get_or_init(|| {
            let info = InitializeRequestParams::new(ClientCapabilities::default(), Implementation::default())
                .with_protocol_version(ProtocolVersion::V_2026_07_28);
            let transport = Undelivered { count: self.undelivered.clone() };
            rmcp::service::serve_directly(Silent, transport, Some(info))
        });
        running.peer().clone()
    }
}

/// The service of [`DirectPeer`]'s loop: its transport brings it no requests.
#[derive(Clone)]
pub(super) struct Silent;

impl rmcp::ServerHandler for Silent {}

/// [`DirectPeer`]'s transport. Nothing reaches it for the requests the direct path takes; if
/// anything did, a caller would have missed it: it is counted (`relay.direct_undelivered` in
/// `/health`) and logged by kind, not content (a plugin's data stays out of the log). It
/// answers `Ok`: an error would end the loop that every direct call's peer shares.
struct Undelivered {
    count: Arc<AtomicU64>,
}

impl Transport<RoleServer> for Undelivered {
    type Error = std::io::Error;

    fn send(
        &mut self,
        item: TxJsonRpcMessage<RoleServer>,
    ) -> impl Future<Output = Result<(), Self::Error>> + Send + 'static {
        self.count.fetch_add(1, Ordering::Relaxed);
        let kind = match &item {
            ServerJsonRpcMessage::Request(_) => "request",
            ServerJsonRpcMessage::Notification(_) => "notification",
            _ => "answer",
        };
        tracing::warn!(kind, "a message for a directly served tools/call had nowhere to go");
        std::future::ready(Ok(()))
    }

    fn receive(&mut self) -> impl Future<Output = Option<RxJsonRpcMessage<RoleServer>>> + Send {
        std::future::pending()
    }

    async fn close(&mut self) -> Result<(), Self::Error> {
        Ok(())
    }
}

/// Serve the call: the session's answer, as rmcp's JSON answer to a stateless request.
pub(super) async fn serve(
    shared: &Arc<Shared>,
    direct: &DirectPeer,
    parts: Parts,
    call: JsonRpcRequest<CallToolRequest>,
) -> Response {
    let JsonRpcRequest { id, request, .. } = call;
    let mut request = ClientRequest::CallToolRequest(request);
    // As rmcp's service loop does: the request's `_meta` and extensions go to its context,
    // and the HTTP request's parts (whose identity the edge applied) with them.
    let mut cx = RequestContext::new(id.clone(), direct.peer());
    cx.meta = std::mem::take(request.get_meta_mut());
    cx.extensions = std::mem::take(request.extensions_mut());
    cx.extensions.insert(parts);
    // A client that gives up closes its connection: hyper drops this future, the guard
    // cancels the request's token, and the call (its sandbox) is dropped with it.
    let cancelled = cx.ct.clone();
    let _on_drop = cancelled.clone().drop_guard();
    let session = TracedSession::new(Session::new(shared.clone()));
    let mut answering = std::pin::pin!(session.handle_request(request, cx));
    let answered = tokio::select! {
        answered = &mut answering => answered,
        () = direct.shutdown.cancelled() => {
            // As rmcp does when the host stops: the handler is cancelled (the session ends
            // the call, its span and its audit line with the cancellation) and the caller
            // gets a 500.
            cancelled.cancel();
            let _ = answering.await;
            let text = "Encounter an error when empty response: no response message received from handler";
            return (StatusCode::INTERNAL_SERVER_ERROR, text).into_response();
        }
    };
    let answer = match answered {
        Ok(result) => ServerJsonRpcMessage::response(result, id),
        Err(error) => ServerJsonRpcMessage::error(error, Some(id)),
    };
    let status = match &answer {
        ServerJsonRpcMessage::Error(error) => super::error_status(error.error.code),
        _ => StatusCode::OK,
    };
    match serde_json::to_vec(&answer) {
        Ok(body) => {
            let mut response = (status, body).into_response();
            response.headers_mut().insert(header::CONTENT_TYPE, HeaderValue::from_static("application/json"));
            response
        }
        Err(error) => {
            tracing::error!(%error, "a tools/call answer could not be serialised");
            StatusCode::INTERNAL_SERVER_ERROR.into_response()
        }
    }
}
