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
    GetTaskResult, JsonObject, TaskPayload, UpdateTaskParams,
};
use rmcp::service::RequestContext;
use rmcp::{ErrorData as McpError, RoleServer};
use serde_json::json;
use tokio_util::sync::CancellationToken;

use super::input_required::{mcp_input_request, missing_capabilities};
use super::serve::{Admitted, EntryUse, Sent, failed};
use super::{Session, StateBinding, call_error, client_support};
use crate::auth::EntryKind;
use crate::auth::gate::{Method, Permit, Use};
use crate::catalog::{Catalog, Route};
use crate::plugin::{CallContext, CallError, CallEvent, ClientSupport, Outcome};
use crate::tasks::{Tasks, UnknownTask, error_object};
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
            let permit = self.shared.guard.admit(entry.identity, &entry.used)?;
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
            meta: self.forwardable_meta(cx, identity),
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
        if crate::telemetry::is_traced() {
            tokio::spawn(running.with_current_context());
        } else {
            tokio::spawn(running);
        }
        Ok(CallToolResponse::Task(CreateTaskResult::new(created.task)))
    }

    pub(super) fn get_own_task(
        &self,
        request: GetTaskParams,
        cx: &RequestContext<RoleServer>,
    ) -> Result<GetTaskResult, McpError> {
        self.task_use(cx, Method::GetTask, &request.task_id, |tasks, owner| {
            tasks.get(owner, &request.task_id).map(GetTaskResult::new)
        })
    }

    pub(super) fn update_own_task(
        &self,
        request: UpdateTaskParams,
        cx: &RequestContext<RoleServer>,
    ) -> Result<(), McpError> {
        let UpdateTaskParams { task_id, input_responses, .. } = request;
        self.task_use(cx, Method::UpdateTask, &task_id, |tasks, owner| tasks.update(owner, &task_id, input_responses))
    }

    pub(super) fn cancel_own_task(
        &self,
        request: CancelTaskParams,
        cx: &RequestContext<RoleServer>,
    ) -> Result<(), McpError> {
        self.task_use(cx, Method::CancelTask, &request.task_id, |tasks, owner| tasks.cancel(owner, &request.task_id))
    }

    /// One `tasks/*` request of the caller's own task `id`: a use of the task's tool, admitted
    /// by the gate (grant, rate limit) and audited like any. A task that is not the caller's
    /// is unknown, whoever created it.
    fn task_use<T>(
        &self,
        cx: &RequestContext<RoleServer>,
        method: Method,
        id: &str,
        act: impl FnOnce(&Tasks, &str) -> Result<T, UnknownTask>,
    ) -> Result<T, McpError> {
        let identity = self.identity(cx)?;
        let owner = identity.limit_key();
        let tool = self.shared.tasks.tool_of(&owner, id).map_err(unknown)?;
        let used = Use { method, kind: EntryKind::Tool, entry: &tool, grant_name: &tool, annotations: None };
        let permit = self.shared.guard.admit(&identity, &used)?;
        let result = act(&self.shared.tasks, &owner).map_err(unknown);
        match &result {
            Ok(_) => permit.finish("ok"),
            Err(error) => permit.finish(format!("error: {}", error.message)),
        }
        result
    }
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
