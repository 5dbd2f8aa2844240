//! What the host counts about itself, for `GET /metrics` (the Prometheus text format, from the
//! `metrics` facade and `metrics-exporter-prometheus`).
//!
//! One recorder per process, like the tracing subscriber: every layer records into it without
//! being handed it, so no layer reaches back up the data flow for a counter. Values that are
//! state rather than events (sessions open, peers up, plugins loaded) are set when scraped
//! ([`Snapshot`]), so they never drift from the state they describe.

use std::collections::HashMap;
use std::sync::{LazyLock, RwLock};
use std::time::Duration;

use metrics::{Histogram, counter, describe_counter, describe_gauge, describe_histogram, gauge, histogram};
use metrics_exporter_prometheus::{Matcher, PrometheusBuilder, PrometheusHandle};

/// The content type of [`encode`]'s text.
pub(crate) const CONTENT_TYPE: &str = "text/plain; version=0.0.4; charset=utf-8";

/// Latency buckets, in seconds, from 50 µs (a Rust plugin's call) to ~13 s (a slow peer, or a
/// plugin at its time limit).
const LATENCY_BUCKETS: [f64; 19] = [
    0.000_05, 0.000_1, 0.000_2, 0.000_4, 0.000_8, 0.001_6, 0.003_2, 0.006_4, 0.012_8, 0.025_6, 0.051_2, 0.102_4,
    0.204_8, 0.409_6, 0.819_2, 1.638_4, 3.276_8, 6.553_6, 13.107_2,
];

/// The thread that drains histogram samples into their buckets every [`UPKEEP_EVERY`].
const UPKEEP_THREAD: &str = "fedmcp-metrics";
const UPKEEP_EVERY: Duration = Duration::from_secs(5);

/// The process's recorder, installed on first use. `None` if another recorder was installed
/// first (an embedding program's): the host then records into that one and `/metrics` says so.
static RECORDER: LazyLock<Option<PrometheusHandle>> = LazyLock::new(|| {
    let recorder = PrometheusBuilder::new()
        .set_buckets_for_metric(Matcher::Suffix("_seconds".to_owned()), &LATENCY_BUCKETS)
        .ok()?
        .build_recorder();
    let handle = recorder.handle();
    metrics::set_global_recorder(recorder).ok()?;
    describe();
    // `build_recorder` starts no upkeep: a histogram holds every sample until a scrape or
    // `run_upkeep` drains it, so a host nobody scrapes would keep two samples of every call.
    let upkeep = handle.clone();
    let spawned = std::thread::Builder::new().name(UPKEEP_THREAD.to_owned()).spawn(move || {
        loop {
            std::thread::sleep(UPKEEP_EVERY);
            upkeep.run_upkeep();
        }
    });
    if let Err(error) = spawned {
        tracing::warn!(%error, "no metrics upkeep thread: histogram samples are drained only when /metrics is scraped");
    }
    Some(handle)
});

fn describe() {
    describe_counter!(
        "fedmcp_requests_total",
        "Uses of tools, resources and prompts (tools/call, resources/read, prompts/get, completion/complete, subscriptions), by method and outcome (ok, tool_error, input_required, task_created, cancelled, error, abandoned, refused)"
    );
    describe_histogram!(
        "fedmcp_request_duration_seconds",
        "Time from admission to answer of an admitted use, by method and what served it (owner_kind plugin or peer, owner its name)"
    );
    describe_histogram!(
        "fedmcp_plugin_instantiate_seconds",
        "Time to instantiate a fresh plugin instance for one call"
    );
    describe_counter!(
        "fedmcp_denials_total",
        "Requests refused by authentication or authorization, by reason (token, session_owner, grant, rate_limit, rate_limit_unavailable, consent_policy, consent_declined, cannot_ask)"
    );
    describe_counter!("fedmcp_consent_asks_total", "Consent questions asked of a caller's user");
    describe_counter!("fedmcp_plugin_loads_total", "Plugin loads and reloads, by outcome (loaded, failed)");
    describe_counter!(
        "fedmcp_compile_cache_lookups_total",
        "Compiled-component cache lookups at plugin load, by outcome (hit, miss)"
    );
    describe_counter!("fedmcp_spans_dropped_total", "Trace spans not exported, by reason (queue_full, stopped)");
    describe_counter!(
        "fedmcp_event_drops_total",
        "Log and progress messages of plugin calls dropped over their event budget"
    );
    describe_gauge!("fedmcp_sessions_open", "Legacy (2025-11-25) HTTP sessions open");
    describe_gauge!("fedmcp_plugins_loaded", "Plugins serving");
    describe_gauge!("fedmcp_plugins_failed", "Plugin files that failed to load");
    describe_gauge!("fedmcp_peer_up", "Whether an imported peer is connected (1) or not (0)");
}

