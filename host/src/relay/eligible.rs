//! Which requests the relay takes: only those it can judge exactly as the normal path would
//! (a listed `Host` and no `Origin`, the media types rmcp requires, a plain `tools/call` with the
//! SEP-2243 headers of its revision, outside any session), read into a [`Call`].

use axum::http::request::Parts;
use axum::http::{HeaderMap, header};
use serde_json::{Map, Value, json};

use super::*;

/// Which `Host` headers the listener serves (the same list rmcp checks on the normal path).
pub(crate) struct RelayScope {
    /// Each allowed host name, and its port if the entry names one (parsed once: every POST
    /// is checked).
    hosts: Vec<(String, Option<u16>)>,
}

impl RelayScope {
    pub(crate) fn new(hosts: &[String]) -> Self {
        let hosts = hosts
            .iter()
            .filter_map(|allowed| allowed.parse::<axum::http::uri::Authority>().ok())
            .map(|allowed| (allowed.host().to_owned(), allowed.port_u16()))
            .collect();
        Self { hosts }
    }

    /// Whether a request passes the DNS-rebinding guard as rmcp would judge it, without being
    /// a browser's (those take the normal path, where rmcp checks their `Origin`).
    pub(crate) fn admits(&self, headers: &HeaderMap) -> bool {
        !headers.contains_key(header::ORIGIN) && self.host_allowed(headers)
    }

    fn host_allowed(&self, headers: &HeaderMap) -> bool {
        let Some(host) = headers.get(header::HOST).and_then(|h| h.to_str().ok()) else { return false };
        let Ok(authority) = host.parse::<axum::http::uri::Authority>() else { return false };
        self.hosts.iter().any(|(name, port)| {
            name.eq_ignore_ascii_case(authority.host()) && port.is_none_or(|port| authority.port_u16() == Some(port))
        })
    }
}

/// A request the relay may take, as read from it.
pub(super) struct Call<'a> {
    pub(super) headers: &'a HeaderMap,
    pub(super) id: &'a Value,
    pub(super) name: &'a str,
    /// The tool's arguments (`{}` when the request has none), to bind a sealed state to.
    pub(super) arguments: &'a Value,
    /// The caller's progress token, the only one whose progress reaches it.
    pub(super) progress_token: Option<&'a Value>,
    /// The caller's client capabilities, from its `_meta`.
    pub(super) capabilities: &'a Map<String, Value>,
    /// The request's whole `_meta`.
    pub(super) meta: &'a Map<String, Value>,
}

/// The one value of a header, if it has exactly one.
pub(super) fn single<'a>(headers: &'a HeaderMap, name: &str) -> Option<&'a str> {
    let mut values = headers.get_all(name).iter();
    let value = values.next()?.to_str().ok()?;
    values.next().is_none().then_some(value)
}

/// The media types of a header, without parameters.
pub(super) fn media_types(headers: &HeaderMap, name: header::HeaderName) -> impl Iterator<Item = &str> {
    headers
        .get_all(name)
        .into_iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .map(|v| v.split(';').next().unwrap_or_default().trim())
}

/// The media types `Accept` takes, as rmcp reads them: a range weighted `q=0` is refused (a
/// malformed weight is ignored). `None` for a header with quoted parameters, whose commas and
/// semicolons only rmcp's parser reads exactly: such a request takes the normal path.
fn accepted_media_types(headers: &HeaderMap) -> Option<Vec<&str>> {
    let values = headers.get_all(header::ACCEPT).into_iter().filter_map(|v| v.to_str().ok()).collect::<Vec<_>>();
    if values.iter().any(|value| value.contains('"')) {
        return None;
    }
    let weighted_zero = |parameter: &str| {
        parameter.split_once('=').is_some_and(|(name, value)| {
            let (whole, fraction) = value.trim().split_once('.').unwrap_or((value.trim(), ""));
            name.trim().eq_ignore_ascii_case("q")
                && fraction.len() <= 3
                && fraction.bytes().all(|digit| digit == b'0')
                && whole == "0"
        })
    };
    let ranges = values.into_iter().flat_map(|value| value.split(','));
    let taken = ranges.filter_map(|range| {
        let mut parts = range.split(';');
        let essence = parts.next()?.trim();
        (!parts.any(weighted_zero)).then_some(essence)
    });
    Some(taken.collect())
}

