use std::future::Future;
use std::task::Poll;

use opentelemetry_sdk::trace::{RandomIdGenerator, Sampler};
use serde_json::{Map, Value, json};

use super::*;

const TRACE: &str = "4bf92f3577b34da6a3ce929d0e0e4736";
const CLIENT_SPAN: &str = "00f067aa0ba902b7";

/// A tracer that keeps the spans that end, as the exporter gets them; it samples as the SDK's
/// default does, whatever `OTEL_TRACES_SAMPLER` the tests run under.
fn tracing() -> Tracing {
    let sampler = Box::new(Sampler::ParentBased(Box::new(Sampler::AlwaysOn)));
    let ids = Box::new(RandomIdGenerator::default());
    Tracing { inner: Arc::new(Inner { sampler, ids, sink: Sink::Kept(Mutex::new(Vec::new())) }) }
}

/// The spans `tracing` has ended so far, in the order they ended.
fn ended(tracing: &Tracing) -> Vec<SpanData> {
    match &tracing.inner.sink {
        Sink::Kept(kept) => kept.lock().expect("the kept spans").clone(),
        Sink::Queue { .. } => unreachable!("tests keep their spans"),
    }
}

fn attribute(span: &SpanData, key: &str) -> Option<String> {
    span.attributes.iter().find(|kv| kv.key.as_str() == key).map(|kv| kv.value.to_string())
}

fn meta(value: Value) -> Map<String, Value> {
    match value {
        Value::Object(map) => map,
        _ => Map::new(),
    }
}

fn call(target: &str) -> Request<'_> {
    Request { method: "tools/call", target: Some(target), id: Some(&7), protocol_version: Some("2026-07-28") }
}

#[test]
fn a_request_span_continues_the_trace_in_its_meta() {
    let sent = meta(json!({ "traceparent": format!("00-{TRACE}-{CLIENT_SPAN}-01"), "tracestate": "vendor=x" }));
    let cx = tracing().request(&call("echo"), Some(&sent));
    let context = cx.context();
    assert_eq!(context.trace_id().to_string(), TRACE);
    assert_ne!(context.span_id().to_string(), CLIENT_SPAN);
    assert!(context.is_sampled() && !context.is_remote());
    assert_eq!(context.trace_state().header(), "vendor=x");
    let parent = remote_parent(&sent).expect("a valid traceparent names a parent");
    assert!(parent.is_remote(), "the caller's span is exported as a remote parent");
    assert_eq!(parent.span_id().to_string(), CLIENT_SPAN);
}

#[test]
fn a_request_without_a_valid_traceparent_starts_a_trace() {
    for sent in [json!({}), json!({ "traceparent": "00-nonsense-01" }), json!({ "traceparent": 7 })] {
        let cx = tracing().request(&call("echo"), Some(&meta(sent.clone())));
        let trace = cx.context().trace_id().to_string();
        assert!(cx.context().is_valid(), "{sent}");
        assert_ne!(trace, TRACE);
    }
}

#[test]
fn a_forwarded_request_carries_the_forwarding_span_not_the_callers() {
    let sent = meta(json!({ "traceparent": format!("00-{TRACE}-{CLIENT_SPAN}-01") }));
    let served = tracing().request(&call("b__echo"), Some(&sent));
    let _entered = served.enter();
    let forwarding = send("tools/call", Some("echo"), "b", None).expect("a traced request forwards with a span");
    let mut forwarded = sent.clone();
    inject(&forwarding, &mut forwarded);
    let traceparent = forwarded["traceparent"].as_str().expect("a traceparent").to_owned();
    let forwarding_span = forwarding.context().span_id().to_string();
    assert_eq!(traceparent, format!("00-{TRACE}-{forwarding_span}-01"));
    assert_ne!(forwarding_span, served.context().span_id().to_string());
    assert!(!forwarded.contains_key("tracestate"), "an empty tracestate is left out: {forwarded:?}");
    end_request(&forwarding, Ending::Ok);
    end_request(&served, Ending::Error { code: -32602, message: "bad".into() });
}

