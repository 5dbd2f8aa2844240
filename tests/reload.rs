//! Drop-in plugins: the running host picks up new, replaced and removed plugins, tells
//! connected clients, keeps serving the old version when a new one is broken, and lets calls
//! in flight finish on the version they started on.

mod support;

use std::path::Path;
use std::time::{Duration, Instant};

use serde_json::{Value, json};
use support::{Server, eventually, fixture, jsonrpc_message};
use tokio::sync::mpsc;

const PATIENCE: Duration = Duration::from_secs(15);

/// Replace `to` the way editors and deploy tools do: write beside it, then rename over it.
fn install(from: &Path, to: &Path) {
    let temporary = to.with_file_name(".incoming.tmp");
    std::fs::copy(from, &temporary).expect("copy");
    std::fs::rename(&temporary, to).expect("rename");
}

/// A 2025-11-25 client: an initialized session with its GET stream open.
struct LegacySession {
    http: reqwest::Client,
    url: String,
    id: String,
    notifications: mpsc::UnboundedReceiver<String>,
    next_id: u64,
}

impl LegacySession {
    async fn open(server: &Server) -> Self {
        let http = reqwest::Client::new();
        let url = server.url();
        let init = json!({ "jsonrpc": "2.0", "id": 0, "method": "initialize", "params": {
            "protocolVersion": "2025-11-25", "capabilities": {}, "clientInfo": { "name": "reload-test", "version": "1" } } });
        let response = Self::post(&http, &url, None).body(init.to_string()).send().await.expect("initialize");
        let id = response.headers()["mcp-session-id"].to_str().expect("ASCII session id").to_owned();
        let _ = response.text().await;
        let initialized = json!({ "jsonrpc": "2.0", "method": "notifications/initialized" });
        let _ = Self::post(&http, &url, Some(&id)).body(initialized.to_string()).send().await.expect("initialized");
        let mut stream = http
            .get(&url)
            .header("accept", "text/event-stream")
            .header("mcp-session-id", &id)
            .header("mcp-protocol-version", "2025-11-25")
            .send()
            .await
            .expect("GET stream");
        assert!(stream.status().is_success(), "GET stream refused: {}", stream.status());
        let (sender, notifications) = mpsc::unbounded_channel();
        tokio::spawn(async move {
            while let Ok(Some(chunk)) = stream.chunk().await {
                for line in String::from_utf8_lossy(&chunk).lines() {
                    if let Some(data) = line.strip_prefix("data:")
                        && let Ok(message) = serde_json::from_str::<Value>(data.trim())
                        && let Some(method) = message["method"].as_str()
                    {
                        let _ = sender.send(method.to_owned());
                    }
                }
            }
        });
        Self { http, url, id, notifications, next_id: 1 }
    }

    fn post(http: &reqwest::Client, url: &str, session: Option<&str>) -> reqwest::RequestBuilder {
        let mut request = http
            .post(url)
            .header("content-type", "application/json")
            .header("accept", "application/json, text/event-stream");
        if let Some(session) = session {
            request = request.header("mcp-session-id", session).header("mcp-protocol-version", "2025-11-25");
        }
        request
    }

    async fn request(&mut self, method: &str, params: Value) -> Value {
        self.next_id += 1;
        let body = json!({ "jsonrpc": "2.0", "id": self.next_id, "method": method, "params": params });
        let response = Self::post(&self.http, &self.url, Some(&self.id)).body(body.to_string()).send().await;
        jsonrpc_message(&response.expect("request").text().await.unwrap_or_default())
    }

    async fn tool_names(&mut self) -> Vec<String> {
        let reply = self.request("tools/list", json!({})).await;
        reply["result"]["tools"]
            .as_array()
            .map(|tools| tools.iter().filter_map(|t| t["name"].as_str().map(str::to_owned)).collect())
            .unwrap_or_default()
    }

    async fn call_text(&mut self, tool: &str, arguments: Value) -> String {
        let reply = self.request("tools/call", json!({ "name": tool, "arguments": arguments })).await;
        reply["result"]["content"][0]["text"].as_str().map(str::to_owned).unwrap_or_else(|| reply.to_string())
    }

