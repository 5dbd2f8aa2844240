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
use std::time::{Duration, SystemTime};

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

use crate::auth::consent;
use crate::auth::gate::{Consent, Method, Permit, Use};
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

    /// Seal what an MRTR retry must bring back unchanged, bound to the request and its caller.
    pub fn seal_state(&self, binding: &StateBinding, state: &Option<String>) -> Result<String, McpError> {
        let options = SealOptions::new().associated_data(&binding.0).ttl(REQUEST_STATE_TTL);
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
                let uri = params.get("uri")?.as_str()?;
                // A URI the session refuses outright needs no scope to be refused.
                crate::auth::check_resource_uri(uri).ok()?;
                Some((EntryKind::Resource, self.catalog.resource_grant_name(uri)))
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
    /// The resources this session subscribed to (at most [`MAX_SUBSCRIPTIONS`]).
    subscriptions: Arc<Mutex<HashSet<String>>>,
    /// A legacy HTTP session's entry among `Shared::legacy`, dropped with the session.
    registration: Arc<Mutex<Option<Registration>>>,
    /// The caller of the session's latest request: its stream of notifications delivers
    /// nothing once that caller's token has expired (until a request with a fresh one comes),
    /// and a resource's updates only while that caller's grant covers it.
    latest: Arc<Mutex<Option<Arc<Identity>>>>,
}

/// How many resources one session may subscribe to.
pub const MAX_SUBSCRIPTIONS: usize = 1024;

/// The caller of a request that came over HTTP (`parts`) or stdio (`None`). With `[auth]`,
/// an HTTP request without a verified identity is refused: the edge puts one on every request
/// it lets through, so a missing one is a fault, never the local user.
fn caller(parts: Option<&axum::http::request::Parts>, guard: &Guard) -> Result<Arc<Identity>, McpError> {
    match parts.map(|parts| parts.extensions.get::<Arc<Identity>>()) {
        Some(Some(identity)) => Ok(identity.clone()),
        Some(None) if guard.requires_token => Err(McpError::invalid_request(
            "this host requires a verified bearer token, and the request reached the session without one",
            None,
        )),
        _ => Ok(guard.local.clone()),
    }
}

impl Session {
    pub fn new(shared: Arc<Shared>) -> Self {
        Self {
            shared,
            log_level: Arc::default(),
            subscriptions: Arc::default(),
            registration: Arc::default(),
            latest: Arc::default(),
        }
    }

    fn catalog(&self) -> &Catalog {
        &self.shared.catalog
    }

    /// The caller, as the HTTP edge verified it, or the local user.
    fn identity(&self, cx: &RequestContext<RoleServer>) -> Result<Arc<Identity>, McpError> {
        let identity = caller(cx.extensions.get::<axum::http::request::Parts>(), &self.shared.guard)?;
        if let Ok(mut latest) = self.latest.lock() {
            *latest = Some(identity.clone());
        }
        Ok(identity)
    }

    /// Admit one use of an entry through the gate (grant, rate limit, consent policy).
    fn admit(&self, identity: &Arc<Identity>, used: Use<'_>) -> Result<Permit, McpError> {
        self.shared.guard.admit(identity, &used)
    }

