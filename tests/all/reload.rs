//! Drop-in plugins: the running host picks up new, replaced and removed plugins, tells
//! connected clients, keeps serving the old version when a new one is broken, and lets calls
//! in flight finish on the version they started on.

use std::path::Path;
use std::time::Duration;

use serde_json::{Value, json};

use crate::support::{self, LegacySession, Server, eventually, fixture, jsonrpc_message};

const PATIENCE: Duration = Duration::from_secs(15);

/// Replace `to` the way editors and deploy tools do: write beside it, then rename over it.
fn install(from: &Path, to: &Path) {
    let temporary = to.with_file_name(".incoming.tmp");
    std::fs::copy(from, &temporary).expect("copy");
    std::fs::rename(&temporary, to).expect("rename");
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
        let response = LegacySession::post_to(&reqwest::Client::new(), &slow_url, Some(&slow_session))
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
