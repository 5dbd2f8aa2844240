//! The MCP server: lifecycle and dispatch for both protocol eras, on top of rmcp.
//!
//! A plugin that needs input ends its call with "input required". For a 2026-07-28 request
//! the host answers with an MRTR `InputRequiredResult` whose `requestState` it has sealed
//! (HMAC, bound to the method and entry); the client retries with the answers. For a
//! 2025-11-25 session the host sends the requests to the client itself (sampling,
//! elicitation, roots) and calls the plugin again with the answers. Either way the plugin
//! stays stateless.

// Logging and sampling are deprecated by SEP-2577 (2026-07-28) but are live in 2025-11-25,
// which fedmcp serves too.
#![allow(deprecated)]

use std::collections::HashSet;
use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use rmcp::model::{
    CallToolRequestParams, CallToolResponse, ClientCapabilities, CompleteRequestParams, CompleteResult,
    CreateMessageRequestParams, ElicitRequestParams, GetPromptRequestParams, GetPromptResponse, Implementation,
    InputRequest as McpInputRequest, InputRequests, InputRequiredResult, ListPromptsResult,
    ListResourceTemplatesResult, ListResourcesResult, ListToolsResult, LoggingLevel, LoggingMessageNotificationParam,
    PaginatedRequestParams, ProgressNotificationParam, ProtocolVersion, ReadResourceRequestParams,
    ReadResourceResponse, RequestStateCodec, ResourceUpdatedNotificationParam, SealOptions, ServerCapabilities,
    ServerConfig, SetLevelRequestParams, SubscribeRequestParams, SubscriptionFilter, UnsubscribeRequestParams,
};
use rmcp::service::{RequestContext, SubscriptionContext};
use rmcp::{ErrorData as McpError, RoleServer, ServerHandler};
use serde_json::{Value, json};

use crate::auth::audit::{Decision, Record};
use crate::auth::consent::{self, Policy};
use crate::auth::{EntryKind, Guard, Identity};
use crate::catalog::Catalog;
use crate::federation::Federation;
use crate::held::{HOLD_LIMIT, HeldCalls};
use crate::legacy_sessions::{LegacySessions, Registration, SessionFacts};
use crate::plugin::{CallContext, CallError, CallEvent, ClientSupport, InputRequest, InputRequired, ListKind, Outcome};

/// How many rounds of input a legacy session drives before giving up on a plugin that keeps
/// asking.
const MAX_INPUT_ROUNDS: usize = 10;

/// The key of the consent question among a request's input requests.
const CONSENT_KEY: &str = "fedmcp.consent";

/// The key of a held call's question (a legacy peer's mid-call request) among a request's
/// input requests.
const HELD_KEY: &str = "fedmcp.peer_request";

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

/// How long a sealed `requestState` stays valid.
const REQUEST_STATE_TTL: Duration = Duration::from_secs(15 * 60);

/// State shared by every session of the host.
pub struct Shared {
    pub catalog: Arc<Catalog>,
    pub federation: Arc<Federation>,
    codec: RequestStateCodec,
    instructions: Option<String>,
    pub guard: Guard,
    /// Forwarded calls waiting for a 2026-07-28 caller's answer to their peer's question.
    held: Arc<HeldCalls>,
    /// The legacy sessions open on the HTTP listener, for the relay.
    pub legacy: Arc<LegacySessions>,
}

impl Shared {
    /// `state_key` signs MRTR request states; replicas behind one load balancer must share it.
    pub fn new(
        catalog: Arc<Catalog>,
        federation: Arc<Federation>,
        state_key: Vec<u8>,
        instructions: Option<String>,
        guard: Guard,
    ) -> Arc<Self> {
        let codec = RequestStateCodec::new(state_key);
        Arc::new(Self { catalog, federation, codec, instructions, guard, held: Arc::default(), legacy: Arc::default() })
    }

    /// Take one use from the caller's rate limit (a refusal is audited).
    pub fn limit(&self, identity: &Identity, method: &str, entry: &str) -> Result<(), McpError> {
        let Some(limiter) = &self.guard.limits else { return Ok(()) };
        let Err(exceeded) = limiter.check(&identity.limit_key()) else { return Ok(()) };
        let message = format!(
            "rate limit exceeded for {}: {} uses a minute; retry in {:.1} s",
            identity.describe(),
            exceeded.per_minute,
            exceeded.retry_after.as_secs_f64()
        );
        self.guard.audit.record(Record {
            identity: Some(identity),
            method,
            entry,
            decision: Decision::Denied(message.clone()),
            outcome: None,
            duration: None,
        });
        let data = json!({ "retry_after_ms": exceeded.retry_after.as_millis() as u64 });
        Err(McpError::new(rmcp::model::ErrorCode(-32029), message, Some(data)))
    }

