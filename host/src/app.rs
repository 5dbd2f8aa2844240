//! Wiring: build the runtime and catalog from a config, keep the catalog in step with the
//! plugins folder, and serve.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::sync::{Mutex, OwnedMutexGuard};
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::auth::Guard;
use crate::auth::audit::AuditLog;
use crate::auth::edge::Gate;
use crate::auth::jwt::Verifier;
use crate::auth::keys::Signer;
use crate::auth::limits::RateLimiter;
use crate::catalog::{Catalog, LoadFailure};
use crate::config::HostConfig;
use crate::federation::Federation;
use crate::plugin::{self, Plugin, PluginRuntime, SourceStamp};
use crate::session::Shared;
use crate::transport;

/// The host's running parts.
pub struct Host {
    pub shared: Arc<Shared>,
    pub runtime: Arc<PluginRuntime>,
    plugins_dir: PathBuf,
    watcher: Option<plugin::watch::FolderWatcher>,
    /// One pass over the plugins folder at a time (the first load, a reload, the watcher's):
    /// each starts from what the one before it served.
    reconciling: Arc<Mutex<()>>,
}

impl Host {
    /// Create the runtime and load the plugins folder, returning once every plugin has
    /// loaded or failed. A plugin that fails is logged and recorded for `/health`; the others
    /// serve.
    pub async fn start(config: &HostConfig) -> anyhow::Result<Self> {
        let host = Self::new(config)?;
        let pass = host.reconciling.clone().lock_owned().await;
        reconcile(&host.folder(), Pass::First, pass).await;
        Ok(host)
    }

    /// Create the runtime, watch the plugins folder, and load its plugins in the background:
    /// returns at once, so the host can listen while large components compile. Each plugin
    /// is served (and clients told) as soon as it has loaded; `/health` reports what is
    /// still loading until each has loaded or failed.
    pub async fn launch(config: &HostConfig) -> anyhow::Result<Self> {
        // Before the first load, so `/metrics` counts it.
        crate::metrics::install();
        let mut host = Self::new(config)?;
        // Held from before the watcher starts until the first load has ended: a change seen
        // meanwhile is loaded by the pass that follows it, never lost or undone.
        let pass = host.reconciling.clone().lock_owned().await;
        // Not ready from the first moment `/health` can be asked.
        let pending = plugin::plugin_files(&host.plugins_dir).unwrap_or_default();
        host.shared.catalog.loading().start(pending.iter().map(|path| plugin_name(path)).collect());
        host.watch()?;
        // Pulled into the folder in the background; the watcher loads what they write.
        plugin::oci::source::follow_all(&config.plugin_sources, &host.plugins_dir, host.shared.catalog.sources());
        let folder = host.folder();
        let catalog = host.shared.catalog.clone();
        tokio::spawn(async move {
            let first = tokio::spawn(async move { reconcile(&folder, Pass::First, pass).await });
            // A pass that ended abnormally (a bug) must not leave `/health`, stdio clients and
            // whatever waits for the log line waiting for ever.
            if let Err(error) = first.await {
                catalog.loading().start(Vec::new());
                tracing::error!(%error, "plugins ready: the first load ended abnormally");
            }
        });
        Ok(host)
    }

    fn new(config: &HostConfig) -> anyhow::Result<Self> {
        crate::tls::install_default_provider();
        let runtime = PluginRuntime::new(config.runtime.clone())?;
        let host_id = random_id();
        let catalog = Arc::new(Catalog::new(host_id.clone()));
        let signer = match &config.identity {
            Some(identity) => Some(Arc::new(Signer::load(&identity.name, &identity.key)?)),
            None => None,
        };
        let federation = Arc::new(Federation::start(&config.peers, &host_id, config.max_hops, signer.as_ref()));
        for peer in &federation.peers {
            let (catalog, peer) = (catalog.clone(), peer.clone());
            let mut listing = peer.listing();
            let mut updates = peer.updates();
            let (updated_catalog, updated_peer) = (catalog.clone(), peer.clone());
            tokio::spawn(async move {
                while listing.changed().await.is_ok() {
                    let current = listing.borrow_and_update().clone();
                    catalog.set_peer(peer.clone(), current);
                }
            });
            // A peer's resource updates reach this host's subscribers, for the resources this
            // host serves from that peer (another owner may have kept the URI).
            tokio::spawn(async move {
                loop {
                    match updates.recv().await {
                        Ok(uri) if updated_catalog.peer_serves(&updated_peer, &uri) => {
                            updated_catalog.resource_updated(&uri);
                        }
                        Ok(_) | Err(tokio::sync::broadcast::error::RecvError::Lagged(_)) => {}
                        Err(tokio::sync::broadcast::error::RecvError::Closed) => break,
                    }
                }
            });
        }
        let audit = match &config.audit_log {
            Some(path) => AuditLog::open(path).map_err(|e| anyhow::anyhow!("audit.file {}: {e}", path.display()))?,
            None => AuditLog::disabled(),
        };
        let guard = Guard {
            audit: Arc::new(audit),
            consent: config.consent.clone(),
            limits: config.rate_limit.clone().map(RateLimiter::new).transpose().map_err(|e| anyhow::anyhow!(e))?,
            local: Arc::new(config.local_user.clone()),
            requires_token: config.auth.is_some(),
        };
        let tracing = config.telemetry.as_ref().map(crate::telemetry::Tracing::start).transpose()?;
        let shared = Shared::replica(
            catalog,
            federation,
            config.state_key(),
            None,
            guard,
            config.runtime.tasks,
            config.replica_id.clone(),
            tracing,
        );
        Ok(Self {
            shared,
            runtime,
            plugins_dir: config.plugins_dir.clone(),
            watcher: None,
            reconciling: Arc::default(),
        })
    }

