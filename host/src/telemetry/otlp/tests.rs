use std::borrow::Cow;
use std::time::Duration;

use opentelemetry::trace::{SpanContext, SpanKind, TraceFlags, TraceId, TraceState};
use opentelemetry::{Array, StringValue};
use opentelemetry_sdk::trace::{SpanEvents, SpanLinks};
use proptest::prelude::*;
use prost::Message;

use super::*;

fn resource() -> Resource {
    Resource::builder_empty()
        .with_service_name("gateway-a")
        .with_attribute(KeyValue::new("host.replicas", 3))
        .with_schema_url(Vec::<KeyValue>::new(), "https://opentelemetry.io/schemas/1.30.0")
        .build()
}

/// What opentelemetry-proto's own conversion makes of `spans`: what the bytes must decode to.
fn reference(resource: &Resource, spans: Vec<SpanData>) -> ExportTraceServiceRequest {
    ExportTraceServiceRequest { resource_spans: group_spans_by_resource_and_scope(spans, &resource.into()) }
}

/// `spans` encoded one by one, as the span queue encodes them, then as one batch.
fn protobuf(resource: &Resource, spans: Vec<SpanData>) -> Vec<u8> {
    let mut scopes: Vec<Scope> = Vec::new();
    let mut encoded = Vec::new();
    for span in spans {
        let fields = encode(&span);
        let at = match scopes.iter().position(|known| known.scope == span.instrumentation_scope) {
            Some(at) => at,
            None => {
                scopes.push(Scope::new(span.instrumentation_scope.clone()));
                scopes.len() - 1
            }
        };
        encoded.push((at, fields));
    }
    Batches::new(resource).protobuf(&scopes, &encoded)
}

/// A span's fields as the host encodes its own spans (which have no events, links or dropped
/// attributes).
fn encode(span: &SpanData) -> Vec<u8> {
    assert!(span.events.events.is_empty() && span.links.links.is_empty() && span.dropped_attributes_count == 0);
    encode_fields(&SpanFields {
        context: &span.span_context,
        parent_span_id: span.parent_span_id,
        parent_is_remote: span.parent_span_is_remote,
        name: &span.name,
        kind: &span.span_kind,
        start: span.start_time,
        end: span.end_time,
        attributes: &span.attributes,
        status: &span.status,
    })
}

/// The request `spans` make, read back; its size is the reference's (no field written twice
/// or written at its default, which decoding alone would not show).
fn decoded(resource: &Resource, spans: Vec<SpanData>) -> ExportTraceServiceRequest {
    let size = reference(resource, spans.clone()).encoded_len();
    let body = protobuf(resource, spans);
    assert_eq!(body.len(), size, "the same size as prost's encoding of the reference");
    ExportTraceServiceRequest::decode(body.as_slice()).expect("the body is an ExportTraceServiceRequest")
}

fn context(trace: u128, span: u64, sampled: bool, remote: bool, state: &str) -> SpanContext {
    let flags = if sampled { TraceFlags::SAMPLED } else { TraceFlags::default() };
    let state = TraceState::from_key_value(
        state.split(',').filter(|pair| !pair.is_empty()).filter_map(|pair| pair.split_once('=')),
    )
    .expect("a valid trace state");
    SpanContext::new(TraceId::from(trace), SpanId::from(span), flags, remote, state)
}

fn span(name: impl Into<Cow<'static, str>>, scope: &InstrumentationScope, attributes: Vec<KeyValue>) -> SpanData {
    SpanData {
        span_context: context(0x4bf92f3577b34da6a3ce929d0e0e4736, 0x00f067aa0ba902b7, true, false, ""),
        parent_span_id: SpanId::INVALID,
        parent_span_is_remote: false,
        span_kind: SpanKind::Server,
        name: name.into(),
        start_time: UNIX_EPOCH + Duration::from_nanos(1_764_800_000_123_456_789),
        end_time: UNIX_EPOCH + Duration::from_nanos(1_764_800_000_223_456_789),
        attributes,
        dropped_attributes_count: 0,
        events: SpanEvents::default(),
        links: SpanLinks::default(),
        status: Status::Unset,
        instrumentation_scope: scope.clone(),
    }
}

/// Every kind of value an attribute can hold, defaults included (written although zero).
fn every_value() -> Vec<KeyValue> {
    vec![
        KeyValue::new("mcp.method.name", "tools/call"),
        KeyValue::new("empty", ""),
        KeyValue::new("", "a value under an empty key"),
        KeyValue::new("yes", true),
        KeyValue::new("no", false),
        KeyValue::new("zero", 0_i64),
        KeyValue::new("negative", -7_i64),
        KeyValue::new("large", i64::MAX),
        KeyValue::new("float", 2.5_f64),
        KeyValue::new("float.zero", 0.0_f64),
        KeyValue::new("bools", Value::Array(Array::Bool(vec![true, false]))),
        KeyValue::new("ints", Value::Array(Array::I64(vec![1, -1, 0]))),
        KeyValue::new("floats", Value::Array(Array::F64(vec![0.5]))),
        KeyValue::new("strings", Value::Array(Array::String(vec![StringValue::from("a"), StringValue::from("")]))),
        KeyValue::new("no.strings", Value::Array(Array::String(Vec::new()))),
        KeyValue::new("unicode", "héllo ✓"),
    ]
}

