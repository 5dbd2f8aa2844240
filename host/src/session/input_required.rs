//! The input-required driver: run a plugin's call, pass its events on, and when it ends with
//! "input required", get the answers in whichever way the caller's protocol does it. A
//! 2026-07-28 caller gets an MRTR `InputRequiredResult` with a sealed `requestState` and
//! retries; a legacy session's client is asked by the host, and the plugin is called again.
//! A legacy peer's question mid-call to a stateless caller holds the call (`crate::held`)
//! until the caller's retry brings the answer.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;

use rmcp::model::{
    CancelledNotificationParam, ClientCapabilities, ClientResult, CreateMessageRequest, CreateMessageRequestParams,
    ElicitRequest, ElicitRequestParams, InputRequest as McpInputRequest, InputRequests, InputRequiredResult,
    InputResponses, ListRootsRequest, LoggingLevel, ServerRequest,
};
use rmcp::service::{PeerRequestOptions, RequestContext};
use rmcp::{ErrorData as McpError, RoleServer};
use serde_json::{Value, json};

use super::{Session, StateBinding, call_error, client_support, is_stateless};
use crate::auth::Identity;
use crate::plugin::{CallContext, CallError, CallEvent, ClientSupport, InputRequest, InputRequired, Outcome};

/// How many rounds of input a legacy session drives before giving up on a plugin that keeps
/// asking.
const MAX_INPUT_ROUNDS: usize = 10;

/// The key of a held call's question (a legacy peer's mid-call request) among a request's
/// input requests.
const HELD_KEY: &str = "fedmcp.peer_request";

/// A retry whose held call is held by another process: held calls stay in the replica that
/// holds them (see `held.rs`), and a load balancer has nothing in the retry to route it by.
const HELD_ELSEWHERE: &str = "this retry answers a call held by another replica of this host (or by this host before \
     it restarted); a held call can be resumed only where it waits: send the call again without requestState";

/// A call running in a box of its own, so it can be held between MRTR rounds.
type Running<T> = Pin<Box<dyn Future<Output = Result<Outcome<T>, CallError>> + Send>>;

/// How a call's run ended for now.
enum Driven<T> {
    Done(Outcome<T>),
    /// A legacy peer asked the (stateless) caller something mid-call; the call is held as `id`.
    Held {
        id: u64,
        request: InputRequest,
    },
}

/// A request that uses an entry, as the input-required driver needs it.
pub(super) struct Request<'a> {
    pub identity: &'a Arc<Identity>,
    pub method: &'a str,
    pub target: &'a str,
    /// What the plugin's sealed state is bound to besides method, target and caller (see
    /// [`StateBinding`], built only when a state is opened or sealed).
    pub arguments: &'a Value,
    /// Whether a peer serves the entry: only then does the call carry the caller's `_meta`.
    pub forwarded: bool,
    pub input_responses: Option<InputResponses>,
    pub request_state: Option<&'a str>,
}

impl Session {
    /// The request's `_meta` as a peer should see it. A legacy session's log level is set once
    /// per session, so it is written in for peers that take it per request.
    pub(super) fn forwardable_meta(
        &self,
        cx: &RequestContext<RoleServer>,
        identity: &Identity,
    ) -> serde_json::Map<String, Value> {
        let mut meta = cx.meta.0.0.clone();
        // Who the caller is, for the tokens this host mints for its peers; a client cannot
        // set it (its own value is replaced).
        meta.insert(
            crate::federation::credentials::CALLER_KEY.to_owned(),
            crate::federation::credentials::caller_meta(identity),
        );
        if !is_stateless(cx) {
            let level = self.log_level.lock().map(|l| *l).unwrap_or(None).unwrap_or(LoggingLevel::Debug);
            if let Ok(level) = serde_json::to_value(level) {
                meta.insert("io.modelcontextprotocol/logLevel".to_owned(), level);
            }
        }
        meta
    }

