//! Authentication and authorization end to end: the real binary with `[auth]`, attacked with
//! bad tokens; scopes that filter lists and refuse calls; two hosts where A presents tokens it
//! mints to B; the audit log read back.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use base64::Engine;
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use reqwest::StatusCode;
use serde_json::{Value, json};

use crate::support::{self, Server, StatelessClient};

const AUDIENCE: &str = "fedmcp-test";
const ISSUER: &str = "https://idp.test";

fn fedmcp(args: &[&str]) -> String {
    let output = Command::new(env!("CARGO_BIN_EXE_fedmcp")).args(args).output().expect("fedmcp runs");
    assert!(output.status.success(), "fedmcp {args:?}: {}", String::from_utf8_lossy(&output.stderr));
    String::from_utf8_lossy(&output.stdout).trim().to_owned()
}

fn generate_keys(dir: &Path, name: &str) -> (PathBuf, PathBuf) {
    fedmcp(&["keys", "generate", "--name", name, "--dir", dir.to_str().expect("UTF-8 path")]);
    (dir.join(format!("{name}.pem")), dir.join(format!("{name}.pub.pem")))
}

pub(crate) fn now() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_secs()).unwrap_or_default()
}

fn claims(overrides: Value) -> Value {
    let mut claims = json!({
        "iss": ISSUER, "aud": AUDIENCE, "sub": "alice", "iat": now(), "exp": now() + 600, "scope": "*",
    });
    for (key, value) in overrides.as_object().cloned().unwrap_or_default() {
        claims[key] = value;
    }
    claims
}

fn sign(algorithm: Algorithm, kid: &str, key: &EncodingKey, claims: &Value) -> String {
    let mut header = Header::new(algorithm);
    header.kid = Some(kid.to_owned());
    jsonwebtoken::encode(&header, claims, key).expect("the test signs a token")
}

fn b64(value: &[u8]) -> String {
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(value)
}

/// An `[auth]` host serving the example plugins, its identity provider's key, and its audit log.
pub(crate) struct Protected {
    dir: tempfile::TempDir,
    idp: EncodingKey,
    pub(crate) server: Server,
}

impl Protected {
    fn start(extra: &str) -> Self {
        Self::start_serving(extra, &support::example_plugins())
    }

    pub(crate) fn start_serving(extra: &str, plugins: &Path) -> Self {
        let dir = tempfile::tempdir().expect("temp dir");
        let (private, _) = generate_keys(dir.path(), "idp");
        let rsa = support::repo_root().join("tests/auth/test-only-rsa.pub.pem");
        let config = format!(
            r#"
[auth]
audience = "{AUDIENCE}"
algorithms = ["EdDSA", "RS256", "HS256"]
authorization_servers = ["{ISSUER}"]

[[auth.issuers]]
issuer = "{ISSUER}"
public_key = "idp.pub.pem"
kid = "idp"

[[auth.issuers]]
issuer = "{ISSUER}"
public_key = {rsa:?}
kid = "rsa"

[audit]
file = "audit.jsonl"
{extra}"#
        );
        std::fs::write(dir.path().join("host.toml"), config).expect("config written");
        let server = Server::start_configured(plugins, &dir.path().join("host.toml"), "127.0.0.1:0");
        let idp = EncodingKey::from_ed_pem(&std::fs::read(private).expect("key")).expect("an Ed25519 key");
        Self { dir, idp, server }
    }

    pub(crate) fn token(&self, overrides: Value) -> String {
        sign(Algorithm::EdDSA, "idp", &self.idp, &claims(overrides))
    }

    fn audit(&self) -> Vec<Value> {
        let text = std::fs::read_to_string(self.dir.path().join("audit.jsonl")).unwrap_or_default();
        text.lines().map(|line| serde_json::from_str(line).expect("each audit line is JSON")).collect()
    }
}

