//! The sandbox holds under attack: a hostile plugin tries what it was not granted and fails
//! with a clear error while the host keeps serving; granted, the same plugin succeeds; two
//! calls never share memory.

mod support;

use std::io::{Read, Write};
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use serde_json::{Value, json};
use support::{Server, StatelessClient, repo_root};

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
