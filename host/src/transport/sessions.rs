//! The outer layer of `/mcp` that keeps account of requests: each POST is tracked until its
//! response has been sent in full (an SSE reply included), so shutdown can wait for it; each
//! request of a legacy session counts as use of that session, when it begins and when its
//! response has been sent; the session an `initialize` opened is noted; a `DELETE` that ended a
//! session forgets it. Legacy sessions nobody used for `http.session_idle_secs` are ended by
//! [`end_idle_sessions`].

use std::sync::Arc;
use std::time::Duration;

use axum::body::Body;
use axum::extract::{Request, State};
use axum::http::{Method, StatusCode};
use axum::middleware::Next;
use axum::response::Response;
use http_body_util::BodyExt;
use rmcp::transport::streamable_http_server::session::local::LocalSessionManager;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use super::SESSION_HEADER;
use crate::auth::edge::Gate;
use crate::session::Shared;

/// What the layer keeps account in.
pub(super) struct Tracking {
    pub shared: Arc<Shared>,
    pub requests: TaskTracker,
}

/// When a legacy session counts as idle, and the gate that must forget an ended session.
pub(super) struct IdleSweep {
    pub limit: Duration,
    pub gate: Option<Arc<Gate>>,
}

/// End the legacy sessions nobody used for `limit`, until `stop`. The host does this itself,
/// not rmcp: calls the relay serves never reach rmcp's session worker, whose own idle timer
/// would end a busy session.
pub(super) async fn end_idle_sessions(
    shared: Arc<Shared>,
    manager: Arc<LocalSessionManager>,
    IdleSweep { limit, gate }: IdleSweep,
    stop: CancellationToken,
) {
    use rmcp::transport::streamable_http_server::session::SessionManager;
    let mut every = tokio::time::interval(limit / 10);
    loop {
        tokio::select! {
            _ = every.tick() => {}
            () = stop.cancelled() => return,
        }
        for id in shared.legacy.idle(limit) {
            tracing::debug!(session = %id, "ending an idle session");
            // Also sessions rmcp already ended for its own reasons: the listener issued them,
            // so the sweep finds them once unused, and the gate forgets them here.
            if let Some(gate) = &gate {
                gate.end_session(&id);
            }
            let _ = manager.close_session(&id.into()).await;
        }
    }
}

/// Note a request of a legacy session, when it begins and when its response has been sent.
fn note_session_use(shared: &Arc<Shared>, request: &Request) -> Option<impl Drop + Send + 'static> {
    struct Ended(Arc<Shared>, String);
    impl Drop for Ended {
        fn drop(&mut self) {
            self.0.legacy.used(&self.1);
        }
    }
    let id = request.headers().get(SESSION_HEADER)?.to_str().ok()?.to_owned();
    shared.legacy.used(&id);
    Some(Ended(shared.clone(), id))
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

pub(super) async fn track(State(tracking): State<Arc<Tracking>>, request: Request, next: Next) -> Response {
    let shared = &tracking.shared;
    let session_use = note_session_use(shared, &request);
    let opens_a_session = session_use.is_none() && request.method() == Method::POST;
    let response = match *request.method() {
        Method::DELETE => end_session(shared, request, next).await,
        Method::POST => {
            let in_flight = tracking.requests.token();
            hold_until_sent(next.run(request).await, in_flight)
        }
        _ => next.run(request).await,
    };
    if opens_a_session && let Some(id) = response.headers().get(SESSION_HEADER).and_then(|v| v.to_str().ok()) {
        shared.legacy.issued(id);
    }
    match session_use {
        Some(session_use) => hold_until_sent(response, session_use),
        None => response,
    }
}

async fn end_session(shared: &Shared, request: Request, next: Next) -> Response {
    let session = request.headers().get(SESSION_HEADER).and_then(|v| v.to_str().ok()).map(str::to_owned);
    let mut response = next.run(request).await;
    if let Some(session) = session
        && response.status().is_success()
    {
        shared.legacy.close(&session);
        // rmcp says 202; the Python SDK client takes only 200 or 204 for a session ended
        // (and logs a warning otherwise).
        if response.status() == StatusCode::ACCEPTED {
            *response.status_mut() = StatusCode::NO_CONTENT;
            *response.body_mut() = Body::empty();
        }
    }
    response
}
