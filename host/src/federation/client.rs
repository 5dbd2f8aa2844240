//! fedmcp as a client of a peer: what it declares, and where the peer's notifications and
//! requests go.

#![allow(deprecated)] // sampling and logging: deprecated in 2026-07-28, live in 2025-11-25

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use rmcp::model::{
    ClientCapabilities, ClientConfig, CreateMessageRequestParams, CreateMessageResult, ElicitRequestParams,
    ElicitResult, Implementation, ListRootsResult, LoggingLevel, LoggingMessageNotificationParam,
    NotificationMetaObject, ProgressNotificationParam, ProgressToken, RequestId,
};
use rmcp::model::{JsonRpcMessage, JsonRpcNotification, ServerNotification};
use rmcp::service::{InboundStreamOrigin, NotificationContext, RequestContext, RxJsonRpcMessage, TxJsonRpcMessage};
use rmcp::transport::Transport;
use rmcp::{ClientHandler, ErrorData as McpError, RoleClient};
use serde::de::DeserializeOwned;
use serde_json::Value;
use tokio::sync::{Notify, mpsc, oneshot, watch};

use crate::call::{CallEvent, Charge, EventBudget, EventsSpent, InputRequest, ListKind};

/// What the peer may report during one forwarded call, like a plugin call's default budget:
/// the session drains the call's events from an unbounded channel, so without a budget a peer
/// could fill this host's memory through one call.
pub const MAX_CALL_EVENTS: u64 = 1_000;
pub const MAX_CALL_EVENT_BYTES: usize = 1 << 20;

/// How long a notification or request that names a call waits for the call to learn its
/// request id (rmcp gives it only once the request is on its way).
const REGISTRATION_WAIT: Duration = Duration::from_millis(250);

/// The calls in flight on one peer connection, so that what the peer sends during a call
/// reaches the caller that made it, and only that caller.
pub struct ActiveCalls {
    next_id: AtomicU64,
    calls: Mutex<HashMap<u64, ActiveCall>>,
    /// Signalled when a call learns its request id.
    registered: Notify,
    /// Progress and log notifications the transport has delivered, and those the handler
    /// has passed on. rmcp hands each notification to the handler on a task of its own but
    /// a response straight to its waiter, so without these a call could finish before the
    /// progress the peer sent ahead of its result reaches the caller.
    received: AtomicU64,
    handled: watch::Sender<u64>,
    /// Log messages and requests the peer sent that no call could be tied to (by the
    /// response stream they came on), and so were dropped.
    unattributed: AtomicU64,
    /// Events dropped because their call had spent its budget.
    over_budget: AtomicU64,
}

impl Default for ActiveCalls {
    fn default() -> Self {
        Self {
            next_id: AtomicU64::new(0),
            calls: Mutex::default(),
            registered: Notify::new(),
            received: AtomicU64::new(0),
            handled: watch::Sender::new(0),
            unattributed: AtomicU64::new(0),
            over_budget: AtomicU64::new(0),
        }
    }
}

/// How long a finished call waits for notifications that arrived before its response.
const SETTLE_LIMIT: Duration = Duration::from_millis(250);

struct ActiveCall {
    progress_token: Option<ProgressToken>,
    /// The id of the forwarded request: what the peer sends on that request's response
    /// stream belongs to this call.
    request_id: Option<RequestId>,
    sink: Option<Arc<CallSink>>,
}

/// Where one call's events go, and what it has spent of its budget.
pub struct CallSink {
    peer: String,
    events: mpsc::UnboundedSender<CallEvent>,
    budget: Mutex<EventBudget>,
}

/// Why an event did not reach its caller.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Undelivered {
    OverBudget,
    /// The caller stopped waiting.
    Ended,
}

