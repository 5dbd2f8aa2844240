//! The MCP server: lifecycle and dispatch for both protocol eras, on top of rmcp.
//!
//! This module holds the session's state and the rmcp [`ServerHandler`] methods, each of which
//! only says what its request uses; the rest is in the submodules: [`serve`] (the one
//! sequence of gate, route, consent, input-required and audit every use goes through),
//! [`input_required`] (the driver), [`request_state`] (sealed MRTR state), [`ask_consent`],
//! [`events`] (what reaches a client besides its answers) and [`subscriptions`]. Who may use
//! what is decided by the gate ([`crate::auth::gate`]), never here.
//!
//! A plugin that needs input ends its call with "input required". For a 2026-07-28 request
//! the host answers with an MRTR `InputRequiredResult` whose `requestState` it has sealed
//! (HMAC, bound to the method and entry); the client retries with the answers. For a
//! 2025-11-25 session the host sends the requests to the client itself (sampling,
//! elicitation, roots) and calls the plugin again with the answers. Either way the plugin
//! stays stateless.

// Logging and sampling are deprecated by SEP-2577 (2026-07-28) but are live in 2025-11-25,
// which fedmcp serves too (here and in the submodules).
#![allow(deprecated)]

mod ask_consent;
mod completion;
mod events;
mod input_required;
mod request_state;
mod serve;
mod subscriptions;
mod tasks;
#[cfg(test)]
mod tests;
mod traced;

use std::collections::HashSet;
use std::sync::{Arc, Mutex};

use rmcp::model::{
    CallToolRequestParams, CallToolResponse, CancelTaskParams, CompleteRequestParams, CompleteResult,
    GetPromptRequestParams, GetPromptResponse, GetTaskParams, GetTaskResult, Implementation, ListPromptsResult,
    ListResourceTemplatesResult, ListResourcesResult, ListToolsResult, LoggingLevel, PaginatedRequestParams,
    ProtocolVersion, ReadResourceRequestParams, ReadResourceResponse, RequestStateCodec, ServerCapabilities,
    ServerConfig, SetLevelRequestParams, SubscribeRequestParams, SubscriptionFilter, UnsubscribeRequestParams,
    UpdateTaskParams,
};
use rmcp::service::{RequestContext, SubscriptionContext};
use rmcp::{ErrorData as McpError, RoleServer, ServerHandler};
use serde_json::{Value, json};

pub(crate) use self::request_state::StateBinding;
use self::serve::{EntryUse, Sent};
pub(crate) use self::traced::{TracedSession, Unended};
use crate::auth::gate::{Method, Use};
use crate::auth::{EntryKind, Guard, Identity};
use crate::catalog::Catalog;
use crate::federation::Federation;
use crate::held::HeldCalls;
use crate::plugin::{CallError, ClientSupport};

/// State shared by every session of the host.
pub struct Shared {
    pub catalog: Arc<Catalog>,
    pub federation: Arc<Federation>,
    codec: RequestStateCodec,
    instructions: Option<String>,
    pub guard: Guard,
    /// Forwarded calls waiting for a 2026-07-28 caller's answer to their peer's question.
    held: Arc<HeldCalls>,
    /// The MCP tasks of plugin tools, and peers' tasks passed on, each its creator's.
    tasks: Arc<crate::tasks::Tasks>,
    /// This process, among replicas and restarts (random at start): what held calls' states
    /// name as their holder.
    instance: String,
    /// The tracer of the host's requests (`[telemetry]`); `None`: nothing is traced.
    pub(crate) tracing: Option<crate::telemetry::Tracing>,
}

impl Shared {
    /// `state_key` signs MRTR request states; replicas behind one load balancer must share it.
    pub fn new(
        catalog: Arc<Catalog>,
        federation: Arc<Federation>,
        state_key: Vec<u8>,
        instructions: Option<String>,
        guard: Guard,
        task_limits: crate::tasks::TaskLimits,
    ) -> Arc<Self> {
        Self::replica(catalog, federation, state_key, instructions, guard, task_limits, None, None)
    }

    /// [`Shared::new`], with each request traced by `tracing`.
    pub fn traced(
        catalog: Arc<Catalog>,
        federation: Arc<Federation>,
        state_key: Vec<u8>,
        instructions: Option<String>,
        guard: Guard,
        task_limits: crate::tasks::TaskLimits,
        tracing: Option<crate::telemetry::Tracing>,
    ) -> Arc<Self> {
        Self::replica(catalog, federation, state_key, instructions, guard, task_limits, None, tracing)
    }

