//! A stateless `tools/call` of a plugin's tool is handed to the session without rmcp's
//! per-request service (the relay's direct path, `host/src/relay/direct.rs`). What it answers
//! must be what rmcp's path answers, to the byte of every field and the HTTP status.

use serde_json::{Value, json};

use crate::support::{Server, StatelessClient, example_plugins};

/// The answer with a sealed `requestState` (sealed afresh for every answer) replaced by its
/// presence.
fn comparable((status, mut answer): (reqwest::StatusCode, Value)) -> (reqwest::StatusCode, Value) {
    if let Some(state) = answer.pointer_mut("/result/requestState") {
        assert!(state.as_str().is_some_and(|s| !s.is_empty()), "{state}");
        *state = json!("<sealed>");
    }
    (status, answer)
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
        let direct = client.request("tools/call", json!({ "name": tool, "arguments": arguments })).await;
        assert_eq!(server.relay_count("served_directly").await, before + 1, "{tool} was not served directly");
        // A progress token takes rmcp's path: progress may come before the answer, which
        // rmcp then sends as an SSE stream.
        let params = json!({ "name": tool, "arguments": arguments, "_meta": { "progressToken": "p" } });
        let normal = client.request("tools/call", params).await;
        assert_eq!(
            server.relay_count("served_directly").await,
            before + 1,
            "{tool} with a progress token was served directly"
        );
        assert!(normal.1.get("id").is_some(), "{tool}: {normal:?}");
        assert_eq!(comparable(direct), comparable(normal), "{tool}: the direct path answered otherwise");
    }
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