#[test]
fn nothing_is_traced_outside_a_traced_request() {
    let tracing = tracing();
    {
        let served = tracing.request(&call("echo"), None);
        let _entered = served.enter();
        assert!(current().is_some());
    }
    assert!(current().is_none(), "the request's span is current only while it is entered");
    assert!(send("tools/call", Some("echo"), "b", None).is_none());
    assert!(PluginSpan::start("text-tools", "tools/call", "slugify").is_none());
}

#[test]
fn a_plugin_span_is_made_inside_a_traced_request() {
    let tracing = tracing();
    let served = tracing.request(&call("text-tools__slugify"), None);
    let entered = served.enter();
    let mut span = PluginSpan::start("text-tools", "tools/call", "slugify").expect("a plugin span");
    span.instantiated(Duration::from_micros(15));
    span.failed("timeout", &"too slow");
    drop(span);
    drop(entered);
    end_request(&served, Ending::Ok);
    let [plugin, request] = <[SpanData; 2]>::try_from(ended(&tracing)).expect("two spans ended");
    assert_eq!(plugin.name, "plugin text-tools");
    assert_eq!(plugin.span_kind, SpanKind::Internal);
    assert_eq!(plugin.parent_span_id, request.span_context.span_id());
    assert!(!plugin.parent_span_is_remote);
    assert_eq!(plugin.span_context.trace_id(), request.span_context.trace_id());
    assert_eq!(attribute(&plugin, "fedmcp.plugin.name").as_deref(), Some("text-tools"));
    assert_eq!(attribute(&plugin, "gen_ai.tool.name").as_deref(), Some("slugify"));
    assert_eq!(attribute(&plugin, "fedmcp.plugin.instantiate_us").as_deref(), Some("15"));
    assert_eq!(attribute(&plugin, "error.type").as_deref(), Some("timeout"));
    assert_eq!(plugin.status, Status::error("too slow"));
    assert_eq!(request.name, "tools/call text-tools__slugify");
    assert_eq!(request.span_kind, SpanKind::Server);
    assert_eq!(request.parent_span_id, SpanId::INVALID, "a request without traceparent starts a trace");
    assert_eq!(attribute(&request, "gen_ai.operation.name").as_deref(), Some("execute_tool"));
    assert_eq!(attribute(&request, "jsonrpc.request.id").as_deref(), Some("7"));
    assert_eq!(attribute(&request, "mcp.protocol.version").as_deref(), Some("2026-07-28"));
    assert_eq!(request.status, Status::Unset);
    assert!(request.start_time <= request.end_time && plugin.end_time <= request.end_time);
}

#[test]
fn a_span_ends_once_whether_ended_twice_or_only_dropped() {
    let tracing = tracing();
    let sent = meta(json!({ "traceparent": format!("00-{TRACE}-{CLIENT_SPAN}-01") }));
    let served = tracing.request(&call("echo"), Some(&sent));
    end_request(&served, Ending::Error { code: -32602, message: "bad".into() });
    end_request(&served, Ending::Error { code: -32000, message: "later".into() });
    drop(served);
    let dropped = tracing.request(&call("echo"), None);
    let entered = dropped.enter();
    drop(send("tools/call", Some("echo"), "b", Some(&3)).expect("a forwarding span"));
    drop(entered);
    drop(dropped);
    let spans = ended(&tracing);
    assert_eq!(spans.len(), 3, "{spans:?}");
    let error = &spans[0];
    assert_eq!(error.parent_span_id.to_string(), CLIENT_SPAN);
    assert!(error.parent_span_is_remote);
    assert_eq!(attribute(error, "error.type").as_deref(), Some("-32602"));
    assert_eq!(attribute(error, "rpc.response.status_code").as_deref(), Some("-32602"));
    assert_eq!(error.status, Status::error("bad"), "the first ending holds");
    assert_eq!(spans[1].name, "MCP send tools/call echo");
    assert_eq!(spans[1].span_kind, SpanKind::Client);
    assert_eq!(attribute(&spans[1], "fedmcp.peer").as_deref(), Some("b"));
    assert_eq!(spans[1].parent_span_id, spans[2].span_context.span_id());
}

