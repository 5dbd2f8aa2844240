//! MCP over WebSocket at `/ws`: the official Python SDK 1.x WebSocket client through a whole
//! session (tools, progress, elicitation, list changes), and the edge's rules with a raw
//! WebSocket client: the subprotocol, the token with `[auth]` (and the close when it
//! expires), the Origin guard, the message size limit (one connection closed, the others
//! served), the cap on requests unanswered per connection, the keep-alive ping and the close
//! on shutdown.

use std::process::Command;
use std::time::Duration;

use futures::{SinkExt, StreamExt};
use reqwest::StatusCode;
use serde_json::{Value, json};
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::http::HeaderValue;
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;
use tokio_tungstenite::tungstenite::{Error as WsError, Message};
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream};

use crate::auth::{Protected, conformance_plugins, now};
use crate::support::{Server, example_plugins, repo_root};

type Socket = WebSocketStream<MaybeTlsStream<tokio::net::TcpStream>>;

/// How long any one step may take.
const PATIENCE: Duration = Duration::from_secs(20);

/// A plugins folder with the conformance fixtures and text-tools (small and quick to load).
fn plugins() -> tempfile::TempDir {
    let plugins = conformance_plugins();
    std::fs::copy(example_plugins().join("text-tools.wasm"), plugins.path().join("text-tools.wasm"))
        .expect("copy text-tools");
    plugins
}

/// A host serving `plugins` with `config` as its host.toml.
fn configured(plugins: &std::path::Path, config: &str) -> (tempfile::TempDir, Server) {
    let dir = tempfile::tempdir().expect("temp dir");
    std::fs::write(dir.path().join("host.toml"), config).expect("config written");
    let server = Server::start_configured(plugins, &dir.path().join("host.toml"), "127.0.0.1:0");
    (dir, server)
}

/// What an upgrade request carries besides the defaults.
#[derive(Default)]
struct Upgrade<'a> {
    token: Option<&'a str>,
    origin: Option<&'a str>,
    /// `None` offers no subprotocol; the default offers `mcp`.
    subprotocol: Option<Option<&'a str>>,
}

/// Open `/ws` on `server`; `Err` with the HTTP status of a refused upgrade.
async fn connect(server: &Server, upgrade: Upgrade<'_>) -> Result<Socket, StatusCode> {
    let mut request = format!("ws://{}/ws", server.address).into_client_request().expect("a request");
    let headers = request.headers_mut();
    if let Some(protocol) = upgrade.subprotocol.unwrap_or(Some("mcp")) {
        headers.insert("sec-websocket-protocol", HeaderValue::from_str(protocol).expect("a header"));
    }
    if let Some(token) = upgrade.token {
        headers.insert("authorization", HeaderValue::from_str(&format!("Bearer {token}")).expect("a header"));
    }
    if let Some(origin) = upgrade.origin {
        headers.insert("origin", HeaderValue::from_str(origin).expect("a header"));
    }
    match tokio::time::timeout(PATIENCE, tokio_tungstenite::connect_async(request)).await {
        Ok(Ok((socket, response))) => {
            assert_eq!(response.headers().get("sec-websocket-protocol").map(|v| v.as_bytes()), Some(&b"mcp"[..]));
            Ok(socket)
        }
        Ok(Err(WsError::Http(response))) => {
            let status = StatusCode::from_u16(response.status().as_u16()).expect("a status");
            Err(status)
        }
        Ok(Err(error)) => panic!("the upgrade failed: {error}"),
        Err(_) => panic!("the upgrade took over {PATIENCE:?}"),
    }
}

/// The next frame (text, ping, close...), within [`PATIENCE`]; `None` once the stream ended.
async fn next_frame(socket: &mut Socket) -> Option<Message> {
    match tokio::time::timeout(PATIENCE, socket.next()).await {
        Ok(Some(Ok(frame))) => Some(frame),
        Ok(Some(Err(_)) | None) => None,
        Err(_) => panic!("no frame within {PATIENCE:?}"),
    }
}