#[tokio::test]
async fn every_attack_on_the_token_gets_401_and_nothing_is_served() {
    let host = Protected::start("");
    let rogue_dir = tempfile::tempdir().expect("temp dir");
    let (rogue_private, _) = generate_keys(rogue_dir.path(), "rogue");
    let rogue = EncodingKey::from_ed_pem(&std::fs::read(rogue_private).expect("key")).expect("key");
    let rsa_public = std::fs::read(support::repo_root().join("tests/auth/test-only-rsa.pub.pem")).expect("key");
    let payload = b64(claims(json!({})).to_string().as_bytes());
    let attacks: Vec<(&str, Option<String>)> = vec![
        ("no token", None),
        ("expired", Some(host.token(json!({ "exp": now() - 3600, "iat": now() - 7200 })))),
        ("not yet valid", Some(host.token(json!({ "nbf": now() + 3600 })))),
        ("wrong audience", Some(host.token(json!({ "aud": "another-host" })))),
        ("wrong issuer", Some(host.token(json!({ "iss": "https://evil.test" })))),
        ("bad signature", Some(sign(Algorithm::EdDSA, "idp", &rogue, &claims(json!({}))))),
        ("alg none", Some(format!("{}.{payload}.", b64(br#"{"alg":"none","typ":"JWT"}"#)))),
        (
            "HS256 signed with the RS256 public key",
            Some(sign(Algorithm::HS256, "rsa", &EncodingKey::from_secret(&rsa_public), &claims(json!({})))),
        ),
        ("unknown kid", Some(sign(Algorithm::EdDSA, "someone-else", &host.idp, &claims(json!({}))))),
        ("malformed header", Some(format!("{}.{payload}.c2ln", b64(b"{not json")))),
        ("garbage", Some("not-a-jwt".to_owned())),
    ];
    let client = StatelessClient::new(&host.server);
    for (attack, token) in &attacks {
        let mut request = client.post().header("mcp-protocol-version", "2026-07-28");
        if let Some(token) = token {
            request = request.bearer_auth(token);
        }
        let body = json!({ "jsonrpc": "2.0", "id": 1, "method": "tools/call", "params": {
            "name": "text-tools__slugify", "arguments": { "text": "Secret Plans" },
            "_meta": { "io.modelcontextprotocol/protocolVersion": "2026-07-28" } } });
        let response = request.body(body.to_string()).send().await.expect("the server answers");
        assert_eq!(response.status(), StatusCode::UNAUTHORIZED, "{attack}");
        let challenge = response.headers().get("www-authenticate").and_then(|h| h.to_str().ok()).unwrap_or_default();
        assert!(
            challenge.starts_with("Bearer ") && challenge.contains("resource_metadata=\""),
            "{attack}: {challenge}"
        );
        let text = response.text().await.unwrap_or_default();
        assert!(!text.contains("secret-plans"), "{attack} was served: {text}");
    }

    // A valid token in the query string instead of the header.
    let valid = host.token(json!({}));
    let url = format!("{}?access_token={valid}", host.server.url());
    let body = json!({ "jsonrpc": "2.0", "id": 1, "method": "tools/list", "params": {
        "_meta": { "io.modelcontextprotocol/protocolVersion": "2026-07-28" } } });
    let response = client
        .http
        .post(&url)
        .header("content-type", "application/json")
        .header("accept", "application/json, text/event-stream")
        .header("mcp-protocol-version", "2026-07-28")
        .body(body.to_string())
        .send()
        .await
        .expect("the server answers");
    assert_eq!(response.status(), StatusCode::UNAUTHORIZED, "token in the query string");

    let audit = host.audit();
    assert_eq!(audit.len(), attacks.len() + 1, "one audit line per refused request: {audit:?}");
    assert!(audit.iter().all(|line| line["decision"] == "denied" && line["identity"].is_null()), "{audit:?}");

    // The same request with the valid token in the header is served: the refusals above were
    // about the tokens.
    let (status, reply) = StatelessClient::with_token(&host.server, &valid)
        .request("tools/call", json!({ "name": "text-tools__slugify", "arguments": { "text": "Secret Plans" } }))
        .await;
    assert_eq!(status, StatusCode::OK, "{reply}");
    assert_eq!(reply["result"]["content"][0]["text"], "secret-plans", "{reply}");

    // /health answers probes without a token, with counts only; names need a valid token.
    let health_url = format!("http://{}/health", host.server.address);
    let anonymous = reqwest::get(&health_url).await.expect("health answers").text().await.unwrap_or_default();
    assert!(anonymous.contains("\"ready\":true") && !anonymous.contains("text-tools"), "{anonymous}");
    let named = client.http.get(&health_url).bearer_auth(&valid).send().await.expect("health answers");
    assert!(named.text().await.unwrap_or_default().contains("text-tools"));

    // RFC 9728 metadata tells a client where to get a token.
    let metadata: Value =
        reqwest::get(format!("http://{}/.well-known/oauth-protected-resource/mcp", host.server.address))
            .await
            .expect("metadata answers")
            .json()
            .await
            .expect("metadata is JSON");
    assert_eq!(metadata["authorization_servers"], json!([ISSUER]), "{metadata}");
    assert_eq!(metadata["resource"], format!("http://{}/mcp", host.server.address), "{metadata}");
}

#[tokio::test]
async fn scopes_decide_what_is_listed_and_what_may_be_called_and_the_audit_log_says_so() {
    let host = Protected::start("");
    let narrow = host.token(json!({ "sub": "bob", "scope": "openid tools:text-tools__slug* prompts:none" }));
    let client = StatelessClient::with_token(&host.server, &narrow);
    let (status, reply) = client.request("tools/list", json!({})).await;
    assert_eq!(status, StatusCode::OK, "{reply}");
    let names: Vec<&str> =
        reply["result"]["tools"].as_array().into_iter().flatten().filter_map(|t| t["name"].as_str()).collect();
    assert_eq!(names, ["text-tools__slugify"], "only the granted tool is listed");
    let (_, prompts) = client.request("prompts/list", json!({})).await;
    assert_eq!(prompts["result"]["prompts"], json!([]), "{prompts}");

    assert_eq!(
        client.call("text-tools__slugify", json!({ "text": "Hello World" })).await.expect("granted")["content"][0]["text"],
        "hello-world"
    );
    let (status, reply) = client
        .request(
            "tools/call",
            json!({ "name": "text-tools__change_case", "arguments": { "text": "hello", "to": "upper" } }),
        )
        .await;
    assert_eq!(status, StatusCode::FORBIDDEN, "{reply}");
    assert!(reply["error"]["message"].as_str().is_some_and(|m| m.contains("tools:text-tools__change_case")), "{reply}");

    let wide = host.token(json!({ "sub": "carol", "scope": "tools:text-tools__*" }));
    let reply = StatelessClient::with_token(&host.server, &wide)
        .call("text-tools__change_case", json!({ "text": "hello there", "to": "title" }))
        .await
        .expect("granted with the wider scope");
    assert_eq!(reply["content"][0]["text"], "Hello There");

    let audit = host.audit();
    let find = |sub: &str, decision: &str| {
        audit.iter().find(|l| l["identity"]["sub"] == sub && l["decision"] == decision && l["method"] == "tools/call")
    };
    let allowed = find("bob", "allowed").unwrap_or_else(|| panic!("bob's allowed call is audited: {audit:?}"));
    assert_eq!(allowed["entry"], "text-tools__slugify");
    assert_eq!(allowed["outcome"], "ok");
    assert_eq!(allowed["identity"]["iss"], ISSUER);
    assert!(allowed["duration_ms"].as_f64().is_some(), "{allowed}");
    let denied = find("bob", "denied").unwrap_or_else(|| panic!("bob's refused call is audited: {audit:?}"));
    assert_eq!(denied["entry"], "text-tools__change_case");
    assert!(find("carol", "allowed").is_some(), "{audit:?}");
}

#[tokio::test]
async fn a_public_address_without_auth_is_refused_unless_overridden() {
    let output = Command::new(env!("CARGO_BIN_EXE_fedmcp"))
        .args(["serve", "--listen", "0.0.0.0:0", "--plugins"])
        .arg(support::repo_root().join("tests/plugins/empty"))
        .output()
        .expect("fedmcp runs");
    assert!(!output.status.success());
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("without authentication") && stderr.contains("allow_unauthenticated_public"), "{stderr}");
}

/// Client → A → B: A verifies the client and enforces its grant; B verifies A's minted token
/// (which names the client) and enforces its own grant to A.
#[tokio::test]
async fn through_federation_each_host_enforces_its_own_grant() {
    let dir = tempfile::tempdir().expect("temp dir");
    let (idp_private, _) = generate_keys(dir.path(), "idp");
    let (a_private, _) = generate_keys(dir.path(), "host-a");
    let b_config = r#"
[auth]
audience = "host-b"
[[auth.issuers]]
issuer = "host-a"
public_key = "host-a.pub.pem"
kid = "host-a"
ceiling = ["tools:text-tools__slugify"]
[audit]
file = "b-audit.jsonl"
"#;
    std::fs::write(dir.path().join("b.toml"), b_config).expect("config");
    let b = Server::start_configured(&support::example_plugins(), &dir.path().join("b.toml"), "127.0.0.1:0");
    let a_config = format!(
        r#"
[identity]
name = "host-a"
key = "host-a.pem"
[auth]
audience = "host-a"
[[auth.issuers]]
issuer = "{ISSUER}"
public_key = "idp.pub.pem"
kid = "idp"
[audit]
file = "a-audit.jsonl"
[[peers]]
name = "b"
url = "{}"
auth = "identity"
audience = "host-b"
"#,
        b.url()
    );
    std::fs::write(dir.path().join("a.toml"), a_config).expect("config");
    let empty = support::repo_root().join("tests/plugins/empty");
    let mut a = Server::start_configured(&empty, &dir.path().join("a.toml"), "127.0.0.1:0");
    let idp = EncodingKey::from_ed_pem(&std::fs::read(idp_private).expect("key")).expect("key");
    let token = |sub: &str, scope: &str| {
        sign(Algorithm::EdDSA, "idp", &idp, &claims(json!({ "sub": sub, "aud": "host-a", "scope": scope })))
    };
    a.health_token = Some(token("operator", ""));
    a.wait_for_peer("b").await;
    let alice = StatelessClient::with_token(&a, &token("alice", "tools:b__*"));
    let (_, reply) = alice.request("tools/list", json!({})).await;
    let names: Vec<&str> =
        reply["result"]["tools"].as_array().into_iter().flatten().filter_map(|t| t["name"].as_str()).collect();
    assert_eq!(names, ["b__text-tools__slugify"], "A imports only what B grants A: {reply}");
    let result = alice.call("b__text-tools__slugify", json!({ "text": "Across Hosts" })).await.expect("allowed");
    assert_eq!(result["content"][0]["text"], "across-hosts");

    // A refuses a caller whose grant lacks the peer's tools.
    let dave = StatelessClient::with_token(&a, &token("dave", "tools:local__*"));
    let (status, _) =
        dave.request("tools/call", json!({ "name": "b__text-tools__slugify", "arguments": { "text": "x" } })).await;
    assert_eq!(status, StatusCode::FORBIDDEN);

    // B holds its grant to A even for a token of A's that asks for everything.
    let key = a_private.to_str().expect("UTF-8");
    let issue_as_a = |audience: &str| {
        fedmcp(&[
            "token", "issue", "--key", key, "--name", "host-a", "--sub", "host-a", "--aud", audience, "--scope", "*",
        ])
    };
    let a_token = issue_as_a("host-b");
    let as_a = StatelessClient::with_token(&b, &a_token);
    let (status, _) = as_a
        .request(
            "tools/call",
            json!({ "name": "text-tools__change_case", "arguments": { "text": "x", "to": "upper" } }),
        )
        .await;
    assert_eq!(status, StatusCode::FORBIDDEN, "B's ceiling for host-a holds");
    // And a token of A's for another audience is refused outright.
    let elsewhere = issue_as_a("host-c");
    let (status, _) = StatelessClient::with_token(&b, &elsewhere).request("tools/list", json!({})).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);

    // B's audit names the client A acted for.
    let b_audit = std::fs::read_to_string(dir.path().join("b-audit.jsonl")).unwrap_or_default();
    let forwarded = b_audit
        .lines()
        .filter_map(|line| serde_json::from_str::<Value>(line).ok())
        .find(|line| line["decision"] == "allowed" && line["entry"] == "text-tools__slugify")
        .unwrap_or_else(|| panic!("B audited the forwarded call: {b_audit}"));
    assert_eq!(forwarded["identity"]["sub"], "alice", "{forwarded}");
    assert_eq!(forwarded["identity"]["act"], "host-a", "{forwarded}");
    // B sees alice under her own issuer, with host-a as the party acting for her.
    assert_eq!(forwarded["identity"]["iss"], ISSUER, "{forwarded}");
}

#[tokio::test]
async fn consent_asks_the_caller_and_rate_limits_hold_per_identity() {
    let host = Protected::start(
        r#"
[[consent.rules]]
tools = "text-tools__change_case"
policy = "ask"
[[consent.rules]]
tools = "text-tools__format_json"
policy = "deny"
[limits]
per_minute = 60
burst = 4
"#,
    );
    let erin = StatelessClient::with_token(&host.server, &host.token(json!({ "sub": "erin" })));
    let change = json!({ "name": "text-tools__change_case", "arguments": { "text": "be careful", "to": "upper" } });

    // 2026-07-28: the question comes back as input required; the retry carries the answer.
    let (_, first) = erin.request("tools/call", change.clone()).await;
    let question = &first["result"]["inputRequests"]["fedmcp.consent"];
    assert_eq!(question["method"], "elicitation/create", "{first}");
    assert!(question["params"]["message"].as_str().is_some_and(|m| m.contains("text-tools__change_case")), "{first}");
    let state = first["result"]["requestState"].as_str().expect("a sealed state").to_owned();
    let mut accepted = change.clone();
    accepted["inputResponses"] = json!({ "fedmcp.consent": { "action": "accept" } });
    accepted["requestState"] = json!(state);
    let (_, done) = erin.request("tools/call", accepted).await;
    assert_eq!(done["result"]["content"][0]["text"], "BE CAREFUL", "{done}");
    let mut declined = change.clone();
    declined["inputResponses"] = json!({ "fedmcp.consent": { "action": "decline" } });
    declined["requestState"] = json!(state);
    let (_, refused) = erin.request("tools/call", declined).await;
    assert!(refused["error"]["message"].as_str().is_some_and(|m| m.contains("did not allow")), "{refused}");
    // An answer without the question's sealed state is no consent.
    let mut forged = change.clone();
    forged["inputResponses"] = json!({ "fedmcp.consent": { "action": "accept" } });
    let (_, forged) = erin.request("tools/call", forged).await;
    assert!(forged["result"]["inputRequests"]["fedmcp.consent"].is_object(), "asked again: {forged}");

    // A client that cannot be asked gets a clear refusal; a denied tool never runs.
    let mut mute = StatelessClient::with_token(&host.server, &host.token(json!({ "sub": "frank" })));
    mute.capabilities = json!({});
    let refusal = mute.call("text-tools__change_case", json!({ "text": "x", "to": "upper" })).await.unwrap_err();
    assert!(refusal.contains("elicitation"), "{refusal}");
    let judy = StatelessClient::with_token(&host.server, &host.token(json!({ "sub": "judy" })));
    let denied = judy.call("text-tools__format_json", json!({ "json": "{}" })).await.unwrap_err();
    assert!(denied.contains("consent policy denies"), "{denied}");

    // Rate limit: a bucket of 4 per identity (erin has spent hers above).
    let grace = StatelessClient::with_token(&host.server, &host.token(json!({ "sub": "grace" })));
    for _ in 0..4 {
        grace.call("text-tools__slugify", json!({ "text": "a b" })).await.expect("within the burst");
    }
    let limited = grace.call("text-tools__slugify", json!({ "text": "a b" })).await.unwrap_err();
    assert!(limited.contains("rate limit exceeded") && limited.contains("grace"), "{limited}");
    let heidi = StatelessClient::with_token(&host.server, &host.token(json!({ "sub": "heidi" })));
    heidi.call("text-tools__slugify", json!({ "text": "a b" })).await.expect("another identity has its own bucket");

    let audit = host.audit();
    let asked: Vec<&Value> = audit.iter().filter(|l| l["decision"] == "asked").collect();
    assert!(
        asked.iter().any(|l| l["accepted"] == true && l["identity"]["sub"] == "erin" && l["outcome"] == "ok"),
        "{audit:?}"
    );
    assert!(asked.iter().any(|l| l["accepted"] == false), "{audit:?}");
    assert!(
        audit.iter().any(|l| l["decision"] == "denied"
            && l["identity"]["sub"] == "grace"
            && l["reason"].as_str().is_some_and(|r| r.contains("rate limit"))),
        "{audit:?}"
    );
}

fn tls_file(name: &str) -> String {
    support::repo_root().join("tests/auth/tls").join(name).display().to_string()
}

/// Wait until A reports peer `name` down, and give its reason.
async fn peer_down_reason(host: &Server, name: &str) -> String {
    let mut reason = String::new();
    support::eventually(&format!("peer {name} is reported down"), std::time::Duration::from_secs(30), async || {
        let health = host.health().await;
        let down = health["peers"]["down"].as_array().cloned().unwrap_or_default();
        match down.iter().find(|p| p["name"] == name && p["reason"].is_string()) {
            Some(peer) => {
                reason = peer["reason"].as_str().unwrap_or_default().to_owned();
                true
            }
            None => false,
        }
    })
    .await;
    reason
}

/// Two hosts over mutual TLS with JWT between them; an untrusted certificate, a missing client
/// certificate and a token for another audience are each refused.
#[tokio::test]
async fn hosts_federate_over_mutual_tls_with_jwt_and_refuse_what_they_should() {
    let dir = tempfile::tempdir().expect("temp dir");
    generate_keys(dir.path(), "host-a");
    let b_config = format!(
        r#"
[tls]
cert = "{}"
key = "{}"
client_ca = "{}"
[auth]
audience = "host-b"
[[auth.issuers]]
issuer = "host-a"
public_key = "host-a.pub.pem"
kid = "host-a"
"#,
        tls_file("server.pem"),
        tls_file("server.key.pem"),
        tls_file("trusted-ca.pem")
    );
    std::fs::write(dir.path().join("b.toml"), b_config).expect("config");
    let b = Server::start_configured(&support::example_plugins(), &dir.path().join("b.toml"), "127.0.0.1:0");
    assert_eq!(b.scheme, "https");

    let rogue_config =
        format!("[tls]\ncert = \"{}\"\nkey = \"{}\"\n", tls_file("rogue-server.pem"), tls_file("rogue-server.key.pem"));
    std::fs::write(dir.path().join("rogue.toml"), rogue_config).expect("config");
    let rogue = Server::start_configured(&support::example_plugins(), &dir.path().join("rogue.toml"), "127.0.0.1:0");

    let peer = |name: &str, url: &str, audience: &str| {
        format!(
            "[[peers]]\nname = \"{name}\"\nurl = \"{url}\"\nauth = \"identity\"\naudience = \"{audience}\"\nca = \"{}\"\n\
             client_cert = \"{}\"\nclient_key = \"{}\"\n",
            tls_file("trusted-ca.pem"),
            tls_file("host-a-client.pem"),
            tls_file("host-a-client.key.pem")
        )
    };
    let a_config = format!(
        "[identity]\nname = \"host-a\"\nkey = \"host-a.pem\"\n{}{}{}",
        peer("b", &b.url(), "host-b"),
        peer("rogue", &rogue.url(), "host-b"),
        peer("elsewhere", &b.url(), "host-x")
    );
    std::fs::write(dir.path().join("a.toml"), a_config).expect("config");
    let empty = support::repo_root().join("tests/plugins/empty");
    let a = Server::start_configured(&empty, &dir.path().join("a.toml"), "127.0.0.1:0");
    a.wait_for_peer("b").await;

    let client = StatelessClient::new(&a);
    let result = client.call("b__text-tools__slugify", json!({ "text": "Over TLS" })).await.expect("served");
    assert_eq!(result["content"][0]["text"], "over-tls");

    let untrusted = peer_down_reason(&a, "rogue").await;
    assert!(untrusted.to_lowercase().contains("certificate") || untrusted.contains("UnknownIssuer"), "{untrusted}");
    let wrong_audience = peer_down_reason(&a, "elsewhere").await;
    assert!(wrong_audience.contains("401") || wrong_audience.to_lowercase().contains("auth"), "{wrong_audience}");
    let (_, tools) = client.request("tools/list", json!({})).await;
    let names: Vec<&str> =
        tools["result"]["tools"].as_array().into_iter().flatten().filter_map(|t| t["name"].as_str()).collect();
    assert!(names.iter().all(|n| !n.starts_with("rogue__") && !n.starts_with("elsewhere__")), "{names:?}");

    // B requires a client certificate: a client that trusts B but has none is refused.
    let ca = reqwest::Certificate::from_pem(&std::fs::read(tls_file("trusted-ca.pem")).expect("ca")).expect("ca");
    let anonymous = reqwest::Client::builder().tls_certs_only([ca]).build().expect("client");
    let refused = anonymous.get(format!("https://{}/health", b.address)).send().await;
    assert!(refused.is_err(), "a client without a certificate got through: {refused:?}");
}

/// The official Python SDK client, on a 2025-11-25 session with a bearer token: it sees only its
/// granted tools, and the consent question reaches it as an elicitation.
#[test]
fn python_sdk_client_with_a_token_is_asked_for_consent_on_a_legacy_session() {
    let host = Protected::start("[[consent.rules]]\ntools = \"text-tools__change_case\"\npolicy = \"ask\"\n");
    let token =
        host.token(json!({ "sub": "ivan", "scope": "tools:text-tools__change_case tools:text-tools__slugify" }));
    let python = support::repo_root().join("tests/.venv/bin/python");
    assert!(python.is_file(), "{} is missing: `cargo xtask test` creates it", python.display());
    let output = Command::new(python)
        .arg(support::repo_root().join("tests/clients/python_auth_client.py"))
        .args([&host.server.url(), &token, "text-tools__change_case", r#"{"text": "mind the gap", "to": "upper"}"#])
        .output()
        .expect("python runs");
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(output.status.success(), "{stdout}\n{}", String::from_utf8_lossy(&output.stderr));
    let seen: Value = serde_json::from_str(stdout.trim()).unwrap_or_else(|e| panic!("{e}: {stdout}"));
    assert_eq!(seen["protocol"], "2025-11-25", "{seen}");
    assert_eq!(seen["tools"], json!(["text-tools__slugify", "text-tools__change_case"]), "{seen}");
    assert_eq!(seen["questions"].as_array().map(Vec::len), Some(2), "{seen}");
    assert_eq!(seen["first"]["text"], json!(["MIND THE GAP"]), "{seen}");
    assert_eq!(seen["second_served"], false, "{seen}");
    assert!(seen["second_refused"].as_str().is_some_and(|e| e.contains("did not allow")), "{seen}");
    let audit = host.audit();
    let asked: Vec<_> = audit.iter().filter(|l| l["decision"] == "asked" && l["identity"]["sub"] == "ivan").collect();
    assert_eq!(asked.len(), 2, "{audit:?}");
}

/// Without `[auth]`, clients are the local user, whose grants `[local_user]` can narrow.
#[tokio::test]
async fn the_local_user_gets_what_local_user_grants() {
    let dir = tempfile::tempdir().expect("temp dir");
    let config =
        "[local_user]\nsubject = \"me\"\nscopes = [\"tools:text-tools__*\"]\n[audit]\nfile = \"audit.jsonl\"\n";
    std::fs::write(dir.path().join("host.toml"), config).expect("config");
    let server = Server::start_configured(&support::example_plugins(), &dir.path().join("host.toml"), "127.0.0.1:0");
    let client = StatelessClient::new(&server);
    let (_, reply) = client.request("tools/list", json!({})).await;
    let names: Vec<&str> =
        reply["result"]["tools"].as_array().into_iter().flatten().filter_map(|t| t["name"].as_str()).collect();
    assert!(!names.is_empty() && names.iter().all(|n| n.starts_with("text-tools__")), "{names:?}");
    let refused = client.call("test_simple_text", json!({})).await.unwrap_err();
    assert!(refused.contains("me may not use test_simple_text"), "{refused}");
    let audit = std::fs::read_to_string(dir.path().join("audit.jsonl")).unwrap_or_default();
    assert!(audit.contains(r#""sub":"me""#), "{audit}");
}

/// A 2025-11-25 session belongs to the identity that opened it: another valid token holder who
/// learns its id gets "Session not found".
#[tokio::test]
async fn a_legacy_session_cannot_be_used_with_another_identitys_token() {
    let host = Protected::start("");
    let alice = host.token(json!({ "sub": "alice" }));
    let mallory = host.token(json!({ "sub": "mallory" }));
    let session = open_legacy_session(&host, &alice).await.expect("a session");
    let list = json!({ "jsonrpc": "2.0", "id": 2, "method": "tools/list" });

    let stolen = legacy_post(&host, &mallory, Some(&session), list.clone()).await;
    assert_eq!(stolen.status(), StatusCode::NOT_FOUND);
    let own = legacy_post(&host, &alice, Some(&session), list).await;
    assert_eq!(own.status(), StatusCode::OK);
    let reply = support::jsonrpc_message(&own.text().await.unwrap_or_default());
    assert!(reply["result"]["tools"].as_array().is_some_and(|t| !t.is_empty()), "{reply}");
    assert!(host.audit().iter().any(|l| l["identity"]["sub"] == "mallory" && l["decision"] == "denied"));
}

/// A 2026-07-28 listener hears of updates only to resources its grant covers, whatever its
/// filter names: a resource's changes say something about it.
#[tokio::test]
async fn resource_updates_reach_only_listeners_whose_grant_covers_the_resource() {
    let plugins = conformance_plugins();
    let host = Protected::start_serving("", plugins.path());
    let uri = "test://watched-resource";
    let filter = json!({ "resourceSubscriptions": [uri] });
    let granted =
        StatelessClient::with_token(&host.server, &host.token(json!({ "sub": "ann", "scope": "resources:*" })));
    let mut granted = granted.listen(filter.clone()).await;
    let other = StatelessClient::with_token(&host.server, &host.token(json!({ "sub": "eve", "scope": "tools:*" })));
    let mut other = other.listen(filter).await;

    // Replace the plugin the way deploy tools do: its resources are announced as updated.
    let incoming = plugins.path().join(".incoming.tmp");
    std::fs::copy(support::example_plugins().join("conformance.wasm"), &incoming).expect("copy");
    std::fs::rename(&incoming, plugins.path().join("conformance.wasm")).expect("rename");
    let updated = async |stream: &mut tokio::sync::mpsc::UnboundedReceiver<(String, Value)>, patience| {
        let deadline = tokio::time::Instant::now() + patience;
        while let Ok(Some((method, params))) = tokio::time::timeout_at(deadline, stream.recv()).await {
            if method == "notifications/resources/updated" {
                return Some(params);
            }
        }
        None
    };
    let heard = updated(&mut granted, Duration::from_secs(20)).await.expect("the granted listener is told");
    assert_eq!(heard["uri"], uri);
    // The update has been sent; the other listener had the same chance to hear of it.
    assert_eq!(updated(&mut other, Duration::from_secs(1)).await, None, "a listener outside the grant was told");
}

/// One gate judges every use of an entry, whatever the method: each of the six is refused
/// outside the caller's grant, refused once the caller's rate limit is spent, and audited both
/// when allowed and when denied.
#[tokio::test]
async fn one_gate_judges_every_method_that_uses_an_entry() {
    let plugins = conformance_plugins();
    let host = Protected::start_serving("[limits]\nper_minute = 1\nburst = 2\n", plugins.path());
    // A legacy session for `resources/subscribe` (2025-11-25 only), opened with `token`.
    let subscribe = async |token: &str, uri: &str| -> Value {
        let session = open_legacy_session(&host, token).await.expect("a session");
        let request = json!({ "jsonrpc": "2.0", "id": 2, "method": "resources/subscribe", "params": { "uri": uri } });
        let reply = legacy_post(&host, token, Some(&session), request).await;
        support::jsonrpc_message(&reply.text().await.unwrap_or_default())
    };
    let listen = async |client: &StatelessClient, uri: &str| -> (StatusCode, Value) {
        // rmcp acknowledges a listen before the host judges it: a refusal is an error on the
        // stream, which then ends; an accepted stream stays open. Read for a while, and drop it
        // (which ends it).
        let meta = json!({ "io.modelcontextprotocol/protocolVersion": "2026-07-28",
            "io.modelcontextprotocol/clientCapabilities": {} });
        let body = json!({ "jsonrpc": "2.0", "id": 1, "method": "subscriptions/listen",
            "params": { "notifications": { "resourceSubscriptions": [uri] }, "_meta": meta } });
        let request = client
            .post()
            .header("mcp-protocol-version", "2026-07-28")
            .header("mcp-method", "subscriptions/listen")
            .body(body.to_string());
        let mut response = request.send().await.expect("listen answers");
        let status = response.status();
        let mut text = String::new();
        let deadline = tokio::time::Instant::now() + Duration::from_millis(1500);
        while let Ok(Ok(Some(bytes))) = tokio::time::timeout_at(deadline, response.chunk()).await {
            text.push_str(&String::from_utf8_lossy(&bytes));
        }
        let error = text
            .lines()
            .filter_map(|line| line.strip_prefix("data:"))
            .filter_map(|data| serde_json::from_str::<Value>(data.trim()).ok())
            .find(|message| message.get("error").is_some());
        (status, error.unwrap_or_else(|| support::jsonrpc_message(&text)))
    };

    struct Case {
        method: &'static str,
        entry: &'static str,
        /// The scope that covers the entry.
        scope: &'static str,
    }
    let cases = [
        Case { method: "tools/call", entry: "test_simple_text", scope: "tools:test_simple_text" },
        Case { method: "resources/read", entry: "test://static-text", scope: "resources:test://static-text" },
        Case { method: "prompts/get", entry: "test_simple_prompt", scope: "prompts:test_simple_prompt" },
        Case {
            method: "completion/complete",
            entry: "test_prompt_with_arguments",
            scope: "prompts:test_prompt_with_arguments",
        },
        Case { method: "resources/subscribe", entry: "test://watched-resource", scope: "resources:test://watched-*" },
        Case { method: "subscriptions/listen", entry: "test://watched-resource", scope: "resources:test://watched-*" },
    ];
    for (n, case) in cases.iter().enumerate() {
        let granted = host.token(json!({ "sub": format!("granted-{n}"), "scope": case.scope }));
        let outside = host.token(json!({ "sub": format!("outside-{n}"), "scope": "tools:nothing-here" }));
        // Allowed twice (the burst), then over the rate limit; outside the grant, refused.
        let mut outcomes = Vec::new();
        for token in [&granted, &granted, &granted, &outside] {
            let client = StatelessClient::with_token(&host.server, token);
            let (status, reply) = match case.method {
                "tools/call" => client.request("tools/call", json!({ "name": case.entry, "arguments": {} })).await,
                "resources/read" => client.request("resources/read", json!({ "uri": case.entry })).await,
                "prompts/get" => client.request("prompts/get", json!({ "name": case.entry })).await,
                "completion/complete" => {
                    let params = json!({ "ref": { "type": "ref/prompt", "name": case.entry },
                        "argument": { "name": "arg1", "value": "pa" } });
                    client.request("completion/complete", params).await
                }
                "resources/subscribe" => (StatusCode::OK, subscribe(token, case.entry).await),
                _ => listen(&client, case.entry).await,
            };
            outcomes.push((status, reply));
        }
        let error = |i: usize| outcomes[i].1["error"]["message"].as_str().unwrap_or_default().to_owned();
        for allowed in [0, 1] {
            assert!(
                outcomes[allowed].1.get("error").is_none(),
                "{}: use {allowed}: {:?}",
                case.method,
                outcomes[allowed]
            );
        }
        assert!(error(2).contains("rate limit exceeded"), "{}: {:?}", case.method, outcomes[2]);
        assert!(
            outcomes[3].0 == StatusCode::FORBIDDEN || error(3).contains("its grant lacks the scope"),
            "{}: {:?}",
            case.method,
            outcomes[3]
        );
        let audit = host.audit();
        let lines = |sub: String, decision: &str| {
            audit
                .iter()
                .filter(|l| {
                    l["identity"]["sub"] == sub.as_str() && l["method"] == case.method && l["decision"] == decision
                })
                .count()
        };
        // A listen stream is audited when it ends (here: when the client dropped it).
        if case.method != "subscriptions/listen" {
            assert_eq!(lines(format!("granted-{n}"), "allowed"), 2, "{}: {audit:#?}", case.method);
        }
        assert_eq!(lines(format!("granted-{n}"), "denied"), 1, "{}: {audit:#?}", case.method);
        assert_eq!(lines(format!("outside-{n}"), "denied"), 1, "{}: {audit:#?}", case.method);
    }
    support::eventually("the listen streams are audited when they end", Duration::from_secs(10), async || {
        host.audit().iter().filter(|l| l["method"] == "subscriptions/listen" && l["decision"] == "allowed").count() == 2
    })
    .await;
}

/// POST `body` to the host with `token`, in `session` if given.
async fn legacy_post(host: &Protected, token: &str, session: Option<&str>, body: Value) -> reqwest::Response {
    let mut request = reqwest::Client::new()
        .post(host.server.url())
        .bearer_auth(token)
        .header("content-type", "application/json")
        .header("accept", "application/json, text/event-stream");
    if let Some(session) = session {
        request = request.header("mcp-session-id", session).header("mcp-protocol-version", "2025-11-25");
    }
    request.body(body.to_string()).send().await.expect("the host answers")
}

/// Open (and initialize) a 2025-11-25 session with `token`: its id, or the refusal's status
/// and JSON-RPC message.
async fn open_legacy_session(host: &Protected, token: &str) -> Result<String, (StatusCode, Value)> {
    let init = json!({ "jsonrpc": "2.0", "id": 1, "method": "initialize", "params": {
        "protocolVersion": "2025-11-25", "capabilities": {}, "clientInfo": { "name": "t", "version": "1" } } });
    let response = legacy_post(host, token, None, init).await;
    let (status, session) =
        (response.status(), response.headers().get("mcp-session-id").and_then(|v| v.to_str().ok()).map(str::to_owned));
    let body = support::jsonrpc_message(&response.text().await.unwrap_or_default());
    let session = match session {
        Some(session) if status.is_success() => session,
        _ => return Err((status, body)),
    };
    let initialized = json!({ "jsonrpc": "2.0", "method": "notifications/initialized" });
    let _ = legacy_post(host, token, Some(&session), initialized).await.text().await;
    Ok(session)
}

/// A plugins folder holding only the conformance fixtures (namespace "").
pub(crate) fn conformance_plugins() -> tempfile::TempDir {
    let plugins = tempfile::tempdir().expect("a plugins folder");
    for file in ["conformance.wasm", "conformance.toml"] {
        std::fs::copy(support::example_plugins().join(file), plugins.path().join(file)).expect("copy the plugin");
    }
    plugins
}

/// `tools/list` (or `DELETE` when `delete`) in `session` with `token`: the HTTP status.
async fn use_legacy_session(host: &Protected, token: &str, session: &str, delete: bool) -> StatusCode {
    let response = if delete {
        reqwest::Client::new()
            .delete(host.server.url())
            .bearer_auth(token)
            .header("mcp-session-id", session)
            .header("mcp-protocol-version", "2025-11-25")
            .send()
            .await
            .expect("the host answers")
    } else {
        let list = json!({ "jsonrpc": "2.0", "id": 2, "method": "tools/list" });
        legacy_post(host, token, Some(session), list).await
    };
    let status = response.status();
    let _ = response.text().await;
    status
}

/// Sessions are bound to their opener for as long as they are open, and one identity opening
/// many cannot push another's binding out (which made a leaked session id usable by anyone
/// with a token): past its share (64), its `initialize` is refused with a JSON-RPC error naming
/// the limit. Made-up and ended session ids are refused; a deleted session gives its place back.
#[tokio::test]
async fn an_identity_opening_many_sessions_is_refused_and_never_takes_anothers() {
    let host = Protected::start("");
    let alice = host.token(json!({ "sub": "alice" }));
    let bob = host.token(json!({ "sub": "bob" }));
    let alices = open_legacy_session(&host, &alice).await.expect("alice opens a session");

    let mut bobs = Vec::new();
    let refusal = loop {
        match open_legacy_session(&host, &bob).await {
            Ok(session) => bobs.push(session),
            Err(refusal) => break refusal,
        }
        assert!(bobs.len() <= 200, "bob opened {} sessions and was never refused", bobs.len());
    };
    assert_eq!(bobs.len(), 64, "{refusal:?}");
    let (status, reply) = refusal;
    assert_eq!(status, StatusCode::TOO_MANY_REQUESTS, "{reply}");
    assert_eq!(reply["error"]["code"], -32028, "{reply}");
    let message = reply["error"]["message"].as_str().unwrap_or_default();
    assert!(message.contains("bob") && message.contains("64 open sessions"), "{message}");
    assert!(host.audit().iter().any(|l| l["identity"]["sub"] == "bob" && l["method"] == "initialize"));

    assert_eq!(use_legacy_session(&host, &bob, &alices, false).await, StatusCode::NOT_FOUND);
    assert_eq!(use_legacy_session(&host, &alice, &alices, false).await, StatusCode::OK);
    assert_eq!(use_legacy_session(&host, &bob, "made-up-session-id", false).await, StatusCode::NOT_FOUND);

    // An ended session's id is refused, and its place is bob's again.
    assert!(use_legacy_session(&host, &bob, &bobs[0], true).await.is_success());
    assert_eq!(use_legacy_session(&host, &bob, &bobs[0], false).await, StatusCode::NOT_FOUND);
    open_legacy_session(&host, &bob).await.expect("a place freed by DELETE");
    assert!(open_legacy_session(&host, &bob).await.is_err(), "bob is at his limit again");
}

/// A session the host ends as idle gives its place back to its opener.
#[tokio::test]
async fn sessions_ended_as_idle_give_their_places_back() {
    let host = Protected::start("[http]\nsession_idle_secs = 3\n");
    let bob = host.token(json!({ "sub": "bob" }));
    let mut opened = Vec::new();
    while let Ok(session) = open_legacy_session(&host, &bob).await {
        opened.push(session);
        assert!(opened.len() <= 64, "bob was not refused past his limit");
    }
    support::eventually("an idle session's place is free again", Duration::from_secs(15), async || {
        open_legacy_session(&host, &bob).await.is_ok()
    })
    .await;
    assert_eq!(use_legacy_session(&host, &bob, &opened[0], false).await, StatusCode::NOT_FOUND);
}

/// The RFC 9728 metadata and `/health` (which names plugins and peers to a caller with a token)
/// are guarded against DNS rebinding as `/mcp` is: a foreign Host or Origin gets 403.
#[tokio::test]
async fn metadata_and_health_refuse_a_foreign_host_or_origin() {
    let host = Protected::start("");
    let token = host.token(json!({}));
    let http = reqwest::Client::new();
    let base = format!("http://{}", host.server.address);
    let routes =
        ["/.well-known/oauth-protected-resource", "/.well-known/oauth-protected-resource/mcp", "/health", "/metrics"];
    for route in routes {
        let own = http.get(format!("{base}{route}")).bearer_auth(&token).send().await.expect("answers");
        assert_eq!(own.status(), StatusCode::OK, "{route}");
        for (header, value) in [("host", "evil.example"), ("origin", "http://evil.example")] {
            let refused = http
                .get(format!("{base}{route}"))
                .bearer_auth(&token)
                .header(header, value)
                .send()
                .await
                .expect("answers");
            assert_eq!(refused.status(), StatusCode::FORBIDDEN, "{route} with {header}: {value}");
            let body = refused.text().await.unwrap_or_default();
            assert!(!body.contains("authorization_servers") && !body.contains("plugins"), "{route}: {body}");
        }
    }
    // With [auth], /metrics names plugins and peers only to a caller with a valid token.
    for token in [None, Some("not-a-jwt")] {
        let mut request = http.get(format!("{base}/metrics"));
        if let Some(token) = token {
            request = request.bearer_auth(token);
        }
        let refused = request.send().await.expect("answers");
        assert_eq!(refused.status(), StatusCode::UNAUTHORIZED, "/metrics with {token:?}");
        assert!(!refused.text().await.unwrap_or_default().contains("fedmcp_"), "/metrics with {token:?}");
    }
}

/// A `requestState` this host sealed is bound to the caller and the request's arguments:
/// another identity with the same grant cannot replay it, nor can its own caller with other
/// arguments; a consent answer counts only for the arguments it was asked about.
#[tokio::test]
async fn a_sealed_state_opens_only_for_its_caller_and_its_arguments() {
    let plugins = conformance_plugins();
    let host =
        Protected::start_serving("[[consent.rules]]\ntools = \"test_simple_text\"\npolicy = \"ask\"\n", plugins.path());
    let alice = StatelessClient::with_token(&host.server, &host.token(json!({ "sub": "alice" })));
    let mallory = StatelessClient::with_token(&host.server, &host.token(json!({ "sub": "mallory" })));
    let arguments = json!({ "message": "Who are you?" });
    let asked = alice.call("test_elicitation", arguments.clone()).await.expect("input required");
    assert_eq!(asked["resultType"], "input_required", "{asked}");
    let state = asked["requestState"].as_str().expect("a requestState").to_owned();
    let key = asked["inputRequests"].as_object().and_then(|r| r.keys().next().cloned()).expect("one input request");
    let retry = |arguments: Value| {
        json!({
            "name": "test_elicitation", "arguments": arguments,
            "inputResponses": { key.clone(): { "action": "accept", "content": { "username": "ada", "email": "ada@example.com" } } },
            "requestState": state,
        })
    };
    let refused = |reply: &Value| reply["error"]["message"].as_str().is_some_and(|m| m.contains("requestState"));

    let (_, replayed) = mallory.request("tools/call", retry(arguments.clone())).await;
    assert!(refused(&replayed), "another identity replayed alice's state: {replayed}");
    let (_, changed) = alice.request("tools/call", retry(json!({ "message": "Something else?" }))).await;
    assert!(refused(&changed), "the state opened for other arguments: {changed}");
    let (_, answered) = alice.request("tools/call", retry(arguments.clone())).await;
    let text = answered["result"]["content"][0]["text"].as_str().unwrap_or_default();
    assert!(text.contains("ada"), "{answered}");

    // Consent asked about one set of arguments is no consent for another.
    let (_, question) = alice.request("tools/call", json!({ "name": "test_simple_text", "arguments": {} })).await;
    let consent_state = question["result"]["requestState"].as_str().expect("a consent question").to_owned();
    let accept = |arguments: Value, state: &str| {
        json!({ "name": "test_simple_text", "arguments": arguments,
            "inputResponses": { "fedmcp.consent": { "action": "accept" } }, "requestState": state })
    };
    let (_, other) = alice.request("tools/call", accept(json!({ "extra": 1 }), &consent_state)).await;
    assert!(refused(&other), "consent for {{}} counted for other arguments: {other}");
    let (_, theirs) = mallory.request("tools/call", accept(json!({}), &consent_state)).await;
    assert!(refused(&theirs), "alice's consent counted for mallory's call: {theirs}");
    let (_, given) = alice.request("tools/call", accept(json!({}), &consent_state)).await;
    assert!(given["result"]["content"].is_array(), "{given}");
}

/// `fedmcp keys generate` writes a private key that standard tools read: OpenSSL loads it, and
/// a token PyJWT signs with it is one the host verifies.
#[tokio::test]
async fn a_generated_key_is_read_by_openssl_and_pyjwt_and_the_host_verifies_its_tokens() {
    let keys = tempfile::tempdir().expect("temp dir");
    let (private, public) = generate_keys(keys.path(), "ops");
    let openssl =
        Command::new("/usr/bin/openssl").args(["pkey", "-noout", "-in"]).arg(&private).output().expect("openssl runs");
    assert!(openssl.status.success(), "openssl cannot read the key: {}", String::from_utf8_lossy(&openssl.stderr));

    let python = support::repo_root().join("tests/.venv/bin/python");
    assert!(python.is_file(), "{} is missing: `cargo xtask test` creates it", python.display());
    let claims = claims(json!({ "iss": "https://ops.test", "sub": "operator", "scope": "tools:text-tools__*" }));
    let signed = Command::new(python)
        .arg(support::repo_root().join("tests/clients/pyjwt_sign.py"))
        .arg(&private)
        .args(["ops", &claims.to_string()])
        .output()
        .expect("python runs");
    assert!(signed.status.success(), "PyJWT cannot sign with the key: {}", String::from_utf8_lossy(&signed.stderr));
    let token = String::from_utf8_lossy(&signed.stdout).trim().to_owned();

    let issuer = format!(
        "[[auth.issuers]]\nissuer = \"https://ops.test\"\npublic_key = {:?}\nkid = \"ops\"\n",
        public.to_str().expect("UTF-8 path")
    );
    let host = Protected::start(&issuer);
    let result = StatelessClient::with_token(&host.server, &token)
        .call("text-tools__slugify", json!({ "text": "Signed Elsewhere" }))
        .await
        .expect("a token PyJWT signed is served");
    assert_eq!(result["content"][0]["text"], "signed-elsewhere");
    assert!(host.audit().iter().any(|l| l["identity"]["sub"] == "operator" && l["decision"] == "allowed"));
}

/// Two callers with the same `sub` from two issuers reach B through A as two principals: A's
/// token for each names the caller's issuer (`sub_id`), and B's audit tells them apart.
#[tokio::test]
async fn through_federation_callers_with_one_subject_from_two_issuers_stay_two_principals() {
    let dir = tempfile::tempdir().expect("temp dir");
    let (one_private, _) = generate_keys(dir.path(), "idp-one");
    let (two_private, _) = generate_keys(dir.path(), "idp-two");
    generate_keys(dir.path(), "host-a");
    let b_config = "[auth]\naudience = \"host-b\"\n[[auth.issuers]]\nissuer = \"host-a\"\n\
                    public_key = \"host-a.pub.pem\"\nkid = \"host-a\"\n[audit]\nfile = \"b-audit.jsonl\"\n";
    std::fs::write(dir.path().join("b.toml"), b_config).expect("config");
    let b = Server::start_configured(&support::example_plugins(), &dir.path().join("b.toml"), "127.0.0.1:0");
    let a_config = format!(
        "[identity]\nname = \"host-a\"\nkey = \"host-a.pem\"\n[auth]\naudience = \"host-a\"\n\
         [[auth.issuers]]\nissuer = \"https://one.test\"\npublic_key = \"idp-one.pub.pem\"\nkid = \"idp-one\"\n\
         [[auth.issuers]]\nissuer = \"https://two.test\"\npublic_key = \"idp-two.pub.pem\"\nkid = \"idp-two\"\n\
         [[peers]]\nname = \"b\"\nurl = \"{}\"\nauth = \"identity\"\naudience = \"host-b\"\n",
        b.url()
    );
    std::fs::write(dir.path().join("a.toml"), a_config).expect("config");
    let empty = support::repo_root().join("tests/plugins/empty");
    let mut a = Server::start_configured(&empty, &dir.path().join("a.toml"), "127.0.0.1:0");
    let token = |key: &Path, kid: &str, iss: &str| {
        let key = EncodingKey::from_ed_pem(&std::fs::read(key).expect("key")).expect("key");
        sign(Algorithm::EdDSA, kid, &key, &claims(json!({ "iss": iss, "sub": "alice", "aud": "host-a" })))
    };
    let one = token(&one_private, "idp-one", "https://one.test");
    let two = token(&two_private, "idp-two", "https://two.test");
    a.health_token = Some(one.clone());
    a.wait_for_peer("b").await;
    for (token, text) in [(&one, "From One"), (&two, "From Two")] {
        let result = StatelessClient::with_token(&a, token)
            .call("b__text-tools__slugify", json!({ "text": text }))
            .await
            .expect("served");
        assert_eq!(result["content"][0]["text"], text.to_lowercase().replace(' ', "-"));
    }
    let b_audit = std::fs::read_to_string(dir.path().join("b-audit.jsonl")).unwrap_or_default();
    let callers: std::collections::BTreeSet<String> = b_audit
        .lines()
        .filter_map(|line| serde_json::from_str::<Value>(line).ok())
        .filter(|line| line["decision"] == "allowed" && line["entry"] == "text-tools__slugify")
        .map(|line| {
            assert_eq!(line["identity"]["sub"], "alice", "{line}");
            assert_eq!(line["identity"]["act"], "host-a", "{line}");
            line["identity"]["iss"].as_str().unwrap_or_default().to_owned()
        })
        .collect();
    assert_eq!(
        callers,
        ["https://one.test".to_owned(), "https://two.test".to_owned()].into(),
        "B saw one principal: {b_audit}"
    );
}

/// Streams opened with a token stop delivering once it expires: a 2026-07-28 listen stream
/// ends, and a legacy session's GET stream passes no more changes on (until a request with a
/// fresh token comes).
#[tokio::test]
async fn streams_stop_delivering_when_their_token_expires() {
    let plugins = conformance_plugins();
    let host = Protected::start_serving("", plugins.path());
    let short = host.token(json!({ "sub": "brief", "exp": now() + 3 }));
    let long = host.token(json!({ "sub": "steady" }));
    let filter = json!({ "toolsListChanged": true });
    let mut brief_listener = StatelessClient::with_token(&host.server, &short).listen(filter.clone()).await;
    let mut steady_listener = StatelessClient::with_token(&host.server, &long).listen(filter).await;

    // A legacy session opened with the short token, its GET stream open.
    let http = reqwest::Client::new();
    let session = open_legacy_session(&host, &short).await.expect("a session");
    let mut stream = http
        .get(host.server.url())
        .bearer_auth(&short)
        .header("accept", "text/event-stream")
        .header("mcp-session-id", &session)
        .header("mcp-protocol-version", "2025-11-25")
        .send()
        .await
        .expect("GET stream");
    assert!(stream.status().is_success(), "{}", stream.status());
    let (sender, mut legacy_changes) = tokio::sync::mpsc::unbounded_channel();
    tokio::spawn(async move {
        while let Ok(Some(chunk)) = stream.chunk().await {
            if String::from_utf8_lossy(&chunk).contains("notifications/tools/list_changed") {
                let _ = sender.send(());
            }
        }
    });

    let steady = StatelessClient::with_token(&host.server, &long);
    let trigger = async || steady.call("test_trigger_tool_change", json!({})).await.expect("the change is announced");
    let heard = async |changes: &mut tokio::sync::mpsc::UnboundedReceiver<(String, Value)>| {
        let deadline = tokio::time::Instant::now() + Duration::from_secs(2);
        while let Ok(Some((method, _))) = tokio::time::timeout_at(deadline, changes.recv()).await {
            if method == "notifications/tools/list_changed" {
                return true;
            }
        }
        false
    };
    trigger().await;
    assert!(heard(&mut brief_listener).await, "while its token is valid, the listener hears of changes");
    assert!(heard(&mut steady_listener).await);
    assert!(tokio::time::timeout(Duration::from_secs(2), legacy_changes.recv()).await.is_ok(), "the session too");

    tokio::time::sleep(Duration::from_secs(3)).await;
    trigger().await;
    assert!(heard(&mut steady_listener).await, "a listener with a valid token still hears");
    assert!(!heard(&mut brief_listener).await, "a listener whose token expired was told");
    assert!(
        tokio::time::timeout(Duration::from_secs(1), legacy_changes.recv()).await.is_err(),
        "a session whose token expired was told"
    );
}

/// A grant over a resource path covers that path only: a URI that climbs out of it with a
/// dot-segment (raw or percent-encoded) or hides a separator is refused before the grant is
/// judged and before any owner sees it.
#[tokio::test]
async fn a_resource_uri_cannot_climb_out_of_its_grant() {
    let plugins = conformance_plugins();
    let host = Protected::start_serving("", plugins.path());
    let token = host.token(json!({ "sub": "carol", "scope": "resources:test://template/*" }));
    let carol = StatelessClient::with_token(&host.server, &token);
    let (_, own) = carol.request("resources/read", json!({ "uri": "test://template/7/data" })).await;
    assert!(own["result"]["contents"].is_array(), "{own}");
    for climbing in
        ["test://template/../static-text", "test://template/%2e%2E/static-text", "test://template/a%2F..%2Fb"]
    {
        let (_, refused) = carol.request("resources/read", json!({ "uri": climbing })).await;
        let message = refused["error"]["message"].as_str().unwrap_or_default();
        assert!(message.contains("dot-segment") || message.contains("encoded path separator"), "{climbing}: {refused}");
    }
}

/// `other`'s `tasks/get`, `tasks/update` (answering its question) and `tasks/cancel` of
/// `task` are answered exactly as those of an id that does not exist.
async fn assert_unknown_to(other: &StatelessClient, task: &str) {
    let answers = json!({ "confirm": { "action": "accept", "content": { "confirm": true } } });
    for (method, params) in [
        ("tasks/get", json!({ "taskId": task })),
        ("tasks/update", json!({ "taskId": task, "inputResponses": answers })),
        ("tasks/cancel", json!({ "taskId": task })),
    ] {
        let (_, reply) = other.request(method, params).await;
        assert_eq!(reply["error"]["code"], -32602, "{method}: {reply}");
        assert_eq!(reply["error"]["message"], format!("unknown task: {task}"), "{method}: {reply}");
    }
}

/// A task is its creator's: another identity's `tasks/get`, `tasks/update` and `tasks/cancel`
/// of it are answered exactly as those of an id that does not exist, and leave it alone.
#[tokio::test]
async fn a_task_is_unknown_to_every_identity_but_its_creators() {
    let host = Protected::start("");
    let alice = StatelessClient {
        token: Some(host.token(json!({ "sub": "alice" }))),
        ..crate::tasks::tasks_client(&host.server)
    };
    let bob = StatelessClient {
        token: Some(host.token(json!({ "sub": "bob" }))),
        ..crate::tasks::tasks_client(&host.server)
    };
    let task = crate::tasks::start_task(&alice, "confirm_delete", json!({ "filename": "alice.txt" })).await;
    assert_unknown_to(&bob, &task).await;
    let (_, none) = bob.request("tasks/get", json!({ "taskId": "no-such-task" })).await;
    assert_eq!(none["error"]["message"], "unknown task: no-such-task", "{none}");
    // Alice's task was neither answered nor cancelled by Bob.
    support::eventually("alice's task asks its question", Duration::from_secs(20), async || {
        let (_, reply) = alice.request("tasks/get", json!({ "taskId": task })).await;
        reply["result"]["status"] == "input_required"
    })
    .await;
    // Alice's polls are uses of the task's tool, audited as such; Bob's left no trace of it.
    let audit = host.audit();
    let polled = |sub: &str| {
        audit
            .iter()
            .any(|l| l["identity"]["sub"] == sub && l["method"] == "tasks/get" && l["entry"] == "confirm_delete")
    };
    assert!(polled("alice") && !polled("bob"), "{audit:?}");
}

/// A task a peer runs, through A: A passes the peer's task on under an id of its own, which
/// only its creator can poll, answer or cancel (another identity's requests are answered as
/// for an unknown id and reach nobody); the creator's polls, answers and cancel reach the
/// peer's task, and each is a use of the tool that A's gate admits and audits.
#[tokio::test]
async fn a_peers_task_is_polled_answered_and_cancelled_through_a_by_its_creator_only() {
    let b = Server::start(&support::example_plugins());
    let peer = format!("[[peers]]\nname = \"b\"\nnamespace = \"b\"\nurl = \"{}\"\ntimeout_ms = 10000\n", b.url());
    let mut a = Protected::start_serving(&peer, &support::repo_root().join("tests/plugins/empty"));
    a.server.health_token = Some(a.token(json!({ "sub": "operator" })));
    a.server.wait_for_peer("b").await;
    let client = |sub: &str| StatelessClient {
        token: Some(a.token(json!({ "sub": sub }))),
        ..crate::tasks::tasks_client(&a.server)
    };
    let (alice, bob) = (client("alice"), client("bob"));

    let task = crate::tasks::start_task(&alice, "b__slow_compute", json!({ "seconds": 0.3, "label": "via-a" })).await;
    let done = crate::tasks::until(&alice, &task, "completed").await;
    assert_eq!(done["taskId"], task.as_str(), "A's id, not the peer's: {done}");
    assert!(done["result"]["content"][0]["text"].as_str().is_some_and(|t| t.starts_with("via-a: done")), "{done}");

    let task = crate::tasks::start_task(&alice, "b__confirm_delete", json!({ "filename": "peer.txt" })).await;
    assert_unknown_to(&bob, &task).await;
    let answers = json!({ "confirm": { "action": "accept", "content": { "confirm": true } } });
    let waiting = crate::tasks::until(&alice, &task, "input_required").await;
    assert_eq!(waiting["inputRequests"]["confirm"]["method"], "elicitation/create", "{waiting}");
    let (_, ack) = alice.request("tasks/update", json!({ "taskId": task, "inputResponses": answers })).await;
    assert_eq!(ack["result"], json!({ "resultType": "complete" }), "{ack}");
    let done = crate::tasks::until(&alice, &task, "completed").await;
    assert_eq!(done["result"]["content"][0]["text"], "Deleted peer.txt", "{done}");

    // Cancelled through A while it runs on B: B's task says so.
    let task = crate::tasks::start_task(&alice, "b__slow_compute", json!({ "seconds": 30 })).await;
    let (_, ack) = alice.request("tasks/cancel", json!({ "taskId": task })).await;
    assert_eq!(ack["result"], json!({ "resultType": "complete" }), "{ack}");
    assert_eq!(crate::tasks::get(&alice, &task).await["status"], "cancelled");

    let audit = a.audit();
    let used = |sub: &str, method: &str| {
        audit.iter().any(|l| l["identity"]["sub"] == sub && l["method"] == method && l["entry"] == "b__slow_compute")
    };
    assert!(used("alice", "tasks/get") && used("alice", "tasks/cancel"), "{audit:?}");
    assert!(!audit.iter().any(|l| l["identity"]["sub"] == "bob"), "bob's requests reached no task: {audit:?}");
}
