//! Stateless (2026-07-28) tool calls relayed to a 2026-07-28 peer over HTTP as JSON, without
//! decoding them into rmcp's types and encoding them again on both sides of this host.
//!
//! Why: through rmcp's server and then its client, a forwarded call cost this host as much CPU
//! as serving a call from a plugin does (measured with `cargo bench --bench http_calls`: one
//! hop kept ~50% of direct throughput). A stateless 2026-07-28 request is self-contained, so
//! the host can read it once, rewrite the tool's name and the `_meta` the peer must see, and
//! pass the peer's answer back, changing only what the normal path changes too (an MRTR
//! `requestState`, sealed to the method and entry).
//!
//! Calls of legacy (2025-11-25) sessions are not relayed: they take rmcp's session and the
//! normal path (measured with `cargo bench --bench http_calls`, relaying them won 3 to 9 points
//! of one-hop throughput, which did not pay for a second account of rmcp's sessions).
//!
//! The relay takes only requests it can judge exactly as the normal path would; anything else
//! (an MRTR retry, a browser `Origin`, missing or unusual headers, a tool whose consent policy
//! is not `allow`, a tool name that needs encoding in a header, a peer over stdio or on
//! 2025-11-25) goes the normal way, where rmcp validates it and the session decides. The
//! normal path's rules hold here: the caller's grant, the rate limit, the loop guard and hop
//! limit, the peer's time limit and the audit record.
//!
//! The same calls of a plugin's tool are not relayed but served directly (`direct`): handed to
//! the session as rmcp would hand them over, without rmcp's per-request service.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use axum::http::request::Parts;
use axum::response::Response;
use rmcp::model::{CallToolRequest, JsonRpcRequest};
use serde_json::Value;

use crate::auth::consent::Policy;
use crate::auth::gate::{Method, Permit, Use};
use crate::auth::{EntryKind, Identity};
use crate::catalog::{Owner, Route};
use crate::federation::Peer;
use crate::session::{Shared, StateBinding, Unended, call_error};
use crate::telemetry::{self, FutureExt as _};

mod answer;
mod direct;
mod eligible;
mod forward;
#[cfg(test)]
mod tests;

use answer::*;
pub(crate) use direct::DirectPeer;
pub(crate) use eligible::RelayScope;
use eligible::*;
use forward::*;

const PROTOCOL: &str = "2026-07-28";
const META_PROTOCOL: &str = "io.modelcontextprotocol/protocolVersion";
const META_CAPABILITIES: &str = "io.modelcontextprotocol/clientCapabilities";
/// The most of a peer's JSON answer the relay reads.
const MAX_ANSWER_BYTES: usize = 32 << 20;
/// The most of a peer's refusal (a non-2xx answer) quoted in the error.
const MAX_REFUSAL_BYTES: usize = 4096;

/// The relay, as the last layer in front of rmcp's `/mcp` service (after the message is parsed
/// and, with `[auth]`, the caller's token applied): it takes what is its own and leaves the rest
/// to rmcp and the session.
pub(crate) struct RelayLayer {
    shared: Arc<Shared>,
    scope: RelayScope,
    counts: Counts,
    direct: DirectPeer,
}

/// What the relay has done since the host started (reported by `/health`).
#[derive(Default)]
struct Counts {
    pub(super) relayed: AtomicU64,
    pub(super) refused: AtomicU64,
    pub(super) served_directly: AtomicU64,
}

/// A snapshot of [`RelayLayer`]'s counts.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
pub(crate) struct RelayCounts {
    /// Calls the relay took (answered by a peer or with an error of the relay's).
    pub relayed: u64,
    /// Calls the relay refused itself: outside the caller's grant or over its rate limit.
    pub refused: u64,
    /// Messages of peers' streams the relay did not pass on (see [`passes_on`]).
    pub dropped_messages: u64,
    /// Calls of plugins' tools handed to the session without rmcp's per-request service
    /// (see `direct`).
    pub served_directly: u64,
    /// Messages the session sent during a directly served call, which reached no one (the
    /// direct path takes only calls nothing is sent for: this stays 0).
    pub direct_undelivered: u64,
}

impl RelayLayer {
    /// The relay for a listener that serves `hosts` (its `Host` allow-list); `direct`, how it
    /// serves plugins' tools itself.
    pub(crate) fn new(shared: Arc<Shared>, hosts: &[String], direct: DirectPeer) -> Self {
        Self { shared, scope: RelayScope::new(hosts), counts: Counts::default(), direct }
    }

    pub(crate) fn counts(&self) -> RelayCounts {
        RelayCounts {
            relayed: self.counts.relayed.load(Ordering::Relaxed),
            refused: self.counts.refused.load(Ordering::Relaxed),
            dropped_messages: DROPPED_MESSAGES.load(Ordering::Relaxed),
            served_directly: self.counts.served_directly.load(Ordering::Relaxed),
            direct_undelivered: self.direct.undelivered(),
        }
    }

