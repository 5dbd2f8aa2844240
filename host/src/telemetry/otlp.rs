//! A batch of spans as the body of an OTLP/HTTP export (`ExportTraceServiceRequest`), in
//! protobuf or JSON.
//!
//! JSON goes through opentelemetry-proto's conversion and serde model, as the OTLP exporter
//! crate does it. Protobuf is written span by span: `prost::Message::encode_to_vec` on that
//! model measures every nested message again at each level above it (an attribute's value six
//! levels deep), after a conversion that allocates every key and value once more; that came to
//! ~10k instructions a span, most of what tracing a request cost (`http_calls` under
//! callgrind). Here a span's scalar fields and plain attributes (string, bool, integer, float)
//! are written once with prost's wire primitives (the host's spans have no events or links),
//! and what is rare in a span (array values) and what is written once a batch (resource,
//! scope) is converted by opentelemetry-proto and encoded by prost as before. The tests decode the
//! bytes with prost and compare them with opentelemetry-proto's own conversion of the batch.

use opentelemetry::trace::{SpanContext, SpanId, SpanKind, Status};
use opentelemetry::{InstrumentationScope, KeyValue, Value};
use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
use opentelemetry_proto::tonic::common::v1 as proto_common;
use opentelemetry_proto::tonic::resource::v1::Resource as ProtoResource;
use opentelemetry_proto::tonic::trace::v1::{SpanFlags, span, status};
use opentelemetry_proto::transform::common::tonic::ResourceAttributesWithSchema;
use opentelemetry_proto::transform::trace::tonic::group_spans_by_resource_and_scope;
use opentelemetry_sdk::Resource;
use opentelemetry_sdk::trace::SpanData;
use prost::encoding::{WireType, encoded_len_varint, key_len};
use std::borrow::Borrow;
use std::time::{SystemTime, UNIX_EPOCH};

/// Field numbers of the OTLP trace messages (opentelemetry-proto's `trace.proto`, v1).
mod field {
    pub(super) const REQUEST_RESOURCE_SPANS: u32 = 1;
    pub(super) const RESOURCE_SPANS_RESOURCE: u32 = 1;
    pub(super) const RESOURCE_SPANS_SCOPE_SPANS: u32 = 2;
    pub(super) const RESOURCE_SPANS_SCHEMA_URL: u32 = 3;
    pub(super) const SCOPE_SPANS_SCOPE: u32 = 1;
    pub(super) const SCOPE_SPANS_SPANS: u32 = 2;
    pub(super) const SCOPE_SPANS_SCHEMA_URL: u32 = 3;
    pub(super) const SPAN_TRACE_ID: u32 = 1;
    pub(super) const SPAN_SPAN_ID: u32 = 2;
    pub(super) const SPAN_TRACE_STATE: u32 = 3;
    pub(super) const SPAN_PARENT_SPAN_ID: u32 = 4;
    pub(super) const SPAN_NAME: u32 = 5;
    pub(super) const SPAN_KIND: u32 = 6;
    pub(super) const SPAN_START_TIME: u32 = 7;
    pub(super) const SPAN_END_TIME: u32 = 8;
    pub(super) const SPAN_ATTRIBUTES: u32 = 9;
    pub(super) const SPAN_STATUS: u32 = 15;
    pub(super) const SPAN_FLAGS: u32 = 16;
    pub(super) const STATUS_MESSAGE: u32 = 2;
    pub(super) const STATUS_CODE: u32 = 3;
    pub(super) const KEY_VALUE_KEY: u32 = 1;
    pub(super) const KEY_VALUE_VALUE: u32 = 2;
    pub(super) const ANY_STRING: u32 = 1;
    pub(super) const ANY_BOOL: u32 = 2;
    pub(super) const ANY_INT: u32 = 3;
    pub(super) const ANY_DOUBLE: u32 = 4;
}

/// About what one of the host's spans takes encoded (a request's span ~300 bytes, a plugin
/// call's ~250).
const TYPICAL_SPAN_BYTES: usize = 320;