impl CallSink {
    /// Send `event`, which carries `bytes` of data, if the call's budget has room; otherwise
    /// drop it, and tell the caller the first time.
    fn send(&self, bytes: usize, event: CallEvent, over_budget: &AtomicU64) -> Result<(), Undelivered> {
        let notice = {
            let Ok(mut budget) = self.budget.lock() else { return Err(Undelivered::Ended) };
            match budget.charge(bytes) {
                Charge::Send => {
                    drop(budget);
                    return self.events.send(event).map_err(|_| Undelivered::Ended);
                }
                Charge::DropAndWarn => Some(budget.warning(&format!("peer {} (in a forwarded call)", self.peer))),
                Charge::Drop => None,
            }
        };
        over_budget.fetch_add(1, Ordering::Relaxed);
        if let Some(text) = notice {
            let _ = self.events.send(CallEvent::Log {
                level: LoggingLevel::Warning,
                logger: Some("fedmcp".to_owned()),
                data: Value::String(text),
            });
        }
        Err(Undelivered::OverBudget)
    }

    fn spent(&self) -> EventsSpent {
        self.budget.lock().map(|budget| budget.spent()).unwrap_or_default()
    }
}

/// Removes its call from [`ActiveCalls`] when dropped.
pub struct CallGuard {
    calls: Arc<ActiveCalls>,
    id: u64,
}

impl Drop for CallGuard {
    fn drop(&mut self) {
        let removed = self.calls.calls.lock().ok().and_then(|mut calls| calls.remove(&self.id));
        if let Some(sink) = removed.and_then(|call| call.sink) {
            let spent = sink.spent();
            if spent.dropped > 0 {
                tracing::warn!(peer = %sink.peer, dropped = spent.dropped, dropped_bytes = spent.dropped_bytes,
                    max_events = MAX_CALL_EVENTS, max_event_kb = MAX_CALL_EVENT_BYTES >> 10,
                    "forwarded call exceeded its event budget; the peer's excess log and progress messages were dropped");
            }
        }
    }
}

impl CallGuard {
    /// The request id and progress token rmcp gave the forwarded request.
    pub fn set_request(&self, id: RequestId, token: ProgressToken) {
        if let Ok(mut calls) = self.calls.calls.lock()
            && let Some(call) = calls.get_mut(&self.id)
        {
            call.request_id = Some(id);
            call.progress_token = Some(token);
        }
        self.calls.registered.notify_waiters();
    }
}

impl ActiveCalls {
    pub fn begin(self: &Arc<Self>, peer: &str, events: Option<mpsc::UnboundedSender<CallEvent>>) -> CallGuard {
        let id = self.next_id.fetch_add(1, Ordering::Relaxed);
        let sink = events.map(|events| {
            Arc::new(CallSink {
                peer: peer.to_owned(),
                events,
                budget: Mutex::new(EventBudget::new(MAX_CALL_EVENTS, MAX_CALL_EVENT_BYTES)),
            })
        });
        if let Ok(mut calls) = self.calls.lock() {
            calls.insert(id, ActiveCall { progress_token: None, request_id: None, sink });
        }
        CallGuard { calls: self.clone(), id }
    }

    /// The call whose request has id `id`: `Ok(None)` for a call that reports nowhere, `Err`
    /// when no call has it, and `Err(true)` while some call does not know its id yet.
    fn find_request(&self, id: &RequestId) -> Result<Option<Arc<CallSink>>, bool> {
        let Ok(calls) = self.calls.lock() else { return Err(false) };
        match calls.values().find(|call| call.request_id.as_ref() == Some(id)) {
            Some(call) => Ok(call.sink.clone()),
            None => Err(calls.values().any(|call| call.request_id.is_none())),
        }
    }

    /// The call whose request has id `id`, waiting briefly for calls that do not know their
    /// id yet (the peer may answer on a stream before rmcp hands the call its id).
    async fn by_request_id(&self, id: &RequestId) -> Result<Option<Arc<CallSink>>, ()> {
        let deadline = tokio::time::Instant::now() + REGISTRATION_WAIT;
        loop {
            // Registered before looking, so a call that learns its id in between still wakes us.
            let mut registered = std::pin::pin!(self.registered.notified());
            registered.as_mut().enable();
            match self.find_request(id) {
                Ok(sink) => return Ok(sink),
                Err(false) => return Err(()),
                Err(true) => {
                    if tokio::time::timeout_at(deadline, registered).await.is_err() {
                        return self.find_request(id).map_err(|_| ());
                    }
                }
            }
        }
    }

