//! What the edge answers for a message rmcp would misjudge. rmcp parses every POST as a client
//! message; one that does not parse (`"jsonrpc": "1.0"`, an `id` of `null`, a shape that is no
//! JSON-RPC message) gets `415 Unsupported Media Type`, and a request of a method rmcp knows
//! whose params do not fit that method (`tools/call` with `"name": 42`) falls through to its
//! custom-request catch-all and is answered "method not found". Here they get
//! `400` with -32600 (Invalid Request), and -32602 (Invalid params) in band, instead.

use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use rmcp::model::{ClientJsonRpcMessage, ClientRequest};
use serde::de::DeserializeOwned;
use serde_json::{Value, json};

/// Why a message is refused before rmcp sees it.
#[derive(Debug, PartialEq, Eq)]
pub(super) enum Invalid {
    /// Not a JSON-RPC 2.0 message a client may send: -32600.
    Request { id: Value, reason: String },
    /// A request of a known method whose params do not fit it: -32602.
    Params { id: Value, method: String, reason: String },
}

impl Invalid {
    pub(super) fn into_response(self) -> Response {
        // A message that is no JSON-RPC request is a bad HTTP request, as malformed JSON is; bad
        // params are answered in band (200), as rmcp answers its own -32602 for either revision.
        let status = match self {
            Self::Request { .. } => StatusCode::BAD_REQUEST,
            Self::Params { .. } => StatusCode::OK,
        };
        (status, axum::Json(self.into_error())).into_response()
    }

    /// The JSON-RPC error message that answers it (what `/ws` sends in a text frame).
    pub(super) fn into_error(self) -> Value {
        let (id, code, message) = match self {
            Self::Request { id, reason } => (id, -32600, format!("Invalid Request: {reason}")),
            Self::Params { id, method, reason } => (id, -32602, format!("Invalid params for {method}: {reason}")),
        };
        json!({ "jsonrpc": "2.0", "id": id, "error": { "code": code, "message": message } })
    }
}

/// Methods of the handshake era that 2026-07-28 removed: in a 2026-07-28 request they are
/// unknown (rmcp answers 404 with -32601), whatever their params.
const REMOVED_IN_2026: [&str; 5] =
    ["initialize", "ping", "logging/setLevel", "resources/subscribe", "resources/unsubscribe"];
/// Methods 2026-07-28 added: unknown to a legacy request.
const ADDED_IN_2026: [&str; 1] = ["subscriptions/listen"];
/// The revisions with the handshake (and sessions).
const LEGACY_VERSIONS: [&str; 4] = ["2024-11-05", "2025-03-26", "2025-06-18", "2025-11-25"];
const META_PROTOCOL: &str = "io.modelcontextprotocol/protocolVersion";

/// A `tools/call` request as rmcp's type reads it.
pub(super) type ToolCall = rmcp::model::JsonRpcRequest<rmcp::model::CallToolRequest>;

/// Check one message (already known to be JSON, not a batch) as rmcp will read it from `bytes`,
/// sent with `headers`.
pub(super) fn check(message: &Value, bytes: &[u8], headers: &HeaderMap) -> Result<(), Invalid> {
    checked(message, bytes, headers).map(|_| ())
}

/// [`check`], and a well-formed `tools/call` as rmcp's type, read once here for whoever
/// serves it (the relay's direct path) so it is not parsed from the bytes again.
pub(super) fn checked(message: &Value, bytes: &[u8], headers: &HeaderMap) -> Result<Option<ToolCall>, Invalid> {
    if let Some(call) = well_formed_tool_call(message, bytes) {
        return Ok(Some(call));
    }
    check_fully(message, bytes, headers).map(|()| None)
}