    /// Seal what an MRTR retry must bring back unchanged, bound to the method and entry.
    pub fn seal_state(&self, method: &str, target: &str, state: &Option<String>) -> Result<String, McpError> {
        let binding = state_binding(method, target);
        let options = SealOptions::new().associated_data(&binding).ttl(REQUEST_STATE_TTL);
        self.codec
            .seal_json_with(state, &options)
            .map_err(|e| McpError::internal_error(format!("cannot seal requestState: {e}"), None))
    }

    /// The entry a JSON-RPC request uses, as grants name it (`None`: it uses none).
    pub fn entry_of(&self, message: &Value) -> Option<(EntryKind, String)> {
        let params = message.get("params")?;
        match message.get("method")?.as_str()? {
            "tools/call" => Some((EntryKind::Tool, params.get("name")?.as_str()?.to_owned())),
            "prompts/get" => Some((EntryKind::Prompt, params.get("name")?.as_str()?.to_owned())),
            "resources/read" | "resources/subscribe" => {
                Some((EntryKind::Resource, self.catalog.resource_grant_name(params.get("uri")?.as_str()?)))
            }
            _ => None,
        }
    }
}

/// One MCP server session (a legacy session, a stdio connection, or one stateless request).
#[derive(Clone)]
pub struct Session {
    shared: Arc<Shared>,
    log_level: Arc<Mutex<Option<LoggingLevel>>>,
    subscriptions: Arc<Mutex<HashSet<String>>>,
    /// A legacy HTTP session's entry among `Shared::legacy`, dropped with the session.
    registration: Arc<Mutex<Option<Registration>>>,
}

impl Session {
    pub fn new(shared: Arc<Shared>) -> Self {
        Self { shared, log_level: Arc::default(), subscriptions: Arc::default(), registration: Arc::default() }
    }

    fn catalog(&self) -> &Catalog {
        &self.shared.catalog
    }

    /// The caller, as the HTTP edge verified it, or the local user.
    fn identity(&self, cx: &RequestContext<RoleServer>) -> Arc<Identity> {
        cx.extensions
            .get::<axum::http::request::Parts>()
            .and_then(|parts| parts.extensions.get::<Arc<Identity>>().cloned())
            .unwrap_or_else(|| self.shared.guard.local.clone())
    }

    /// Record a use of an entry that was not run.
    fn audit_refusal(&self, identity: &Identity, method: &str, entry: &str, decision: Decision) {
        self.shared.guard.audit.record(Record {
            identity: Some(identity),
            method,
            entry,
            decision,
            outcome: None,
            duration: None,
        });
    }

    /// Refuse (and audit) a use of an entry outside the caller's grant.
    fn authorize(
        &self,
        identity: &Identity,
        method: &str,
        kind: EntryKind,
        entry: &str,
        grant_name: &str,
    ) -> Result<(), McpError> {
        if identity.allows(kind, grant_name) {
            return Ok(());
        }
        let message = crate::auth::edge::denied_message(identity, kind, grant_name);
        self.audit_refusal(identity, method, entry, Decision::Denied(message.clone()));
        Err(McpError::invalid_request(message, Some(json!({ "required_scope": kind.scope_for(grant_name) }))))
    }

    /// Take one use from the caller's rate limit.
    fn limit(&self, identity: &Identity, method: &str, entry: &str) -> Result<(), McpError> {
        self.shared.limit(identity, method, entry)
    }

