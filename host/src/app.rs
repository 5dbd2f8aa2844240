//! Wiring: build the runtime and catalog from a config, then serve.

use std::sync::Arc;

use tokio_util::sync::CancellationToken;

use crate::catalog::{Catalog, LoadFailure};
use crate::config::HostConfig;
use crate::plugin::{self, PluginRuntime};
use crate::session::Shared;
use crate::transport;

/// The host's running parts.
pub struct Host {
    pub shared: Arc<Shared>,
    pub runtime: Arc<PluginRuntime>,
}

impl Host {
    /// Create the runtime and load the plugins folder. A plugin that fails is logged and
    /// recorded for `/health`; the others serve.
    pub async fn start(config: &HostConfig) -> anyhow::Result<Self> {
        let runtime = PluginRuntime::new(config.runtime.clone())?;
        let catalog = Arc::new(Catalog::new());
        let mut loaded = Vec::new();
        let mut failures = Vec::new();
        for result in plugin::load_dir(&runtime, &config.plugins_dir).await {
            match result {
                Ok(plugin) => {
                    tracing::info!(
                        plugin = %plugin.name,
                        tools = plugin.tools.len(),
                        resources = plugin.resources.len() + plugin.resource_templates.len(),
                        prompts = plugin.prompts.len(),
                        "plugin loaded"
                    );
                    loaded.push(plugin);
                }
                Err(error) => {
                    tracing::error!(%error, "plugin not loaded");
                    let path = match &error {
                        plugin::LoadError::Read { path, .. }
                        | plugin::LoadError::Compile { path, .. }
                        | plugin::LoadError::Link { path, .. }
                        | plugin::LoadError::NoExports { path }
                        | plugin::LoadError::Validate { path, .. } => path.clone(),
                        plugin::LoadError::Manifest(_) => String::new(),
                    };
                    failures.push(LoadFailure {
                        path,
                        reason: error.to_string(),
                    });
                }
            }
        }
        catalog.set_plugins(loaded, failures);
        let shared = Shared::new(catalog, config.state_key(), None);
        Ok(Self { shared, runtime })
    }

    /// Serve Streamable HTTP on the configured address until `shutdown`.
    pub async fn serve_http(
        &self,
        config: &HostConfig,
        shutdown: CancellationToken,
    ) -> anyhow::Result<()> {
        let listener = tokio::net::TcpListener::bind(config.listen)
            .await
            .map_err(|e| anyhow::anyhow!("cannot listen on {}: {e}", config.listen))?;
        let address = listener.local_addr()?;
        let router = transport::router(
            self.shared.clone(),
            transport::HttpOptions {
                allowed_hosts: config.allowed_hosts.clone(),
                allowed_origins: config.allowed_origins.clone(),
                max_request_body_bytes: config.max_request_body_bytes,
            },
            shutdown.clone(),
        );
        tracing::info!(
            "fedmcp serving MCP at http://{address}/mcp (health: http://{address}/health)"
        );
        transport::serve_http(listener, router, shutdown).await?;
        Ok(())
    }
}
