//! `GET /ws`: MCP over WebSocket, an addition beside Streamable HTTP (no MCP revision defines a
//! WebSocket transport). The upgrade must offer the subprotocol `mcp`; after it, each text frame
//! carries one JSON-RPC message either way, and the connection is one session of the handshake
//! era (2025-11-25): `initialize` first, then requests both ways (elicitation, sampling, roots)
//! and notifications (progress, list changes). The session is the one stdio and `/mcp` serve
//! ([`Session`]), driven by rmcp over a Sink/Stream pair; this module only moves frames.
//!
//! The rules of `/mcp` hold at the upgrade: the Host/Origin guard, and with `[auth]` a bearer
//! token, whose identity is the connection's for its whole life (it is closed, 1008, when the
//! token expires: a connection cannot present a fresh one). A connection takes one of the
//! places legacy sessions take (per identity, and in all), for as long as it is open. A text
//! frame over `http.max_request_body_bytes` closes that connection only (1009); the host pings
//! every `http.websocket_ping_secs` and drops a connection that sent nothing by the next ping;
//! on shutdown each connection is closed (1001) once the calls in flight have ended (or the
//! grace period has passed).

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

use axum::extract::ws::{CloseFrame, Message as Frame, WebSocket, WebSocketUpgrade, close_code};
use axum::extract::{FromRequestParts, Request, State};
use axum::http::request::Parts;
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use futures::channel::mpsc;
use futures::{SinkExt, StreamExt};
use rmcp::model::{ClientJsonRpcMessage, ClientNotification, GetExtensions, RequestId, ServerJsonRpcMessage};
use rmcp::service::ServiceExt;
use serde_json::{Value, json};
use tokio_util::sync::CancellationToken;
use tokio_util::task::{TaskTracker, task_tracker::TaskTrackerToken};

use super::jsonrpc;
use crate::auth::Identity;
use crate::auth::edge::{Gate, MAX_SESSIONS_PER_IDENTITY};
use crate::session::{Session, Shared, TracedSession};

/// The subprotocol a client must offer (as the MCP Python SDK 1.x's WebSocket client does).
pub(super) const SUBPROTOCOL: &str = "mcp";

/// How long a connection may stay open without completing `initialize`.
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(30);

/// How long the host waits for a peer's answer to its close frame before it drops the socket.
const CLOSE_TIMEOUT: Duration = Duration::from_secs(2);

/// Messages queued each way between the socket and rmcp.
const QUEUED_MESSAGES: usize = 32;

/// What `/ws` needs besides the request.
pub(super) struct WebSocketEdge {
    pub shared: Arc<Shared>,
    /// With `[auth]`: the token's identity holds a session place for the connection's life.
    pub gate: Option<Arc<Gate>>,
    /// Without `[auth]` every connection is the local user's: it gets the places one identity
    /// may hold.
    pub local_places: Arc<tokio::sync::Semaphore>,
    /// The largest text frame (message) a client may send: what `/mcp` takes in a POST body.
    pub max_message_bytes: usize,
    pub ping_every: Duration,
    /// Cancelled on shutdown, once calls in flight have ended or the grace period has passed.
    pub streams: CancellationToken,
    /// Each client request is tracked until its answer is sent, as a POST to `/mcp` is.
    pub requests: TaskTracker,
    /// Each open connection, so shutdown can wait for the close frames to go out.
    pub connections: TaskTracker,
}

impl WebSocketEdge {
    pub(super) fn new(shared: Arc<Shared>, gate: Option<Arc<Gate>>, options: WebSocketOptions) -> Self {
        Self {
            shared,
            gate,
            local_places: Arc::new(tokio::sync::Semaphore::new(MAX_SESSIONS_PER_IDENTITY)),
            max_message_bytes: options.max_message_bytes,
            ping_every: options.ping_every,
            streams: options.streams,
            requests: options.requests,
            connections: options.connections,
        }
    }
}

/// The settings of `/ws` the router is given.
pub(super) struct WebSocketOptions {
    pub max_message_bytes: usize,
    pub ping_every: Duration,
    pub streams: CancellationToken,
    pub requests: TaskTracker,
    pub connections: TaskTracker,
}

