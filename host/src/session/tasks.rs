//! `tools/call` run as an MCP task (SEP-2663, `io.modelcontextprotocol/tasks`), and the
//! `tasks/*` methods.
//!
//! A plugin's manifest declares which of its tools may (`[tasks] optional`) or must
//! (`required`) run as tasks. When the request declares the tasks extension, such a call is
//! admitted like any other (gate, route, consent: [`Session::admit`]), then runs in the
//! background: the caller gets a `CreateTaskResult` at once and polls `tasks/get`. A round
//! that ends "input required" parks the task with its questions (`input_required`, answered
//! by `tasks/update`), and the plugin is called again with the answers, so the plugin stays
//! stateless as ever. The use's audit line is written when the task ends. A `required` tool
//! called without the extension is refused with -32021.
//!
//! Tasks live in [`crate::tasks::Tasks`]: one identity's tasks are unknown to every other.

use std::future::Future;
use std::sync::Arc;

use rmcp::model::{
    CallToolResponse, CallToolResult, CancelTaskParams, ClientCapabilities, CreateTaskResult, GetTaskParams,
    GetTaskResult, JsonObject, TaskPayload, TaskStatus, UpdateTaskParams,
};
use rmcp::service::RequestContext;
use rmcp::{ErrorData as McpError, RoleServer};
use serde_json::{Value, json};
use tokio_util::sync::CancellationToken;

use super::input_required::{mcp_input_request, missing_capabilities};
use super::serve::{Admitted, EntryUse, Sent, failed};
use super::{Session, StateBinding, call_error, client_support};
use crate::auth::EntryKind;
use crate::auth::gate::{Method, Permit, Use};
use crate::call::ToolAnswer;
use crate::catalog::{Catalog, Route};
use crate::federation::Peer;
use crate::plugin::{CallContext, CallError, CallEvent, ClientSupport, Outcome};
use crate::tasks::{Delegated, Tasks, UnknownTask, cancel_at_peer, error_object};
use crate::telemetry::FutureExt as _;

/// How many rounds of input one task may ask for.
const MAX_TASK_ROUNDS: usize = 32;

/// How a `tools/call` of a tool is served.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Dispatch {
    /// As a plain call (its input rounds by MRTR or the legacy session).
    Inline,
    /// As a task.
    Task,
    /// Refused: the tool runs only as a task, and the request did not declare the extension.
    NeedsTasks,
}

impl Dispatch {
    /// How to serve a call of `route` (when a route serves it) from the request `cx`, which
    /// brings answers to a previous round when `answering`.
    pub(super) fn of(route: Option<&Route>, cx: &RequestContext<RoleServer>, answering: bool) -> Self {
        let Some(declared) = route.and_then(|route| route.task) else { return Self::Inline };
        let client_has_tasks = cx.client_capabilities().is_some_and(|caps| caps.supports_tasks());
        match (client_has_tasks, declared.required) {
            (false, true) => Self::NeedsTasks,
            (false, false) => Self::Inline,
            // Its first rounds gather input inline; the request with the answers starts it.
            (true, _) if declared.input_first && !answering => Self::Inline,
            (true, _) => Self::Task,
        }
    }
}

/// The error a client without the tasks extension gets for a tool that runs only as a task.
fn needs_tasks(tool: &str) -> McpError {
    let mut error = McpError::missing_required_client_capability(ClientCapabilities::builder().enable_tasks().build());
    error.message = format!("{tool} runs only as a task: declare the io.modelcontextprotocol/tasks extension").into();
    error
}

fn unknown(error: UnknownTask) -> McpError {
    McpError::invalid_params(error.to_string(), Some(json!({ "taskId": error.0 })))
}

