//! The federation proxy, end to end: real fedmcp hosts importing each other and a third-party
//! MCP server over both transports, on 127.0.0.1.

use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::{Value, json};

use crate::support::{
    self, LegacySession, Server, StatelessClient, eventually, example_plugins, failing_scenarios, fixture, free_port,
    node, node_package_bin, run_conformance,
};

const PATIENCE: Duration = Duration::from_secs(30);

/// A plugins folder holding the `version-one` fixture as `<name>.wasm`.
fn plugins_with_greeter(name: &str) -> tempfile::TempDir {
    let dir = tempfile::tempdir().expect("plugins folder");
    std::fs::copy(fixture("version-one"), dir.path().join(format!("{name}.wasm"))).expect("copy the fixture");
    dir
}

fn write_config(dir: &Path, text: &str) -> std::path::PathBuf {
    let path = dir.join("host.toml");
    std::fs::write(&path, text).expect("write the config");
    path
}

fn peer(name: &str, namespace: &str, url: &str) -> String {
    format!("[[peers]]\nname = \"{name}\"\nnamespace = \"{namespace}\"\nurl = \"{url}\"\ntimeout_ms = 10000\n")
}

async fn tool_names(client: &StatelessClient) -> Vec<String> {
    let (_, reply) = client.request("tools/list", json!({})).await;
    reply["result"]["tools"]
        .as_array()
        .map(|tools| tools.iter().filter_map(|t| t["name"].as_str().map(str::to_owned)).collect())
        .unwrap_or_default()
}

fn text_of(result: &Value) -> String {
    result["content"][0]["text"].as_str().unwrap_or_default().to_owned()
}

#[tokio::test]
async fn conformance_passes_through_a_host_that_imports_another() {
    let b = Server::start(&example_plugins());
    let empty = tempfile::tempdir().expect("an empty plugins folder");
    let config = write_config(empty.path(), &peer("b", "", &b.url()));
    let a = Server::start_configured(empty.path(), &config, "127.0.0.1:0");
    a.wait_for_peer("b").await;
    // Sampling, elicitation, MRTR, progress and logging all cross A to reach B's plugin.
    // Every scenario of both runs, Tasks and pending ones included: B's tasks are passed on.
    for revision in ["2025-11-25", "2026-07-28"] {
        let summary = run_conformance(&a.url(), revision);
        assert_eq!(failing_scenarios(&summary), Vec::<&str>::new(), "{revision} through A: {summary}");
    }
}

/// The reference "everything" server over Streamable HTTP, killed when dropped.
pub(crate) struct EverythingServer(Child);

impl Drop for EverythingServer {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn everything_bin() -> String {
    node_package_bin("@modelcontextprotocol/server-everything/dist/index.js").display().to_string()
}

/// Start the reference "everything" server (a 2025-11-25 server that asks its client for
/// sampling mid-call) on `port` of 127.0.0.1, and wait until it listens.
pub(crate) fn start_everything_over_http(port: u16) -> EverythingServer {
    let child = Command::new(node())
        .args([everything_bin().as_str(), "streamableHttp"])
        .env("PORT", port.to_string())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("server-everything starts");
    let deadline = Instant::now() + PATIENCE;
    while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(Instant::now() < deadline, "server-everything did not listen on {port}");
        std::thread::sleep(Duration::from_millis(100));
    }
    EverythingServer(child)
}