/// Install the recorder (first use does; later calls are free). Everything below records
/// through the `metrics` macros, which record nothing until a recorder is installed.
pub(crate) fn install() {
    LazyLock::force(&RECORDER);
}

/// An admitted use ended with `outcome` (the audit line's outcome: `ok`, `tool error`, `input
/// required`, `error: ...`; `None`: refused after admission, for want of consent).
pub(crate) fn use_ended(method: &'static str, outcome: Option<&str>) {
    let outcome = match outcome {
        None => "refused",
        Some("ok") => "ok",
        Some("tool error") => "tool_error",
        Some("input required") => "input_required",
        Some("task created") => "task_created",
        // A call run as a task is counted once, when the task ends.
        Some("task completed") => "ok",
        Some("task completed: tool error") => "tool_error",
        Some(other) if other.starts_with("task stopped") => "cancelled",
        Some(other) if other.starts_with("error: abandoned") => "abandoned",
        Some(_) => "error",
    };
    counter!("fedmcp_requests_total", "method" => method, "outcome" => outcome).increment(1);
}

/// A use refused before it ran, for `reason`.
pub(crate) fn refused(method: &'static str, reason: &'static str) {
    counter!("fedmcp_requests_total", "method" => method, "outcome" => "refused").increment(1);
    denied(reason);
}

/// A request refused by authentication or authorization, for `reason`.
pub(crate) fn denied(reason: &'static str) {
    counter!("fedmcp_denials_total", "reason" => reason).increment(1);
}

/// The latency histogram of each (method, owner kind) and owner, looked up on every call
/// without building its key (the owner's name copied, the labels hashed) again.
type ServedHistograms = HashMap<(&'static str, &'static str), HashMap<String, Histogram>>;
static SERVED: LazyLock<RwLock<ServedHistograms>> = LazyLock::new(RwLock::default);
/// Owners remembered per (method, owner kind); past this (plugins renamed again and again)
/// the others are looked up the slow way.
const MAX_REMEMBERED_OWNERS: usize = 1024;

/// How long an admitted use took to answer, and what served it.
pub(crate) fn served(method: &'static str, owner_kind: &'static str, owner: &str, took: Duration) {
    let seconds = took.as_secs_f64();
    if let Ok(known) = SERVED.read()
        && let Some(histogram) = known.get(&(method, owner_kind)).and_then(|owners| owners.get(owner))
    {
        histogram.record(seconds);
        return;
    }
    // A handle taken before the recorder is installed would record nowhere, for good.
    install();
    let histogram = histogram!(
        "fedmcp_request_duration_seconds", "method" => method, "owner_kind" => owner_kind, "owner" => owner.to_owned()
    );
    histogram.record(seconds);
    if let Ok(mut known) = SERVED.write() {
        let owners = known.entry((method, owner_kind)).or_default();
        if owners.len() < MAX_REMEMBERED_OWNERS {
            owners.insert(owner.to_owned(), histogram);
        }
    }
}

pub(crate) fn instantiated(took: Duration) {
    histogram!("fedmcp_plugin_instantiate_seconds").record(took.as_secs_f64());
}

pub(crate) fn consent_asked() {
    counter!("fedmcp_consent_asks_total").increment(1);
}

/// A plugin load or reload ended; `cached` says whether its compiled form came from the cache
/// (`None`: no cache was asked).
pub(crate) fn plugin_loaded(loaded: bool, cached: Option<bool>) {
    let outcome = if loaded { "loaded" } else { "failed" };
    counter!("fedmcp_plugin_loads_total", "outcome" => outcome).increment(1);
    if let Some(cached) = cached {
        let outcome = if cached { "hit" } else { "miss" };
        counter!("fedmcp_compile_cache_lookups_total", "outcome" => outcome).increment(1);
    }
}