    /// [`Shared::new`] for one replica of several: `replica` tags the ids of the tasks this
    /// host creates (`[http] replica_id`), so a load balancer can send a task's `tasks/*`
    /// requests to the replica that runs it; `tracing` traces each request (`[telemetry]`).
    #[allow(clippy::too_many_arguments)]
    pub(crate) fn replica(
        catalog: Arc<Catalog>,
        federation: Arc<Federation>,
        state_key: Vec<u8>,
        instructions: Option<String>,
        guard: Guard,
        task_limits: crate::tasks::TaskLimits,
        replica: Option<String>,
        tracing: Option<crate::telemetry::Tracing>,
    ) -> Arc<Self> {
        let codec = RequestStateCodec::new(state_key);
        let tasks = Arc::new(crate::tasks::Tasks::new(task_limits).tagged(replica));
        let instance = crate::tasks::random_hex().unwrap_or_else(|_| {
            // Without an OS random source: unique enough to this process start.
            format!("{}-{:?}", std::process::id(), std::time::SystemTime::now())
        });
        Arc::new(Self {
            catalog,
            federation,
            codec,
            instructions,
            guard,
            held: Arc::default(),
            tasks,
            instance,
            tracing,
        })
    }

    /// Fail the MCP tasks still running (the host is shutting down), cancelling peers' tasks
    /// at their peers (waiting a few seconds at most); how many there were.
    pub(crate) async fn fail_open_tasks(&self) -> usize {
        let (failed, delegated) = self.tasks.fail_open("the task was stopped: the host is shutting down");
        crate::tasks::cancel_at_peers(delegated, std::time::Duration::from_secs(3)).await;
        failed
    }