/// A `tools/call` request whose id and params fit rmcp's types: what rmcp's parse takes it for
/// (every request type it tries before is of another method). The common case, checked
/// without that parse, which tries the request types one by one and builds an error for each
/// that does not fit (8% of the instructions of a plugin call over HTTP went there).
fn well_formed_tool_call(message: &Value, bytes: &[u8]) -> Option<ToolCall> {
    use rmcp::model::{CallToolRequestMethod, ConstString};
    // rmcp reads an object with `result` or `error` as no request, whatever else it has. The
    // type is read from the bytes, as rmcp reads them: the parsed value keeps one of a key
    // sent twice, where rmcp's types refuse the message.
    if message.get("method").and_then(Value::as_str) != Some(CallToolRequestMethod::VALUE)
        || message.get("result").is_some()
        || message.get("error").is_some()
    {
        return None;
    }
    serde_json::from_slice::<ToolCall>(bytes).ok()
}

fn check_fully(message: &Value, bytes: &[u8], headers: &HeaderMap) -> Result<(), Invalid> {
    let id = message.get("id").filter(|id| id.is_string() || id.is_number()).cloned().unwrap_or(Value::Null);
    let Some(object) = message.as_object() else {
        return Err(Invalid::Request { id, reason: "a JSON-RPC message is an object".into() });
    };
    match object.get("jsonrpc") {
        Some(Value::String(version)) if version == "2.0" => {}
        Some(other) => {
            return Err(Invalid::Request { id, reason: format!("\"jsonrpc\" must be \"2.0\", not {other}") });
        }
        None => return Err(Invalid::Request { id, reason: "\"jsonrpc\": \"2.0\" is missing".into() }),
    }
    // Exactly rmcp's parse, from the same bytes, so the edge and rmcp never disagree.
    match serde_json::from_slice::<ClientJsonRpcMessage>(bytes) {
        Ok(ClientJsonRpcMessage::Request(request)) => {
            let ClientRequest::CustomRequest(custom) = &request.request else { return Ok(()) };
            let method = custom.method.clone();
            match fit(&method, message, headers) {
                // An unknown method: rmcp answers -32601 as it should.
                Fit::Unknown => Ok(()),
                Fit::Misfits(reason) => Err(Invalid::Params { id, method, reason }),
                // rmcp took it for a custom request all the same: the params do not fit.
                Fit::Fits => Err(Invalid::Params { id, method, reason: "the params do not fit the method".into() }),
            }
        }
        Ok(_) => Ok(()),
        Err(error) => {
            // Params no request can have (an array, a string) fail the whole parse: for a
            // request of a known method, that is still a matter of its params.
            let is_request = !id.is_null() && !object.contains_key("result") && !object.contains_key("error");
            if is_request
                && let Some(method) = object.get("method").and_then(Value::as_str)
                && let Fit::Misfits(reason) = fit(method, message, headers)
            {
                return Err(Invalid::Params { id, method: method.to_owned(), reason });
            }
            Err(Invalid::Request { id, reason: error.to_string() })
        }
    }
}

/// Whether a request fits the typed request rmcp has for its method.
enum Fit {
    /// rmcp has no typed request of the method.
    Unknown,
    Fits,
    /// Why not, in serde's words.
    Misfits(String),
}

/// Whether `message` is a request of `method` as rmcp types it, for a method this host serves
/// in the request's revision (any other is rmcp's to answer "method not found").
// Logging and resources/subscribe are deprecated for 2026-07-28 but live in legacy sessions.
#[allow(deprecated)]
fn fit(method: &str, message: &Value, headers: &HeaderMap) -> Fit {
    use rmcp::model::*;
    let stateless = is_stateless(message, headers);
    if (stateless && REMOVED_IN_2026.contains(&method)) || (!stateless && ADDED_IN_2026.contains(&method)) {
        return Fit::Unknown;
    }
    fn fits<T: DeserializeOwned>(message: &Value) -> Fit {
        match T::deserialize(message) {
            Ok(_) => Fit::Fits,
            Err(error) => Fit::Misfits(error.to_string()),
        }
    }
    // The requests the session serves (no tasks, skills or resource directories: rmcp answers
    // those -32601 whatever their params).
    macro_rules! known {
        ($($method:ty => $request:ty),* $(,)?) => {
            $(if method == <$method as ConstString>::VALUE {
                return fits::<$request>(message);
            })*
        };
    }
    known!(
        PingRequestMethod => PingRequest,
        InitializeResultMethod => InitializeRequest,
        DiscoverRequestMethod => DiscoverRequest,
        CompleteRequestMethod => CompleteRequest,
        SetLevelRequestMethod => SetLevelRequest,
        GetPromptRequestMethod => GetPromptRequest,
        ListPromptsRequestMethod => ListPromptsRequest,
        ListResourcesRequestMethod => ListResourcesRequest,
        ListResourceTemplatesRequestMethod => ListResourceTemplatesRequest,
        ReadResourceRequestMethod => ReadResourceRequest,
        SubscriptionsListenRequestMethod => SubscriptionsListenRequest,
        SubscribeRequestMethod => SubscribeRequest,
        UnsubscribeRequestMethod => UnsubscribeRequest,
        CallToolRequestMethod => CallToolRequest,
        ListToolsRequestMethod => ListToolsRequest,
    );
    Fit::Unknown
}