    /// Apply the consent policy to a tool call. `Ok(None)`: go on (with `decision` to audit);
    /// `Ok(Some(result))`: the consent question, to return to a 2026-07-28 caller.
    async fn consent(
        &self,
        cx: &RequestContext<RoleServer>,
        identity: &Identity,
        tool: &str,
        annotations: Option<&rmcp::model::ToolAnnotations>,
        arguments: &Value,
        request: &mut CallToolRequestParams,
    ) -> Result<(Decision, Option<InputRequiredResult>), McpError> {
        let policy = self.shared.guard.consent.policy_for(tool, annotations);
        let refuse = |decision: Decision, message: String| {
            self.audit_refusal(identity, "tools/call", tool, decision);
            Err(McpError::invalid_request(message, Some(json!({ "tool": tool }))))
        };
        match policy {
            Policy::Allow => return Ok((Decision::Allowed, None)),
            Policy::Deny => {
                let message = format!("the host's consent policy denies {tool}");
                return refuse(Decision::Denied(message.clone()), message);
            }
            Policy::Ask => {}
        }
        let binding = format!("consent\n{tool}").into_bytes();
        if let Some(sealed) = request.request_state.as_deref() {
            if self.shared.codec.open_json_with::<Option<String>>(sealed, &binding).is_err() {
                // The plugin's own state (verified when the call runs): consent was given when
                // this call began.
                return Ok((Decision::Allowed, None));
            }
            let answer = request.input_responses.as_mut().and_then(|responses| responses.remove(CONSENT_KEY));
            request.request_state = None;
            if answer.as_ref().and_then(|a| a.get("action")).and_then(Value::as_str) == Some("accept") {
                return Ok((Decision::Asked { accepted: true }, None));
            }
            return refuse(Decision::Asked { accepted: false }, format!("the user did not allow {tool} to run"));
        }
        if !client_support(cx).elicitation {
            let message = format!(
                "{tool} runs only with the user's consent, and this client cannot be asked (it does not declare the \
                 elicitation capability)"
            );
            return refuse(Decision::Denied(message.clone()), message);
        }
        let question = InputRequest::Elicitation(json!({
            "mode": "form",
            "message": consent::question(tool, arguments),
            "requestedSchema": { "type": "object", "properties": {} },
        }));
        if is_stateless(cx) {
            let options = SealOptions::new().associated_data(&binding).ttl(REQUEST_STATE_TTL);
            let state = self
                .shared
                .codec
                .seal_json_with(&None::<String>, &options)
                .map_err(|e| McpError::internal_error(format!("cannot seal requestState: {e}"), None))?;
            let mut requests = InputRequests::new();
            requests.insert(CONSENT_KEY.to_owned(), mcp_input_request(&question)?);
            return Ok((Decision::Allowed, Some(InputRequiredResult::new(Some(requests), Some(state)))));
        }
        let answer = ask_client(cx, &question).await?;
        if answer.get("action").and_then(Value::as_str) == Some("accept") {
            Ok((Decision::Asked { accepted: true }, None))
        } else {
            refuse(Decision::Asked { accepted: false }, format!("the user did not allow {tool} to run"))
        }
    }

    fn audit_done(
        &self,
        identity: &Identity,
        method: &str,
        entry: &str,
        decision: Decision,
        outcome: String,
        started: Instant,
    ) {
        self.shared.guard.audit.record(Record {
            identity: Some(identity),
            method,
            entry,
            decision,
            outcome: Some(outcome),
            duration: Some(started.elapsed()),
        });
    }
}

fn outcome_of<T>(result: &Result<Result<T, InputRequiredResult>, McpError>, failed: impl Fn(&T) -> bool) -> String {
    match result {
        Ok(Ok(value)) if failed(value) => "tool error".into(),
        Ok(Ok(_)) => "ok".into(),
        Ok(Err(_)) => "input required".into(),
        Err(error) => format!("error: {}", error.message),
    }
}

fn is_stateless(cx: &RequestContext<RoleServer>) -> bool {
    cx.protocol_version().is_some_and(|v| v.as_str() >= ProtocolVersion::V_2026_07_28.as_str())
}

fn client_support(cx: &RequestContext<RoleServer>) -> ClientSupport {
    let caps = cx.client_capabilities().unwrap_or_default();
    ClientSupport {
        elicitation: caps.elicitation.is_some(),
        sampling: caps.sampling.is_some(),
        roots: caps.roots.is_some(),
    }
}

/// A failed call as the MCP error its caller gets.
pub(crate) fn call_error(error: CallError) -> McpError {
    match &error {
        CallError::InvalidParams(message) => McpError::invalid_params(message.clone(), None),
        CallError::NotFound(message) => McpError::resource_not_found(message.clone(), None),
        CallError::Upstream(error) => error.clone(),
        _ => {
            tracing::warn!(%error, "plugin call failed");
            McpError::internal_error(error.to_string(), None)
        }
    }
}

