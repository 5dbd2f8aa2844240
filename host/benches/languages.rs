//! What a plugin costs by language: compile time of its component (uncached), then
//! instantiate + call + drop of a small tool with a fresh instance per call, and the
//! host's resident memory growth for loading and calling it. The same tool in each
//! language: unit-convert `convert`, the JavaScript example (componentize-js) and its Rust
//! and Python (componentize-py) ports under tests/plugins, pooling allocator.
//!
//! `cargo bench --bench languages` (after `cargo xtask plugins`). BENCH_CALLS sets the calls
//! per language (default 300).

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use fedmcp::plugin::{CallContext, Outcome, PluginRuntime, RuntimeOptions};
use serde_json::json;

fn percentile(sorted: &[Duration], q: f64) -> f64 {
    sorted[((sorted.len() as f64 - 1.0) * q) as usize].as_secs_f64() * 1e3
}

/// The process's resident set, in MiB.
fn resident_mib() -> f64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    let kib = status
        .lines()
        .find_map(|line| line.strip_prefix("VmRSS:"))
        .and_then(|rest| rest.split_whitespace().next())
        .and_then(|kib| kib.parse::<f64>().ok())
        .unwrap_or(0.0);
    kib / 1024.0
}

#[tokio::main(flavor = "current_thread")]
async fn main() {
    let calls: usize = std::env::var("BENCH_CALLS").ok().and_then(|v| v.parse().ok()).unwrap_or(300);
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    let arguments = json!({ "value": 10, "from": "km", "to": "mi" });
    let cases: [(&str, PathBuf); 3] = [
        ("Rust", root.join("tests/plugins/unit-convert-rust.wasm")),
        ("Python", root.join("tests/plugins/unit-convert-python.wasm")),
        ("JavaScript", root.join("plugins/unit-convert.wasm")),
    ];
    let tool = "convert";
    let runtime = PluginRuntime::new(RuntimeOptions { cache_dir: None, ..RuntimeOptions::default() }).expect("runtime");
    println!("fresh instance per call, {calls} calls each, pooling allocator: {}", runtime.pooling());
    println!(
        "{:<11} {:<24} {:>9} {:>11} {:>10} {:>9} {:>11}",
        "language", "tool", "size MiB", "compile s", "median ms", "p99 ms", "+RSS MiB"
    );
    for (language, wasm) in cases {
        assert!(wasm.is_file(), "{} is missing: run `cargo xtask plugins`", wasm.display());
        let size = std::fs::metadata(&wasm).map(|m| m.len() as f64 / (1 << 20) as f64).unwrap_or(0.0);
        let before = resident_mib();
        let started = Instant::now();
        let plugin = runtime.load(&wasm).await.expect("the plugin loads");
        let compile = started.elapsed();
        for _ in 0..10 {
            plugin.call_tool(tool, &arguments, CallContext::default()).await.expect("warm-up call");
        }
        let mut timings = Vec::with_capacity(calls);
        let deadline = Instant::now() + Duration::from_secs(60);
        for _ in 0..calls {
            if Instant::now() > deadline {
                break;
            }
            let t = Instant::now();
            let outcome = plugin.call_tool(tool, &arguments, CallContext::default()).await;
            timings.push(t.elapsed());
            assert!(matches!(outcome, Ok(Outcome::Complete(_))), "{outcome:?}");
        }
        timings.sort();
        println!(
            "{language:<11} {:<24} {size:>9.1} {:>11.2} {:>10.3} {:>9.3} {:>11.0}",
            format!("unit-convert {tool}"),
            compile.as_secs_f64(),
            percentile(&timings, 0.5),
            percentile(&timings, 0.99),
            resident_mib() - before
        );
    }
}