/// Whether rmcp takes the request as a 2026-07-28 one: the version its `_meta` names, else the
/// `Mcp-Protocol-Version` header's, is not a handshake-era version (none means 2025-03-26).
fn is_stateless(message: &Value, headers: &HeaderMap) -> bool {
    let from_meta = message.get("params").and_then(|p| p.get("_meta")).and_then(|m| m.get(META_PROTOCOL));
    let version = match from_meta.and_then(Value::as_str) {
        Some(version) => Some(version),
        None => headers.get("mcp-protocol-version").and_then(|v| v.to_str().ok()),
    };
    version.is_some_and(|version| !LEGACY_VERSIONS.contains(&version))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn verdict(message: Value) -> Result<(), Invalid> {
        check(&message, message.to_string().as_bytes(), &HeaderMap::new())
    }

    fn code(message: Value) -> Option<i32> {
        match verdict(message) {
            Ok(()) => None,
            Err(Invalid::Request { .. }) => Some(-32600),
            Err(Invalid::Params { .. }) => Some(-32602),
        }
    }

    /// A key sent twice: the parsed value keeps one, and the check (the tools/call shortcut
    /// included) judges the message as rmcp's parse of the bytes does, which refuses a field
    /// of its own types sent twice.
    #[test]
    fn a_tool_call_with_a_key_sent_twice_is_judged_as_rmcp_judges_it() {
        for text in [
            r#"{"jsonrpc":"2.0","id":1,"id":2,"method":"tools/call","params":{"name":"x"}}"#,
            r#"{"jsonrpc":"2.0","jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"x"}}"#,
            r#"{"jsonrpc":"2.0","id":1,"method":"ping","method":"tools/call","params":{"name":"x"}}"#,
            r#"{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"x"},"params":{"name":"y"}}"#,
            r#"{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"x","name":"y"}}"#,
            r#"{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"x","_meta":{},"_meta":{}}}"#,
        ] {
            let message: Value = serde_json::from_str(text).expect("JSON");
            let rmcp = serde_json::from_slice::<ClientJsonRpcMessage>(text.as_bytes());
            let a_tool_call = matches!(
                rmcp,
                Ok(ClientJsonRpcMessage::Request(ref r)) if matches!(r.request, ClientRequest::CallToolRequest(_))
            );
            assert_eq!(well_formed_tool_call(&message, text.as_bytes()).is_some(), a_tool_call, "{text}");
            let headers = HeaderMap::new();
            assert_eq!(check(&message, text.as_bytes(), &headers), check_fully(&message, text.as_bytes(), &headers));
            if text.contains(r#""id":1,"id":2"#) {
                assert!(rmcp.is_err() && check(&message, text.as_bytes(), &headers).is_err(), "{text}");
            }
        }
    }

    #[test]
    fn valid_messages_of_both_revisions_pass() {
        let meta = json!({
            "io.modelcontextprotocol/protocolVersion": "2026-07-28",
            "io.modelcontextprotocol/clientCapabilities": {},
        });
        for message in [
            json!({ "jsonrpc": "2.0", "id": 1, "method": "initialize", "params": {
                "protocolVersion": "2025-11-25", "capabilities": {}, "clientInfo": { "name": "t", "version": "1" } } }),
            json!({ "jsonrpc": "2.0", "method": "notifications/initialized" }),
            json!({ "jsonrpc": "2.0", "id": "a", "method": "tools/list" }),
            json!({ "jsonrpc": "2.0", "id": 2, "method": "tools/call", "params": { "name": "x", "_meta": meta } }),
            json!({ "jsonrpc": "2.0", "id": 3, "method": "server/discover", "params": { "_meta": meta } }),
            json!({ "jsonrpc": "2.0", "id": 4, "method": "tools/teleport", "params": {} }),
            json!({ "jsonrpc": "2.0", "id": "fedmcp-relay-1", "result": { "action": "accept" } }),
            json!({ "jsonrpc": "2.0", "id": 5, "error": { "code": -1, "message": "no" } }),
        ] {
            assert_eq!(verdict(message.clone()), Ok(()), "{message}");
        }
    }

    #[test]
    fn a_bad_version_or_shape_is_an_invalid_request() {
        assert_eq!(code(json!({ "jsonrpc": "1.0", "id": 1, "method": "ping" })), Some(-32600));
        assert_eq!(code(json!({ "id": 1, "method": "ping" })), Some(-32600));
        assert_eq!(code(json!({ "jsonrpc": 2.0, "id": 1, "method": "ping" })), Some(-32600));
        assert_eq!(code(json!({ "jsonrpc": "2.0", "id": null, "method": "ping" })), Some(-32600));
        assert_eq!(code(json!({ "jsonrpc": "2.0", "id": 1 })), Some(-32600));
        assert_eq!(code(json!({ "jsonrpc": "2.0", "id": 1, "method": "ping", "result": {} })), Some(-32600));
        assert_eq!(code(json!("ping")), Some(-32600));
        let Err(Invalid::Request { id, .. }) = verdict(json!({ "jsonrpc": "1.0", "id": 7, "method": "ping" })) else {
            panic!("an invalid request")
        };
        assert_eq!(id, json!(7), "the request's id, when it has one");
    }

    #[test]
    fn params_that_do_not_fit_a_known_method_are_invalid_params() {
        let call = json!({ "jsonrpc": "2.0", "id": 1, "method": "tools/call", "params": { "name": 42 } });
        let Err(Invalid::Params { id, method, reason }) = verdict(call) else { panic!("invalid params") };
        assert_eq!((id, method.as_str()), (json!(1), "tools/call"));
        assert!(reason.contains("integer"), "{reason}");
        assert_eq!(code(json!({ "jsonrpc": "2.0", "id": 1, "method": "tools/call" })), Some(-32602));
        assert_eq!(code(json!({ "jsonrpc": "2.0", "id": 1, "method": "resources/read", "params": {} })), Some(-32602));
        assert_eq!(code(json!({ "jsonrpc": "2.0", "id": 1, "method": "prompts/get", "params": [] })), Some(-32602));
    }

    /// A method one revision removed or added is unknown to the other: rmcp's -32601 stands.
    #[test]
    fn methods_of_the_other_revision_are_left_to_rmcp() {
        let init = json!({ "jsonrpc": "2.0", "id": 1, "method": "initialize", "params": { "_meta": {
            "io.modelcontextprotocol/protocolVersion": "2026-07-28", "io.modelcontextprotocol/clientCapabilities": {} } } });
        assert_eq!(verdict(init), Ok(()));
        let legacy_init = json!({ "jsonrpc": "2.0", "id": 1, "method": "initialize", "params": {} });
        assert_eq!(code(legacy_init.clone()), Some(-32602));
        let mut headers = HeaderMap::new();
        headers.insert("mcp-protocol-version", axum::http::HeaderValue::from_static("2026-07-28"));
        let bytes = legacy_init.to_string();
        assert_eq!(check(&legacy_init, bytes.as_bytes(), &headers), Ok(()));
        let listen = json!({ "jsonrpc": "2.0", "id": 1, "method": "subscriptions/listen", "params": {} });
        assert_eq!(verdict(listen), Ok(()));
    }
}

