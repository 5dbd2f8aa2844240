//! OpenTelemetry traces across hosts: a client's `traceparent` in `_meta` reaches host A,
//! A forwards the call to host B, and B's plugin serves it; an OTLP/HTTP receiver started by
//! the test decodes what both hosts export (A in protobuf, B in JSON) and finds one trace,
//! parented client → A's request → A's forwarding → B's request → B's plugin call.

use std::collections::HashMap;
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::body::Bytes;
use axum::http::{HeaderMap, header};
use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
use prost::Message as _;
use serde_json::{Value, json};

use crate::support::{LegacySession, Server, StatelessClient, example_plugins};

const PATIENCE: Duration = Duration::from_secs(30);
const TOOL_ON_A: &str = "b__text-tools__slugify";
const TOOL_ON_B: &str = "text-tools__slugify";

/// One span as the receiver decoded it.
#[derive(Debug, Clone)]
struct Received {
    service: String,
    trace_id: String,
    span_id: String,
    parent_span_id: String,
    name: String,
    /// SERVER = 2, CLIENT = 3, INTERNAL = 1 (OTLP's `SpanKind`).
    kind: i64,
    attributes: HashMap<String, String>,
}

/// An OTLP/HTTP receiver on 127.0.0.1 taking `POST /v1/traces` in protobuf or JSON.
struct Receiver {
    endpoint: String,
    spans: Arc<Mutex<Vec<Received>>>,
    /// Which encodings each service exported in.
    encodings: Arc<Mutex<Vec<(String, &'static str)>>>,
}

impl Receiver {
    async fn start() -> Self {
        let spans: Arc<Mutex<Vec<Received>>> = Arc::default();
        let encodings: Arc<Mutex<Vec<(String, &'static str)>>> = Arc::default();
        let app = axum::Router::new()
            .route("/v1/traces", axum::routing::post(receive))
            .with_state((spans.clone(), encodings.clone()));
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind the receiver");
        let endpoint = format!("http://{}", listener.local_addr().expect("its address"));
        tokio::spawn(async move { axum::serve(listener, app).await });
        Self { endpoint, spans, encodings }
    }

    /// The spans of `trace_id` once `done` holds for them, or what came within [`PATIENCE`].
    async fn trace(&self, trace_id: &str, done: impl Fn(&[Received]) -> bool) -> Vec<Received> {
        let deadline = Instant::now() + PATIENCE;
        loop {
            let spans: Vec<Received> =
                self.spans.lock().expect("the spans").iter().filter(|s| s.trace_id == trace_id).cloned().collect();
            if done(&spans) || Instant::now() > deadline {
                return spans;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
}

/// What the receiver keeps: the spans, and which encoding each export came in.
type Store = (Arc<Mutex<Vec<Received>>>, Arc<Mutex<Vec<(String, &'static str)>>>);

/// `POST /v1/traces`: decode the export (JSON or protobuf, by its content type) and keep it.
async fn receive(
    axum::extract::State((spans, encodings)): axum::extract::State<Store>,
    headers: HeaderMap,
    body: Bytes,
) -> ([(header::HeaderName, &'static str); 1], Bytes) {
    let json = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.starts_with("application/json"));
    let decoded = if json { from_json(&body) } else { from_protobuf(&body) };
    if let Some(first) = decoded.first() {
        encodings.lock().expect("the encodings").push((first.service.clone(), if json { "json" } else { "protobuf" }));
    }
    spans.lock().expect("the spans").extend(decoded);
    if json {
        ([(header::CONTENT_TYPE, "application/json")], Bytes::from_static(b"{}"))
    } else {
        // An empty ExportTraceServiceResponse.
        ([(header::CONTENT_TYPE, "application/x-protobuf")], Bytes::new())
    }
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

fn from_protobuf(body: &[u8]) -> Vec<Received> {
    let Ok(request) = ExportTraceServiceRequest::decode(body) else { return Vec::new() };
    let mut received = Vec::new();
    for resource_spans in request.resource_spans {
        let service = resource_spans
            .resource
            .iter()
            .flat_map(|r| r.attributes.iter())
            .find(|kv| kv.key == "service.name")
            .and_then(|kv| kv.value.as_ref())
            .map(any_text)
            .unwrap_or_default();
        for span in resource_spans.scope_spans.into_iter().flat_map(|s| s.spans) {
            received.push(Received {
                service: service.clone(),
                trace_id: hex(&span.trace_id),
                span_id: hex(&span.span_id),
                parent_span_id: hex(&span.parent_span_id),
                name: span.name,
                kind: i64::from(span.kind),
                attributes: span
                    .attributes
                    .iter()
                    .map(|kv| (kv.key.clone(), kv.value.as_ref().map(any_text).unwrap_or_default()))
                    .collect(),
            });
        }
    }
    received
}

fn any_text(value: &opentelemetry_proto::tonic::common::v1::AnyValue) -> String {
    use opentelemetry_proto::tonic::common::v1::any_value::Value as Any;
    match &value.value {
        Some(Any::StringValue(s)) => s.clone(),
        Some(Any::IntValue(i)) => i.to_string(),
        Some(Any::BoolValue(b)) => b.to_string(),
        Some(Any::DoubleValue(d)) => d.to_string(),
        _ => String::new(),
    }
}

/// OTLP/JSON: ids are hex strings, attribute values `{ "stringValue": … }` and the like.
fn from_json(body: &[u8]) -> Vec<Received> {
    let Ok(request) = serde_json::from_slice::<Value>(body) else { return Vec::new() };
    let text = |value: &Value| match value.as_object().and_then(|o| o.values().next()) {
        Some(Value::String(s)) => s.clone(),
        Some(other) => other.to_string(),
        None => String::new(),
    };
    let attributes = |list: &Value| -> HashMap<String, String> {
        list.as_array()
            .into_iter()
            .flatten()
            .map(|kv| (kv["key"].as_str().unwrap_or_default().to_owned(), text(&kv["value"])))
            .collect()
    };
    let mut received = Vec::new();
    for resource_spans in request["resourceSpans"].as_array().into_iter().flatten() {
        let service = attributes(&resource_spans["resource"]["attributes"]).remove("service.name").unwrap_or_default();
        for scope in resource_spans["scopeSpans"].as_array().into_iter().flatten() {
            for span in scope["spans"].as_array().into_iter().flatten() {
                let string = |key: &str| span[key].as_str().unwrap_or_default().to_ascii_lowercase();
                received.push(Received {
                    service: service.clone(),
                    trace_id: string("traceId"),
                    span_id: string("spanId"),
                    parent_span_id: string("parentSpanId"),
                    name: span["name"].as_str().unwrap_or_default().to_owned(),
                    kind: span["kind"].as_i64().unwrap_or_default(),
                    attributes: attributes(&span["attributes"]),
                });
            }
        }
    }
    received
}

fn write_config(dir: &Path, text: &str) -> std::path::PathBuf {
    let path = dir.join("host.toml");
    std::fs::write(&path, text).expect("write the config");
    path
}

/// Spans are sent every 100 ms rather than every 5 s (the SDK's default), so the test waits little.
const FAST_EXPORT: (&str, &str) = ("OTEL_BSP_SCHEDULE_DELAY", "100");

/// The one span of `service` named `name`, or a failure listing what came.
fn span<'a>(spans: &'a [Received], service: &str, name: &str) -> &'a Received {
    let found: Vec<_> = spans.iter().filter(|s| s.service == service && s.name == name).collect();
    assert_eq!(found.len(), 1, "one {name:?} span from {service}: {spans:#?}");
    found[0]
}

/// Check the five spans of one call through A to B's plugin, under the client's span.
fn check_chain(spans: &[Received], client_span: &str, protocol_on_a: &str) {
    let a_request = span(spans, "host-a", &format!("tools/call {TOOL_ON_A}"));
    let a_send = span(spans, "host-a", &format!("MCP send tools/call {TOOL_ON_B}"));
    let b_request = span(spans, "host-b", &format!("tools/call {TOOL_ON_B}"));
    let b_plugin = span(spans, "host-b", "plugin text-tools");
    assert_eq!(a_request.parent_span_id, client_span, "A's request span is the client's child");
    assert_eq!(a_send.parent_span_id, a_request.span_id, "A's forwarding span is its request's child");
    assert_eq!(b_request.parent_span_id, a_send.span_id, "B's request span is A's forwarding span's child");
    assert_eq!(b_plugin.parent_span_id, b_request.span_id, "the plugin call is B's request's child");
    assert_eq!(
        (a_request.kind, a_send.kind, b_request.kind, b_plugin.kind),
        (2, 3, 2, 1),
        "SERVER, CLIENT, SERVER, INTERNAL"
    );
    // Attributes as the official SDKs name them.
    let a = &a_request.attributes;
    assert_eq!(a.get("mcp.method.name").map(String::as_str), Some("tools/call"), "{a:?}");
    assert_eq!(a.get("gen_ai.operation.name").map(String::as_str), Some("execute_tool"), "{a:?}");
    assert_eq!(a.get("gen_ai.tool.name").map(String::as_str), Some(TOOL_ON_A), "{a:?}");
    assert_eq!(a.get("mcp.protocol.version").map(String::as_str), Some(protocol_on_a), "{a:?}");
    assert!(a.contains_key("jsonrpc.request.id"), "{a:?}");
    assert!(!a.contains_key("error.type"), "{a:?}");
    let b = &b_request.attributes;
    assert_eq!(b.get("gen_ai.tool.name").map(String::as_str), Some(TOOL_ON_B), "{b:?}");
    assert_eq!(b.get("gen_ai.operation.name").map(String::as_str), Some("execute_tool"), "{b:?}");
    assert_eq!(b_plugin.attributes.get("fedmcp.plugin.name").map(String::as_str), Some("text-tools"));
    assert!(b_plugin.attributes.contains_key("fedmcp.plugin.instantiate_us"), "{:?}", b_plugin.attributes);
}

#[tokio::test]
async fn one_trace_runs_from_the_client_through_two_hosts_to_the_plugin() {
    let receiver = Receiver::start().await;
    let b_dir = tempfile::tempdir().expect("B's folder");
    let b_config = format!(
        "[telemetry]\notlp_endpoint = \"{}\"\nservice_name = \"host-b\"\nprotocol = \"http/json\"\n",
        receiver.endpoint
    );
    let b_config = write_config(b_dir.path(), &b_config);
    let b = Server::start_configured_with_env(&example_plugins(), &b_config, "127.0.0.1:0", &[FAST_EXPORT]);
    let a_dir = tempfile::tempdir().expect("A's folder");
    let empty = tempfile::tempdir().expect("an empty plugins folder");
    let a_config = format!(
        "[[peers]]\nname = \"b\"\nnamespace = \"b\"\nurl = \"{}\"\ntimeout_ms = 10000\n[telemetry]\notlp_endpoint = \"{}/v1/traces\"\nservice_name = \"host-a\"\n",
        b.url(),
        receiver.endpoint
    );
    let a_config = write_config(a_dir.path(), &a_config);
    let a = Server::start_configured_with_env(empty.path(), &a_config, "127.0.0.1:0", &[FAST_EXPORT]);
    a.wait_for_peer("b").await;

    // A stateless (2026-07-28) call: A relays it to B as JSON (host/src/relay).
    let trace = "0af7651916cd43dd8448eb211c80319c";
    let client_span = "b7ad6b7169203331";
    let client = StatelessClient::new(&a);
    let params = json!({ "name": TOOL_ON_A, "arguments": { "text": "Hello, Traces" },
        "_meta": { "traceparent": format!("00-{trace}-{client_span}-01") } });
    let (_, reply) = client.request("tools/call", params).await;
    assert_eq!(reply["result"]["content"][0]["text"], "hello-traces", "{reply}");
    let spans = receiver.trace(trace, |spans| spans.len() >= 4).await;
    check_chain(&spans, client_span, "2026-07-28");

    // A legacy (2025-11-25) session's call: A forwards it through its MCP client to B.
    let trace = "4bf92f3577b34da6a3ce929d0e0e4736";
    let client_span = "00f067aa0ba902b7";
    let mut session = LegacySession::open(&a).await;
    let params = json!({ "name": TOOL_ON_A, "arguments": { "text": "Legacy Traces" },
        "_meta": { "traceparent": format!("00-{trace}-{client_span}-01"), "tracestate": "client=1" } });
    let reply = session.request("tools/call", params).await;
    assert_eq!(reply["result"]["content"][0]["text"], "legacy-traces", "{reply}");
    let spans = receiver.trace(trace, |spans| spans.len() >= 4).await;
    check_chain(&spans, client_span, "2025-11-25");

    // A failed call is one trace too, its spans marked with the JSON-RPC error's code.
    let trace = "11112222333344445555666677778888";
    let params = json!({ "name": "b__no_such_tool", "arguments": {},
        "_meta": { "traceparent": format!("00-{trace}-{client_span}-01") } });
    let (_, reply) = client.request("tools/call", params).await;
    assert!(reply["error"].is_object(), "{reply}");
    let spans = receiver.trace(trace, |spans| !spans.is_empty()).await;
    let failed = span(&spans, "host-a", "tools/call b__no_such_tool");
    assert_eq!(failed.attributes.get("error.type").map(String::as_str), Some("-32602"), "{spans:#?}");

    // Each host exported in the protocol its config named.
    let encodings = receiver.encodings.lock().expect("the encodings").clone();
    assert!(
        encodings.iter().all(|(service, encoding)| match service.as_str() {
            "host-a" => *encoding == "protobuf",
            "host-b" => *encoding == "json",
            _ => false,
        }),
        "{encodings:?}"
    );
}

/// The OpenTelemetry SDK's standard sampler variables apply (the operator's lever on what
/// tracing costs): with `parentbased_traceidratio` at 0, calls that come without a trace
/// context are not recorded, and a call whose client sampled its trace is, its plugin call too.
#[tokio::test]
async fn the_sdks_sampler_variables_apply_and_a_trace_the_client_sampled_is_kept() {
    let receiver = Receiver::start().await;
    let dir = tempfile::tempdir().expect("the host's folder");
    let config = format!("[telemetry]\notlp_endpoint = \"{}\"\nservice_name = \"host-b\"\n", receiver.endpoint);
    let config = write_config(dir.path(), &config);
    let sampler = [FAST_EXPORT, ("OTEL_TRACES_SAMPLER", "parentbased_traceidratio"), ("OTEL_TRACES_SAMPLER_ARG", "0")];
    let host = Server::start_configured_with_env(&example_plugins(), &config, "127.0.0.1:0", &sampler);
    let client = StatelessClient::new(&host);

    for _ in 0..5 {
        let (_, reply) =
            client.request("tools/call", json!({ "name": TOOL_ON_B, "arguments": { "text": "Not Traced" } })).await;
        assert_eq!(reply["result"]["content"][0]["text"], "not-traced", "{reply}");
    }
    let trace = "5b8efff798038103d269b633813fc60c";
    let client_span = "eee19b7ec3c1b174";
    let params = json!({ "name": TOOL_ON_B, "arguments": { "text": "Sampled" },
        "_meta": { "traceparent": format!("00-{trace}-{client_span}-01") } });
    let (_, reply) = client.request("tools/call", params).await;
    assert_eq!(reply["result"]["content"][0]["text"], "sampled", "{reply}");

    // The sampled call's spans were queued after the others would have been, so once they have
    // come, anything the unsampled calls had recorded would have come with or before them.
    let spans = receiver.trace(trace, |spans| spans.len() >= 2).await;
    let request = span(&spans, "host-b", &format!("tools/call {TOOL_ON_B}"));
    let plugin = span(&spans, "host-b", "plugin text-tools");
    assert_eq!(request.parent_span_id, client_span, "the request span is the client's child");
    assert_eq!(plugin.parent_span_id, request.span_id, "the plugin call is the request's child");
    let all = receiver.spans.lock().expect("the spans").clone();
    assert!(all.iter().all(|s| s.trace_id == trace), "only the sampled trace was exported: {all:#?}");
}
