//! tools/call throughput and latency over Streamable HTTP, both protocol revisions, in the
//! same run: a trivial Rust WASM tool served by fedmcp (B), the same tool through a second
//! fedmcp host that imports B (client -> A -> B -> plugin, one federation hop), and a native
//! tool on the same transport (rmcp's Streamable HTTP service under axum, TCP_NODELAY); and
//! the direct WASM tool again behind JWT verification (EdDSA bearer token on every request),
//! to measure what authentication costs; and the direct and one-hop calls again with
//! OpenTelemetry tracing on (every request sampled, spans exported over OTLP/HTTP to a sink on
//! 127.0.0.1 that accepts and discards them), to measure what tracing costs.
//!
//! `cargo bench --bench http_calls` (after `cargo xtask plugins`). Loopback only; every
//! load loop is bounded by a call count and a time limit.
//! Environment: BENCH_CONNECTIONS (default 8), BENCH_CALLS (per connection, default 500),
//! BENCH_ONLY=hop (only the one-hop figures, e.g. to profile A's side of a forwarded call),
//! BENCH_ONLY=otel (only tracing off against on, direct and one hop, in alternating rounds,
//! with the median of the rounds' ratios: less noise than one pass), BENCH_ONLY=wasm (only
//! the native tool against the direct WASM tool, alternating rounds likewise);
//! BENCH_PROFILE=native|wasm|otel|hop|otel-hop (only that server's load, for a profiler; both revisions, or
//! the one BENCH_REVISION=2025-11-25|2026-07-28 names).

// Sampling and logging types are deprecated by SEP-2577 but used by rmcp's handler API.
#![allow(deprecated)]

use std::sync::Arc;
use std::time::{Duration, Instant};

use fedmcp::auth::edge::Gate;
use fedmcp::auth::jwt::Verifier;
use fedmcp::auth::{AuthSettings, IssuerSettings, KeySource, keys};
use fedmcp::catalog::Catalog;
use fedmcp::plugin::{PluginRuntime, RuntimeOptions};
use fedmcp::session::Shared;
use fedmcp::telemetry::{TelemetrySettings, Tracing};
use fedmcp::transport;
use futures::StreamExt;
use rmcp::transport::streamable_http_server::session::local::LocalSessionManager;
use rmcp::transport::{StreamableHttpServerConfig, StreamableHttpService};
use serde_json::{Value, json};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

const TIME_LIMIT: Duration = Duration::from_secs(30);

#[path = "support/native.rs"]
mod native;
use native::NativeSlugify;

/// B's slugify tool as A, which imports B under the namespace `b`, serves it.
const HOP_TOOL: &str = "b__text-tools__slugify";

/// An OTLP/HTTP collector that takes every export and keeps nothing; its address. It reads each
/// body to its end without gathering it: a real collector runs elsewhere, and what this one does
/// is counted in the traced host's figures.
async fn otlp_sink() -> String {
    let drain = |body: axum::body::Body| async move {
        let mut frames = body.into_data_stream();
        while let Some(Ok(_)) = frames.next().await {}
        ""
    };
    let sink = axum::Router::new().route("/v1/traces", axum::routing::post(drain));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind loopback");
    let address = listener.local_addr().expect("local address").to_string();
    tokio::spawn(async move { axum::serve(listener, sink).await });
    format!("http://{address}")
}

async fn serve(router: axum::Router) -> String {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind loopback");
    let address = listener.local_addr().expect("local address").to_string();
    tokio::spawn(transport::serve_http(listener, router, CancellationToken::new()));
    format!("http://{address}/mcp")
}

fn message(body: &str) -> Value {
    serde_json::from_str(body).unwrap_or_else(|_| {
        body.lines()
            .filter_map(|l| l.strip_prefix("data:"))
            .filter_map(|d| serde_json::from_str::<Value>(d.trim()).ok())
            .find(|v| v.get("id").is_some())
            .unwrap_or(Value::Null)
    })
}

