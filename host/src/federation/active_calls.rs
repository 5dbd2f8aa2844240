//! The forwarded calls in flight at one peer, and what each may receive: the peer's progress
//! and log messages routed to the call they belong to (by progress token, or by the stream
//! they came on), within the call's event budget, and the peer's list changes coalesced to one
//! pending change per kind.

#![allow(deprecated)] // logging: deprecated in 2026-07-28, live in 2025-11-25

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use rmcp::model::{LoggingLevel, LoggingMessageNotificationParam, ProgressNotificationParam, ProgressToken, RequestId};
use rmcp::service::InboundStreamOrigin;
use serde_json::Value;
use tokio::sync::{Notify, mpsc, watch};

use crate::call::{CallEvent, Charge, EventBudget, EventsSpent, ListKind, json_len};

/// What the peer may report during one forwarded call, like a plugin call's default budget:
/// the session drains the call's events from an unbounded channel, so without a budget a peer
/// could fill this host's memory through one call.
pub(crate) const MAX_CALL_EVENTS: u64 = 1_000;
pub(crate) const MAX_CALL_EVENT_BYTES: usize = 1 << 20;

/// How long a notification or request that names a call waits for the call to learn its
/// request id (rmcp gives it only once the request is on its way).
const REGISTRATION_WAIT: Duration = Duration::from_millis(250);

/// The calls in flight on one peer connection, so that what the peer sends during a call
/// reaches the caller that made it, and only that caller.
pub(super) struct ActiveCalls {
    next_id: AtomicU64,
    calls: Mutex<HashMap<u64, ActiveCall>>,
    /// Signalled when a call learns its request id.
    registered: Notify,
    /// Progress and log notifications the transport has delivered, and those the handler
    /// has passed on. rmcp hands each notification to the handler on a task of its own but
    /// a response straight to its waiter, so without these a call could finish before the
    /// progress the peer sent ahead of its result reaches the caller.
    pub(super) received: AtomicU64,
    pub(super) handled: watch::Sender<u64>,
    /// Log messages and requests the peer sent that no call could be tied to (by the
    /// response stream they came on), and so were dropped.
    unattributed: AtomicU64,
    /// Events dropped because their call had spent its budget.
    pub(super) over_budget: AtomicU64,
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
pub(super) struct CallSink {
    peer: String,
    events: mpsc::UnboundedSender<CallEvent>,
    budget: Mutex<EventBudget>,
}

/// Why an event did not reach its caller.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Undelivered {
    OverBudget,
    /// The caller stopped waiting.
    Ended,
}

impl CallSink {
    /// Send `event`, which carries `bytes` of data, if the call's budget has room; otherwise
    /// drop it, and tell the caller the first time.
    pub(super) fn send(&self, bytes: usize, event: CallEvent, over_budget: &AtomicU64) -> Result<(), Undelivered> {
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
pub(super) struct CallGuard {
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
    pub(super) fn set_request(&self, id: RequestId, token: ProgressToken) {
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
    pub(super) fn begin(self: &Arc<Self>, peer: &str, events: Option<mpsc::UnboundedSender<CallEvent>>) -> CallGuard {
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
    pub(super) async fn attribute(&self, origin: Option<&InboundStreamOrigin>) -> Result<Option<Arc<CallSink>>, ()> {
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
    pub(super) fn progress(
        &self,
        params: ProgressNotificationParam,
        origin: Option<&InboundStreamOrigin>,
        unmarked: bool,
    ) {
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
    pub(super) async fn log(
        &self,
        peer: &str,
        origin: Option<&InboundStreamOrigin>,
        params: LoggingMessageNotificationParam,
    ) {
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
    pub(super) async fn settle(&self) {
        let target = self.received.load(Ordering::Acquire);
        let mut handled = self.handled.subscribe();
        if tokio::time::timeout(SETTLE_LIMIT, handled.wait_for(|n| *n >= target)).await.is_err() {
            // A notification rmcp routed elsewhere would keep every later call waiting.
            self.handled.send_modify(|n| *n = (*n).max(target));
        }
    }

    pub(super) fn notification_handled(&self) {
        self.handled.send_modify(|n| *n += 1);
    }

    /// What was dropped so far, for `/health`: `(unattributed, over_budget)`.
    pub(super) fn dropped(&self) -> (u64, u64) {
        (self.unattributed.load(Ordering::Relaxed), self.over_budget.load(Ordering::Relaxed))
    }
}

/// Lists a peer said changed, waiting to be fetched again: one pending change per kind, so a
/// peer that announces changes faster than they are fetched costs nothing more.
#[derive(Default)]
pub(super) struct ListChanges {
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

    pub(super) fn mark(&self, kind: ListKind) {
        if !self.pending[Self::index(kind)].swap(true, Ordering::AcqRel) {
            self.notify.notify_one();
        }
    }

    /// The kinds changed since the last call, waiting for one if none is pending.
    pub(super) async fn next(&self) -> Vec<ListKind> {
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

    pub(super) fn log(text: &str) -> LoggingMessageNotificationParam {
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
}
