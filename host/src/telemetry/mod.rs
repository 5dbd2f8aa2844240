//! OpenTelemetry traces: a span for each MCP request the host serves, a span for each request
//! it forwards to a peer, and a span for each plugin call, exported over OTLP/HTTP when
//! `[telemetry]` names a collector (see `config`).
//!
//! Names and attributes are those of the official MCP SDKs (the Python SDK's
//! `mcp/server/_otel.py` and its dispatcher): a served request's span is named
//! `"<method> <name>"` (kind SERVER) and carries `mcp.method.name`, `mcp.protocol.version`,
//! `jsonrpc.request.id`, `gen_ai.operation.name = execute_tool` and `gen_ai.tool.name` for
//! tools/call (`gen_ai.prompt.name` for prompts/get), and on failure `error.type` (the JSON-RPC
//! error code, or `tool_error` for a tool result with `isError`) and `rpc.response.status_code`;
//! a forwarded request's span is `"MCP send <method> <name>"` (kind CLIENT).
//!
//! Propagation is W3C Trace Context carried in `params._meta` (`traceparent`, `tracestate`),
//! as SEP-414 has it: a request's span is the child of the context in its `_meta`, and a
//! request forwarded to a peer carries the forwarding span's context in its own `_meta`, so
//! client → A → B → plugin is one trace.
//!
//! The current span travels with the request's future as an OpenTelemetry [`Context`]
//! attached on each poll, and so does the [`Tracing`] that made it. Code below the session
//! (a plugin call, a forwarded request) asks the current context for both; on a host without
//! `[telemetry]` no context is ever attached, so that question is a thread-local read that
//! finds nothing, and no span, attribute or string is made.

pub mod config;
mod export;
mod otlp;
mod queue;
mod trace_context;

use std::borrow::Cow;
use std::fmt::Display;
use std::str::FromStr as _;
use std::sync::Arc;
use std::time::Duration;

use opentelemetry::trace::{
    Span as _, SpanContext, SpanKind, Status, TraceContextExt, TraceState, Tracer as _, TracerProvider as _,
};
use opentelemetry::{Context, KeyValue, StringValue};
use opentelemetry_sdk::trace::{SdkTracer, SdkTracerProvider};
use rmcp::model::{ClientRequest, ProtocolVersion};
use serde_json::{Map, Value};

use crate::call::CallError;

pub use self::config::{OtlpProtocol, TelemetrySettings};
pub use opentelemetry::context::FutureExt;

const TRACEPARENT: &str = "traceparent";
const TRACESTATE: &str = "tracestate";
/// How long the host waits, when it stops, for the spans still queued to be sent.
const FLUSH_LIMIT: Duration = Duration::from_secs(5);

/// A host's tracer: makes the spans of its requests and exports them in batches.
#[derive(Clone, Debug)]
pub struct Tracing {
    inner: Arc<Inner>,
}

#[derive(Debug)]
struct Inner {
    tracer: SdkTracer,
    provider: SdkTracerProvider,
    /// `None` in unit tests, whose spans go nowhere.
    queue: Option<queue::QueueHandle>,
}

impl Tracing {
    /// Trace to the collector `settings` names. Spans are queued (`queue`) and posted by a
    /// task on the current tokio runtime, which must outlive them.
    pub fn start(settings: &TelemetrySettings) -> anyhow::Result<Self> {
        let runtime = tokio::runtime::Handle::try_current().map_err(|_| {
            anyhow::anyhow!("telemetry: traces are exported through a tokio runtime, and none is running")
        })?;
        let queue_settings = queue::QueueSettings::from_env(|name| std::env::var(name).ok());
        let collector = export::Collector::new(settings, queue_settings.export_timeout)?;
        let (processor, queue) = queue::SpanQueue::start(collector, queue_settings, &runtime);
        let resource = opentelemetry_sdk::Resource::builder().with_service_name(settings.service_name.clone()).build();
        let provider = SdkTracerProvider::builder().with_span_processor(processor).with_resource(resource).build();
        let tracer = provider.tracer("fedmcp");
        tracing::info!(collector = %settings.traces_url, service = %settings.service_name, "exporting traces over OTLP/HTTP");
        Ok(Self { inner: Arc::new(Inner { tracer, provider, queue: Some(queue) }) })
    }

