//! `GET /metrics` read by the real tools: Debian's `promtool` lints it, and a real Prometheus
//! server scrapes the host and answers a PromQL query with the calls this test made.
//! `cargo xtask test` installs the `prometheus` package (Debian 12) where apt-get can.

use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::{Value, json};

use crate::support::{Server, StatelessClient, example_plugins, free_port};

/// A Prometheus server; killed when dropped.
struct Prometheus {
    child: Child,
    address: String,
}

impl Prometheus {
    /// Scrape `target` (host:port) every second, storing in `dir`.
    fn start(target: &str, dir: &Path) -> Self {
        let config = dir.join("prometheus.yml");
        let scrape = format!(
            "global:\n  scrape_interval: 1s\n  scrape_timeout: 1s\nscrape_configs:\n  - job_name: fedmcp\n    static_configs:\n      - targets: ['{target}']\n"
        );
        std::fs::write(&config, scrape).expect("the Prometheus config is written");
        let address = format!("127.0.0.1:{}", free_port());
        let child = Command::new("prometheus")
            .arg(format!("--config.file={}", config.display()))
            .arg(format!("--storage.tsdb.path={}", dir.join("data").display()))
            .arg(format!("--web.listen-address={address}"))
            .arg("--log.level=warn")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("prometheus runs (Debian's `prometheus` package; `cargo xtask test` installs it)");
        Self { child, address }
    }

    /// The value of PromQL `query` once it equals `expected`, or the last one seen when `limit`
    /// passes first.
    async fn wait_for(&self, query: &str, expected: &str, limit: Duration) -> Option<String> {
        // Each query bounded too: a Prometheus that accepts but never answers must not hang the test.
        let http = reqwest::Client::builder().timeout(Duration::from_secs(5)).build().expect("an HTTP client");
        // Percent-encoded by hand: every byte but unreserved ones.
        let encoded: String = query
            .bytes()
            .map(|byte| match byte {
                b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'.' | b'_' | b'~' => char::from(byte).to_string(),
                other => format!("%{other:02X}"),
            })
            .collect();
        let url = format!("http://{}/api/v1/query?query={encoded}", self.address);
        let deadline = Instant::now() + limit;
        let mut last = None;
        while Instant::now() < deadline {
            if let Ok(response) = http.get(&url).send().await
                && let Ok(body) = response.json::<Value>().await
            {
                last = body["data"]["result"][0]["value"][1].as_str().map(str::to_owned);
                if last.as_deref() == Some(expected) {
                    break;
                }
            }
            tokio::time::sleep(Duration::from_millis(250)).await;
        }
        last
    }
}

impl Drop for Prometheus {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

#[tokio::test]
async fn promtool_passes_the_metrics_and_prometheus_counts_the_calls_made() {
    let server = Server::start(&example_plugins());
    let client = StatelessClient::new(&server);
    const CALLS: usize = 7;
    for i in 0..CALLS {
        let (_, reply) = client
            .request(
                "tools/call",
                json!({ "name": "text-tools__slugify", "arguments": { "text": format!("Call {i}") } }),
            )
            .await;
        assert_eq!(reply["result"]["content"][0]["text"], format!("call-{i}"), "{reply}");
    }
    // A mixed workload: an unknown tool, bad arguments, a listing, a read.
    let (_, unknown) = client.request("tools/call", json!({ "name": "no-such-tool", "arguments": {} })).await;
    assert!(unknown.get("error").is_some(), "{unknown}");
    client.request("tools/list", json!({})).await;
    client.request("prompts/list", json!({})).await;

    let text = reqwest::get(format!("http://{}/metrics", server.address))
        .await
        .expect("/metrics answers")
        .text()
        .await
        .expect("/metrics is text");
    assert!(
        text.lines()
            .any(|line| line == format!(r#"fedmcp_requests_total{{method="tools/call",outcome="ok"}} {CALLS}"#)),
        "{text}"
    );
    assert!(
        text.contains(
            r#"fedmcp_request_duration_seconds_count{method="tools/call",owner_kind="plugin",owner="text-tools"}"#
        ),
        "{text}"
    );
    assert!(text.contains("fedmcp_plugin_instantiate_seconds_count"), "{text}");

    let mut promtool = Command::new("promtool")
        .args(["check", "metrics"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("promtool runs (Debian's `prometheus` package; `cargo xtask test` installs it)");
    {
        use std::io::Write;
        let mut input = promtool.stdin.take().expect("promtool's stdin");
        input.write_all(text.as_bytes()).expect("the metrics reach promtool");
    }
    let linted = promtool.wait_with_output().expect("promtool ends");
    assert!(
        linted.status.success(),
        "promtool check metrics:\n{}{}",
        String::from_utf8_lossy(&linted.stdout),
        String::from_utf8_lossy(&linted.stderr)
    );

    let dir = tempfile::tempdir().expect("a folder for Prometheus");
    let prometheus = Prometheus::start(&server.address, dir.path());
    let counted = prometheus
        .wait_for(
            r#"sum(fedmcp_requests_total{job="fedmcp",method="tools/call",outcome="ok"})"#,
            &CALLS.to_string(),
            Duration::from_secs(60),
        )
        .await;
    assert_eq!(counted.as_deref(), Some(CALLS.to_string().as_str()), "Prometheus's count of tools/call");
    let up = prometheus.wait_for(r#"up{job="fedmcp"}"#, "1", Duration::from_secs(10)).await;
    assert_eq!(up.as_deref(), Some("1"), "the scrape target is up");
}
