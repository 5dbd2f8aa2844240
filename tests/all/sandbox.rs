//! The sandbox holds under attack: a hostile plugin tries what it was not granted and fails
//! with a clear error while the host keeps serving; granted, the same plugin succeeds; two
//! calls never share memory, neither at once nor one after the other in a reused slot.

use std::io::{Read, Write};
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use serde_json::{Value, json};

use crate::support::{Server, StatelessClient, repo_root};

const SECRET_VAR: &str = "FEDMCP_TEST_SECRET";

fn hostile_wasm() -> PathBuf {
    let wasm = repo_root().join("tests/plugins/hostile.wasm");
    assert!(wasm.is_file(), "{} is missing: run `cargo xtask plugins`", wasm.display());
    wasm
}

/// A folder layout to attack: a granted folder with a file and a symlink pointing out, and
/// a secret beside it.
struct Fixture {
    dir: tempfile::TempDir,
}

impl Fixture {
    fn new(manifest: &str) -> Self {
        let dir = tempfile::tempdir().expect("temporary folder");
        let root = dir.path();
        std::fs::create_dir_all(root.join("plugins")).expect("plugins folder");
        std::fs::create_dir_all(root.join("granted")).expect("granted folder");
        std::fs::create_dir_all(root.join("outside")).expect("outside folder");
        std::fs::write(root.join("granted/inside.txt"), "inside").expect("write");
        std::fs::write(root.join("outside/secret.txt"), "top secret").expect("write");
        std::os::unix::fs::symlink(root.join("outside/secret.txt"), root.join("granted/link-out")).expect("symlink");
        std::fs::copy(hostile_wasm(), root.join("plugins/hostile.wasm")).expect("copy plugin");
        std::fs::write(root.join("plugins/hostile.toml"), manifest).expect("manifest");
        Self { dir }
    }

    fn plugins(&self) -> PathBuf {
        self.dir.path().join("plugins")
    }

    fn path(&self, relative: &str) -> PathBuf {
        self.dir.path().join(relative)
    }
}

/// A TCP server on 127.0.0.1 that answers every connection with one line.
fn allowed_host() -> u16 {
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind loopback");
    let port = listener.local_addr().expect("address").port();
    std::thread::spawn(move || {
        for stream in listener.incoming().take(16) {
            let Ok(mut stream) = stream else { continue };
            let mut buffer = [0u8; 256];
            let _ = stream.read(&mut buffer);
            let _ = stream.write_all(b"HTTP/1.0 200 OK\r\n\r\nhello from the allowed host");
        }
    });
    port
}

/// A granted host that accepts connections and never answers (they stay open until the
/// test process ends).
fn silent_host() -> u16 {
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind loopback");
    let port = listener.local_addr().expect("address").port();
    std::thread::spawn(move || {
        let mut held = Vec::new();
        for stream in listener.incoming().take(4) {
            held.push(stream);
        }
        std::thread::park();
    });
    port
}

fn text(result: &Value) -> &str {
    result["content"][0]["text"].as_str().unwrap_or_default()
}

fn start(plugins: &Path) -> Server {
    Server::start_with_env(plugins, &[(SECRET_VAR, "s3cret")])
}

