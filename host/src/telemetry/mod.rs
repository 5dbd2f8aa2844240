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
//! The spans are the host's own, not the OpenTelemetry SDK's: a span is a small record made
//! where its request starts and encoded to OTLP where it ends (`otlp`), then queued as bytes
//! (`queue`). What decides which traces are recorded and what makes their ids are the SDK's
//! (its sampler and id generator, configured from `OTEL_TRACES_SAMPLER` and
//! `OTEL_TRACES_SAMPLER_ARG` as the SDK configures them; a span under one of the host's own
//! takes its parent's decision), and so is the resource (`OTEL_RESOURCE_ATTRIBUTES`, with
//! `service.name` from `[telemetry]`). The SDK's span made ~10 heap blocks per
//! span, a builder, a context entry for itself and one for the tracer, and moved a half-KB
//! record into its processor: with every request traced that cost more than the encoding
//! (`docs/investigations/2026-12-05-tracing-cost.md`).
//!
//! The span of the request being served travels with the request's future ([`FutureExt`]),
//! made current on this thread on each poll. Code below the session (a plugin call, a
//! forwarded request) asks for the current span ([`current`]); on a host without
//! `[telemetry]` no span is ever current, so that question is a thread-local read that finds
//! nothing, and no span, attribute or string is made.

pub mod config;
mod export;
mod otlp;
mod queue;
mod trace_context;

use std::borrow::Cow;
use std::cell::RefCell;
use std::fmt::Display;
use std::future::Future;
use std::marker::PhantomData;
use std::pin::Pin;
use std::str::FromStr as _;
use std::sync::{Arc, Mutex};
use std::task::Poll;
use std::time::{Duration, SystemTime};

use opentelemetry::trace::{
    SpanContext, SpanId, SpanKind, Status, TraceContextExt as _, TraceFlags, TraceId, TraceState,
};
use opentelemetry::{Context, InstrumentationScope, KeyValue, StringValue};
use opentelemetry_sdk::trace::{IdGenerator, SamplingDecision, ShouldSample, SpanData};
use rmcp::model::{ClientRequest, ProtocolVersion};
use serde_json::{Map, Value};

use crate::call::CallError;

pub use self::config::{OtlpProtocol, TelemetrySettings};

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
    /// The SDK's, as its variables configure it (`OTEL_TRACES_SAMPLER`, `..._ARG`).
    sampler: Box<dyn ShouldSample>,
    ids: Box<dyn IdGenerator>,
    sink: Sink,
}

