//! The legacy (2025-11-25) sessions open on this host, with what the relay needs to serve a
//! tool call of one without rmcp's session machinery (see `crate::relay`): the protocol
//! version the session agreed, what its client can be asked mid-call, and its log level. And
//! the relayed calls in flight, so that the client's `notifications/cancelled` reaches them,
//! and the questions the relay asked a client, so that its answers reach them. And when each
//! session was last used: a session whose calls all take the relay looks idle to rmcp, so the
//! host, not rmcp, ends idle sessions (`idle`).

// Logging is deprecated by SEP-2577 (2026-07-28) but is live in 2025-11-25.
#![allow(deprecated)]

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use rmcp::model::LoggingLevel;
use serde_json::Value;
use tokio_util::sync::CancellationToken;

/// What a legacy session's client agreed to at `initialize`.
pub(crate) struct SessionFacts {
    pub protocol: String,
    /// What the client can be asked mid-call, as a 2026-07-28 request's
    /// `clientCapabilities`: `sampling`, `elicitation`, `roots` (each `{}`) if declared.
    pub capabilities: serde_json::Map<String, Value>,
    /// The level set by `logging/setLevel` (shared with the session, which sets it).
    pub log_level: Arc<Mutex<Option<LoggingLevel>>>,
}

impl SessionFacts {
    /// The level the client wants log messages from; every level until it sets one.
    pub(crate) fn log_level(&self) -> LoggingLevel {
        self.log_level.lock().ok().and_then(|level| *level).unwrap_or(LoggingLevel::Debug)
    }
}

/// (session id, a request's id as JSON text): ids are the client's to choose, per session.
type RequestKey = (String, String);

#[derive(Default)]
pub struct LegacySessions {
    open: Mutex<HashMap<String, Arc<SessionFacts>>>,
    /// Relayed calls in flight → how to cancel them.
    relayed: Mutex<HashMap<RequestKey, CancellationToken>>,
    /// Questions the relay asked clients (its own request ids) → where the answer goes.
    asked: Mutex<HashMap<RequestKey, tokio::sync::oneshot::Sender<Value>>>,
    next_question: AtomicU64,
    /// Every session the listener issued (initialized or not) → when it was last used.
    last_used: Mutex<HashMap<String, Instant>>,
}

impl LegacySessions {
    /// Remember an initialized session for as long as the returned registration lives. A
    /// second registration of the same id replaces the first, and the first one's drop then
    /// leaves it alone.
    pub(crate) fn register(self: &Arc<Self>, id: String, facts: SessionFacts) -> Registration {
        let facts = Arc::new(facts);
        if let Ok(mut open) = self.open.lock() {
            open.insert(id.clone(), facts.clone());
        }
        Registration { entry: Some((self.clone(), id, facts)) }
    }

    /// Forget session `id` only if `facts` is still its entry.
    fn unregister(&self, id: &str, facts: &Arc<SessionFacts>) {
        if let Ok(mut open) = self.open.lock()
            && open.get(id).is_some_and(|current| Arc::ptr_eq(current, facts))
        {
            open.remove(id);
        }
    }

    pub(crate) fn get(&self, id: &str) -> Option<Arc<SessionFacts>> {
        self.open.lock().ok()?.get(id).cloned()
    }

    /// Forget a session its client ended (`DELETE`), before rmcp drops it.
    pub(crate) fn close(&self, id: &str) {
        if let Ok(mut open) = self.open.lock() {
            open.remove(id);
        }
        if let Ok(mut last_used) = self.last_used.lock() {
            last_used.remove(id);
        }
    }

    /// Track a relayed call until the returned guard drops; `None` when a call with the same
    /// id is already in flight in the session (the normal path judges such a request).
    pub(crate) fn track_call(self: &Arc<Self>, session: &str, request: &Value) -> Option<RelayedCall> {
        let key = (session.to_owned(), request.to_string());
        let mut relayed = self.relayed.lock().ok()?;
        if relayed.contains_key(&key) {
            return None;
        }
        let cancelled = CancellationToken::new();
        relayed.insert(key.clone(), cancelled.clone());
        Some(RelayedCall { sessions: self.clone(), key, cancelled })
    }