#[tokio::test]
async fn a_plugin_without_grants_is_refused_everything_and_the_host_keeps_serving() {
    let closed_port = allowed_host(); // listening, but not granted
    let silent_port = silent_host(); // granted, never answers
    let fixture = Fixture::new(&format!(
        "[capabilities]\nfiles = [{{ host = \"../granted\", guest = \"/data\", mode = \"read\" }}]\n\
         network = [\"127.0.0.1:{silent_port}\"]\ntimeout_ms = 500\nmemory_mb = 16\nmax_response_kb = 64\n",
    ));
    let server = start(&fixture.plugins());
    let client = StatelessClient::new(&server);

    let granted = client.call("hostile__read_file", json!({ "path": "/data/inside.txt" })).await;
    assert_eq!(granted.as_ref().map(text), Ok("inside"), "{granted:?}");

    let attacks: Vec<(&str, &str, Value, &[&str])> = vec![
        (
            "a path out of the preopen",
            "hostile__read_file",
            json!({ "path": "/data/../outside/secret.txt" }),
            &["reading"],
        ),
        (
            "an absolute host path",
            "hostile__read_file",
            json!({ "path": fixture.path("outside/secret.txt") }),
            &["reading"],
        ),
        ("/etc/passwd", "hostile__read_file", json!({ "path": "/etc/passwd" }), &["reading"]),
        ("a symlink pointing out", "hostile__read_file", json!({ "path": "/data/link-out" }), &["reading"]),
        (
            "a write to a read-only preopen",
            "hostile__write_file",
            json!({ "path": "/data/new.txt", "text": "x" }),
            &["writing"],
        ),
        ("an environment variable not granted", "hostile__read_env", json!({ "name": SECRET_VAR }), &["reading $"]),
        (
            "a TCP host not on the allow-list",
            "hostile__connect",
            json!({ "address": format!("127.0.0.1:{closed_port}") }),
            &["connecting", "capabilities.network"],
        ),
        (
            "an HTTP origin not on the allow-list (listening, and the plugin's TCP is not asked)",
            "hostile__http_get",
            json!({ "address": format!("127.0.0.1:{closed_port}") }),
            &["requesting http://", "HttpRequestDenied", "capabilities.http"],
        ),
        ("an allocation past the memory cap", "hostile__allocate", json!({ "size": 64 }), &["memory"]),
        ("a response past the size cap", "hostile__big_response", json!({ "size": 128 }), &["max_response_kb"]),
        ("a trap", "hostile__trap", json!({}), &["trapped"]),
        ("sampling without the grant", "hostile__ask_sampling", json!({}), &["sampling", "does not grant"]),
        ("elicitation without the grant", "hostile__ask_elicitation", json!({}), &["elicitation", "does not grant"]),
    ];
    for (what, tool, arguments, expected) in attacks {
        let outcome = client.call(tool, arguments).await;
        let error = match outcome {
            Err(error) => error,
            Ok(result) => panic!("{what}: the plugin succeeded: {result}"),
        };
        for needle in expected {
            assert!(error.contains(needle), "{what}: {error:?} does not mention {needle:?}");
        }
        assert!(!error.contains("top secret") && !error.contains("s3cret"), "{what} leaked: {error}");
        client.still_serving().await;
    }
    assert!(!fixture.path("granted/new.txt").exists(), "the read-only folder was written");
    // The host log names the plugin, the call and the capability of each refusal.
    let lines = server.log_lines();
    let logged = |target: &str, capability: &str| {
        lines.iter().any(|line| {
            line.contains("plugin call was refused access")
                && line.contains("plugin=hostile")
                && line.contains(&format!("target={target}"))
                && line.contains(capability)
        })
    };
    assert!(logged("connect", "capabilities.network"), "{lines:?}");
    assert!(logged("http_get", "capabilities.http"), "{lines:?}");

    // Waiting on a host that never answers is bounded by the same limit as computing.
    let started = Instant::now();
    let waited = client.call("hostile__connect", json!({ "address": format!("127.0.0.1:{silent_port}") })).await;
    let elapsed = started.elapsed();
    let error = waited.expect_err("a call waiting forever must be stopped");
    assert!(error.contains("time limit of 500 ms"), "{error}");
    assert!(elapsed < Duration::from_millis(1000), "stopped after {elapsed:?}, more than twice the 500 ms limit");

    let started = Instant::now();
    let spun = client.call("hostile__spin", json!({})).await;
    let elapsed = started.elapsed();
    let error = spun.expect_err("an endless loop must be stopped");
    assert!(error.contains("time limit of 500 ms"), "{error}");
    assert!(elapsed < Duration::from_millis(1000), "stopped after {elapsed:?}, more than twice the 500 ms limit");
    client.still_serving().await;
}