/// Where ended spans go.
#[derive(Debug)]
enum Sink {
    Queue {
        queue: queue::SpanQueue,
        handle: queue::QueueHandle,
        protocol: OtlpProtocol,
    },
    /// Unit tests read what ended here.
    #[cfg(test)]
    Kept(Mutex<Vec<SpanData>>),
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
        let protocol = collector.protocol;
        let (mut queue, handle) = queue::SpanQueue::start(collector, queue_settings, &runtime);
        let resource = opentelemetry_sdk::Resource::builder().with_service_name(settings.service_name.clone()).build();
        queue.set_resource(&resource);
        tracing::info!(collector = %settings.traces_url, service = %settings.service_name, "exporting traces over OTLP/HTTP");
        Ok(Self::with_sink(Sink::Queue { queue, handle, protocol }))
    }

    fn with_sink(sink: Sink) -> Self {
        // The SDK's configuration read from its variables: the sampler and id generator are
        // the SDK's own, as a tracer provider built with defaults has them.
        let config = opentelemetry_sdk::trace::Config::default();
        Self { inner: Arc::new(Inner { sampler: config.sampler, ids: config.id_generator, sink }) }
    }

    /// Send the spans still queued (at most [`FLUSH_LIMIT`]) and stop exporting: spans that
    /// end later (requests still running) are dropped and counted
    /// (`fedmcp_spans_dropped_total{reason="stopped"}`); a request forwarded meanwhile still
    /// carries its span's `traceparent`, as the span was made before it was known to be lost.
    pub async fn shutdown(&self) {
        match &self.inner.sink {
            Sink::Queue { handle, .. } => {
                if let Err(why) = handle.close(FLUSH_LIMIT).await {
                    tracing::warn!(why, "traces still queued at shutdown may not have been exported");
                }
            }
            #[cfg(test)]
            Sink::Kept(_) => {}
        }
    }

    /// Start the span of one request this host serves. Its parent is the W3C trace context in
    /// the request's `_meta`, if that holds a valid one (a new trace otherwise). Make it
    /// current for the request's future ([`FutureExt::in_span`]) and end it with [`end_request`].
    pub(crate) fn request(&self, request: &Request<'_>, meta: Option<&Map<String, Value>>) -> Span {
        let parent = meta.and_then(remote_parent);
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
        let parent = match &parent {
            Some(parent) => Parent::Remote(parent),
            None => Parent::Root,
        };
        self.span(parent, span_name(request.method, request.target), SpanKind::Server, attributes)
    }

    /// A span started now, the child of `parent` (a new trace without one).
    ///
    /// A request's span is sampled as the SDK's sampler decides. A span started under one of
    /// this host's own spans takes its parent's decision without asking: every sampler the
    /// host can be configured with (`OTEL_TRACES_SAMPLER`: always_on, always_off,
    /// traceidratio and their parentbased_ forms) decides a local child as it decided the
    /// parent (the same trace id; a sampled or unsampled local parent), and none of them adds
    /// attributes or changes the trace state. A span not sampled has its ids (for
    /// propagation) and records nothing.
    fn span(&self, parent: Parent<'_>, name: Cow<'static, str>, kind: SpanKind, mut attributes: Vec<KeyValue>) -> Span {
        let inner = &self.inner;
        let span_id = inner.ids.new_span_id();
        let (trace_id, parent_span_id, parent_is_remote, sampled, trace_state) = match parent {
            Parent::Local(parent) => {
                let context = parent.context();
                (context.trace_id(), context.span_id(), false, parent.is_recorded(), context.trace_state().clone())
            }
            Parent::Remote(parent) => {
                let parent_cx = Context::new().with_remote_span_context(parent.clone());
                let (sampled, state) = self.sample(&parent_cx, parent.trace_id(), &name, &kind, &mut attributes);
                (parent.trace_id(), parent.span_id(), true, sampled, state)
            }
            Parent::Root => {
                let trace_id = inner.ids.new_trace_id();
                let (sampled, state) = self.sample(&Context::new(), trace_id, &name, &kind, &mut attributes);
                (trace_id, SpanId::INVALID, false, sampled, state)
            }
        };
        // A span recorded but not sampled would not be exported (as the SDK's processors
        // have it): it is not recorded either.
        let flags = if sampled { TraceFlags::SAMPLED } else { TraceFlags::default() };
        let context = SpanContext::new(trace_id, span_id, flags, false, trace_state);
        let record = sampled.then(|| Mutex::new(Record { attributes, status: Status::Unset, ended: false }));
        Span(Arc::new(SpanInner {
            tracing: self.clone(),
            context,
            parent_span_id,
            parent_is_remote,
            kind,
            name,
            start: SystemTime::now(),
            record,
        }))
    }

    /// The SDK's sampler's decision for a span starting under `parent_cx` (sampled or not, and
    /// its trace state); attributes it asks for are added to the span's.
    fn sample(
        &self,
        parent_cx: &Context,
        trace_id: TraceId,
        name: &str,
        kind: &SpanKind,
        attributes: &mut Vec<KeyValue>,
    ) -> (bool, TraceState) {
        let sampling = self.inner.sampler.should_sample(Some(parent_cx), trace_id, name, kind, attributes, &[]);
        attributes.extend(sampling.attributes);
        (sampling.decision == SamplingDecision::RecordAndSample, sampling.trace_state)
    }

    /// Export one ended span.
    fn export(&self, span: &SpanInner, attributes: Vec<KeyValue>, status: Status) {
        let fields = otlp::SpanFields {
            context: &span.context,
            parent_span_id: span.parent_span_id,
            parent_is_remote: span.parent_is_remote,
            name: &span.name,
            kind: &span.kind,
            start: span.start,
            end: SystemTime::now(),
            attributes: &attributes,
            status: &status,
        };
        match &self.inner.sink {
            Sink::Queue { queue, protocol: OtlpProtocol::HttpProtobuf, .. } => {
                queue.push(queue::Ended::Host(otlp::encode_fields(&fields)));
            }
            Sink::Queue { queue, protocol: OtlpProtocol::HttpJson, .. } => {
                queue.push(queue::Ended::Json(Box::new(span_data(&fields))));
            }
            #[cfg(test)]
            Sink::Kept(kept) => kept.lock().expect("the kept spans").push(span_data(&fields)),
        }
    }
}

/// A span as the SDK's model has it (OTLP JSON is encoded from that model; unit tests read it):
/// made from the same fields the protobuf encoder writes.
fn span_data(fields: &otlp::SpanFields<'_>) -> SpanData {
    SpanData {
        span_context: fields.context.clone(),
        parent_span_id: fields.parent_span_id,
        parent_span_is_remote: fields.parent_is_remote,
        span_kind: fields.kind.clone(),
        name: Cow::Owned(fields.name.to_owned()),
        start_time: fields.start,
        end_time: fields.end,
        attributes: fields.attributes.to_vec(),
        dropped_attributes_count: 0,
        events: Default::default(),
        links: Default::default(),
        status: fields.status.clone(),
        instrumentation_scope: InstrumentationScope::builder(queue::HOST_SCOPE).build(),
    }
}