    /// The listener issued session `id` (its `initialize` was answered).
    pub(crate) fn issued(&self, id: &str) {
        if let Ok(mut last_used) = self.last_used.lock() {
            last_used.insert(id.to_owned(), Instant::now());
        }
    }

    /// A request of session `id` began or ended (ids the listener did not issue are ignored).
    pub(crate) fn used(&self, id: &str) {
        if let Ok(mut last_used) = self.last_used.lock()
            && let Some(at) = last_used.get_mut(id)
        {
            *at = Instant::now();
        }
    }

    /// The sessions unused for `limit` (forgotten here; the caller ends them at rmcp).
    pub(crate) fn idle(&self, limit: Duration) -> Vec<String> {
        let Ok(mut last_used) = self.last_used.lock() else { return Vec::new() };
        let idle: Vec<String> =
            last_used.iter().filter(|(_, at)| at.elapsed() >= limit).map(|(id, _)| id.clone()).collect();
        for id in &idle {
            last_used.remove(id);
        }
        drop(last_used);
        for id in &idle {
            self.close(id);
        }
        idle
    }

    /// A request id for a question to the client of `session`, and where its answer will
    /// arrive (until the returned value drops).
    pub(crate) fn ask(self: &Arc<Self>, session: &str) -> (Value, PendingAnswer) {
        let id = Value::String(format!("fedmcp-relay-{}", self.next_question.fetch_add(1, Ordering::Relaxed)));
        let key = (session.to_owned(), id.to_string());
        let (sender, answer) = tokio::sync::oneshot::channel();
        if let Ok(mut asked) = self.asked.lock() {
            asked.insert(key.clone(), sender);
        }
        (id, PendingAnswer { sessions: self.clone(), key, answer })
    }

    /// Pass a client's JSON-RPC response on to the question it answers; `false` when no
    /// question of the relay's in `session` has its id (rmcp's session gets it then).
    pub(crate) fn answer(&self, session: &str, response: &Value) -> bool {
        let Some(id) = response.get("id") else { return false };
        let key = (session.to_owned(), id.to_string());
        let Some(waiting) = self.asked.lock().ok().and_then(|mut asked| asked.remove(&key)) else { return false };
        let _ = waiting.send(response.clone());
        true
    }

    /// The client cancelled request `request` of `session`: stop it if it is being relayed.
    pub(crate) fn cancel(&self, session: &str, request: &Value) {
        let key = (session.to_owned(), request.to_string());
        if let Some(cancelled) = self.relayed.lock().ok().and_then(|relayed| relayed.get(&key).cloned()) {
            cancelled.cancel();
        }
    }
}

/// A session's place in the registry; dropped with the session.
pub(crate) struct Registration {
    entry: Option<(Arc<LegacySessions>, String, Arc<SessionFacts>)>,
}

impl Registration {
    /// An initialized session that has no place in the registry (stdio, or a session rmcp
    /// did not name).
    pub(crate) fn unregistered() -> Self {
        Self { entry: None }
    }
}

impl Drop for Registration {
    fn drop(&mut self) {
        // Only its own entry: the session may have been closed, or registered anew, since.
        if let Some((sessions, id, facts)) = &self.entry {
            sessions.unregister(id, facts);
        }
    }
}

/// A question the relay asked a client, waiting for its answer.
pub(crate) struct PendingAnswer {
    sessions: Arc<LegacySessions>,
    key: RequestKey,
    pub answer: tokio::sync::oneshot::Receiver<Value>,
}

impl Drop for PendingAnswer {
    fn drop(&mut self) {
        if let Ok(mut asked) = self.sessions.asked.lock() {
            asked.remove(&self.key);
        }
    }
}