#[test]
fn a_batch_decodes_to_what_opentelemetry_proto_makes_of_it() {
    let fedmcp = InstrumentationScope::builder("fedmcp").build();
    let other = InstrumentationScope::builder("other")
        .with_version("1.2.3")
        .with_schema_url("https://opentelemetry.io/schemas/1.30.0")
        .with_attributes([KeyValue::new("scope.attribute", "x")])
        .build();

    let mut plain = span("tools/call text-tools__slugify", &fedmcp, every_value());
    plain.status = Status::Ok;

    let mut child = span("plugin text-tools", &fedmcp, vec![KeyValue::new("fedmcp.plugin.instantiate_us", 41)]);
    child.span_context = context(0x4bf92f3577b34da6a3ce929d0e0e4736, 0x1111, false, false, "vendor=x,other=y");
    child.parent_span_id = SpanId::from(0x00f067aa0ba902b7);
    child.parent_span_is_remote = true;
    child.span_kind = SpanKind::Internal;
    child.status = Status::error("the plugin trapped");

    let mut busy = span("MCP send tools/call echo", &other, Vec::new());
    busy.span_kind = SpanKind::Client;
    busy.status = Status::error("");

    let mut before_epoch = span("producer", &fedmcp, Vec::new());
    before_epoch.span_kind = SpanKind::Producer;
    before_epoch.start_time = UNIX_EPOCH - Duration::from_secs(1);
    before_epoch.end_time = UNIX_EPOCH;

    // Long enough for multi-byte lengths at every level (a span over 16 KiB).
    let long_name: String = "n".repeat(300);
    let many: Vec<KeyValue> = (0..400).map(|i| KeyValue::new(format!("key.{i}"), format!("value {i}"))).collect();
    let mut large = span(long_name, &other, many);
    large.span_kind = SpanKind::Consumer;

    let batch = vec![plain, child, busy, before_epoch, large];
    let resource = resource();
    assert_eq!(decoded(&resource, batch.clone()), reference(&resource, batch));
}

#[test]
fn an_empty_batch_and_an_empty_resource_decode_as_the_conversion_has_them() {
    let empty = Resource::builder_empty().build();
    assert_eq!(decoded(&empty, Vec::new()), reference(&empty, Vec::new()));
    let scope = InstrumentationScope::builder("").build();
    let batch = vec![span("", &scope, Vec::new())];
    assert_eq!(decoded(&empty, batch.clone()), reference(&empty, batch));
}

#[test]
fn json_is_opentelemetry_protos_serde_model() {
    let scope = InstrumentationScope::builder("fedmcp").build();
    let batch = vec![span("tools/call echo", &scope, every_value())];
    let resource = resource();
    let json = Batches::new(&resource).json(batch.clone()).expect("the batch serializes");
    let read: ExportTraceServiceRequest = serde_json::from_slice(&json).expect("OTLP JSON reads back");
    assert_eq!(read, reference(&resource, batch));
    let text = String::from_utf8(json).expect("JSON is text");
    assert!(text.contains("\"traceId\":\"4bf92f3577b34da6a3ce929d0e0e4736\""), "{text}");
}

fn value_strategy() -> impl Strategy<Value = Value> {
    prop_oneof![
        any::<bool>().prop_map(Value::Bool),
        any::<i64>().prop_map(Value::I64),
        any::<f64>().prop_filter("NaN is not equal to itself", |f| !f.is_nan()).prop_map(Value::F64),
        ".{0,40}".prop_map(|text: String| Value::String(text.into())),
        proptest::collection::vec(any::<i64>(), 0..4).prop_map(|v| Value::Array(Array::I64(v))),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 64, ..ProptestConfig::default() })]

    #[test]
    fn any_span_decodes_as_the_conversion_has_it(
        name in ".{0,200}",
        attributes in proptest::collection::vec((".{0,20}", value_strategy()), 0..12),
        parent in any::<u64>(),
        kind in 0..5_u8,
        error in proptest::option::of(".{0,30}"),
        start in any::<u64>(),
        length in any::<u32>(),
    ) {
        let scope = InstrumentationScope::builder("fedmcp").build();
        let attributes = attributes.into_iter().map(|(key, value)| KeyValue::new(key, value)).collect();
        let mut data = span(name, &scope, attributes);
        data.parent_span_id = SpanId::from(parent);
        data.span_kind = [SpanKind::Client, SpanKind::Server, SpanKind::Producer, SpanKind::Consumer, SpanKind::Internal][usize::from(kind)].clone();
        data.status = error.map_or(Status::Unset, Status::error);
        data.start_time = UNIX_EPOCH + Duration::from_nanos(start);
        data.end_time = data.start_time + Duration::from_nanos(length.into());
        let resource = resource();
        prop_assert_eq!(decoded(&resource, vec![data.clone()]), reference(&resource, vec![data]));
    }
}