#[tokio::test]
async fn imports_a_stdio_server_an_http_server_and_another_fedmcp() {
    let c_plugins = plugins_with_greeter("greeter");
    let c = Server::start(c_plugins.path());
    let port = free_port();
    let _everything = start_everything_over_http(port);
    let empty = tempfile::tempdir().expect("an empty plugins folder");
    let config = format!(
        "{}{}[[peers]]\nname = \"evs\"\ncommand = [\"{}\", \"{}\", \"stdio\"]\ntimeout_ms = 10000\n",
        peer("c", "c", &c.url()),
        peer("evh", "evh", &format!("http://127.0.0.1:{port}/mcp")),
        node().display(),
        everything_bin(),
    );
    let a = Server::start_configured(empty.path(), &write_config(empty.path(), &config), "127.0.0.1:0");
    for name in ["c", "evh", "evs"] {
        a.wait_for_peer(name).await;
    }
    let client = StatelessClient::new(&a);
    let names = tool_names(&client).await;
    for expected in ["c__greeter__version", "evh__echo", "evs__echo"] {
        assert!(names.iter().any(|n| n == expected), "{expected} is not in {names:?}");
    }
    assert_eq!(client.call("c__greeter__version", json!({})).await.map(|r| text_of(&r)), Ok("one".to_owned()));
    for tool in ["evh__echo", "evs__echo"] {
        let result = client.call(tool, json!({ "message": "through fedmcp" })).await.expect("echo answers");
        assert!(text_of(&result).contains("through fedmcp"), "{tool}: {result}");
    }
    // The peer's own validation reaches the caller.
    let refused = client.call("evs__echo", json!({})).await;
    assert!(refused.is_err() || refused.is_ok_and(|r| r["isError"] == true), "a call without its argument succeeded");
}

#[tokio::test]
async fn three_hosts_in_a_cycle_serve_and_report_the_loop() {
    let ports = [free_port(), free_port(), free_port()];
    let url = |i: usize| format!("http://127.0.0.1:{}/mcp", ports[i]);
    let folders: Vec<_> = (0..3).map(|_| plugins_with_greeter("greeter")).collect();
    // A imports B, B imports C, C imports A.
    let hosts: Vec<Server> = (0..3)
        .map(|i| {
            let next = (i + 1) % 3;
            let namespace = ["a", "b", "c"][next];
            let config = write_config(folders[i].path(), &peer(namespace, namespace, &url(next)));
            Server::start_configured(folders[i].path(), &config, &format!("127.0.0.1:{}", ports[i]))
        })
        .collect();
    for (i, host) in hosts.iter().enumerate() {
        host.wait_for_peer(["b", "c", "a"][i]).await;
    }
    let a = StatelessClient::new(&hosts[0]);
    // A serves its own tools, B's, and C's through B, and nothing that came back around.
    eventually("A imports C's tools through B", PATIENCE, async || {
        tool_names(&a).await.iter().any(|n| n == "b__c__greeter__version")
    })
    .await;
    eventually("A reports the loop", PATIENCE, async || {
        let health = hosts[0].health().await;
        health["peers"]["up"][0]["loop"]["dropped"].as_array().is_some_and(|dropped| !dropped.is_empty())
    })
    .await;
    let names = tool_names(&a).await;
    assert!(names.iter().all(|n| !n.starts_with("b__c__a__")), "an entry came back around: {names:?}");
    assert!(names.iter().all(|n| n.len() <= 64), "names grew without bound: {names:?}");
    assert_eq!(a.call("b__c__greeter__version", json!({})).await.map(|r| text_of(&r)), Ok("one".to_owned()));

    // A request that already passed through A is refused, not followed.
    let (_, listed) = a.request("tools/list", json!({})).await;
    let own = listed["result"]["tools"]
        .as_array()
        .and_then(|tools| tools.iter().find(|t| t["name"] == "greeter__version"))
        .cloned()
        .expect("A's own tool");
    let a_id = own["_meta"]["dev.fedmcp/path"][0].as_str().expect("A's id in the path").to_owned();
    let looping = json!({
        "name": "b__greeter__version",
        "arguments": {},
        "_meta": { "dev.fedmcp/via": [a_id] },
    });
    let (_, reply) = a.request("tools/call", looping).await;
    let message = reply["error"]["message"].as_str().unwrap_or_default();
    assert!(message.contains("federation loop"), "{reply}");
}