#[tokio::test]
async fn the_same_plugin_granted_each_capability_succeeds() {
    let port = allowed_host();
    let http_port = allowed_host();
    let fixture = Fixture::new(&format!(
        "[capabilities]\nfiles = [{{ host = \"../granted\", guest = \"/data\", mode = \"read-write\" }}]\n\
         env = [\"{SECRET_VAR}\"]\nnetwork = [\"127.0.0.1:{port}\"]\nhttp = [\"127.0.0.1:{http_port}\"]\n\
         memory_mb = 64\nmax_response_kb = 256\nsampling = true\nelicitation = true\n"
    ));
    let server = start(&fixture.plugins());
    let mut client = StatelessClient::new(&server);
    client.capabilities = json!({ "elicitation": {}, "sampling": {} });

    let wrote =
        client.call("hostile__write_file", json!({ "path": "/data/new.txt", "text": "written by the plugin" })).await;
    assert!(wrote.is_ok(), "{wrote:?}");
    assert_eq!(std::fs::read_to_string(fixture.path("granted/new.txt")).ok().as_deref(), Some("written by the plugin"));
    let env = client.call("hostile__read_env", json!({ "name": SECRET_VAR })).await;
    assert_eq!(env.as_ref().map(text), Ok("s3cret"), "{env:?}");
    let connected = client.call("hostile__connect", json!({ "address": format!("127.0.0.1:{port}") })).await;
    assert!(connected.as_ref().map(text).is_ok_and(|t| t.contains("hello from the allowed host")), "{connected:?}");
    let fetched = client.call("hostile__http_get", json!({ "address": format!("127.0.0.1:{http_port}") })).await;
    assert!(fetched.as_ref().map(text).is_ok_and(|t| t == "200 hello from the allowed host"), "{fetched:?}");
    // A TCP grant is not an HTTP grant, nor the other way round.
    let other = client.call("hostile__http_get", json!({ "address": format!("127.0.0.1:{port}") })).await;
    assert!(other.as_ref().is_err_and(|e| e.contains("capabilities.http")), "{other:?}");
    let raw = client.call("hostile__connect", json!({ "address": format!("127.0.0.1:{http_port}") })).await;
    assert!(raw.as_ref().is_err_and(|e| e.contains("capabilities.network")), "{raw:?}");
    let allocated = client.call("hostile__allocate", json!({ "size": 16 })).await;
    assert_eq!(allocated.as_ref().map(text), Ok("allocated 16 MiB"), "{allocated:?}");
    let big = client.call("hostile__big_response", json!({ "size": 128 })).await;
    assert_eq!(big.as_ref().map(|r| text(r).len()), Ok(128 << 10));
    for tool in ["hostile__ask_sampling", "hostile__ask_elicitation"] {
        let asked = client.call(tool, json!({})).await.unwrap_or_else(|e| panic!("{tool}: {e}"));
        assert_eq!(asked["resultType"], "input_required", "{tool}: {asked}");
    }
    // The state a plugin keeps between rounds goes to the client and back: it counts against
    // the response cap like a result.
    let kept = client.call("hostile__big_state", json!({ "size": 16 })).await;
    assert!(kept.as_ref().is_ok_and(|r| r["resultType"] == "input_required"), "{kept:?}");
    let hoarded = client.call("hostile__big_state", json!({ "size": 1024 })).await;
    assert!(hoarded.as_ref().is_err_and(|e| e.contains("max_response_kb")), "a 1 MiB state went to the client");
}

#[tokio::test]
async fn concurrent_calls_never_see_each_others_memory() {
    let fixture = Fixture::new("");
    let server = start(&fixture.plugins());
    let client = StatelessClient::new(&server);
    let (first, second) = tokio::join!(
        client.call("hostile__remember", json!({ "secret": "alpha" })),
        client.call("hostile__remember", json!({ "secret": "bravo" })),
    );
    for (result, secret) in [(first, "alpha"), (second, "bravo")] {
        let seen: Value = serde_json::from_str(text(&result.expect("remember succeeds"))).expect("JSON");
        assert_eq!(seen, json!({ "before": null, "after": secret }));
    }
    for _ in 0..2 {
        let counted = client.call("hostile__count_calls", json!({})).await;
        assert_eq!(counted.as_ref().map(text), Ok("1"), "a fresh instance serves every call: {counted:?}");
    }
}