/// A connection's place among the sessions, given back when it closes.
enum Place {
    /// Counted in the gate's session table (unbound: no session id names it).
    Gate(#[allow(dead_code, reason = "held for its Drop")] crate::auth::edge::SessionSlot),
    Local(#[allow(dead_code, reason = "held for its Drop")] tokio::sync::OwnedSemaphorePermit),
}

/// `GET /ws`. The layers before it have checked Host/Origin and (with `[auth]`) the token.
pub(super) async fn upgrade(State(edge): State<Arc<WebSocketEdge>>, request: Request) -> Response {
    let (mut parts, _body) = request.into_parts();
    let upgrade = match WebSocketUpgrade::from_request_parts(&mut parts, &()).await {
        Ok(upgrade) => upgrade.protocols([SUBPROTOCOL]),
        Err(rejection) => return rejection.into_response(),
    };
    if upgrade.selected_protocol().is_none() {
        let message = format!(
            "the WebSocket upgrade must offer the subprotocol `{SUBPROTOCOL}` (Sec-WebSocket-Protocol: {SUBPROTOCOL})"
        );
        return (StatusCode::BAD_REQUEST, axum::Json(json!({ "error": "subprotocol_required", "message": message })))
            .into_response();
    }
    let identity = parts.extensions.get::<Arc<Identity>>().cloned();
    let place = match (&edge.gate, &identity) {
        (Some(gate), Some(identity)) => match gate.reserve_session(identity) {
            Ok(slot) => Place::Gate(slot),
            Err(refusal) => return Gate::session_refused(&refusal, &Value::Null),
        },
        // The authentication layer puts an identity on every request it lets through.
        (Some(_), None) => return StatusCode::UNAUTHORIZED.into_response(),
        (None, _) => match edge.local_places.clone().try_acquire_owned() {
            Ok(permit) => Place::Local(permit),
            Err(_) => {
                let message = format!(
                    "{MAX_SESSIONS_PER_IDENTITY} WebSocket connections are open, the most this host holds without \
                     [auth]; close one first"
                );
                let body = json!({ "error": "too_many_connections", "message": message });
                return (StatusCode::TOO_MANY_REQUESTS, axum::Json(body)).into_response();
            }
        },
    };
    // Twice the limit in frames: a message up to that size is read whole and refused with a
    // clean close; beyond it the library stops reading (and the socket is dropped after the
    // close frame).
    let hard_limit = edge.max_message_bytes.saturating_mul(2);
    let connection = Connection { edge: edge.clone(), parts, identity, place };
    let connections = edge.connections.clone();
    upgrade
        .max_message_size(hard_limit)
        .max_frame_size(hard_limit)
        .on_failed_upgrade(|error| tracing::debug!(%error, "a WebSocket upgrade failed"))
        .on_upgrade(move |socket| connections.track_future(connection.serve(socket)))
}

/// One upgraded connection and what it was opened with.
struct Connection {
    edge: Arc<WebSocketEdge>,
    /// The upgrade request (its identity among its extensions): what the session reads its
    /// caller from, as it reads a POST's.
    parts: Parts,
    identity: Option<Arc<Identity>>,
    place: Place,
}

/// Why the host closes a connection: its close frame.
struct Closing {
    code: u16,
    reason: String,
}

impl Closing {
    fn new(code: u16, reason: impl Into<String>) -> Self {
        Self { code, reason: reason.into() }
    }
}

/// What the reading half asks the writing half to send.
enum Control {
    /// A JSON-RPC error for a message that never reached the session.
    Answer(Value),
    Close(Closing),
}

/// Client requests not answered yet: each holds a token of the host's request tracker.
type Unanswered = Arc<Mutex<HashMap<RequestId, TaskTrackerToken>>>;

impl Connection {
    async fn serve(self, socket: WebSocket) {
        let Connection { edge, parts, identity, place } = self;
        let who = identity.as_ref().map_or_else(|| "the local user".to_owned(), |identity| identity.describe());
        tracing::debug!(caller = %who, "WebSocket connection opened");
        let (socket_sink, socket_stream) = socket.split();
        let (to_session, from_client) = mpsc::channel::<ClientJsonRpcMessage>(QUEUED_MESSAGES);
        let (to_client, from_session) = mpsc::channel::<ServerJsonRpcMessage>(QUEUED_MESSAGES);
        let (control, controls) = tokio::sync::mpsc::channel::<Control>(QUEUED_MESSAGES);
        // Cancelled when either half is done: the other half and the session end too.
        let ended = CancellationToken::new();
        let heard = Arc::new(AtomicBool::new(false));
        let unanswered: Unanswered = Arc::default();

        let reader = Reader {
            parts,
            max_message_bytes: edge.max_message_bytes,
            to_session,
            control: control.clone(),
            heard: heard.clone(),
            unanswered: unanswered.clone(),
            requests: edge.requests.clone(),
            ended: ended.clone(),
        };
        let writer = Writer {
            from_session,
            controls,
            heard,
            unanswered,
            ping_every: edge.ping_every,
            expires: identity.as_ref().and_then(|identity| identity.expires),
            streams: edge.streams.clone(),
            ended: ended.clone(),
        };
        let session = async {
            let served = TracedSession::new(Session::new(edge.shared.clone()))
                .serve_with_ct((to_client, from_client), ended.child_token());
            match tokio::time::timeout(HANDSHAKE_TIMEOUT, served).await {
                Ok(Ok(running)) => {
                    let _ = running.waiting().await;
                }
                Ok(Err(error)) => tracing::debug!(%error, "a WebSocket session did not start"),
                Err(_) => {
                    let reason = format!("no initialize within {} s", HANDSHAKE_TIMEOUT.as_secs());
                    let _ = control.send(Control::Close(Closing::new(close_code::POLICY, reason))).await;
                }
            }
            // The session is over (its client is gone, or the connection is closing): the
            // writer closes the socket once it has sent what the session left.
        };
        tokio::join!(reader.run(socket_stream), writer.run(socket_sink), session);
        drop(place);
        tracing::debug!(caller = %who, "WebSocket connection closed");
    }
}

/// The reading half: frames in, messages to the session.
struct Reader {
    parts: Parts,
    max_message_bytes: usize,
    to_session: mpsc::Sender<ClientJsonRpcMessage>,
    control: tokio::sync::mpsc::Sender<Control>,
    heard: Arc<AtomicBool>,
    unanswered: Unanswered,
    requests: TaskTracker,
    ended: CancellationToken,
}

impl Reader {
    async fn run(mut self, mut frames: futures::stream::SplitStream<WebSocket>) {
        // Once the connection is closing, frames are read (and dropped) only so that the peer's
        // close frame is seen, and for a bounded time.
        let mut closing: Option<tokio::time::Instant> = None;
        loop {
            let next = match closing {
                Some(deadline) => match tokio::time::timeout_at(deadline, frames.next()).await {
                    Ok(next) => next,
                    Err(_) => break,
                },
                None => tokio::select! {
                    next = frames.next() => next,
                    () = self.ended.cancelled() => {
                        closing = Some(tokio::time::Instant::now() + CLOSE_TIMEOUT);
                        continue;
                    }
                },
            };
            let frame = match next {
                None => break,
                Some(Ok(frame)) => frame,
                Some(Err(error)) => {
                    if too_long(error) {
                        // The library has stopped inside the frame: nothing more can be read.
                        let limit = self.max_message_bytes;
                        self.close(close_code::SIZE, format!("message too big: the limit is {limit} bytes")).await;
                    }
                    break;
                }
            };
            self.heard.store(true, Ordering::Release);
            if closing.is_some() {
                continue;
            }
            match frame {
                Frame::Text(text) => {
                    if text.len() > self.max_message_bytes {
                        let reason =
                            format!("message of {} bytes; the limit is {}", text.len(), self.max_message_bytes);
                        self.close(close_code::SIZE, reason).await;
                        closing = Some(tokio::time::Instant::now() + CLOSE_TIMEOUT);
                        continue;
                    }
                    if !self.pass_on(text.as_str()).await {
                        break;
                    }
                }
                Frame::Binary(_) => {
                    self.close(close_code::UNSUPPORTED, "one JSON-RPC message per text frame".into()).await;
                    closing = Some(tokio::time::Instant::now() + CLOSE_TIMEOUT);
                }
                // The library answers pings itself; a pong is what `heard` records.
                Frame::Ping(_) | Frame::Pong(_) => {}
                // The library answers it; the next read ends the stream.
                Frame::Close(_) => closing = Some(tokio::time::Instant::now() + CLOSE_TIMEOUT),
            }
        }
        self.ended.cancel();
    }

    /// Hand one message to the session, or answer it here if it is no message the session can
    /// take (as `/mcp` answers a POST). Whether the session is still there.
    async fn pass_on(&mut self, text: &str) -> bool {
        let parsed = match serde_json::from_str::<Value>(text) {
            Err(error) => Err(error_message(-32700, format!("Parse error: {error}"))),
            Ok(Value::Array(_)) => Err(error_message(
                -32600,
                "Invalid Request: JSON-RPC batches are not supported (removed in MCP 2025-06-18)".into(),
            )),
            Ok(value) => match jsonrpc::check(&value, text.as_bytes(), &HeaderMap::new()) {
                Err(invalid) => Err(invalid.into_error()),
                // `check` has parsed it as rmcp does; a failure here is a fault, answered alike.
                Ok(()) => serde_json::from_value::<ClientJsonRpcMessage>(value)
                    .map_err(|error| error_message(-32600, format!("Invalid Request: {error}"))),
            },
        };
        let mut message = match parsed {
            Ok(message) => message,
            Err(answer) => return self.control.send(Control::Answer(answer)).await.is_ok(),
        };
        match &mut message {
            ClientJsonRpcMessage::Request(request) => {
                // rmcp runs each request as a task of its own: without this bound one connection
                // could start calls without end (and keep a shutdown's drain waiting on them).
                // An id already in flight would replace its entry and so not count: refused,
                // as JSON-RPC has ids unique among a sender's requests in flight.
                let refusal = match self.unanswered.lock() {
                    Ok(unanswered) if unanswered.contains_key(&request.id) => Some((
                        -32600,
                        format!("Invalid Request: request id {} is already in flight on this connection", request.id),
                    )),
                    Ok(unanswered) if unanswered.len() >= MAX_IN_FLIGHT => Some((
                        -32000,
                        format!(
                            "too many requests in flight on this connection (at most {MAX_IN_FLIGHT}); wait for answers"
                        ),
                    )),
                    Ok(mut unanswered) => {
                        unanswered.insert(request.id.clone(), self.requests.token());
                        None
                    }
                    Err(_) => return false,
                };
                if let Some((code, message)) = refusal {
                    let mut answer = error_message(code, message);
                    answer["id"] = serde_json::to_value(&request.id).unwrap_or(Value::Null);
                    return self.control.send(Control::Answer(answer)).await.is_ok();
                }
                request.request.extensions_mut().insert(self.parts.clone());
            }
            ClientJsonRpcMessage::Notification(notification) => {
                // A cancelled request is never answered (rmcp drops what its handler returns),
                // so its place is given back now: otherwise each cancellation would keep one
                // for the connection's life, and 64 would leave it refusing every request.
                if let ClientNotification::CancelledNotification(cancelled) = &notification.notification
                    && let Some(id) = &cancelled.params.request_id
                    && let Ok(mut unanswered) = self.unanswered.lock()
                {
                    unanswered.remove(id);
                }
                notification.notification.extensions_mut().insert(self.parts.clone());
            }
            ClientJsonRpcMessage::Response(_) | ClientJsonRpcMessage::Error(_) => {}
        }
        self.to_session.send(message).await.is_ok()
    }

    async fn close(&self, code: u16, reason: String) {
        tracing::info!(code, %reason, "closing a WebSocket connection");
        let _ = self.control.send(Control::Close(Closing::new(code, reason))).await;
    }
}

/// The writing half: the session's messages, the reader's answers and close frames, pings.
struct Writer {
    from_session: mpsc::Receiver<ServerJsonRpcMessage>,
    controls: tokio::sync::mpsc::Receiver<Control>,
    heard: Arc<AtomicBool>,
    unanswered: Unanswered,
    ping_every: Duration,
    /// When the connection's token expires.
    expires: Option<SystemTime>,
    streams: CancellationToken,
    ended: CancellationToken,
}

impl Writer {
    async fn run(mut self, mut socket: futures::stream::SplitSink<WebSocket, Frame>) {
        let mut pings = tokio::time::interval_at(tokio::time::Instant::now() + self.ping_every, self.ping_every);
        pings.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut pinged = false;
        let expiry = self.expires.map(|at| at.duration_since(SystemTime::now()).unwrap_or_default());
        let expired = async {
            match expiry {
                Some(left) => tokio::time::sleep(left).await,
                None => std::future::pending().await,
            }
        };
        tokio::pin!(expired);
        let closing = loop {
            let frame = tokio::select! {
                biased;
                control = self.controls.recv() => match control {
                    Some(Control::Answer(answer)) => Frame::Text(answer.to_string().into()),
                    Some(Control::Close(closing)) => break Some(closing),
                    None => break None,
                },
                message = self.from_session.next() => match message {
                    Some(message) => {
                        self.answered(&message);
                        match serde_json::to_string(&message) {
                            Ok(text) => Frame::Text(text.into()),
                            Err(error) => {
                                tracing::warn!(%error, "a message of the session could not be written");
                                continue;
                            }
                        }
                    }
                    None => break Some(Closing::new(close_code::NORMAL, "session ended")),
                },
                () = self.ended.cancelled() => break Some(Closing::new(close_code::NORMAL, "")),
                () = self.streams.cancelled() => break Some(Closing::new(close_code::AWAY, "server shutting down")),
                () = &mut expired => {
                    break Some(Closing::new(close_code::POLICY, "the bearer token expired; reconnect with a fresh one"));
                }
                _ = pings.tick() => {
                    // Whatever the peer sent since the last ping (its pong, or anything else)
                    // shows it is there.
                    let answered = self.heard.swap(false, Ordering::AcqRel);
                    if pinged && !answered {
                        let reason = format!("no answer to a ping within {} s", self.ping_every.as_secs());
                        break Some(Closing::new(close_code::ERROR, reason));
                    }
                    pinged = true;
                    Frame::Ping(bytes::Bytes::new())
                }
            };
            // A peer that stops reading must not hold the writer (and its pings) for ever.
            match tokio::time::timeout(self.ping_every, socket.send(frame)).await {
                Ok(Ok(())) => {}
                Ok(Err(_)) => break None,
                Err(_) => {
                    tracing::info!("dropping a WebSocket connection whose peer does not read");
                    break None;
                }
            }
        };
        if let Some(Closing { code, reason }) = closing {
            // Refused if the peer closed first (the library has answered it): nothing to do.
            let close = Frame::Close(Some(CloseFrame { code, reason: reason.into() }));
            let _ = tokio::time::timeout(CLOSE_TIMEOUT, socket.send(close)).await;
        }
        self.ended.cancel();
    }

    /// An answer to a client request is going out: the request is no longer in flight.
    fn answered(&self, message: &ServerJsonRpcMessage) {
        let id = match message {
            ServerJsonRpcMessage::Response(response) => Some(&response.id),
            ServerJsonRpcMessage::Error(error) => error.id.as_ref(),
            _ => None,
        };
        if let Some(id) = id
            && let Ok(mut unanswered) = self.unanswered.lock()
        {
            unanswered.remove(id);
        }
    }
}

/// Whether a read failed on a message or frame over the size limit.
fn too_long(error: axum::Error) -> bool {
    use tokio_tungstenite::tungstenite::error::{CapacityError, Error};
    matches!(
        error.into_inner().downcast::<Error>().map(|error| *error),
        Ok(Error::Capacity(CapacityError::MessageTooLong { .. }))
    )
}

/// Requests one connection may have unanswered at once.
const MAX_IN_FLIGHT: usize = 64;

fn error_message(code: i32, message: String) -> Value {
    json!({ "jsonrpc": "2.0", "id": null, "error": { "code": code, "message": message } })
}