#[tokio::test]
async fn a_peer_that_dies_fails_only_its_own_calls_and_comes_back() {
    let b_plugins = plugins_with_greeter("greeter");
    let b_port = free_port();
    let b_listen = format!("127.0.0.1:{b_port}");
    let b_config = write_config(b_plugins.path(), "");
    let b = Server::start_configured(b_plugins.path(), &b_config, &b_listen);
    let a_plugins = plugins_with_greeter("local");
    let config = write_config(a_plugins.path(), &peer("b", "b", &b.url()));
    let a = Server::start_configured(a_plugins.path(), &config, "127.0.0.1:0");
    a.wait_for_peer("b").await;
    let client = StatelessClient::new(&a);

    let slow = client.call("b__greeter__slow_version", json!({ "millis": 5000 }));
    let kill = async {
        tokio::time::sleep(Duration::from_millis(500)).await;
        drop(b);
    };
    let started = Instant::now();
    let (result, ()) = tokio::join!(slow, kill);
    let message = result.expect_err("the call to a killed peer fails");
    assert!(message.contains("peer b"), "the error does not name the peer: {message}");
    assert!(started.elapsed() < Duration::from_secs(12), "the failure took {:?}", started.elapsed());

    // A keeps serving its own entries, and says the peer is down.
    assert_eq!(client.call("local__version", json!({})).await.map(|r| text_of(&r)), Ok("one".to_owned()));
    let refused = client.call("b__greeter__version", json!({})).await.expect_err("the peer is down");
    assert!(refused.contains("peer b"), "{refused}");

    // When the peer returns, so do its entries.
    let _b = Server::start_configured(b_plugins.path(), &b_config, &b_listen);
    a.wait_for_peer("b").await;
    eventually("b's tools work again", PATIENCE, async || client.call("b__greeter__version", json!({})).await.is_ok())
        .await;
}