/// Send a request and read frames until its answer (notifications and pings pass by).
async fn request(socket: &mut Socket, id: u64, method: &str, params: Value) -> Value {
    let message = json!({ "jsonrpc": "2.0", "id": id, "method": method, "params": params });
    socket.send(Message::text(message.to_string())).await.expect("the request is sent");
    loop {
        match next_frame(socket).await {
            Some(Message::Text(text)) => {
                let answer: Value = serde_json::from_str(text.as_str()).expect("a JSON message per text frame");
                if answer["id"] == json!(id) {
                    return answer;
                }
            }
            Some(Message::Close(frame)) => panic!("closed while waiting for {method}: {frame:?}"),
            Some(_) => {}
            None => panic!("the connection ended while waiting for {method}"),
        }
    }
}

/// `initialize` and `notifications/initialized`: a session of the handshake era.
async fn initialize(socket: &mut Socket) -> Value {
    let params = json!({
        "protocolVersion": "2025-11-25",
        "capabilities": {},
        "clientInfo": { "name": "websocket-test", "version": "0" },
    });
    let answer = request(socket, 1, "initialize", params).await;
    let initialized = json!({ "jsonrpc": "2.0", "method": "notifications/initialized" });
    socket.send(Message::text(initialized.to_string())).await.expect("initialized is sent");
    answer
}

async fn tool_names(socket: &mut Socket, id: u64) -> Vec<String> {
    let answer = request(socket, id, "tools/list", json!({})).await;
    let tools = answer["result"]["tools"].as_array().unwrap_or_else(|| panic!("no tools in {answer}"));
    tools.iter().filter_map(|tool| tool["name"].as_str().map(str::to_owned)).collect()
}

/// Read until the server's close frame: its code and reason.
async fn close_frame(socket: &mut Socket) -> (CloseCode, String) {
    loop {
        match next_frame(socket).await {
            Some(Message::Close(Some(frame))) => return (frame.code, frame.reason.as_str().to_owned()),
            Some(Message::Close(None)) => panic!("a close frame without a code"),
            Some(_) => {}
            None => panic!("the connection ended without a close frame"),
        }
    }
}

#[test]
fn python_sdk_websocket_client_lists_calls_gets_progress_and_answers_an_elicitation() {
    let python = repo_root().join("tests/.venv-ws/bin/python");
    assert!(python.is_file(), "{} is missing: `cargo xtask test` creates it", python.display());
    let plugins = plugins();
    let server = Server::start(plugins.path());
    let script = repo_root().join("tests/clients/python_websocket_client.py");
    let output =
        Command::new(python).arg(script).arg(format!("ws://{}/ws", server.address)).output().expect("python runs");
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(
        output.status.success(),
        "the Python WebSocket client failed ({}):\n{stdout}\n{}",
        output.status,
        String::from_utf8_lossy(&output.stderr)
    );
    let seen: Value = serde_json::from_str(stdout.trim()).expect("the client prints JSON");
    assert_eq!(seen["protocol"], "2025-11-25", "{seen}");
}

#[tokio::test]
async fn an_upgrade_without_the_mcp_subprotocol_or_from_a_foreign_origin_is_refused() {
    let plugins = plugins();
    let server = Server::start(plugins.path());
    let none = Upgrade { subprotocol: Some(None), ..Upgrade::default() };
    assert_eq!(connect(&server, none).await.err(), Some(StatusCode::BAD_REQUEST));
    let other = Upgrade { subprotocol: Some(Some("graphql-ws")), ..Upgrade::default() };
    assert_eq!(connect(&server, other).await.err(), Some(StatusCode::BAD_REQUEST));
    let foreign = Upgrade { origin: Some("http://evil.example"), ..Upgrade::default() };
    assert_eq!(connect(&server, foreign).await.err(), Some(StatusCode::FORBIDDEN));
    // A loopback page may connect, as it may POST to /mcp.
    let local = Upgrade { origin: Some("http://localhost:3000"), ..Upgrade::default() };
    let mut socket = connect(&server, local).await.expect("a loopback origin connects");
    let answer = initialize(&mut socket).await;
    assert_eq!(answer["result"]["serverInfo"]["name"], "fedmcp", "{answer}");
    // A text frame that is no JSON-RPC message is answered in band; the session goes on.
    socket.send(Message::text("{not json")).await.expect("sent");
    let Some(Message::Text(text)) = next_frame(&mut socket).await else { panic!("no answer to bad JSON") };
    let answer: Value = serde_json::from_str(text.as_str()).expect("JSON");
    assert_eq!(answer["error"]["code"], -32700, "{answer}");
    assert!(tool_names(&mut socket, 2).await.contains(&"test_elicitation".to_owned()));
}