    /// Run one call with its events forwarded to the caller, stopping it if the caller
    /// cancels.
    async fn run_call<T, Fut>(
        &self,
        cx: &RequestContext<RoleServer>,
        identity: &Identity,
        call: impl FnOnce(CallContext) -> Fut,
        mut call_cx: CallContext,
        target: &str,
    ) -> Result<Driven<T>, McpError>
    where
        T: Send + 'static,
        Fut: Future<Output = Result<Outcome<T>, CallError>> + Send + 'static,
    {
        // Bounded by the call's event budget (a plugin's grants, a peer's per-call budget):
        // what is past it is dropped before it is sent.
        let (events, receiver) = tokio::sync::mpsc::unbounded_channel();
        call_cx.events = Some(events);
        self.drive(cx, identity, Box::pin(call(call_cx)), receiver, target).await
    }

    /// Poll a call and pass its events on until it ends; or, when a legacy peer asks a
    /// stateless caller something mid-call, hold it (see `crate::held`) and return the
    /// question.
    async fn drive<T: Send + 'static>(
        &self,
        cx: &RequestContext<RoleServer>,
        identity: &Identity,
        mut running: Running<T>,
        mut events: tokio::sync::mpsc::UnboundedReceiver<CallEvent>,
        target: &str,
    ) -> Result<Driven<T>, McpError> {
        let mut open = true;
        loop {
            tokio::select! {
                result = &mut running => {
                    // The event channel closes when the call's sandbox is dropped, so every
                    // event the call sent reaches the caller before its result.
                    while let Some(event) = events.recv().await {
                        self.forward_event(cx, event).await;
                    }
                    return result.map(Driven::Done).map_err(call_error);
                }
                event = events.recv(), if open => match event {
                    Some(CallEvent::ClientRequest { request, reply }) if is_stateless(cx) => {
                        let id = self.shared.held.hold(identity.limit_key(), target.to_owned(), Box::new(running), events, reply);
                        return Ok(Driven::Held { id, request });
                    }
                    Some(event) => self.forward_event(cx, event).await,
                    None => open = false,
                },
                () = cx.ct.cancelled() => return Err(super::traced::was_cancelled()),
            }
        }
    }

    /// Ask the client of a legacy session for what the plugin needs; the answers keyed as
    /// the plugin keyed its requests.
    async fn fulfil(
        &self,
        cx: &RequestContext<RoleServer>,
        input: &InputRequired,
    ) -> Result<Vec<(String, Value)>, McpError> {
        let mut answers = Vec::with_capacity(input.requests.len());
        for (key, request) in &input.requests {
            answers.push((key.clone(), ask_client(cx, request).await?));
        }
        Ok(answers)
    }

    /// Drive a call that may need input, in whichever way the caller's protocol does it: its
    /// result, or an MRTR `InputRequiredResult` to return as is.
    pub(super) async fn with_input<T, Response, Fut>(
        &self,
        cx: &RequestContext<RoleServer>,
        request: Request<'_>,
        call: impl Fn(CallContext) -> Fut,
    ) -> Result<Response, McpError>
    where
        T: Send + 'static,
        Response: From<T> + From<InputRequiredResult>,
        Fut: Future<Output = Result<Outcome<T>, CallError>> + Send + 'static,
    {
        let Request { identity, method, target, arguments, forwarded, input_responses, request_state } = request;
        let binding = || StateBinding::new(method, target, identity, arguments);
        let client = client_support(cx);
        // A plugin is not shown the caller's `_meta`; building it for every call would cost
        // a copy of the map per plugin call for nothing.
        let meta = if forwarded { self.forwardable_meta(cx, identity) } else { serde_json::Map::new() };
        let held_target = format!("{method}\n{target}");
        let held = match request_state.and_then(|sealed| self.open_held(&held_target, sealed, identity)) {
            Some((instance, id)) if instance == self.shared.instance => Some(id),
            Some(_) => return Err(McpError::invalid_params(HELD_ELSEWHERE, None)),
            None => None,
        };
        let mut call_cx = CallContext {
            client,
            input_responses: input_responses.unwrap_or_default().into_iter().collect(),
            state: match (held, request_state) {
                (None, Some(sealed)) => self.open_state(&binding(), sealed)?,
                _ => None,
            },
            events: None,
            meta: meta.clone(),
        };
        let mut resume = match held {
            Some(id) => {
                let answer = call_cx.input_responses.iter().find(|(key, _)| key == HELD_KEY).map(|(_, v)| v.clone());
                let answer = answer
                    .ok_or_else(|| McpError::invalid_params(format!("inputResponses must answer {HELD_KEY}"), None))?;
                let held = self
                    .shared
                    .held
                    .resume(id, &identity.limit_key(), &held_target)
                    .map_err(|e| McpError::invalid_params(e.to_string(), None))?;
                Some((held, answer))
            }
            None => None,
        };
        for _ in 0..MAX_INPUT_ROUNDS {
            let driven = match resume.take() {
                Some((held, answer)) => {
                    let running = held.running.downcast::<Running<T>>().map_err(|_| {
                        McpError::invalid_params("this input was asked for another kind of request", None)
                    })?;
                    // The peer is still waiting for this answer.
                    let _ = held.reply.send(Ok(answer));
                    self.drive(cx, identity, *running, held.events, &held_target).await?
                }
                None => self.run_call(cx, identity, &call, call_cx, &held_target).await?,
            };
            let input = match driven {
                Driven::Done(Outcome::Complete(result)) => return Ok(result.into()),
                Driven::Done(Outcome::InputRequired(input)) => input,
                Driven::Held { id, request } => {
                    let question = InputRequired { requests: vec![(HELD_KEY.to_owned(), request)], state: None };
                    if let Some(missing) = missing_capabilities(&question, client) {
                        drop(self.shared.held.release(id));
                        return Err(McpError::missing_required_client_capability(missing));
                    }
                    let mut requests = InputRequests::new();
                    for (key, request) in &question.requests {
                        requests.insert(key.clone(), mcp_input_request(request)?);
                    }
                    let state = self.seal_held(&held_target, id, identity)?;
                    return Ok(InputRequiredResult::new(Some(requests), Some(state)).into());
                }
            };
            if let Some(missing) = missing_capabilities(&input, client) {
                return Err(McpError::missing_required_client_capability(missing));
            }
            if is_stateless(cx) {
                let mut requests = InputRequests::new();
                for (key, request) in &input.requests {
                    requests.insert(key.clone(), mcp_input_request(request)?);
                }
                let state = self.shared.seal_state(&binding(), &input.state)?;
                return Ok(InputRequiredResult::new(Some(requests), Some(state)).into());
            }
            let answers = self.fulfil(cx, &input).await?;
            call_cx =
                CallContext { client, input_responses: answers, state: input.state, events: None, meta: meta.clone() };
        }
        Err(McpError::internal_error(format!("{target} kept asking for input after {MAX_INPUT_ROUNDS} rounds"), None))
    }
}