/// Every call's instance reuses a pooled slot whose memory the previous instance wrote: the
/// slot's reset (PAGEMAP_SCAN finds the dirty pages and rewrites them; the rest is decommitted)
/// must leave none of it. `mark_pages` dirties 64 separate runs of pages, more than the 32
/// regions one scan records, so a reset that stopped after one scan's worth of regions without
/// decommitting the rest would let the marks through to the next call (seen: 34 of the 64
/// marks came back). Each mark is checked for by several calls: a call's instance may still be
/// in its slot when the next call starts, which then takes another slot.
#[tokio::test]
async fn a_call_never_sees_pages_an_earlier_call_wrote() {
    no_call_sees_marks_of("hostile__mark_pages", 64).await;
}

/// As above, with more separate dirty pages (320) than the host keeps resident per slot (1 MiB,
/// 256 pages): the reset rewrites what its budget covers and must decommit the rest, so the
/// marks past the budget are gone too.
#[tokio::test]
async fn a_call_never_sees_pages_an_earlier_call_wrote_past_keep_resident() {
    no_call_sees_marks_of("hostile__mark_pages_past_keep_resident", 320).await;
}

/// Three rounds: `marking` writes markers into `pages` separate pages, then three calls of
/// `find_marked_pages` each scan their whole memory and must find none.
async fn no_call_sees_marks_of(marking: &str, pages: u64) {
    let fixture = Fixture::new("");
    let server = start(&fixture.plugins());
    let client = StatelessClient::new(&server);
    for round in 0..3 {
        let marked = client.call(marking, json!({})).await;
        let marked: Value =
            serde_json::from_str(text(&marked.unwrap_or_else(|e| panic!("{marking} fails: {e:?}")))).expect("JSON");
        assert_eq!(marked["pages"], pages, "{marked}");
        let marked_to = marked["marked_to"].as_u64().expect("marked_to");
        for check in 0..3 {
            let checked = client.call("hostile__find_marked_pages", json!({})).await;
            let checked: Value =
                serde_json::from_str(text(&checked.expect("find_marked_pages succeeds"))).expect("JSON");
            let scanned_to = checked["scanned_to"].as_u64().expect("scanned_to");
            assert!(
                scanned_to >= marked_to,
                "round {round}, check {check}: the scan stops short of the marks: {checked}"
            );
            assert_eq!(
                checked["found"],
                json!([]),
                "round {round}, check {check}: marks of an earlier call: {checked}"
            );
        }
    }
}

#[tokio::test]
async fn a_cancelled_call_stops_the_plugin() {
    let fixture = Fixture::new("[capabilities]\ntimeout_ms = 2000\n");
    let server = start(&fixture.plugins());
    let http = reqwest::Client::new();
    let post = |body: Value, session: Option<&str>| {
        let mut request = http
            .post(server.url())
            .header("content-type", "application/json")
            .header("accept", "application/json, text/event-stream");
        if let Some(session) = session {
            request = request.header("mcp-session-id", session).header("mcp-protocol-version", "2025-11-25");
        }
        request.body(body.to_string())
    };
    let init = json!({ "jsonrpc": "2.0", "id": 1, "method": "initialize", "params": {
        "protocolVersion": "2025-11-25", "capabilities": {}, "clientInfo": { "name": "cancel-test", "version": "1" } } });
    let response = post(init, None).send().await.expect("initialize");
    let session = response.headers()["mcp-session-id"].to_str().expect("session id").to_owned();
    let _ = response.text().await;
    let _ = post(json!({ "jsonrpc": "2.0", "method": "notifications/initialized" }), Some(&session)).send().await;

    let spin = json!({ "jsonrpc": "2.0", "id": 2, "method": "tools/call", "params": { "name": "hostile__spin", "arguments": {} } });
    let call = post(spin, Some(&session)).send();
    let started = Instant::now();
    let cancel = async {
        tokio::time::sleep(Duration::from_millis(300)).await;
        let cancelled = json!({ "jsonrpc": "2.0", "method": "notifications/cancelled", "params": { "requestId": 2 } });
        post(cancelled, Some(&session)).send().await.expect("cancel sent");
    };
    let (response, ()) = tokio::join!(async { call.await.expect("call").text().await }, cancel);
    // A call still running would be stopped at its 2 s time limit, and the host would log it.
    tokio::time::sleep(Duration::from_millis(2500).saturating_sub(started.elapsed())).await;
    let stopped_by_limit = server.log_lines().into_iter().find(|line| line.contains("stopped at its time limit"));
    assert!(stopped_by_limit.is_none(), "the cancelled call kept running: {stopped_by_limit:?} ({response:?})");
    let mut client = StatelessClient::new(&server);
    client.capabilities = json!({});
    client.still_serving().await;
}