    /// Send the spans still queued (at most [`FLUSH_LIMIT`]) and stop exporting.
    pub async fn shutdown(&self) {
        if let Some(queue) = &self.inner.queue
            && let Err(why) = queue.close(FLUSH_LIMIT).await
        {
            tracing::warn!(why, "traces still queued at shutdown may not have been exported");
        }
        let provider = self.inner.provider.clone();
        // Nothing is left to post; the SDK's shutdown may still block its thread.
        let _ = tokio::task::spawn_blocking(move || provider.shutdown_with_timeout(FLUSH_LIMIT)).await;
    }

    /// Start the span of one request this host serves. Its parent is the W3C trace context in
    /// the request's `_meta`, if that holds a valid one (a new trace otherwise). The returned
    /// context holds the span and this tracer; attach it to the request's future
    /// ([`FutureExt::with_context`]) and end it with [`end_request`].
    pub(crate) fn request(&self, request: &Request<'_>, meta: Option<&Map<String, Value>>) -> Context {
        let parent = match meta.and_then(remote_parent) {
            Some(parent) => Context::new().with_remote_span_context(parent),
            None => Context::new(),
        };
        let mut attributes = Vec::with_capacity(5);
        attributes.push(KeyValue::new("mcp.method.name", request.method));
        if let Some(version) = request.protocol_version {
            attributes.push(KeyValue::new("mcp.protocol.version", protocol_version(version)));
        }
        if let Some(id) = request.id {
            attributes.push(request_id(id));
        }
        match (request.method, request.target) {
            ("tools/call", target) => {
                attributes.push(KeyValue::new("gen_ai.operation.name", "execute_tool"));
                if let Some(tool) = target {
                    attributes.push(KeyValue::new("gen_ai.tool.name", clip(tool)));
                }
            }
            ("prompts/get", Some(prompt)) => attributes.push(KeyValue::new("gen_ai.prompt.name", clip(prompt))),
            _ => {}
        }
        let tracer = &self.inner.tracer;
        let span = tracer
            .span_builder(span_name(request.method, request.target))
            .with_kind(SpanKind::Server)
            .with_attributes(attributes)
            .start_with_context(tracer, &parent);
        parent.with_span(span).with_value(self.clone())
    }
}

/// What names a request's span.
pub(crate) struct Request<'a> {
    /// The JSON-RPC method, e.g. `tools/call` (one the host serves: static text, not clipped).
    pub method: &'static str,
    /// The tool's or prompt's name (`params.name`), if the request has one.
    pub target: Option<&'a str>,
    pub id: Option<&'a dyn Display>,
    /// The protocol version the request speaks, if known.
    pub protocol_version: Option<&'a str>,
}

/// How a request ended, as its span records it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Ending<'a> {
    Ok,
    /// A tool's result with `isError: true`.
    ToolError,
    /// A JSON-RPC error answer.
    Error {
        code: i32,
        message: Cow<'a, str>,
    },
    /// A forwarded request that got no answer (the peer unreachable, too slow, a loop).
    Failed {
        kind: &'static str,
        message: String,
    },
}

impl Ending<'_> {
    /// How a JSON-RPC answer (relayed as it came) ended its request.
    pub(crate) fn of_answer(answer: &Value) -> Self {
        if let Some(error) = answer.get("error") {
            let code = error.get("code").and_then(Value::as_i64).unwrap_or_default();
            let message = error.get("message").and_then(Value::as_str).unwrap_or_default();
            return Ending::Error { code: code as i32, message: Cow::Owned(clip(message)) };
        }
        if answer.get("result").and_then(|result| result.get("isError")) == Some(&Value::Bool(true)) {
            return Ending::ToolError;
        }
        Ending::Ok
    }

    /// How a call forwarded to a peer ended, when it failed.
    pub(crate) fn of_call_error(error: &CallError) -> Self {
        match error {
            CallError::Upstream(error) => {
                Ending::Error { code: error.code.0, message: Cow::Owned(clip(&error.message)) }
            }
            other => Ending::Failed { kind: other.kind(), message: clip(&other.to_string()) },
        }
    }
}

/// The name a request's span takes after its method (`params.name`), as the Python SDK has it.
pub(crate) fn target(request: &ClientRequest) -> Option<&str> {
    match request {
        ClientRequest::CallToolRequest(call) => Some(&call.params.name),
        ClientRequest::GetPromptRequest(get) => Some(&get.params.name),
        _ => None,
    }
}

/// End the span in `cx` (from [`Tracing::request`] or [`send`]) with how its request ended.
pub(crate) fn end_request(cx: &Context, ending: Ending<'_>) {
    record(cx, ending);
    cx.span().end();
}