    fn folder(&self) -> Folder {
        Folder { runtime: self.runtime.clone(), catalog: self.shared.catalog.clone(), dir: self.plugins_dir.clone() }
    }

    /// Load what changed in the plugins folder now.
    pub async fn reload(&self) {
        let pass = self.reconciling.clone().lock_owned().await;
        reconcile(&self.folder(), Pass::Change, pass).await;
    }

    /// Keep the catalog in step with the plugins folder until the host is dropped.
    pub fn watch(&mut self) -> anyhow::Result<()> {
        let (watcher, mut changed) = plugin::watch::watch(&self.plugins_dir)
            .map_err(|e| anyhow::anyhow!("cannot watch {}: {e}", self.plugins_dir.display()))?;
        let folder = self.folder();
        let reconciling = self.reconciling.clone();
        tokio::spawn(async move {
            while changed.recv().await.is_some() {
                let pass = reconciling.clone().lock_owned().await;
                reconcile(&folder, Pass::Change, pass).await;
            }
        });
        self.watcher = Some(watcher);
        tracing::info!(folder = %self.plugins_dir.display(), "watching for plugin changes");
        Ok(())
    }

    /// Serve Streamable HTTP on the configured address until `shutdown`, then stop accepting,
    /// let calls in flight finish for up to `grace`, and close the remaining streams.
    pub async fn serve_http(
        &self,
        config: &HostConfig,
        shutdown: CancellationToken,
        grace: std::time::Duration,
    ) -> anyhow::Result<()> {
        let gate = match &config.auth {
            Some(settings) => Some(Arc::new(Gate::new(
                Verifier::new(settings.clone())?,
                self.shared.guard.audit.clone(),
                if config.tls.is_some() { "https" } else { "http" },
            ))),
            None => None,
        };
        let listener = tokio::net::TcpListener::bind(config.listen)
            .await
            .map_err(|e| anyhow::anyhow!("cannot listen on {}: {e}", config.listen))?;
        let address = listener.local_addr()?;
        // Cancelling `streams` ends every open SSE stream and session; it waits until the calls
        // in flight are done, or `grace` has passed.
        let streams = CancellationToken::new();
        let calls = TaskTracker::new();
        let websockets = TaskTracker::new();
        let router = transport::router(
            self.shared.clone(),
            transport::HttpOptions {
                allowed_hosts: config.allowed_hosts.clone(),
                allowed_origins: config.allowed_origins.clone(),
                max_request_body_bytes: config.max_request_body_bytes,
                session_idle: config.session_idle,
                gate,
                websocket_ping: config.websocket_ping,
                websockets: websockets.clone(),
            },
            streams.clone(),
            calls.clone(),
        );
        let drain = {
            let (shutdown, streams, shared) = (shutdown.clone(), streams.clone(), self.shared.clone());
            tokio::spawn(async move {
                shutdown.cancelled().await;
                calls.close();
                tracing::info!(
                    requests = calls.len(),
                    "shutting down: no new connections; letting requests in flight finish"
                );
                if tokio::time::timeout(grace, calls.wait()).await.is_err() {
                    tracing::warn!(
                        requests = calls.len(),
                        grace_s = grace.as_secs(),
                        "requests still in flight; closing them"
                    );
                }
                // Tasks outlive requests: those still open end failed, their calls stopped and
                // their audit lines written.
                let open = shared.fail_open_tasks().await;
                if open > 0 {
                    tracing::info!(tasks = open, "shutting down: open tasks failed");
                }
                streams.cancel();
            })
        };
        let served = match &config.tls {
            Some(tls) => {
                let listener = crate::tls::TlsListener::new(listener, crate::tls::server_config(tls)?)?;
                tracing::info!("fedmcp serving MCP at https://{address}/mcp (health: https://{address}/health)");
                tracing::info!("MCP over WebSocket at wss://{address}/ws (subprotocol mcp)");
                transport::serve_https(listener, router, shutdown).await
            }
            None => {
                tracing::info!("fedmcp serving MCP at http://{address}/mcp (health: http://{address}/health)");
                tracing::info!("MCP over WebSocket at ws://{address}/ws (subprotocol mcp)");
                transport::serve_http(listener, router, shutdown).await
            }
        };
        // Upgraded WebSocket connections outlive the HTTP server's graceful shutdown: they close
        // (1001) once the drain has let their calls finish and cancelled `streams`.
        websockets.close();
        if served.is_ok() && !websockets.is_empty() {
            let _ = drain.await;
            if tokio::time::timeout(Duration::from_secs(5), websockets.wait()).await.is_err() {
                tracing::warn!(connections = websockets.len(), "WebSocket connections did not close in time");
            }
        } else {
            drain.abort();
        }
        self.flush_traces().await;
        served?;
        Ok(())
    }

