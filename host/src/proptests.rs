//! Property tests across modules: the config and manifest parsers never panic, whatever the
//! text; grant globs agree with a plain reference matcher; the relay's Host/Origin scope never
//! admits what rmcp's DNS-rebinding guard would refuse. Each test bounds its cases so the whole
//! set stays within seconds. (The edge's JSON-RPC pre-parse and Host/Origin guard have theirs
//! beside them, in `transport/`.)

use std::path::Path;

use axum::http::{HeaderMap, HeaderValue, header};
use proptest::prelude::*;
use proptest::test_runner::Config;

use crate::auth::glob_matches;
use crate::config::HostConfig;
use crate::plugin::Manifest;
use crate::relay::RelayScope;

/// A TOML value of any type, with the edge cases parsers trip on: zero, negatives, the
/// integer limits, huge floats, NaN and infinity, empty and odd strings, nesting.
fn toml_value() -> impl Strategy<Value = String> {
    let leaf = prop_oneof![
        Just("0".to_owned()),
        Just("-1".to_owned()),
        Just("9223372036854775807".to_owned()),
        Just("-9223372036854775808".to_owned()),
        any::<i64>().prop_map(|n| n.to_string()),
        Just("1e308".to_owned()),
        Just("nan".to_owned()),
        Just("-inf".to_owned()),
        Just("0.5".to_owned()),
        any::<bool>().prop_map(|b| b.to_string()),
        Just("\"\"".to_owned()),
        Just("\"*\"".to_owned()),
        Just("\"..\"".to_owned()),
        Just("\"/\"".to_owned()),
        Just("\"127.0.0.1:0\"".to_owned()),
        Just("\"http://[::1]:*\"".to_owned()),
        "[ -~]{0,12}".prop_map(|s| format!("{:?}", s)),
        any::<String>().prop_map(|s| format!("{:?}", s)),
    ];
    leaf.prop_recursive(2, 8, 4, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..4).prop_map(|items| format!("[{}]", items.join(", "))),
            prop::collection::vec(("[a-z_]{1,8}", inner), 0..3).prop_map(|pairs| {
                let pairs: Vec<String> = pairs.into_iter().map(|(k, v)| format!("{k} = {v}")).collect();
                format!("{{ {} }}", pairs.join(", "))
            }),
        ]
    })
}

/// A TOML document from `sections` (a header, or "" for the top level) and `keys`, so that most
/// cases reach the validation after deserialization rather than stopping at an unknown field.
fn toml_document(sections: &'static [&'static str], keys: &'static [&'static str]) -> impl Strategy<Value = String> {
    let line = (prop::sample::select(keys), toml_value()).prop_map(|(key, value)| format!("{key} = {value}"));
    let section = (prop::sample::select(sections), prop::collection::vec(line, 0..6))
        .prop_map(|(header, lines)| format!("{header}\n{}\n", lines.join("\n")));
    prop::collection::vec(section, 0..5).prop_map(|sections| sections.concat())
}

const MANIFEST_SECTIONS: &[&str] = &["", "[capabilities]", "[[capabilities.files]]"];
const MANIFEST_KEYS: &[&str] = &[
    "namespace",
    "description",
    "env",
    "network",
    "http",
    "memory_mb",
    "timeout_ms",
    "max_response_kb",
    "max_events",
    "max_event_kb",
    "sampling",
    "elicitation",
    "roots",
    "host",
    "guest",
    "mode",
];

const CONFIG_SECTIONS: &[&str] = &[
    "",
    "[http]",
    "[plugins]",
    "[federation]",
    "[[peers]]",
    "[auth]",
    "[[auth.issuers]]",
    "[audit]",
    "[identity]",
    "[consent]",
    "[[consent.rules]]",
    "[limits]",
    "[tls]",
    "[local_user]",
];
const CONFIG_KEYS: &[&str] = &[
    "listen",
    "plugins_dir",
    "allowed_hosts",
    "allowed_origins",
    "max_request_body_bytes",
    "session_idle_secs",
    "request_state_key",
    "request_state_key_file",
    "replica_id",
    "allow_unauthenticated_public",
    "pooling",
    "default_memory_mb",
    "max_memory_mb",
    "default_timeout_ms",
    "max_timeout_ms",
    "default_max_response_kb",
    "file_roots",
    "env_allowed",
    "network_allowed",
    "allow_private_networks",
    "max_events",
    "max_event_kb",
    "max_hops",
    "name",
    "namespace",
    "url",
    "command",
    "include",
    "exclude",
    "connect",
    "timeout_ms",
    "auth",
    "audience",
    "scopes",
    "algorithms",
    "leeway_secs",
    "scope_claim",
    "resource",
    "authorization_servers",
    "issuer",
    "public_key",
    "kid",
    "ceiling",
    "file",
    "key",
    "destructive",
    "tools",
    "policy",
    "per_minute",
    "burst",
    "redis",
    "cert",
    "subject",
];

/// `*` matches any run of characters, anything else itself: the plainest matcher there is.
fn reference_glob(pattern: &[char], text: &[char]) -> bool {
    // matches[j]: pattern so far matches text[..j].
    let mut matches = vec![false; text.len() + 1];
    matches[0] = true;
    for &p in pattern {
        let mut next = vec![false; text.len() + 1];
        for j in 0..=text.len() {
            next[j] = if p == '*' {
                matches[j] || (j > 0 && next[j - 1])
            } else {
                j > 0 && matches[j - 1] && text[j - 1] == p
            };
        }
        matches = next;
    }
    matches[text.len()]
}