/// Record on the span in `cx` how its request ended, before the span itself ends (a relayed
/// answer is read below the code that ends the span).
pub(crate) fn record(cx: &Context, ending: Ending<'_>) {
    let span = cx.span();
    match ending {
        Ending::Ok => {}
        Ending::ToolError => {
            span.set_attribute(KeyValue::new("error.type", "tool_error"));
            span.set_status(Status::error(""));
        }
        Ending::Error { code, message } => {
            let code = code.to_string();
            span.set_attributes([
                KeyValue::new("error.type", code.clone()),
                KeyValue::new("rpc.response.status_code", code),
            ]);
            span.set_status(Status::error(message.into_owned()));
        }
        Ending::Failed { kind, message } => {
            span.set_attribute(KeyValue::new("error.type", kind));
            span.set_status(Status::error(message));
        }
    }
}

/// A JSON-RPC id as `jsonrpc.request.id` has it: a string's text, a number's digits.
pub(crate) struct JsonId<'a>(pub &'a Value);

impl Display for JsonId<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self.0 {
            Value::String(id) => f.write_str(id),
            Value::Number(id) => Display::fmt(id, f),
            other => write!(f, "{other}"),
        }
    }
}

/// The tracer of the request being served on this thread, if it is traced.
fn current() -> Option<Tracing> {
    Context::map_current(|cx| cx.get::<Tracing>().cloned())
}

/// Whether the request being served on this thread is traced: what a task spawned for it
/// checks before it carries the context along (`Context::current()` then).
pub(crate) fn is_traced() -> bool {
    Context::map_current(|cx| cx.get::<Tracing>().is_some())
}

/// Start the span of a request this host sends to `peer` on behalf of the request being
/// served, as its child (kind CLIENT); `None` when that request is not traced. End it with
/// [`end_request`]; its context goes into the forwarded request's `_meta` with [`inject`].
/// `id` is the forwarded request's JSON-RPC id when it is known before it is sent (otherwise
/// [`set_request_id`] records it).
pub(crate) fn send(method: &str, target: Option<&str>, peer: &str, id: Option<&dyn Display>) -> Option<Context> {
    let tracing = current()?;
    let parent = Context::current();
    let tracer = &tracing.inner.tracer;
    let mut name = String::from("MCP send ");
    crate::text::push_clipped(&mut name, method, MAX_SPAN_TEXT);
    if let Some(target) = target {
        name.push(' ');
        crate::text::push_clipped(&mut name, target, MAX_SPAN_TEXT);
    }
    let mut attributes = Vec::with_capacity(3);
    attributes.push(KeyValue::new("mcp.method.name", clip(method)));
    attributes.push(KeyValue::new("fedmcp.peer", peer.to_owned()));
    if let Some(id) = id {
        attributes.push(request_id(id));
    }
    let span = tracer
        .span_builder(name)
        .with_kind(SpanKind::Client)
        .with_attributes(attributes)
        .start_with_context(tracer, &parent);
    Some(parent.with_span(span))
}

/// Write `cx`'s span context into a forwarded request's `_meta` as `traceparent` (and
/// `tracestate`), replacing the caller's: the peer's span is then the child of this host's.
/// Without a valid span context in `cx` (an untraced request, or one still running when the
/// host's tracer has shut down) the caller's context is passed on as it came, as a host without
/// `[telemetry]` passes it.
pub(crate) fn inject(cx: &Context, meta: &mut Map<String, Value>) {
    let span = cx.span();
    let context = span.span_context();
    if !context.is_valid() {
        return;
    }
    meta.insert(TRACEPARENT.to_owned(), Value::String(trace_context::format(context)));
    let state = context.trace_state().header();
    if state.is_empty() {
        meta.remove(TRACESTATE);
    } else {
        meta.insert(TRACESTATE.to_owned(), Value::String(state));
    }
}

/// Record the JSON-RPC request id a forwarded request got (known once it is sent).
pub(crate) fn set_request_id(cx: &Context, id: &dyn Display) {
    cx.span().set_attribute(request_id(id));
}

/// A request's `jsonrpc.request.id` attribute (a caller's id, clipped like any caller's text).
fn request_id(id: &dyn Display) -> KeyValue {
    KeyValue::new("jsonrpc.request.id", crate::text::clip(id.to_string(), MAX_SPAN_TEXT))
}

/// The span of one plugin call (instantiating its sandbox and running the export), the child
/// of the request being served; `None` when that request is not traced. Ended on drop.
pub(crate) struct PluginSpan {
    span: opentelemetry_sdk::trace::Span,
}