    /// Send the spans still queued to the collector (with `[telemetry]`), as the host stops.
    pub async fn flush_traces(&self) {
        if let Some(tracing) = &self.shared.tracing {
            tracing.shutdown().await;
        }
    }
}

/// Refuse to serve beyond loopback without authentication, unless the operator said so (and
/// then say it loudly).
pub fn check_exposure(config: &HostConfig) -> anyhow::Result<()> {
    if config.auth.is_some() || config.listen.ip().is_loopback() {
        return Ok(());
    }
    if config.allow_unauthenticated_public {
        tracing::warn!(
            listen = %config.listen,
            "serving WITHOUT authentication on a non-loopback address (http.allow_unauthenticated_public): anyone \
             who can reach it may use every plugin and peer"
        );
        return Ok(());
    }
    anyhow::bail!(
        "refusing to listen on {} without authentication: configure [auth] (see README), listen on 127.0.0.1, or \
         set http.allow_unauthenticated_public = true to accept the risk",
        config.listen
    )
}

/// This host's id in the federation: random per start, so that two hosts never share one.
fn random_id() -> String {
    let mut bytes = [0u8; 8];
    if getrandom::fill(&mut bytes).is_err() {
        let nanos = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap_or_default().as_nanos();
        bytes = ((nanos as u64) ^ u64::from(std::process::id()).rotate_left(32)).to_le_bytes();
    }
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// Wait until a file stops changing (a copy in progress), at most a few seconds.
async fn settled(path: &Path) -> SourceStamp {
    let deadline = Instant::now() + Duration::from_secs(5);
    let mut stamp = SourceStamp::of(path);
    loop {
        tokio::time::sleep(plugin::watch::SETTLE).await;
        let now = SourceStamp::of(path);
        if now == stamp || Instant::now() > deadline {
            return now;
        }
        stamp = now;
    }
}

/// What a pass over the plugins folder works on.
struct Folder {
    runtime: Arc<PluginRuntime>,
    catalog: Arc<Catalog>,
    dir: PathBuf,
}

/// Which pass over the plugins folder.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Pass {
    /// The first load: `/health` tracks it, and files are loaded as they are.
    First,
    /// After a change: a file is loaded once it stops changing (a copy may be in progress).
    Change,
}

/// A plugin's name: its file's stem (as [`PluginRuntime::load`] names it).
fn plugin_name(path: &Path) -> String {
    path.file_stem().and_then(|s| s.to_str()).unwrap_or("plugin").to_owned()
}