/// The pid of the `fedmcp` process serving `plugins` (found by its command line, which
/// names the test's own temporary folder).
fn server_pid(plugins: &Path) -> u32 {
    let wanted = plugins.to_str().expect("a UTF-8 path");
    let entries = std::fs::read_dir("/proc").expect("/proc is readable");
    for entry in entries.filter_map(Result::ok) {
        let Some(pid) = entry.file_name().to_str().and_then(|n| n.parse::<u32>().ok()) else { continue };
        let Ok(cmdline) = std::fs::read(entry.path().join("cmdline")) else { continue };
        let args: Vec<String> = cmdline.split(|b| *b == 0).map(|a| String::from_utf8_lossy(a).into_owned()).collect();
        if args.iter().any(|a| a == "serve") && args.iter().any(|a| a == wanted) {
            return pid;
        }
    }
    panic!("no fedmcp process serves {wanted}");
}

/// A field of /proc/<pid>/status in KiB (VmRSS, VmHWM).
fn status_kib(pid: u32, field: &str) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).expect("the server is running");
    status
        .lines()
        .find_map(|line| line.strip_prefix(field)?.strip_prefix(':'))
        .and_then(|value| value.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap_or_else(|| panic!("no {field} in /proc/{pid}/status"))
}

/// Call `tool` asking for log messages from `info` up; the result (or error message) and the
/// notifications that came with it.
async fn call_with_logs(client: &StatelessClient, tool: &str, arguments: Value) -> (Result<Value, String>, Vec<Value>) {
    let meta = json!({
        "io.modelcontextprotocol/protocolVersion": "2026-07-28",
        "io.modelcontextprotocol/clientCapabilities": client.capabilities,
        "io.modelcontextprotocol/clientInfo": { "name": "fedmcp-tests", "version": "1" },
        "io.modelcontextprotocol/logLevel": "info",
    });
    let body = json!({ "jsonrpc": "2.0", "id": 9, "method": "tools/call",
        "params": { "name": tool, "arguments": arguments, "_meta": meta } });
    let response = client
        .post()
        .header("mcp-protocol-version", "2026-07-28")
        .header("mcp-method", "tools/call")
        .header("mcp-name", tool)
        .body(body.to_string())
        .send()
        .await
        .expect("the server answers");
    let text = response.text().await.unwrap_or_default();
    let messages: Vec<Value> = match serde_json::from_str::<Value>(&text) {
        Ok(message) => vec![message],
        Err(_) => text
            .lines()
            .filter_map(|line| line.strip_prefix("data:"))
            .filter_map(|data| serde_json::from_str(data.trim()).ok())
            .collect(),
    };
    let (answers, notifications): (Vec<Value>, Vec<Value>) = messages.into_iter().partition(|m| m.get("id").is_some());
    let answer = answers.into_iter().next().unwrap_or(Value::Null);
    let result = match answer.get("error") {
        Some(error) => Err(error["message"].as_str().unwrap_or_default().to_owned()),
        None => Ok(answer["result"].clone()),
    };
    (result, notifications)
}