impl Session {
    /// Serve a `tools/call` that is not [`Dispatch::Inline`]: admitted like any use, then
    /// refused, or run as a task whose `CreateTaskResult` is the answer.
    pub(super) async fn serve_task(
        &self,
        cx: &RequestContext<RoleServer>,
        entry: EntryUse<'_, Route>,
        dispatch: Dispatch,
    ) -> Result<CallToolResponse, McpError> {
        if dispatch == Dispatch::NeedsTasks {
            // Admitted (and audited) by the gate, but refused before any consent question: the
            // call could not run whatever the answer.
            let permit = self.shared.guard.admit(entry.identity, &entry.used).await?;
            return Err(failed(permit, needs_tasks(entry.used.entry)));
        }
        let Admitted { permit, route, used, sent, identity, .. } = match self.admit(cx, entry).await? {
            Ok(admitted) => admitted,
            Err(answered) => return Ok(answered),
        };
        let Sent { arguments, input_responses, request_state } = sent;
        let state = match request_state.as_deref() {
            Some(sealed) => {
                let binding = StateBinding::new(used.method.as_str(), used.entry, identity, &arguments);
                match self.open_state(&binding, sealed) {
                    Ok(state) => state,
                    Err(error) => return Err(failed(permit, error)),
                }
            }
            None => None,
        };
        let created = match self.shared.tasks.create(&identity.limit_key(), used.entry) {
            Ok(created) => created,
            Err(error) => return Err(failed(permit, McpError::invalid_request(error.to_string(), None))),
        };
        let client = client_support(cx);
        let call_cx = CallContext {
            client,
            input_responses: input_responses.unwrap_or_default().into_iter().collect(),
            state,
            events: None,
            // Only a plugin's tools run as this host's tasks (a peer's run on the peer:
            // `serve_peer_task`), and a plugin is not shown the caller's `_meta`.
            meta: serde_json::Map::new(),
        };
        let run = TaskRun {
            tasks: self.shared.tasks.clone(),
            catalog: self.shared.catalog.clone(),
            id: created.id,
            stop: created.stop,
            client,
        };
        let route = route.clone();
        tracing::debug!(task = %run.id, tool = %used.entry, "task created");
        let running = run.run(permit, call_cx, move |c| {
            let (route, arguments) = (route.clone(), arguments.clone());
            async move { route.owner.call_tool(&route.local_name, &arguments, c).await }
        });
        // The task's call stays in the trace of the request that created it.
        match crate::telemetry::current() {
            Some(span) => tokio::spawn(running.in_span(span)),
            None => tokio::spawn(running),
        };
        Ok(CallToolResponse::Task(CreateTaskResult::new(created.task)))
    }

    /// A `tools/call` of a peer's tool from a caller that declared the tasks extension: it is
    /// forwarded with the extension, and when the peer answers with a task, the caller gets
    /// it under an id of this host's, owned by the caller and counted against the task
    /// limits; its `tasks/*` requests then go on to the peer ([`Session::task_use`]).
    pub(super) async fn serve_peer_task(
        &self,
        cx: &RequestContext<RoleServer>,
        entry: EntryUse<'_, Route>,
        peer: Arc<Peer>,
    ) -> Result<CallToolResponse, McpError> {
        let tasks = self.shared.tasks.clone();
        let owner = entry.identity.limit_key();
        let caller = crate::federation::credentials::caller_meta(entry.identity);
        let tool = entry.used.entry.to_owned();
        self.serve(cx, entry, move |route: &Route, arguments: &Value, c| {
            let (peer, local_name, arguments) = (peer.clone(), route.local_name.clone(), arguments.clone());
            let (tasks, owner, caller, tool) = (tasks.clone(), owner.clone(), caller.clone(), tool.clone());
            async move {
                // A caller with no room for another task is not offered one by the peer: its
                // call runs inline there (or is refused, for a tool that runs only as a task)
                // rather than start work this host would have to refuse and cancel.
                if !tasks.has_room(&owner) {
                    return Ok(match peer.call_tool(&local_name, &arguments, c).await? {
                        Outcome::Complete(result) => Outcome::Complete(ToolAnswer::Result(result)),
                        Outcome::InputRequired(input) => Outcome::InputRequired(input),
                    });
                }
                let created = match peer.call_tool_or_task(&local_name, &arguments, c).await? {
                    Outcome::Complete(ToolAnswer::Task(created)) => created,
                    other => return Ok(other),
                };
                match tasks.delegate(&owner, &tool, peer.clone(), caller.clone(), &created.task) {
                    Ok(local) => {
                        tracing::debug!(task = %local.id, peer = peer.name(), "a peer's task passed on");
                        Ok(Outcome::Complete(ToolAnswer::Task(CreateTaskResult::new(local.task))))
                    }
                    Err(error) => {
                        // Nobody could poll it: the peer need not run it. (Only a race with
                        // the caller's other calls gets here: room was checked before.)
                        cancel_at_peer(Delegated { peer, remote_id: created.task.task_id, caller, ttl_ms: 0 });
                        let message = format!("the peer started the task and this host cancelled it: {error}");
                        Err(CallError::Upstream(McpError::invalid_request(message, None)))
                    }
                }
            }
        })
        .await
    }

