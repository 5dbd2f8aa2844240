//! The outer layer of `/mcp` that keeps account of requests: each POST is tracked until its
//! response has been sent in full (an SSE reply included), so shutdown can wait for it; a
//! `DELETE` that ended a session is answered as clients expect. rmcp's session table with the
//! host's account of each session's use ([`HostSessions`]), and the sweep that ends the sessions
//! nobody used for `http.session_idle_secs` ([`end_idle_sessions`]). And, with `[auth]`, the
//! sweep that makes the edge forget the sessions rmcp has ended ([`forget_ended_sessions`]).

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::body::Body;
use axum::extract::{Request, State};
use axum::http::{Method, StatusCode};
use axum::middleware::Next;
use axum::response::Response;
use futures::{Stream, StreamExt};
use http_body_util::BodyExt;
use rmcp::model::{ClientJsonRpcMessage, ServerJsonRpcMessage};
use rmcp::transport::streamable_http_server::session::local::{LocalSessionManager, LocalSessionManagerError};
use rmcp::transport::streamable_http_server::session::{
    EventStore, RestoreOutcome, ServerSseMessage, SessionId, SessionManager,
};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::auth::edge::Gate;

/// Make `gate` forget, every `every` until `stop`, the sessions rmcp has ended (idle for
/// `http.session_idle_secs`, or their handler stopped), so their ids are refused and their
/// openers get their places back. A session rmcp ends is gone from its manager's table; only
/// sessions bound before the table was read are judged, so one opened meanwhile is kept.
pub(super) async fn forget_ended_sessions(
    gate: Arc<Gate>,
    manager: Arc<HostSessions>,
    every: Duration,
    stop: CancellationToken,
) {
    let mut ticks = tokio::time::interval(every);
    loop {
        tokio::select! {
            _ = ticks.tick() => {}
            () = stop.cancelled() => return,
        }
        let bound = gate.bound_sessions();
        let live: HashSet<String> = manager.local.sessions.read().await.keys().map(ToString::to_string).collect();
        for id in bound.iter().filter(|id| !live.contains(*id)) {
            tracing::debug!(session = %id, "forgetting a session rmcp ended");
            gate.end_session(id);
        }
    }
}

/// rmcp's sessions, and how each is used. rmcp's own idle timer (`keep_alive`) cannot judge
/// use: it restarts on whatever the session sends (a list change keeps a session whose client
/// went away open for good) and runs out during a long call that sends nothing (ending the
/// session under it). Here a session is in use while a request of its client is being answered,
/// and idle from when the last one was answered (or a notification, answer or GET came).
/// The account has an entry exactly for the sessions in rmcp's table: added as rmcp creates a
/// session, removed as it closes one (idle, `DELETE`, or its handler stopped).
pub(super) struct HostSessions {
    local: LocalSessionManager,
    uses: Arc<Mutex<HashMap<SessionId, SessionUse>>>,
}

struct SessionUse {
    last: Instant,
    requests: usize,
}

/// A request of a session's client, being answered: dropped with its response stream.
struct Answering {
    uses: Arc<Mutex<HashMap<SessionId, SessionUse>>>,
    id: SessionId,
}

impl Drop for Answering {
    fn drop(&mut self) {
        if let Ok(mut uses) = self.uses.lock()
            && let Some(session) = uses.get_mut(&self.id)
        {
            session.requests = session.requests.saturating_sub(1);
            session.last = Instant::now();
        }
    }
}

impl HostSessions {
    /// `local` with no idle timer of its own (see [`end_idle_sessions`]).
    pub(super) fn new(mut local: LocalSessionManager) -> Self {
        local.session_config.keep_alive = None;
        Self { local, uses: Arc::default() }
    }

    /// How many sessions are open.
    pub(super) fn open(&self) -> usize {
        self.uses.lock().map(|uses| uses.len()).unwrap_or(0)
    }

    fn used(&self, id: &SessionId) {
        if let Ok(mut uses) = self.uses.lock()
            && let Some(session) = uses.get_mut(id)
        {
            session.last = Instant::now();
        }
    }

    fn answering(&self, id: &SessionId) -> Answering {
        if let Ok(mut uses) = self.uses.lock()
            && let Some(session) = uses.get_mut(id)
        {
            session.requests += 1;
            session.last = Instant::now();
        }
        Answering { uses: self.uses.clone(), id: id.clone() }
    }

    /// The sessions with no request being answered and none for `limit`.
    fn idle(&self, limit: Duration) -> Vec<SessionId> {
        let Ok(uses) = self.uses.lock() else { return Vec::new() };
        uses.iter()
            .filter(|(_, session)| session.requests == 0 && session.last.elapsed() >= limit)
            .map(|(id, _)| id.clone())
            .collect()
    }
}

