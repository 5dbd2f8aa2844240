//! Bad input gets a proper error and the server keeps serving.

use reqwest::StatusCode;
use serde_json::{Value, json};

use crate::support::{LegacySession, Server, StatelessClient as Client, example_plugins};

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

/// rmcp parses a message of a known method whose params do not fit it as a custom request
/// ("method not found"), and answers a message it cannot parse at all with 415; the edge
/// answers -32602 and 400 with -32600, for both revisions.
#[tokio::test]
async fn bad_params_and_a_bad_jsonrpc_version_get_the_right_jsonrpc_errors() {
    let server = Server::start(&example_plugins());
    let client = Client::new(&server);
    let mut session = LegacySession::open(&server).await;

    let (status, stateless) = client.request("tools/call", json!({ "name": 42 })).await;
    assert_eq!((status, error_code(&stateless)), (StatusCode::OK, Some(-32602)), "{stateless}");
    assert_eq!(stateless["id"], 7, "{stateless}");
    assert!(stateless["error"]["message"].as_str().unwrap_or_default().contains("tools/call"), "{stateless}");
    let legacy = session.request("tools/call", json!({ "name": 42 })).await;
    assert_eq!(error_code(&legacy), Some(-32602), "{legacy}");
    let legacy = session.request("resources/read", json!({ "uri": ["not", "a", "string"] })).await;
    assert_eq!(error_code(&legacy), Some(-32602), "{legacy}");
    // An unknown method is still rmcp's to answer.
    let (_, unknown) = client.request("tools/teleport", json!({})).await;
    assert_eq!(error_code(&unknown), Some(-32601), "{unknown}");

    let old_version = json!({ "jsonrpc": "1.0", "id": 3, "method": "tools/list" });
    let stateless = client
        .post()
        .header("mcp-protocol-version", "2026-07-28")
        .header("mcp-method", "tools/list")
        .body(old_version.to_string());
    let cases = [
        ("a stateless request", stateless),
        ("a legacy session's request", session.post(old_version.clone())),
        ("an id of null", session.post(json!({ "jsonrpc": "2.0", "id": null, "method": "ping" }))),
        ("no JSON-RPC shape", client.post().body(r#"{"jsonrpc":"2.0","id":1}"#)),
    ];
    for (what, request) in cases {
        let (status, reply) = client.raw(request).await;
        assert_eq!((status, error_code(&reply)), (StatusCode::BAD_REQUEST, Some(-32600)), "{what}: {reply}");
    }
    assert!(!session.tool_names().await.is_empty(), "the session still serves");
    client.still_serving().await;
}

/// `/health` (plugin names, failure paths, peer URLs) is guarded against DNS rebinding as `/mcp`
/// is: a foreign Host or browser Origin gets what rmcp answers at `/mcp`, 403.
#[tokio::test]
async fn health_refuses_a_foreign_host_or_origin_as_mcp_does() {
    let server = Server::start(&example_plugins());
    let http = reqwest::Client::new();
    let health = format!("http://{}/health", server.address);
    for (header, value) in [("host", "evil.example"), ("host", "evil.example:80"), ("origin", "http://evil.example")] {
        let mcp = http
            .post(server.url())
            .header(header, value)
            .header("content-type", "application/json")
            .header("accept", "application/json, text/event-stream")
            .body(r#"{"jsonrpc":"2.0","id":1,"method":"ping"}"#)
            .send()
            .await
            .expect("/mcp answers");
        let refused = http.get(&health).header(header, value).send().await.expect("/health answers");
        assert_eq!(refused.status(), StatusCode::FORBIDDEN, "{header}: {value}");
        assert_eq!(refused.status(), mcp.status(), "{header}: {value}");
        let body = refused.text().await.unwrap_or_default();
        assert!(!body.contains("text-tools"), "{body}");
    }
    let local = http.get(&health).header("origin", "http://localhost:3000").send().await.expect("/health answers");
    assert_eq!(local.status(), StatusCode::OK);
}

/// SEP-2243: a tool argument its schema marks with `x-mcp-header` must come in its
/// `Mcp-Param-*` header too (plain or `=?base64?...?=`), equal to the argument; otherwise the
/// request is refused with HTTP 400 and -32020 before the tool runs.
#[tokio::test]
async fn mcp_param_headers_must_match_the_arguments_they_mirror() {
    let server = Server::start(&example_plugins());
    let client = Client::new(&server);
    let call = |header: Option<&str>| {
        let meta = json!({
            "io.modelcontextprotocol/protocolVersion": "2026-07-28",
            "io.modelcontextprotocol/clientCapabilities": {},
        });
        let body = json!({ "jsonrpc": "2.0", "id": 1, "method": "tools/call",
            "params": { "name": "test_param_header", "arguments": { "region": "eu-west" }, "_meta": meta } });
        let mut request = client
            .post()
            .header("mcp-protocol-version", "2026-07-28")
            .header("mcp-method", "tools/call")
            .header("mcp-name", "test_param_header");
        if let Some(value) = header {
            request = request.header("mcp-param-region", value);
        }
        request.body(body.to_string())
    };
    for (case, header) in [("plain", "eu-west"), ("Base64", "=?base64?ZXUtd2VzdA==?=")] {
        let (status, reply) = client.raw(call(Some(header))).await;
        assert_eq!(status, StatusCode::OK, "{case}: {reply}");
        assert_eq!(reply["result"]["content"][0]["text"], "Region: eu-west", "{case}: {reply}");
    }
    for (case, header) in [
        ("another value", Some("us-east")),
        ("invalid Base64", Some("=?base64?ZXUtd2VzdA?=")),
        ("no header for a given argument", None),
    ] {
        let (status, reply) = client.raw(call(header)).await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{case}: {reply}");
        assert_eq!(error_code(&reply), Some(-32020), "{case}: {reply}");
    }
    client.still_serving().await;
}

/// Over stdio, what cannot be read is answered as rmcp's transport answers it (a line that is
/// no JSON: nothing; JSON that is no message: "Invalid request" without an id), the client
/// stays connected, and calls around the bad lines, the common one read by the host's short
/// way and one with an escape taking rmcp's parse, are answered alike.
#[test]
fn stdio_answers_bad_lines_as_rmcp_does_and_keeps_serving() {
    use std::io::{BufRead as _, BufReader, Write as _};
    use std::process::{Command, Stdio};

    let plugins = tempfile::tempdir().expect("a plugins folder");
    std::fs::copy(example_plugins().join("text-tools.wasm"), plugins.path().join("text-tools.wasm"))
        .expect("copy the plugin");
    let mut server = Command::new(env!("CARGO_BIN_EXE_fedmcp"))
        .args(["serve", "--stdio", "--plugins"])
        .arg(plugins.path())
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("fedmcp starts");
    let mut input = server.stdin.take().expect("stdin");
    let mut output = BufReader::new(server.stdout.take().expect("stdout"));
    // The next answer (notifications, such as a list change, are passed over).
    let mut read = || loop {
        let mut line = String::new();
        output.read_line(&mut line).expect("a line from the server");
        let message = serde_json::from_str::<Value>(&line).expect("the server writes JSON");
        if message.get("method").is_none() {
            return message;
        }
    };
    let initialize = json!({ "jsonrpc": "2.0", "id": 0, "method": "initialize", "params": {
        "protocolVersion": "2025-11-25", "capabilities": {}, "clientInfo": { "name": "t", "version": "1" } } });
    writeln!(input, "{initialize}").expect("write");
    assert_eq!(read()["id"], 0);
    // A stdio client's list waits for the first load: after it, the tool is served.
    writeln!(input, "{}", json!({ "jsonrpc": "2.0", "id": 100, "method": "tools/list" })).expect("write");
    assert_eq!(read()["id"], 100);
    let call = |id: u32, text: &str| {
        json!({ "jsonrpc": "2.0", "id": id, "method": "tools/call",
            "params": { "name": "text-tools__slugify", "arguments": { "text": text } } })
        .to_string()
    };
    let lines = [
        r#"{"jsonrpc":"2.0","method":"notifications/initialized"}"#.to_owned(),
        "this is not json".to_owned(),
        r#"{"jsonrpc":"2.0","id":5,"method":"tools/call","params":[1]}"#.to_owned(),
        call(1, "Hello World"),
        // The same call with its text escaped: rmcp reads this one.
        call(2, "Hello World").replace("Hello", "\\u0048ello"),
    ];
    for line in lines {
        writeln!(input, "{line}").expect("write");
    }
    input.flush().expect("flush");
    let mut answers = (0..3).map(|_| read()).collect::<Vec<_>>();
    answers.sort_by_key(|answer| answer["id"].as_u64().unwrap_or(0));
    assert_eq!(answers[0]["error"]["code"], -32600, "{answers:?}");
    assert_eq!(answers[0]["id"], Value::Null);
    for (answer, id) in answers[1..].iter().zip([1, 2]) {
        assert_eq!(answer["id"], id, "{answer}");
        assert_eq!(answer["result"]["content"][0]["text"], "hello-world", "{answer}");
    }
    drop(input);
    let status = server.wait().expect("the server exits when stdin closes");
    assert!(status.success(), "{status}");
}
