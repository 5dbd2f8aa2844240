//! Calls kept running between the MRTR rounds of a 2026-07-28 caller.
//!
//! A legacy (2025-11-25) peer asks for sampling, elicitation or roots in the middle of a call,
//! as a request to its client, and waits for the answer. A 2026-07-28 caller cannot be sent a
//! request: it is asked with an `input_required` result and answers in a new HTTP request. So
//! the forwarded call is held here, still waiting on the peer, until the caller's retry brings
//! the answer (or the hold expires, which abandons the call at the peer). A held call belongs
//! to the identity, method and entry that started it; the state that names it is sealed by
//! the session, so it cannot be forged. It lives in this process: replicas behind a load
//! balancer need the retry to reach the same one.

use std::any::Any;
use std::collections::HashMap;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use serde_json::Value;
use tokio::sync::{mpsc, oneshot};

use crate::call::CallEvent;

/// How long a held call waits for its caller's answer.
pub(crate) const HOLD_LIMIT: Duration = Duration::from_secs(120);

/// A call waiting for its caller's answer: the call itself (type-erased: its result type
/// depends on the method), its events, and where the answer goes.
pub(crate) struct Held {
    owner: String,
    target: String,
    pub running: Box<dyn Any + Send>,
    pub events: mpsc::UnboundedReceiver<CallEvent>,
    pub reply: oneshot::Sender<Result<Value, rmcp::ErrorData>>,
}

/// Why a held call cannot be resumed.
#[derive(Debug, thiserror::Error)]
pub(crate) enum ResumeError {
    #[error("the call that asked for this input is no longer waiting (it was answered, or gave up after {} s)", HOLD_LIMIT.as_secs())]
    Gone,
    #[error("this input was asked of another caller, or for another request")]
    NotYours,
}

#[derive(Default)]
pub(crate) struct HeldCalls {
    next: AtomicU64,
    calls: Mutex<HashMap<u64, Held>>,
}

impl HeldCalls {
    /// Hold a call for `owner` (an identity's key) and `target` (method and entry); the id
    /// its caller's retry names. The hold ends by itself after [`HOLD_LIMIT`].
    pub(crate) fn hold(
        self: &std::sync::Arc<Self>,
        owner: String,
        target: String,
        running: Box<dyn Any + Send>,
        events: mpsc::UnboundedReceiver<CallEvent>,
        reply: oneshot::Sender<Result<Value, rmcp::ErrorData>>,
    ) -> u64 {
        self.hold_for(HOLD_LIMIT, Held { owner, target, running, events, reply })
    }

    fn hold_for(self: &std::sync::Arc<Self>, limit: Duration, held: Held) -> u64 {
        let id = self.next.fetch_add(1, Ordering::Relaxed);
        if let Ok(mut calls) = self.calls.lock() {
            calls.insert(id, held);
        }
        let calls = self.clone();
        tokio::spawn(async move {
            tokio::time::sleep(limit).await;
            // Dropping the call abandons it at the peer.
            drop(calls.release(id));
        });
        id
    }

    /// Take the held call `id` back, if `owner` and `target` are the ones it was held for
    /// (a mismatch leaves it held).
    pub(crate) fn resume(&self, id: u64, owner: &str, target: &str) -> Result<Held, ResumeError> {
        let mut calls = self.calls.lock().map_err(|_| ResumeError::Gone)?;
        match calls.get(&id) {
            None => Err(ResumeError::Gone),
            Some(held) if held.owner != owner || held.target != target => Err(ResumeError::NotYours),
            Some(_) => calls.remove(&id).ok_or(ResumeError::Gone),
        }
    }

    /// Stop holding `id` (its caller cannot answer, or the hold expired).
    pub(crate) fn release(&self, id: u64) -> Option<Held> {
        self.calls.lock().ok().and_then(|mut calls| calls.remove(&id))
    }

    #[cfg(test)]
    fn len(&self) -> usize {
        self.calls.lock().map(|c| c.len()).unwrap_or(0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;

    fn hold(calls: &Arc<HeldCalls>, limit: Duration) -> (u64, oneshot::Receiver<Result<Value, rmcp::ErrorData>>) {
        let (_, events) = mpsc::unbounded_channel();
        let (reply, answer) = oneshot::channel();
        let held =
            Held { owner: "iss\nalice".into(), target: "tools/call\nx".into(), running: Box::new(7u32), events, reply };
        (calls.hold_for(limit, held), answer)
    }

    #[tokio::test]
    async fn only_the_owner_resumes_and_only_once() {
        let calls = Arc::new(HeldCalls::default());
        let (id, _answer) = hold(&calls, HOLD_LIMIT);
        assert!(matches!(calls.resume(id, "iss\nmallory", "tools/call\nx"), Err(ResumeError::NotYours)));
        assert!(matches!(calls.resume(id, "iss\nalice", "tools/call\ny"), Err(ResumeError::NotYours)));
        let held = calls.resume(id, "iss\nalice", "tools/call\nx").expect("the owner resumes");
        assert_eq!(held.running.downcast_ref::<u32>(), Some(&7));
        assert!(matches!(calls.resume(id, "iss\nalice", "tools/call\nx"), Err(ResumeError::Gone)));
    }

    #[tokio::test]
    async fn a_hold_expires_and_abandons_the_call() {
        let calls = Arc::new(HeldCalls::default());
        let (id, answer) = hold(&calls, Duration::from_millis(20));
        tokio::time::sleep(Duration::from_millis(200)).await;
        assert_eq!(calls.len(), 0);
        assert!(answer.await.is_err(), "the waiting peer request learns nobody will answer");
        assert!(matches!(calls.resume(id, "iss\nalice", "tools/call\nx"), Err(ResumeError::Gone)));
    }
}
