//! Three replicas behind a real HAProxy (Debian's package), all on 127.0.0.1: what an operator
//! deploys, proven with the real components. The replicas share `[http] request_state_key`
//! (so any of them opens an MRTR state another sealed) and each has its own `replica_id`,
//! which starts the ids of the tasks it creates; HAProxy balances round-robin, sends
//! `tasks/*` to the replica named in the task id (the `Mcp-Name` header, SEP-2663), and for
//! legacy (2025-11-25) sessions sticks to the replica that issued the `Mcp-Session-Id`.
//! Rate limits are shared through a real Redis (`redis-server`) the test starts. A held
//! call's retry that reaches the wrong replica is tested on two replicas reached directly
//! (no balancer): what a balancer without affinity would do to it.
//!
//! `cargo xtask test` installs `haproxy` and `redis-server` (Debian 12) when missing.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use serde_json::{Value, json};

use crate::support::{self, Server, StatelessClient, failing_scenarios, free_port, run_conformance};

/// The key every replica seals MRTR request states with (test-only).
const STATE_KEY: &str = "7a1c5e0f9b3d2a4c6e8f0a1b3c5d7e9f0a2b4c6d8e0f1a3b5c7d9e1f3a5b7c9d";

/// A process the test started; killed (and reaped) when dropped, so nothing outlives a test.
struct Daemon {
    child: Child,
}

