//! MCP tasks (SEP-2663) end to end: the conformance plugin's task tools (declared in
//! `plugins/conformance.toml`) created, polled, answered and cancelled over raw 2026-07-28
//! requests; and the task limits refusing with a clear error.

use std::time::Duration;

use serde_json::{Value, json};

use crate::support::{Server, StatelessClient as Client, eventually, example_plugins, fixture};

/// A client that declares the tasks extension (and elicitation, for a task's questions).
pub(crate) fn tasks_client(server: &Server) -> Client {
    Client {
        capabilities: json!({ "elicitation": {}, "extensions": { "io.modelcontextprotocol/tasks": {} } }),
        ..Client::new(server)
    }
}

/// Start a task of `tool`; its id.
pub(crate) async fn start_task(client: &Client, tool: &str, arguments: Value) -> String {
    let created = client.call(tool, arguments).await.expect("the call is answered");
    assert_eq!(created["resultType"], "task", "{created}");
    assert!(created.get("result").is_none() && created.get("requestState").is_none(), "{created}");
    created["taskId"].as_str().expect("a task id").to_owned()
}

pub(crate) async fn get(client: &Client, task: &str) -> Value {
    let (_, reply) = client.request("tasks/get", json!({ "taskId": task })).await;
    reply["result"].clone()
}

/// Poll the task until its status is `status`; the task as then seen.
pub(crate) async fn until(client: &Client, task: &str, status: &str) -> Value {
    let mut seen = Value::Null;
    eventually(&format!("task {task} reaching {status}"), Duration::from_secs(20), async || {
        seen = get(client, task).await;
        seen["status"] == status
    })
    .await;
    seen
}

#[tokio::test]
async fn a_task_runs_asks_its_question_takes_the_answer_and_can_be_cancelled() {
    let server = Server::start(&example_plugins());
    let client = tasks_client(&server);

    // Polled until it completes, with the tool's result inlined.
    let task = start_task(&client, "slow_compute", json!({ "seconds": 0.3, "label": "e2e" })).await;
    let done = until(&client, &task, "completed").await;
    assert_eq!(done["resultType"], "complete", "{done}");
    assert!(done["result"]["content"][0]["text"].as_str().is_some_and(|t| t.starts_with("e2e: done")), "{done}");
    assert!(done["ttlMs"].as_u64().is_some_and(|ttl| ttl > 0), "{done}");

    // A question: the task waits in input_required until tasks/update answers it.
    let task = start_task(&client, "confirm_delete", json!({ "filename": "notes.txt" })).await;
    let waiting = until(&client, &task, "input_required").await;
    let keys: Vec<String> = waiting["inputRequests"].as_object().expect("input requests").keys().cloned().collect();
    assert_eq!(keys, ["confirm"], "{waiting}");
    assert_eq!(waiting["inputRequests"]["confirm"]["method"], "elicitation/create", "{waiting}");
    let answers = json!({ "confirm": { "action": "accept", "content": { "confirm": true } } });
    let (_, ack) = client.request("tasks/update", json!({ "taskId": task, "inputResponses": answers })).await;
    assert_eq!(ack["result"], json!({ "resultType": "complete" }), "{ack}");
    let done = until(&client, &task, "completed").await;
    assert_eq!(done["result"]["content"][0]["text"], "Deleted notes.txt", "{done}");

    // Cancelled while it runs: it ends cancelled at once, and cancelling again is acknowledged.
    let task = start_task(&client, "slow_compute", json!({ "seconds": 30 })).await;
    for _ in 0..2 {
        let (_, ack) = client.request("tasks/cancel", json!({ "taskId": task })).await;
        assert_eq!(ack["result"], json!({ "resultType": "complete" }), "{ack}");
        assert_eq!(get(&client, &task).await["status"], "cancelled");
    }

    // A tool error completes the task with isError; a trap fails it with a JSON-RPC error.
    let task = start_task(&client, "failing_job", json!({})).await;
    assert_eq!(until(&client, &task, "completed").await["result"]["isError"], true);
    let task = start_task(&client, "protocol_error_job", json!({})).await;
    let failed = until(&client, &task, "failed").await;
    assert!(failed["error"]["code"].is_i64() && failed.get("result").is_none(), "{failed}");

    // Without the extension: a task-supporting tool runs inline, a task-only one is refused.
    let plain = Client::new(&server);
    let inline = plain.call("slow_compute", json!({ "seconds": 0 })).await.expect("answered");
    assert!(inline.get("taskId").is_none() && inline["content"].is_array(), "{inline}");
    let (_, refused) = plain.request("tools/call", json!({ "name": "failing_job", "arguments": {} })).await;
    assert_eq!(refused["error"]["code"], -32021, "{refused}");
    assert!(
        refused["error"]["data"]["requiredCapabilities"]["extensions"]["io.modelcontextprotocol/tasks"].is_object()
    );
    // An unknown task id is invalid params.
    let (_, unknown) = client.request("tasks/get", json!({ "taskId": "no-such-task" })).await;
    assert_eq!(unknown["error"]["code"], -32602, "{unknown}");
}

#[tokio::test]
async fn the_task_limits_refuse_with_a_clear_error() {
    let dir = tempfile::tempdir().expect("temp dir");
    let config = dir.path().join("host.toml");
    std::fs::write(&config, "[plugins]\nmax_tasks_per_identity = 2\nmax_tasks = 4\n").expect("config written");
    let server = Server::start_configured(&example_plugins(), &config, "127.0.0.1:0");
    let client = tasks_client(&server);
    for _ in 0..2 {
        start_task(&client, "slow_compute", json!({ "seconds": 30 })).await;
    }
    let refused = client.call("slow_compute", json!({ "seconds": 30 })).await.expect_err("a third task is refused");
    assert!(refused.contains("too many tasks") && refused.contains("plugins.max_tasks_per_identity"), "{refused}");
    // Tools that do not run as tasks are not limited by them.
    let greeting = client.call("greet", json!({ "name": "limits" })).await.expect("served");
    assert_eq!(greeting["content"][0]["text"], "Hello, limits!");
}

