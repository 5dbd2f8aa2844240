//! fedmcp as a client of a peer: what it declares, and where the peer's notifications and
//! requests go.

#![allow(deprecated)] // sampling and logging: deprecated in 2026-07-28, live in 2025-11-25

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use rmcp::model::{
    ClientCapabilities, ClientConfig, CreateMessageRequestParams, CreateMessageResult, ElicitRequestParams,
    ElicitResult, Implementation, ListRootsResult, LoggingMessageNotificationParam, ProgressNotificationParam,
    ProgressToken, RequestId,
};
use rmcp::model::{JsonRpcMessage, JsonRpcNotification, ServerNotification};
use rmcp::service::{InboundStreamOrigin, NotificationContext, RequestContext, RxJsonRpcMessage, TxJsonRpcMessage};
use rmcp::transport::Transport;
use rmcp::{ClientHandler, ErrorData as McpError, RoleClient};
use serde::de::DeserializeOwned;
use tokio::sync::{mpsc, oneshot, watch};

use crate::call::{CallEvent, InputRequest, ListKind};

/// The calls in flight on one peer connection, so that what the peer sends during a call
/// reaches the caller that made it.
pub struct ActiveCalls {
    next_id: AtomicU64,
    calls: Mutex<HashMap<u64, ActiveCall>>,
    /// Progress and log notifications the transport has delivered, and those the handler
    /// has passed on. rmcp hands each notification to the handler on a task of its own but
    /// a response straight to its waiter, so without these a call could finish before the
    /// progress the peer sent ahead of its result reaches the caller.
    received: AtomicU64,
    handled: watch::Sender<u64>,
}

impl Default for ActiveCalls {
    fn default() -> Self {
        Self {
            next_id: AtomicU64::new(0),
            calls: Mutex::default(),
            received: AtomicU64::new(0),
            handled: watch::Sender::new(0),
        }
    }
}

/// How long a finished call waits for notifications that arrived before its response.
const SETTLE_LIMIT: Duration = Duration::from_millis(250);

struct ActiveCall {
    progress_token: Option<ProgressToken>,
    /// The id of the forwarded request, which a legacy peer's requests made mid-call are
    /// tied to by the stream they arrive on.
    request_id: Option<RequestId>,
    events: Option<mpsc::UnboundedSender<CallEvent>>,
}

/// Removes its call from [`ActiveCalls`] when dropped.
pub struct CallGuard {
    calls: Arc<ActiveCalls>,
    id: u64,
}

impl Drop for CallGuard {
    fn drop(&mut self) {
        if let Ok(mut calls) = self.calls.calls.lock() {
            calls.remove(&self.id);
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
    }
}

impl ActiveCalls {
    pub fn begin(self: &Arc<Self>, events: Option<mpsc::UnboundedSender<CallEvent>>) -> CallGuard {
        let id = self.next_id.fetch_add(1, Ordering::Relaxed);
        if let Ok(mut calls) = self.calls.lock() {
            calls.insert(id, ActiveCall { progress_token: None, request_id: None, events });
        }
        CallGuard { calls: self.clone(), id }
    }

    fn by_request_id(&self, id: &RequestId) -> Option<mpsc::UnboundedSender<CallEvent>> {
        let calls = self.calls.lock().ok()?;
        calls.values().find(|call| call.request_id.as_ref() == Some(id)).and_then(|call| call.events.clone())
    }

