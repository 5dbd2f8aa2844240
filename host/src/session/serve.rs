//! The one sequence every request that uses an entry goes through: admit it through the gate,
//! find what serves it, ask for consent if the gate's policy says to, run it through the
//! input-required driver, and write its audit line with the outcome its caller gets.
//! `tools/call`, `prompts/get` and `resources/read` differ only in what they hand
//! [`Session::serve`]; `completion/complete` and `resources/subscribe`, which run no
//! plugin call that could ask for input, are admitted by the same gate and end their uses
//! with the same [`finish`] and [`failed`].

use std::future::Future;
use std::sync::Arc;

use rmcp::model::{
    CallToolResponse, CompleteResult, ErrorCode, GetPromptResponse, InputRequiredResult, InputResponses,
    ReadResourceResponse,
};
use rmcp::service::RequestContext;
use rmcp::{ErrorData as McpError, RoleServer};
use serde_json::Value;

use super::Session;
use super::input_required::Request;
use crate::auth::Identity;
use crate::auth::gate::{Consent, Permit, Use};
use crate::catalog::{Owner, Route};
use crate::plugin::{CallContext, CallError, Outcome};

/// One request that uses an entry, as [`Session::serve`] takes it: what differs between the
/// methods.
pub(super) struct EntryUse<'a, R> {
    pub identity: &'a Arc<Identity>,
    /// The use, as the gate judges it.
    pub used: Use<'a>,
    /// What serves the entry, or the error its caller gets when nothing does (given only once
    /// the gate has admitted the use).
    pub route: Result<&'a R, McpError>,
    /// The error that replaces the owner's own "not found" (`resources/read` answers alike
    /// whether nothing serves the URI or its owner lacks it); `None` passes the owner's on.
    pub not_found: Option<McpError>,
    pub sent: Sent,
}

/// What a request sent besides the entry it names.
pub(super) struct Sent {
    /// What its sealed state is bound to besides its method and entry: a tool's or a prompt's
    /// arguments, `null` for a read.
    pub arguments: Value,
    /// An MRTR retry's answers and the state it brings back.
    pub input_responses: Option<InputResponses>,
    pub request_state: Option<String>,
}

impl Session {
    /// Serve one request that uses an entry, for the caller the handler identified: admit it
    /// through the gate, find what serves it, ask for consent if the policy says to, drive
    /// the owner's `call` (given the route and the request's arguments) through
    /// input-required, and audit the outcome. The answer is the method's own response type:
    /// a result, or an MRTR `InputRequiredResult`.
    pub(super) async fn serve<R: Served, T, Response, Fut>(
        &self,
        cx: &RequestContext<RoleServer>,
        entry: EntryUse<'_, R>,
        call: impl Fn(&R, &Value, CallContext) -> Fut,
    ) -> Result<Response, McpError>
    where
        T: Send + 'static,
        Response: From<T> + From<InputRequiredResult> + Audited,
        Fut: Future<Output = Result<Outcome<T>, CallError>> + Send + 'static,
    {
        let Admitted { permit, route, used, sent, not_found, identity } = match self.admit(cx, entry).await? {
            Ok(admitted) => admitted,
            Err(answered) => return Ok(answered),
        };
        let Sent { arguments, input_responses, request_state } = sent;
        let method = used.method.as_str();
        let request = Request {
            identity,
            method,
            target: used.entry,
            arguments: &arguments,
            forwarded: matches!(route.owner(), Owner::Peer(_)),
            input_responses,
            request_state: request_state.as_deref(),
        };
        let started = std::time::Instant::now();
        let owner = route.owner();
        let owner_kind = match owner {
            Owner::Plugin(_) => "plugin",
            Owner::Peer(_) => "peer",
        };
        let outcome = self.with_input(cx, request, |c| call(route, &arguments, c)).await;
        crate::metrics::served(used.method.as_str(), owner_kind, owner.name(), started.elapsed());
        let outcome = outcome.map_err(|error| match &not_found {
            Some(replacement) if error.code == ErrorCode::RESOURCE_NOT_FOUND => replacement.clone(),
            _ => error,
        });
        finish(permit, &outcome);
        outcome
    }

    /// The part of [`Session::serve`] before the call runs, which a call run as a task
    /// (`session/tasks.rs`) shares: admit the use through the gate, find its route, and ask
    /// for consent if the policy says to. `Err` of the inner result: the use was answered
    /// already (the consent question), and its audit line written.
    pub(super) async fn admit<'a, R, Response>(
        &self,
        cx: &RequestContext<RoleServer>,
        entry: EntryUse<'a, R>,
    ) -> Result<Result<Admitted<'a, R>, Response>, McpError>
    where
        Response: From<InputRequiredResult> + Audited,
    {
        let EntryUse { identity, used, route, not_found, mut sent } = entry;
        let mut permit = self.shared.guard.admit(identity, &used).await?;
        let route = match route {
            Ok(route) => route,
            Err(error) => return Err(failed(permit, error)),
        };
        if permit.consent() == Consent::Ask {
            // A consent error (a forged or stale answer, a client that failed the question)
            // ends the use with that error, not as abandoned: the caller did not go away.
            match self.consent(cx, &mut permit, used.entry, &mut sent).await {
                Ok(Some(question)) => {
                    let response = Response::from(question);
                    permit.finish(response.outcome());
                    return Ok(Err(response));
                }
                Ok(None) => {}
                Err(error) => return Err(failed(permit, error)),
            }
        }
        Ok(Ok(Admitted { permit, route, used, sent, not_found, identity }))
    }
}

/// A use the gate admitted, with its route: what runs its call needs.
pub(super) struct Admitted<'a, R> {
    /// Writes the use's audit line when it ends.
    pub permit: Permit,
    pub route: &'a R,
    pub used: Use<'a>,
    pub sent: Sent,
    pub not_found: Option<McpError>,
    pub identity: &'a Arc<Identity>,
}

/// What serves a use: a tool's or prompt's route, or a resource's owner.
pub(super) trait Served {
    fn owner(&self) -> &Owner;
}

impl Served for Route {
    fn owner(&self) -> &Owner {
        &self.owner
    }
}

impl Served for Owner {
    fn owner(&self) -> &Owner {
        self
    }
}

/// How an answer reads in the audit line of the use that gave it.
pub(super) trait Audited {
    /// `ok`, `tool error` or `input required`.
    fn outcome(&self) -> &'static str;
}

impl Audited for CallToolResponse {
    fn outcome(&self) -> &'static str {
        match self {
            Self::Complete(result) if result.is_error == Some(true) => "tool error",
            Self::InputRequired(_) => "input required",
            Self::Task(_) => "task created",
            _ => "ok",
        }
    }
}

impl Audited for GetPromptResponse {
    fn outcome(&self) -> &'static str {
        match self {
            Self::InputRequired(_) => "input required",
            _ => "ok",
        }
    }
}

impl Audited for ReadResourceResponse {
    fn outcome(&self) -> &'static str {
        match self {
            Self::InputRequired(_) => "input required",
            _ => "ok",
        }
    }
}

impl Audited for CompleteResult {
    fn outcome(&self) -> &'static str {
        "ok"
    }
}

/// End an admitted use with what its caller gets.
pub(super) fn finish<A: Audited>(permit: Permit, result: &Result<A, McpError>) {
    match result {
        Ok(answer) => permit.finish(answer.outcome()),
        Err(error) => permit.finish(format!("error: {}", error.message)),
    }
}

/// End an admitted use that could not run, with the error its caller gets.
pub(super) fn failed(permit: Permit, error: McpError) -> McpError {
    permit.finish(format!("error: {}", error.message));
    error
}