#[cfg(test)]
mod proptests {
    use proptest::prelude::*;
    use proptest::test_runner::Config;
    use serde_json::Map;

    use super::*;

    /// The first `KNOWN` are requests rmcp types.
    const KNOWN: usize = 11;
    const METHODS: &[&str] = &[
        "ping",
        "initialize",
        "tools/call",
        "tools/list",
        "resources/read",
        "resources/list",
        "prompts/get",
        "completion/complete",
        "logging/setLevel",
        "subscriptions/listen",
        "server/discover",
        "notifications/cancelled",
        "notifications/initialized",
        "tools/teleport",
    ];
    const KEYS: &[&str] = &["name", "arguments", "uri", "_meta", "cursor", "level", "ref", "argument", "requestId"];

    fn json() -> impl Strategy<Value = Value> {
        let leaf = prop_oneof![
            Just(Value::Null),
            any::<bool>().prop_map(Value::from),
            any::<i64>().prop_map(Value::from),
            any::<u64>().prop_map(Value::from),
            any::<f64>().prop_map(Value::from),
            "\\PC{0,8}".prop_map(Value::from),
            prop::sample::select(METHODS).prop_map(Value::from),
        ];
        leaf.prop_recursive(3, 16, 4, |inner| {
            prop_oneof![
                prop::collection::vec(inner.clone(), 0..4).prop_map(Value::from),
                prop::collection::btree_map(prop::sample::select(KEYS).prop_map(str::to_owned), inner, 0..4)
                    .prop_map(|map| Value::Object(map.into_iter().collect())),
            ]
        })
    }