    /// Ask the caller's user for consent to a tool call the policy says to ask about, or
    /// accept the answer to that question. `Ok(Some(result))`: the question, to return to a
    /// 2026-07-28 caller; `Ok(None)`: consent given, go on.
    async fn consent(
        &self,
        cx: &RequestContext<RoleServer>,
        permit: &mut Permit,
        tool: &str,
        arguments: &Value,
        request: &mut CallToolRequestParams,
    ) -> Result<Option<InputRequiredResult>, McpError> {
        let identity = permit.identity().clone();
        let binding = StateBinding::consent(tool, &identity, arguments);
        if let Some(sealed) = request.request_state.as_deref() {
            if self.shared.codec.open_json_with::<Option<String>>(sealed, &binding.0).is_ok() {
                let answer = request.input_responses.as_mut().and_then(|responses| responses.remove(CONSENT_KEY));
                request.request_state = None;
                let accepted = answer.as_ref().and_then(|a| a.get("action")).and_then(Value::as_str) == Some("accept");
                permit.consented(accepted)?;
                return Ok(None);
            }
            // A later round of a call that already began: its state was sealed for this
            // caller and these arguments (or it holds this caller's call at a peer), which
            // happened only after consent was given. Anything else is not consent.
            let call_state = StateBinding::new("tools/call", tool, &identity, arguments);
            let held = self.open_held(&format!("tools/call\n{tool}"), sealed, &identity).is_some();
            if held || self.shared.codec.open_json_with::<Option<String>>(sealed, &call_state.0).is_ok() {
                permit.consented_earlier();
                return Ok(None);
            }
            return Err(McpError::invalid_params(
                "requestState failed its integrity check (it belongs to another request, caller or arguments)",
                None,
            ));
        }
        if !client_support(cx).elicitation {
            return Err(permit.cannot_ask("it does not declare the elicitation capability"));
        }
        let question = InputRequest::Elicitation(json!({
            "mode": "form",
            "message": consent::question(tool, arguments),
            "requestedSchema": { "type": "object", "properties": {} },
        }));
        if is_stateless(cx) {
            let options = SealOptions::new().associated_data(&binding.0).ttl(REQUEST_STATE_TTL);
            let state = self
                .shared
                .codec
                .seal_json_with(&None::<String>, &options)
                .map_err(|e| McpError::internal_error(format!("cannot seal requestState: {e}"), None))?;
            let mut requests = InputRequests::new();
            requests.insert(CONSENT_KEY.to_owned(), mcp_input_request(&question)?);
            return Ok(Some(InputRequiredResult::new(Some(requests), Some(state))));
        }
        let answer = ask_client(cx, &question).await?;
        permit.consented(answer.get("action").and_then(Value::as_str) == Some("accept"))?;
        Ok(None)
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

/// What a held call's `requestState` is bound to: the request and the caller it holds a call
/// for (the held call is also checked against its owner when resumed).
fn held_binding(held_target: &str, identity: &Identity) -> Vec<u8> {
    json!(["held", held_target, identity.issuer, identity.subject, identity.actor]).to_string().into_bytes()
}

/// What a sealed `requestState` belongs to: the method, the entry, the caller (issuer and
/// subject) and a digest of the request's arguments. A state is opened only by a retry of the
/// same request from the same caller: another caller with the same grant, or the same caller
/// with other arguments, cannot replay it.
pub struct StateBinding(Vec<u8>);

impl StateBinding {
    pub fn new(method: &str, target: &str, identity: &Identity, arguments: &Value) -> Self {
        Self::tagged("state", method, target, identity, arguments)
    }

    /// The binding of the host's own consent question for a tool call.
    fn consent(tool: &str, identity: &Identity, arguments: &Value) -> Self {
        Self::tagged("consent", "tools/call", tool, identity, arguments)
    }

    fn tagged(tag: &str, method: &str, target: &str, identity: &Identity, arguments: &Value) -> Self {
        // A JSON array: no choice of names or values can make two bindings the same text.
        let parts = json!([
            tag,
            method,
            target,
            identity.issuer,
            identity.subject,
            identity.actor,
            arguments_digest(arguments)
        ]);
        Self(parts.to_string().into_bytes())
    }
}

/// SHA-256 of the arguments in a canonical form (object keys sorted at every depth), so a
/// retry that sends the same arguments in another key order still matches.
pub fn arguments_digest(arguments: &Value) -> String {
    use sha2::Digest;
    fn feed(hasher: &mut sha2::Sha256, value: &Value) {
        match value {
            Value::Object(map) => {
                let mut keys: Vec<&String> = map.keys().collect();
                keys.sort();
                hasher.update(b"{");
                for key in keys {
                    feed(hasher, &Value::String(key.clone()));
                    hasher.update(b":");
                    feed(hasher, &map[key]);
                    hasher.update(b",");
                }
                hasher.update(b"}");
            }
            Value::Array(items) => {
                hasher.update(b"[");
                for item in items {
                    feed(hasher, item);
                    hasher.update(b",");
                }
                hasher.update(b"]");
            }
            scalar => hasher.update(scalar.to_string().as_bytes()),
        }
    }
    let mut hasher = sha2::Sha256::new();
    feed(&mut hasher, arguments);
    hasher.finalize().iter().map(|byte| format!("{byte:02x}")).collect()
}

/// A request that uses an entry, as the input-required driver needs it.
struct Request<'a> {
    identity: &'a Arc<Identity>,
    method: &'a str,
    target: &'a str,
    /// What the plugin's sealed state is bound to.
    binding: StateBinding,
    input_responses: Option<rmcp::model::InputResponses>,
    request_state: Option<&'a str>,
}

impl Session {
    /// Verify and open the `requestState` of an MRTR retry.
    fn open_state(&self, binding: &StateBinding, sealed: Option<&str>) -> Result<Option<String>, McpError> {
        let Some(sealed) = sealed else {
            return Ok(None);
        };
        self.shared.codec.open_json_with::<Option<String>>(sealed, &binding.0).map_err(|e| {
            McpError::invalid_params(
                format!(
                    "requestState failed its integrity check (it belongs to another request, caller or arguments): {e}"
                ),
                None,
            )
        })
    }

