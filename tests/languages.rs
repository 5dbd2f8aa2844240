//! Plugins written in Python (componentize-py) and JavaScript (componentize-js), built from
//! source by `cargo xtask plugins`, served by the host over Streamable HTTP.

mod support;

use serde_json::json;
use support::{Server, StatelessClient, example_plugins};

#[tokio::test]
async fn a_python_plugin_reads_only_its_granted_folder() {
    let server = Server::start(&example_plugins());
    let client = StatelessClient::new(&server);
    let listed = client.call("doc-search__list_docs", json!({})).await.expect("list_docs answers");
    let names = listed["content"][0]["text"].as_str().unwrap_or_default();
    assert!(names.lines().any(|n| n == "federation.md"), "{listed}");

    let found = client.call("doc-search__search_docs", json!({ "query": "PEER" })).await.expect("search answers");
    assert!(found["structuredContent"]["total"].as_u64().is_some_and(|n| n >= 1), "{found}");
    assert!(found["content"][0]["text"].as_str().is_some_and(|t| t.contains("federation.md:")), "{found}");

    let escape = client.call("doc-search__read_doc", json!({ "name": "../doc-search.toml" })).await;
    assert!(escape.is_err_and(|e| e.contains("not a path")), "a path outside the documents was accepted");
    let missing = client.call("doc-search__read_doc", json!({})).await;
    assert!(missing.is_err_and(|e| e.contains("missing required argument: name")));
}

#[tokio::test]
async fn a_javascript_plugin_converts_units() {
    let server = Server::start(&example_plugins());
    let client = StatelessClient::new(&server);
    let converted = client
        .call("unit-convert__convert", json!({ "value": 100, "from": "C", "to": "F" }))
        .await
        .expect("convert answers");
    assert_eq!(converted["structuredContent"], json!({ "value": 212, "unit": "F" }), "{converted}");
    assert_eq!(converted["content"][0]["text"], "100 C = 212 F");

    let mismatched = client.call("unit-convert__convert", json!({ "value": 1, "from": "kg", "to": "km" })).await;
    assert!(mismatched.is_err_and(|e| e.contains("cannot convert mass")));
    let mistyped = client.call("unit-convert__convert", json!({ "value": "one", "from": "kg", "to": "g" })).await;
    assert!(mistyped.is_err_and(|e| e.contains("must be of type number")));
}