/// A relayed call in flight.
pub(crate) struct RelayedCall {
    sessions: Arc<LegacySessions>,
    key: RequestKey,
    pub cancelled: CancellationToken,
}

impl Drop for RelayedCall {
    fn drop(&mut self) {
        if let Ok(mut relayed) = self.sessions.relayed.lock() {
            relayed.remove(&self.key);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn facts() -> SessionFacts {
        SessionFacts { protocol: "2025-11-25".into(), capabilities: Default::default(), log_level: Arc::default() }
    }

    #[test]
    fn a_session_is_known_while_registered_and_until_closed() {
        let sessions = Arc::new(LegacySessions::default());
        let registration = sessions.register("s1".into(), facts());
        assert!(sessions.get("s1").is_some());
        drop(registration);
        assert!(sessions.get("s1").is_none(), "dropping the session forgets it");
        let _kept = sessions.register("s2".into(), facts());
        sessions.close("s2");
        assert!(sessions.get("s2").is_none(), "a DELETE forgets it at once");
    }

    #[test]
    fn a_replaced_registration_leaves_its_successor_in_place() {
        let sessions = Arc::new(LegacySessions::default());
        let first = sessions.register("s1".into(), facts());
        let second = sessions.register("s1".into(), facts());
        drop(first);
        assert!(sessions.get("s1").is_some(), "the first registration's drop removed the second's entry");
        drop(second);
        assert!(sessions.get("s1").is_none());
        drop(Registration::unregistered());
    }

    #[test]
    fn a_cancellation_reaches_only_its_own_call_and_ids_keep_their_type() {
        let sessions = Arc::new(LegacySessions::default());
        let numeric = sessions.track_call("s", &json!(7)).expect("tracked");
        let text = sessions.track_call("s", &json!("7")).expect("a string id is another request");
        let other_session = sessions.track_call("t", &json!(7)).expect("another session's id 7");
        assert!(sessions.track_call("s", &json!(7)).is_none(), "the same id twice is left to rmcp");
        sessions.cancel("s", &json!(7));
        assert!(numeric.cancelled.is_cancelled());
        assert!(!text.cancelled.is_cancelled() && !other_session.cancelled.is_cancelled());
        drop(numeric);
        assert!(sessions.track_call("s", &json!(7)).is_some(), "a finished call's id is free again");
    }

    #[test]
    fn only_issued_sessions_are_tracked_and_idle_ones_are_handed_back_once() {
        let sessions = Arc::new(LegacySessions::default());
        sessions.used("never-issued");
        sessions.issued("s");
        let _open = sessions.register("s".into(), facts());
        assert!(sessions.idle(Duration::from_secs(60)).is_empty(), "just used");
        assert_eq!(sessions.idle(Duration::ZERO), ["s"], "the unknown id was never tracked");
        assert!(sessions.get("s").is_none(), "an idle session is no longer relayed");
        assert!(sessions.idle(Duration::ZERO).is_empty(), "handed back once");
    }

    #[tokio::test]
    async fn an_answer_reaches_only_the_question_of_its_session() {
        let sessions = Arc::new(LegacySessions::default());
        let (id, mut pending) = sessions.ask("s");
        let (other_id, _other) = sessions.ask("s");
        assert_ne!(id, other_id);
        assert!(!sessions.answer("t", &json!({ "id": id, "result": {} })), "another session's answer");
        assert!(!sessions.answer("s", &json!({ "id": 99, "result": {} })), "the client's own ids go to rmcp");
        assert!(sessions.answer("s", &json!({ "id": id, "result": { "ok": true } })));
        assert_eq!((&mut pending.answer).await.expect("answered")["result"]["ok"], true);
        assert!(!sessions.answer("s", &json!({ "id": id, "result": {} })), "a question is answered once");
        drop(_other);
        assert!(!sessions.answer("s", &json!({ "id": other_id, "result": {} })), "a dropped question is gone");
    }
}