    fn by_progress_token(&self, token: &ProgressToken) -> Option<Arc<CallSink>> {
        let calls = self.calls.lock().ok()?;
        calls.values().find(|call| call.progress_token.as_ref() == Some(token)).and_then(|call| call.sink.clone())
    }

    /// The call a message the peer sent belongs to: only by the response stream it arrived on.
    /// Anything else (the standalone stream, a stdio peer's messages) is not guessed at, and
    /// is counted: with calls of several callers in flight, a guess may hand one caller's
    /// events, or questions, to another.
    async fn attribute(&self, origin: Option<&InboundStreamOrigin>) -> Result<Option<Arc<CallSink>>, ()> {
        let attributed = match origin {
            Some(InboundStreamOrigin::OutboundRequest(id)) => self.by_request_id(id).await,
            _ => Err(()),
        };
        if attributed.is_err() {
            self.unattributed.fetch_add(1, Ordering::Relaxed);
        }
        attributed
    }

    /// Pass on a progress notification to the call whose token it carries, and, from a peer
    /// whose streams are marked (HTTP), only when it came on that call's own response stream:
    /// a token is a small number a peer could guess, and another caller's call must not hear
    /// a message meant for no one it knows.
    fn progress(&self, params: ProgressNotificationParam, origin: Option<&InboundStreamOrigin>, unmarked: bool) {
        if unmarked {
            self.unattributed.fetch_add(1, Ordering::Relaxed);
            tracing::debug!("peer progress not on a call's own stream; dropped");
            return;
        }
        if let Some(InboundStreamOrigin::OutboundRequest(id)) = origin {
            let on_its_stream = self.calls.lock().ok().is_some_and(|calls| {
                calls.values().any(|call| {
                    call.progress_token.as_ref() == Some(&params.progress_token) && call.request_id.as_ref() == Some(id)
                })
            });
            if !on_its_stream {
                self.unattributed.fetch_add(1, Ordering::Relaxed);
                tracing::debug!("peer progress for another call's token; dropped");
                return;
            }
        }
        if let Some(sink) = self.by_progress_token(&params.progress_token) {
            let bytes = params.message.as_ref().map_or(0, String::len);
            let event = CallEvent::Progress { progress: params.progress, total: params.total, message: params.message };
            let _ = sink.send(bytes, event, &self.over_budget);
        }
    }

    /// Pass on a log message to the call whose response stream it came on.
    async fn log(&self, peer: &str, origin: Option<&InboundStreamOrigin>, params: LoggingMessageNotificationParam) {
        match self.attribute(origin).await {
            Ok(Some(sink)) => {
                let bytes = json_len(&params.data).saturating_add(params.logger.as_ref().map_or(0, String::len));
                let event = CallEvent::Log { level: params.level, logger: params.logger, data: params.data };
                let _ = sink.send(bytes, event, &self.over_budget);
            }
            Ok(None) => {}
            Err(()) => {
                tracing::debug!(peer, data = %params.data, "peer log message not tied to a call; dropped");
            }
        }
    }

    /// Wait until every progress or log notification the transport delivered so far has been
    /// passed on, so what the peer sent before a response reaches the caller before it.
    pub async fn settle(&self) {
        let target = self.received.load(Ordering::Acquire);
        let mut handled = self.handled.subscribe();
        if tokio::time::timeout(SETTLE_LIMIT, handled.wait_for(|n| *n >= target)).await.is_err() {
            // A notification rmcp routed elsewhere would keep every later call waiting.
            self.handled.send_modify(|n| *n = (*n).max(target));
        }
    }

    fn notification_handled(&self) {
        self.handled.send_modify(|n| *n += 1);
    }

    /// What was dropped so far, for `/health`: `(unattributed, over_budget)`.
    pub fn dropped(&self) -> (u64, u64) {
        (self.unattributed.load(Ordering::Relaxed), self.over_budget.load(Ordering::Relaxed))
    }
}