impl SessionManager for HostSessions {
    type Error = LocalSessionManagerError;
    type Transport = <LocalSessionManager as SessionManager>::Transport;

    async fn create_session(&self) -> Result<(SessionId, Self::Transport), Self::Error> {
        let (id, transport) = self.local.create_session().await?;
        if let Ok(mut uses) = self.uses.lock() {
            uses.insert(id.clone(), SessionUse { last: Instant::now(), requests: 0 });
        }
        Ok((id, transport))
    }

    async fn initialize_session(
        &self,
        id: &SessionId,
        message: ClientJsonRpcMessage,
    ) -> Result<ServerJsonRpcMessage, Self::Error> {
        let _answering = self.answering(id);
        self.local.initialize_session(id, message).await
    }

    async fn has_session(&self, id: &SessionId) -> Result<bool, Self::Error> {
        self.local.has_session(id).await
    }

    async fn close_session(&self, id: &SessionId) -> Result<(), Self::Error> {
        let closed = self.local.close_session(id).await;
        if let Ok(mut uses) = self.uses.lock() {
            uses.remove(id);
        }
        closed
    }

    async fn create_stream(
        &self,
        id: &SessionId,
        message: ClientJsonRpcMessage,
    ) -> Result<impl Stream<Item = ServerSseMessage> + Send + Sync + 'static, Self::Error> {
        let answering = self.answering(id);
        let stream = self.local.create_stream(id, message).await?;
        // In use until the answer has been sent, or the client has given up on it.
        Ok(stream.map(move |message| {
            let _ = &answering;
            message
        }))
    }

    async fn accept_message(&self, id: &SessionId, message: ClientJsonRpcMessage) -> Result<(), Self::Error> {
        self.used(id);
        self.local.accept_message(id, message).await
    }

    async fn create_standalone_stream(
        &self,
        id: &SessionId,
    ) -> Result<impl Stream<Item = ServerSseMessage> + Send + Sync + 'static, Self::Error> {
        self.used(id);
        self.local.create_standalone_stream(id).await
    }

    async fn resume(
        &self,
        id: &SessionId,
        last_event_id: String,
    ) -> Result<impl Stream<Item = ServerSseMessage> + Send + Sync + 'static, Self::Error> {
        self.used(id);
        self.local.resume(id, last_event_id).await
    }

    async fn restore_session(&self, id: SessionId) -> Result<RestoreOutcome<Self::Transport>, Self::Error> {
        let outcome = self.local.restore_session(id.clone()).await?;
        if matches!(outcome, RestoreOutcome::Restored(_))
            && let Ok(mut uses) = self.uses.lock()
        {
            uses.insert(id, SessionUse { last: Instant::now(), requests: 0 });
        }
        Ok(outcome)
    }

    fn event_store(&self) -> Option<Arc<dyn EventStore>> {
        self.local.event_store()
    }
}

/// End, every `every` until `stop`, the sessions nobody has used for `limit`.
pub(super) async fn end_idle_sessions(
    sessions: Arc<HostSessions>,
    limit: Duration,
    every: Duration,
    stop: CancellationToken,
) {
    let mut ticks = tokio::time::interval(every);
    loop {
        tokio::select! {
            _ = ticks.tick() => {}
            () = stop.cancelled() => return,
        }
        for id in sessions.idle(limit) {
            tracing::debug!(session = %id, "ending an idle session");
            let _ = sessions.close_session(&id).await;
        }
    }
}

/// Keep `guard` alive until the last byte of `response` is out (hyper drops the body then).
fn hold_until_sent(response: Response, guard: impl Send + 'static) -> Response {
    response.map(|body| {
        Body::new(body.map_frame(move |frame| {
            let _ = &guard;
            frame
        }))
    })
}

pub(super) async fn track(State(requests): State<TaskTracker>, request: Request, next: Next) -> Response {
    match *request.method() {
        Method::DELETE => end_session(request, next).await,
        Method::POST => {
            let in_flight = requests.token();
            hold_until_sent(next.run(request).await, in_flight)
        }
        _ => next.run(request).await,
    }
}

async fn end_session(request: Request, next: Next) -> Response {
    let mut response = next.run(request).await;
    // rmcp says 202; the Python SDK client takes only 200 or 204 for a session ended (and logs
    // a warning otherwise).
    if response.status() == StatusCode::ACCEPTED {
        *response.status_mut() = StatusCode::NO_CONTENT;
        *response.body_mut() = Body::empty();
    }
    response
}