    fn by_progress_token(&self, token: &ProgressToken) -> Option<mpsc::UnboundedSender<CallEvent>> {
        let calls = self.calls.lock().ok()?;
        calls.values().find(|call| call.progress_token.as_ref() == Some(token)).and_then(|call| call.events.clone())
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

    /// The events of the one call in flight. A notification or request that carries no
    /// request id can be attributed only when a single call is running; with several, it
    /// is not guessed.
    fn only(&self) -> Option<mpsc::UnboundedSender<CallEvent>> {
        let calls = self.calls.lock().ok()?;
        let mut running = calls.values();
        match (running.next(), running.next()) {
            (Some(call), None) => call.events.clone(),
            _ => None,
        }
    }
}

/// The rmcp client handler of one peer connection.
#[derive(Clone)]
pub struct PeerClient {
    pub peer_name: String,
    pub calls: Arc<ActiveCalls>,
    /// Lists the peer said changed.
    pub changed: mpsc::UnboundedSender<ListKind>,
    /// URIs of the peer's resources it says were updated.
    pub updated: tokio::sync::broadcast::Sender<String>,
}

impl PeerClient {
    /// Pass a request the peer makes mid-call (a legacy peer's sampling, elicitation or
    /// roots) to the client that made the call: the call whose response stream it came on,
    /// or else the only call in flight.
    async fn ask_caller<T: DeserializeOwned>(
        &self,
        request: InputRequest,
        cx: &RequestContext<RoleClient>,
    ) -> Result<T, McpError> {
        let events = match cx.extensions.get::<InboundStreamOrigin>() {
            Some(InboundStreamOrigin::OutboundRequest(id)) => self.calls.by_request_id(id),
            _ => self.calls.only(),
        };
        let Some(events) = events else {
            return Err(McpError::internal_error(
                format!(
                    "peer {} sent a request fedmcp cannot attribute to one caller (none or several calls in flight)",
                    self.peer_name
                ),
                None,
            ));
        };
        let (reply, answer) = oneshot::channel();
        events
            .send(CallEvent::ClientRequest { request, reply })
            .map_err(|_| McpError::internal_error("the call this request belongs to has ended", None))?;
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

    async fn on_progress(&self, params: ProgressNotificationParam, _cx: NotificationContext<RoleClient>) {
        if let Some(events) = self.calls.by_progress_token(&params.progress_token) {
            let _ = events.send(CallEvent::Progress {
                progress: params.progress,
                total: params.total,
                message: params.message,
            });
        }
        self.calls.notification_handled();
    }

    async fn on_logging_message(&self, params: LoggingMessageNotificationParam, _cx: NotificationContext<RoleClient>) {
        match self.calls.only() {
            Some(events) => {
                let _ = events.send(CallEvent::Log { level: params.level, logger: params.logger, data: params.data });
            }
            None => tracing::debug!(peer = %self.peer_name, data = %params.data, "peer log message outside a call"),
        }
        self.calls.notification_handled();
    }

    async fn on_tool_list_changed(&self, _cx: NotificationContext<RoleClient>) {
        let _ = self.changed.send(ListKind::Tools);
    }

    async fn on_prompt_list_changed(&self, _cx: NotificationContext<RoleClient>) {
        let _ = self.changed.send(ListKind::Prompts);
    }

    async fn on_resource_list_changed(&self, _cx: NotificationContext<RoleClient>) {
        let _ = self.changed.send(ListKind::Resources);
    }

    async fn on_resource_updated(
        &self,
        params: rmcp::model::ResourceUpdatedNotificationParam,
        _cx: NotificationContext<RoleClient>,
    ) {
        let _ = self.updated.send(params.uri);
    }
}

/// A peer's transport, counting the notifications [`ActiveCalls::settle`] waits for.
pub struct CountingTransport<T> {
    pub inner: T,
    pub calls: Arc<ActiveCalls>,
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
        let next = self.inner.receive();
        async move {
            let message = next.await;
            if let Some(JsonRpcMessage::Notification(JsonRpcNotification {
                notification:
                    ServerNotification::ProgressNotification(_) | ServerNotification::LoggingMessageNotification(_),
                ..
            })) = &message
            {
                calls.received.fetch_add(1, Ordering::AcqRel);
            }
            message
        }
    }

    fn close(&mut self) -> impl Future<Output = Result<(), Self::Error>> + Send {
        self.inner.close()
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

    #[tokio::test]
    async fn a_notification_that_never_reaches_the_handler_does_not_hold_up_later_calls() {
        let calls = ActiveCalls::default();
        calls.received.fetch_add(1, Ordering::AcqRel);
        calls.settle().await;
        // Caught up: the next call has nothing to wait for.
        assert_eq!(*calls.handled.borrow(), 1);
    }
}