/// A stateless tools/call for a 2026-07-28 peer is relayed as JSON (host/src/relay.rs) rather
/// than decoded and re-encoded by rmcp; the listener's Host and Origin guards, the rate limit,
/// the audit and MRTR hold on that path as on the normal one.
#[tokio::test]
async fn stateless_calls_to_a_modern_peer_are_relayed_under_the_same_rules() {
    let b = Server::start(&example_plugins());
    let empty = tempfile::tempdir().expect("an empty plugins folder");
    let dir = tempfile::tempdir().expect("a folder for the config and audit log");
    let audit = dir.path().join("audit.jsonl");
    // The local user may use two of B's tools: a third is refused by the gate on the relay.
    let grants = "[local_user]\nscopes = [\"tools:b__text-tools__slugify\", \"tools:b__test_elicitation\"]\n";
    let text = format!(
        "{}[audit]\nfile = {:?}\n[limits]\nper_minute = 1\nburst = 4\n{grants}",
        peer("b", "b", &b.url()),
        audit
    );
    let config = write_config(dir.path(), &text);
    let a =
        Server::start_configured_with_env(empty.path(), &config, "127.0.0.1:0", &[("RUST_LOG", "fedmcp=debug,warn")]);
    a.wait_for_peer("b").await;
    let client = StatelessClient::new(&a);
    let tool = "b__text-tools__slugify";

    let result = client.call(tool, json!({ "text": "Hello, Relay" })).await;
    assert_eq!(result.map(|r| text_of(&r)), Ok("hello-relay".to_owned()));
    assert_eq!(a.relay_count("relayed").await, 1, "A relayed the call");

    // The DNS-rebinding guards still answer first: a foreign Origin or Host is refused.
    let body = json!({ "jsonrpc": "2.0", "id": 1, "method": "tools/call", "params": {
        "name": tool, "arguments": { "text": "x" },
        "_meta": { "io.modelcontextprotocol/protocolVersion": "2026-07-28", "io.modelcontextprotocol/clientCapabilities": {} } } });
    let post = || {
        client
            .post()
            .header("mcp-protocol-version", "2026-07-28")
            .header("mcp-method", "tools/call")
            .header("mcp-name", tool)
            .body(body.to_string())
    };
    let (status, reply) = client.raw(post().header("origin", "http://evil.example")).await;
    assert_eq!(status, reqwest::StatusCode::FORBIDDEN, "{reply}");
    let (status, reply) = client.raw(post().header("host", "evil.example")).await;
    assert_eq!(status, reqwest::StatusCode::FORBIDDEN, "{reply}");

    // A peer's MRTR question comes back with a requestState this host sealed; the retry
    // (which takes the normal path) opens it and reaches the peer's plugin.
    let asked = client.call("b__test_elicitation", json!({ "message": "Who are you?" })).await.expect("input required");
    assert_eq!(asked["resultType"], "input_required", "{asked}");
    let state = asked["requestState"].as_str().expect("a requestState").to_owned();
    let key = asked["inputRequests"].as_object().and_then(|r| r.keys().next().cloned()).expect("one input request");
    let retry = json!({
        "name": "b__test_elicitation", "arguments": { "message": "Who are you?" },
        "inputResponses": { key: { "action": "accept", "content": { "username": "ada", "email": "ada@example.com" } } },
        "requestState": state,
    });
    let (_, answered) = client.request("tools/call", retry).await;
    let text = answered["result"]["content"][0]["text"].as_str().unwrap_or_default();
    assert!(text.starts_with("User response:") && text.contains("ada"), "{answered}");
    // A requestState the peer made, not sealed by this host, is refused.
    let forged = json!({
        "name": "b__test_elicitation", "arguments": { "message": "Who are you?" },
        "inputResponses": { "form": { "action": "accept" } }, "requestState": "not-sealed-here",
    });
    let (_, refused) = client.request("tools/call", forged).await;
    assert!(refused["error"]["message"].as_str().unwrap_or_default().contains("requestState"), "{refused}");

    // Outside the grant: the relay's gate refuses it (no rate limit spent, audited).
    let outside = client.call("b__text-tools__change_case", json!({ "text": "x", "to": "upper" })).await;
    let outside = outside.expect_err("outside the local user's grant");
    assert!(outside.contains("tools:b__text-tools__change_case"), "{outside}");
    assert_eq!(a.relay_count("refused").await, 1, "A's relay refused it");

    // The burst of 4 is spent (two relayed calls, the retry and the forged retry): the next
    // relayed call is refused, and audited.
    let limited = client.call(tool, json!({ "text": "again" })).await.expect_err("rate limited");
    assert!(limited.contains("rate limit"), "{limited}");
    assert_eq!(a.relay_count("refused").await, 2, "A's relay refused it");
    let lines: Vec<Value> = std::fs::read_to_string(&audit)
        .unwrap_or_default()
        .lines()
        .map(|line| serde_json::from_str(line).expect("each audit line is JSON"))
        .collect();
    let of_tool = |decision: &str| lines.iter().filter(|l| l["entry"] == tool && l["decision"] == decision).count();
    assert_eq!(of_tool("allowed"), 1, "{lines:?}");
    assert!(lines.iter().any(|l| l["entry"] == tool && l["outcome"] == "ok"), "{lines:?}");
    assert_eq!(of_tool("denied"), 1, "{lines:?}");
    assert!(lines.iter().any(|l| l["entry"] == "b__test_elicitation" && l["outcome"] == "input required"), "{lines:?}");
    assert!(
        lines.iter().any(|l| l["entry"] == "b__text-tools__change_case"
            && l["decision"] == "denied"
            && l["reason"].as_str().is_some_and(|r| r.contains("scope"))),
        "{lines:?}"
    );
}

/// A client subscribed on A to a resource B's plugin serves is told when B replaces the
/// plugin: B tells its subscribers (A subscribes to every resource it imports), and A tells
/// its own.
#[tokio::test]
async fn a_peers_resource_updates_reach_the_client_that_subscribed() {
    let b_plugins = tempfile::tempdir().expect("B's plugins folder");
    for file in ["conformance.wasm", "conformance.toml"] {
        std::fs::copy(example_plugins().join(file), b_plugins.path().join(file)).expect("copy the plugin");
    }
    let b = Server::start(b_plugins.path());
    let empty = tempfile::tempdir().expect("an empty plugins folder");
    let config = write_config(empty.path(), &peer("b", "b", &b.url()));
    let a = Server::start_configured(empty.path(), &config, "127.0.0.1:0");
    a.wait_for_peer("b").await;
    let mut client = LegacySession::open(&a).await;
    let uri = "test://watched-resource";
    let subscribed = client.request("resources/subscribe", json!({ "uri": uri })).await;
    assert!(subscribed.get("error").is_none(), "{subscribed}");

    // Replace the plugin the way deploy tools do: write beside it, rename over it.
    let incoming = b_plugins.path().join(".incoming.tmp");
    std::fs::copy(example_plugins().join("conformance.wasm"), &incoming).expect("copy");
    std::fs::rename(&incoming, b_plugins.path().join("conformance.wasm")).expect("rename");
    let updated = client.expect_notification("notifications/resources/updated").await;
    assert_eq!(updated["uri"], uri, "{updated}");
}