impl Drop for Daemon {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Wait until `check` holds, for at most `patience`.
fn wait_until(what: &str, patience: Duration, mut check: impl FnMut() -> bool) {
    let deadline = Instant::now() + patience;
    while !check() {
        assert!(Instant::now() < deadline, "{what} did not happen within {patience:?}");
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// A Redis server on a free loopback port, with no persistence.
struct Redis {
    daemon: Option<Daemon>,
    port: u16,
}

impl Redis {
    fn start() -> Self {
        let port = free_port();
        let child = Command::new("redis-server")
            .args(["--port", &port.to_string(), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("redis-server runs (cargo xtask test installs Debian's redis-server)");
        let redis = Self { daemon: Some(Daemon { child }), port };
        wait_until("redis-server answering PING", Duration::from_secs(20), || redis.ping());
        redis
    }

    fn url(&self) -> String {
        format!("redis://127.0.0.1:{}", self.port)
    }

    fn ping(&self) -> bool {
        let Ok(mut stream) = TcpStream::connect(("127.0.0.1", self.port)) else { return false };
        let _ = stream.set_read_timeout(Some(Duration::from_secs(2)));
        let mut reply = [0u8; 7];
        stream.write_all(b"PING\r\n").is_ok() && stream.read_exact(&mut reply).is_ok() && &reply == b"+PONG\r\n"
    }

    fn stop(&mut self) {
        self.daemon = None;
    }
}

/// HAProxy in front of the replicas: `stateless` balances round-robin (with `tasks/*` sent to
/// the replica its task id names), `affinity` does the same and also sticks a legacy session
/// to the replica that issued its `Mcp-Session-Id`. Every answer says which replica gave it
/// (`x-replica`), for the test's eyes only.
struct Balancer {
    _daemon: Daemon,
    _dir: tempfile::TempDir,
    stateless: u16,
    affinity: u16,
}

/// One `backend` section: health checks on `/health`; a retry only when the connection to a
/// replica could not be made (nothing was sent, so nothing is replayed), on another replica.
fn backend(name: &str, replicas: &[(&str, &str)], sticky: bool) -> String {
    let mut section = format!(
        "backend {name}\n  balance roundrobin\n  option httpchk\n  http-check send meth GET uri /health ver HTTP/1.1 hdr \
         Host 127.0.0.1\n  http-check expect status 200\n  retries 2\n  retry-on conn-failure\n  option redispatch 1\n  \
         http-response set-header x-replica %s\n"
    );
    if sticky {
        section.push_str(
            "  stick-table type string len 64 size 100k expire 30m\n  stick match req.hdr(mcp-session-id)\n  stick \
             store-response res.hdr(mcp-session-id)\n",
        );
    }
    for (tag, _) in replicas {
        section.push_str(&format!(
            "  use-server {tag} if {{ req.hdr(mcp-method) -m beg tasks/ }} {{ req.hdr(mcp-name),field(1,.) -m str {tag} }}\n"
        ));
    }
    for (tag, address) in replicas {
        section.push_str(&format!("  server {tag} {address} check inter 200ms fall 1 rise 2\n"));
    }
    section
}

impl Balancer {
    fn start(replicas: &[(&str, &str)]) -> Self {
        let dir = tempfile::tempdir().expect("a folder for haproxy.cfg");
        let (stateless, affinity) = (free_port(), free_port());
        let config = format!(
            "global\n  maxconn 1000\n\ndefaults\n  mode http\n  timeout connect 2s\n  timeout client 5m\n  timeout server \
             5m\n  timeout http-request 10s\n\nfrontend stateless\n  bind 127.0.0.1:{stateless}\n  default_backend \
             replicas\n\nfrontend affinity\n  bind 127.0.0.1:{affinity}\n  default_backend replicas_affinity\n\n{}\n{}",
            backend("replicas", replicas, false),
            backend("replicas_affinity", replicas, true),
        );
        let path = dir.path().join("haproxy.cfg");
        std::fs::write(&path, &config).expect("haproxy.cfg written");
        let checked = Command::new("haproxy").arg("-c").arg("-f").arg(&path).output();
        let checked = checked.expect("haproxy runs (cargo xtask test installs Debian's haproxy)");
        assert!(checked.status.success(), "haproxy -c:\n{config}\n{}", String::from_utf8_lossy(&checked.stderr));
        // -db: stay in the foreground, so the test owns (and kills) the process.
        let child = Command::new("haproxy")
            .arg("-db")
            .arg("-f")
            .arg(&path)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("haproxy starts");
        let balancer = Self { _daemon: Daemon { child }, _dir: dir, stateless, affinity };
        for port in [stateless, affinity] {
            wait_until("haproxy listening", Duration::from_secs(20), || {
                TcpStream::connect(("127.0.0.1", port)).is_ok()
            });
        }
        balancer
    }

    fn url(port: u16) -> String {
        format!("http://127.0.0.1:{port}/mcp")
    }
}

/// `count` replicas serving `plugins`, each with the shared state key, its tag `r<n>` and
/// `extra` config.
fn start_replicas(count: usize, plugins: &Path, dir: &Path, extra: &str) -> Vec<Server> {
    (1..=count)
        .map(|n| {
            let config = dir.join(format!("r{n}.toml"));
            let text = format!("[http]\nrequest_state_key = \"{STATE_KEY}\"\nreplica_id = \"r{n}\"\n{extra}");
            std::fs::write(&config, text).expect("replica config written");
            Server::start_configured(plugins, &config, "127.0.0.1:0")
        })
        .collect()
}

fn addresses(replicas: &[Server]) -> Vec<(String, String)> {
    replicas.iter().enumerate().map(|(i, server)| (format!("r{}", i + 1), server.address.clone())).collect()
}

fn balance(replicas: &[Server]) -> Balancer {
    let addresses = addresses(replicas);
    let named: Vec<(&str, &str)> = addresses.iter().map(|(tag, address)| (tag.as_str(), address.as_str())).collect();
    Balancer::start(&named)
}

fn client(url: String, capabilities: Value, token: Option<String>) -> StatelessClient {
    StatelessClient { http: reqwest::Client::new(), url, capabilities, token }
}

/// A 2026-07-28 request as `StatelessClient::request` sends it; which replica answered (HAProxy's
/// `x-replica`) and the JSON-RPC reply.
async fn routed(client: &StatelessClient, method: &str, params: Value) -> (String, Value) {
    let mut params = params;
    params["_meta"] = json!({
        "io.modelcontextprotocol/protocolVersion": "2026-07-28",
        "io.modelcontextprotocol/clientCapabilities": client.capabilities,
        "io.modelcontextprotocol/clientInfo": { "name": "replicas-test", "version": "1" }
    });
    let mut request = client.post().header("mcp-protocol-version", "2026-07-28").header("mcp-method", method);
    let name = params.get("name").or_else(|| params.get("taskId")).and_then(Value::as_str);
    if let Some(name) = name {
        request = request.header("mcp-name", name);
    }
    let body = json!({ "jsonrpc": "2.0", "id": 1, "method": method, "params": params });
    let response = request.body(body.to_string()).send().await.expect("haproxy answers");
    let replica = response.headers().get("x-replica").and_then(|v| v.to_str().ok()).unwrap_or_default().to_owned();
    let text = response.text().await.unwrap_or_default();
    (replica, support::jsonrpc_message(&text))
}

/// A 2026-07-28 `tools/call`, where the connection may break: `Ok(result)`, or `Err` with the
/// JSON-RPC error or the transport's.
async fn try_call(client: &StatelessClient, tool: &str, arguments: Value) -> Result<Value, String> {
    let meta = json!({
        "io.modelcontextprotocol/protocolVersion": "2026-07-28",
        "io.modelcontextprotocol/clientCapabilities": client.capabilities,
    });
    let body = json!({ "jsonrpc": "2.0", "id": 1, "method": "tools/call",
        "params": { "name": tool, "arguments": arguments, "_meta": meta } });
    let request = client
        .post()
        .header("mcp-protocol-version", "2026-07-28")
        .header("mcp-method", "tools/call")
        .header("mcp-name", tool)
        .body(body.to_string());
    let response = request.send().await.map_err(|e| format!("transport: {e}"))?;
    let status = response.status();
    let text = response.text().await.map_err(|e| format!("transport (HTTP {status}): {e}"))?;
    let reply = support::jsonrpc_message(&text);
    match (reply.get("result"), reply.get("error")) {
        (Some(result), None) => Ok(result.clone()),
        _ => Err(format!("HTTP {status}: {text}")),
    }
}

#[tokio::test]
async fn both_protocol_eras_pass_conformance_through_haproxy() {
    let dir = tempfile::tempdir().expect("temp dir");
    let replicas = start_replicas(3, &support::example_plugins(), dir.path(), "");
    let balancer = balance(&replicas);
    let stateless = Balancer::url(balancer.stateless);

    // Round-robin reaches every replica.
    let lister = client(stateless.clone(), json!({}), None);
    let mut seen = std::collections::BTreeSet::new();
    for _ in 0..6 {
        let (replica, reply) = routed(&lister, "tools/list", json!({})).await;
        assert!(reply["result"]["tools"].is_array(), "{reply}");
        seen.insert(replica);
    }
    assert_eq!(seen.into_iter().collect::<Vec<_>>(), ["r1", "r2", "r3"]);

    // A task is created wherever the call lands; its id names that replica, and every
    // `tasks/get` of it reaches that replica however the rest is balanced.
    let tasks = client(stateless.clone(), json!({ "extensions": { "io.modelcontextprotocol/tasks": {} } }), None);
    for _ in 0..3 {
        let (creator, created) =
            routed(&tasks, "tools/call", json!({ "name": "slow_compute", "arguments": { "seconds": 0.2 } })).await;
        let id = created["result"]["taskId"].as_str().unwrap_or_else(|| panic!("a task: {created}")).to_owned();
        assert!(id.starts_with(&format!("{creator}.")), "{id} was created by {creator}");
        for _ in 0..4 {
            let (answerer, got) = routed(&tasks, "tasks/get", json!({ "taskId": id })).await;
            assert_eq!(answerer, creator, "tasks/get of {id}");
            assert!(got["result"]["status"].is_string(), "{got}");
        }
    }

    let summary = run_conformance(&stateless, "2026-07-28");
    assert_eq!(failing_scenarios(&summary), Vec::<&str>::new(), "2026-07-28 through round-robin:\n{summary}");
    let summary = run_conformance(&Balancer::url(balancer.affinity), "2025-11-25");
    assert_eq!(failing_scenarios(&summary), Vec::<&str>::new(), "2025-11-25 with session affinity:\n{summary}");
}

/// `fedmcp keys generate`: an Ed25519 key pair in `dir`; the private key for signing.
fn identity_provider(dir: &Path) -> jsonwebtoken::EncodingKey {
    let output = Command::new(env!("CARGO_BIN_EXE_fedmcp"))
        .args(["keys", "generate", "--name", "idp", "--dir"])
        .arg(dir)
        .output()
        .expect("fedmcp keys generate runs");
    assert!(output.status.success(), "{}", String::from_utf8_lossy(&output.stderr));
    let private: PathBuf = dir.join("idp.pem");
    jsonwebtoken::EncodingKey::from_ed_pem(&std::fs::read(private).expect("the key")).expect("an Ed25519 key")
}

fn token(key: &jsonwebtoken::EncodingKey, subject: &str) -> String {
    let now = SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_secs()).unwrap_or_default();
    let claims = json!({ "iss": "https://idp.test", "aud": "replicas", "sub": subject, "iat": now, "exp": now + 600,
        "scope": "*" });
    let mut header = jsonwebtoken::Header::new(jsonwebtoken::Algorithm::EdDSA);
    header.kid = Some("idp".to_owned());
    jsonwebtoken::encode(&header, &claims, key).expect("the test signs a token")
}

/// Send `total` calls of a quick tool as `caller`, `concurrency` at a time; how many were
/// admitted, how many refused by the rate limit, and how long it took.
async fn spend(caller: Arc<StatelessClient>, total: usize, concurrency: usize) -> (usize, usize, Duration) {
    let started = Instant::now();
    let next = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let workers: Vec<_> = (0..concurrency)
        .map(|_| {
            let (caller, next) = (caller.clone(), next.clone());
            tokio::spawn(async move {
                let (mut admitted, mut limited) = (0, 0);
                while next.fetch_add(1, std::sync::atomic::Ordering::Relaxed) < total {
                    match caller.call("text-tools__slugify", json!({ "text": "Shared Budget" })).await {
                        Ok(result) if result["content"][0]["text"] == "shared-budget" => admitted += 1,
                        Err(message) if message.contains("rate limit exceeded") => limited += 1,
                        other => panic!("neither served nor rate-limited: {other:?}"),
                    }
                }
                (admitted, limited)
            })
        })
        .collect();
    let (mut admitted, mut limited) = (0, 0);
    for worker in workers {
        let (a, l) = worker.await.expect("a worker");
        admitted += a;
        limited += l;
    }
    (admitted, limited, started.elapsed())
}

#[tokio::test]
async fn a_rate_limit_is_one_budget_across_replicas_through_redis() {
    // N a minute with a burst of N: within the seconds this takes, at most a few hundredths of
    // a token refill, so exactly N are admitted in all.
    const N: usize = 12;
    let mut redis = Redis::start();
    let dir = tempfile::tempdir().expect("temp dir");
    let idp = identity_provider(dir.path());
    let plugins = tempfile::tempdir().expect("plugins folder");
    std::fs::copy(support::repo_root().join("plugins/text-tools.wasm"), plugins.path().join("text-tools.wasm"))
        .expect("text-tools copied");
    let extra = format!(
        "\n[auth]\naudience = \"replicas\"\nalgorithms = [\"EdDSA\"]\n\n[[auth.issuers]]\nissuer = \
         \"https://idp.test\"\npublic_key = \"idp.pub.pem\"\nkid = \"idp\"\n\n[limits]\nper_minute = {N}\nburst = \
         {N}\nredis = \"{}\"\n",
        redis.url()
    );
    let replicas = start_replicas(3, plugins.path(), dir.path(), &extra);
    let balancer = balance(&replicas);
    let url = Balancer::url(balancer.stateless);

    let alice = Arc::new(client(url.clone(), json!({}), Some(token(&idp, "alice"))));
    let (admitted, limited, took) = spend(alice.clone(), 3 * N, 6).await;
    assert!(took < Duration::from_secs(4), "too slow for the refill to stay under one token: {took:?}");
    assert_eq!((admitted, limited), (N, 2 * N), "alice's budget is one across three replicas");
    // Another caller has a budget of its own, shared the same way.
    let bob = Arc::new(client(url.clone(), json!({}), Some(token(&idp, "bob"))));
    let (admitted, _, _) = spend(bob, 2 * N, 6).await;
    assert_eq!(admitted, N, "bob's budget");

    // Redis gone: every replica refuses limited uses (fails closed), quickly and saying why.
    redis.stop();
    let carol = client(url, json!({}), Some(token(&idp, "carol")));
    for _ in 0..3 {
        let started = Instant::now();
        let refused = carol.call("text-tools__slugify", json!({ "text": "x" })).await.expect_err("fails closed");
        assert!(refused.contains("rate limit store") && refused.contains("refused"), "{refused}");
        assert!(started.elapsed() < Duration::from_secs(5), "bounded: {:?}", started.elapsed());
    }
}

#[tokio::test]
async fn killing_a_replica_fails_only_the_calls_in_flight_on_it() {
    const CALLS: usize = 200;
    const CONCURRENCY: usize = 8;
    let dir = tempfile::tempdir().expect("temp dir");
    let mut replicas = start_replicas(3, &support::example_plugins(), dir.path(), "");
    let balancer = balance(&replicas);
    let caller = Arc::new(client(Balancer::url(balancer.stateless), json!({}), None));

    // Each call takes ~50 ms in the plugin, so several are in flight on every replica.
    let killed_at: Arc<std::sync::OnceLock<Instant>> = Arc::default();
    let next = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let workers: Vec<_> = (0..CONCURRENCY)
        .map(|_| {
            let (caller, next, killed_at) = (caller.clone(), next.clone(), killed_at.clone());
            tokio::spawn(async move {
                let mut outcomes = Vec::new();
                while next.fetch_add(1, std::sync::atomic::Ordering::Relaxed) < CALLS {
                    let started = Instant::now();
                    let after_kill = killed_at.get().is_some_and(|killed| started > *killed);
                    let call = try_call(&caller, "slow_compute", json!({ "seconds": 0.05, "label": "load" }));
                    let outcome = tokio::time::timeout(Duration::from_secs(30), call).await;
                    let ok =
                        matches!(&outcome, Ok(Ok(result)) if result["content"][0]["text"] == "load: done after 0.05 s");
                    outcomes.push((after_kill, ok, format!("{outcome:?}")));
                }
                outcomes
            })
        })
        .collect();
    // Kill r2 a quarter of the way through.
    while next.load(std::sync::atomic::Ordering::Relaxed) < CALLS / 4 {
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    drop(replicas.remove(1));
    let _ = killed_at.set(Instant::now());

    let mut outcomes = Vec::new();
    for worker in workers {
        outcomes.extend(worker.await.expect("a worker"));
    }
    assert_eq!(outcomes.len(), CALLS);
    let failed: Vec<&(bool, bool, String)> = outcomes.iter().filter(|(_, ok, _)| !ok).collect();
    println!("{} of {CALLS} calls failed when r2 was killed: {failed:?}", failed.len());
    assert!(failed.len() <= CONCURRENCY, "{} calls failed, more than were in flight: {failed:?}", failed.len());
    let late_failures: Vec<_> = failed.iter().filter(|(after_kill, _, _)| *after_kill).collect();
    assert!(late_failures.is_empty(), "calls sent after the kill failed: {late_failures:?}");
    assert!(
        outcomes.iter().filter(|(after_kill, _, _)| *after_kill).count() >= CALLS / 2,
        "most calls ran after the kill"
    );
}

/// What a held call's `requestState` carries besides its number: the process that holds it.
/// Two replicas share the sealing key and the same legacy peer (the reference "everything"
/// server, which asks its client for sampling mid-call); each holds one call for the same
/// caller and tool, its first, so both calls have the same number. Replica 1's retry sent to
/// replica 2 opens there (same key, same caller) but is refused, saying where the call waits;
/// replica 2's own call is not resumed with that answer, and each call then completes, on its
/// own replica, with its own answer.
#[tokio::test]
async fn a_held_calls_retry_that_reaches_another_replica_is_refused_and_resumes_nothing_there() {
    const TOOL: &str = "evh__trigger-sampling-request";
    /// Each request's wait, so a lost answer fails the test rather than hangs it.
    const PATIENCE: Duration = Duration::from_secs(30);
    let everything_port = free_port();
    let _everything = crate::federation::start_everything_over_http(everything_port);
    let dir = tempfile::tempdir().expect("temp dir");
    let plugins = tempfile::tempdir().expect("an empty plugins folder");
    let peer = format!(
        "\n[[peers]]\nname = \"evh\"\nnamespace = \"evh\"\nurl = \"http://127.0.0.1:{everything_port}/mcp\"\ntimeout_ms = \
         10000\n"
    );
    let replicas = start_replicas(2, plugins.path(), dir.path(), &peer);
    for replica in &replicas {
        replica.wait_for_peer("evh").await;
    }
    let sampling_client = |server: &Server| {
        let http = reqwest::Client::builder().timeout(PATIENCE).build().expect("an HTTP client");
        StatelessClient { http, url: server.url(), capabilities: json!({ "sampling": {} }), token: None }
    };
    let (first, second) = (sampling_client(&replicas[0]), sampling_client(&replicas[1]));

    // The same caller (the local user on both) starts the same tool on each replica.
    let mut states = Vec::new();
    for (client, prompt) in [(&first, "asked on r1"), (&second, "asked on r2")] {
        let (_, asked) = client.request("tools/call", json!({ "name": TOOL, "arguments": { "prompt": prompt } })).await;
        assert_eq!(asked["result"]["resultType"], "input_required", "{asked}");
        let question = &asked["result"]["inputRequests"]["fedmcp.peer_request"];
        assert!(question["params"]["messages"].to_string().contains(prompt), "{asked}");
        states.push(asked["result"]["requestState"].as_str().expect("a requestState").to_owned());
    }
    let retry = |prompt: &str, state: &str, answer: &str| {
        json!({
            "name": TOOL, "arguments": { "prompt": prompt }, "requestState": state,
            "inputResponses": { "fedmcp.peer_request": {
                "role": "assistant", "content": { "type": "text", "text": answer }, "model": "test" } },
        })
    };

    // Replica 1's state at replica 2: refused, saying so, whatever the arguments.
    for prompt in ["asked on r1", "asked on r2"] {
        let (_, misrouted) = second.request("tools/call", retry(prompt, &states[0], "meant for r1")).await;
        assert_eq!(misrouted["error"]["code"], -32602, "{misrouted}");
        let message = misrouted["error"]["message"].as_str().unwrap_or_default();
        assert!(message.contains("held by another replica") && message.contains("without requestState"), "{misrouted}");
    }

    // Replica 2's own call was still waiting, and gets its own answer.
    let (_, answered) = second.request("tools/call", retry("asked on r2", &states[1], "answer for r2")).await;
    let text = answered["result"]["content"][0]["text"].as_str().unwrap_or_default();
    assert!(text.contains("answer for r2") && !text.contains("meant for r1"), "{answered}");
    // And replica 1's, where it waits.
    let (_, answered) = first.request("tools/call", retry("asked on r1", &states[0], "answer for r1")).await;
    let text = answered["result"]["content"][0]["text"].as_str().unwrap_or_default();
    assert!(text.contains("answer for r1"), "{answered}");
}