/// The capabilities a plugin's requests need that the client did not declare.
fn missing_capabilities(input: &InputRequired, client: ClientSupport) -> Option<ClientCapabilities> {
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

fn mcp_input_request(request: &InputRequest) -> Result<McpInputRequest, McpError> {
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

/// Send one request to the client of a legacy session; its answer.
async fn ask_client(cx: &RequestContext<RoleServer>, request: &InputRequest) -> Result<Value, McpError> {
    let answer =
        match request {
            InputRequest::Sampling(params) => {
                let params: CreateMessageRequestParams = serde_json::from_value(params.clone())
                    .map_err(|e| McpError::internal_error(format!("the sampling request is invalid: {e}"), None))?;
                let result = cx.peer.create_message(params).await.map_err(|e| {
                    McpError::internal_error(format!("the client failed the sampling request: {e}"), None)
                })?;
                serde_json::to_value(result)
            }
            InputRequest::Elicitation(params) => {
                let params: ElicitRequestParams = serde_json::from_value(params.clone())
                    .map_err(|e| McpError::internal_error(format!("the elicitation request is invalid: {e}"), None))?;
                let result = cx.peer.create_elicitation(params).await.map_err(|e| {
                    McpError::internal_error(format!("the client failed the elicitation request: {e}"), None)
                })?;
                serde_json::to_value(result)
            }
            InputRequest::Roots => {
                let result =
                    cx.peer.list_roots().await.map_err(|e| {
                        McpError::internal_error(format!("the client failed the roots request: {e}"), None)
                    })?;
                serde_json::to_value(result)
            }
        };
    answer.map_err(|e| McpError::internal_error(e.to_string(), None))
}

fn severity(level: LoggingLevel) -> u8 {
    match level {
        LoggingLevel::Debug => 0,
        LoggingLevel::Info => 1,
        LoggingLevel::Notice => 2,
        LoggingLevel::Warning => 3,
        LoggingLevel::Error => 4,
        LoggingLevel::Critical => 5,
        LoggingLevel::Alert => 6,
        LoggingLevel::Emergency => 7,
    }
}

/// Which request a sealed state belongs to, so it cannot be replayed against another.
fn state_binding(method: &str, target: &str) -> Vec<u8> {
    format!("{method}\n{target}").into_bytes()
}

impl Session {
    /// Verify and open the `requestState` of an MRTR retry.
    fn open_state(&self, method: &str, target: &str, sealed: Option<&str>) -> Result<Option<String>, McpError> {
        let Some(sealed) = sealed else {
            return Ok(None);
        };
        let binding = state_binding(method, target);
        self.shared
            .codec
            .open_json_with::<Option<String>>(sealed, &binding)
            .map_err(|e| McpError::invalid_params(format!("requestState failed its integrity check: {e}"), None))
    }

    fn seal_state(&self, method: &str, target: &str, state: &Option<String>) -> Result<String, McpError> {
        self.shared.seal_state(method, target, state)
    }

    /// The request's `_meta` as a peer should see it. A legacy session's log level is set once
    /// per session, so it is written in for peers that take it per request.
    fn forwardable_meta(&self, cx: &RequestContext<RoleServer>) -> serde_json::Map<String, Value> {
        let mut meta = cx.meta.0.0.clone();
        // Who the caller is, for the tokens this host mints for its peers; a client cannot
        // set it (its own value is replaced).
        meta.insert(crate::federation::credentials::CALLER_KEY.to_owned(), json!(self.identity(cx).subject));
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
        call: impl FnOnce(CallContext) -> Fut,
        mut call_cx: CallContext,
        target: &str,
    ) -> Result<Driven<T>, McpError>
    where
        T: Send + 'static,
        Fut: Future<Output = Result<Outcome<T>, CallError>> + Send + 'static,
    {
        let (events, receiver) = tokio::sync::mpsc::unbounded_channel();
        call_cx.events = Some(events);
        self.drive(cx, Box::pin(call(call_cx)), receiver, target).await
    }

    /// Poll a call and pass its events on until it ends; or, when a legacy peer asks a
    /// stateless caller something mid-call, hold it (see `crate::held`) and return the
    /// question.
    async fn drive<T: Send + 'static>(
        &self,
        cx: &RequestContext<RoleServer>,
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
                        let owner = self.identity(cx).limit_key();
                        let id = self.shared.held.hold(owner, target.to_owned(), Box::new(running), events, reply);
                        return Ok(Driven::Held { id, request });
                    }
                    Some(event) => self.forward_event(cx, event).await,
                    None => open = false,
                },
                () = cx.ct.cancelled() => return Err(McpError::internal_error("the request was cancelled", None)),
            }
        }
    }

    async fn forward_event(&self, cx: &RequestContext<RoleServer>, event: CallEvent) {
        match event {
            CallEvent::Log { level, logger, data } => {
                tracing::debug!(?level, logger = logger.as_deref().unwrap_or("plugin"), %data, "plugin log");
                let threshold = if is_stateless(cx) {
                    cx.meta.log_level()
                } else {
                    self.log_level.lock().map(|l| *l).unwrap_or(None).or(Some(LoggingLevel::Debug))
                };
                let Some(threshold) = threshold else { return };
                if severity(level) < severity(threshold) {
                    return;
                }
                let mut param = LoggingMessageNotificationParam::new(level, data);
                param.logger = logger;
                let _ = cx.peer.notify_logging_message(param).await;
            }
            CallEvent::Progress { progress, total, message } => {
                if let Some(token) = cx.meta.get_progress_token() {
                    let mut param = ProgressNotificationParam::new(token, progress);
                    param.total = total;
                    param.message = message;
                    let _ = cx.peer.notify_progress(param).await;
                }
            }
            CallEvent::ListChanged(kind) => self.catalog().notify(kind),
            CallEvent::ClientRequest { request, reply } => {
                let answer = if is_stateless(cx) {
                    // Only once the call has ended: the caller can no longer be asked.
                    Err(McpError::internal_error("the call ended before its question could be asked", None))
                } else {
                    ask_client(cx, &request).await
                };
                let _ = reply.send(answer);
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

    /// Drive a call that may need input, in whichever way the caller's protocol does it.
    /// `Ok(Err(result))` is an MRTR result to return as is.
    async fn with_input<T, Fut>(
        &self,
        cx: &RequestContext<RoleServer>,
        method: &str,
        target: &str,
        input_responses: Option<rmcp::model::InputResponses>,
        request_state: Option<&str>,
        call: impl Fn(CallContext) -> Fut,
    ) -> Result<Result<T, InputRequiredResult>, McpError>
    where
        T: Send + 'static,
        Fut: Future<Output = Result<Outcome<T>, CallError>> + Send + 'static,
    {
        let client = client_support(cx);
        let meta = self.forwardable_meta(cx);
        let held_target = format!("{method}\n{target}");
        let held = request_state.and_then(|sealed| self.open_held(&held_target, sealed));
        let mut call_cx = CallContext {
            client,
            input_responses: input_responses.unwrap_or_default().into_iter().collect(),
            state: if held.is_some() { None } else { self.open_state(method, target, request_state)? },
            events: None,
            meta: meta.clone(),
        };
        let mut resume = match held {
            Some(id) => {
                let answer = call_cx.input_responses.iter().find(|(key, _)| key == HELD_KEY).map(|(_, v)| v.clone());
                let answer = answer
                    .ok_or_else(|| McpError::invalid_params(format!("inputResponses must answer {HELD_KEY}"), None))?;
                let owner = self.identity(cx).limit_key();
                let held = self
                    .shared
                    .held
                    .resume(id, &owner, &held_target)
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
                    self.drive(cx, *running, held.events, &held_target).await?
                }
                None => self.run_call(cx, &call, call_cx, &held_target).await?,
            };
            let input = match driven {
                Driven::Done(Outcome::Complete(result)) => return Ok(Ok(result)),
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
                    let state = self.seal_held(&held_target, id)?;
                    return Ok(Err(InputRequiredResult::new(Some(requests), Some(state))));
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
                let state = self.seal_state(method, target, &input.state)?;
                return Ok(Err(InputRequiredResult::new(Some(requests), Some(state))));
            }
            let answers = self.fulfil(cx, &input).await?;
            call_cx =
                CallContext { client, input_responses: answers, state: input.state, events: None, meta: meta.clone() };
        }
        Err(McpError::internal_error(format!("{target} kept asking for input after {MAX_INPUT_ROUNDS} rounds"), None))
    }

    /// The held call a retry's `requestState` names, if it names one (a state sealed for a
    /// held call cannot be mistaken for an owner's state: it is sealed under another binding).
    fn open_held(&self, held_target: &str, sealed: &str) -> Option<u64> {
        let binding = format!("held\n{held_target}").into_bytes();
        self.shared.codec.open_json_with::<u64>(sealed, &binding).ok()
    }

    fn seal_held(&self, held_target: &str, id: u64) -> Result<String, McpError> {
        let binding = format!("held\n{held_target}").into_bytes();
        let options = SealOptions::new().associated_data(&binding).ttl(HOLD_LIMIT);
        self.shared
            .codec
            .seal_json_with(&id, &options)
            .map_err(|e| McpError::internal_error(format!("cannot seal requestState: {e}"), None))
    }

    /// Pass the catalog's list changes, and updates of the resources this session subscribed
    /// to, on to a legacy session's client.
    fn forward_changes(&self, peer: rmcp::Peer<RoleServer>) {
        use tokio::sync::broadcast::error::RecvError;
        let mut changes = self.catalog().subscribe();
        let mut updates = self.catalog().subscribe_updates();
        let subscriptions = self.subscriptions.clone();
        tokio::spawn(async move {
            loop {
                let sent = tokio::select! {
                    change = changes.recv() => match change {
                        Ok(ListKind::Tools) => peer.notify_tool_list_changed().await,
                        Ok(ListKind::Resources) => peer.notify_resource_list_changed().await,
                        Ok(ListKind::Prompts) => peer.notify_prompt_list_changed().await,
                        Err(RecvError::Lagged(_)) => continue,
                        Err(RecvError::Closed) => break,
                    },
                    update = updates.recv() => match update {
                        Ok(uri) => {
                            let subscribed = subscriptions.lock().map(|s| s.contains(&uri)).unwrap_or(false);
                            if !subscribed {
                                continue;
                            }
                            peer.notify_resource_updated(ResourceUpdatedNotificationParam::new(uri)).await
                        }
                        Err(RecvError::Lagged(_)) => continue,
                        Err(RecvError::Closed) => break,
                    },
                };
                if sent.is_err() {
                    break; // the session is gone
                }
            }
        });
    }
}

impl ServerHandler for Session {
    fn get_info(&self) -> ServerConfig {
        let capabilities = ServerCapabilities::builder()
            .enable_completions()
            .enable_logging()
            .enable_prompts()
            .enable_prompts_list_changed()
            .enable_resources()
            .enable_resources_list_changed()
            .enable_resources_subscribe()
            .enable_tools()
            .enable_tool_list_changed()
            .build();
        let mut info =
            ServerConfig::new(capabilities).with_server_info(Implementation::new("fedmcp", env!("CARGO_PKG_VERSION")));
        if let Some(instructions) = &self.shared.instructions {
            info = info.with_instructions(instructions.clone());
        }
        info
    }

    async fn on_initialized(&self, context: rmcp::service::NotificationContext<RoleServer>) {
        let session_id = context
            .extensions
            .get::<axum::http::request::Parts>()
            .and_then(|parts| parts.headers.get("mcp-session-id"))
            .and_then(|id| id.to_str().ok());
        if let (Some(id), Some(client)) = (session_id, context.peer.peer_info()) {
            let declared = &client.capabilities;
            let mut capabilities = serde_json::Map::new();
            for (name, is_declared) in [
                ("sampling", declared.sampling.is_some()),
                ("elicitation", declared.elicitation.is_some()),
                ("roots", declared.roots.is_some()),
            ] {
                if is_declared {
                    capabilities.insert(name.to_owned(), json!({}));
                }
            }
            let facts = SessionFacts {
                protocol: client.protocol_version.to_string(),
                capabilities,
                log_level: self.log_level.clone(),
            };
            let registration = self.shared.legacy.register(id.to_owned(), facts);
            if let Ok(mut slot) = self.registration.lock() {
                *slot = Some(registration);
            }
        }
        self.forward_changes(context.peer);
    }

    async fn set_level(&self, request: SetLevelRequestParams, _cx: RequestContext<RoleServer>) -> Result<(), McpError> {
        if let Ok(mut level) = self.log_level.lock() {
            *level = Some(request.level);
        }
        Ok(())
    }

    async fn list_tools(
        &self,
        _request: Option<PaginatedRequestParams>,
        cx: RequestContext<RoleServer>,
    ) -> Result<ListToolsResult, McpError> {
        self.shared.federation.wake().await;
        let identity = self.identity(&cx);
        let mut tools = self.catalog().tools();
        tools.retain(|tool| identity.allows(EntryKind::Tool, &tool.name));
        Ok(ListToolsResult::with_all_items(tools))
    }

    async fn call_tool(
        &self,
        mut request: CallToolRequestParams,
        cx: RequestContext<RoleServer>,
    ) -> Result<CallToolResponse, McpError> {
        let name = request.name.to_string();
        let identity = self.identity(&cx);
        self.authorize(&identity, "tools/call", EntryKind::Tool, &name, &name)?;
        self.limit(&identity, "tools/call", &name)?;
        let started = Instant::now();
        let route = self
            .catalog()
            .tool(&name)
            .ok_or_else(|| McpError::invalid_params(format!("unknown tool: {name}"), Some(json!({ "name": name }))))?;
        let arguments = Value::Object(request.arguments.take().unwrap_or_default());
        let (decision, question) =
            self.consent(&cx, &identity, &name, route.annotations.as_ref(), &arguments, &mut request).await?;
        if let Some(question) = question {
            return Ok(CallToolResponse::InputRequired(question));
        }
        let outcome = self
            .with_input(&cx, "tools/call", &name, request.input_responses, request.request_state.as_deref(), |c| {
                let (route, arguments) = (route.clone(), arguments.clone());
                async move { route.owner.call_tool(&route.local_name, &arguments, c).await }
            })
            .await;
        let outcome_text = outcome_of(&outcome, |r| r.is_error == Some(true));
        self.audit_done(&identity, "tools/call", &name, decision, outcome_text, started);
        Ok(match outcome? {
            Ok(result) => CallToolResponse::Complete(result),
            Err(input) => CallToolResponse::InputRequired(input),
        })
    }

    async fn list_prompts(
        &self,
        _request: Option<PaginatedRequestParams>,
        cx: RequestContext<RoleServer>,
    ) -> Result<ListPromptsResult, McpError> {
        self.shared.federation.wake().await;
        let identity = self.identity(&cx);
        let mut prompts = self.catalog().prompts();
        prompts.retain(|prompt| identity.allows(EntryKind::Prompt, &prompt.name));
        Ok(ListPromptsResult::with_all_items(prompts))
    }

    async fn get_prompt(
        &self,
        request: GetPromptRequestParams,
        cx: RequestContext<RoleServer>,
    ) -> Result<GetPromptResponse, McpError> {
        let name = request.name.clone();
        let identity = self.identity(&cx);
        self.authorize(&identity, "prompts/get", EntryKind::Prompt, &name, &name)?;
        self.limit(&identity, "prompts/get", &name)?;
        let started = Instant::now();
        let route = self.catalog().prompt(&name).ok_or_else(|| {
            McpError::invalid_params(format!("unknown prompt: {name}"), Some(json!({ "name": name })))
        })?;
        let mut arguments: Vec<(String, String)> = Vec::new();
        for (key, value) in request.arguments.unwrap_or_default() {
            let value = match value {
                Value::String(s) => s,
                other => other.to_string(),
            };
            arguments.push((key, value));
        }
        let outcome = self
            .with_input(&cx, "prompts/get", &name, request.input_responses, request.request_state.as_deref(), |c| {
                let (route, arguments) = (route.clone(), arguments.clone());
                async move { route.owner.get_prompt(&route.local_name, &arguments, c).await }
            })
            .await;
        self.audit_done(&identity, "prompts/get", &name, Decision::Allowed, outcome_of(&outcome, |_| false), started);
        Ok(match outcome? {
            Ok(result) => GetPromptResponse::Complete(result),
            Err(input) => GetPromptResponse::InputRequired(input),
        })
    }

    async fn list_resources(
        &self,
        _request: Option<PaginatedRequestParams>,
        cx: RequestContext<RoleServer>,
    ) -> Result<ListResourcesResult, McpError> {
        self.shared.federation.wake().await;
        let identity = self.identity(&cx);
        let mut resources = self.catalog().resources();
        resources.retain(|resource| {
            identity.allows(EntryKind::Resource, &self.catalog().resource_grant_name(&resource.uri))
        });
        Ok(ListResourcesResult::with_all_items(resources))
    }

    async fn list_resource_templates(
        &self,
        _request: Option<PaginatedRequestParams>,
        cx: RequestContext<RoleServer>,
    ) -> Result<ListResourceTemplatesResult, McpError> {
        self.shared.federation.wake().await;
        let identity = self.identity(&cx);
        let mut templates = self.catalog().resource_templates();
        templates.retain(|template| {
            identity.allows(EntryKind::Resource, &self.catalog().resource_grant_name(&template.uri_template))
        });
        Ok(ListResourceTemplatesResult::with_all_items(templates))
    }

    async fn read_resource(
        &self,
        request: ReadResourceRequestParams,
        cx: RequestContext<RoleServer>,
    ) -> Result<ReadResourceResponse, McpError> {
        let uri = request.uri.clone();
        let identity = self.identity(&cx);
        let grant_name = self.catalog().resource_grant_name(&uri);
        self.authorize(&identity, "resources/read", EntryKind::Resource, &uri, &grant_name)?;
        self.limit(&identity, "resources/read", &uri)?;
        let started = Instant::now();
        let not_found = || McpError::resource_not_found("Resource not found", Some(json!({ "uri": uri })));
        let owner = self.catalog().resource_owner(&uri).ok_or_else(not_found)?;
        let outcome = self
            .with_input(&cx, "resources/read", &uri, request.input_responses, request.request_state.as_deref(), |c| {
                let (owner, uri) = (owner.clone(), uri.clone());
                async move { owner.read_resource(&uri, c).await }
            })
            .await
            .map_err(|e| if e.code == rmcp::model::ErrorCode::RESOURCE_NOT_FOUND { not_found() } else { e });
        self.audit_done(&identity, "resources/read", &uri, Decision::Allowed, outcome_of(&outcome, |_| false), started);
        Ok(match outcome? {
            Ok(result) => ReadResourceResponse::Complete(result),
            Err(input) => ReadResourceResponse::InputRequired(input),
        })
    }

    async fn subscribe(&self, request: SubscribeRequestParams, cx: RequestContext<RoleServer>) -> Result<(), McpError> {
        let grant_name = self.catalog().resource_grant_name(&request.uri);
        self.authorize(&self.identity(&cx), "resources/subscribe", EntryKind::Resource, &request.uri, &grant_name)?;
        if let Ok(mut subscriptions) = self.subscriptions.lock() {
            subscriptions.insert(request.uri);
        }
        Ok(())
    }

    async fn unsubscribe(
        &self,
        request: UnsubscribeRequestParams,
        _cx: RequestContext<RoleServer>,
    ) -> Result<(), McpError> {
        if let Ok(mut subscriptions) = self.subscriptions.lock() {
            subscriptions.remove(&request.uri);
        }
        Ok(())
    }

    async fn complete(
        &self,
        request: CompleteRequestParams,
        cx: RequestContext<RoleServer>,
    ) -> Result<CompleteResult, McpError> {
        let call_cx = CallContext { meta: self.forwardable_meta(&cx), ..CallContext::default() };
        let identity = self.identity(&cx);
        let (kind, grant_name) = match &request.r#ref {
            rmcp::model::Reference::Prompt(prompt) => (EntryKind::Prompt, prompt.name.clone()),
            rmcp::model::Reference::Resource(resource) => {
                (EntryKind::Resource, self.catalog().resource_grant_name(&resource.uri))
            }
            _ => return Err(McpError::invalid_params("unsupported completion reference", None)),
        };
        self.authorize(&identity, "completion/complete", kind, &grant_name, &grant_name)?;
        let result = match &request.r#ref {
            rmcp::model::Reference::Prompt(prompt) => {
                let route = self
                    .catalog()
                    .prompt(&prompt.name)
                    .ok_or_else(|| McpError::invalid_params(format!("unknown prompt: {}", prompt.name), None))?;
                route.owner.complete(Ok(&route.local_name), &request, call_cx).await
            }
            rmcp::model::Reference::Resource(resource) => {
                let owner = self.catalog().template_owner(&resource.uri).ok_or_else(|| {
                    McpError::invalid_params(format!("unknown resource template: {}", resource.uri), None)
                })?;
                owner.complete(Err(&resource.uri), &request, call_cx).await
            }
            _ => {
                return Err(McpError::invalid_params("unsupported completion reference", None));
            }
        };
        result.map_err(call_error)
    }

    fn accepted_subscription_filter(&self, requested: &SubscriptionFilter) -> Option<SubscriptionFilter> {
        Some(requested.clone())
    }

    async fn listen(&self, subscription: SubscriptionContext) -> Result<(), McpError> {
        // The filter may name any URI; a resource's updates go only to a listener whose grant
        // covers it, as `resources/subscribe` refuses the others.
        let identity = self.identity(subscription.request_context());
        let mut changes = self.catalog().subscribe();
        let mut updates = self.catalog().subscribe_updates();
        loop {
            tokio::select! {
                () = subscription.cancelled() => return Ok(()),
                update = updates.recv() => {
                    let uri = match update {
                        Ok(uri) => uri,
                        Err(tokio::sync::broadcast::error::RecvError::Lagged(_)) => continue,
                        Err(tokio::sync::broadcast::error::RecvError::Closed) => return Ok(()),
                    };
                    let wanted = subscription.accepted().resource_subscriptions.as_ref().is_some_and(|uris| uris.contains(&uri));
                    if !wanted || !identity.allows(EntryKind::Resource, &self.catalog().resource_grant_name(&uri)) {
                        continue;
                    }
                    let notification = rmcp::model::ServerNotification::ResourceUpdatedNotification(
                        rmcp::model::ResourceUpdatedNotification::new(ResourceUpdatedNotificationParam::new(uri)),
                    );
                    if subscription.sink().send(notification).await.is_err() {
                        return Ok(());
                    }
                }
                change = changes.recv() => {
                    let kind = match change {
                        Ok(kind) => kind,
                        Err(tokio::sync::broadcast::error::RecvError::Lagged(_)) => continue,
                        Err(tokio::sync::broadcast::error::RecvError::Closed) => return Ok(()),
                    };
                    let accepted = subscription.accepted();
                    let notification = match kind {
                        ListKind::Tools if accepted.tools_list_changed == Some(true) => {
                            rmcp::model::ServerNotification::ToolListChangedNotification(Default::default())
                        }
                        ListKind::Prompts if accepted.prompts_list_changed == Some(true) => {
                            rmcp::model::ServerNotification::PromptListChangedNotification(Default::default())
                        }
                        ListKind::Resources if accepted.resources_list_changed == Some(true) => {
                            rmcp::model::ServerNotification::ResourceListChangedNotification(Default::default())
                        }
                        _ => continue,
                    };
                    if subscription.sink().send(notification).await.is_err() {
                        return Ok(());
                    }
                }
            }
        }
    }
}
