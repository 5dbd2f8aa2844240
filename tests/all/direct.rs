//! A stateless `tools/call` of a plugin's tool is handed to the session without rmcp's
//! per-request service (the relay's direct path, `host/src/relay/direct.rs`). What it answers
//! must be what rmcp's path answers: the HTTP status, the content type, and the body byte for
//! byte (but for a sealed `requestState`, sealed afresh for every answer).

use serde_json::{Value, json};

use crate::support::{Server, StatelessClient, example_plugins};

/// A call's answer as it came: status, content type, body.
type Answer = (reqwest::StatusCode, Option<String>, String);

/// Call `tool` as the support's stateless client does, with a progress token in `_meta` when
/// `progress` (which takes rmcp's path: progress may come before the answer).
async fn call(client: &StatelessClient, tool: &str, arguments: &Value, progress: bool) -> Answer {
    let mut meta = json!({
        "io.modelcontextprotocol/protocolVersion": "2026-07-28",
        "io.modelcontextprotocol/clientCapabilities": client.capabilities,
        "io.modelcontextprotocol/clientInfo": { "name": "fedmcp-tests", "version": "1" }
    });
    if progress {
        meta["progressToken"] = json!("p");
    }
    let body = json!({ "jsonrpc": "2.0", "id": 7, "method": "tools/call",
        "params": { "name": tool, "arguments": arguments, "_meta": meta } });
    let request = client
        .post()
        .header("mcp-protocol-version", "2026-07-28")
        .header("mcp-method", "tools/call")
        .header("mcp-name", tool)
        .body(body.to_string());
    let response = request.send().await.expect("the server answers");
    let status = response.status();
    let content_type = response.headers().get("content-type").and_then(|v| v.to_str().ok()).map(str::to_owned);
    (status, content_type, response.text().await.expect("a body"))
}

/// The answer, with a sealed `requestState` replaced by its presence.
fn comparable((status, content_type, body): Answer) -> Answer {
    let mut answer: Value = serde_json::from_str(&body).unwrap_or_else(|e| panic!("not JSON ({e}): {body}"));
    let Some(state) = answer.pointer_mut("/result/requestState") else { return (status, content_type, body) };
    assert!(state.as_str().is_some_and(|s| !s.is_empty()), "{state}");
    *state = json!("<sealed>");
    (status, content_type, answer.to_string())
}

#[tokio::test]
async fn a_plugins_tool_served_directly_answers_as_rmcps_path_does() {
    let server = Server::start(&example_plugins());
    let client = StatelessClient::new(&server);
    let cases = [
        ("test_simple_text", json!({})),
        ("test_image_content", json!({})),
        ("test_multiple_content_types", json!({})),
        // A tool error (`isError`).
        ("test_error_handling", json!({})),
        // An MRTR result: the plugin asks the client for input.
        ("test_input_required_result_elicitation", json!({})),
        // Input the client cannot give (it declares elicitation only): a protocol error, 400.
        ("test_input_required_result_sampling", json!({})),
        ("text-tools__slugify", json!({ "text": "Hello, Direct World" })),
        // Arguments the tool's schema refuses.
        ("text-tools__slugify", json!({ "text": 5 })),
    ];
    for (tool, arguments) in cases {
        let before = server.relay_count("served_directly").await;
        let direct = call(&client, tool, &arguments, false).await;
        assert_eq!(server.relay_count("served_directly").await, before + 1, "{tool} was not served directly");
        let normal = call(&client, tool, &arguments, true).await;
        assert_eq!(
            server.relay_count("served_directly").await,
            before + 1,
            "{tool} with a progress token was served directly"
        );
        assert_eq!(comparable(direct), comparable(normal), "{tool}: the direct path answered otherwise");
    }
    assert_eq!(
        server.relay_count("direct_undelivered").await,
        0,
        "the session sent a directly served call's caller something"
    );
    // Nothing that could send a notification first is served directly: a log level, or a tool
    // whose schema mirrors arguments into `Mcp-Param-*` headers (rmcp checks those).
    let before = server.relay_count("served_directly").await;
    let logged = json!({ "name": "test_tool_with_logging", "arguments": {},
        "_meta": { "io.modelcontextprotocol/logLevel": "debug" } });
    let (status, answer) = client.request("tools/call", logged).await;
    assert_eq!(status, reqwest::StatusCode::OK, "{answer}");
    assert_eq!(
        server.relay_count("served_directly").await,
        before,
        "a call asking for log messages was served directly"
    );
    let mirrored = json!({ "name": "test_param_header", "arguments": { "region": "eu" } });
    let (status, answer) = client.request("tools/call", mirrored).await;
    assert_ne!(status, reqwest::StatusCode::OK, "the missing Mcp-Param-Region header went unnoticed: {answer}");
    assert_eq!(
        server.relay_count("served_directly").await,
        before,
        "a call with mirrored arguments was served directly"
    );
}