/// Two callers on 2025-11-25 sessions call, at once, a tool of a legacy peer that asks for
/// sampling mid-call: each request reaches the caller whose call it belongs to (by the
/// response stream it came on), not the other, and not an error for being ambiguous.
#[test]
fn a_legacy_peers_mid_call_requests_reach_their_own_caller() {
    let port = free_port();
    let _everything = start_everything_over_http(port);
    let empty = tempfile::tempdir().expect("an empty plugins folder");
    let config = peer("evh", "evh", &format!("http://127.0.0.1:{port}/mcp"));
    let a = Server::start_configured(empty.path(), &write_config(empty.path(), &config), "127.0.0.1:0");
    let runtime = tokio::runtime::Runtime::new().expect("a runtime");
    runtime.block_on(a.wait_for_peer("evh"));
    let python = support::repo_root().join("tests/.venv/bin/python");
    assert!(python.is_file(), "{} is missing: `cargo xtask test` creates it", python.display());
    let callers: Vec<_> = ["left", "right"]
        .iter()
        .map(|label| {
            let child = Command::new(&python)
                .arg(support::repo_root().join("tests/clients/python_sampling_client.py"))
                .args([&a.url(), "evh__trigger-sampling-request", label])
                .stdout(Stdio::piped())
                .stderr(Stdio::piped())
                .spawn()
                .expect("python runs");
            (*label, child)
        })
        .collect();
    for (label, child) in callers {
        let output = child.wait_with_output().expect("the client finishes");
        let stdout = String::from_utf8_lossy(&output.stdout);
        assert!(output.status.success(), "{label}: {stdout}\n{}", String::from_utf8_lossy(&output.stderr));
        let seen: Value = serde_json::from_str(stdout.trim()).unwrap_or_else(|e| panic!("{e}: {stdout}"));
        let text = seen["text"].to_string();
        assert!(text.contains(&format!("answer from {label}")), "{label} got another's answer: {seen}");
        assert_eq!(seen["is_error"], false, "{seen}");
    }
}

/// A 2026-07-28 caller, a legacy peer that asks for sampling mid-call: A holds the call at the
/// peer, asks the caller with an MRTR `input_required` result, and the caller's retry carries
/// the answer back to the waiting peer.
#[tokio::test]
async fn a_stateless_caller_answers_a_legacy_peers_mid_call_request_through_mrtr() {
    let port = free_port();
    let _everything = start_everything_over_http(port);
    let empty = tempfile::tempdir().expect("an empty plugins folder");
    let config = peer("evh", "evh", &format!("http://127.0.0.1:{port}/mcp"));
    let a = Server::start_configured(empty.path(), &write_config(empty.path(), &config), "127.0.0.1:0");
    a.wait_for_peer("evh").await;
    let tool = "evh__trigger-sampling-request";
    let arguments = json!({ "prompt": "What is six times seven?" });

    // A caller that cannot sample is told so, and nothing is left waiting.
    let mut client = StatelessClient::new(&a);
    let (_, refused) = client.request("tools/call", json!({ "name": tool, "arguments": arguments })).await;
    assert_eq!(refused["error"]["code"], -32021, "{refused}");

    client.capabilities = json!({ "sampling": {} });
    let (_, asked) = client.request("tools/call", json!({ "name": tool, "arguments": arguments })).await;
    let result = &asked["result"];
    assert_eq!(result["resultType"], "input_required", "{asked}");
    let question = &result["inputRequests"]["fedmcp.peer_request"];
    assert_eq!(question["method"], "sampling/createMessage", "{asked}");
    assert!(question["params"]["messages"].to_string().contains("six times seven"), "{asked}");
    let state = result["requestState"].as_str().expect("a requestState").to_owned();

    // A retry that does not answer the question is refused, and the call keeps waiting.
    let (_, unanswered) =
        client.request("tools/call", json!({ "name": tool, "arguments": arguments, "requestState": state })).await;
    assert!(
        unanswered["error"]["message"].as_str().unwrap_or_default().contains("fedmcp.peer_request"),
        "{unanswered}"
    );

    let answer = json!({ "role": "assistant", "content": { "type": "text", "text": "forty-two" }, "model": "test" });
    let retry = json!({
        "name": tool, "arguments": arguments, "requestState": state,
        "inputResponses": { "fedmcp.peer_request": answer },
    });
    let (_, answered) = client.request("tools/call", retry.clone()).await;
    let text = answered["result"]["content"][0]["text"].as_str().unwrap_or_default();
    assert!(text.contains("forty-two"), "{answered}");

    // The held call was answered once; the same retry again finds nothing waiting.
    let (_, again) = client.request("tools/call", retry).await;
    assert!(again["error"]["message"].as_str().unwrap_or_default().contains("no longer waiting"), "{again}");
}