pub(crate) fn span_dropped(reason: &'static str) {
    counter!("fedmcp_spans_dropped_total", "reason" => reason).increment(1);
}

pub(crate) fn events_dropped(count: u64) {
    counter!("fedmcp_event_drops_total").increment(count);
}

/// The state `/metrics` reports as of the scrape.
pub(crate) struct Snapshot<'a> {
    pub sessions_open: usize,
    pub plugins_loaded: usize,
    pub plugins_failed: usize,
    /// Each peer's name and whether it is connected.
    pub peers: &'a [(String, bool)],
}

/// Everything recorded, with `snapshot`'s state, in the Prometheus text format; `None` when
/// another recorder took the process first.
pub(crate) fn encode(snapshot: &Snapshot<'_>) -> Option<String> {
    let handle = RECORDER.as_ref()?;
    gauge!("fedmcp_sessions_open").set(snapshot.sessions_open as f64);
    gauge!("fedmcp_plugins_loaded").set(snapshot.plugins_loaded as f64);
    gauge!("fedmcp_plugins_failed").set(snapshot.plugins_failed as f64);
    for (peer, up) in snapshot.peers {
        gauge!("fedmcp_peer_up", "peer" => peer.clone()).set(if *up { 1.0 } else { 0.0 });
    }
    Some(handle.render())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A histogram keeps every sample recorded until something drains it: a scrape, or the
    /// recorder's upkeep. A host nobody scrapes (stdio, or no Prometheus configured) records
    /// two samples per call, so without an upkeep of its own its memory grows with every call.
    #[cfg(target_os = "linux")]
    #[test]
    fn histograms_are_drained_without_a_scrape() {
        install();
        let threads = || -> Vec<String> {
            std::fs::read_dir("/proc/self/task")
                .expect("this process's threads")
                .filter_map(|task| std::fs::read_to_string(task.ok()?.path().join("comm")).ok())
                .map(|name| name.trim().to_owned())
                .collect()
        };
        // A new thread bears its creator's name until it first runs and names itself.
        let deadline = std::time::Instant::now() + Duration::from_secs(10);
        while !threads().iter().any(|name| name == UPKEEP_THREAD) && std::time::Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(20));
        }
        let threads = threads();
        assert!(threads.iter().any(|name| name == UPKEEP_THREAD), "no {UPKEEP_THREAD} thread among {threads:?}");
    }

    #[test]
    fn uses_are_counted_by_method_and_outcome_and_state_is_read_at_scrape() {
        install();
        use_ended("tools/call", Some("ok"));
        use_ended("tools/call", Some("tool error"));
        use_ended("tools/call", Some("error: abandoned (the request was cancelled)"));
        refused("tools/call", "grant");
        served("tools/call", "plugin", "text-tools", Duration::from_micros(80));
        let peers = [("b".to_owned(), true), ("c".to_owned(), false)];
        let text = encode(&Snapshot { sessions_open: 3, plugins_loaded: 2, plugins_failed: 1, peers: &peers })
            .expect("the recorder is this process's");
        for line in [
            "# TYPE fedmcp_requests_total counter",
            r#"fedmcp_requests_total{method="tools/call",outcome="ok"}"#,
            r#"fedmcp_requests_total{method="tools/call",outcome="tool_error"}"#,
            r#"fedmcp_requests_total{method="tools/call",outcome="abandoned"}"#,
            r#"fedmcp_requests_total{method="tools/call",outcome="refused"}"#,
            r#"fedmcp_denials_total{reason="grant"}"#,
            r#"fedmcp_request_duration_seconds_bucket{method="tools/call",owner_kind="plugin",owner="text-tools",le="0.0001"}"#,
            "fedmcp_sessions_open 3",
            "fedmcp_plugins_failed 1",
            r#"fedmcp_peer_up{peer="b"} 1"#,
            r#"fedmcp_peer_up{peer="c"} 0"#,
        ] {
            assert!(text.contains(line), "{line} missing from:\n{text}");
        }
    }
}