/// A span as the writer reads it: what one of the host's spans holds when it ends (no events,
/// links or dropped attributes: the host records none).
pub(super) struct SpanFields<'a> {
    pub(super) context: &'a SpanContext,
    pub(super) parent_span_id: SpanId,
    pub(super) parent_is_remote: bool,
    pub(super) name: &'a str,
    pub(super) kind: &'a SpanKind,
    pub(super) start: SystemTime,
    pub(super) end: SystemTime,
    pub(super) attributes: &'a [KeyValue],
    pub(super) status: &'a Status,
}

/// One of the host's spans encoded: the fields of its `Span` message (without tag or length).
pub(super) fn encode_fields(span: &SpanFields<'_>) -> Vec<u8> {
    let mut fields = Vec::with_capacity(TYPICAL_SPAN_BYTES);
    write_span(span, &mut fields);
    fields
}

/// An instrumentation scope, with its `ScopeSpans.scope` field encoded.
#[derive(Debug)]
pub(super) struct Scope {
    scope: InstrumentationScope,
    /// `ScopeSpans.scope`, tag and length included.
    field: Vec<u8>,
}

impl Scope {
    pub(super) fn new(scope: InstrumentationScope) -> Self {
        let proto: proto_common::InstrumentationScope = (&scope, None).into();
        let mut field = Vec::new();
        prost::encoding::message::encode(field::SCOPE_SPANS_SCOPE, &proto, &mut field);
        Self { scope, field }
    }

    fn schema_url(&self) -> &str {
        self.scope.schema_url().unwrap_or_default()
    }
}

/// Encodes the batches of one exporter: the resource is the same in every batch.
#[derive(Debug)]
pub(super) struct Batches {
    resource: ResourceAttributesWithSchema,
    /// `ResourceSpans.resource`, tag and length included.
    resource_field: Vec<u8>,
}

impl Batches {
    pub(super) fn new(resource: &Resource) -> Self {
        let resource = ResourceAttributesWithSchema::from(resource);
        let proto = ProtoResource {
            attributes: resource.attributes.0.clone(),
            dropped_attributes_count: 0,
            entity_refs: Vec::new(),
        };
        let mut resource_field = Vec::new();
        prost::encoding::message::encode(field::RESOURCE_SPANS_RESOURCE, &proto, &mut resource_field);
        Self { resource, resource_field }
    }

    /// `spans` as OTLP JSON (`application/json`).
    pub(super) fn json(&self, spans: Vec<SpanData>) -> serde_json::Result<Vec<u8>> {
        let request =
            ExportTraceServiceRequest { resource_spans: group_spans_by_resource_and_scope(spans, &self.resource) };
        serde_json::to_vec(&request)
    }

    /// Encoded spans (each its scope's index in `scopes` and its [`encode_fields`] bytes) as OTLP
    /// protobuf (`application/x-protobuf`): one `ResourceSpans` with a `ScopeSpans` for each
    /// scope, in the order the scopes first appear in `spans`.
    pub(super) fn protobuf<S: Borrow<Scope>>(&self, scopes: &[S], spans: &[(usize, Vec<u8>)]) -> Vec<u8> {
        let mut order: Vec<usize> = Vec::new();
        for (scope, _) in spans {
            if !order.contains(scope) {
                order.push(*scope);
            }
        }
        let scope_len = |at: usize| {
            let scope: &Scope = scopes[at].borrow();
            scope.field.len()
                + spans
                    .iter()
                    .filter(|(of, _)| *of == at)
                    .map(|(_, span)| key_len(field::SCOPE_SPANS_SPANS) + length_prefixed(span.len()))
                    .sum::<usize>()
                + string_len(field::SCOPE_SPANS_SCHEMA_URL, scope.schema_url())
        };
        let scope_lengths: Vec<usize> = order.iter().map(|&at| scope_len(at)).collect();

        let resource_schema_url = self.resource.schema_url.as_deref().unwrap_or_default();
        let resource_spans_len = self.resource_field.len()
            + scope_lengths
                .iter()
                .map(|&len| key_len(field::RESOURCE_SPANS_SCOPE_SPANS) + length_prefixed(len))
                .sum::<usize>()
            + string_len(field::RESOURCE_SPANS_SCHEMA_URL, resource_schema_url);
        let body_len = key_len(field::REQUEST_RESOURCE_SPANS) + length_prefixed(resource_spans_len);
        let mut body = Vec::with_capacity(body_len);
        put_key(field::REQUEST_RESOURCE_SPANS, WireType::LengthDelimited, &mut body);
        varint(resource_spans_len as u64, &mut body);
        body.extend_from_slice(&self.resource_field);
        for (&at, len) in order.iter().zip(scope_lengths) {
            let scope: &Scope = scopes[at].borrow();
            put_key(field::RESOURCE_SPANS_SCOPE_SPANS, WireType::LengthDelimited, &mut body);
            varint(len as u64, &mut body);
            body.extend_from_slice(&scope.field);
            for (_, span) in spans.iter().filter(|(of, _)| *of == at) {
                put_bytes(field::SCOPE_SPANS_SPANS, span, &mut body);
            }
            put_string(field::SCOPE_SPANS_SCHEMA_URL, scope.schema_url(), &mut body);
        }
        put_string(field::RESOURCE_SPANS_SCHEMA_URL, resource_schema_url, &mut body);
        debug_assert_eq!(body.len(), body_len, "the lengths written are the lengths computed");
        body
    }
}