/// `base` (label, URL, tool) against `other` in five rounds, each round's figures printed; the
/// median of `other`'s throughput as a share of `base`'s. Which goes first alternates, so a
/// drift in the machine's load hits both alike: less noise than one pass of each.
async fn alternating(
    revision: &str,
    kind: Kind,
    connections: usize,
    calls: usize,
    base: (&str, &str, &str),
    other: (&str, &str, &str),
) -> f64 {
    let (base_label, base_url, base_tool) = base;
    let (other_label, other_url, other_tool) = other;
    load(base_url, base_tool, kind, connections, 20, None).await;
    load(other_url, other_tool, kind, connections, 20, None).await;
    let mut ratios = Vec::new();
    for round in 0..5 {
        let (base, other) = if round % 2 == 0 {
            let base = load(base_url, base_tool, kind, connections, calls, None).await;
            (base, load(other_url, other_tool, kind, connections, calls, None).await)
        } else {
            let other = load(other_url, other_tool, kind, connections, calls, None).await;
            (load(base_url, base_tool, kind, connections, calls, None).await, other)
        };
        println!(
            "{revision:<12} {base_label} {:>8.0} calls/s p50 {:.2} ms | {other_label} {:>8.0} calls/s p50 {:.2} ms",
            base.per_second, base.p50_ms, other.per_second, other.p50_ms
        );
        ratios.push(100.0 * other.per_second / base.per_second);
    }
    ratios.sort_by(f64::total_cmp);
    ratios[2]
}

/// How a client speaks.
#[derive(Clone, Copy, PartialEq)]
enum Kind {
    /// A 2025-11-25 session whose client declares no capabilities.
    Legacy,
    /// 2026-07-28 stateless requests.
    Stateless,
}

/// One connection's client: a legacy session, or stateless requests.
struct Caller {
    http: reqwest::Client,
    url: String,
    session: Option<String>,
    stateless: bool,
    token: Option<String>,
}

impl Caller {
    async fn new(url: &str, kind: Kind, token: Option<String>) -> Self {
        let http = reqwest::Client::builder().tcp_nodelay(true).build().expect("client");
        let stateless = kind == Kind::Stateless;
        let mut caller = Self { http, url: url.to_owned(), session: None, stateless, token };
        if !stateless {
            let init = json!({ "jsonrpc": "2.0", "id": 0, "method": "initialize", "params": {
                "protocolVersion": "2025-11-25", "capabilities": {},
                "clientInfo": { "name": "bench", "version": "1" } } });
            let response = caller.request(init).send().await.expect("initialize");
            caller.session = response.headers().get("mcp-session-id").and_then(|v| v.to_str().ok()).map(str::to_owned);
            let _ = response.text().await;
            let initialized = json!({ "jsonrpc": "2.0", "method": "notifications/initialized" });
            let _ = caller.request(initialized).send().await.expect("initialized").text().await;
        }
        caller
    }

    fn request(&self, body: Value) -> reqwest::RequestBuilder {
        let mut request = self
            .http
            .post(&self.url)
            .header("content-type", "application/json")
            .header("accept", "application/json, text/event-stream");
        if let Some(session) = &self.session {
            request = request.header("mcp-session-id", session).header("mcp-protocol-version", "2025-11-25");
        }
        if let Some(token) = &self.token {
            request = request.bearer_auth(token);
        }
        request.body(body.to_string())
    }

    async fn call(&self, id: u64, tool: &str) -> Result<(), String> {
        let mut params = json!({ "name": tool, "arguments": { "text": "Hello, WebAssembly World" } });
        let mut request = if self.stateless {
            params["_meta"] = json!({
                "io.modelcontextprotocol/protocolVersion": "2026-07-28",
                "io.modelcontextprotocol/clientCapabilities": {},
            });
            self.request(json!({ "jsonrpc": "2.0", "id": id, "method": "tools/call", "params": params }))
        } else {
            self.request(json!({ "jsonrpc": "2.0", "id": id, "method": "tools/call", "params": params }))
        };
        if self.stateless {
            request = request
                .header("mcp-protocol-version", "2026-07-28")
                .header("mcp-method", "tools/call")
                .header("mcp-name", tool);
        }
        let body = request.send().await.map_err(|e| e.to_string())?.text().await.map_err(|e| e.to_string())?;
        let reply = message(&body);
        match reply["result"]["content"][0]["text"].as_str() {
            Some("hello-webassembly-world") => Ok(()),
            _ => Err(format!("unexpected reply: {body}")),
        }
    }
}

struct Figures {
    calls: usize,
    per_second: f64,
    p50_ms: f64,
    p99_ms: f64,
}

