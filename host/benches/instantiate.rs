//! Cost of one plugin call with a fresh instance (instantiate + call + drop) for a trivial
//! Rust tool, with the pooling allocator and with on-demand allocation.
//!
//! `cargo bench --bench instantiate` (after `cargo xtask plugins`). BENCH_CALLS sets the
//! number of calls per configuration (default 5000).

use std::time::{Duration, Instant};

use fedmcp::plugin::{CallContext, Outcome, PluginRuntime, RuntimeOptions};
use serde_json::json;

fn percentile(sorted: &[Duration], q: f64) -> f64 {
    sorted[((sorted.len() as f64 - 1.0) * q) as usize].as_secs_f64() * 1e6
}

#[tokio::main(flavor = "current_thread")]
async fn main() {
    let calls: usize = std::env::var("BENCH_CALLS").ok().and_then(|v| v.parse().ok()).unwrap_or(5000);
    let wasm = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../plugins/text-tools.wasm");
    assert!(wasm.is_file(), "{} is missing: run `cargo xtask plugins`", wasm.display());
    let arguments = json!({ "text": "Hello, World" });
    println!("instantiate + call + drop, text-tools slugify, {calls} calls each");
    println!("{:<10} {:>10} {:>10} {:>10}", "allocator", "median µs", "p99 µs", "calls/s");
    for pooling in [true, false] {
        let options = RuntimeOptions { pooling, cache_dir: None, ..RuntimeOptions::default() };
        let runtime = PluginRuntime::new(options).expect("runtime");
        let plugin = runtime.load(&wasm).await.expect("text-tools loads");
        for _ in 0..200 {
            plugin.call_tool("slugify", &arguments, CallContext::default()).await.expect("warm-up call");
        }
        let mut timings = Vec::with_capacity(calls);
        let started = Instant::now();
        for _ in 0..calls {
            let t = Instant::now();
            let outcome = plugin.call_tool("slugify", &arguments, CallContext::default()).await;
            timings.push(t.elapsed());
            assert!(matches!(outcome, Ok(Outcome::Complete(_))), "{outcome:?}");
        }
        let total = started.elapsed();
        timings.sort();
        let label = if runtime.pooling() { "pooling" } else { "on-demand" };
        println!(
            "{label:<10} {:>10.1} {:>10.1} {:>10.0}",
            percentile(&timings, 0.5),
            percentile(&timings, 0.99),
            calls as f64 / total.as_secs_f64()
        );
    }
}