/// The fields of one `Span` message, as opentelemetry-proto's `From<SpanData>` fills them.
fn write_span(span: &SpanFields<'_>, out: &mut Vec<u8>) {
    let context = span.context;
    put_bytes(field::SPAN_TRACE_ID, &context.trace_id().to_bytes(), out);
    put_bytes(field::SPAN_SPAN_ID, &context.span_id().to_bytes(), out);
    put_string(field::SPAN_TRACE_STATE, &context.trace_state().header(), out);
    if span.parent_span_id != SpanId::INVALID {
        put_bytes(field::SPAN_PARENT_SPAN_ID, &span.parent_span_id.to_bytes(), out);
    }
    put_string(field::SPAN_NAME, span.name, out);
    put_varint(field::SPAN_KIND, span::SpanKind::from(span.kind.clone()) as i32 as u64, out);
    put_fixed64(field::SPAN_START_TIME, to_nanos(span.start), out);
    put_fixed64(field::SPAN_END_TIME, to_nanos(span.end), out);
    for attribute in span.attributes {
        put_attribute(field::SPAN_ATTRIBUTES, attribute, out);
    }

    // Always present, an unset status included (an empty message), as the conversion has it.
    let code = status::StatusCode::from(span.status) as i32 as u64;
    let message = match span.status {
        Status::Error { description } => description.as_ref(),
        _ => "",
    };
    let status_len = string_len(field::STATUS_MESSAGE, message) + varint_len(field::STATUS_CODE, code);
    put_key(field::SPAN_STATUS, WireType::LengthDelimited, out);
    varint(status_len as u64, out);
    put_string(field::STATUS_MESSAGE, message, out);
    put_varint(field::STATUS_CODE, code, out);

    let mut flags = u32::from(context.trace_flags().to_u8()) | SpanFlags::ContextHasIsRemoteMask as u32;
    if span.parent_is_remote {
        flags |= SpanFlags::ContextIsRemoteMask as u32;
    }
    put_key(field::SPAN_FLAGS, WireType::ThirtyTwoBit, out);
    out.extend_from_slice(&flags.to_le_bytes());
}

/// An attribute value written directly.
#[derive(Clone, Copy)]
enum Plain<'a> {
    Text(&'a str),
    Flag(bool),
    Integer(i64),
    Float(f64),
}