/// Whether a header's value goes to the peer as it is (rmcp Base64-encodes other values).
pub(super) fn plain_header_value(value: &str) -> bool {
    !value.is_empty() && value.bytes().all(|b| b.is_ascii_graphic()) && !value.starts_with("=?")
}

/// Whether the request is one the relay judges as the normal path would, and what it says.
pub(super) fn eligible<'a>(scope: &RelayScope, parts: &'a Parts, message: &'a Value) -> Option<Call<'a>> {
    let headers = &parts.headers;
    // A legacy session's calls are rmcp's: it keeps the session.
    if !scope.admits(headers) || headers.contains_key("mcp-session-id") {
        return None;
    }
    let content_type = media_types(headers, header::CONTENT_TYPE).collect::<Vec<_>>();
    if content_type.len() != 1 || !content_type[0].eq_ignore_ascii_case("application/json") {
        return None;
    }
    let accepted = accepted_media_types(headers)?;
    let accepts = |wanted: &str| accepted.iter().any(|m| m.eq_ignore_ascii_case(wanted));
    if !accepts("application/json") || !accepts("text/event-stream") {
        return None;
    }
    let message = message.as_object()?;
    if message.len() != 4 || message.get("jsonrpc")? != "2.0" || message.get("method")? != "tools/call" {
        return None;
    }
    let id = message.get("id").filter(|id| id.is_string() || id.is_u64() || id.is_i64())?;
    let params = message.get("params")?.as_object()?;
    if params.keys().any(|key| !matches!(key.as_str(), "name" | "arguments" | "_meta")) {
        return None;
    }
    let name = params.get("name")?.as_str()?;
    if params.get("arguments").is_some_and(|a| !a.is_object()) {
        return None;
    }
    if single(headers, "mcp-protocol-version")? != PROTOCOL
        || single(headers, "mcp-method")? != "tools/call"
        || single(headers, "mcp-name")? != name
    {
        return None;
    }
    let meta = params.get("_meta")?.as_object()?;
    if meta.get(META_PROTOCOL)? != PROTOCOL {
        return None;
    }
    let capabilities = meta.get(META_CAPABILITIES)?.as_object()?;
    // A caller that declares the tasks extension takes the normal path, where a task the peer
    // creates is passed on under an id of this host's (`session::tasks::serve_peer_task`).
    if capabilities.get("extensions").and_then(|e| e.get(rmcp::model::TASKS_EXTENSION_ID)).is_some() {
        return None;
    }
    // Borrowed: most calls are a plugin's, which the relay leaves alone after this.
    static NO_ARGUMENTS: std::sync::LazyLock<Value> = std::sync::LazyLock::new(|| json!({}));
    let arguments = params.get("arguments").unwrap_or(&NO_ARGUMENTS);
    let progress_token = meta.get("progressToken");
    Some(Call { headers, id, name, arguments, progress_token, capabilities, meta })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn request(headers: &[(&str, &str)]) -> Parts {
        let mut builder = axum::http::Request::post("/mcp");
        for (name, value) in headers {
            builder = builder.header(*name, *value);
        }
        builder.body(()).expect("a request").into_parts().0
    }

    const GOOD: [(&str, &str); 6] = [
        ("host", "127.0.0.1:8931"),
        ("content-type", "application/json"),
        ("accept", "application/json, text/event-stream"),
        ("mcp-protocol-version", "2026-07-28"),
        ("mcp-method", "tools/call"),
        ("mcp-name", "b__slugify"),
    ];

    fn message() -> Value {
        json!({ "jsonrpc": "2.0", "id": 3, "method": "tools/call", "params": {
            "name": "b__slugify", "arguments": { "text": "x" },
            "_meta": { META_PROTOCOL: PROTOCOL, META_CAPABILITIES: {} } } })
    }

    fn scope() -> RelayScope {
        RelayScope::new(&["localhost".to_owned(), "127.0.0.1".to_owned(), "[::1]".to_owned()])
    }

    fn with(change: (&'static str, &'static str)) -> Vec<(&'static str, &'static str)> {
        let mut headers: Vec<_> = GOOD.iter().copied().filter(|(name, _)| *name != change.0).collect();
        headers.push(change);
        headers
    }

    #[test]
    fn a_plain_stateless_tool_call_is_taken() {
        let parts = request(&GOOD);
        let message = message();
        let call = eligible(&scope(), &parts, &message).expect("eligible");
        assert_eq!((call.name, call.id), ("b__slugify", &json!(3)));
        // Weights rmcp accepts: above zero, or malformed (ignored).
        for accept in ["application/json;q=0.5, text/event-stream;q=1", "application/json, text/event-stream;q=0.0001"]
        {
            let parts = request(&with(("accept", accept)));
            assert!(eligible(&scope(), &parts, &message).is_some(), "{accept}");
        }
    }

    /// A legacy session's call, however plain, is rmcp's: the relay keeps no account of sessions.
    #[test]
    fn a_call_of_a_legacy_session_is_left_to_rmcp() {
        let legacy = [
            ("host", "127.0.0.1:8931"),
            ("content-type", "application/json"),
            ("accept", "application/json, text/event-stream"),
            ("mcp-protocol-version", "2025-11-25"),
            ("mcp-session-id", "s1"),
            ("mcp-method", "tools/call"),
            ("mcp-name", "b__slugify"),
        ];
        let message = json!({ "jsonrpc": "2.0", "id": 4, "method": "tools/call", "params": {
            "name": "b__slugify", "arguments": { "text": "x" }, "_meta": { "progressToken": 9 } } });
        assert!(eligible(&scope(), &request(&legacy), &message).is_none());
        assert!(eligible(&scope(), &request(&with(("mcp-session-id", "s1"))), &self::message()).is_none());
    }

    #[test]
    fn anything_the_normal_path_must_judge_is_left_to_it() {
        let message = message();
        let refused_headers = [
            with(("host", "evil.example")),
            with(("host", "127.0.0.1.evil.example:80")),
            with(("origin", "http://localhost:3000")),
            with(("mcp-session-id", "abc")),
            with(("mcp-session-id", "s1")),
            with(("content-type", "text/plain")),
            with(("accept", "application/json")),
            with(("accept", "application/json, text/event-stream;q=0")),
            with(("accept", "application/json, text/event-stream;q=0.000")),
            with(("accept", "application/json, text/event-stream;foo=\"a,b\"")),
            with(("mcp-protocol-version", "2025-11-25")),
            with(("mcp-method", "tools/list")),
            with(("mcp-name", "b__other")),
            GOOD.iter().copied().filter(|(name, _)| *name != "mcp-name").collect(),
        ];
        for headers in refused_headers {
            assert!(eligible(&scope(), &request(&headers), &message).is_none(), "{headers:?}");
        }
        let parts = request(&GOOD);
        let mut retry = message.clone();
        retry["params"]["requestState"] = json!("s");
        let mut task = message.clone();
        task["params"]["task"] = json!({});
        let mut legacy_meta = message.clone();
        legacy_meta["params"]["_meta"][META_PROTOCOL] = json!("2025-11-25");
        let mut no_capabilities = message.clone();
        no_capabilities["params"]["_meta"].as_object_mut().map(|m| m.remove(META_CAPABILITIES));
        let mut notification = message.clone();
        notification.as_object_mut().map(|m| m.remove("id"));
        let mut bad_arguments = message.clone();
        bad_arguments["params"]["arguments"] = json!([1]);
        let mut declares_tasks = message.clone();
        declares_tasks["params"]["_meta"][META_CAPABILITIES] =
            json!({ "extensions": { rmcp::model::TASKS_EXTENSION_ID: {} } });
        for refused in [retry, task, legacy_meta, no_capabilities, notification, bad_arguments, declares_tasks] {
            assert!(eligible(&scope(), &parts, &refused).is_none(), "{refused}");
        }
    }
}