/// What a span is started under.
enum Parent<'a> {
    /// None: the span starts a trace.
    Root,
    /// The caller's span, from the `traceparent` of a request's `_meta`.
    Remote(&'a SpanContext),
    /// One of this host's own spans (the request being served).
    Local(&'a Span),
}

/// A span being recorded: a request's (current in its futures while it runs), a forwarded
/// request's or a plugin call's. Ended by [`Span::end`] or, if never ended, when its last
/// holder drops it.
#[derive(Clone, Debug)]
pub(crate) struct Span(Arc<SpanInner>);

#[derive(Debug)]
struct SpanInner {
    tracing: Tracing,
    context: SpanContext,
    parent_span_id: SpanId,
    parent_is_remote: bool,
    kind: SpanKind,
    name: Cow<'static, str>,
    start: SystemTime,
    /// `None` for a span not sampled.
    record: Option<Mutex<Record>>,
}

#[derive(Debug)]
struct Record {
    attributes: Vec<KeyValue>,
    status: Status,
    ended: bool,
}

impl Drop for SpanInner {
    fn drop(&mut self) {
        let Some(record) = self.record.take() else { return };
        let record = record.into_inner().unwrap_or_else(std::sync::PoisonError::into_inner);
        if !record.ended {
            self.tracing.export(self, record.attributes, record.status);
        }
    }
}

impl Span {
    /// The span's own context: what a request forwarded under it carries.
    pub(crate) fn context(&self) -> &SpanContext {
        &self.0.context
    }

    fn recording(&self, change: impl FnOnce(&mut Record)) {
        if let Some(record) = &self.0.record {
            let mut record = record.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
            if !record.ended {
                change(&mut record);
            }
        }
    }

    /// Whether the span is sampled (recorded and exported).
    fn is_recorded(&self) -> bool {
        self.0.record.is_some()
    }

    /// A child of this span, which is not recorded: its ids only, for propagation (nothing of
    /// its name or attributes is made).
    fn unrecorded_child(&self, kind: SpanKind) -> Span {
        self.0.tracing.span(Parent::Local(self), Cow::Borrowed(""), kind, Vec::new())
    }

    fn set_attribute(&self, attribute: KeyValue) {
        self.recording(|record| record.attributes.push(attribute));
    }

    /// End the span now (a second end does nothing).
    pub(crate) fn end(&self) {
        let Some(record) = &self.0.record else { return };
        let (attributes, status) = {
            let mut record = record.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
            if record.ended {
                return;
            }
            record.ended = true;
            (std::mem::take(&mut record.attributes), std::mem::replace(&mut record.status, Status::Unset))
        };
        self.0.tracing.export(&self.0, attributes, status);
    }

    /// Make this span current on this thread until the guard is dropped ([`InSpan`] does, for
    /// the length of one poll).
    fn enter(&self) -> Entered {
        let previous = CURRENT.with(|current| current.replace(Some(self.clone())));
        Entered { previous, not_send: PhantomData }
    }
}

thread_local! {
    /// The span of the request being served on this thread, if it is traced.
    static CURRENT: RefCell<Option<Span>> = const { RefCell::new(None) };
}

/// A span made current ([`Span::enter`]); the one current before comes back when this drops.
struct Entered {
    previous: Option<Span>,
    /// Current on this thread only.
    not_send: PhantomData<*const ()>,
}

impl Drop for Entered {
    fn drop(&mut self) {
        let previous = self.previous.take();
        // During the thread's teardown there is nothing left to restore.
        let _ = CURRENT.try_with(|current| current.replace(previous));
    }
}

/// The span of the request being served on this thread, if it is traced.
pub(crate) fn current() -> Option<Span> {
    CURRENT.try_with(|current| current.borrow().clone()).ok().flatten()
}

pin_project_lite::pin_project! {
    /// A future run with a span current on each poll.
    pub(crate) struct InSpan<F> {
        #[pin]
        future: F,
        span: Span,
    }
}

impl<F: Future> Future for InSpan<F> {
    type Output = F::Output;

    fn poll(self: Pin<&mut Self>, cx: &mut std::task::Context<'_>) -> Poll<F::Output> {
        let this = self.project();
        let _entered = this.span.enter();
        this.future.poll(cx)
    }
}

/// Running a future under a request's span.
pub(crate) trait FutureExt: Future + Sized {
    /// Poll this future with `span` current.
    fn in_span(self, span: Span) -> InSpan<Self> {
        InSpan { future: self, span }
    }
}

impl<F: Future> FutureExt for F {}

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

/// End `span` (from [`Tracing::request`] or [`send`]) with how its request ended.
pub(crate) fn end_request(span: &Span, ending: Ending<'_>) {
    record(span, ending);
    span.end();
}

/// Record on the span of the request being served, if it is traced, how it ended, before the
/// span itself ends (a relayed answer is read below the code that ends the span).
pub(crate) fn record_current(ending: Ending<'_>) {
    if let Some(span) = current() {
        record(&span, ending);
    }
}

/// Record on `span` how its request ended.
fn record(span: &Span, ending: Ending<'_>) {
    span.recording(|record| match ending {
        Ending::Ok => {}
        Ending::ToolError => {
            record.attributes.push(KeyValue::new("error.type", "tool_error"));
            record.status = Status::error("");
        }
        Ending::Error { code, message } => {
            let code = code.to_string();
            record.attributes.push(KeyValue::new("error.type", code.clone()));
            record.attributes.push(KeyValue::new("rpc.response.status_code", code));
            // An error's message may hold a caller's text (an unknown tool's name) or a peer's.
            let message = if message.len() > MAX_SPAN_TEXT { clip(&message) } else { message.into_owned() };
            record.status = Status::error(message);
        }
        Ending::Failed { kind, message } => {
            record.attributes.push(KeyValue::new("error.type", kind));
            record.status = Status::error(message);
        }
    });
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

/// Start the span of a request this host sends to `peer` on behalf of the request being
/// served, as its child (kind CLIENT); `None` when that request is not traced. End it with
/// [`end_request`]; its context goes into the forwarded request's `_meta` with [`inject`].
/// `id` is the forwarded request's JSON-RPC id when it is known before it is sent (otherwise
/// [`set_request_id`] records it).
pub(crate) fn send(method: &str, target: Option<&str>, peer: &str, id: Option<&dyn Display>) -> Option<Span> {
    let parent = current()?;
    if !parent.is_recorded() {
        return Some(parent.unrecorded_child(SpanKind::Client));
    }
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
    Some(parent.0.tracing.span(Parent::Local(&parent), Cow::Owned(name), SpanKind::Client, attributes))
}

/// Write `span`'s context into a forwarded request's `_meta` as `traceparent` (and
/// `tracestate`), replacing the caller's: the peer's span is then the child of this host's.
pub(crate) fn inject(span: &Span, meta: &mut Map<String, Value>) {
    let context = span.context();
    meta.insert(TRACEPARENT.to_owned(), Value::String(trace_context::format(context)));
    let state = context.trace_state().header();
    if state.is_empty() {
        meta.remove(TRACESTATE);
    } else {
        meta.insert(TRACESTATE.to_owned(), Value::String(state));
    }
}

/// Record the JSON-RPC request id a forwarded request got (known once it is sent).
pub(crate) fn set_request_id(span: &Span, id: &dyn Display) {
    span.recording(|record| record.attributes.push(request_id(id)));
}

/// A request's `jsonrpc.request.id` attribute (a caller's id, clipped like any caller's text).
fn request_id(id: &dyn Display) -> KeyValue {
    KeyValue::new("jsonrpc.request.id", crate::text::clip(id.to_string(), MAX_SPAN_TEXT))
}

/// The span of one plugin call (instantiating its sandbox and running the export), the child
/// of the request being served; `None` when that request is not traced. Ended on drop.
pub(crate) struct PluginSpan {
    span: Span,
}

impl PluginSpan {
    pub(crate) fn start(plugin: &str, method: &'static str, target: &str) -> Option<Self> {
        let parent = current()?;
        if !parent.is_recorded() {
            return Some(Self { span: parent.unrecorded_child(SpanKind::Internal) });
        }
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
        let span = parent.0.tracing.span(Parent::Local(&parent), Cow::Owned(name), SpanKind::Internal, attributes);
        Some(Self { span })
    }

    /// How long instantiating the sandbox took.
    pub(crate) fn instantiated(&mut self, took: Duration) {
        self.span.set_attribute(KeyValue::new("fedmcp.plugin.instantiate_us", took.as_micros() as i64));
    }

    /// The call failed with `error`.
    pub(crate) fn failed(&mut self, kind: &'static str, error: &dyn Display) {
        self.span.recording(|record| {
            record.attributes.push(KeyValue::new("error.type", kind));
            record.status = Status::error(clip(&error.to_string()));
        });
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