/// A task keeps the plugin version it started on: the plugin is replaced while the task runs,
/// new calls get the new version, and the task completes with the old version's answer.
#[tokio::test]
async fn a_task_survives_a_hot_reload_of_its_plugin_and_completes_on_its_version() {
    let dir = tempfile::tempdir().expect("plugins folder");
    std::fs::write(dir.path().join("greeter.toml"), "[tasks]\noptional = [\"slow_version\"]\n")
        .expect("manifest written");
    let greeter = dir.path().join("greeter.wasm");
    // Written beside it, then renamed over it, as deploy tools do.
    let install = |from: &str| {
        let incoming = dir.path().join(".incoming.tmp");
        std::fs::copy(fixture(from), &incoming).expect("copy");
        std::fs::rename(&incoming, &greeter).expect("rename");
    };
    install("version-one");
    let server = Server::start(dir.path());
    let client = tasks_client(&server);
    let task = start_task(&client, "greeter__slow_version", json!({ "millis": 3000 })).await;

    install("version-two");
    eventually("the replaced plugin serving", Duration::from_secs(15), async || {
        client.call("greeter__version", json!({})).await.is_ok_and(|r| r["content"][0]["text"] == "two")
    })
    .await;
    assert_eq!(get(&client, &task).await["status"], "working", "the task ended before the reload took effect");
    let done = until(&client, &task, "completed").await;
    assert_eq!(done["result"]["content"][0]["text"], "one", "the task switched versions: {done}");
}

/// A 2025-11-25 session declares the extension at `initialize`: its calls of a peer's task
/// tools through A become tasks on the peer, polled through A like a 2026-07-28 caller's; a
/// session that did not declare it gets them inline, or refused when they run only as tasks.
#[tokio::test]
async fn a_legacy_session_runs_a_peers_tools_as_tasks_through_a_when_it_declared_them() {
    let b = Server::start(&example_plugins());
    let empty = tempfile::tempdir().expect("an empty plugins folder");
    let config = empty.path().join("host.toml");
    std::fs::write(&config, format!("[[peers]]\nname = \"b\"\nnamespace = \"b\"\nurl = \"{}\"\n", b.url()))
        .expect("config written");
    let a = Server::start_configured(empty.path(), &config, "127.0.0.1:0");
    a.wait_for_peer("b").await;
    let declared = json!({ "elicitation": {}, "extensions": { "io.modelcontextprotocol/tasks": {} } });
    let mut session = crate::support::LegacySession::open_with(&a, declared).await;
    let created = session.request("tools/call", json!({ "name": "b__failing_job", "arguments": {} })).await;
    assert_eq!(created["result"]["resultType"], "task", "{created}");
    let task = created["result"]["taskId"].as_str().expect("a task id").to_owned();
    let mut seen = Value::Null;
    eventually("the peer's task completes", Duration::from_secs(20), async || {
        seen = session.request("tasks/get", json!({ "taskId": task })).await;
        seen["result"]["status"] == "completed"
    })
    .await;
    assert_eq!(seen["result"]["taskId"], task.as_str(), "{seen}");
    assert_eq!(seen["result"]["result"]["isError"], true, "failing_job's tool error: {seen}");

    let mut plain = crate::support::LegacySession::open(&a).await;
    let inline = plain.request("tools/call", json!({ "name": "b__slow_compute", "arguments": { "seconds": 0 } })).await;
    assert!(inline["result"]["content"].is_array() && inline["result"].get("taskId").is_none(), "{inline}");
    let refused = plain.request("tools/call", json!({ "name": "b__failing_job", "arguments": {} })).await;
    assert_eq!(refused["error"]["code"], -32021, "{refused}");
}

/// A peer's tasks count against A's task limits: a caller at its limit is not offered a task
/// by the peer (its call runs inline there), and a task-only tool is refused, not started.
#[tokio::test]
async fn a_peers_tasks_count_against_the_callers_task_limit_on_a() {
    let b = Server::start(&example_plugins());
    let empty = tempfile::tempdir().expect("an empty plugins folder");
    let config = empty.path().join("host.toml");
    let text = format!(
        "[plugins]\nmax_tasks_per_identity = 1\n\n[[peers]]\nname = \"b\"\nnamespace = \"b\"\nurl = \"{}\"\n",
        b.url()
    );
    std::fs::write(&config, text).expect("config written");
    let a = Server::start_configured(empty.path(), &config, "127.0.0.1:0");
    a.wait_for_peer("b").await;
    let client = tasks_client(&a);
    let held = start_task(&client, "b__slow_compute", json!({ "seconds": 30 })).await;
    let inline = client.call("b__slow_compute", json!({ "seconds": 0 })).await.expect("answered");
    assert!(inline.get("taskId").is_none() && inline["content"].is_array(), "inline at the limit: {inline}");
    let refused = client.call("b__failing_job", json!({})).await.expect_err("a task-only tool is refused");
    assert!(refused.contains("only as a task"), "{refused}");
    // The held task is still A's to cancel.
    let (_, ack) = client.request("tasks/cancel", json!({ "taskId": held })).await;
    assert_eq!(ack["result"], json!({ "resultType": "complete" }), "{ack}");
}
