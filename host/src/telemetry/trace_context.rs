//! W3C Trace Context's `traceparent` (Level 1), read from a request's `_meta` and written into
//! a forwarded one's.
//!
//! By hand rather than through the SDK's `TraceContextPropagator`: its extract splits the value
//! into a vector, scans each part for capitals and parses through `from_str_radix`, and its
//! inject goes through `format!` with each id's `Display`; together ~6k instructions per traced
//! federation hop (callgrind, `BENCH_PROFILE=otel-hop` of `cargo bench --bench http_calls`),
//! about a sixth of what tracing the hop cost. Here a value is read in one pass over its 55
//! bytes and written into a string of that size. The tests hold both to the SDK's results.
//!
//! Reading is as the specification says, which is stricter than the SDK on malformed values:
//! ids of exactly 32 and 16 lowercase hex digits (the SDK takes shorter ones), neither all
//! zeros; a version of two lowercase hex digits, not `ff`; version `00` exactly 55 bytes long,
//! a later version at least 55 with a `-` after them. Of the flags only `sampled` is kept.

use opentelemetry::trace::{SpanContext, SpanId, TraceFlags, TraceId};

/// The length of a version-00 `traceparent`: `vv-<32>-<16>-ff`.
const LENGTH: usize = 55;
const HEX: &[u8; 16] = b"0123456789abcdef";

/// The remote parent a `traceparent` names: its trace id, span id and flags (`sampled` only);
/// `None` if it is not one.
pub(super) fn parse(traceparent: &str) -> Option<(TraceId, SpanId, TraceFlags)> {
    let bytes = traceparent.trim().as_bytes();
    if bytes.len() < LENGTH || [2, 35, 52].iter().any(|&at| bytes[at] != b'-') {
        return None;
    }
    let version = hex(&bytes[..2])?;
    let fits = match version {
        0 => bytes.len() == LENGTH,
        0xff => false,
        // A later version may add fields after a `-`; what it starts with is read as 00's.
        _ => bytes.len() == LENGTH || bytes[LENGTH] == b'-',
    };
    if !fits {
        return None;
    }
    let trace_id = hex(&bytes[3..35])?;
    let span_id = hex(&bytes[36..52])?;
    let flags = hex(&bytes[53..55])?;
    if trace_id == 0 || span_id == 0 {
        return None;
    }
    Some((TraceId::from(trace_id), SpanId::from(span_id as u64), TraceFlags::new(flags as u8) & TraceFlags::SAMPLED))
}

/// `context` as a version-00 `traceparent` (of its flags only `sampled`, as the SDK writes it).
pub(super) fn format(context: &SpanContext) -> String {
    let mut text = [b'-'; LENGTH];
    text[..2].copy_from_slice(b"00");
    write_hex(&mut text[3..35], &context.trace_id().to_bytes());
    write_hex(&mut text[36..52], &context.span_id().to_bytes());
    write_hex(&mut text[53..55], &[(context.trace_flags() & TraceFlags::SAMPLED).to_u8()]);
    // Hex digits and dashes only: always UTF-8.
    String::from_utf8_lossy(&text).into_owned()
}

/// The value of 2, 16 or 32 lowercase hex digits; `None` for anything else.
fn hex(digits: &[u8]) -> Option<u128> {
    let mut value = 0u128;
    for &digit in digits {
        let nibble = match digit {
            b'0'..=b'9' => digit - b'0',
            b'a'..=b'f' => digit - b'a' + 10,
            _ => return None,
        };
        value = value << 4 | u128::from(nibble);
    }
    Some(value)
}