async fn load(url: &str, tool: &str, kind: Kind, connections: usize, calls: usize, token: Option<&str>) -> Figures {
    // Clients (and legacy sessions) are made before the clock starts: building a TLS-capable
    // HTTP client loads the platform's root certificates, which is not a call's cost.
    let mut callers = Vec::with_capacity(connections);
    for _ in 0..connections {
        callers.push(Caller::new(url, kind, token.map(str::to_owned)).await);
    }
    let started = Instant::now();
    let mut workers = Vec::new();
    for (worker, caller) in callers.into_iter().enumerate() {
        let tool = tool.to_owned();
        workers.push(tokio::spawn(async move {
            let mut latencies = Vec::with_capacity(calls);
            for i in 0..calls {
                if started.elapsed() > TIME_LIMIT {
                    break;
                }
                let t = Instant::now();
                if let Err(error) = caller.call((worker * calls + i + 1) as u64, &tool).await {
                    panic!("{error}");
                }
                latencies.push(t.elapsed());
            }
            latencies
        }));
    }
    let mut latencies = Vec::new();
    for worker in workers {
        latencies.extend(worker.await.expect("worker finished"));
    }
    let elapsed = started.elapsed();
    latencies.sort();
    let at = |q: f64| latencies[((latencies.len() as f64 - 1.0) * q) as usize].as_secs_f64() * 1000.0;
    Figures {
        calls: latencies.len(),
        per_second: latencies.len() as f64 / elapsed.as_secs_f64(),
        p50_ms: at(0.5),
        p99_ms: at(0.99),
    }
}

fn http_options(gate: Option<Arc<Gate>>) -> transport::HttpOptions {
    transport::HttpOptions {
        allowed_hosts: vec![],
        allowed_origins: vec![],
        max_request_body_bytes: 1 << 20,
        session_idle: Duration::from_secs(300),
        gate,
        websocket_ping: Duration::from_secs(30),
        websockets: TaskTracker::new(),
    }
}

fn env_number(name: &str, default: usize) -> usize {
    std::env::var(name).ok().and_then(|v| v.parse().ok()).unwrap_or(default)
}