#[tokio::test]
async fn with_auth_the_upgrade_needs_a_token_and_the_connection_ends_with_it() {
    let plugins = plugins();
    let host = Protected::start_serving("", plugins.path());
    assert_eq!(connect(&host.server, Upgrade::default()).await.err(), Some(StatusCode::UNAUTHORIZED));
    let bad = Upgrade { token: Some("not-a-token"), ..Upgrade::default() };
    assert_eq!(connect(&host.server, bad).await.err(), Some(StatusCode::UNAUTHORIZED));
    let token = host.token(json!({ "sub": "ws-user" }));
    let foreign = Upgrade { token: Some(&token), origin: Some("http://evil.example"), ..Upgrade::default() };
    assert_eq!(connect(&host.server, foreign).await.err(), Some(StatusCode::FORBIDDEN));

    // The token's grant is the connection's: a narrow one lists only what it covers.
    let narrow = host.token(json!({ "sub": "narrow", "scope": "tools:text-tools__*" }));
    let mut socket =
        connect(&host.server, Upgrade { token: Some(&narrow), ..Upgrade::default() }).await.expect("upgraded");
    initialize(&mut socket).await;
    let names = tool_names(&mut socket, 2).await;
    assert!(!names.is_empty() && names.iter().all(|n| n.starts_with("text-tools__")), "{names:?}");

    // A connection lives as long as its token: a client cannot present a fresh one on it.
    let brief = host.token(json!({ "sub": "brief", "exp": now() + 3 }));
    let mut socket =
        connect(&host.server, Upgrade { token: Some(&brief), ..Upgrade::default() }).await.expect("upgraded");
    initialize(&mut socket).await;
    assert!(!tool_names(&mut socket, 2).await.is_empty());
    let (code, reason) = close_frame(&mut socket).await;
    assert_eq!(code, CloseCode::Policy, "{reason}");
    assert!(reason.contains("expired"), "{reason}");
}

#[tokio::test]
async fn an_oversized_frame_closes_only_its_connection() {
    let plugins = plugins();
    let (_dir, server) = configured(plugins.path(), "[http]\nmax_request_body_bytes = 4096\n");
    let mut first = connect(&server, Upgrade::default()).await.expect("upgraded");
    let mut second = connect(&server, Upgrade::default()).await.expect("upgraded");
    let mut third = connect(&server, Upgrade::default()).await.expect("upgraded");
    for socket in [&mut first, &mut second, &mut third] {
        initialize(socket).await;
    }

    // Just over the limit (read whole, then refused) and far over it (refused mid-frame).
    let just_over = json!({ "jsonrpc": "2.0", "id": 9, "method": "tools/call",
        "params": { "name": "text-tools__slugify", "arguments": { "text": "x".repeat(5000) } } });
    first.send(Message::text(just_over.to_string())).await.expect("sent");
    let (code, reason) = close_frame(&mut first).await;
    assert_eq!(code, CloseCode::Size, "{reason}");
    assert!(reason.contains("4096"), "{reason}");
    // Small enough to sit in the sockets' buffers whole, so the client's send ends.
    third.send(Message::text("y".repeat(64 << 10))).await.expect("sent");
    let (code, reason) = close_frame(&mut third).await;
    assert_eq!(code, CloseCode::Size, "{reason}");

    // The other connection is served as before.
    let arguments = json!({ "name": "text-tools__slugify", "arguments": { "text": "Still Here" } });
    let answer = request(&mut second, 3, "tools/call", arguments).await;
    assert_eq!(answer["result"]["content"][0]["text"], "still-here", "{answer}");
}