/// One `KeyValue` field: a plain value written directly, any other through opentelemetry-proto.
fn put_attribute(tag: u32, attribute: &KeyValue, out: &mut Vec<u8>) {
    let key = attribute.key.as_str();
    let plain = match &attribute.value {
        Value::String(text) => Plain::Text(text.as_str()),
        Value::Bool(flag) => Plain::Flag(*flag),
        Value::I64(number) => Plain::Integer(*number),
        Value::F64(number) => Plain::Float(*number),
        _ => {
            let proto = proto_common::KeyValue {
                key: key.to_owned(),
                value: Some(attribute.value.clone().into()),
                key_strindex: 0,
            };
            prost::encoding::message::encode(tag, &proto, out);
            return;
        }
    };
    let value_len = match plain {
        Plain::Text(text) => key_len(field::ANY_STRING) + length_prefixed(text.len()),
        Plain::Flag(_) => key_len(field::ANY_BOOL) + 1,
        Plain::Integer(number) => key_len(field::ANY_INT) + encoded_len_varint(number as u64),
        Plain::Float(_) => key_len(field::ANY_DOUBLE) + 8,
    };
    let len = string_len(field::KEY_VALUE_KEY, key) + key_len(field::KEY_VALUE_VALUE) + length_prefixed(value_len);
    put_key(tag, WireType::LengthDelimited, out);
    varint(len as u64, out);
    put_string(field::KEY_VALUE_KEY, key, out);
    put_key(field::KEY_VALUE_VALUE, WireType::LengthDelimited, out);
    varint(value_len as u64, out);
    // A value of a oneof is written even when it is its type's default.
    match plain {
        Plain::Text(text) => put_bytes(field::ANY_STRING, text.as_bytes(), out),
        Plain::Flag(flag) => {
            put_key(field::ANY_BOOL, WireType::Varint, out);
            varint(u64::from(flag), out);
        }
        Plain::Integer(number) => {
            put_key(field::ANY_INT, WireType::Varint, out);
            varint(number as u64, out);
        }
        Plain::Float(number) => {
            put_key(field::ANY_DOUBLE, WireType::SixtyFourBit, out);
            out.extend_from_slice(&number.to_le_bytes());
        }
    }
}

/// A field's key (prost's `encode_key`); every key of these messages but `Span.flags` is one byte.
#[inline]
fn put_key(tag: u32, wire_type: WireType, out: &mut Vec<u8>) {
    varint(u64::from((tag << 3) | wire_type as u32), out);
}

/// prost's `encode_varint`, a value under 128 (every key, most lengths) pushed as its one byte.
#[inline]
fn varint(value: u64, out: &mut Vec<u8>) {
    if value < 0x80 {
        out.push(value as u8);
    } else {
        prost::encoding::encode_varint(value, out);
    }
}

#[inline]
fn to_nanos(time: SystemTime) -> u64 {
    time.duration_since(UNIX_EPOCH).unwrap_or_default().as_nanos() as u64
}

#[inline]
fn length_prefixed(len: usize) -> usize {
    encoded_len_varint(len as u64) + len
}

/// A length-delimited field, written even when empty (an id, a nested message).
#[inline]
fn put_bytes(tag: u32, bytes: &[u8], out: &mut Vec<u8>) {
    put_key(tag, WireType::LengthDelimited, out);
    varint(bytes.len() as u64, out);
    out.extend_from_slice(bytes);
}

/// A proto3 string field: left out when empty.
#[inline]
fn put_string(tag: u32, text: &str, out: &mut Vec<u8>) {
    if !text.is_empty() {
        put_bytes(tag, text.as_bytes(), out);
    }
}

#[inline]
fn string_len(tag: u32, text: &str) -> usize {
    if text.is_empty() { 0 } else { key_len(tag) + length_prefixed(text.len()) }
}

/// A proto3 integer or enum field: left out when zero.
#[inline]
fn put_varint(tag: u32, value: u64, out: &mut Vec<u8>) {
    if value != 0 {
        put_key(tag, WireType::Varint, out);
        varint(value, out);
    }
}

#[inline]
fn varint_len(tag: u32, value: u64) -> usize {
    if value == 0 { 0 } else { key_len(tag) + encoded_len_varint(value) }
}

#[inline]
fn put_fixed64(tag: u32, value: u64, out: &mut Vec<u8>) {
    if value != 0 {
        put_key(tag, WireType::SixtyFourBit, out);
        out.extend_from_slice(&value.to_le_bytes());
    }
}

#[cfg(test)]
mod tests;
