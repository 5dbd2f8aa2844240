//! A session whose requests are traced: each request rmcp hands the session runs under its own
//! OpenTelemetry span (see [`crate::telemetry`]), the child of the trace context in its
//! `_meta`. Without `[telemetry]` each method only passes its request on.
//!
//! rmcp's HTTP service takes a [`ServerHandler`] (not any `Service`), and the handler has no
//! one entry for every request, so the wrapper is a handler too: each request method starts
//! the span and runs [`Session`]'s method under it; the rest is passed on as it is. A method
//! [`Session`] implements must be passed on here too (its default would answer otherwise).

// Logging is deprecated by SEP-2577 (2026-07-28) but is live in 2025-11-25.
#![allow(deprecated)]

use std::future::Future;

use rmcp::model::{
    CallToolRequestParams, CallToolResponse, CancelTaskParams, CompleteRequestParams, CompleteResult,
    GetPromptRequestParams, GetPromptResponse, GetTaskParams, GetTaskResult, InitializeRequestParams, InitializeResult,
    ListPromptsResult, ListResourceTemplatesResult, ListResourcesResult, ListToolsResult, PaginatedRequestParams,
    ProtocolVersion, ReadResourceRequestParams, ReadResourceResponse, ServerConfig, SetLevelRequestParams,
    SubscribeRequestParams, SubscriptionFilter, Tool, UnsubscribeRequestParams, UpdateTaskParams,
};
use rmcp::service::{NotificationContext, RequestContext, SubscriptionContext};
use rmcp::{ErrorData as McpError, RoleServer, ServerHandler};

use super::Session;
use crate::telemetry::{Ending, FutureExt as _, Request, Span, Tracing, end_request};

/// [`Session`] with a span per request when the host traces.
#[derive(Clone)]
pub(crate) struct TracedSession {
    session: Session,
    tracing: Option<Tracing>,
}

impl TracedSession {
    pub(crate) fn new(session: Session) -> Self {
        let tracing = session.shared.tracing.clone();
        Self { session, tracing }
    }

    /// The span of one request, or `None` (at once) when the host does not trace.
    fn start(&self, method: &'static str, target: Option<&str>, cx: &RequestContext<RoleServer>) -> Option<Span> {
        let tracing = self.tracing.as_ref()?;
        let version = cx.protocol_version();
        let request = Request {
            method,
            target,
            id: Some(&cx.id),
            protocol_version: version.as_ref().map(ProtocolVersion::as_str),
        };
        Some(tracing.request(&request, Some(&cx.meta.0.0)))
    }
}

/// Run `call` under `span` (if the request is traced) and end the span with how it ended
/// (`ending` reads a result; an error answer is the error's code).
///
/// Callers pass the session's future boxed. rmcp spawns a task per request whose future holds
/// the handler's inline, and the session's futures hold a whole plugin call (wasmtime's
/// instantiation among it): unboxed, every request's task was ~18 KB, copied several times on
/// its way into the spawned task (memcpy was the largest single cost of a plugin call over
/// HTTP). Boxed, the task holds a pointer and the call's state is written once.
async fn run<T>(
    span: Option<Span>,
    call: impl Future<Output = Result<T, McpError>>,
    ending: fn(&T) -> Ending<'static>,
) -> Result<T, McpError> {
    let Some(span) = span else { return call.await };
    // A request whose future is dropped (its HTTP client went away) ends as cancelled, not
    // as the success a span dropped unended records.
    let mut unended = Unended(Some(span.clone()));
    let result = call.in_span(span.clone()).await;
    unended.0 = None;
    let ended = match &result {
        Ok(answer) => ending(answer),
        Err(error) => Ending::Error { code: error.code.0, message: error.message.as_ref().into() },
    };
    end_request(&span, ended);
    result
}

/// The span of a request still running; ended as cancelled if the request is dropped.
pub(crate) struct Unended(pub(crate) Option<Span>);

impl Drop for Unended {
    fn drop(&mut self) {
        if let Some(span) = self.0.take() {
            let error = was_cancelled();
            end_request(&span, Ending::Error { code: error.code.0, message: error.message.as_ref().into() });
        }
    }
}