/// The capabilities a plugin's requests need that the client did not declare.
pub(super) fn missing_capabilities(input: &InputRequired, client: ClientSupport) -> Option<ClientCapabilities> {
    let mut missing = serde_json::Map::new();
    for (_, request) in &input.requests {
        let (name, declared) = match request {
            InputRequest::Elicitation(_) => ("elicitation", client.elicitation),
            InputRequest::Sampling(_) => ("sampling", client.sampling),
            InputRequest::Roots => ("roots", client.roots),
        };
        if !declared {
            missing.insert(name.to_owned(), json!({}));
        }
    }
    if missing.is_empty() { None } else { serde_json::from_value(Value::Object(missing)).ok() }
}

pub(super) fn mcp_input_request(request: &InputRequest) -> Result<McpInputRequest, McpError> {
    let wire = match request {
        InputRequest::Elicitation(params) => {
            json!({ "method": "elicitation/create", "params": params })
        }
        InputRequest::Sampling(params) => {
            json!({ "method": "sampling/createMessage", "params": params })
        }
        InputRequest::Roots => json!({ "method": "roots/list", "params": {} }),
    };
    serde_json::from_value(wire)
        .map_err(|e| McpError::internal_error(format!("a plugin asked for input with invalid params: {e}"), None))
}

/// Send one request to the client of a legacy session; its answer. The wait ends if the
/// client cancels the request the question belongs to: a call its client gave up on must not
/// wait for ever (over WebSocket its place among the requests in flight is already free).
pub(super) async fn ask_client(cx: &RequestContext<RoleServer>, request: &InputRequest) -> Result<Value, McpError> {
    let (question, kind) = question(cx, request)?;
    let handle = cx
        .peer
        .send_cancellable_request(question, PeerRequestOptions::no_options())
        .await
        .map_err(|e| McpError::internal_error(format!("the client failed the {kind} request: {e}"), None))?;
    let mut unanswered = Unanswered(Some((handle.peer.clone(), handle.id.clone())));
    let answer = tokio::select! {
        answer = handle.await_response() => answer,
        () = cx.ct.cancelled() => return Err(super::traced::was_cancelled()),
    };
    unanswered.0 = None;
    let answer = match answer {
        Ok(ClientResult::CreateMessageResult(result)) => serde_json::to_value(result),
        Ok(ClientResult::ElicitResult(result)) => serde_json::to_value(result),
        Ok(ClientResult::ListRootsResult(result)) => serde_json::to_value(result),
        Ok(_) => {
            return Err(McpError::internal_error(
                format!("the client answered the {kind} request with another result"),
                None,
            ));
        }
        Err(e) => return Err(McpError::internal_error(format!("the client failed the {kind} request: {e}"), None)),
    };
    answer.map_err(|e| McpError::internal_error(e.to_string(), None))
}