    pub(super) async fn get_own_task(
        &self,
        request: GetTaskParams,
        cx: &RequestContext<RoleServer>,
    ) -> Result<GetTaskResult, McpError> {
        let id = &request.task_id;
        let tasks = &self.shared.tasks;
        self.task_use(
            cx,
            Method::GetTask,
            id,
            |tasks, owner| tasks.get(owner, id).map(GetTaskResult::new),
            async |delegated, call_cx| {
                let mut result = delegated.peer.get_task(&delegated.remote_id, &call_cx).await?;
                result.task.task.task_id.clone_from(id);
                // What this host keeps, not what the peer says it keeps; the peer's `_meta` is
                // the peer's.
                result.task.task.ttl_ms = Some(delegated.ttl_ms);
                result.meta = None;
                let status = result.task.status();
                if status.is_terminal() {
                    tasks.delegated_ended(id, status);
                }
                Ok(result)
            },
        )
        .await
    }

    pub(super) async fn update_own_task(
        &self,
        request: UpdateTaskParams,
        cx: &RequestContext<RoleServer>,
    ) -> Result<(), McpError> {
        let UpdateTaskParams { task_id, input_responses, .. } = request;
        let answers = input_responses.clone();
        self.task_use(
            cx,
            Method::UpdateTask,
            &task_id,
            |tasks, owner| tasks.update(owner, &task_id, input_responses),
            async |delegated, call_cx| delegated.peer.update_task(&delegated.remote_id, answers, &call_cx).await,
        )
        .await
    }

    pub(super) async fn cancel_own_task(
        &self,
        request: CancelTaskParams,
        cx: &RequestContext<RoleServer>,
    ) -> Result<(), McpError> {
        let id = &request.task_id;
        let tasks = &self.shared.tasks;
        self.task_use(
            cx,
            Method::CancelTask,
            id,
            |tasks, owner| tasks.cancel(owner, id),
            async |delegated, call_cx| {
                delegated.peer.cancel_task(&delegated.remote_id, &call_cx).await?;
                tasks.delegated_ended(id, TaskStatus::Cancelled);
                Ok(())
            },
        )
        .await
    }

    /// One `tasks/*` request of the caller's own task `id`: a use of the task's tool, admitted
    /// by the gate (grant, rate limit) and audited like any, then answered from this host's
    /// store (`local`) or by the peer that runs the task (`remote`). A task that is not the
    /// caller's is unknown, whoever created it.
    async fn task_use<T>(
        &self,
        cx: &RequestContext<RoleServer>,
        method: Method,
        id: &str,
        local: impl FnOnce(&Tasks, &str) -> Result<T, UnknownTask>,
        remote: impl AsyncFnOnce(Delegated, CallContext) -> Result<T, CallError>,
    ) -> Result<T, McpError> {
        let identity = self.identity(cx)?;
        let owner = identity.limit_key();
        let found = self.shared.tasks.find(&owner, id).map_err(unknown)?;
        let used =
            Use { method, kind: EntryKind::Tool, entry: &found.tool, grant_name: &found.tool, annotations: None };
        let permit = self.shared.guard.admit(&identity, &used).await?;
        let result = match found.delegated {
            None => local(&self.shared.tasks, &owner).map_err(unknown),
            Some(delegated) => {
                let remote_id = delegated.remote_id.clone();
                let call_cx = CallContext {
                    client: client_support(cx),
                    input_responses: Vec::new(),
                    state: None,
                    events: None,
                    meta: self.forwardable_meta(cx, &identity),
                };
                remote(delegated, call_cx).await.map_err(|error| in_local_terms(call_error(error), &remote_id, id))
            }
        };
        match &result {
            Ok(_) => permit.finish("ok"),
            Err(error) => permit.finish(format!("error: {}", error.message)),
        }
        result
    }
}