impl PluginSpan {
    pub(crate) fn start(plugin: &str, method: &'static str, target: &str) -> Option<Self> {
        let tracing = current()?;
        let tracer = &tracing.inner.tracer;
        // Room for `instantiated`'s too: the span's attributes are not moved to grow.
        let mut attributes = Vec::with_capacity(5);
        attributes.push(KeyValue::new("fedmcp.plugin.name", plugin.to_owned()));
        attributes.push(KeyValue::new("mcp.method.name", method));
        if !target.is_empty() {
            let target: Arc<str> = clip(target).into();
            if method == "tools/call" {
                attributes.push(KeyValue::new("gen_ai.tool.name", StringValue::from(target.clone())));
            }
            attributes.push(KeyValue::new("fedmcp.plugin.target", StringValue::from(target)));
        }
        let mut name = String::with_capacity("plugin ".len() + plugin.len());
        name.push_str("plugin ");
        name.push_str(plugin);
        let span = tracer
            .span_builder(name)
            .with_kind(SpanKind::Internal)
            .with_attributes(attributes)
            .start_with_context(tracer, &Context::current());
        Some(Self { span })
    }

    /// How long instantiating the sandbox took.
    pub(crate) fn instantiated(&mut self, took: Duration) {
        self.span.set_attribute(KeyValue::new("fedmcp.plugin.instantiate_us", took.as_micros() as i64));
    }

    /// The call failed with `error`.
    pub(crate) fn failed(&mut self, kind: &'static str, error: &dyn Display) {
        self.span.set_attribute(KeyValue::new("error.type", kind));
        self.span.set_status(Status::error(clip(&error.to_string())));
    }
}

impl Drop for PluginSpan {
    fn drop(&mut self) {
        self.span.end();
    }
}

/// The most of a caller's, a peer's or a plugin's text a span keeps in one name, attribute or
/// status: the exporter's queue is bounded in spans, not bytes, and a tool name or an error
/// message is whatever its sender made it.
const MAX_SPAN_TEXT: usize = 256;

/// `text`, cut to [`MAX_SPAN_TEXT`] bytes (on a character boundary, marked with `…`).
fn clip(text: &str) -> String {
    let mut clipped = String::with_capacity(text.len().min(MAX_SPAN_TEXT + '…'.len_utf8()));
    crate::text::push_clipped(&mut clipped, text, MAX_SPAN_TEXT);
    clipped
}

/// A request's protocol version as its span records it: one the host speaks without a copy.
fn protocol_version(version: &str) -> StringValue {
    match ProtocolVersion::KNOWN_VERSIONS.iter().map(ProtocolVersion::as_str).find(|known| *known == version) {
        Some(known) => StringValue::from(known),
        None => StringValue::from(clip(version)),
    }
}

/// `"<method> <target>"`, or the method alone (a method the host serves: static, short).
fn span_name(method: &'static str, target: Option<&str>) -> Cow<'static, str> {
    let Some(target) = target else { return Cow::Borrowed(method) };
    let mut name = String::with_capacity(method.len() + 1 + target.len().min(MAX_SPAN_TEXT + '…'.len_utf8()));
    name.push_str(method);
    name.push(' ');
    crate::text::push_clipped(&mut name, target, MAX_SPAN_TEXT);
    Cow::Owned(name)
}

/// The remote parent a request's `_meta` names in `traceparent` (and `tracestate`), if valid.
fn remote_parent(meta: &Map<String, Value>) -> Option<SpanContext> {
    let (trace_id, span_id, flags) = trace_context::parse(meta.get(TRACEPARENT)?.as_str()?)?;
    let state = match meta.get(TRACESTATE).and_then(Value::as_str) {
        Some(state) => TraceState::from_str(within_tracestate_limit(state)).unwrap_or_default(),
        None => TraceState::default(),
    };
    Some(SpanContext::new(trace_id, span_id, flags, true, state))
}

/// The most of a caller's `tracestate` kept: every span of the request and every request it
/// forwards carries it, and W3C Trace Context lets a vendor cut it at 512 characters.
const MAX_TRACESTATE: usize = 512;

/// The whole members of `tracestate` that fit in [`MAX_TRACESTATE`] bytes, from its start.
fn within_tracestate_limit(tracestate: &str) -> &str {
    if tracestate.len() <= MAX_TRACESTATE {
        return tracestate;
    }
    let mut end = 0;
    for (at, _) in tracestate.match_indices(',') {
        if at > MAX_TRACESTATE {
            break;
        }
        end = at;
    }
    &tracestate[..end]
}

#[cfg(test)]
mod tests;