/// Bring the catalog in step with the folder: load new and changed plugins, a few at a time
/// and the smallest first, serving each as soon as it has loaded; keep a plugin whose new
/// version fails (reporting why); withdraw removed ones. Calls in flight keep the version
/// they started on. `_turn` is held until the pass ends.
async fn reconcile(folder: &Folder, pass: Pass, _turn: OwnedMutexGuard<()>) {
    let Folder { runtime, catalog, dir } = folder;
    let started = Instant::now();
    let current = catalog.plugins();
    let files = match plugin::plugin_files(dir) {
        Ok(files) => files,
        Err(error) => {
            tracing::error!(folder = %dir.display(), %error, "cannot read the plugins folder");
            catalog
                .set_plugins(current, vec![LoadFailure { path: dir.display().to_string(), reason: error.to_string() }]);
            if pass == Pass::First {
                catalog.loading().start(Vec::new());
                tracing::info!(loaded = 0, failed = 1, "plugins ready: every plugin has loaded or failed");
            }
            return;
        }
    };
    for plugin in &current {
        if !files.contains(&plugin.path) {
            tracing::info!(plugin = %plugin.name, "plugin removed");
        }
    }
    // Unchanged plugins stay; a changed one serves its previous version until its new one
    // has loaded.
    let mut next: Vec<Arc<Plugin>> = current.iter().filter(|p| files.contains(&p.path)).cloned().collect();
    let mut pending: Vec<(u64, PathBuf)> = files
        .iter()
        .filter(|path| !current.iter().any(|p| &p.path == *path && p.stamp == SourceStamp::of(path)))
        .map(|path| (std::fs::metadata(path).map(|m| m.len()).unwrap_or(u64::MAX), path.clone()))
        .collect();
    pending.sort();
    // A file's last failure stands until its new load ends.
    let mut failures: Vec<LoadFailure> = catalog
        .failures()
        .into_iter()
        .filter(|f| pending.iter().any(|(_, path)| path.display().to_string() == f.path))
        .collect();
    if pass == Pass::First {
        catalog.loading().start(pending.iter().map(|(_, path)| plugin_name(path)).collect());
    }
    if pending.is_empty() || next.len() < current.len() {
        catalog.set_plugins(next.clone(), failures.clone());
    }
    // Compiling is CPU-bound (and compiles in parallel itself): more loads at once than
    // cores would only delay the small plugins behind the large ones. Loads start in order,
    // the smallest first, each as soon as one ends.
    let at_once = std::thread::available_parallelism().map_or(2, |n| n.get()).max(2);
    let mut queue = pending.into_iter().map(|(_, path)| path);
    let mut loads = JoinSet::new();
    // Which file each load is, to report a load that ended abnormally (a panic).
    let mut loading_paths = HashMap::new();
    let mut start_next = |loads: &mut JoinSet<_>, loading_paths: &mut HashMap<_, _>| {
        let Some(path) = queue.next() else { return };
        let (runtime, loaded_path) = (runtime.clone(), path.clone());
        let load = loads.spawn(async move {
            if pass == Pass::Change {
                settled(&loaded_path).await;
            }
            runtime.load(&loaded_path).await
        });
        loading_paths.insert(load.id(), path);
    };
    for _ in 0..at_once {
        start_next(&mut loads, &mut loading_paths);
    }
    let (mut loaded, mut failed) = (0usize, 0usize);
    while let Some(joined) = loads.join_next_with_id().await {
        start_next(&mut loads, &mut loading_paths);
        let (path, result) = match joined {
            Ok((id, result)) => (loading_paths.remove(&id), result.map_err(|e| e.to_string())),
            Err(error) => (loading_paths.remove(&error.id()), Err(format!("the load ended abnormally: {error}"))),
        };
        let Some(path) = path else { continue };
        let shown = path.display().to_string();
        failures.retain(|f| f.path != shown);
        let existing = next.iter().position(|p| p.path == path);
        match result {
            Ok(plugin) => {
                loaded += 1;
                tracing::info!(
                    plugin = %plugin.name,
                    tools = plugin.tools.len(),
                    resources = plugin.resources.len() + plugin.resource_templates.len(),
                    prompts = plugin.prompts.len(),
                    "{}",
                    if existing.is_some() { "plugin replaced" } else { "plugin loaded" }
                );
                match existing {
                    Some(index) => next[index] = plugin,
                    None => next.push(plugin),
                }
            }
            Err(reason) => {
                failed += 1;
                tracing::error!(error = %reason, kept_previous_version = existing.is_some(), "plugin not loaded");
                failures.push(LoadFailure { path: shown, reason });
            }
        }
        catalog.set_plugins(next.clone(), failures.clone());
        if pass == Pass::First {
            catalog.loading().done(&plugin_name(&path));
        }
    }
    if pass == Pass::First {
        // Whatever ended abnormally is not loading any more either.
        catalog.loading().start(Vec::new());
        tracing::info!(
            loaded,
            failed,
            elapsed_ms = started.elapsed().as_millis() as u64,
            "plugins ready: every plugin has loaded or failed"
        );
    }
}
