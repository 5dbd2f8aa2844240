use opentelemetry::Context;
use opentelemetry::trace::TraceContextExt;
use serde_json::{Map, Value, json};

use super::*;

const TRACE: &str = "4bf92f3577b34da6a3ce929d0e0e4736";
const CLIENT_SPAN: &str = "00f067aa0ba902b7";

/// A tracer whose spans go nowhere: what these tests check is made before export.
fn tracing() -> Tracing {
    let provider = SdkTracerProvider::builder().build();
    let tracer = provider.tracer("test");
    Tracing { inner: Arc::new(Inner { tracer, provider, queue: None }) }
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
    let span = cx.span();
    let context = span.span_context();
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
        let trace = cx.span().span_context().trace_id().to_string();
        assert!(cx.span().span_context().is_valid(), "{sent}");
        assert_ne!(trace, TRACE);
    }
}

#[test]
fn a_forwarded_request_carries_the_forwarding_span_not_the_callers() {
    let sent = meta(json!({ "traceparent": format!("00-{TRACE}-{CLIENT_SPAN}-01") }));
    let served = tracing().request(&call("b__echo"), Some(&sent));
    let _attached = served.clone().attach();
    let forwarding = send("tools/call", Some("echo"), "b", None).expect("a traced request forwards with a span");
    let mut forwarded = sent.clone();
    inject(&forwarding, &mut forwarded);
    let traceparent = forwarded["traceparent"].as_str().expect("a traceparent").to_owned();
    let forwarding_span = forwarding.span().span_context().span_id().to_string();
    assert_eq!(traceparent, format!("00-{TRACE}-{forwarding_span}-01"));
    assert_ne!(forwarding_span, served.span().span_context().span_id().to_string());
    assert!(!forwarded.contains_key("tracestate"), "an empty tracestate is left out: {forwarded:?}");
    end_request(&forwarding, Ending::Ok);
    end_request(&served, Ending::Error { code: -32602, message: "bad".into() });
}

#[test]
fn nothing_is_traced_outside_a_traced_request() {
    let _empty = Context::new().attach();
    assert!(!is_traced());
    assert!(send("tools/call", Some("echo"), "b", None).is_none());
    assert!(PluginSpan::start("text-tools", "tools/call", "slugify").is_none());
    let mut forwarded = meta(json!({ "traceparent": format!("00-{TRACE}-{CLIENT_SPAN}-01") }));
    let before = forwarded.clone();
    inject(&Context::new(), &mut forwarded);
    assert_eq!(forwarded, before, "an untraced host passes the caller's context on as it came");
}

#[test]
fn a_plugin_span_is_made_inside_a_traced_request() {
    let served = tracing().request(&call("text-tools__slugify"), None);
    let _attached = served.attach();
    assert!(is_traced());
    let mut span = PluginSpan::start("text-tools", "tools/call", "slugify").expect("a plugin span");
    span.instantiated(Duration::from_micros(15));
    span.failed("timeout", &"too slow");
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
    assert_eq!(cx.span().span_context().trace_state().header(), kept);
}

#[test]
fn a_forwarded_request_carries_the_callers_tracestate_and_the_forwarding_spans_parent() {
    let sent = meta(json!({ "traceparent": format!("00-{TRACE}-{CLIENT_SPAN}-00"), "tracestate": "vendor=x,other=y" }));
    let served = tracing().request(&call("b__echo"), Some(&sent));
    let _attached = served.clone().attach();
    let forwarding = send("tools/call", Some("echo"), "b", Some(&7)).expect("a traced request forwards with a span");
    let mut forwarded = sent.clone();
    inject(&forwarding, &mut forwarded);
    assert_eq!(forwarded["tracestate"], "vendor=x,other=y");
    let forwarding_span = forwarding.span().span_context().span_id().to_string();
    // The caller did not sample: neither does this host, and the peer is told so.
    assert_eq!(forwarded["traceparent"], format!("00-{TRACE}-{forwarding_span}-00"));
    let garbled = meta(json!({ "traceparent": "00-nonsense-01", "tracestate": "vendor=x" }));
    let mut forwarded = garbled.clone();
    let served = tracing().request(&call("b__echo"), Some(&garbled));
    let _attached = served.clone().attach();
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
