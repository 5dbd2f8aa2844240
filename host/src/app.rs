//! Wiring: build the runtime and catalog from a config, keep the catalog in step with the
//! plugins folder, and serve.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

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
use crate::plugin::{self, PluginRuntime, SourceStamp};
use crate::session::Shared;
use crate::transport;

/// The host's running parts.
pub struct Host {
    pub shared: Arc<Shared>,
    pub runtime: Arc<PluginRuntime>,
    plugins_dir: PathBuf,
    watcher: Option<plugin::watch::FolderWatcher>,
}

impl Host {
    /// Create the runtime and load the plugins folder. A plugin that fails is logged and
    /// recorded for `/health`; the others serve.
    pub async fn start(config: &HostConfig) -> anyhow::Result<Self> {
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
            limits: config.rate_limit.map(RateLimiter::new),
            local: Arc::new(config.local_user.clone()),
            requires_token: config.auth.is_some(),
        };
        let shared = Shared::new(catalog, federation, config.state_key(), None, guard);
        let host = Self { shared, runtime, plugins_dir: config.plugins_dir.clone(), watcher: None };
        reconcile(&host.runtime, &host.shared.catalog, &host.plugins_dir, false).await;
        Ok(host)
    }

    /// Load what changed in the plugins folder now.
    pub async fn reload(&self) {
        reconcile(&self.runtime, &self.shared.catalog, &self.plugins_dir, true).await;
    }

    /// Keep the catalog in step with the plugins folder until the host is dropped.
    pub fn watch(&mut self) -> anyhow::Result<()> {
        let (watcher, mut changed) = plugin::watch::watch(&self.plugins_dir)
            .map_err(|e| anyhow::anyhow!("cannot watch {}: {e}", self.plugins_dir.display()))?;
        let runtime = self.runtime.clone();
        let catalog = self.shared.catalog.clone();
        let dir = self.plugins_dir.clone();
        tokio::spawn(async move {
            while changed.recv().await.is_some() {
                reconcile(&runtime, &catalog, &dir, true).await;
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
        let router = transport::router(
            self.shared.clone(),
            transport::HttpOptions {
                allowed_hosts: config.allowed_hosts.clone(),
                allowed_origins: config.allowed_origins.clone(),
                max_request_body_bytes: config.max_request_body_bytes,
                session_idle: config.session_idle,
                gate,
            },
            streams.clone(),
            calls.clone(),
        );
        let drain = {
            let (shutdown, streams) = (shutdown.clone(), streams.clone());
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
                streams.cancel();
            })
        };
        let served = match &config.tls {
            Some(tls) => {
                let listener = crate::tls::TlsListener::new(listener, crate::tls::server_config(tls)?)?;
                tracing::info!("fedmcp serving MCP at https://{address}/mcp (health: https://{address}/health)");
                transport::serve_https(listener, router, shutdown).await
            }
            None => {
                tracing::info!("fedmcp serving MCP at http://{address}/mcp (health: http://{address}/health)");
                transport::serve_http(listener, router, shutdown).await
            }
        };
        drain.abort();
        served?;
        Ok(())
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

/// Bring the catalog in step with the folder: load new and changed plugins, keep a plugin
/// whose new version fails (reporting why), withdraw removed ones. Calls in flight keep the
/// version they started on. With `settle`, a file is loaded only once it stops changing.
async fn reconcile(runtime: &Arc<PluginRuntime>, catalog: &Catalog, dir: &Path, settle: bool) {
    let current = catalog.plugins();
    let files = match plugin::plugin_files(dir) {
        Ok(files) => files,
        Err(error) => {
            tracing::error!(folder = %dir.display(), %error, "cannot read the plugins folder");
            catalog
                .set_plugins(current, vec![LoadFailure { path: dir.display().to_string(), reason: error.to_string() }]);
            return;
        }
    };
    let mut next = Vec::with_capacity(files.len());
    let mut failures = Vec::new();
    for path in &files {
        let existing = current.iter().find(|p| &p.path == path);
        if let Some(plugin) = existing
            && plugin.stamp == SourceStamp::of(path)
        {
            next.push(plugin.clone());
            continue;
        }
        if settle {
            settled(path).await;
        }
        match runtime.load(path).await {
            Ok(plugin) => {
                tracing::info!(
                    plugin = %plugin.name,
                    tools = plugin.tools.len(),
                    resources = plugin.resources.len() + plugin.resource_templates.len(),
                    prompts = plugin.prompts.len(),
                    "{}",
                    if existing.is_some() { "plugin replaced" } else { "plugin loaded" }
                );
                next.push(plugin);
            }
            Err(error) => {
                let kept = existing.is_some();
                tracing::error!(%error, kept_previous_version = kept, "plugin not loaded");
                failures.push(LoadFailure { path: path.display().to_string(), reason: error.to_string() });
                if let Some(plugin) = existing {
                    next.push(plugin.clone());
                }
            }
        }
    }
    for plugin in &current {
        if !files.contains(&plugin.path) {
            tracing::info!(plugin = %plugin.name, "plugin removed");
        }
    }
    catalog.set_plugins(next, failures);
}