    /// Mostly JSON-RPC-shaped: the fields a message has, each present or not, any value.
    fn message() -> impl Strategy<Value = Value> {
        let jsonrpc = prop_oneof![4 => Just(Some(Value::from("2.0"))), 1 => prop::option::of(json())];
        let id = prop_oneof![Just(Some(Value::from(1))), Just(Some(Value::from("a"))), prop::option::of(json())];
        let method = prop::option::of(prop_oneof![prop::sample::select(METHODS).prop_map(Value::from), json()]);
        let params = prop::option::of(json());
        let other = prop::option::of(json());
        (jsonrpc, id, method, params, other, any::<bool>()).prop_map(|(jsonrpc, id, method, params, other, result)| {
            let mut object = Map::new();
            for (key, value) in [("jsonrpc", jsonrpc), ("id", id), ("method", method), ("params", params)] {
                if let Some(value) = value {
                    object.insert(key.into(), value);
                }
            }
            if let Some(other) = other {
                object.insert(if result { "result" } else { "error" }.into(), other);
            }
            Value::Object(object)
        })
    }

    fn meta() -> impl Strategy<Value = Option<Value>> {
        prop::option::of(Just(json!({
            "io.modelcontextprotocol/protocolVersion": "2026-07-28",
            "io.modelcontextprotocol/clientCapabilities": { "elicitation": {} },
        })))
    }

    /// Requests as the spec writes them, with any names, URIs and arguments.
    fn valid_request() -> impl Strategy<Value = Value> {
        let text = "\\PC{0,12}";
        let arguments = prop::collection::btree_map(text, json(), 0..4)
            .prop_map(|map| Value::Object(map.into_iter().collect::<Map<String, Value>>()));
        let prompt_arguments = prop::collection::btree_map(text, text, 0..3)
            .prop_map(|map| Value::Object(map.into_iter().map(|(k, v)| (k, Value::from(v))).collect()));
        let params = prop_oneof![
            (text, prop::option::of(arguments)).prop_map(|(name, arguments)| {
                let mut params = json!({ "name": name });
                if let Some(arguments) = arguments {
                    params["arguments"] = arguments;
                }
                ("tools/call", Some(params))
            }),
            text.prop_map(|uri| ("resources/read", Some(json!({ "uri": uri })))),
            (text, prompt_arguments).prop_map(|(name, arguments)| {
                ("prompts/get", Some(json!({ "name": name, "arguments": arguments })))
            }),
            prop::option::of(text).prop_map(|cursor| ("tools/list", cursor.map(|c| json!({ "cursor": c })))),
            Just(("ping", None)),
        ];
        (params, meta(), prop_oneof![any::<i64>().prop_map(Value::from), text.prop_map(Value::from)]).prop_map(
            |((method, params), meta, id)| {
                let mut message = json!({ "jsonrpc": "2.0", "id": id, "method": method });
                let mut params = params.unwrap_or_else(|| json!({}));
                if let Some(meta) = meta {
                    params["_meta"] = meta;
                }
                if params.as_object().is_some_and(|p| !p.is_empty()) {
                    message["params"] = params;
                }
                message
            },
        )
    }