/// What the conformance fixtures' `test_simple_text` says.
const SIMPLE_TEXT: &str = "This is a simple text response for testing.";

/// B's plugins for the legacy relay test: the conformance fixtures (progress, logging) and the
/// hostile plugin (a tool that spins until its 3 s time limit).
fn plugins_for_cancellation() -> tempfile::TempDir {
    let dir = tempfile::tempdir().expect("B's plugins folder");
    for file in ["conformance.wasm", "conformance.toml"] {
        std::fs::copy(example_plugins().join(file), dir.path().join(file)).expect("copy the plugin");
    }
    std::fs::copy(fixture("hostile"), dir.path().join("hostile.wasm")).expect("copy the hostile plugin");
    std::fs::write(dir.path().join("hostile.toml"), "[capabilities]\ntimeout_ms = 3000\n").expect("manifest");
    dir
}

/// Call `params` in `session` and cancel the call 300 ms later; the call's messages, and when
/// it started.
async fn cancel_during(session: &mut LegacySession, params: Value) -> (Vec<Value>, Instant) {
    let started = Instant::now();
    let id = session.next_request_id();
    let cancel = session.post(json!({ "jsonrpc": "2.0", "method": "notifications/cancelled",
        "params": { "requestId": id, "reason": "the user gave up" } }));
    let cancelling = async {
        tokio::time::sleep(Duration::from_millis(300)).await;
        cancel.send().await.expect("the cancellation is sent")
    };
    let ((_, messages), sent) = tokio::join!(session.request_messages("tools/call", params), cancelling);
    assert!(sent.status().is_success(), "the cancellation was refused: {}", sent.status());
    (messages, started)
}