/// What a request its client cancelled ends with. rmcp only signals the cancellation (and
/// drops the answer): a handler left running would go on to its end (a plugin call to its
/// time limit), and a transport that frees the request's place when it is cancelled
/// (WebSocket) would let such work pile up. So every request stops there: its future is
/// dropped, which drops a plugin's sandbox and cancels a peer's call.
pub(super) fn was_cancelled() -> McpError {
    McpError::internal_error("the request was cancelled", None)
}

fn ok<T>(_: &T) -> Ending<'static> {
    Ending::Ok
}

/// A tool's result with `isError` is an error of the call's, as the Python SDK records it.
fn tool_ending(response: &CallToolResponse) -> Ending<'static> {
    match response {
        CallToolResponse::Complete(result) if result.is_error == Some(true) => Ending::ToolError,
        _ => Ending::Ok,
    }
}

/// A traced request method: its span is named after `$method` and the target `$target` reads
/// from the request's parameters.
macro_rules! traced {
    ($name:ident, $method:literal, $params:ty, $result:ty, $target:expr, $ending:expr) => {
        async fn $name(&self, request: $params, cx: RequestContext<RoleServer>) -> Result<$result, McpError> {
            let target: fn(&$params) -> Option<&str> = $target;
            let span = self.start($method, target(&request), &cx);
            let cancelled = cx.ct.clone();
            let call = Box::pin(async move {
                tokio::select! {
                    result = self.session.$name(request, cx) => result,
                    () = cancelled.cancelled() => Err(was_cancelled()),
                }
            });
            run(span, call, $ending).await
        }
    };
}

impl ServerHandler for TracedSession {
    fn get_info(&self) -> ServerConfig {
        self.session.get_info()
    }

    fn get_tool(&self, name: &str) -> Option<Tool> {
        self.session.get_tool(name)
    }

    fn accepted_subscription_filter(&self, requested: &SubscriptionFilter) -> Option<SubscriptionFilter> {
        self.session.accepted_subscription_filter(requested)
    }

    async fn on_initialized(&self, cx: NotificationContext<RoleServer>) {
        Box::pin(self.session.on_initialized(cx)).await
    }

    /// A subscription's stream lasts as long as its client keeps it: not a request's span.
    async fn listen(&self, subscription: SubscriptionContext) -> Result<(), McpError> {
        Box::pin(self.session.listen(subscription)).await
    }

    async fn ping(&self, cx: RequestContext<RoleServer>) -> Result<(), McpError> {
        let span = self.start("ping", None, &cx);
        run(span, Box::pin(self.session.ping(cx)), ok).await
    }

    traced!(initialize, "initialize", InitializeRequestParams, InitializeResult, |_| None, ok);
    traced!(call_tool, "tools/call", CallToolRequestParams, CallToolResponse, |r| Some(&r.name), tool_ending);
    traced!(list_tools, "tools/list", Option<PaginatedRequestParams>, ListToolsResult, |_| None, ok);
    traced!(get_prompt, "prompts/get", GetPromptRequestParams, GetPromptResponse, |r| Some(&r.name), ok);
    traced!(list_prompts, "prompts/list", Option<PaginatedRequestParams>, ListPromptsResult, |_| None, ok);
    traced!(read_resource, "resources/read", ReadResourceRequestParams, ReadResourceResponse, |_| None, ok);
    traced!(list_resources, "resources/list", Option<PaginatedRequestParams>, ListResourcesResult, |_| None, ok);
    traced!(
        list_resource_templates,
        "resources/templates/list",
        Option<PaginatedRequestParams>,
        ListResourceTemplatesResult,
        |_| None,
        ok
    );
    traced!(subscribe, "resources/subscribe", SubscribeRequestParams, (), |_| None, ok);
    traced!(unsubscribe, "resources/unsubscribe", UnsubscribeRequestParams, (), |_| None, ok);
    traced!(complete, "completion/complete", CompleteRequestParams, CompleteResult, |_| None, ok);
    traced!(set_level, "logging/setLevel", SetLevelRequestParams, (), |_| None, ok);
    traced!(get_task, "tasks/get", GetTaskParams, GetTaskResult, |_| None, ok);
    traced!(update_task, "tasks/update", UpdateTaskParams, (), |_| None, ok);
    traced!(cancel_task, "tasks/cancel", CancelTaskParams, (), |_| None, ok);
}