/// A peer's error about its task, in the terms of the id its caller knows: the peer no longer
/// knowing it reads as this host's own unknown task; another error keeps the peer's words,
/// with its `taskId` (if it names this task) replaced.
fn in_local_terms(mut error: McpError, remote_id: &str, local_id: &str) -> McpError {
    let names_it = error.data.as_ref().and_then(|data| data.get("taskId")).and_then(Value::as_str) == Some(remote_id);
    if !names_it {
        return error;
    }
    if error.code == rmcp::model::ErrorCode::INVALID_PARAMS {
        return unknown(UnknownTask(local_id.to_owned()));
    }
    if let Some(Value::Object(data)) = &mut error.data {
        data.insert("taskId".to_owned(), Value::from(local_id));
    }
    error
}

/// A task's run in the background: the plugin's rounds, until a result, an error, or a stop.
struct TaskRun {
    tasks: Arc<Tasks>,
    catalog: Arc<Catalog>,
    id: String,
    /// Cancelled by `tasks/cancel` or the TTL: the call in progress is dropped.
    stop: CancellationToken,
    client: ClientSupport,
}

/// How a task's rounds ended.
enum Ended {
    Settled(TaskPayload),
    /// The task was stopped (cancelled, expired) while a round ran or waited.
    Stopped,
}

impl TaskRun {
    async fn run<Fut>(self, permit: Permit, call_cx: CallContext, call: impl Fn(CallContext) -> Fut)
    where
        Fut: Future<Output = Result<Outcome<CallToolResult>, CallError>> + Send + 'static,
    {
        let ttl = self.tasks.limits().ttl;
        let ended = tokio::select! {
            ended = self.rounds(call_cx, &call) => ended,
            () = self.stop.cancelled() => Ended::Stopped,
            () = tokio::time::sleep(ttl) => {
                let reason = format!("the task expired: it did not finish within its TTL of {} ms", ttl.as_millis());
                Ended::Settled(TaskPayload::Failed { error: error_object(-32603, &reason) })
            }
        };
        let outcome = match ended {
            Ended::Settled(payload) => {
                let outcome = match &payload {
                    TaskPayload::Completed { result } if result.get("isError") == Some(&json!(true)) => {
                        "task completed: tool error".to_owned()
                    }
                    TaskPayload::Completed { .. } => "task completed".to_owned(),
                    TaskPayload::Failed { error } => {
                        format!("task failed: {}", error.get("message").and_then(|m| m.as_str()).unwrap_or("error"))
                    }
                    _ => "task ended".to_owned(),
                };
                if self.tasks.finish(&self.id, payload) { outcome } else { "task stopped".to_owned() }
            }
            Ended::Stopped => "task stopped (cancelled or expired)".to_owned(),
        };
        tracing::debug!(task = %self.id, %outcome, "task ended");
        permit.finish(outcome);
    }

