//! A peer driven in process against a mock MCP server on 127.0.0.1: what it imports, and how a
//! forwarded call carries its caller's `_meta`, brings the peer's progress back, keeps to the
//! time limit and is cancelled at the peer when its caller goes away.

use std::sync::Arc;
use std::time::Duration;

use serde_json::{Value, json};
use tokio::sync::mpsc;

use super::Peer;
use crate::call::{CallContext, CallError, CallEvent, Outcome};
use crate::catalog::Catalog;
use crate::config::PeerConfig;
use crate::testing::{LIMIT, MockPeer, RunningMock, Seen, peer_config, within};

/// This host's id, as forwarded requests name it in their hop list.
const HOST: &str = "host-a";

/// Start a peer for `config` and wait until it has listed the mock's tools.
async fn started(config: PeerConfig) -> Arc<Peer> {
    crate::tls::install_default_provider();
    let peer = Peer::start(config, HOST.to_owned(), 8, None);
    let mut listing = peer.listing();
    let listed = tokio::time::timeout(LIMIT, listing.wait_for(|listing| !listing.tools.is_empty())).await;
    assert!(listed.is_ok_and(|listed| listed.is_ok()), "the peer did not list its tools: {}", peer.health().1);
    peer
}

/// The next `tools/call` the mock saw: its tool and `_meta`.
async fn next_call(mock: &mut RunningMock) -> (String, Value) {
    loop {
        if let Seen::Called { name, meta } = mock.next_seen().await {
            return (name, meta);
        }
    }
}

fn text_of(outcome: Outcome<rmcp::model::CallToolResult>) -> String {
    let Outcome::Complete(result) = outcome else { panic!("the peer asked for input") };
    let value = serde_json::to_value(&result).expect("a result serialises");
    value["content"][0]["text"].as_str().expect("a text answer").to_owned()
}

#[tokio::test]
async fn a_peer_lists_what_its_filters_and_the_loop_guard_let_in_and_the_catalog_serves_it_namespaced() {
    let mock = MockPeer::start(false).await;
    let mut config = peer_config("mock", "m", &mock.url);
    config.exclude = vec!["intern*".into()];
    // The `looped` tool says it already passed through this host.
    crate::tls::install_default_provider();
    let peer = Peer::start(config, MockPeer::LOOPED_HOST.to_owned(), 8, None);
    let mut listing = peer.listing();
    let listing =
        within("the listing", listing.wait_for(|l| !l.tools.is_empty())).await.expect("the peer lists").clone();
    let names: Vec<&str> = listing.tools.iter().map(|tool| &*tool.name).collect();
    assert_eq!(names, ["echo", "progress", "stall"], "excluded and looped tools are not imported");
    assert_eq!(listing.looped, ["looped"], "the loop guard reports what it dropped");

    let catalog = Catalog::new(MockPeer::LOOPED_HOST.to_owned());
    catalog.set_peer(peer.clone(), listing);
    let mut served: Vec<String> = catalog.tools().iter().map(|tool| tool.name.to_string()).collect();
    served.sort();
    assert_eq!(served, ["m__echo", "m__progress", "m__stall"]);
    let route = catalog.tool("m__echo").expect("routed");
    assert_eq!(route.local_name, "echo", "the peer is called by its own name");
}

#[tokio::test]
async fn a_forwarded_call_carries_the_callers_meta_with_this_host_added_to_its_hop_list() {
    let mut mock = MockPeer::start(false).await;
    let peer = started(peer_config("mock", "m", &mock.url)).await;
    let mut cx = CallContext::default();
    cx.meta.insert("dev.fedmcp/via".into(), json!(["first-host"]));
    cx.meta.insert("example.com/trace".into(), json!("trace-1"));
    let outcome = within("the forwarded call", peer.call_tool("echo", &json!({ "text": "hi" }), cx))
        .await
        .expect("the peer answers");
    let (name, meta) = next_call(&mut mock).await;
    assert_eq!(name, "echo");
    assert_eq!(meta["dev.fedmcp/via"], json!(["first-host", HOST]), "{meta}");
    assert_eq!(meta["example.com/trace"], "trace-1", "the caller's own _meta is passed on: {meta}");
    let answer: Value = serde_json::from_str(&text_of(outcome)).expect("the echo's JSON");
    assert_eq!(answer["arguments"], json!({ "text": "hi" }));
}

