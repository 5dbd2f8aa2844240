//! The layer that applies the caller's token to a message before any protocol layer sees it
//! (only with `[auth]`; after `message`, so the message is parsed): an `initialize` must fit
//! the caller's session limits, and a use of an entry outside the caller's grant is answered
//! `403 insufficient_scope`, so the client can step up. The decisions are the gate's
//! (`auth::edge::Gate`); this layer only finds the caller, the message and the entry.

use std::sync::Arc;

use axum::extract::{Request, State};
use axum::middleware::Next;
use axum::response::Response;
use serde_json::Value;

use super::SESSION_HEADER;
use super::message::Message;
use crate::auth::Identity;
use crate::auth::edge::Gate;
use crate::session::Shared;

/// What the layer needs: the gate, and the catalog (through `Shared`) to name an entry as
/// grants name it.
pub(super) struct Admission {
    pub gate: Arc<Gate>,
    pub shared: Arc<Shared>,
}

pub(super) async fn admit(State(admission): State<Arc<Admission>>, request: Request, next: Next) -> Response {
    let (Some(Message(message)), Some(identity)) =
        (request.extensions().get::<Message>(), request.extensions().get::<Arc<Identity>>())
    else {
        return next.run(request).await;
    };
    let gate = &admission.gate;
    // An `initialize` opens a legacy session, bound to the caller before the client learns its id.
    if !request.headers().contains_key(SESSION_HEADER)
        && message.get("method").and_then(Value::as_str) == Some("initialize")
    {
        let slot = match gate.reserve_session(identity) {
            Ok(slot) => slot,
            Err(refusal) => return Gate::session_refused(&refusal, message.get("id").unwrap_or(&Value::Null)),
        };
        let response = next.run(request).await;
        if let Some(id) = response.headers().get(SESSION_HEADER).and_then(|v| v.to_str().ok()) {
            slot.bind(id);
        }
        return response;
    }
    if let Some((kind, name)) = admission.shared.entry_of(message)
        && !identity.allows(kind, &name)
    {
        let method = message.get("method").and_then(Value::as_str).unwrap_or_default();
        return gate.out_of_scope(request.headers(), identity, method, kind, &name);
    }
    next.run(request).await
}