/// `bytes` as lowercase hex digits into `out`, two for each.
fn write_hex(out: &mut [u8], bytes: &[u8]) {
    for (pair, &byte) in out.chunks_exact_mut(2).zip(bytes) {
        pair[0] = HEX[usize::from(byte >> 4)];
        pair[1] = HEX[usize::from(byte & 0x0f)];
    }
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;

    use opentelemetry::Context;
    use opentelemetry::propagation::TextMapPropagator;
    use opentelemetry::trace::{TraceContextExt, TraceState};
    use opentelemetry_sdk::propagation::TraceContextPropagator;

    use super::*;

    const TRACE: &str = "4bf92f3577b34da6a3ce929d0e0e4736";
    const SPAN: &str = "00f067aa0ba902b7";

    /// What the SDK's propagator reads from `traceparent`, as [`parse`] answers.
    fn sdk_parse(traceparent: &str) -> Option<(TraceId, SpanId, TraceFlags)> {
        let carrier = HashMap::from([("traceparent".to_owned(), traceparent.to_owned())]);
        let cx = TraceContextPropagator::new().extract(&carrier);
        let span = cx.span();
        let context = span.span_context();
        context.is_valid().then(|| (context.trace_id(), context.span_id(), context.trace_flags()))
    }

    #[test]
    fn a_well_formed_traceparent_reads_as_the_sdk_reads_it() {
        for value in [
            format!("00-{TRACE}-{SPAN}-01"),
            format!("00-{TRACE}-{SPAN}-00"),
            // Unknown flags are kept out; `sampled` stays.
            format!("00-{TRACE}-{SPAN}-ff"),
            format!("00-{TRACE}-{SPAN}-02"),
            format!("  00-{TRACE}-{SPAN}-01 "),
            // A later version: what it starts with is read as version 00's.
            format!("01-{TRACE}-{SPAN}-01"),
            format!("cc-{TRACE}-{SPAN}-01-what-comes-later"),
        ] {
            let ours = parse(&value);
            assert!(ours.is_some(), "{value:?}");
            assert_eq!(ours, sdk_parse(&value), "{value:?}");
        }
    }

    #[test]
    fn a_malformed_traceparent_names_no_parent() {
        let zeros = "0".repeat(32);
        for value in [
            String::new(),
            "00-nonsense-01".to_owned(),
            format!("00-{}-{SPAN}-01", TRACE.to_uppercase()),
            format!("00-{TRACE}-{}-01", SPAN.to_uppercase()),
            format!("00-{TRACE}-{SPAN}-0A"),
            format!("00-{zeros}-{SPAN}-01"),
            format!("00-{TRACE}-{}-01", &zeros[..16]),
            format!("ff-{TRACE}-{SPAN}-01"),
            format!("0g-{TRACE}-{SPAN}-01"),
            // Version 00 has exactly four fields.
            format!("00-{TRACE}-{SPAN}-01-more"),
            format!("01-{TRACE}-{SPAN}-01more"),
            // Ids of the wrong length, which the SDK would take.
            format!("00-{}-{SPAN}-01", &TRACE[1..]),
            format!("00-1-{SPAN}-01"),
            format!("00-{TRACE}-{SPAN}-1"),
            format!("00_{TRACE}_{SPAN}_01"),
            format!("00-{TRACE}_{SPAN}-01"),
            format!("00-{TRACE}-{SPAN}_01"),
            format!("00-+{}-{SPAN}-01", &TRACE[1..]),
            "é".repeat(30),
        ] {
            assert_eq!(parse(&value), None, "{value:?}");
        }
    }

    #[test]
    fn a_written_traceparent_is_what_the_sdk_writes_and_reads_back() {
        for flags in [TraceFlags::SAMPLED, TraceFlags::default(), TraceFlags::new(0xff)] {
            let trace_id = TraceId::from_hex(TRACE).expect("a trace id");
            let span_id = SpanId::from_hex(SPAN).expect("a span id");
            let context = SpanContext::new(trace_id, span_id, flags, false, TraceState::default());
            let mut carrier = HashMap::new();
            TraceContextPropagator::new()
                .inject_context(&Context::new().with_remote_span_context(context.clone()), &mut carrier);
            let written = format(&context);
            assert_eq!(Some(&written), carrier.get("traceparent"));
            assert_eq!(parse(&written), Some((trace_id, span_id, flags & TraceFlags::SAMPLED)));
        }
    }
}