#[tokio::test]
async fn a_request_that_already_crossed_this_host_is_refused_before_it_reaches_the_peer() {
    let mock = MockPeer::start(false).await;
    let peer = started(peer_config("mock", "m", &mock.url)).await;
    let mut cx = CallContext::default();
    cx.meta.insert("dev.fedmcp/via".into(), json!(["first-host", HOST]));
    let refused = within("the refused call", peer.call_tool("echo", &json!({}), cx)).await;
    assert!(matches!(refused, Err(CallError::Loop(_))), "{refused:?}");
    assert_eq!(mock.calls(), 0);
}

#[tokio::test]
async fn the_peers_progress_reaches_the_forwarded_calls_event_channel() {
    let mock = MockPeer::start(false).await;
    let peer = started(peer_config("mock", "m", &mock.url)).await;
    let (events, mut received) = mpsc::unbounded_channel();
    let cx = CallContext { events: Some(events), ..CallContext::default() };
    let outcome =
        within("the forwarded call", peer.call_tool("progress", &json!({}), cx)).await.expect("the peer answers");
    assert_eq!(text_of(outcome), "progressed");
    // The call settles the peer's notifications before it returns: they are here already.
    let mut progress = Vec::new();
    while let Ok(event) = received.try_recv() {
        if let CallEvent::Progress { progress: done, total, message } = event {
            progress.push((done, total, message));
        }
    }
    assert_eq!(
        progress,
        [(1.0, Some(2.0), Some("step 1".to_owned())), (2.0, Some(2.0), Some("step 2".to_owned()))],
        "both progress notifications, in order"
    );
}

#[tokio::test]
async fn a_call_past_the_peers_time_limit_fails_with_an_error_that_names_the_limit() {
    let mock = MockPeer::start(false).await;
    let mut config = peer_config("mock", "m", &mock.url);
    config.timeout = Duration::from_millis(300);
    let peer = started(config).await;
    let started_at = std::time::Instant::now();
    let failed = within("the stalled call", peer.call_tool("stall", &json!({}), CallContext::default())).await;
    let Err(error) = failed else { panic!("a stalled call succeeded") };
    assert!(matches!(error, CallError::PeerTimeout { limit_ms: 300, .. }), "{error:?}");
    assert_eq!(error.to_string(), "peer mock did not answer within 300 ms");
    assert!(started_at.elapsed() < Duration::from_secs(5), "the limit, not the test's, ended it");
}

/// Start `stall` at the peer, wait until the mock runs it, then drop the call.
async fn drop_a_stalled_call(peer: Arc<Peer>, mock: &mut RunningMock) {
    let call = tokio::spawn(async move { peer.call_tool("stall", &json!({}), CallContext::default()).await });
    let (name, _) = next_call(mock).await;
    assert_eq!(name, "stall");
    call.abort();
    assert!(call.await.is_err_and(|e| e.is_cancelled()), "the call was still running when dropped");
}

#[tokio::test]
async fn dropping_a_forwarded_call_sends_notifications_cancelled_to_a_legacy_peer() {
    let mut mock = MockPeer::start(true).await;
    let peer = started(peer_config("mock", "m", &mock.url)).await;
    drop_a_stalled_call(peer, &mut mock).await;
    let (mut notified, mut handler_stopped) = (false, false);
    while !(notified && handler_stopped) {
        match mock.next_seen().await {
            Seen::CancelledNotification(id) => {
                assert!(!id.is_null(), "the notification names the request");
                notified = true;
            }
            Seen::HandlerCancelled => handler_stopped = true,
            Seen::Called { name, .. } => panic!("an unexpected call of {name}"),
        }
    }
}

#[tokio::test]
async fn dropping_a_forwarded_call_stops_its_handler_at_a_2026_07_28_peer() {
    let mut mock = MockPeer::start(false).await;
    let peer = started(peer_config("mock", "m", &mock.url)).await;
    drop_a_stalled_call(peer, &mut mock).await;
    // Over 2026-07-28 HTTP, rmcp cancels a request by closing its response stream.
    loop {
        match mock.next_seen().await {
            Seen::HandlerCancelled => break,
            Seen::CancelledNotification(_) => {}
            Seen::Called { name, .. } => panic!("an unexpected call of {name}"),
        }
    }
}