    /// Answer a call the relay can take, or give the request's parts back to leave the
    /// message to rmcp. Only from where the relay takes calls (no `Origin`, a listed `Host`).
    /// `parsed`: the message as rmcp's `tools/call` type, when it is a well-formed one.
    pub(crate) async fn pre_dispatch(
        &self,
        parts: Parts,
        message: &Value,
        parsed: Option<Box<JsonRpcRequest<CallToolRequest>>>,
    ) -> Result<Response, Parts> {
        if message.get("method").and_then(Value::as_str) != Some("tools/call") {
            return Err(parts);
        }
        let Some(call) = eligible(&self.scope, &parts, message) else { return Err(parts) };
        let Some(route) = self.shared.catalog.tool(call.name) else { return Err(parts) };
        match &route.owner {
            Owner::Peer(peer) => match try_relay(&self.shared, &parts, message, call, &route, peer, &self.counts).await
            {
                Some(response) => Ok(response),
                None => Err(parts),
            },
            Owner::Plugin(_) => match parsed {
                Some(request) if self.direct.enabled && direct::takes(&call, &route, &request) => {
                    self.counts.served_directly.fetch_add(1, Ordering::Relaxed);
                    Ok(direct::serve(&self.shared, &self.direct, parts, *request).await)
                }
                _ => Err(parts),
            },
        }
    }
}

/// Answer the request by relaying it to `peer`, which owns its tool, or `None` to leave it to
/// the normal path.
async fn try_relay(
    shared: &Arc<Shared>,
    parts: &Parts,
    message: &Value,
    call: Call<'_>,
    route: &Route,
    peer: &Arc<Peer>,
    counts: &Counts,
) -> Option<Response> {
    let relay = peer.relay()?;
    if !plain_header_value(&route.local_name) {
        return None;
    }
    // With `[auth]` the edge names every caller; one it did not is the session's to refuse.
    let identity = shared.guard.caller(Some(parts)).ok()?;
    // A question for the user is the session's to ask.
    if shared.guard.consent_policy(call.name, route.annotations.as_ref()) != Policy::Allow {
        return None;
    }
    // From here on the relay answers the call: it is traced as the session would trace it.
    let span = shared.tracing.as_ref().map(|tracing| {
        let request = telemetry::Request {
            method: "tools/call",
            target: Some(call.name),
            id: Some(&telemetry::JsonId(call.id)),
            protocol_version: Some(PROTOCOL),
        };
        tracing
            .request(&request, message.get("params").and_then(|params| params.get("_meta")).and_then(Value::as_object))
    });
    let used = Use {
        method: Method::CallTool,
        kind: EntryKind::Tool,
        entry: call.name,
        grant_name: call.name,
        annotations: route.annotations.as_ref(),
    };
    let permit = match shared.guard.admit(&identity, &used).await {
        Ok(permit) => permit,
        Err(error) => {
            tracing::debug!(tool = call.name, reason = %error.message, "the relay's gate refused a tools/call");
            counts.refused.fetch_add(1, Ordering::Relaxed);
            end_span(span.as_ref(), &error);
            return Some(error_response(&call, &error));
        }
    };
    let audit = Audit {
        shared: shared.clone(),
        binding: Arc::new(StateBinding::new("tools/call", call.name, &identity, call.arguments)),
        identity,
        permit: Arc::new(std::sync::Mutex::new(Some(permit))),
        peer: Arc::from(peer.name()),
        started: std::time::Instant::now(),
    };
    tracing::debug!(tool = call.name, peer = peer.name(), "relaying a stateless tools/call");
    counts.relayed.fetch_add(1, Ordering::Relaxed);
    // A client that gives up closes its connection: hyper drops this future, and the request
    // to the peer with it.
    let forwarding = forward(peer, &relay, &route.local_name, &call, message, &audit);
    // Ended as cancelled if the client goes away first, as the session's spans are.
    let mut unended = Unended(span.clone());
    let forwarded = match &span {
        Some(span) => forwarding.in_span(span.clone()).await,
        None => forwarding.await,
    };
    unended.0 = None;
    Some(match forwarded {
        Ok(response) => {
            if let Some(span) = &span {
                telemetry::end_request(span, telemetry::Ending::Ok);
            }
            response
        }
        Err(error) => {
            let error = call_error(error);
            audit.done(format!("error: {}", error.message));
            end_span(span.as_ref(), &error);
            error_response(&call, &error)
        }
    })
}

/// End a relayed call's span, if it is traced, with the error its caller gets.
fn end_span(span: Option<&telemetry::Span>, error: &rmcp::ErrorData) {
    if let Some(span) = span {
        telemetry::end_request(
            span,
            telemetry::Ending::Error { code: error.code.0, message: error.message.as_ref().into() },
        );
    }
}

/// The gate's permit for one relayed call, finished (audited) when its answer is known, and
/// what a state sealed for its caller is bound to.
#[derive(Clone)]
struct Audit {
    pub(super) shared: Arc<Shared>,
    pub(super) identity: Arc<Identity>,
    pub(super) binding: Arc<StateBinding>,
    pub(super) permit: Arc<std::sync::Mutex<Option<Permit>>>,
    /// The peer that serves the call, and when the call was admitted: a relayed call is timed
    /// like one the session serves.
    pub(super) peer: Arc<str>,
    pub(super) started: std::time::Instant,
}

impl Audit {
    fn done(&self, outcome: String) {
        if let Some(permit) = self.permit.lock().ok().and_then(|mut permit| permit.take()) {
            crate::metrics::served(Method::CallTool.as_str(), "peer", &self.peer, self.started.elapsed());
            permit.finish(outcome);
        }
    }
}
