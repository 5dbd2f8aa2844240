//! The legacy (2025-11-25) sessions open on this host, with what the relay needs to serve a
//! tool call of one without rmcp's session machinery (see `crate::relay`): the protocol
//! version the session agreed, whether its client can be asked anything mid-call, and its log
//! level. And the relayed calls in flight, so that the client's `notifications/cancelled`
//! reaches them.

// Logging is deprecated by SEP-2577 (2026-07-28) but is live in 2025-11-25.
#![allow(deprecated)]

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use rmcp::model::LoggingLevel;
use serde_json::Value;
use tokio_util::sync::CancellationToken;

/// What a legacy session's client agreed to at `initialize`.
pub struct SessionFacts {
    pub protocol: String,
    /// The client declared sampling, elicitation or roots: a call may need to ask it
    /// something, which only the session (rmcp's server-to-client requests) can do.
    pub can_be_asked: bool,
    /// The level set by `logging/setLevel` (shared with the session, which sets it).
    pub log_level: Arc<Mutex<Option<LoggingLevel>>>,
}

impl SessionFacts {
    /// The level the client wants log messages from; every level until it sets one.
    pub fn log_level(&self) -> LoggingLevel {
        self.log_level.lock().ok().and_then(|level| *level).unwrap_or(LoggingLevel::Debug)
    }
}

#[derive(Default)]
pub struct LegacySessions {
    open: Mutex<HashMap<String, Arc<SessionFacts>>>,
    /// (session id, the request's id as JSON text) → how to cancel the relayed call.
    relayed: Mutex<HashMap<(String, String), CancellationToken>>,
}

impl LegacySessions {
    /// Remember an initialized session for as long as the returned registration lives.
    pub fn register(self: &Arc<Self>, id: String, facts: SessionFacts) -> Registration {
        if let Ok(mut open) = self.open.lock() {
            open.insert(id.clone(), Arc::new(facts));
        }
        Registration { sessions: self.clone(), id }
    }

    pub fn get(&self, id: &str) -> Option<Arc<SessionFacts>> {
        self.open.lock().ok()?.get(id).cloned()
    }

    /// Forget a session its client ended (`DELETE`), before rmcp drops it.
    pub fn close(&self, id: &str) {
        if let Ok(mut open) = self.open.lock() {
            open.remove(id);
        }
    }

    /// Track a relayed call until the returned guard drops; `None` when a call with the same
    /// id is already in flight in the session (the normal path judges such a request).
    pub fn track_call(self: &Arc<Self>, session: &str, request: &Value) -> Option<RelayedCall> {
        let key = (session.to_owned(), request.to_string());
        let mut relayed = self.relayed.lock().ok()?;
        if relayed.contains_key(&key) {
            return None;
        }
        let cancelled = CancellationToken::new();
        relayed.insert(key.clone(), cancelled.clone());
        Some(RelayedCall { sessions: self.clone(), key, cancelled })
    }

    /// The client cancelled request `request` of `session`: stop it if it is being relayed.
    pub fn cancel(&self, session: &str, request: &Value) {
        let key = (session.to_owned(), request.to_string());
        if let Some(cancelled) = self.relayed.lock().ok().and_then(|relayed| relayed.get(&key).cloned()) {
            cancelled.cancel();
        }
    }
}

/// A session's place in the registry; dropped with the session.
pub struct Registration {
    sessions: Arc<LegacySessions>,
    id: String,
}

impl Drop for Registration {
    fn drop(&mut self) {
        self.sessions.close(&self.id);
    }
}

/// A relayed call in flight.
pub struct RelayedCall {
    sessions: Arc<LegacySessions>,
    key: (String, String),
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
        SessionFacts { protocol: "2025-11-25".into(), can_be_asked: false, log_level: Arc::default() }
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
}