fn host_headers(host: Option<&str>, origin: Option<&str>) -> HeaderMap {
    let mut headers = HeaderMap::new();
    for (name, value) in [(header::HOST, host), (header::ORIGIN, origin)] {
        if let Some(value) = value.and_then(|v| HeaderValue::from_str(v).ok()) {
            headers.insert(name, value);
        }
    }
    headers
}

proptest! {
    #![proptest_config(Config { cases: 1000, ..Config::default() })]

    #[test]
    fn manifest_parse_never_panics_on_any_text(text in any::<String>()) {
        let _ = Manifest::parse(&text, Path::new("/plugins"));
    }

    #[test]
    fn manifest_parse_never_panics_on_manifest_like_toml(text in toml_document(MANIFEST_SECTIONS, MANIFEST_KEYS)) {
        let _ = Manifest::parse(&text, Path::new("/plugins"));
    }

    #[test]
    fn config_parse_never_panics_on_any_text(text in any::<String>()) {
        let _ = HostConfig::parse(&text);
    }

    #[test]
    fn config_parse_never_panics_on_config_like_toml(text in toml_document(CONFIG_SECTIONS, CONFIG_KEYS)) {
        let _ = HostConfig::parse(&text);
    }
}

proptest! {
    #![proptest_config(Config { cases: 2000, ..Config::default() })]

    /// A small alphabet, so that patterns and names overlap often.
    #[test]
    fn glob_matches_agrees_with_the_reference(pattern in "[ab_*]{0,8}", text in "[ab_]{0,10}") {
        let (p, t): (Vec<char>, Vec<char>) = (pattern.chars().collect(), text.chars().collect());
        prop_assert_eq!(glob_matches(&pattern, &text), reference_glob(&p, &t), "{:?} against {:?}", pattern, text);
    }

    #[test]
    fn glob_matches_agrees_with_the_reference_on_any_text(pattern in "(\\PC|\\*){0,8}", text in "\\PC{0,10}") {
        let (p, t): (Vec<char>, Vec<char>) = (pattern.chars().collect(), text.chars().collect());
        prop_assert_eq!(glob_matches(&pattern, &text), reference_glob(&p, &t), "{:?} against {:?}", pattern, text);
    }

    /// The relay takes a request only from where rmcp would: never a browser's (any Origin),
    /// and only with a Host on the list, port and all.
    #[test]
    fn the_relay_scope_admits_only_listed_hosts_without_an_origin(
        host in prop_oneof![
            Just("localhost".to_owned()),
            Just("127.0.0.1:8080".to_owned()),
            Just("[::1]:1".to_owned()),
            Just("mcp.example.com:8443".to_owned()),
            Just("mcp.example.com:8444".to_owned()),
            Just("MCP.Example.COM:8443".to_owned()),
            "[a-z0-9.:\\[\\]]{0,20}",
            any::<String>(),
        ],
        origin in prop::option::of(prop_oneof![Just("http://localhost:3000".to_owned()), any::<String>()]),
    ) {
        let listed = ["localhost", "127.0.0.1", "::1", "[::1]", "mcp.example.com:8443"].map(String::from);
        let scope = RelayScope::new(&listed);
        let headers = host_headers(Some(&host), origin.as_deref());
        let admitted = scope.admits(&headers);
        if headers.contains_key(header::ORIGIN) {
            prop_assert!(!admitted, "admitted a request with an Origin: {:?}", headers);
        }
        if admitted {
            let authority = host.parse::<axum::http::uri::Authority>();
            prop_assert!(authority.is_ok(), "admitted a Host that is no authority: {:?}", host);
            let listed = authority.is_ok_and(|a| {
                let name = a.host().trim_matches(['[', ']']).to_ascii_lowercase();
                ["localhost", "127.0.0.1", "::1"].contains(&name.as_str())
                    || (name == "mcp.example.com" && a.port_u16() == Some(8443))
            });
            prop_assert!(listed, "admitted a Host not on the list: {:?}", host);
        }
        prop_assert!(!scope.admits(&host_headers(None, None)), "admitted a request without a Host");
    }
}

#[test]
fn the_reference_glob_is_itself_right() {
    let glob = |p: &str, t: &str| reference_glob(&p.chars().collect::<Vec<_>>(), &t.chars().collect::<Vec<_>>());
    assert!(glob("a*c", "abc") && glob("a*", "a") && glob("*", "") && glob("**", "x"));
    assert!(!glob("a", "ab") && !glob("a*b*c", "acb") && !glob("", "x"));
}

proptest! {
    #![proptest_config(Config { cases: 512, ..Config::default() })]

    /// A URI the resource-URI rule admits has no segment that a server could take for `.` or
    /// `..`, decoded or not; and any URI with such a segment spliced in is refused.
    #[test]
    fn admitted_resource_uris_have_no_dot_segments(
        uri in prop_oneof![any::<String>(), "[a-z]{1,5}://[a-z./%2eEfFcC5\\\\]{0,24}"],
        splice in prop::sample::select(vec!["..", ".", "%2e%2e", "%2E.", ".%2e", "%2e", "a%2Fb", "a%5cb"]),
    ) {
        let admitted = crate::auth::check_resource_uri(&uri).is_ok();
        if admitted {
            for segment in uri.split(['/', '\\']) {
                let decoded = segment.to_ascii_lowercase().replace("%2e", ".");
                prop_assert!(decoded != "." && decoded != "..", "admitted {:?}", uri);
                prop_assert!(!segment.to_ascii_lowercase().contains("%2f"), "admitted {:?}", uri);
            }
        }
        let spliced = format!("docs://a/{splice}/b");
        prop_assert!(crate::auth::check_resource_uri(&spliced).is_err(), "admitted {:?}", spliced);
    }
}