    /// Wait for a notification with this method on the GET stream.
    async fn expect_notification(&mut self, method: &str) {
        let deadline = Instant::now() + PATIENCE;
        loop {
            let remaining = deadline.saturating_duration_since(Instant::now());
            match tokio::time::timeout(remaining, self.notifications.recv()).await {
                Ok(Some(m)) if m == method => return,
                Ok(Some(_)) => continue,
                _ => panic!("no {method} on the GET stream within {PATIENCE:?}"),
            }
        }
    }

    fn drain_notifications(&mut self) {
        while self.notifications.try_recv().is_ok() {}
    }
}

async fn health(server: &Server) -> Value {
    server.health().await
}

#[tokio::test]
async fn plugins_dropped_replaced_broken_and_removed_while_serving() {
    let dir = tempfile::tempdir().expect("plugins folder");
    let server = Server::start(dir.path());
    let mut client = LegacySession::open(&server).await;
    let greeter = dir.path().join("greeter.wasm");

    // A new plugin appears: callable, and the client is told.
    install(&fixture("version-one"), &greeter);
    client.expect_notification("notifications/tools/list_changed").await;
    assert!(client.tool_names().await.contains(&"greeter__version".to_owned()));
    assert_eq!(client.call_text("greeter__version", json!({})).await, "one");

    // A call in flight finishes on the version it started on; the next call gets the new one.
    let slow_url = server.url();
    let slow_session = client.id.clone();
    let slow = tokio::spawn(async move {
        let body = json!({ "jsonrpc": "2.0", "id": 999, "method": "tools/call",
            "params": { "name": "greeter__slow_version", "arguments": { "millis": 2000 } } });
        let response = LegacySession::post(&reqwest::Client::new(), &slow_url, Some(&slow_session))
            .body(body.to_string())
            .send()
            .await
            .expect("slow call");
        jsonrpc_message(&response.text().await.unwrap_or_default())
    });
    tokio::time::sleep(Duration::from_millis(300)).await;
    install(&fixture("version-two"), &greeter);
    eventually("the replaced plugin serving", PATIENCE, async || {
        client.call_text("greeter__version", json!({})).await == "two"
    })
    .await;
    let slow = slow.await.expect("slow call finished");
    assert_eq!(slow["result"]["content"][0]["text"], "one", "the call in flight switched versions: {slow}");

    // A broken replacement keeps the previous version serving and is reported.
    client.drain_notifications();
    for (bad, reason) in [(None, "not a valid WebAssembly component"), (Some("empty"), "exports none")] {
        match bad {
            None => std::fs::write(&greeter, b"this is not wasm").expect("write garbage"),
            Some(name) => install(&fixture(name), &greeter),
        }
        eventually("the failure reported in /health", PATIENCE, async || {
            health(&server).await["plugins"]["failed"]
                .as_array()
                .is_some_and(|failed| failed.iter().any(|f| f["reason"].as_str().is_some_and(|r| r.contains(reason))))
        })
        .await;
        assert_eq!(client.call_text("greeter__version", json!({})).await, "two");
    }

    // Removal withdraws the plugin's tools and tells the client.
    std::fs::remove_file(&greeter).expect("remove");
    client.expect_notification("notifications/tools/list_changed").await;
    assert!(!client.tool_names().await.iter().any(|name| name.starts_with("greeter__")));
}

#[tokio::test]
async fn sigterm_lets_a_call_in_flight_finish_then_exits() {
    let dir = tempfile::tempdir().expect("plugins folder");
    install(&fixture("version-one"), &dir.path().join("greeter.wasm"));
    let mut server = Server::start(dir.path());
    let client = support::StatelessClient::new(&server);
    let call = client.call("greeter__slow_version", json!({ "millis": 1500 }));
    let terminate = async {
        tokio::time::sleep(Duration::from_millis(300)).await;
        server.terminate();
    };
    let (result, ()) = tokio::join!(call, terminate);
    assert_eq!(result.map(|r| r["content"][0]["text"].clone()), Ok(json!("one")), "the call in flight was cut off");
    assert!(server.exits_within(Duration::from_secs(15)), "fedmcp did not exit after SIGTERM");
}