    proptest! {
        #![proptest_config(Config { cases: 1000, ..Config::default() })]

        /// Never a panic, and never a disagreement with rmcp: what passes, rmcp parses (a known
        /// method as its typed request); what is refused as no request, rmcp cannot parse.
        #[test]
        fn the_check_agrees_with_rmcp(
            message in message(),
            version in prop::option::of(prop::sample::select(&["2025-11-25", "2026-07-28"][..])),
        ) {
            let bytes = message.to_string();
            let rmcp = serde_json::from_slice::<ClientJsonRpcMessage>(bytes.as_bytes());
            let mut headers = HeaderMap::new();
            if let Some(version) = version {
                headers.insert("mcp-protocol-version", axum::http::HeaderValue::from_static(version));
            }
            match check(&message, bytes.as_bytes(), &headers) {
                Ok(()) => {
                    prop_assert!(rmcp.is_ok(), "passed what rmcp cannot parse: {}", bytes);
                    if let Ok(ClientJsonRpcMessage::Request(request)) = rmcp
                        && let ClientRequest::CustomRequest(custom) = request.request
                    {
                        let method = custom.method.as_str();
                        let of_one_era = REMOVED_IN_2026.contains(&method) || ADDED_IN_2026.contains(&method);
                        prop_assert!(!METHODS[..KNOWN].contains(&method) || of_one_era, "let through a misfit: {}", bytes);
                    }
                }
                Err(Invalid::Request { .. }) => {
                    prop_assert!(rmcp.is_err() || message["jsonrpc"] != "2.0", "refused what rmcp parses: {}", bytes);
                }
                Err(Invalid::Params { method, .. }) => {
                    prop_assert!(METHODS[..KNOWN].contains(&method.as_str()), "{} is no known method: {}", method, bytes);
                    let custom = matches!(
                        rmcp,
                        Ok(ClientJsonRpcMessage::Request(ref r)) if matches!(r.request, ClientRequest::CustomRequest(_))
                    );
                    prop_assert!(custom || rmcp.is_err(), "refused params rmcp takes as {}: {}", method, bytes);
                }
            }
        }

        /// The shortcut takes a message only if rmcp parses it as a `tools/call` request, and
        /// every well-formed tool call takes it.
        #[test]
        fn the_tool_call_shortcut_agrees_with_rmcp(message in prop_oneof![message(), valid_request()]) {
            let bytes = message.to_string();
            let rmcp = serde_json::from_slice::<ClientJsonRpcMessage>(bytes.as_bytes());
            let a_tool_call = matches!(
                rmcp,
                Ok(ClientJsonRpcMessage::Request(ref r)) if matches!(r.request, ClientRequest::CallToolRequest(_))
            );
            prop_assert_eq!(well_formed_tool_call(&message, bytes.as_bytes()).is_some(), a_tool_call, "{}", bytes);
            prop_assert_eq!(check(&message, bytes.as_bytes(), &HeaderMap::new()), check_fully(&message, bytes.as_bytes(), &HeaderMap::new()), "{}", bytes);
        }

        /// Well-formed requests of either revision always pass.
        #[test]
        fn valid_requests_always_pass(message in valid_request()) {
            let bytes = message.to_string();
            prop_assert_eq!(check(&message, bytes.as_bytes(), &HeaderMap::new()), Ok(()), "{}", bytes);
        }
    }
}