/// The length of `value` as JSON, without building the text.
fn json_len(value: &Value) -> usize {
    struct Counter(usize);
    impl std::io::Write for Counter {
        fn write(&mut self, bytes: &[u8]) -> std::io::Result<usize> {
            self.0 = self.0.saturating_add(bytes.len());
            Ok(bytes.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }
    let mut counter = Counter(0);
    // Writing a `Value` to a writer that never fails cannot fail.
    let _ = serde_json::to_writer(&mut counter, value);
    counter.0
}

/// Lists a peer said changed, waiting to be fetched again: one pending change per kind, so a
/// peer that announces changes faster than they are fetched costs nothing more.
#[derive(Default)]
pub struct ListChanges {
    pending: [AtomicBool; 3],
    notify: Notify,
}

impl ListChanges {
    fn index(kind: ListKind) -> usize {
        match kind {
            ListKind::Tools => 0,
            ListKind::Resources => 1,
            ListKind::Prompts => 2,
        }
    }

    pub fn mark(&self, kind: ListKind) {
        if !self.pending[Self::index(kind)].swap(true, Ordering::AcqRel) {
            self.notify.notify_one();
        }
    }

    /// The kinds changed since the last call, waiting for one if none is pending.
    pub async fn next(&self) -> Vec<ListKind> {
        loop {
            let changed: Vec<ListKind> = [ListKind::Tools, ListKind::Resources, ListKind::Prompts]
                .into_iter()
                .filter(|kind| self.pending[Self::index(*kind)].swap(false, Ordering::AcqRel))
                .collect();
            if !changed.is_empty() {
                return changed;
            }
            self.notify.notified().await;
        }
    }
}

/// The `_meta` key that tells which of this host's requests the response stream a peer's log
/// message came on belongs to. rmcp marks the requests a peer sends with their stream, but
/// not its notifications; the peer's HTTP client writes this mark instead, with a secret of
/// the connection the peer never sees, so a peer cannot forge it.
const STREAM_KEY: &str = "dev.fedmcp/stream";

/// A progress notification from a peer whose streams are marked, that came with no valid mark
/// (not on a call's response stream).
#[derive(Debug, Clone, Copy)]
struct Unmarked;

/// The secret of one peer connection's stream marks.
pub struct StreamMark {
    secret: String,
}

impl StreamMark {
    pub fn new() -> Result<Self, String> {
        let mut bytes = [0u8; 16];
        getrandom::fill(&mut bytes).map_err(|e| format!("no random source: {e}"))?;
        Ok(Self { secret: bytes.iter().map(|b| format!("{b:02x}")).collect() })
    }

    /// Mark a log message or progress notification that arrived on the response stream of
    /// request `request`. Other events pass unchanged.
    pub fn mark(&self, mut event: sse_stream::Sse, request: &RequestId) -> sse_stream::Sse {
        const MARKED: [&str; 2] = ["notifications/message", "notifications/progress"];
        let Some(data) = &event.data else { return event };
        // A cheap look first: most events are responses, which need no second parse. A message
        // written some other way (say with an escaped `/`) goes unmarked, so dropped.
        if !MARKED.iter().any(|method| data.contains(method)) {
            return event;
        }
        let Ok(Value::Object(mut message)) = serde_json::from_str::<Value>(data) else { return event };
        let method = message.get("method").and_then(Value::as_str);
        if !method.is_some_and(|method| MARKED.contains(&method)) || message.contains_key("id") {
            return event;
        }
        let Some(Value::Object(params)) = message.get_mut("params") else { return event };
        let meta = params.entry("_meta").or_insert_with(|| Value::Object(serde_json::Map::new()));
        let Value::Object(meta) = meta else { return event };
        meta.insert(STREAM_KEY.to_owned(), serde_json::json!({ "secret": self.secret, "request": request }));
        if let Ok(text) = serde_json::to_string(&message) {
            event.data = Some(text);
        }
        event
    }

    /// Take the mark out of a log message's `_meta`: the request it names, if the mark is
    /// this connection's.
    fn take(mark: Option<&Self>, meta: Option<&mut NotificationMetaObject>) -> Option<RequestId> {
        let value = meta?.0.0.remove(STREAM_KEY)?;
        let mark = mark?;
        if value.get("secret").and_then(Value::as_str) != Some(mark.secret.as_str()) {
            return None;
        }
        serde_json::from_value(value.get("request")?.clone()).ok()
    }
}

/// The rmcp client handler of one peer connection.
#[derive(Clone)]
pub struct PeerClient {
    pub peer_name: String,
    pub calls: Arc<ActiveCalls>,
    /// Lists the peer said changed.
    pub changed: Arc<ListChanges>,
    /// URIs of the peer's resources it says were updated (a bounded broadcast: a listener
    /// that falls behind loses the oldest).
    pub updated: tokio::sync::broadcast::Sender<String>,
}

impl PeerClient {
    /// Pass a request the peer makes mid-call (a legacy peer's sampling, elicitation or
    /// roots) to the client that made the call whose response stream it came on.
    async fn ask_caller<T: DeserializeOwned>(
        &self,
        request: InputRequest,
        cx: &RequestContext<RoleClient>,
    ) -> Result<T, McpError> {
        let sink = match self.calls.attribute(cx.extensions.get::<InboundStreamOrigin>()).await {
            Ok(Some(sink)) => sink,
            Ok(None) => return Err(McpError::internal_error("the caller of this call cannot be asked", None)),
            Err(()) => {
                return Err(McpError::internal_error(
                    format!(
                        "peer {} sent a request fedmcp cannot tie to one of its calls (send it on the call's response \
                         stream)",
                        self.peer_name
                    ),
                    None,
                ));
            }
        };
        let bytes = match &request {
            InputRequest::Sampling(params) | InputRequest::Elicitation(params) => json_len(params),
            InputRequest::Roots => 0,
        };
        let (reply, answer) = oneshot::channel();
        sink.send(bytes, CallEvent::ClientRequest { request, reply }, &self.calls.over_budget).map_err(|why| {
            McpError::internal_error(
                match why {
                    Undelivered::OverBudget => "the call this request belongs to has spent its event budget",
                    Undelivered::Ended => "the call this request belongs to has ended",
                },
                None,
            )
        })?;
        let value = answer.await.map_err(|_| McpError::internal_error("the caller did not answer", None))??;
        serde_json::from_value(value)
            .map_err(|e| McpError::internal_error(format!("the caller's answer is malformed: {e}"), None))
    }
}

impl ClientHandler for PeerClient {
    fn get_info(&self) -> ClientConfig {
        // Declared so that a peer asks for input (and fedmcp checks what the caller itself
        // declared) instead of refusing outright.
        let capabilities = ClientCapabilities::builder().enable_elicitation().enable_sampling().enable_roots().build();
        ClientConfig::new(capabilities, Implementation::new("fedmcp", env!("CARGO_PKG_VERSION")))
    }

    async fn create_message(
        &self,
        params: CreateMessageRequestParams,
        cx: RequestContext<RoleClient>,
    ) -> Result<CreateMessageResult, McpError> {
        let params = serde_json::to_value(params).map_err(|e| McpError::internal_error(e.to_string(), None))?;
        self.ask_caller(InputRequest::Sampling(params), &cx).await
    }

    async fn create_elicitation(
        &self,
        params: ElicitRequestParams,
        cx: RequestContext<RoleClient>,
    ) -> Result<ElicitResult, McpError> {
        let params = serde_json::to_value(params).map_err(|e| McpError::internal_error(e.to_string(), None))?;
        self.ask_caller(InputRequest::Elicitation(params), &cx).await
    }

    async fn list_roots(&self, cx: RequestContext<RoleClient>) -> Result<ListRootsResult, McpError> {
        self.ask_caller(InputRequest::Roots, &cx).await
    }

    async fn on_progress(&self, params: ProgressNotificationParam, cx: NotificationContext<RoleClient>) {
        let unmarked = cx.extensions.get::<Unmarked>().is_some();
        self.calls.progress(params, cx.extensions.get::<InboundStreamOrigin>(), unmarked);
        self.calls.notification_handled();
    }

    async fn on_logging_message(&self, params: LoggingMessageNotificationParam, cx: NotificationContext<RoleClient>) {
        self.calls.log(&self.peer_name, cx.extensions.get::<InboundStreamOrigin>(), params).await;
        self.calls.notification_handled();
    }

    async fn on_tool_list_changed(&self, _cx: NotificationContext<RoleClient>) {
        self.changed.mark(ListKind::Tools);
    }

    async fn on_prompt_list_changed(&self, _cx: NotificationContext<RoleClient>) {
        self.changed.mark(ListKind::Prompts);
    }

    async fn on_resource_list_changed(&self, _cx: NotificationContext<RoleClient>) {
        self.changed.mark(ListKind::Resources);
    }

    async fn on_resource_updated(
        &self,
        params: rmcp::model::ResourceUpdatedNotificationParam,
        _cx: NotificationContext<RoleClient>,
    ) {
        let _ = self.updated.send(params.uri);
    }
}

/// A peer's transport, counting the notifications [`ActiveCalls::settle`] waits for, and
/// turning the stream mark of a log message (see [`StreamMark`]) into the origin rmcp gives
/// requests.
pub struct CountingTransport<T> {
    pub inner: T,
    pub calls: Arc<ActiveCalls>,
    /// The connection's stream marks; `None` for a transport without response streams
    /// (stdio), whose log messages can never be tied to a call.
    pub mark: Option<Arc<StreamMark>>,
}

impl<T: Transport<RoleClient>> Transport<RoleClient> for CountingTransport<T> {
    type Error = T::Error;

    fn send(
        &mut self,
        item: TxJsonRpcMessage<RoleClient>,
    ) -> impl Future<Output = Result<(), Self::Error>> + Send + 'static {
        self.inner.send(item)
    }

    fn receive(&mut self) -> impl Future<Output = Option<RxJsonRpcMessage<RoleClient>>> + Send {
        let calls = self.calls.clone();
        let mark = self.mark.clone();
        let next = self.inner.receive();
        async move {
            let mut message = next.await;
            if let Some(message) = message.as_mut() {
                received(&calls, mark.as_deref(), message);
            }
            message
        }
    }

    fn close(&mut self) -> impl Future<Output = Result<(), Self::Error>> + Send {
        self.inner.close()
    }
}

/// Count a progress or log notification for [`ActiveCalls::settle`], and turn a log message's
/// stream mark into its origin. Whatever the peer wrote under the mark's key is removed; only
/// this connection's own mark becomes an origin.
fn received(calls: &ActiveCalls, mark: Option<&StreamMark>, message: &mut RxJsonRpcMessage<RoleClient>) {
    let JsonRpcMessage::Notification(JsonRpcNotification { notification, .. }) = message else { return };
    match notification {
        ServerNotification::LoggingMessageNotification(log) => {
            calls.received.fetch_add(1, Ordering::AcqRel);
            let in_extensions = StreamMark::take(mark, log.extensions.get_mut());
            let in_params = StreamMark::take(mark, log.params.meta.as_mut());
            if let Some(request) = in_extensions.or(in_params) {
                log.extensions.insert(InboundStreamOrigin::OutboundRequest(request));
            }
        }
        ServerNotification::ProgressNotification(progress) => {
            calls.received.fetch_add(1, Ordering::AcqRel);
            let Some(mark) = mark else { return };
            match StreamMark::take(Some(mark), progress.extensions.get_mut()) {
                Some(request) => {
                    progress.extensions.insert(InboundStreamOrigin::OutboundRequest(request));
                }
                None => {
                    progress.extensions.insert(Unmarked);
                }
            }
        }
        _ => {}
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_call_settles_only_after_the_notifications_received_before_it_are_passed_on() {
        let calls = Arc::new(ActiveCalls::default());
        calls.received.fetch_add(2, Ordering::AcqRel);
        let handler = calls.clone();
        tokio::spawn(async move {
            tokio::time::sleep(Duration::from_millis(20)).await;
            handler.notification_handled();
            handler.notification_handled();
        });
        calls.settle().await;
        assert_eq!(*calls.handled.borrow(), 2, "settled before the notifications were passed on");
    }

    fn log(text: &str) -> LoggingMessageNotificationParam {
        LoggingMessageNotificationParam::new(LoggingLevel::Info, Value::String(text.to_owned()))
    }

    fn one_call(calls: &Arc<ActiveCalls>, id: i64) -> (CallGuard, mpsc::UnboundedReceiver<CallEvent>) {
        let (events, receiver) = mpsc::unbounded_channel();
        let call = calls.begin("b", Some(events));
        call.set_request(RequestId::Number(id), ProgressToken(rmcp::model::NumberOrString::Number(id)));
        (call, receiver)
    }

    #[tokio::test]
    async fn a_log_message_off_a_calls_stream_is_dropped_and_counted_even_with_one_call_in_flight() {
        let calls = Arc::new(ActiveCalls::default());
        let (_call, mut events) = one_call(&calls, 1);
        // The standalone stream, and a stdio peer (no origin): the one call in flight may be
        // another identity's, so neither is handed to it.
        calls.log("b", Some(&InboundStreamOrigin::Unassociated), log("for whom?")).await;
        calls.log("b", None, log("for whom?")).await;
        assert!(events.try_recv().is_err(), "a log message not tied to the call reached its caller");
        assert_eq!(calls.dropped(), (2, 0));
        // On the call's own response stream: its caller gets it.
        calls.log("b", Some(&InboundStreamOrigin::OutboundRequest(RequestId::Number(1))), log("yours")).await;
        assert!(matches!(events.try_recv(), Ok(CallEvent::Log { data, .. }) if data == "yours"));
        // Another request's stream: not this call's either.
        calls.log("b", Some(&InboundStreamOrigin::OutboundRequest(RequestId::Number(2))), log("x")).await;
        assert!(events.try_recv().is_err());
        assert_eq!(calls.dropped(), (3, 0));
    }

    /// From a peer whose streams are marked, progress reaches a call only on its own stream:
    /// a guessed token on another stream, or on none, is dropped and counted.
    #[tokio::test]
    async fn progress_with_another_calls_token_does_not_reach_it() {
        let calls = Arc::new(ActiveCalls::default());
        let (_call, mut events) = one_call(&calls, 1);
        let (_other, _other_events) = one_call(&calls, 2);
        let token = ProgressToken(rmcp::model::NumberOrString::Number(1));
        let progress = || ProgressNotificationParam::new(token.clone(), 1.0);
        calls.progress(progress(), Some(&InboundStreamOrigin::OutboundRequest(RequestId::Number(2))), false);
        calls.progress(progress(), None, true);
        assert!(events.try_recv().is_err(), "progress off the call's stream reached its caller");
        assert_eq!(calls.dropped(), (2, 0));
        calls.progress(progress(), Some(&InboundStreamOrigin::OutboundRequest(RequestId::Number(1))), false);
        assert!(matches!(events.try_recv(), Ok(CallEvent::Progress { .. })));
        // A peer over stdio marks nothing: its progress is routed by token alone.
        calls.progress(progress(), None, false);
        assert!(matches!(events.try_recv(), Ok(CallEvent::Progress { .. })));
    }

    #[tokio::test]
    async fn a_forwarded_calls_events_are_capped_and_its_caller_told_once() {
        let calls = Arc::new(ActiveCalls::default());
        let (call, mut events) = one_call(&calls, 1);
        let token = ProgressToken(rmcp::model::NumberOrString::Number(1));
        for n in 0..MAX_CALL_EVENTS + 100 {
            calls.progress(ProgressNotificationParam::new(token.clone(), n as f64), None, false);
        }
        let mut progress = 0;
        let mut warnings = Vec::new();
        while let Ok(event) = events.try_recv() {
            match event {
                CallEvent::Progress { .. } => progress += 1,
                CallEvent::Log { level: LoggingLevel::Warning, data, .. } => warnings.push(data),
                other => panic!("unexpected {other:?}"),
            }
        }
        assert_eq!(progress, MAX_CALL_EVENTS);
        assert_eq!(warnings.len(), 1, "{warnings:?}");
        assert!(warnings[0].to_string().contains("event budget"), "{warnings:?}");
        assert_eq!(calls.dropped(), (0, 100));
        drop(call);

        // Bytes count too: one message past a call's byte budget is dropped, a small one passes.
        let (_call, mut events) = one_call(&calls, 2);
        let on_stream = InboundStreamOrigin::OutboundRequest(RequestId::Number(2));
        calls.log("b", Some(&on_stream), log(&"x".repeat(MAX_CALL_EVENT_BYTES + 1))).await;
        calls.log("b", Some(&on_stream), log("small")).await;
        let texts: Vec<String> = std::iter::from_fn(|| events.try_recv().ok())
            .filter_map(|event| match event {
                CallEvent::Log { data, .. } => Some(data.to_string()),
                _ => None,
            })
            .collect();
        assert_eq!(texts.len(), 2, "{texts:?}");
        assert!(texts[0].contains("event budget") && texts[1] == "\"small\"", "{texts:?}");
    }

    #[tokio::test]
    async fn list_changes_coalesce_to_one_pending_change_per_kind() {
        let changes = ListChanges::default();
        for _ in 0..10_000 {
            changes.mark(ListKind::Tools);
        }
        changes.mark(ListKind::Prompts);
        assert_eq!(changes.next().await, [ListKind::Tools, ListKind::Prompts]);
        let nothing = tokio::time::timeout(Duration::from_millis(50), changes.next()).await;
        assert!(nothing.is_err(), "a change was announced twice: {nothing:?}");
        changes.mark(ListKind::Resources);
        assert_eq!(changes.next().await, [ListKind::Resources]);
    }

    fn parsed(event: &sse_stream::Sse) -> RxJsonRpcMessage<RoleClient> {
        serde_json::from_str(event.data.as_deref().unwrap_or_default()).expect("a JSON-RPC message")
    }

    fn origin(message: &RxJsonRpcMessage<RoleClient>) -> Option<InboundStreamOrigin> {
        match message {
            JsonRpcMessage::Notification(JsonRpcNotification {
                notification: ServerNotification::LoggingMessageNotification(log),
                ..
            }) => log.extensions.get::<InboundStreamOrigin>().cloned(),
            _ => None,
        }
    }

    #[test]
    fn a_log_message_is_tied_to_a_request_only_by_this_connections_own_mark() {
        let calls = ActiveCalls::default();
        let mark = StreamMark::new().expect("random");
        let event = |data: serde_json::Value| sse_stream::Sse {
            event: Some("message".into()),
            data: Some(data.to_string()),
            id: None,
            retry: None,
        };
        let log = serde_json::json!({ "jsonrpc": "2.0", "method": "notifications/message",
            "params": { "level": "info", "data": "hello" } });
        let request = RequestId::Number(7);

        // Marked on request 7's response stream: tied to request 7, and the mark is gone.
        let mut message = parsed(&mark.mark(event(log.clone()), &request));
        received(&calls, Some(&mark), &mut message);
        assert_eq!(origin(&message), Some(InboundStreamOrigin::OutboundRequest(request.clone())));
        assert!(!serde_json::to_string(&message).unwrap_or_default().contains(STREAM_KEY));

        // A peer that writes the key itself, with a guessed secret: removed, tied to nothing.
        let mut forged = log.clone();
        forged["params"]["_meta"] = serde_json::json!({ STREAM_KEY: { "secret": "00", "request": 7 } });
        let mut message = parsed(&event(forged.clone()));
        received(&calls, Some(&mark), &mut message);
        assert_eq!(origin(&message), None);
        assert!(!serde_json::to_string(&message).unwrap_or_default().contains(STREAM_KEY));

        // Another connection's mark means nothing here, nor does any mark on stdio.
        let other = StreamMark::new().expect("random");
        let mut message = parsed(&other.mark(event(log.clone()), &request));
        received(&calls, Some(&mark), &mut message);
        assert_eq!(origin(&message), None);
        let mut message = parsed(&mark.mark(event(log), &request));
        received(&calls, None, &mut message);
        assert_eq!(origin(&message), None);

        // Responses pass untouched.
        let response = event(serde_json::json!({ "jsonrpc": "2.0", "id": 7, "result": {
            "content": [{ "type": "text", "text": "notifications/message" }] } }));
        assert_eq!(mark.mark(response.clone(), &request).data, response.data);
    }

    #[tokio::test]
    async fn a_notification_that_never_reaches_the_handler_does_not_hold_up_later_calls() {
        let calls = ActiveCalls::default();
        calls.received.fetch_add(1, Ordering::AcqRel);
        calls.settle().await;
        // Caught up: the next call has nothing to wait for.
        assert_eq!(*calls.handled.borrow(), 1);
    }
}