/// A 2025-11-25 session's calls to a 2026-07-28 peer are rmcp's (the relay takes stateless
/// calls only) and lose nothing on the way: progress with the caller's token, log messages at
/// the session's level, a result a legacy client knows, cancellation reaching the peer's
/// plugin, and the peer's question asked of the client on its session, its answer taken back
/// to the peer. A closed session is not served.
#[tokio::test]
async fn a_legacy_sessions_calls_through_a_keep_progress_logs_cancellation_and_questions() {
    let b_plugins = plugins_for_cancellation();
    let b = Server::start(b_plugins.path());
    let empty = tempfile::tempdir().expect("an empty plugins folder");
    let config = write_config(empty.path(), &peer("b", "b", &b.url()));
    let a = Server::start_configured(empty.path(), &config, "127.0.0.1:0");
    a.wait_for_peer("b").await;

    let mut session = LegacySession::open(&a).await;
    assert_eq!(session.call_text("b__test_simple_text", json!({})).await, SIMPLE_TEXT);
    let (status, messages) = session
        .request_messages(
            "tools/call",
            json!({ "name": "b__test_tool_with_progress", "_meta": { "progressToken": "p1" } }),
        )
        .await;
    assert_eq!(status, reqwest::StatusCode::OK);
    let progress: Vec<_> = messages.iter().filter(|m| m["method"] == "notifications/progress").collect();
    assert_eq!(progress.len(), 3, "{messages:?}");
    assert!(progress.iter().all(|p| p["params"]["progressToken"] == "p1"), "{progress:?}");
    let answer = messages.last().expect("an answer");
    assert_eq!(text_of(&answer["result"]), "Progress test completed", "{answer}");
    assert!(answer["result"].get("resultType").is_none(), "a 2026-07-28 field reached a legacy client: {answer}");

    // The session's log level reaches the peer: info messages are dropped at `warning`.
    // rmcp sends a session's log messages on its GET stream.
    let logs = async |session: &mut LegacySession| {
        session.drain_notifications();
        let (_, messages) =
            session.request_messages("tools/call", json!({ "name": "b__test_tool_with_logging" })).await;
        let answer = messages.last().cloned().unwrap_or_default();
        assert!(answer["result"]["isError"] != true && answer.get("error").is_none(), "{answer}");
        let on_the_calls_stream = messages.iter().filter(|m| m["method"] == "notifications/message").count();
        on_the_calls_stream + session.count_notifications("notifications/message", Duration::from_millis(500)).await
    };
    assert_eq!(logs(&mut session).await, 3, "every level until the client sets one");
    let set = session.request("logging/setLevel", json!({ "level": "warning" })).await;
    assert!(set.get("error").is_none(), "{set}");
    assert_eq!(logs(&mut session).await, 0, "info messages below the session's level");

    // Cancelled: the call ends, and B's plugin stops before its time limit would.
    let (messages, started) = cancel_during(&mut session, json!({ "name": "b__hostile__spin" })).await;
    assert!(started.elapsed() < Duration::from_millis(2500), "the call outlived its cancellation: {messages:?}");
    let stop_by_limit = || b.log_lines().into_iter().find(|line| line.contains("stopped at its time limit"));
    tokio::time::sleep(Duration::from_millis(3500).saturating_sub(started.elapsed())).await;
    assert_eq!(stop_by_limit(), None, "a cancelled call kept running at B");

    // The peer asks (MRTR); A asks the client on its session and retries with its answer. A
    // client without the capability gets the error naming it.
    let asking = LegacySession::open_with(&a, json!({ "elicitation": {} })).await;
    let call = json!({ "jsonrpc": "2.0", "id": "ask-1", "method": "tools/call",
        "params": { "name": "b__test_elicitation", "arguments": { "message": "Who are you?" } } });
    // rmcp sends the question on the call's own response stream.
    let mut stream = asking.post(call).send().await.expect("the call is sent");
    let mut pending = String::new();
    let mut answer = Value::Null;
    let deadline = Instant::now() + PATIENCE;
    'read: while Instant::now() < deadline {
        let chunk = tokio::time::timeout(PATIENCE, stream.chunk()).await;
        let Ok(Ok(Some(chunk))) = chunk else { break };
        pending.push_str(&String::from_utf8_lossy(&chunk));
        while let Some(end) = pending.find('\n') {
            let line: String = pending.drain(..=end).collect();
            let Some(message) = line.strip_prefix("data:").and_then(|d| serde_json::from_str::<Value>(d.trim()).ok())
            else {
                continue;
            };
            if message["method"] == "elicitation/create" {
                assert_eq!(message["params"]["message"], "Who are you?", "{message}");
                let reply = json!({ "jsonrpc": "2.0", "id": message["id"],
                    "result": { "action": "accept", "content": { "username": "ada", "email": "ada@example.com" } } });
                let sent = asking.post(reply).send().await.expect("the answer is sent");
                assert_eq!(sent.status(), reqwest::StatusCode::ACCEPTED);
            } else if message["id"] == "ask-1" {
                answer = message;
                break 'read;
            }
        }
    }
    let said = answer["result"]["content"][0]["text"].as_str().unwrap_or_default();
    assert!(said.starts_with("User response:") && said.contains("ada"), "{answer}");
    let (_, messages) = session
        .request_messages("tools/call", json!({ "name": "b__test_elicitation", "arguments": { "message": "?" } }))
        .await;
    let error = messages.last().map(|m| m["error"].to_string()).unwrap_or_default();
    assert!(error.contains("elicitation"), "a client without elicitation was asked: {messages:?}");

    // A closed session is not served.
    assert_eq!(session.close().await, reqwest::StatusCode::NO_CONTENT, "the Python SDK client takes 200 or 204");
    let (status, messages) =
        session.request_messages("tools/call", json!({ "name": "b__test_tool_with_progress" })).await;
    assert_eq!(status, reqwest::StatusCode::NOT_FOUND, "{messages:?}");
    assert_eq!(a.relay_count("relayed").await, 0, "a legacy session's call was relayed");
}

