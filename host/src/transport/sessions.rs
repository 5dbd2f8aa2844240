//! The outer layer of `/mcp` that keeps account of requests: each POST is tracked until its
//! response has been sent in full (an SSE reply included), so shutdown can wait for it; a
//! `DELETE` that ended a session is answered as clients expect. And, with `[auth]`, the sweep
//! that makes the edge forget the sessions rmcp has ended ([`forget_ended_sessions`]).

use std::collections::HashSet;
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

use crate::auth::edge::Gate;

/// Make `gate` forget, every `every` until `stop`, the sessions rmcp has ended (idle for
/// `http.session_idle_secs`, or their handler stopped), so their ids are refused and their
/// openers get their places back. A session rmcp ends is gone from its manager's table; only
/// sessions bound before the table was read are judged, so one opened meanwhile is kept.
pub(super) async fn forget_ended_sessions(
    gate: Arc<Gate>,
    manager: Arc<LocalSessionManager>,
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
        let live: HashSet<String> = manager.sessions.read().await.keys().map(ToString::to_string).collect();
        for id in bound.iter().filter(|id| !live.contains(*id)) {
            tracing::debug!(session = %id, "forgetting a session rmcp ended");
            gate.end_session(id);
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
