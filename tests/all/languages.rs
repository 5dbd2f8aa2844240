//! Plugins written in Python (componentize-py), JavaScript (componentize-js) and C (clang for
//! wasm32-wasi, `jco new`), built from source by `cargo xtask plugins`, served by the host
//! over Streamable HTTP.

use serde_json::{Value, json};

use crate::support::{Server, StatelessClient, example_plugins, fixture};

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

#[tokio::test]
async fn a_c_plugin_counts_text_and_checks_its_arguments() {
    let server = Server::start(&example_plugins());
    let client = StatelessClient::new(&server);
    let (_, listed) = client.request("tools/list", json!({})).await;
    let tool = listed["result"]["tools"]
        .as_array()
        .and_then(|tools| tools.iter().find(|t| t["name"] == "text-stats__text_stats"))
        .cloned()
        .expect("the C tool is listed");
    assert_eq!(tool["inputSchema"]["required"], json!(["text"]), "{tool}");
    assert_eq!(tool["inputSchema"]["properties"]["top"]["type"], "integer", "{tool}");

    let text = "The cat saw the other cat.\nThe end: café \"quoted\"";
    let counted =
        client.call("text-stats__text_stats", json!({ "text": text, "top": 2 })).await.expect("text_stats answers");
    let lines: Vec<&str> =
        counted["content"].as_array().into_iter().flatten().filter_map(|c| c["text"].as_str()).collect();
    assert_eq!(lines, ["words: 10\nlines: 2\ncharacters: 49\ndistinct words: 7", "the: 3", "cat: 2"], "{counted}");

    for (arguments, message) in [
        (json!({}), "missing required argument: text"),
        (json!({ "text": 5 }), "argument text must be of type string"),
        (json!({ "text": "x", "top": 1.5 }), "argument top must be of type integer"),
        (json!({ "text": "x", "extra": true }), "unknown argument: extra"),
        (json!({ "text": "x", "top": 1000 }), "top must be between 0 and 100"),
    ] {
        let refused = client.call("text-stats__text_stats", arguments.clone()).await;
        assert!(refused.as_ref().is_err_and(|e| e.contains(message)), "{arguments}: {refused:?}");
    }
}

/// The answer a contract case expects: the text and the structured `value` (Null: none
/// checked), or the JSON-RPC error's code and a part of its message.
type Expected = Result<(&'static str, Value), (i64, &'static str)>;

/// One case of the contract: tool, arguments, expected answer.
type Case = (&'static str, Value, Expected);

/// One contract, three languages: the table of arguments in and content out (or the error)
/// that unit-convert's `convert` and `units` must give, run against the JavaScript example
/// and its Rust and Python ports (tests/plugins/unit-convert-{rust,python}).
#[tokio::test]
async fn the_same_tool_answers_alike_in_rust_python_and_javascript() {
    let dir = tempfile::tempdir().expect("a plugins folder");
    let implementations = [
        ("unit-convert-js", example_plugins().join("unit-convert.wasm")),
        ("unit-convert-rust", fixture("unit-convert-rust")),
        ("unit-convert-python", fixture("unit-convert-python")),
    ];
    for (name, wasm) in &implementations {
        assert!(wasm.is_file(), "{} is missing: run `cargo xtask plugins`", wasm.display());
        std::fs::copy(wasm, dir.path().join(format!("{name}.wasm"))).expect("copy the component");
    }
    let server = Server::start(dir.path());
    let client = StatelessClient::new(&server);

    let table: &[Case] = &[
        ("convert", json!({ "value": 100, "from": "C", "to": "F" }), Ok(("100 C = 212 F", json!(212.0)))),
        ("convert", json!({ "value": -40, "from": "F", "to": "C" }), Ok(("-40 F = -40 C", json!(-40.0)))),
        ("convert", json!({ "value": 0, "from": "K", "to": "C" }), Ok(("0 K = -273.15 C", json!(-273.15)))),
        (
            "convert",
            json!({ "value": 10, "from": "km", "to": "mi" }),
            Ok(("10 km = 6.21371192237 mi", json!(6.21371192237))),
        ),
        ("convert", json!({ "value": 2.5, "from": "ft", "to": "in" }), Ok(("2.5 ft = 30 in", json!(30.0)))),
        ("convert", json!({ "value": 1, "from": "lb", "to": "g" }), Ok(("1 lb = 453.59237 g", json!(453.59237)))),
        (
            "convert",
            json!({ "value": 1, "from": "GiB", "to": "MB" }),
            Ok(("1 GiB = 1073.741824 MB", json!(1073.741824))),
        ),
        ("convert", json!({ "value": 3, "from": "m", "to": "m" }), Ok(("3 m = 3 m", json!(3.0)))),
        (
            "units",
            json!({}),
            Ok((
                "length: mm, cm, m, km, in, ft, yd, mi\nmass: mg, g, kg, t, oz, lb\n\
                 data: B, KB, MB, GB, KiB, MiB, GiB\ntemperature: C, F, K",
                Value::Null,
            )),
        ),
        ("convert", json!({ "value": 1, "from": "parsec", "to": "m" }), Err((-32602, "unknown unit: parsec"))),
        ("convert", json!({ "value": 1, "from": "kg", "to": "km" }), Err((-32602, "cannot convert mass (kg) to km"))),
        (
            "convert",
            json!({ "value": 1, "from": "C", "to": "kg" }),
            Err((-32602, "cannot convert temperature (C) to kg")),
        ),
        (
            "convert",
            json!({ "value": "one", "from": "kg", "to": "g" }),
            Err((-32602, "argument value must be of type number")),
        ),
        ("convert", json!({ "value": 1, "from": 5, "to": "g" }), Err((-32602, "argument from must be of type string"))),
        ("convert", json!({ "value": 1, "from": "kg" }), Err((-32602, "missing required argument: to"))),
        (
            "convert",
            json!({ "value": 1, "from": "kg", "to": "g", "round": 2 }),
            Err((-32602, "unknown argument: round")),
        ),
        ("units", json!({ "quantity": "mass" }), Err((-32602, "unknown argument: quantity"))),
    ];

    let mut failures = Vec::new();
    for (name, _) in &implementations {
        for (tool, arguments, expected) in table {
            let params = json!({ "name": format!("{name}__{tool}"), "arguments": arguments });
            let (_, reply) = client.request("tools/call", params).await;
            let agrees = match expected {
                Ok((text, structured)) => {
                    let result = &reply["result"];
                    let value = &result["structuredContent"]["value"];
                    result["content"][0]["text"] == *text
                        && result["isError"] != json!(true)
                        && (structured.is_null() || value.as_f64() == structured.as_f64())
                }
                Err((code, message)) => {
                    reply["error"]["code"] == *code
                        && reply["error"]["message"].as_str().is_some_and(|m| m.contains(message))
                }
            };
            if !agrees {
                failures.push(format!("{name} {tool} {arguments}: expected {expected:?}, got {reply}"));
            }
        }
    }
    assert!(failures.is_empty(), "{} disagreements:\n{}", failures.len(), failures.join("\n"));
}