#[test]
fn a_trace_its_caller_did_not_sample_records_nothing_and_propagates_its_ids() {
    let tracing = tracing();
    let sent = meta(json!({ "traceparent": format!("00-{TRACE}-{CLIENT_SPAN}-00") }));
    let served = tracing.request(&call("b__echo"), Some(&sent));
    assert!(!served.context().is_sampled());
    let entered = served.enter();
    let forwarding = send("tools/call", Some("echo"), "b", None).expect("ids to propagate");
    assert_eq!(forwarding.context().trace_id().to_string(), TRACE);
    drop(PluginSpan::start("text-tools", "tools/call", "slugify"));
    end_request(&forwarding, Ending::Ok);
    drop(entered);
    end_request(&served, Ending::Ok);
    assert!(ended(&tracing).is_empty(), "nothing of an unsampled trace is exported");
}

#[test]
fn a_span_keeps_at_most_a_few_hundred_bytes_of_any_senders_text() {
    let long = "é".repeat(10_000);
    let clipped = clip(&long);
    assert!(clipped.len() <= MAX_SPAN_TEXT + '…'.len_utf8(), "{}", clipped.len());
    assert!(clipped.ends_with('…'));
    assert_eq!(clip("slugify"), "slugify");
    assert!(span_name("tools/call", Some(&long)).len() < 2 * MAX_SPAN_TEXT);
}

#[test]
fn a_long_tracestate_keeps_the_whole_members_that_fit() {
    let member = |i: usize| format!("vendor{i:03}={}", "v".repeat(40));
    let long: Vec<String> = (0..40).map(member).collect();
    let long = long.join(",");
    let kept = within_tracestate_limit(&long);
    assert!(kept.len() <= MAX_TRACESTATE && kept.len() > MAX_TRACESTATE - 60, "{}", kept.len());
    assert!(long.starts_with(kept) && long[kept.len()..].starts_with(','), "cut at a member's end");
    assert_eq!(within_tracestate_limit("a=1,b=2"), "a=1,b=2");
    // A span continuing a caller's trace keeps only that much.
    let sent = meta(json!({ "traceparent": format!("00-{TRACE}-{CLIENT_SPAN}-01"), "tracestate": long }));
    let cx = tracing().request(&call("echo"), Some(&sent));
    assert_eq!(cx.context().trace_state().header(), kept);
}

#[test]
fn a_forwarded_request_carries_the_callers_tracestate_and_the_forwarding_spans_parent() {
    let sent = meta(json!({ "traceparent": format!("00-{TRACE}-{CLIENT_SPAN}-00"), "tracestate": "vendor=x,other=y" }));
    let served = tracing().request(&call("b__echo"), Some(&sent));
    let entered = served.enter();
    let forwarding = send("tools/call", Some("echo"), "b", Some(&7)).expect("a traced request forwards with a span");
    let mut forwarded = sent.clone();
    inject(&forwarding, &mut forwarded);
    assert_eq!(forwarded["tracestate"], "vendor=x,other=y");
    let forwarding_span = forwarding.context().span_id().to_string();
    // The caller did not sample: neither does this host, and the peer is told so.
    assert_eq!(forwarded["traceparent"], format!("00-{TRACE}-{forwarding_span}-00"));
    let garbled = meta(json!({ "traceparent": "00-nonsense-01", "tracestate": "vendor=x" }));
    let mut forwarded = garbled.clone();
    drop(entered);
    let served = tracing().request(&call("b__echo"), Some(&garbled));
    let _entered = served.enter();
    let forwarding = send("tools/call", Some("echo"), "b", None).expect("a traced request forwards with a span");
    inject(&forwarding, &mut forwarded);
    assert!(!forwarded.contains_key("tracestate"), "a new trace has no tracestate: {forwarded:?}");
    assert_ne!(forwarded["traceparent"], garbled["traceparent"]);
}

#[test]
fn a_json_rpc_id_is_recorded_as_its_text_or_its_digits() {
    assert_eq!(JsonId(&json!(7)).to_string(), "7");
    assert_eq!(JsonId(&json!(-12.5)).to_string(), "-12.5");
    assert_eq!(JsonId(&json!("call-7")).to_string(), "call-7");
    assert_eq!(JsonId(&json!(null)).to_string(), "null");
}