#[tokio::test]
async fn a_peer_that_answers_no_ping_is_dropped_and_one_that_does_stays() {
    let plugins = plugins();
    let (_dir, server) = configured(plugins.path(), "[http]\nwebsocket_ping_secs = 1\n");
    let mut silent = connect(&server, Upgrade::default()).await.expect("upgraded");
    let mut steady = connect(&server, Upgrade::default()).await.expect("upgraded");
    initialize(&mut silent).await;
    initialize(&mut steady).await;
    // Reading is what answers pings (the client library pongs as it reads): `steady` reads,
    // `silent` does not.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(4);
    let mut pings = 0;
    while let Ok(frame) = tokio::time::timeout_at(deadline, steady.next()).await {
        match frame {
            Some(Ok(Message::Ping(_))) => pings += 1,
            other => panic!("a reading peer got {other:?}"),
        }
    }
    assert!(pings >= 2, "{pings} pings in 4 s");
    assert!(!tool_names(&mut steady, 2).await.is_empty());
    let (code, reason) = close_frame(&mut silent).await;
    assert_eq!(code, CloseCode::Error, "{reason}");
    assert!(reason.contains("ping"), "{reason}");
}

/// On shutdown a call in flight is answered first (as a POST's is), then the connection is
/// closed with 1001 (going away).
#[tokio::test]
async fn shutdown_lets_a_call_finish_then_closes_with_going_away() {
    let plugins = plugins();
    let mut server = Server::start(plugins.path());
    let mut socket = connect(&server, Upgrade::default()).await.expect("upgraded");
    initialize(&mut socket).await;
    let call = json!({ "jsonrpc": "2.0", "id": 7, "method": "tools/call",
        "params": { "name": "slow_compute", "arguments": { "seconds": 1.5, "label": "late" } } });
    socket.send(Message::text(call.to_string())).await.expect("sent");
    tokio::time::sleep(Duration::from_millis(300)).await;
    server.terminate();
    let mut answered = false;
    loop {
        match next_frame(&mut socket).await {
            Some(Message::Text(text)) => {
                let answer: Value = serde_json::from_str(text.as_str()).expect("JSON");
                if answer["id"] == 7 {
                    assert_eq!(answer["result"]["content"][0]["text"], "late: done after 1.5 s", "{answer}");
                    answered = true;
                }
            }
            Some(Message::Close(frame)) => {
                assert_eq!(frame.map(|f| f.code), Some(CloseCode::Away));
                break;
            }
            Some(_) => {}
            None => panic!("the connection ended without a close frame"),
        }
    }
    assert!(answered, "the call in flight was answered before the close");
    assert!(server.exits_within(Duration::from_secs(20)), "the host exits after closing its connections");
}

/// Requests one connection may have unanswered at once (the host's `MAX_IN_FLIGHT`).
const MAX_IN_FLIGHT: u64 = 64;

/// A `test_elicitation` call (the conformance fixture asks its client for a form and waits)
/// whose question names `id`, so the test knows which call asked what.
fn waiting_call(id: u64) -> Message {
    let call = json!({ "jsonrpc": "2.0", "id": id, "method": "tools/call",
        "params": { "name": "test_elicitation", "arguments": { "message": format!("call {id}") } } });
    Message::text(call.to_string())
}

fn list_tools(id: u64) -> Message {
    Message::text(json!({ "jsonrpc": "2.0", "id": id, "method": "tools/list" }).to_string())
}

/// What the host sends while calls wait for the client: its questions and its answers.
#[derive(Default)]
struct Heard {
    /// The call id each question names, and the id of the host's request that asks it.
    questions: Vec<(u64, Value)>,
    answers: Vec<Value>,
    /// The ids of the questions the host withdrew (`notifications/cancelled`).
    withdrawn: Vec<Value>,
}

/// Read frames until `questions` questions and `answers` answers have come in all.
async fn hear(socket: &mut Socket, heard: &mut Heard, questions: usize, answers: usize) {
    while heard.questions.len() < questions || heard.answers.len() < answers {
        hear_one(socket, heard).await;
    }
}

