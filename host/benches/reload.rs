//! Hot-reload latency: from a plugin file landing in the watched folder to the catalog's
//! list-changed broadcast (what sessions forward as notifications/tools/list_changed),
//! uncached and from the compile cache; and host start to ready with 10 plugins from a warm
//! cache.
//!
//! `cargo bench --bench reload` (after `cargo xtask plugins`). BENCH_PLUGIN=path picks the
//! component (default plugins/text-tools.wasm).

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use fedmcp::app::Host;
use fedmcp::config::HostConfig;

fn config(plugins: &Path, cache: &Path) -> HostConfig {
    let mut config = HostConfig { plugins_dir: plugins.to_owned(), ..HostConfig::default() };
    config.runtime.cache_dir = Some(cache.to_owned());
    config
}

/// Drop `component` into a watched folder as `name` and time until the catalog announces it.
async fn landing_to_list_changed(host: &Host, dir: &Path, component: &Path, name: &str) -> Duration {
    let mut changes = host.shared.catalog.subscribe();
    let staged = dir.join(format!(".{name}.tmp"));
    std::fs::copy(component, &staged).expect("stage");
    let landed = Instant::now();
    std::fs::rename(&staged, dir.join(name)).expect("land");
    tokio::time::timeout(Duration::from_secs(60), changes.recv()).await.expect("list changed within 60 s").ok();
    landed.elapsed()
}

#[tokio::main]
async fn main() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    let component: PathBuf =
        std::env::var_os("BENCH_PLUGIN").map(PathBuf::from).unwrap_or_else(|| root.join("plugins/text-tools.wasm"));
    assert!(component.is_file(), "{} is missing: run `cargo xtask plugins`", component.display());
    let size_kb = std::fs::metadata(&component).map(|m| m.len() >> 10).unwrap_or(0);
    let work = tempfile::tempdir().expect("temporary folder");
    let (plugins, cache) = (work.path().join("plugins"), work.path().join("cache"));
    std::fs::create_dir_all(&plugins).expect("plugins folder");

    let mut host = Host::start(&config(&plugins, &cache)).await.expect("host starts");
    host.watch().expect("watch");
    println!("{} ({size_kb} KiB)", component.display());
    let uncached = landing_to_list_changed(&host, &plugins, &component, "first.wasm").await;
    println!("file landing -> list_changed, uncached: {:>8.1} ms", uncached.as_secs_f64() * 1e3);
    let cached = landing_to_list_changed(&host, &plugins, &component, "second.wasm").await;
    println!("file landing -> list_changed, cached:   {:>8.1} ms", cached.as_secs_f64() * 1e3);
    drop(host);

    let ten = work.path().join("ten");
    std::fs::create_dir_all(&ten).expect("folder");
    for i in 0..10 {
        std::fs::copy(&component, ten.join(format!("plugin{i}.wasm"))).expect("copy");
    }
    let started = Instant::now();
    let host = Host::start(&config(&ten, &cache)).await.expect("host starts");
    let ready = started.elapsed();
    assert_eq!(host.shared.catalog.plugins().len(), 10);
    println!("host start -> ready, 10 plugins, warm cache: {:>8.1} ms", ready.as_secs_f64() * 1e3);
}
