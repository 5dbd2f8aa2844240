//! MCP over WebSocket at `/ws`: the official Python SDK 1.x WebSocket client through a whole
//! session (tools, progress, elicitation, list changes), and the edge's rules with a raw
//! WebSocket client: the subprotocol, the token with `[auth]` (and the close when it
//! expires), the Origin guard, the message size limit (one connection closed, the others
//! served), the keep-alive ping and the close on shutdown.

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