/// Read one frame into `heard`.
async fn hear_one(socket: &mut Socket, heard: &mut Heard) {
    let text = match next_frame(socket).await {
        Some(Message::Text(text)) => text,
        Some(Message::Close(frame)) => panic!("closed while calls were waiting: {frame:?}"),
        Some(_) => return,
        None => panic!("the connection ended while calls were waiting"),
    };
    let message: Value = serde_json::from_str(text.as_str()).expect("a JSON message per text frame");
    if message["method"] == "elicitation/create" {
        let asked = message["params"]["message"].as_str().unwrap_or_default();
        let call = asked.strip_prefix("call ").and_then(|id| id.parse().ok());
        let call = call.unwrap_or_else(|| panic!("a question of no call: {message}"));
        heard.questions.push((call, message["id"].clone()));
    } else if message["method"] == "notifications/cancelled" {
        heard.withdrawn.push(message["params"]["requestId"].clone());
    } else if message.get("id").is_some() {
        heard.answers.push(message);
    }
}

/// The refusal of request `id` for being one too many.
fn assert_too_many(answer: &Value, id: u64) {
    assert_eq!(answer["id"], id, "{answer}");
    assert_eq!(answer["error"]["code"], -32000, "{answer}");
    let message = answer["error"]["message"].as_str().unwrap_or_default();
    assert!(message.contains("too many requests in flight") && message.contains("64"), "{answer}");
}

