//! Real MCP clients against fedmcp serving the example plugins: the official Python SDK
//! client and the MCP Inspector CLI, each over Streamable HTTP and over stdio.

use std::process::{Command, Output};
use std::time::Duration;

use crate::support::{self, Server, example_plugins, node, node_package_bin, repo_root};

fn python() -> std::path::PathBuf {
    let python = repo_root().join("tests/.venv/bin/python");
    assert!(python.is_file(), "{} is missing: `cargo xtask test` creates it", python.display());
    python
}

fn check(what: &str, output: Output) -> String {
    let stdout = String::from_utf8_lossy(&output.stdout).into_owned();
    assert!(
        output.status.success(),
        "{what} failed ({}):\n{stdout}\n{}",
        output.status,
        String::from_utf8_lossy(&output.stderr)
    );
    stdout
}

#[test]
fn python_sdk_client_lists_calls_reads_and_gets_over_http() {
    let server = Server::start(&example_plugins());
    let script = repo_root().join("tests/clients/python_client.py");
    let output = Command::new(python()).arg(script).args(["http", &server.url()]).output().expect("python runs");
    check("python client over HTTP", output);
}

#[test]
fn python_sdk_client_lists_calls_reads_and_gets_over_stdio() {
    let script = repo_root().join("tests/clients/python_client.py");
    let output = Command::new(python())
        .arg(script)
        .args(["stdio", env!("CARGO_BIN_EXE_fedmcp")])
        .arg(example_plugins())
        .output()
        .expect("python runs");
    check("python client over stdio", output);
}

/// Run the Inspector CLI against `target` (a URL, or a command and its arguments).
fn inspector(target: &[&str], method_args: &[&str]) -> serde_json::Value {
    let output = Command::new(node())
        .arg(node_package_bin("@modelcontextprotocol/inspector/clients/launcher/build/index.js"))
        .arg("--cli")
        .args(target)
        .args(method_args)
        .output()
        .expect("the inspector runs");
    let stdout = check("inspector", output);
    serde_json::from_str(&stdout).unwrap_or_else(|e| panic!("inspector printed no JSON ({e}): {stdout}"))
}

fn exercise_with_inspector(target: &[&str]) {
    let tools = inspector(target, &["--method", "tools/list"]);
    assert!(tools["tools"].as_array().is_some_and(|t| t.iter().any(|t| t["name"] == "text-tools__slugify")), "{tools}");
    let called = inspector(
        target,
        &["--method", "tools/call", "--tool-name", "text-tools__slugify", "--tool-arg", "text=Hello, World"],
    );
    assert_eq!(called["content"][0]["text"], "hello-world", "{called}");
    let read = inspector(target, &["--method", "resources/read", "--uri", "notes://topics/manifests"]);
    assert!(read["contents"][0]["text"].as_str().is_some_and(|t| t.contains("Plugin manifests")), "{read}");
    let prompt = inspector(
        target,
        &["--method", "prompts/get", "--prompt-name", "field-notes__explain_note", "--prompt-args", "topic=mrtr"],
    );
    assert_eq!(prompt["messages"][0]["content"]["resource"]["uri"], "notes://topics/mrtr", "{prompt}");
}

#[test]
fn inspector_cli_lists_calls_reads_and_gets_over_http() {
    let server = Server::start(&example_plugins());
    exercise_with_inspector(&[&server.url(), "--transport", "http"]);
}

#[test]
fn inspector_cli_lists_calls_reads_and_gets_over_stdio() {
    let plugins = example_plugins();
    let plugins = plugins.to_str().expect("a UTF-8 path");
    exercise_with_inspector(&[env!("CARGO_BIN_EXE_fedmcp"), "serve", "--stdio", "--plugins", plugins]);
}

/// A client that sends `notifications/initialized` twice still has one session: its changes
/// are announced once, and its place among the host's sessions is kept (a second registration
/// used to be removed by the first one's drop, so the idle sweep never ended the session).
#[tokio::test]
async fn a_repeated_initialized_leaves_one_registration_and_one_announcement_per_change() {
    let plugins = tempfile::tempdir().expect("a plugins folder");
    for file in ["conformance.wasm", "conformance.toml"] {
        std::fs::copy(example_plugins().join(file), plugins.path().join(file)).expect("copy the plugin");
    }
    let server = Server::start(plugins.path());
    let mut session = support::LegacySession::open(&server).await;
    let again = serde_json::json!({ "jsonrpc": "2.0", "method": "notifications/initialized" });
    let status = session.post(again).send().await.expect("initialized again").status();
    assert!(status.is_success(), "{status}");
    session.call_text("test_trigger_tool_change", serde_json::json!({})).await;
    let announced = session.count_notifications("notifications/tools/list_changed", Duration::from_secs(2)).await;
    assert_eq!(announced, 1, "one change, announced {announced} times");
}