/// The request that asks the client for `request`, and what it is called in errors. A sampling
/// request is checked as rmcp's `create_message` checks it.
fn question(
    cx: &RequestContext<RoleServer>,
    request: &InputRequest,
) -> Result<(ServerRequest, &'static str), McpError> {
    Ok(match request {
        InputRequest::Sampling(params) => {
            let params: CreateMessageRequestParams = serde_json::from_value(params.clone())
                .map_err(|e| McpError::internal_error(format!("the sampling request is invalid: {e}"), None))?;
            if (params.tools.is_some() || params.tool_choice.is_some()) && !cx.peer.supports_sampling_tools() {
                return Err(McpError::internal_error(
                    "the client failed the sampling request: tools or toolChoice provided but the client does not support sampling tools",
                    None,
                ));
            }
            params
                .validate()
                .map_err(|e| McpError::internal_error(format!("the client failed the sampling request: {e}"), None))?;
            (ServerRequest::CreateMessageRequest(CreateMessageRequest::new(params)), "sampling")
        }
        InputRequest::Elicitation(params) => {
            let params: ElicitRequestParams = serde_json::from_value(params.clone())
                .map_err(|e| McpError::internal_error(format!("the elicitation request is invalid: {e}"), None))?;
            (ServerRequest::ElicitRequest(ElicitRequest::new(params)), "elicitation")
        }
        InputRequest::Roots => (ServerRequest::ListRootsRequest(ListRootsRequest::default()), "roots"),
    })
}

/// A question sent to the client and not answered: withdrawn (`notifications/cancelled`) when
/// the wait for it ends otherwise (the call cancelled, timed out or dropped), so the client
/// can close its dialog and rmcp forgets the answer it was keeping a place for (until the
/// connection closed, one per question: a client that cancels and asks again would grow it).
struct Unanswered(Option<(rmcp::Peer<RoleServer>, rmcp::model::RequestId)>);

impl Drop for Unanswered {
    fn drop(&mut self) {
        if let Some((peer, id)) = self.0.take()
            && let Ok(runtime) = tokio::runtime::Handle::try_current()
        {
            let withdrawal =
                CancelledNotificationParam::new(Some(id), Some("the call that asked was cancelled".into()));
            runtime.spawn(async move {
                let _ = peer.notify_cancelled(withdrawal).await;
            });
        }
    }
}