    /// The entry a JSON-RPC request uses, as grants name it (`None`: it uses none).
    pub(crate) fn entry_of(&self, message: &Value) -> Option<(EntryKind, String)> {
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
pub(crate) struct Session {
    shared: Arc<Shared>,
    log_level: Arc<Mutex<Option<LoggingLevel>>>,
    /// The resources this session subscribed to (at most [`MAX_SUBSCRIPTIONS`]).
    subscriptions: Arc<Mutex<HashSet<String>>>,
    /// Whether the client has said `initialized` (and the session passes changes on).
    initialized: Arc<std::sync::atomic::AtomicBool>,
    /// The caller of the session's latest request: its stream of notifications delivers
    /// nothing once that caller's token has expired (until a request with a fresh one comes),
    /// and a resource's updates only while that caller's grant covers it.
    latest: Arc<Mutex<Option<Arc<Identity>>>>,
    /// Lists wait until every plugin of the first load has loaded or failed.
    waits_for_plugins: bool,
    /// The catalog's count of announced list changes when the session was created: one
    /// announced before the session subscribed to them is passed on all the same.
    announced_at_start: u64,
}

impl Session {
    pub(crate) fn new(shared: Arc<Shared>) -> Self {
        let announced_at_start = shared.catalog.announced();
        Self {
            shared,
            log_level: Arc::default(),
            subscriptions: Arc::default(),
            initialized: Arc::default(),
            latest: Arc::default(),
            waits_for_plugins: false,
            announced_at_start,
        }
    }

    /// The session of a stdio client. It is answered at once and told of each plugin as it
    /// loads, but its lists wait for the first load: a stdio client is the one that started
    /// the host, has no readiness probe to ask, and may list once and never look again (the
    /// Inspector CLI, scripts).
    pub(crate) fn for_stdio(shared: Arc<Shared>) -> Self {
        Self { waits_for_plugins: true, ..Self::new(shared) }
    }

    /// With `waits_for_plugins`, wait until the first load has ended.
    async fn plugins_loaded(&self) {
        if self.waits_for_plugins {
            self.catalog().loading().ready().await;
        }
    }

    /// The entry `find` looks up. While the first load runs, one not served yet may be on
    /// its way: it is looked up again at each change of the catalog until it is found or the
    /// load has ended, rather than refused as unknown at once. Nothing is waited for once the
    /// host is ready, or for an entry it serves.
    async fn after_first_load<T>(&self, find: impl Fn() -> Option<T>) -> Option<T> {
        if let Some(found) = find() {
            return Some(found);
        }
        let loading = self.catalog().loading();
        if loading.is_ready() {
            return None;
        }
        let mut changes = self.catalog().subscribe();
        loop {
            // Looked up after subscribing, so a plugin that arrives in between is not missed.
            if let Some(found) = find() {
                return Some(found);
            }
            if loading.is_ready() {
                return find();
            }
            tokio::select! {
                change = changes.recv() => {
                    if matches!(change, Err(tokio::sync::broadcast::error::RecvError::Closed)) {
                        loading.ready().await;
                    }
                }
                () = loading.ready() => {}
            }
        }
    }

    fn catalog(&self) -> &Catalog {
        &self.shared.catalog
    }

    /// The caller, as the HTTP edge verified it, or the local user (the gate's rule).
    fn identity(&self, cx: &RequestContext<RoleServer>) -> Result<Arc<Identity>, McpError> {
        let identity = self.shared.guard.caller(cx.extensions.get::<axum::http::request::Parts>())?;
        if let Ok(mut latest) = self.latest.lock() {
            *latest = Some(identity.clone());
        }
        Ok(identity)
    }
}

/// A 2026-07-28 request: its caller is answered with MRTR results, never asked mid-call.
fn is_stateless(cx: &RequestContext<RoleServer>) -> bool {
    cx.protocol_version().is_some_and(|v| v.as_str() >= ProtocolVersion::V_2026_07_28.as_str())
}

/// What the client declared it can answer (elicitation, sampling, roots).
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

/// Refuse a resource URI a grant could misjudge (see [`crate::auth::check_resource_uri`]).
fn checked_uri(uri: &str) -> Result<(), McpError> {
    crate::auth::check_resource_uri(uri).map_err(|reason| McpError::invalid_params(reason, Some(json!({ "uri": uri }))))
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
            .enable_tasks()
            .build();
        let mut info =
            ServerConfig::new(capabilities).with_server_info(Implementation::new("fedmcp", env!("CARGO_PKG_VERSION")));
        if let Some(instructions) = &self.shared.instructions {
            info = info.with_instructions(instructions.clone());
        }
        info
    }

    /// The tool rmcp checks a 2026-07-28 request's `Mcp-Param-*` headers against (SEP-2243:
    /// a header that does not match its argument, or is missing while the argument is given,
    /// is refused with HTTP 400 and `-32020` before the call reaches [`Session::call_tool`]).
    fn get_tool(&self, name: &str) -> Option<rmcp::model::Tool> {
        self.catalog().tool_with_param_headers(name)
    }

    async fn on_initialized(&self, context: rmcp::service::NotificationContext<RoleServer>) {
        // A client may send `initialized` more than once; the session starts passing changes
        // on only the first time.
        if self.initialized.swap(true, std::sync::atomic::Ordering::AcqRel) {
            tracing::debug!("a repeated notifications/initialized was ignored");
            return;
        }
        let parts = context.extensions.get::<axum::http::request::Parts>();
        // The session's changes reach its client while the token it initialized with (or of
        // its latest request since) is valid.
        if let Ok(identity) = self.shared.guard.caller(parts)
            && let Ok(mut latest) = self.latest.lock()
        {
            *latest = Some(identity);
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
        self.plugins_loaded().await;
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
        let route = self.after_first_load(|| self.catalog().tool(&name)).await;
        let dispatch = tasks::Dispatch::of(route.as_ref(), &cx, request.input_responses.is_some());
        // A peer's tool may run as a task there when the caller can follow one.
        let peer_for_tasks = match route.as_ref().map(|route| &route.owner) {
            Some(crate::catalog::Owner::Peer(peer)) if cx.client_capabilities().is_some_and(|c| c.supports_tasks()) => {
                Some(peer.clone())
            }
            _ => None,
        };
        let entry = EntryUse {
            identity: &identity,
            used: Use {
                method: Method::CallTool,
                kind: EntryKind::Tool,
                entry: &name,
                grant_name: &name,
                annotations: route.as_ref().and_then(|route| route.annotations.as_ref()),
            },
            route: route.as_ref().ok_or_else(|| {
                McpError::invalid_params(format!("unknown tool: {name}"), Some(json!({ "name": name })))
            }),
            not_found: None,
            sent: Sent {
                arguments: Value::Object(request.arguments.take().unwrap_or_default()),
                input_responses: request.input_responses,
                request_state: request.request_state,
            },
        };
        if dispatch != tasks::Dispatch::Inline {
            return self.serve_task(&cx, entry, dispatch).await;
        }
        if let Some(peer) = peer_for_tasks {
            return self.serve_peer_task(&cx, entry, peer).await;
        }
        self.serve(&cx, entry, |route, arguments, c| {
            let (route, arguments) = (route.clone(), arguments.clone());
            async move { route.owner.call_tool(&route.local_name, &arguments, c).await }
        })
        .await
    }

    async fn list_prompts(
        &self,
        _request: Option<PaginatedRequestParams>,
        cx: RequestContext<RoleServer>,
    ) -> Result<ListPromptsResult, McpError> {
        self.plugins_loaded().await;
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
        let route = self.after_first_load(|| self.catalog().prompt(&name)).await;
        let given = request.arguments.unwrap_or_default();
        // A prompt's arguments are strings; a client that sends another JSON value gets its text.
        let arguments: Vec<(String, String)> = given
            .iter()
            .map(|(key, value)| {
                let value = match value {
                    Value::String(s) => s.clone(),
                    other => other.to_string(),
                };
                (key.clone(), value)
            })
            .collect();
        let entry = EntryUse {
            identity: &identity,
            used: Use {
                method: Method::GetPrompt,
                kind: EntryKind::Prompt,
                entry: &name,
                grant_name: &name,
                annotations: None,
            },
            route: route.as_ref().ok_or_else(|| {
                McpError::invalid_params(format!("unknown prompt: {name}"), Some(json!({ "name": name })))
            }),
            not_found: None,
            sent: Sent {
                arguments: Value::Object(given),
                input_responses: request.input_responses,
                request_state: request.request_state,
            },
        };
        self.serve(&cx, entry, |route, _, c| {
            let (route, arguments) = (route.clone(), arguments.clone());
            async move { route.owner.get_prompt(&route.local_name, &arguments, c).await }
        })
        .await
    }

    async fn list_resources(
        &self,
        _request: Option<PaginatedRequestParams>,
        cx: RequestContext<RoleServer>,
    ) -> Result<ListResourcesResult, McpError> {
        self.plugins_loaded().await;
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
        self.plugins_loaded().await;
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
        let uri = request.uri;
        let identity = self.identity(&cx)?;
        checked_uri(&uri)?;
        let owner = self.after_first_load(|| self.catalog().resource_owner(&uri)).await;
        let grant_name = self.catalog().resource_grant_name(&uri);
        let not_found = McpError::resource_not_found("Resource not found", Some(json!({ "uri": uri })));
        let entry = EntryUse {
            identity: &identity,
            used: Use {
                method: Method::ReadResource,
                kind: EntryKind::Resource,
                entry: &uri,
                grant_name: &grant_name,
                annotations: None,
            },
            route: owner.as_ref().ok_or_else(|| not_found.clone()),
            not_found: Some(not_found),
            sent: Sent {
                arguments: Value::Null,
                input_responses: request.input_responses,
                request_state: request.request_state,
            },
        };
        self.serve(&cx, entry, |owner, _, c| {
            let (owner, uri) = (owner.clone(), uri.clone());
            async move { owner.read_resource(&uri, c).await }
        })
        .await
    }

    async fn subscribe(&self, request: SubscribeRequestParams, cx: RequestContext<RoleServer>) -> Result<(), McpError> {
        self.add_subscription(request, &cx).await
    }

    async fn unsubscribe(
        &self,
        request: UnsubscribeRequestParams,
        _cx: RequestContext<RoleServer>,
    ) -> Result<(), McpError> {
        self.remove_subscription(&request);
        Ok(())
    }

    async fn complete(
        &self,
        request: CompleteRequestParams,
        cx: RequestContext<RoleServer>,
    ) -> Result<CompleteResult, McpError> {
        self.plugins_loaded().await;
        self.serve_completion(request, &cx).await
    }

    async fn get_task(
        &self,
        request: GetTaskParams,
        cx: RequestContext<RoleServer>,
    ) -> Result<GetTaskResult, McpError> {
        self.get_own_task(request, &cx).await
    }

    async fn update_task(&self, request: UpdateTaskParams, cx: RequestContext<RoleServer>) -> Result<(), McpError> {
        self.update_own_task(request, &cx).await
    }

    async fn cancel_task(&self, request: CancelTaskParams, cx: RequestContext<RoleServer>) -> Result<(), McpError> {
        self.cancel_own_task(request, &cx).await
    }

    fn accepted_subscription_filter(&self, requested: &SubscriptionFilter) -> Option<SubscriptionFilter> {
        Some(requested.clone())
    }

    async fn listen(&self, subscription: SubscriptionContext) -> Result<(), McpError> {
        self.serve_listen(&subscription).await
    }
}