/// A session in use through a hop stays open; a session nobody uses ends after
/// `http.session_idle_secs`.
#[tokio::test]
async fn a_session_in_use_stays_open_and_an_idle_one_is_ended() {
    let b = Server::start(&example_plugins());
    let empty = tempfile::tempdir().expect("an empty plugins folder");
    let text = format!("[http]\nsession_idle_secs = 2\n{}", peer("b", "b", &b.url()));
    let config = write_config(empty.path(), &text);
    let a = Server::start_configured(empty.path(), &config, "127.0.0.1:0");
    a.wait_for_peer("b").await;
    let mut busy = LegacySession::open(&a).await;
    let mut idle = LegacySession::open(&a).await;
    let started = Instant::now();
    while started.elapsed() < Duration::from_millis(3500) {
        let text = busy.call_text("b__text-tools__slugify", json!({ "text": "Still Here" })).await;
        assert_eq!(text, "still-here");
        tokio::time::sleep(Duration::from_millis(400)).await;
    }
    assert!(!busy.tool_names().await.is_empty(), "the busy session was ended");
    let (status, messages) = idle.request_messages("tools/list", json!({})).await;
    assert_eq!(status, reqwest::StatusCode::NOT_FOUND, "the idle session is still open: {messages:?}");
}

/// A session whose client has gone quiet is ended after `http.session_idle_secs` (config/host.toml:
/// "unused (no request) for this long"), even while the host keeps telling it of list changes:
/// what the host sends is not the client's use.
#[tokio::test]
async fn a_quiet_session_is_ended_though_the_host_keeps_telling_it_of_changes() {
    let empty = tempfile::tempdir().expect("a folder for the config");
    let config = write_config(empty.path(), "[http]\nsession_idle_secs = 2\n");
    let a = Server::start_configured(&example_plugins(), &config, "127.0.0.1:0");
    let mut quiet = LegacySession::open(&a).await;
    let other = StatelessClient::new(&a);
    let started = Instant::now();
    while started.elapsed() < Duration::from_millis(4500) {
        other.call("test_trigger_tool_change", json!({})).await.expect("a list change is announced");
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    let heard = quiet.count_notifications("notifications/tools/list_changed", Duration::from_millis(100)).await;
    let (status, messages) = quiet.request_messages("tools/list", json!({})).await;
    assert_eq!(
        status,
        reqwest::StatusCode::NOT_FOUND,
        "a session with no request for 4.5 s (idle limit 2 s) is still open; it heard {heard} list changes ({} messages)",
        messages.len()
    );
}

/// A call that runs longer than `http.session_idle_secs` without sending anything is use of its
/// session: its answer arrives, and the session stays open.
#[tokio::test]
async fn a_call_longer_than_the_idle_limit_keeps_its_session() {
    let plugins = plugins_for_cancellation();
    let empty = tempfile::tempdir().expect("a folder for the config");
    let config = write_config(empty.path(), "[http]\nsession_idle_secs = 1\n");
    let a = Server::start_configured(plugins.path(), &config, "127.0.0.1:0");
    let mut session = LegacySession::open(&a).await;
    // Spins until its 3 s time limit stops it, sending nothing meanwhile.
    let (status, messages) = session.request_messages("tools/call", json!({ "name": "hostile__spin" })).await;
    let answered = messages.iter().any(|m| m.get("result").is_some() || m.get("error").is_some());
    assert!(answered, "the call's stream ended without an answer ({status}): {messages:?}");
    assert!(!session.tool_names().await.is_empty(), "the session was ended during its own call");
}
