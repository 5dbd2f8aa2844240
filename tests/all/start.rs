//! A start that does not wait: the host listens before its plugins are compiled, `/health`
//! says what is still loading until each has loaded or failed (and `/ready` answers 503 until
//! then, for a readiness probe), and each plugin is served (and connected clients told) as
//! soon as it is ready.

use std::time::{Duration, Instant};

use serde_json::{Value, json};

use crate::support::{LegacySession, Server, StatelessClient, fixture};

/// How long a cold compile of the Python component may take in a debug build on a busy machine.
const PATIENCE: Duration = Duration::from_secs(180);

fn loading(health: &Value) -> Vec<String> {
    health["loading"]
        .as_array()
        .map(|l| l.iter().filter_map(|n| n.as_str().map(str::to_owned)).collect())
        .unwrap_or_default()
}

fn loaded(health: &Value) -> Vec<String> {
    health["plugins"]["loaded"]
        .as_array()
        .map(|l| l.iter().filter_map(|p| p["name"].as_str().map(str::to_owned)).collect())
        .unwrap_or_default()
}

/// `GET /ready`: its status and body.
async fn ready(server: &Server) -> (reqwest::StatusCode, Value) {
    let response = reqwest::get(format!("http://{}/ready", server.address)).await.expect("/ready answers");
    let status = response.status();
    (status, response.json().await.expect("/ready is JSON"))
}

async fn health_until(server: &Server, what: &str, done: impl Fn(&Value) -> bool) -> Value {
    let deadline = Instant::now() + PATIENCE;
    loop {
        let health = server.health().await;
        if done(&health) {
            return health;
        }
        assert!(Instant::now() < deadline, "{what} did not happen within {PATIENCE:?}: {health}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// With an empty compile cache, a small plugin and a large one (the Python fixture, ~18 MB,
/// seconds to compile): `/health` answers at once, not ready and naming what loads; the small
/// plugin serves while the large one compiles; a connected client is told when the large one
/// arrives; then ready.
#[tokio::test]
async fn listens_at_once_and_serves_each_plugin_as_it_is_ready() {
    let work = tempfile::tempdir().expect("a temporary folder");
    let plugins = work.path().join("plugins");
    std::fs::create_dir_all(&plugins).expect("plugins folder");
    std::fs::copy(fixture("version-one"), plugins.join("greeter.wasm")).expect("copy greeter");
    std::fs::copy(fixture("unit-convert-python"), plugins.join("unit-convert-python.wasm")).expect("copy python");
    let config = work.path().join("host.toml");
    let cache = work.path().join("cache");
    std::fs::write(&config, format!("[plugins]\ncache_dir = {:?}\n", cache.to_str().expect("UTF-8 path")))
        .expect("write the config");
    let config = config.to_str().expect("UTF-8 path");

    let started = Instant::now();
    let server = Server::listening(&plugins, "127.0.0.1:0", &["--config", config], &[]);
    let first = server.health().await;
    let answered = started.elapsed();
    println!("first /health answer {} ms after start: {first}", answered.as_millis());
    assert!(answered < Duration::from_secs(10), "/health took {answered:?}");
    assert_eq!(first["ready"], false, "ready before the Python plugin compiled: {first}");
    assert!(loading(&first).contains(&"unit-convert-python".to_owned()), "{first}");
    assert!(first["plugins"]["failed"].as_array().is_some_and(Vec::is_empty), "{first}");
    // A readiness probe judges the status alone: 503 while loading; `/health` stays 200.
    let (status, body) = ready(&server).await;
    assert_eq!(status, reqwest::StatusCode::SERVICE_UNAVAILABLE, "/ready before the Python plugin compiled: {body}");
    assert_eq!(body["ready"], false, "{body}");
    assert!(body["loading"].as_u64().is_some_and(|n| n >= 1), "{body}");
    let health_status = reqwest::get(format!("http://{}/health", server.address)).await.expect("answers").status();
    assert_eq!(health_status, reqwest::StatusCode::OK, "/health answers 200 while loading");

    // The small plugin serves while the large one still compiles.
    let mut client = LegacySession::open(&server).await;
    let partial = health_until(&server, "the greeter served", |h| loaded(h).contains(&"greeter".to_owned())).await;
    assert_eq!(partial["ready"], false, "the Python plugin was not compiled after the greeter: {partial}");
    assert_eq!(loading(&partial), ["unit-convert-python"], "{partial}");
    assert_eq!(client.call_text("greeter__version", json!({})).await, "one");
    assert!(!client.tool_names().await.iter().any(|name| name.starts_with("unit-convert-python__")));
    // A call of a tool whose plugin is still loading waits for it, rather than failing.
    let early = StatelessClient::new(&server);
    let early_call = tokio::spawn(async move {
        early.call("unit-convert-python__convert", json!({ "value": 100, "from": "C", "to": "F" })).await
    });
    // Whatever the greeter's arrival announced is behind us.
    tokio::time::sleep(Duration::from_millis(300)).await;
    client.drain_notifications();

    // The large one arrives: the client is told (unless it arrived while the greeter's news
    // was drained: a fast machine), and the host is ready.
    if server.health().await["ready"] == false {
        client.expect_notification_within("notifications/tools/list_changed", PATIENCE).await;
    } else {
        println!("the Python plugin compiled within 300 ms of the greeter; its notification was not checked");
    }
    let ready = health_until(&server, "ready", |h| h["ready"] == true).await;
    println!("ready {} ms after start: {ready}", started.elapsed().as_millis());
    assert!(loading(&ready).is_empty(), "{ready}");
    assert_eq!(self::ready(&server).await, (reqwest::StatusCode::OK, json!({ "ready": true, "loading": 0 })));
    assert!(loaded(&ready).contains(&"unit-convert-python".to_owned()), "{ready}");
    assert!(client.tool_names().await.contains(&"unit-convert-python__convert".to_owned()));
    let converted =
        client.call_text("unit-convert-python__convert", json!({ "value": 100, "from": "C", "to": "F" })).await;
    assert_eq!(converted, "100 C = 212 F");
    let early = tokio::time::timeout(PATIENCE, early_call).await.expect("the early call ends").expect("joined");
    assert_eq!(early.map(|result| result["content"][0]["text"].clone()), Ok(json!("100 C = 212 F")));
}