/// A future that is pending at its first poll and ready at its second, saying each time which
/// span was current.
struct TwoPolls {
    polls: u8,
    seen: Arc<Mutex<Vec<Option<SpanId>>>>,
}

impl Future for TwoPolls {
    type Output = ();

    fn poll(mut self: Pin<&mut Self>, cx: &mut std::task::Context<'_>) -> Poll<()> {
        self.seen.lock().expect("seen").push(current().map(|span| span.context().span_id()));
        self.polls += 1;
        if self.polls < 2 {
            cx.waker().wake_by_ref();
            return Poll::Pending;
        }
        Poll::Ready(())
    }
}

#[tokio::test]
async fn a_span_is_current_only_while_its_future_is_polled_and_the_outer_one_comes_back() {
    let tracing = tracing();
    let outer = tracing.request(&call("outer"), None);
    let inner = tracing.request(&call("inner"), None);
    let seen = Arc::new(Mutex::new(Vec::new()));
    let (outer_id, inner_id) = (outer.context().span_id(), inner.context().span_id());
    let nested = {
        let seen = seen.clone();
        async move {
            seen.lock().expect("seen").push(current().map(|span| span.context().span_id()));
            TwoPolls { polls: 0, seen: seen.clone() }.in_span(inner).await;
            seen.lock().expect("seen").push(current().map(|span| span.context().span_id()));
        }
    };
    let mut nested = std::pin::pin!(nested.in_span(outer));
    // The first poll stops at the inner future's Pending: nothing is current between polls.
    assert!(futures::poll!(nested.as_mut()).is_pending());
    assert!(current().is_none(), "a span is current only during a poll");
    assert!(futures::poll!(nested.as_mut()).is_ready());
    assert!(current().is_none());
    let seen = seen.lock().expect("seen").clone();
    assert_eq!(seen, [Some(outer_id), Some(inner_id), Some(inner_id), Some(outer_id)]);
}

#[test]
fn a_panic_inside_a_poll_leaves_nothing_current() {
    let served = tracing().request(&call("echo"), None);
    let panicking = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        let future = std::pin::pin!(async { panic!("the handler panicked") }.in_span(served));
        let waker = std::task::Waker::noop();
        let _ = future.poll(&mut std::task::Context::from_waker(waker));
    }));
    assert!(panicking.is_err());
    assert!(current().is_none(), "the span current before the poll (none) is back");
}

/// A local child takes its parent's decision without asking the sampler: that must be what
/// each sampler the SDK's variables can configure would decide for it.
#[test]
fn every_configurable_sampler_decides_a_local_child_as_it_decided_its_parent() {
    let samplers = [
        Sampler::AlwaysOn,
        Sampler::AlwaysOff,
        Sampler::TraceIdRatioBased(0.0),
        Sampler::TraceIdRatioBased(0.3),
        Sampler::TraceIdRatioBased(1.0),
        Sampler::ParentBased(Box::new(Sampler::AlwaysOn)),
        Sampler::ParentBased(Box::new(Sampler::AlwaysOff)),
        Sampler::ParentBased(Box::new(Sampler::TraceIdRatioBased(0.3))),
    ];
    let ids = RandomIdGenerator::default();
    for sampler in samplers {
        for _ in 0..200 {
            let trace_id: TraceId = ids.new_trace_id();
            let root = sampler.should_sample(Some(&Context::new()), trace_id, "root", &SpanKind::Server, &[], &[]);
            let sampled = root.decision == SamplingDecision::RecordAndSample;
            let flags = if sampled { TraceFlags::SAMPLED } else { TraceFlags::default() };
            let parent = SpanContext::new(trace_id, ids.new_span_id(), flags, false, root.trace_state.clone());
            let parent = Context::new().with_remote_span_context(parent);
            let child = sampler.should_sample(Some(&parent), trace_id, "child", &SpanKind::Internal, &[], &[]);
            assert_eq!(child.decision == SamplingDecision::RecordAndSample, sampled, "{sampler:?}");
            assert!(child.attributes.is_empty(), "{sampler:?}");
            assert_eq!(child.trace_state.header(), root.trace_state.header(), "{sampler:?}");
        }
    }
}