#[tokio::test]
async fn an_event_flood_is_cut_at_its_budget_and_the_hosts_memory_stays_bounded() {
    const LIMIT_KIB: u64 = 256 << 10;
    let fixture = Fixture::new("[capabilities]\ntimeout_ms = 90000\n");
    let server = start(&fixture.plugins());
    let client = StatelessClient::new(&server);
    let pid = server_pid(&fixture.plugins());
    // One call first, so the idle figure includes a call's setup.
    let warm = client.call("hostile__count_calls", json!({})).await;
    assert_eq!(warm.as_ref().map(text), Ok("1"), "{warm:?}");
    let idle = status_kib(pid, "VmRSS");
    // Reset the high-water mark (start-up compiles the plugin), so VmHWM is the floods' peak.
    let _ = std::fs::write(format!("/proc/{pid}/clear_refs"), "5");

    let started = Instant::now();
    let floods = async {
        let (logged, events) = tokio::join!(
            call_with_logs(&client, "hostile__log_flood", json!({ "seconds": 10 })),
            client.call("hostile__event_flood", json!({ "count": 200_000 })),
        );
        (logged, events, started.elapsed())
    };
    // Another caller, served while the floods run.
    let other = async {
        tokio::time::sleep(Duration::from_secs(2)).await;
        let asked = Instant::now();
        let counted = client.call("hostile__count_calls", json!({})).await;
        client.still_serving().await;
        (counted, asked.elapsed(), started.elapsed())
    };
    // Watch the host while the floods run; past the limit (or the deadline) the test fails
    // at once and the server is killed, rather than let it take the machine's memory.
    let peak = std::sync::atomic::AtomicU64::new(idle);
    let watch = async {
        let deadline = Instant::now() + Duration::from_secs(150);
        while Instant::now() < deadline {
            let rss = status_kib(pid, "VmRSS");
            peak.fetch_max(rss, std::sync::atomic::Ordering::SeqCst);
            if rss.saturating_sub(idle) >= LIMIT_KIB {
                return format!("VmRSS rose to {rss} KiB, {} KiB over idle ({idle} KiB)", rss - idle);
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        "the floods did not end within 150 s".to_owned()
    };
    let ((logged, events, floods_took), (counted, other_took, other_done_at)) = tokio::select! {
        finished = async { tokio::join!(floods, other) } => finished,
        failure = watch => panic!("{failure}"),
    };
    let watched = peak.load(std::sync::atomic::Ordering::SeqCst);
    let hwm = status_kib(pid, "VmHWM");
    let rss = status_kib(pid, "VmRSS");
    eprintln!(
        "host memory: idle VmRSS {idle} KiB, peak VmRSS seen {watched} KiB, VmHWM {hwm} KiB (+{} KiB over idle), \
         VmRSS after {rss} KiB; floods took {floods_took:?}; the other call took {other_took:?}",
        hwm.saturating_sub(idle)
    );
    assert!(hwm.saturating_sub(idle) < LIMIT_KIB, "VmHWM {hwm} KiB is {} KiB over idle", hwm - idle);

    // The other caller was served before the floods ended.
    assert_eq!(counted.as_ref().map(text), Ok("1"), "{counted:?}");
    assert!(other_done_at < floods_took, "the other call ended at {other_done_at:?}, after the floods");

    // Each flood ends with its result or a clear error.
    let (logged, notifications) = logged;
    match &logged {
        Ok(result) => assert!(text(result).starts_with("logged "), "{result}"),
        Err(error) => assert!(error.contains("time limit"), "{error}"),
    }
    match &events {
        Ok(result) => assert_eq!(text(result), "sent 200000 progress and 200000 list-changed events"),
        Err(error) => assert!(error.contains("time limit"), "{error}"),
    }
    // The caller hears of the budget once, and gets no more than it allows.
    let warnings = notifications
        .iter()
        .filter(|n| n["params"]["data"].as_str().is_some_and(|d| d.contains("exceeded its event budget")))
        .count();
    assert_eq!(warnings, 1, "{} notifications", notifications.len());
    assert!(notifications.len() <= 1_001, "{} notifications", notifications.len());
    let lines = server.log_lines();
    assert!(lines.iter().any(|l| l.contains("exceeded its event budget") && l.contains("dropped=")), "{lines:?}");
}

/// Write a host config with `plugins` lines under `[plugins]`; its path.
fn host_config(fixture: &Fixture, plugins: &str) -> PathBuf {
    let path = fixture.path("host.toml");
    std::fs::write(&path, format!("[plugins]\ncache_dir = \"\"\n{plugins}\n")).expect("write the host config");
    path
}

#[tokio::test]
async fn a_grant_by_name_may_not_reach_private_addresses_nor_look_up_other_names() {
    let port = allowed_host();
    let http_port = allowed_host();

    // A name that resolves to loopback is refused at load, naming the field and the way out.
    let fixture = Fixture::new(&format!("[capabilities]\nnetwork = [\"localhost:{port}\"]\n"));
    let server = start(&fixture.plugins());
    let health = server.health().await;
    let failed = health["plugins"]["failed"].as_array().cloned().unwrap_or_default();
    let reason = failed.first().and_then(|f| f["reason"].as_str()).unwrap_or_default().to_owned();
    for needle in ["hostile.toml", "capabilities.network[0]", "loopback", "plugins.allow_private_networks"] {
        assert!(reason.contains(needle), "{needle:?} not in {health}");
    }
    drop(server);

    // IP literals still work; other names cannot be looked up, and an HTTP grant by name is
    // checked where it points when the request is made.
    let fixture = Fixture::new(&format!(
        "[capabilities]\nnetwork = [\"127.0.0.1:{port}\"]\nhttp = [\"localhost:{http_port}\"]\n"
    ));
    let server = start(&fixture.plugins());
    let client = StatelessClient::new(&server);
    let connected = client.call("hostile__connect", json!({ "address": format!("127.0.0.1:{port}") })).await;
    assert!(connected.as_ref().map(text).is_ok_and(|t| t.contains("hello from the allowed host")), "{connected:?}");
    let looked_up = client.call("hostile__lookup", json!({ "name": "localhost" })).await;
    let error = looked_up.expect_err("an ungranted name must not resolve");
    assert!(error.contains("name lookup localhost") && error.contains("capabilities.network"), "{error}");
    let literal = client.call("hostile__lookup", json!({ "name": "127.0.0.1" })).await;
    assert!(literal.is_ok(), "an IP literal needs no lookup: {literal:?}");
    let fetched = client.call("hostile__http_get", json!({ "address": format!("localhost:{http_port}") })).await;
    let error = fetched.expect_err("a name resolving to loopback must not be reached over HTTP");
    assert!(error.contains("loopback") && error.contains("allow_private_networks"), "{error}");
    drop(server);

    // The operator may allow private networks: then the granted name resolves and is reached.
    let fixture = Fixture::new(&format!(
        "[capabilities]\nnetwork = [\"localhost:{port}\"]\nhttp = [\"localhost:{http_port}\"]\n"
    ));
    let config = host_config(&fixture, "allow_private_networks = true");
    let server = Server::start_configured(&fixture.plugins(), &config, "127.0.0.1:0");
    let client = StatelessClient::new(&server);
    let looked_up = client.call("hostile__lookup", json!({ "name": "localhost" })).await;
    assert!(looked_up.as_ref().is_ok_and(|r| text(r).contains("127")), "{looked_up:?}");
    let other = client.call("hostile__lookup", json!({ "name": "localhost.localdomain" })).await;
    assert!(other.is_err(), "only granted names resolve: {other:?}");
    let fetched = client.call("hostile__http_get", json!({ "address": format!("localhost:{http_port}") })).await;
    assert!(fetched.as_ref().map(text).is_ok_and(|t| t == "200 hello from the allowed host"), "{fetched:?}");
}