    /// The request's `_meta` as a peer should see it. A legacy session's log level is set once
    /// per session, so it is written in for peers that take it per request.
    fn forwardable_meta(&self, cx: &RequestContext<RoleServer>, identity: &Identity) -> serde_json::Map<String, Value> {
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
        request: Request<'_>,
        call: impl Fn(CallContext) -> Fut,
    ) -> Result<Result<T, InputRequiredResult>, McpError>
    where
        T: Send + 'static,
        Fut: Future<Output = Result<Outcome<T>, CallError>> + Send + 'static,
    {
        let Request { identity, method, target, binding, input_responses, request_state } = request;
        let client = client_support(cx);
        let meta = self.forwardable_meta(cx, identity);
        let held_target = format!("{method}\n{target}");
        let held = request_state.and_then(|sealed| self.open_held(&held_target, sealed, identity));
        let mut call_cx = CallContext {
            client,
            input_responses: input_responses.unwrap_or_default().into_iter().collect(),
            state: if held.is_some() { None } else { self.open_state(&binding, request_state)? },
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
                    let state = self.seal_held(&held_target, id, identity)?;
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
                let state = self.shared.seal_state(&binding, &input.state)?;
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
    fn open_held(&self, held_target: &str, sealed: &str, identity: &Identity) -> Option<u64> {
        let binding = held_binding(held_target, identity);
        self.shared.codec.open_json_with::<u64>(sealed, &binding).ok()
    }

    fn seal_held(&self, held_target: &str, id: u64, identity: &Identity) -> Result<String, McpError> {
        let binding = held_binding(held_target, identity);
        let options = SealOptions::new().associated_data(&binding).ttl(HOLD_LIMIT);
        self.shared
            .codec
            .seal_json_with(&id, &options)
            .map_err(|e| McpError::internal_error(format!("cannot seal requestState: {e}"), None))
    }

    /// Pass the catalog's list changes, and updates of the resources this session subscribed
    /// to, on to a legacy session's client, while the token of its latest request is valid.
    fn forward_changes(&self, peer: rmcp::Peer<RoleServer>) {
        use tokio::sync::broadcast::error::RecvError;
        let mut changes = self.catalog().subscribe();
        let mut updates = self.catalog().subscribe_updates();
        let subscriptions = self.subscriptions.clone();
        let latest = self.latest.clone();
        let caller = move || latest.lock().ok().and_then(|latest| latest.clone());
        let expired = {
            let caller = caller.clone();
            move || caller().is_none_or(|identity| identity.expires.is_some_and(|at| SystemTime::now() >= at))
        };
        let catalog = self.shared.catalog.clone();
        let may_see = move |uri: &str| {
            caller().is_some_and(|identity| identity.allows(EntryKind::Resource, &catalog.resource_grant_name(uri)))
        };
        tokio::spawn(async move {
            loop {
                let sent = tokio::select! {
                    change = changes.recv() => match change {
                        Ok(_) if expired() => continue,
                        Ok(ListKind::Tools) => peer.notify_tool_list_changed().await,
                        Ok(ListKind::Resources) => peer.notify_resource_list_changed().await,
                        Ok(ListKind::Prompts) => peer.notify_prompt_list_changed().await,
                        Err(RecvError::Lagged(_)) => continue,
                        Err(RecvError::Closed) => break,
                    },
                    update = updates.recv() => match update {
                        Ok(_) if expired() => continue,
                        Ok(uri) => {
                            let subscribed = subscriptions.lock().map(|s| s.contains(&uri)).unwrap_or(false);
                            // Judged again now: a reload may have moved the resource, a later
                            // token may grant less.
                            if !subscribed || !may_see(&uri) {
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

/// The owner of a completion's reference and how grants name it: the same lookup decides both,
/// so the grant checked is the grant of the owner that serves it.
enum CompletionRoute {
    Prompt(crate::catalog::Route),
    Template(crate::catalog::Owner),
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
        // A client may send `initialized` more than once; the session registers, and starts
        // passing changes on, only the first time.
        let Ok(mut registration) = self.registration.lock() else { return };
        if registration.is_some() {
            tracing::debug!("a repeated notifications/initialized was ignored");
            return;
        }
        let parts = context.extensions.get::<axum::http::request::Parts>();
        // The session's changes reach its client while the token it initialized with (or of
        // its latest request since) is valid.
        if let Ok(identity) = caller(parts, &self.shared.guard)
            && let Ok(mut latest) = self.latest.lock()
        {
            *latest = Some(identity);
        }
        let session_id = parts.and_then(|parts| parts.headers.get("mcp-session-id")).and_then(|id| id.to_str().ok());
        match (session_id, context.peer.peer_info()) {
            (Some(id), Some(client)) => {
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
                *registration = Some(self.shared.legacy.register(id.to_owned(), facts));
            }
            // stdio, or a session rmcp did not name: nothing for the relay, but it is
            // initialized all the same.
            _ => *registration = Some(Registration::unregistered()),
        }
        drop(registration);
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
        let identity = self.identity(&cx)?;
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
        let identity = self.identity(&cx)?;
        let route = self.catalog().tool(&name);
        let used = Use {
            method: Method::CallTool,
            kind: EntryKind::Tool,
            entry: &name,
            grant_name: &name,
            annotations: route.as_ref().and_then(|route| route.annotations.as_ref()),
        };
        let mut permit = self.admit(&identity, used)?;
        let Some(route) = route else {
            return Err(failed(
                permit,
                McpError::invalid_params(format!("unknown tool: {name}"), Some(json!({ "name": name }))),
            ));
        };
        let arguments = Value::Object(request.arguments.take().unwrap_or_default());
        if permit.consent() == Consent::Ask
            && let Some(question) = self.consent(&cx, &mut permit, &name, &arguments, &mut request).await?
        {
            permit.finish("input required");
            return Ok(CallToolResponse::InputRequired(question));
        }
        let call = Request {
            identity: &identity,
            method: "tools/call",
            target: &name,
            binding: StateBinding::new("tools/call", &name, &identity, &arguments),
            input_responses: request.input_responses,
            request_state: request.request_state.as_deref(),
        };
        let outcome = self
            .with_input(&cx, call, |c| {
                let (route, arguments) = (route.clone(), arguments.clone());
                async move { route.owner.call_tool(&route.local_name, &arguments, c).await }
            })
            .await;
        permit.finish(outcome_of(&outcome, |r| r.is_error == Some(true)));
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
        let identity = self.identity(&cx)?;
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
        let identity = self.identity(&cx)?;
        let used = Use {
            method: Method::GetPrompt,
            kind: EntryKind::Prompt,
            entry: &name,
            grant_name: &name,
            annotations: None,
        };
        let permit = self.admit(&identity, used)?;
        let Some(route) = self.catalog().prompt(&name) else {
            return Err(failed(
                permit,
                McpError::invalid_params(format!("unknown prompt: {name}"), Some(json!({ "name": name }))),
            ));
        };
        let given = Value::Object(request.arguments.clone().unwrap_or_default());
        let mut arguments: Vec<(String, String)> = Vec::new();
        for (key, value) in request.arguments.unwrap_or_default() {
            let value = match value {
                Value::String(s) => s,
                other => other.to_string(),
            };
            arguments.push((key, value));
        }
        let call = Request {
            identity: &identity,
            method: "prompts/get",
            target: &name,
            binding: StateBinding::new("prompts/get", &name, &identity, &given),
            input_responses: request.input_responses,
            request_state: request.request_state.as_deref(),
        };
        let outcome = self
            .with_input(&cx, call, |c| {
                let (route, arguments) = (route.clone(), arguments.clone());
                async move { route.owner.get_prompt(&route.local_name, &arguments, c).await }
            })
            .await;
        permit.finish(outcome_of(&outcome, |_| false));
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
        let identity = self.identity(&cx)?;
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
        let identity = self.identity(&cx)?;
        let mut templates = self.catalog().resource_templates();
        templates.retain(|template| {
            identity.allows(EntryKind::Resource, &self.catalog().template_grant_name(&template.uri_template))
        });
        Ok(ListResourceTemplatesResult::with_all_items(templates))
    }

    async fn read_resource(
        &self,
        request: ReadResourceRequestParams,
        cx: RequestContext<RoleServer>,
    ) -> Result<ReadResourceResponse, McpError> {
        let uri = request.uri.clone();
        let identity = self.identity(&cx)?;
        checked_uri(&uri)?;
        let grant_name = self.catalog().resource_grant_name(&uri);
        let used = Use {
            method: Method::ReadResource,
            kind: EntryKind::Resource,
            entry: &uri,
            grant_name: &grant_name,
            annotations: None,
        };
        let permit = self.admit(&identity, used)?;
        let not_found = || McpError::resource_not_found("Resource not found", Some(json!({ "uri": uri })));
        let Some(owner) = self.catalog().resource_owner(&uri) else {
            return Err(failed(permit, not_found()));
        };
        let call = Request {
            identity: &identity,
            method: "resources/read",
            target: &uri,
            binding: StateBinding::new("resources/read", &uri, &identity, &Value::Null),
            input_responses: request.input_responses,
            request_state: request.request_state.as_deref(),
        };
        let outcome = self
            .with_input(&cx, call, |c| {
                let (owner, uri) = (owner.clone(), uri.clone());
                async move { owner.read_resource(&uri, c).await }
            })
            .await
            .map_err(|e| if e.code == rmcp::model::ErrorCode::RESOURCE_NOT_FOUND { not_found() } else { e });
        permit.finish(outcome_of(&outcome, |_| false));
        Ok(match outcome? {
            Ok(result) => ReadResourceResponse::Complete(result),
            Err(input) => ReadResourceResponse::InputRequired(input),
        })
    }

    async fn subscribe(&self, request: SubscribeRequestParams, cx: RequestContext<RoleServer>) -> Result<(), McpError> {
        let identity = self.identity(&cx)?;
        checked_uri(&request.uri)?;
        let grant_name = self.catalog().resource_grant_name(&request.uri);
        let used = Use {
            method: Method::Subscribe,
            kind: EntryKind::Resource,
            entry: &request.uri,
            grant_name: &grant_name,
            annotations: None,
        };
        let permit = self.admit(&identity, used)?;
        let Ok(mut subscriptions) = self.subscriptions.lock() else {
            return Err(failed(permit, McpError::internal_error("the session's subscriptions are unavailable", None)));
        };
        if subscriptions.len() >= MAX_SUBSCRIPTIONS && !subscriptions.contains(&request.uri) {
            let message = format!(
                "this session already subscribes to {MAX_SUBSCRIPTIONS} resources, the most a session may; unsubscribe \
                 from one first"
            );
            return Err(failed(
                permit,
                McpError::invalid_request(message, Some(json!({ "limit": MAX_SUBSCRIPTIONS }))),
            ));
        }
        subscriptions.insert(request.uri);
        permit.finish("ok");
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
        let identity = self.identity(&cx)?;
        let call_cx = CallContext { meta: self.forwardable_meta(&cx, &identity), ..CallContext::default() };
        let (kind, entry, grant_name, route) = match &request.r#ref {
            rmcp::model::Reference::Prompt(prompt) => {
                let route = self.catalog().prompt(&prompt.name).map(CompletionRoute::Prompt);
                (EntryKind::Prompt, prompt.name.clone(), prompt.name.clone(), route)
            }
            rmcp::model::Reference::Resource(resource) => {
                checked_uri(&resource.uri)?;
                let route = self.catalog().template_owner(&resource.uri);
                let grant_name = self.catalog().template_grant_name(&resource.uri);
                (EntryKind::Resource, resource.uri.clone(), grant_name, route.map(CompletionRoute::Template))
            }
            _ => return Err(McpError::invalid_params("unsupported completion reference", None)),
        };
        let used = Use { method: Method::Complete, kind, entry: &entry, grant_name: &grant_name, annotations: None };
        let permit = self.admit(&identity, used)?;
        let result = match route {
            Some(CompletionRoute::Prompt(route)) => {
                route.owner.complete(Ok(&route.local_name), &request, call_cx).await
            }
            Some(CompletionRoute::Template(owner)) => owner.complete(Err(&entry), &request, call_cx).await,
            None => {
                let what = if kind == EntryKind::Prompt { "prompt" } else { "resource template" };
                return Err(failed(permit, McpError::invalid_params(format!("unknown {what}: {entry}"), None)));
            }
        };
        let result = result.map_err(call_error);
        permit.finish(match &result {
            Ok(_) => "ok".to_owned(),
            Err(error) => format!("error: {}", error.message),
        });
        result
    }

    fn accepted_subscription_filter(&self, requested: &SubscriptionFilter) -> Option<SubscriptionFilter> {
        Some(requested.clone())
    }

    async fn listen(&self, subscription: SubscriptionContext) -> Result<(), McpError> {
        let identity = self.identity(subscription.request_context())?;
        // Every resource the filter names must be within the caller's grant, as for
        // `resources/subscribe`; one use of the rate limit and one audit line for the stream.
        let uris = subscription.accepted().resource_subscriptions.clone().unwrap_or_default();
        if uris.len() > MAX_SUBSCRIPTIONS {
            return Err(McpError::invalid_params(
                format!("a listen filter may name at most {MAX_SUBSCRIPTIONS} resources ({} given)", uris.len()),
                None,
            ));
        }
        let mut resources = Vec::with_capacity(uris.len());
        for uri in &uris {
            checked_uri(uri)?;
            resources.push((uri.as_str(), self.catalog().resource_grant_name(uri)));
        }
        let resources: Vec<(&str, &str)> = resources.iter().map(|(uri, grant)| (*uri, grant.as_str())).collect();
        let permit = self.shared.guard.admit_listen(&identity, &resources)?;
        let expiry = identity.expires.map(|at| {
            let left = at.duration_since(SystemTime::now()).unwrap_or_default();
            tokio::time::Instant::now() + left
        });
        let result = self.deliver(&subscription, &identity, expiry).await;
        permit.finish("ok");
        result
    }
}

impl Session {
    /// The notifications of one `subscriptions/listen` stream, until the client cancels it or
    /// the token that opened it expires.
    async fn deliver(
        &self,
        subscription: &SubscriptionContext,
        identity: &Identity,
        expiry: Option<tokio::time::Instant>,
    ) -> Result<(), McpError> {
        let mut changes = self.catalog().subscribe();
        let mut updates = self.catalog().subscribe_updates();
        let expired = async {
            match expiry {
                Some(at) => tokio::time::sleep_until(at).await,
                None => std::future::pending().await,
            }
        };
        tokio::pin!(expired);
        loop {
            tokio::select! {
                () = subscription.cancelled() => return Ok(()),
                () = &mut expired => {
                    tracing::debug!(caller = %identity.describe(), "a listen stream ended with its token");
                    return Ok(());
                }
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

/// End an admitted use that could not run, with the error its caller gets.
fn failed(permit: Permit, error: McpError) -> McpError {
    permit.finish(format!("error: {}", error.message));
    error
}

/// Refuse a resource URI a grant could misjudge (see [`crate::auth::check_resource_uri`]).
fn checked_uri(uri: &str) -> Result<(), McpError> {
    crate::auth::check_resource_uri(uri).map_err(|reason| McpError::invalid_params(reason, Some(json!({ "uri": uri }))))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::auth::Grants;

    #[test]
    fn with_auth_an_http_request_without_an_identity_is_refused_not_taken_for_the_local_user() {
        let mut guard = Guard::permissive();
        let (parts, ()) = axum::http::Request::post("/mcp").body(()).expect("a request").into_parts();
        assert_eq!(caller(Some(&parts), &guard).expect("no [auth]: the local user").subject, "local");
        assert_eq!(caller(None, &guard).expect("stdio").subject, "local");
        guard.requires_token = true;
        let refused = caller(Some(&parts), &guard).expect_err("an HTTP request the edge did not name");
        assert!(refused.message.contains("bearer token"), "{}", refused.message);
        assert_eq!(caller(None, &guard).expect("stdio is still the local user").subject, "local");
        let (mut parts, ()) = axum::http::Request::post("/mcp").body(()).expect("a request").into_parts();
        let alice = Identity {
            subject: "alice".into(),
            issuer: Some("idp".into()),
            actor: None,
            grants: Grants::everything(),
            expires: None,
        };
        parts.extensions.insert(Arc::new(alice));
        assert_eq!(caller(Some(&parts), &guard).expect("named by the edge").subject, "alice");
    }

    #[test]
    fn a_state_binding_covers_caller_and_arguments_in_any_key_order() {
        let alice = Identity::local();
        let mut bob = Identity::local();
        bob.subject = "bob".into();
        let mut other_issuer = Identity::local();
        other_issuer.issuer = Some("elsewhere".into());
        let arguments = json!({ "a": 1, "b": { "c": [1, 2], "d": "x" } });
        let reordered: Value = serde_json::from_str(r#"{ "b": { "d": "x", "c": [1, 2] }, "a": 1 }"#).expect("JSON");
        let binding =
            |identity: &Identity, arguments: &Value| StateBinding::new("tools/call", "t", identity, arguments).0;
        assert_eq!(binding(&alice, &arguments), binding(&alice, &reordered));
        assert_ne!(binding(&alice, &arguments), binding(&bob, &arguments));
        assert_ne!(binding(&alice, &arguments), binding(&other_issuer, &arguments));
        assert_ne!(binding(&alice, &arguments), binding(&alice, &json!({ "a": 2, "b": { "c": [1, 2], "d": "x" } })));
        assert_ne!(binding(&alice, &json!([1, 2])), binding(&alice, &json!([2, 1])));
        assert_ne!(
            StateBinding::new("tools/call", "t", &alice, &arguments).0,
            StateBinding::consent("t", &alice, &arguments).0
        );
    }
}