// The allocator the fedmcp binary uses, so the figures are the product's.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[tokio::main]
async fn main() {
    fedmcp::tls::install_default_provider();
    let connections = env_number("BENCH_CONNECTIONS", 8);
    let calls = env_number("BENCH_CALLS", 500);
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../plugins");
    let wasm = root.join("text-tools.wasm");
    assert!(wasm.is_file(), "{} is missing: run `cargo xtask plugins`", wasm.display());

    let runtime = PluginRuntime::new(RuntimeOptions::default()).expect("runtime");
    let plugin = runtime.load(&wasm).await.expect("text-tools loads");
    let catalog = Arc::new(Catalog::new("bench".to_owned()));
    catalog.set_plugins(vec![plugin], Vec::new());
    let federation = Arc::new(fedmcp::federation::Federation::start(&[], "bench", 8, None));
    let guard = fedmcp::auth::Guard::permissive();
    let audit = guard.audit.clone();
    let shared = Shared::new(catalog.clone(), federation.clone(), vec![7; 32], None, guard, Default::default());
    let wasm_url =
        serve(transport::router(shared.clone(), http_options(None), CancellationToken::new(), TaskTracker::new()))
            .await;

    // The same plugin with tracing on, exporting to a sink.
    let sink = otlp_sink().await;
    let telemetry = TelemetrySettings::new(&sink, "bench-b").expect("the sink's address");
    let tracing = Tracing::start(&telemetry).expect("tracing starts");
    let traced = Shared::traced(
        catalog,
        federation,
        vec![7; 32],
        None,
        fedmcp::auth::Guard::permissive(),
        Default::default(),
        Some(tracing),
    );
    let otel_url =
        serve(transport::router(traced, http_options(None), CancellationToken::new(), TaskTracker::new())).await;

    // The same host behind JWT verification, with a key made for the run.
    let keys = tempfile::tempdir().expect("a folder for the bench's keys");
    let generated = keys::generate(keys.path(), "bench-idp").expect("a key pair");
    let settings = AuthSettings {
        audience: "bench-host".into(),
        algorithms: vec![fedmcp::auth::Algorithm::EdDSA],
        leeway_secs: 30,
        scope_claim: "scope".into(),
        issuers: vec![IssuerSettings {
            issuer: "bench-idp".into(),
            keys: vec![KeySource::Pem { path: generated.public, kid: Some("bench-idp".into()) }],
            ceiling: None,
        }],
        resource: None,
        authorization_servers: Vec::new(),
    };
    let gate = Gate::new(Verifier::new(settings).expect("verifier"), audit, "http");
    let jwt_url = serve(transport::router(
        shared,
        http_options(Some(Arc::new(gate))),
        CancellationToken::new(),
        TaskTracker::new(),
    ))
    .await;
    let signer = keys::Signer::load("bench-idp", &generated.private).expect("signer");
    let request = keys::TokenRequest {
        subject: "bench-user".into(),
        audience: "bench-host".into(),
        scopes: vec!["tools:text-tools__*".into()],
        ttl: Duration::from_secs(3600),
        actor: None,
    };
    let (token, _) = signer.mint(&request).expect("a token");

    // A: no plugins, imports B under the namespace `b` (an unprefixed peer may not publish
    // names with `__`, which B's namespaced tools have).
    let empty = tempfile::tempdir().expect("an empty plugins folder");
    let config = format!("plugins_dir = {:?}\n[[peers]]\nname = \"b\"\nurl = \"{wasm_url}\"\n", empty.path());
    let config = fedmcp::config::HostConfig::parse(&config).expect("the bench config parses");
    let hop = fedmcp::app::Host::start(&config).await.expect("host A starts");
    let deadline = Instant::now() + TIME_LIMIT;
    while hop.shared.catalog.tool(HOP_TOOL).is_none() {
        assert!(Instant::now() < deadline, "A did not import B's tools");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let hop_url =
        serve(transport::router(hop.shared.clone(), http_options(None), CancellationToken::new(), TaskTracker::new()))
            .await;
    // A traced A importing the traced B: the whole chain exports.
    let config = format!(
        "plugins_dir = {:?}\n[[peers]]\nname = \"b\"\nurl = \"{otel_url}\"\n[telemetry]\notlp_endpoint = \"{sink}\"\nservice_name = \"bench-a\"\n",
        empty.path()
    );
    let config = fedmcp::config::HostConfig::parse(&config).expect("the traced bench config parses");
    let otel_hop = fedmcp::app::Host::start(&config).await.expect("traced host A starts");
    while otel_hop.shared.catalog.tool(HOP_TOOL).is_none() {
        assert!(Instant::now() < deadline, "traced A did not import traced B's tools");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let otel_hop_url = serve(transport::router(
        otel_hop.shared.clone(),
        http_options(None),
        CancellationToken::new(),
        TaskTracker::new(),
    ))
    .await;

    let native = StreamableHttpService::new(
        || Ok(NativeSlugify),
        Arc::new(LocalSessionManager::default()),
        StreamableHttpServerConfig::default(),
    );
    let native_url = serve(axum::Router::new().nest_service("/mcp", native)).await;

    println!(
        "tools/call over Streamable HTTP, {connections} connections x {calls} calls, pooling allocator: {}",
        runtime.pooling()
    );
    println!("{:<12} {:<8} {:>8} {:>10} {:>9} {:>9}", "revision", "tool", "calls", "calls/s", "p50 ms", "p99 ms");
    let only_hop = std::env::var("BENCH_ONLY").is_ok_and(|v| v == "hop");
    let only_otel = std::env::var("BENCH_ONLY").is_ok_and(|v| v == "otel");
    let only_wasm = std::env::var("BENCH_ONLY").is_ok_and(|v| v == "wasm");
    // One server's load alone, for a profiler to compare what each costs per call.
    if let Ok(which) = std::env::var("BENCH_PROFILE") {
        let (url, tool) = match which.as_str() {
            "native" => (&native_url, "slugify"),
            "otel" => (&otel_url, "text-tools__slugify"),
            "wasm" => (&wasm_url, "text-tools__slugify"),
            "hop" => (&hop_url, HOP_TOOL),
            "otel-hop" => (&otel_hop_url, HOP_TOOL),
            other => panic!("BENCH_PROFILE is native, wasm, otel, hop or otel-hop, not {other:?}"),
        };
        let kinds = match std::env::var("BENCH_REVISION").as_deref() {
            Ok("2025-11-25") => vec![Kind::Legacy],
            Ok("2026-07-28") => vec![Kind::Stateless],
            Ok(other) => panic!("BENCH_REVISION is 2025-11-25 or 2026-07-28, not {other:?}"),
            Err(_) => vec![Kind::Legacy, Kind::Stateless],
        };
        for kind in kinds {
            let figures = load(url, tool, kind, connections, calls, None).await;
            println!("{which}: {} calls, {:.0} calls/s", figures.calls, figures.per_second);
        }
        return;
    }
    for (revision, kind) in [("2025-11-25", Kind::Legacy), ("2026-07-28", Kind::Stateless)] {
        if only_otel {
            let tool = "text-tools__slugify";
            let pairs = [("direct", &wasm_url, &otel_url, tool), ("one hop", &hop_url, &otel_hop_url, HOP_TOOL)];
            for (label, off_url, on_url, tool) in pairs {
                let (off, on) = (format!("{label} off"), format!("{label} on"));
                let (off, on) = ((off.as_str(), off_url.as_str(), tool), (on.as_str(), on_url.as_str(), tool));
                let median = alternating(revision, kind, connections, calls, off, on).await;
                println!("{revision:<12} {label:<8} tracing on/off throughput, median of 5: {median:.1}%");
            }
            continue;
        }
        if only_wasm {
            let native = ("native", native_url.as_str(), "slugify");
            let wasm = ("wasm", wasm_url.as_str(), "text-tools__slugify");
            let median = alternating(revision, kind, connections, calls, native, wasm).await;
            println!("{revision:<12} wasm/native throughput, median of 5: {median:.1}%");
            continue;
        }
        if only_hop {
            load(&hop_url, HOP_TOOL, kind, connections, 20, None).await;
            let hop = load(&hop_url, HOP_TOOL, kind, connections, calls, None).await;
            println!(
                "{revision:<12} via A    {:>8} {:>10.0} {:>9.2} {:>9.2}",
                hop.calls, hop.per_second, hop.p50_ms, hop.p99_ms
            );
            continue;
        }
        // Warm both servers (connection setup, first compile of code paths) before measuring.
        let tool = "text-tools__slugify";
        load(&native_url, "slugify", kind, connections, 20, None).await;
        load(&wasm_url, tool, kind, connections, 20, None).await;
        load(&jwt_url, tool, kind, connections, 20, Some(&token)).await;
        load(&hop_url, HOP_TOOL, kind, connections, 20, None).await;
        load(&otel_url, tool, kind, connections, 20, None).await;
        load(&otel_hop_url, HOP_TOOL, kind, connections, 20, None).await;
        let native = load(&native_url, "slugify", kind, connections, calls, None).await;
        let wasm = load(&wasm_url, tool, kind, connections, calls, None).await;
        let jwt = load(&jwt_url, tool, kind, connections, calls, Some(&token)).await;
        let hop = load(&hop_url, HOP_TOOL, kind, connections, calls, None).await;
        let otel = load(&otel_url, tool, kind, connections, calls, None).await;
        let otel_hop = load(&otel_hop_url, HOP_TOOL, kind, connections, calls, None).await;
        for (label, f) in [
            ("native", &native),
            ("wasm", &wasm),
            ("wasm+jwt", &jwt),
            ("via A", &hop),
            ("wasm+otel", &otel),
            ("A+otel", &otel_hop),
        ] {
            println!(
                "{revision:<12} {label:<8} {:>8} {:>10.0} {:>9.2} {:>9.2}",
                f.calls, f.per_second, f.p50_ms, f.p99_ms
            );
        }
        println!(
            "{revision:<12} wasm/native throughput {:.0}%, added p50 {:.2} ms",
            100.0 * wasm.per_second / native.per_second,
            wasm.p50_ms - native.p50_ms
        );
        println!(
            "{revision:<12} jwt on/off throughput {:.0}%, added p50 {:.2} ms",
            100.0 * jwt.per_second / wasm.per_second,
            jwt.p50_ms - wasm.p50_ms
        );
        println!(
            "{revision:<12} tracing on/off throughput {:.1}% direct, {:.1}% one hop; added p50 {:.2} / {:.2} ms",
            100.0 * otel.per_second / wasm.per_second,
            100.0 * otel_hop.per_second / hop.per_second,
            otel.p50_ms - wasm.p50_ms,
            otel_hop.p50_ms - hop.p50_ms
        );
        println!(
            "{revision:<12} one hop/direct throughput {:.0}%, added p50 {:.2} ms (8 connections: mostly queueing)",
            100.0 * hop.per_second / wasm.per_second,
            hop.p50_ms - wasm.p50_ms
        );
        // One connection, one call at a time: what a hop adds to a call when nothing queues.
        let direct = load(&wasm_url, tool, kind, 1, calls, None).await;
        let hop = load(&hop_url, HOP_TOOL, kind, 1, calls, None).await;
        println!(
            "{revision:<12} one connection: direct p50 {:.2} ms, via A p50 {:.2} ms, added p50 {:.2} ms",
            direct.p50_ms,
            hop.p50_ms,
            hop.p50_ms - direct.p50_ms
        );
    }
}
