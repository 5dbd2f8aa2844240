//! fedmcp as a client of a peer: what it declares, and where the peer's notifications and
//! requests go.

#![allow(deprecated)] // sampling and logging: deprecated in 2026-07-28, live in 2025-11-25

use std::sync::Arc;
use std::sync::atomic::Ordering;

use rmcp::model::{
    ClientCapabilities, ClientConfig, CreateMessageRequestParams, CreateMessageResult, ElicitRequestParams,
    ElicitResult, Implementation, ListRootsResult, LoggingMessageNotificationParam, NotificationMetaObject,
    ProgressNotificationParam, RequestId,
};
use rmcp::model::{JsonRpcMessage, JsonRpcNotification, ServerNotification};
use rmcp::service::{InboundStreamOrigin, NotificationContext, RequestContext, RxJsonRpcMessage, TxJsonRpcMessage};
use rmcp::transport::Transport;
use rmcp::{ClientHandler, ErrorData as McpError, RoleClient};
use serde::de::DeserializeOwned;
use serde_json::Value;
use tokio::sync::oneshot;

use crate::call::{CallEvent, InputRequest, ListKind, json_len};

use super::active_calls::*;

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
pub(crate) struct StreamMark {
    secret: String,
}

impl StreamMark {
    pub(crate) fn new() -> Result<Self, String> {
        let mut bytes = [0u8; 16];
        getrandom::fill(&mut bytes).map_err(|e| format!("no random source: {e}"))?;
        Ok(Self { secret: bytes.iter().map(|b| format!("{b:02x}")).collect() })
    }

    /// Mark a log message or progress notification that arrived on the response stream of
    /// request `request`. Other events pass unchanged.
    pub(crate) fn mark(&self, mut event: sse_stream::Sse, request: &RequestId) -> sse_stream::Sse {
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
pub(super) struct PeerClient {
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
pub(super) struct CountingTransport<T> {
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