    /// Call the plugin, and again with the answers each time it needs input.
    async fn rounds<Fut>(&self, mut call_cx: CallContext, call: &impl Fn(CallContext) -> Fut) -> Ended
    where
        Fut: Future<Output = Result<Outcome<CallToolResult>, CallError>> + Send + 'static,
    {
        let meta = call_cx.meta.clone();
        for _ in 0..MAX_TASK_ROUNDS {
            let input = match self.round(call, call_cx).await {
                Err(error) => return Ended::Settled(failed_payload(&call_error(error))),
                Ok(Outcome::Complete(result)) => {
                    return Ended::Settled(TaskPayload::Completed { result: object(&result) });
                }
                Ok(Outcome::InputRequired(input)) => input,
            };
            if let Some(missing) = missing_capabilities(&input, self.client) {
                return Ended::Settled(failed_payload(&McpError::missing_required_client_capability(missing)));
            }
            let mut questions = Vec::with_capacity(input.requests.len());
            for (key, request) in &input.requests {
                match mcp_input_request(request) {
                    Ok(request) => questions.push((key.clone(), request)),
                    Err(error) => return Ended::Settled(failed_payload(&error)),
                }
            }
            let Some(answers) = self.tasks.ask(&self.id, questions) else { return Ended::Stopped };
            // The sender goes when the task is cancelled or expires.
            let Ok(answers) = answers.await else { return Ended::Stopped };
            call_cx = CallContext {
                client: self.client,
                input_responses: answers,
                state: input.state,
                events: None,
                meta: meta.clone(),
            };
        }
        let message = format!("the tool kept asking for input after {MAX_TASK_ROUNDS} rounds");
        Ended::Settled(failed_payload(&McpError::internal_error(message, None)))
    }

    /// One call of the plugin. Its events have no request stream to go to: a progress
    /// message becomes the task's status message, a list change reaches the catalog, logs
    /// go to the host's log, and a mid-call question is refused.
    async fn round<Fut>(
        &self,
        call: &impl Fn(CallContext) -> Fut,
        mut call_cx: CallContext,
    ) -> Result<Outcome<CallToolResult>, CallError>
    where
        Fut: Future<Output = Result<Outcome<CallToolResult>, CallError>> + Send + 'static,
    {
        // Bounded by the call's event budget (a plugin's grants, a peer's per-call budget):
        // what is past it is dropped before it is sent.
        let (sender, mut events) = tokio::sync::mpsc::unbounded_channel();
        call_cx.events = Some(sender);
        let running = call(call_cx);
        tokio::pin!(running);
        let mut open = true;
        loop {
            tokio::select! {
                result = &mut running => {
                    while let Ok(event) = events.try_recv() {
                        self.event(event);
                    }
                    return result;
                }
                event = events.recv(), if open => match event {
                    Some(event) => self.event(event),
                    None => open = false,
                },
            }
        }
    }

    fn event(&self, event: CallEvent) {
        match event {
            CallEvent::Progress { progress, total, message } => {
                let message = message.unwrap_or_else(|| match total {
                    Some(total) => format!("{progress} of {total}"),
                    None => format!("{progress}"),
                });
                self.tasks.status_message(&self.id, message);
            }
            CallEvent::ListChanged(kind) => self.catalog.notify(kind),
            CallEvent::Log { level, logger, data } => {
                tracing::debug!(task = %self.id, ?level, logger = logger.as_deref().unwrap_or("plugin"), %data, "task log");
            }
            CallEvent::ClientRequest { reply, .. } => {
                let refusal = McpError::internal_error("a task cannot ask its client mid-call", None);
                let _ = reply.send(Err(refusal));
            }
        }
    }
}

/// A tool's result as a completed task inlines it.
fn object(result: &CallToolResult) -> JsonObject {
    match serde_json::to_value(result) {
        Ok(serde_json::Value::Object(map)) => map,
        _ => JsonObject::new(),
    }
}

/// A failed task's payload: the JSON-RPC error its call ended with.
fn failed_payload(error: &McpError) -> TaskPayload {
    let error = match serde_json::to_value(error) {
        Ok(serde_json::Value::Object(map)) => map,
        _ => error_object(error.code.0, &error.message),
    };
    TaskPayload::Failed { error }
}
