//! The relay driven in process: [`RelayLayer::pre_dispatch`] with a request as the transport
//! hands it over, against a mock 2026-07-28 peer on 127.0.0.1 that the host imports.

use std::sync::Arc;
use std::time::Duration;

use axum::http::request::Parts;
use serde_json::{Value, json};

use super::RelayLayer;
use crate::auth::{Grants, Guard, Identity};
use crate::catalog::Catalog;
use crate::federation::{Federation, Peer};
use crate::session::Shared;
use crate::testing::{AuditBuffer, MockPeer, RunningMock, peer_config, response_message, within};

const HOST: &str = "host-a";

/// A host that imports a mock 2026-07-28 peer under the namespace `m`, with the relay in front
/// of it; the audit log of its guard.
struct Relaying {
    relay: RelayLayer,
    mock: RunningMock,
    audit: AuditBuffer,
}

async fn relaying() -> Relaying {
    crate::tls::install_default_provider();
    let mock = MockPeer::start(false).await;
    let peer = Peer::start(peer_config("mock", "m", &mock.url), HOST.to_owned(), 8, None);
    let mut listing = peer.listing();
    let listing =
        within("the peer's listing", listing.wait_for(|l| !l.tools.is_empty())).await.expect("it lists").clone();
    // The relay takes a call only while the peer is up on 2026-07-28 over HTTP.
    within("the peer's relay", async {
        while peer.relay().is_none() {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    })
    .await;
    let catalog = Arc::new(Catalog::new(HOST.to_owned()));
    catalog.set_peer(peer.clone(), listing);
    let federation = Arc::new(Federation { peers: vec![peer] });
    let audit = AuditBuffer::default();
    let guard = Guard { audit: audit.log(), ..Guard::permissive() };
    let shared = Shared::new(catalog, federation, vec![7; 32], None, guard, Default::default());
    let direct = super::DirectPeer::new(true, tokio_util::sync::CancellationToken::new());
    Relaying { relay: RelayLayer::new(shared, &["127.0.0.1".to_owned()], direct), mock, audit }
}

/// A stateless 2026-07-28 `tools/call` of `tool`, as the transport hands it to the relay.
fn stateless_call(tool: &str, extra: &[(&str, &str)]) -> (Parts, Value) {
    let mut request = axum::http::Request::post("/mcp")
        .header("host", "127.0.0.1:8931")
        .header("content-type", "application/json")
        .header("accept", "application/json, text/event-stream")
        .header("mcp-protocol-version", "2026-07-28")
        .header("mcp-method", "tools/call")
        .header("mcp-name", tool);
    for (name, value) in extra {
        request = request.header(*name, *value);
    }
    let (parts, ()) = request.body(()).expect("a request").into_parts();
    let message = json!({ "jsonrpc": "2.0", "id": 7, "method": "tools/call", "params": {
        "name": tool, "arguments": { "text": "hi" },
        "_meta": { "io.modelcontextprotocol/protocolVersion": "2026-07-28",
                   "io.modelcontextprotocol/clientCapabilities": {} } } });
    (parts, message)
}

/// The JSON-RPC answer of a response the relay gave.
async fn answer_of(response: axum::response::Response) -> Value {
    let body = within("the relayed answer", axum::body::to_bytes(response.into_body(), 1 << 20))
        .await
        .expect("the answer's body");
    response_message(&body)
}

/// How many tools/call uses the mock peer served the latency histogram holds (other tests of
/// this process may add to it too, never take from it).
fn relayed_calls_timed() -> u64 {
    crate::metrics::install();
    let snapshot = crate::metrics::Snapshot { sessions_open: 0, plugins_loaded: 0, plugins_failed: 0, peers: &[] };
    let text = crate::metrics::encode(&snapshot).expect("the recorder is this process's");
    let series = r#"fedmcp_request_duration_seconds_count{method="tools/call",owner_kind="peer",owner="mock"} "#;
    text.lines().find_map(|line| line.strip_prefix(series)).and_then(|count| count.trim().parse().ok()).unwrap_or(0)
}

#[tokio::test]
async fn an_eligible_stateless_call_is_relayed_to_the_peer_that_owns_the_tool_and_counted() {
    let Relaying { relay, mock, audit } = relaying().await;
    let timed_before = relayed_calls_timed();
    let (parts, message) = stateless_call("m__echo", &[]);
    let response = within("the relay", relay.pre_dispatch(parts, &message, None)).await.expect("the relay takes it");
    let answer = answer_of(response).await;
    assert_eq!(answer["id"], 7, "{answer}");
    assert!(relayed_calls_timed() > timed_before, "a relayed call is in the latency histogram");
    let text = answer["result"]["content"][0]["text"].as_str().expect("the peer's answer");
    let echoed: Value = serde_json::from_str(text).expect("the echo's JSON");
    assert_eq!(echoed["arguments"], json!({ "text": "hi" }));
    assert_eq!(echoed["meta"]["dev.fedmcp/via"], json!([HOST]), "the relay adds this host to the hop list");
    assert_eq!(mock.calls(), 1);
    assert_eq!((relay.counts().relayed, relay.counts().refused), (1, 0));
    let lines = audit.lines();
    assert_eq!(lines.len(), 1, "{lines:?}");
    assert_eq!((lines[0]["entry"].as_str(), lines[0]["decision"].as_str()), (Some("m__echo"), Some("allowed")));
    assert_eq!(lines[0]["outcome"], "ok", "{lines:?}");
}

#[tokio::test]
async fn a_call_outside_the_callers_grant_is_refused_by_the_relay_and_never_reaches_the_peer() {
    let Relaying { relay, mock, audit } = relaying().await;
    let (mut parts, message) = stateless_call("m__echo", &[]);
    // The caller as the HTTP edge names it: granted another tool only.
    let caller = Identity {
        subject: "alice".into(),
        issuer: Some("idp".into()),
        actor: None,
        grants: Grants::from_scopes(&["tools:m__progress"]),
        expires: None,
    };
    parts.extensions.insert(Arc::new(caller));
    let response = within("the relay", relay.pre_dispatch(parts, &message, None)).await.expect("the relay answers");
    let answer = answer_of(response).await;
    assert_eq!(answer["error"]["data"]["required_scope"], "tools:m__echo", "{answer}");
    assert_eq!((relay.counts().relayed, relay.counts().refused), (0, 1));
    assert_eq!(mock.calls(), 0, "the peer never saw the call");
    let lines = audit.lines();
    assert_eq!(lines.len(), 1, "{lines:?}");
    assert_eq!(lines[0]["decision"], "denied", "{lines:?}");
}

#[tokio::test]
async fn a_request_with_an_origin_header_is_left_to_the_normal_path() {
    let Relaying { relay, mock, audit } = relaying().await;
    let (parts, message) = stateless_call("m__echo", &[("origin", "http://localhost:3000")]);
    assert!(within("the relay", relay.pre_dispatch(parts, &message, None)).await.is_err());
    assert_eq!((relay.counts().relayed, relay.counts().refused), (0, 0));
    assert_eq!(mock.calls(), 0);
    assert!(audit.lines().is_empty(), "the normal path audits it, not the relay");
}