/// A connection may have 64 requests unanswered: with 64 calls waiting for the client's
/// answers, the 65th request (sent at once with them, no waiting) is refused naming its id,
/// and only it. An answer frees a place (taken by the next call, so the one after is refused
/// again); cancelling the calls frees theirs, and the connection is served again.
#[tokio::test]
async fn a_connection_has_at_most_64_requests_unanswered_and_answers_or_cancellations_free_places() {
    let plugins = plugins();
    let server = Server::start(plugins.path());
    let mut socket = connect(&server, Upgrade::default()).await.expect("upgraded");
    let params = json!({
        "protocolVersion": "2025-11-25",
        "capabilities": { "elicitation": {} },
        "clientInfo": { "name": "websocket-test", "version": "0" },
    });
    request(&mut socket, 1, "initialize", params).await;
    let initialized = json!({ "jsonrpc": "2.0", "method": "notifications/initialized" });
    socket.send(Message::text(initialized.to_string())).await.expect("initialized is sent");

    // 64 calls that wait for the client, then one request more, without reading in between.
    let first = 100;
    let one_too_many = first + MAX_IN_FLIGHT;
    for id in first..one_too_many {
        socket.feed(waiting_call(id)).await.expect("queued");
    }
    socket.feed(list_tools(one_too_many)).await.expect("queued");
    socket.flush().await.expect("sent");
    // Every waiting call asks its question (so each was admitted); the one answer is the refusal.
    let mut heard = Heard::default();
    hear(&mut socket, &mut heard, MAX_IN_FLIGHT as usize, 1).await;
    let mut asked: Vec<u64> = heard.questions.iter().map(|(call, _)| *call).collect();
    asked.sort_unstable();
    assert_eq!(asked, (first..one_too_many).collect::<Vec<_>>());
    assert_eq!(heard.answers.len(), 1, "{:?}", heard.answers);
    assert_too_many(&heard.answers[0], one_too_many);
    // The questions of the calls cancelled below (all but call 100's, which is answered).
    let mut unanswered: Vec<Value> =
        heard.questions.iter().filter(|(call, _)| *call != first).map(|(_, question)| question.clone()).collect();
    // An id already in flight is refused: it would replace its entry and not count.
    socket.send(waiting_call(first + 1)).await.expect("sent");
    let mut duplicate = Heard::default();
    hear(&mut socket, &mut duplicate, 0, 1).await;
    assert_eq!(duplicate.answers[0]["id"], first + 1, "{:?}", duplicate.answers);
    assert_eq!(duplicate.answers[0]["error"]["code"], -32600, "{:?}", duplicate.answers);
    let message = duplicate.answers[0]["error"]["message"].as_str().unwrap_or_default();
    assert!(message.contains("already in flight"), "{message}");

    // The client answers call 100's question: its answer comes back, and frees one place.
    let (_, question_id) = heard.questions.iter().find(|(call, _)| *call == first).expect("call 100 asked");
    let form = json!({ "jsonrpc": "2.0", "id": question_id,
        "result": { "action": "accept", "content": { "username": "ada", "email": "ada@example.com" } } });
    socket.send(Message::text(form.to_string())).await.expect("sent");
    let mut heard = Heard::default();
    hear(&mut socket, &mut heard, 0, 1).await;
    assert_eq!(heard.answers[0]["id"], first, "{:?}", heard.answers);
    let text = heard.answers[0]["result"]["content"][0]["text"].as_str().unwrap_or_default();
    assert!(text.contains("ada@example.com"), "{:?}", heard.answers);
    // The freed place is taken by one more waiting call; the request after it is refused.
    let (again, refused) = (one_too_many + 1, one_too_many + 2);
    socket.feed(waiting_call(again)).await.expect("queued");
    socket.feed(list_tools(refused)).await.expect("queued");
    socket.flush().await.expect("sent");
    let mut heard = Heard::default();
    hear(&mut socket, &mut heard, 1, 1).await;
    assert_eq!(heard.questions[0].0, again);
    assert_too_many(&heard.answers[0], refused);
    unanswered.push(heard.questions[0].1.clone());

    // The client gives up on the 64 waiting calls (no answer comes for a cancelled request):
    // their places are free again.
    for id in (first + 1..one_too_many).chain([again]) {
        let cancel = json!({ "jsonrpc": "2.0", "method": "notifications/cancelled",
            "params": { "requestId": id, "reason": "the user gave up" } });
        socket.feed(Message::text(cancel.to_string())).await.expect("queued");
    }
    socket.flush().await.expect("sent");
    // Their questions are withdrawn, each told to the client (which may close its dialog).
    let mut heard = Heard::default();
    while heard.withdrawn.len() < unanswered.len() {
        hear_one(&mut socket, &mut heard).await;
    }
    let sort = |ids: &mut Vec<Value>| ids.sort_by_key(|id| id.to_string());
    sort(&mut heard.withdrawn);
    sort(&mut unanswered);
    assert_eq!(heard.withdrawn, unanswered);
    // They end at the host too (they stop waiting for their questions' answers): call 100
    // answered, the 64 others cancelled.
    let deadline = tokio::time::Instant::now() + PATIENCE;
    loop {
        let counts = tool_calls_ended(&server).await;
        let ended: u64 = counts.lines().filter_map(|line| line.rsplit(' ').next()?.parse::<u64>().ok()).sum();
        if ended == MAX_IN_FLIGHT + 1 {
            break;
        }
        assert!(tokio::time::Instant::now() < deadline, "the cancelled calls did not end:\n{counts}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let served = request(&mut socket, refused + 1, "tools/list", json!({})).await;
    assert!(served["result"]["tools"].as_array().is_some_and(|tools| !tools.is_empty()), "{served}");
    for id in refused + 2..refused + 2 + MAX_IN_FLIGHT {
        socket.feed(waiting_call(id)).await.expect("queued");
    }
    socket.flush().await.expect("sent");
    let mut heard = Heard::default();
    hear(&mut socket, &mut heard, MAX_IN_FLIGHT as usize, 0).await;
    assert!(heard.answers.is_empty(), "{:?}", heard.answers);
}

/// The `/metrics` lines that count `tools/call` uses that ended, by outcome.
async fn tool_calls_ended(server: &Server) -> String {
    let http = reqwest::Client::builder().timeout(PATIENCE).build().expect("an HTTP client");
    let metrics = http.get(format!("http://{}/metrics", server.address)).send().await.expect("/metrics answers");
    let text = metrics.text().await.expect("/metrics is text");
    let prefix = r#"fedmcp_requests_total{method="tools/call","#;
    text.lines().filter(|line| line.starts_with(prefix)).collect::<Vec<_>>().join("\n")
}
