//! Bad input gets a proper error and the server keeps serving.

mod support;

use reqwest::StatusCode;
use serde_json::{Value, json};
use support::{Server, StatelessClient as Client, example_plugins};

fn error_code(reply: &Value) -> Option<i64> {
    reply["error"]["code"].as_i64()
}

#[tokio::test]
async fn malformed_requests_get_http_and_jsonrpc_errors() {
    let server = Server::start(&example_plugins());
    let client = Client::new(&server);
    let oversized =
        format!(r#"{{"jsonrpc":"2.0","id":1,"method":"ping","params":{{"pad":"{}"}}}}"#, "x".repeat((4 << 20) + 1024));
    let cases: Vec<(&str, reqwest::RequestBuilder, StatusCode, Option<i64>)> = vec![
        ("malformed JSON", client.post().body("{not json"), StatusCode::BAD_REQUEST, Some(-32700)),
        (
            "a JSON-RPC batch",
            client.post().body(r#"[{"jsonrpc":"2.0","id":1,"method":"ping"}]"#),
            StatusCode::BAD_REQUEST,
            Some(-32600),
        ),
        // Just past the default 4 MiB limit.
        ("an oversized body", client.post().body(oversized), StatusCode::PAYLOAD_TOO_LARGE, None),
        (
            "a legacy request before initialize",
            client.post().body(r#"{"jsonrpc":"2.0","id":1,"method":"tools/list"}"#),
            StatusCode::BAD_REQUEST,
            None,
        ),
        (
            "an unknown session id",
            client
                .post()
                .header("mcp-session-id", "no-such-session")
                .header("mcp-protocol-version", "2025-11-25")
                .body(r#"{"jsonrpc":"2.0","id":1,"method":"tools/list"}"#),
            StatusCode::NOT_FOUND,
            None,
        ),
        (
            "a foreign Origin",
            client.post().header("origin", "http://evil.example").body(r#"{"jsonrpc":"2.0","id":1,"method":"ping"}"#),
            StatusCode::FORBIDDEN,
            None,
        ),
    ];
    for (what, request, status, code) in cases {
        let (got_status, reply) = client.raw(request).await;
        assert_eq!(got_status, status, "{what}: {reply}");
        if let Some(code) = code {
            assert_eq!(error_code(&reply), Some(code), "{what}: {reply}");
        }
        client.still_serving().await;
    }
}

#[tokio::test]
async fn bad_calls_get_jsonrpc_errors() {
    let server = Server::start(&example_plugins());
    let client = Client::new(&server);
    let tampered = json!({
        "name": "test_input_required_result_request_state",
        "inputResponses": { "confirm": { "action": "accept", "content": { "ok": true } } },
        "requestState": "forged-state",
    });
    let cases = [
        ("an unknown method", "tools/teleport", json!({}), -32601),
        ("an unknown tool", "tools/call", json!({ "name": "no_such_tool" }), -32602),
        (
            "arguments that fail the input schema",
            "tools/call",
            json!({ "name": "text-tools__word_count", "arguments": { "text": 5 } }),
            -32602,
        ),
        ("a tampered requestState", "tools/call", tampered, -32602),
        ("an unknown prompt", "prompts/get", json!({ "name": "no_such_prompt" }), -32602),
        ("an unknown resource", "resources/read", json!({ "uri": "notes://nowhere" }), -32602),
    ];
    for (what, method, params, code) in cases {
        let (_, reply) = client.request(method, params).await;
        assert_eq!(error_code(&reply), Some(code), "{what}: {reply}");
        client.still_serving().await;
    }
}

#[tokio::test]
async fn a_request_state_replayed_against_another_tool_is_refused() {
    let server = Server::start(&example_plugins());
    let client = Client::new(&server);
    let (_, first) = client.request("tools/call", json!({ "name": "test_input_required_result_request_state" })).await;
    let state = first["result"]["requestState"].as_str().expect("an MRTR result with a state").to_owned();
    let answers = json!({ "confirm": { "action": "accept", "content": { "ok": true } } });
    let (_, honest) = client
        .request(
            "tools/call",
            json!({ "name": "test_input_required_result_request_state", "inputResponses": answers, "requestState": state }),
        )
        .await;
    let text = honest["result"]["content"][0]["text"].as_str().unwrap_or_default();
    assert!(text.contains("state-ok"), "{honest}");
    let (_, replayed) = client
        .request(
            "tools/call",
            json!({ "name": "test_input_required_result_tampered_state", "inputResponses": answers, "requestState": state }),
        )
        .await;
    assert_eq!(error_code(&replayed), Some(-32602), "{replayed}");
}

#[tokio::test]
async fn a_file_that_is_not_a_component_is_skipped_and_reported() {
    let dir = tempfile::tempdir().expect("a temporary plugins folder");
    std::fs::copy(example_plugins().join("text-tools.wasm"), dir.path().join("text-tools.wasm")).expect("copy");
    std::fs::write(dir.path().join("broken.wasm"), b"\0asm but not really").expect("write");
    let server = Server::start(dir.path());
    let client = Client::new(&server);
    client.still_serving().await;
    let health: Value = reqwest::get(format!("http://{}/health", server.address))
        .await
        .expect("health answers")
        .json()
        .await
        .expect("health is JSON");
    let failed = health["plugins"]["failed"].as_array().expect("a failed list");
    assert_eq!(failed.len(), 1, "{health}");
    assert!(failed[0]["reason"].as_str().unwrap_or_default().contains("broken.wasm"), "{health}");
    assert_eq!(health["plugins"]["loaded"][0]["name"], "text-tools", "{health}");
}
