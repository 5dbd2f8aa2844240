//! One peer: its supervised connection, what it lists, and calls forwarded to it.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use rmcp::RoleClient;
use rmcp::model::{Prompt, ProtocolVersion, Resource, ResourceTemplate, ServerNotification, SubscriptionFilter, Tool};
use rmcp::service::{ClientLifecycleMode, ClientServiceExt, RunningService, ServiceError};
use serde_json::{Value, json};
use tokio::sync::{Notify, watch};

use super::active_calls::{ActiveCalls, ListChanges};
use super::client::{CountingTransport, PeerClient, StreamMark};
use super::credentials::{Minter, PeerHttpClient, with_causes};
use super::loops;
use crate::call::ListKind;
use crate::config::{PeerConfig, PeerConnect, PeerCredentials, PeerTarget};

mod calls;
#[cfg(test)]
mod tests;

/// The HTTP client for a peer: its own CA and client certificate when configured.
fn peer_http_client(tls: &crate::tls::PeerTls) -> Result<reqwest::Client, String> {
    let builder = match crate::tls::client_config(tls).map_err(|e| e.to_string())? {
        Some(config) => reqwest::Client::builder().tls_backend_preconfigured(config),
        None => reqwest::Client::builder(),
    };
    builder.build().map_err(|e| format!("cannot make the HTTP client: {e}"))
}

/// rmcp's handle on the peer, as its client.
type Upstream = rmcp::Peer<RoleClient>;

/// How a stateless tools/call reaches a 2026-07-28 peer over HTTP without rmcp's client: the
/// same HTTP client, URL, headers and credentials as the peer's connection (see
/// `crate::relay`).
pub(crate) struct Relay {
    http: reqwest::Client,
    /// Parsed once: parsing it for every call showed in the relay's profile.
    url: reqwest::Url,
    /// The configured headers, and the static token of `token_file`.
    headers: reqwest::header::HeaderMap,
}

const CONNECT_TIMEOUT: Duration = Duration::from_secs(20);
const FIRST_BACKOFF: Duration = Duration::from_millis(250);
const MAX_BACKOFF: Duration = Duration::from_secs(15);
/// How long a call waits for a peer that is connecting (at first use, or reconnecting).
const CONNECT_WAIT: Duration = Duration::from_secs(5);
/// How often a connection's liveness is checked besides its own signals.
const LIVENESS_CHECK: Duration = Duration::from_millis(500);

/// What a peer serves, under its own names, after filters and the loop guard.
#[derive(Debug, Default)]
pub(crate) struct PeerListing {
    pub tools: Vec<Tool>,
    pub prompts: Vec<Prompt>,
    pub resources: Vec<Resource>,
    pub templates: Vec<ResourceTemplate>,
    /// Entries dropped because they came back to this host through a loop.
    pub looped: Vec<String>,
    /// Lists the peer announced as changed; passed on to clients even when the merged view
    /// looks the same (the peer may have changed what an entry does).
    pub announced: Vec<ListKind>,
}

#[derive(Debug, Clone)]
enum State {
    Waiting,
    Connecting { attempt: u32 },
    Up { protocol: String, since: Instant },
    Down { reason: String, attempt: u32 },
}

pub struct Peer {
    pub config: PeerConfig,
    host_id: String,
    max_hops: usize,
    upstream: watch::Sender<Option<Upstream>>,
    state: Mutex<State>,
    listing: watch::Sender<Arc<PeerListing>>,
    calls: Arc<ActiveCalls>,
    woken: AtomicBool,
    wake: Notify,
    /// Whether the first connection attempt has ended (either way).
    attempted: watch::Sender<bool>,
    /// A call found the connection gone.
    lost: Notify,
    /// Mints this host's tokens for the peer (`auth = "identity"`).
    minter: Option<Arc<Minter>>,
    /// Set while the peer is up, speaks 2026-07-28 and is reached over HTTP.
    relay: std::sync::RwLock<Option<Arc<Relay>>>,
    /// URIs of imported resources the peer says were updated.
    updated: tokio::sync::broadcast::Sender<String>,
}

impl Peer {
    pub(crate) fn start(
        config: PeerConfig,
        host_id: String,
        max_hops: usize,
        minter: Option<Arc<Minter>>,
    ) -> Arc<Self> {
        let peer = Arc::new(Self {
            woken: AtomicBool::new(config.connect == PeerConnect::Start),
            config,
            host_id,
            max_hops,
            upstream: watch::Sender::new(None),
            state: Mutex::new(State::Waiting),
            listing: watch::Sender::new(Arc::default()),
            calls: Arc::default(),
            wake: Notify::new(),
            attempted: watch::Sender::new(false),
            lost: Notify::new(),
            minter,
            relay: std::sync::RwLock::new(None),
            updated: tokio::sync::broadcast::channel(256).0,
        });
        tokio::spawn(peer.clone().supervise());
        peer
    }

    pub(crate) fn name(&self) -> &str {
        &self.config.name
    }

    /// The namespace its entries are served under (`""`: none).
    pub(crate) fn namespace(&self) -> &str {
        &self.config.namespace
    }

    /// URIs of the peer's resources it says were updated (this host subscribes to every
    /// resource it imports, so it can tell its own subscribers).
    pub(crate) fn updates(&self) -> tokio::sync::broadcast::Receiver<String> {
        self.updated.subscribe()
    }

    /// What the peer lists, updated on every refresh.
    pub(crate) fn listing(&self) -> watch::Receiver<Arc<PeerListing>> {
        self.listing.subscribe()
    }

    /// Connect now if the peer waits for its first use; whether it was waiting.
    pub(crate) fn wake(&self) -> bool {
        let was_waiting = !self.woken.swap(true, Ordering::SeqCst);
        if was_waiting {
            self.wake.notify_one();
        }
        was_waiting
    }

    /// Wait (at most `limit`) until the first connection attempt has ended.
    pub(crate) async fn first_attempt(&self, limit: Duration) {
        let mut attempted = self.attempted.subscribe();
        let _ = tokio::time::timeout(limit, attempted.wait_for(|done| *done)).await;
    }

    fn set_state(&self, state: State) {
        if let Ok(mut guard) = self.state.lock() {
            *guard = state;
        }
    }

    /// Whether the peer is up, and its report for `/health`.
    pub(crate) fn health(&self) -> (bool, Value) {
        let state = self.state.lock().map(|s| s.clone()).unwrap_or(State::Waiting);
        let listing = self.listing.borrow().clone();
        let mut report = json!({
            "name": self.config.name,
            "target": self.config.target.to_string(),
            "tools": listing.tools.len(),
            "resources": listing.resources.len() + listing.templates.len(),
            "prompts": listing.prompts.len(),
        });
        let (unattributed, over_budget) = self.calls.dropped();
        report["dropped"] = json!({
            "unattributed": unattributed,
            "over_budget": over_budget,
            "reason": "log messages and requests the peer sent outside the response stream of a call, and events \
                       past a forwarded call's budget",
        });
        if !listing.looped.is_empty() {
            report["loop"] = json!({
                "dropped": listing.looped,
                "reason": "these entries already passed through this host; importing them would form a loop",
            });
        }
        let up = match state {
            State::Up { protocol, since } => {
                report["protocol"] = json!(protocol);
                report["up_for_s"] = json!(since.elapsed().as_secs());
                true
            }
            State::Waiting => {
                report["state"] = json!("waiting for first use");
                false
            }
            State::Connecting { attempt } => {
                report["state"] = json!("connecting");
                report["attempt"] = json!(attempt);
                false
            }
            State::Down { reason, attempt } => {
                report["state"] = json!("down");
                report["reason"] = json!(reason);
                report["attempt"] = json!(attempt);
                false
            }
        };
        (up, report)
    }

    async fn supervise(self: Arc<Self>) {
        if !self.woken.load(Ordering::SeqCst) {
            self.wake.notified().await;
        }
        let mut backoff = FIRST_BACKOFF;
        let mut attempt = 0u32;
        loop {
            attempt += 1;
            self.set_state(State::Connecting { attempt });
            let changed = Arc::new(ListChanges::default());
            let client = PeerClient {
                peer_name: self.config.name.clone(),
                calls: self.calls.clone(),
                changed: changed.clone(),
                updated: self.updated.clone(),
            };
            let connected = tokio::time::timeout(CONNECT_TIMEOUT, self.connect(client)).await;
            let connected = match connected {
                Ok(Ok((service, relay))) => match self.refresh(service.peer(), Vec::new()).await {
                    Ok(()) => Ok(Ok((service, relay))),
                    Err(reason) => Ok(Err(reason)),
                },
                Ok(Err(reason)) => Ok(Err(reason)),
                Err(elapsed) => Err(elapsed),
            };
            self.attempted.send_replace(true);
            match connected {
                Ok(Ok((service, relay))) => {
                    attempt = 0;
                    backoff = FIRST_BACKOFF;
                    let reason = self.serve(service, &changed, relay).await;
                    tracing::warn!(peer = %self.config.name, %reason, "peer connection lost; reconnecting");
                    self.set_state(State::Down { reason, attempt: 0 });
                }
                Ok(Err(reason)) => {
                    tracing::warn!(peer = %self.config.name, %reason, attempt, "cannot connect to peer");
                    self.set_state(State::Down { reason, attempt });
                }
                Err(_) => {
                    let reason = format!("no answer within {} s", CONNECT_TIMEOUT.as_secs());
                    tracing::warn!(peer = %self.config.name, %reason, attempt, "cannot connect to peer");
                    self.set_state(State::Down { reason, attempt });
                }
            }
            tokio::time::sleep(backoff).await;
            backoff = (backoff * 2).min(MAX_BACKOFF);
        }
    }

    /// Connect with rmcp's client; for an HTTP peer, also what a relayed call needs.
    async fn connect(
        &self,
        client: PeerClient,
    ) -> Result<(RunningService<RoleClient, PeerClient>, Option<Relay>), String> {
        // A peer that speaks 2026-07-28 is used statelessly, so it asks for input with MRTR
        // and the caller's protocol decides how that input is gathered; others get a legacy
        // session.
        let lifecycle = ClientLifecycleMode::Auto {
            preferred_versions: vec![ProtocolVersion::V_2026_07_28],
            legacy_version: Some(ProtocolVersion::V_2025_11_25),
        };
        match &self.config.target {
            PeerTarget::Url(url) => {
                use rmcp::transport::StreamableHttpClientTransport;
                use rmcp::transport::streamable_http_client::StreamableHttpClientTransportConfig;
                let mut config = StreamableHttpClientTransportConfig::with_uri(url.as_str());
                for (name, value) in &self.config.headers {
                    let name = reqwest::header::HeaderName::from_bytes(name.as_bytes())
                        .map_err(|e| format!("header {name:?}: {e}"))?;
                    let value =
                        reqwest::header::HeaderValue::from_str(value).map_err(|e| format!("header {name}: {e}"))?;
                    config.custom_headers.insert(name, value);
                }
                if let PeerCredentials::TokenFile(path) = &self.config.credentials {
                    let token = std::fs::read_to_string(path)
                        .map_err(|e| format!("cannot read the token file {}: {e}", path.display()))?;
                    config.auth_header = Some(token.trim().to_owned());
                }
                let mut headers: reqwest::header::HeaderMap = config.custom_headers.clone().into_iter().collect();
                if let Some(token) = &config.auth_header {
                    let value = reqwest::header::HeaderValue::from_str(&format!("Bearer {token}"))
                        .map_err(|e| format!("the token file's token cannot be sent: {e}"))?;
                    headers.insert(reqwest::header::AUTHORIZATION, value);
                }
                let inner = peer_http_client(&self.config.tls)?;
                let relay_url = reqwest::Url::parse(url).map_err(|e| format!("the peer's URL {url:?}: {e}"))?;
                let relay = Relay { http: inner.clone(), url: relay_url, headers };
                let mark = Arc::new(StreamMark::new()?);
                let http = PeerHttpClient { inner, minter: self.minter.clone(), mark: mark.clone() };
                let transport = StreamableHttpClientTransport::with_client(http, config);
                let transport = CountingTransport { inner: transport, calls: self.calls.clone(), mark: Some(mark) };
                let service = client.serve_with_lifecycle(transport, lifecycle).await.map_err(|e| with_causes(&e))?;
                Ok((service, Some(relay)))
            }
            PeerTarget::Command { program, args, env } => {
                let mut command = tokio::process::Command::new(program);
                command.args(args).envs(env.iter().map(|(k, v)| (k, v)));
                let transport = rmcp::transport::TokioChildProcess::new(command)
                    .map_err(|e| format!("cannot start {program}: {e}"))?;
                // No response streams on stdio: the peer's log messages cannot be tied to a call.
                let transport = CountingTransport { inner: transport, calls: self.calls.clone(), mark: None };
                let service = client.serve_with_lifecycle(transport, lifecycle).await.map_err(|e| with_causes(&e))?;
                Ok((service, None))
            }
        }
    }

    /// Serve a live connection until it is lost; why it was lost.
    async fn serve(
        &self,
        service: RunningService<RoleClient, PeerClient>,
        changed: &ListChanges,
        relay: Option<Relay>,
    ) -> String {
        let upstream = service.peer().clone();
        let protocol = upstream.peer_info().map(|info| info.protocol_version.to_string()).unwrap_or_default();
        let modern = upstream.peer_info().is_some_and(|info| info.protocol_version >= ProtocolVersion::V_2026_07_28);
        // A 2026-07-28 peer tells its listeners about changes; a legacy one notifies the
        // session (see PeerClient). Either way this host subscribes to the resources it imports.
        let mut subscription = if modern { self.listen(&upstream).await } else { None };
        let mut subscribed = std::collections::HashSet::new();
        if !modern {
            self.subscribe_resources(&upstream, &mut subscribed).await;
        }
        tracing::info!(peer = %self.config.name, %protocol, "peer connected");
        self.set_state(State::Up { protocol, since: Instant::now() });
        self.set_relay(relay.filter(|_| modern).map(Arc::new));
        self.upstream.send_replace(Some(upstream.clone()));
        let mut liveness = tokio::time::interval(LIVENESS_CHECK);
        let reason = loop {
            let notification = async {
                match subscription.as_mut() {
                    Some(subscription) => subscription.next().await,
                    None => std::future::pending().await,
                }
            };
            tokio::select! {
                kinds = changed.next() => {
                    let resources = kinds.contains(&ListKind::Resources);
                    if let Err(reason) = self.refresh(&upstream, kinds).await {
                        break reason;
                    }
                    if resources {
                        self.subscribe_resources(&upstream, &mut subscribed).await;
                    }
                }
                next = notification => {
                    let kind = match next {
                        Ok(Some(ServerNotification::ToolListChangedNotification(_))) => ListKind::Tools,
                        Ok(Some(ServerNotification::PromptListChangedNotification(_))) => ListKind::Prompts,
                        Ok(Some(ServerNotification::ResourceListChangedNotification(_))) => ListKind::Resources,
                        Ok(Some(ServerNotification::ResourceUpdatedNotification(updated))) => {
                            let _ = self.updated.send(updated.params.uri);
                            continue;
                        }
                        Ok(Some(_)) => continue,
                        Ok(None) => break "the peer ended its subscription".to_owned(),
                        Err(e) => break format!("subscription to the peer failed: {e}"),
                    };
                    if let Err(reason) = self.refresh(&upstream, vec![kind]).await {
                        break reason;
                    }
                    if kind == ListKind::Resources {
                        // The subscription names the resources to watch: make it again for the new list.
                        subscription = self.listen(&upstream).await;
                    }
                }
                () = self.lost.notified() => {
                    if service.is_closed() {
                        break "the connection closed".to_owned();
                    }
                }
                _ = liveness.tick() => {
                    if service.is_closed() {
                        break "the connection closed".to_owned();
                    }
                }
            }
        };
        self.set_relay(None);
        self.upstream.send_replace(None);
        drop(subscription);
        service.cancellation_token().cancel();
        reason
    }

    /// Listen to a 2026-07-28 peer's list changes and to updates of every imported resource.
    async fn listen(&self, upstream: &Upstream) -> Option<rmcp::service::Subscription> {
        let mut filter =
            SubscriptionFilter::builder().tools_list_changed().prompts_list_changed().resources_list_changed().build();
        let resources: Vec<String> = self.listing.borrow().resources.iter().map(|r| r.uri.clone()).collect();
        if !resources.is_empty() {
            filter.resource_subscriptions = Some(resources);
        }
        match upstream.listen(filter).await {
            Ok(subscription) => Some(subscription),
            Err(e) => {
                tracing::debug!(peer = %self.config.name, error = %e, "peer refused subscriptions/listen");
                None
            }
        }
    }

    /// Subscribe at a legacy peer (that offers subscriptions) to each imported resource not yet
    /// subscribed to on this connection.
    #[allow(deprecated)] // resources/subscribe is how a 2025-11-25 peer is asked
    async fn subscribe_resources(&self, upstream: &Upstream, subscribed: &mut std::collections::HashSet<String>) {
        let offers = upstream
            .peer_info()
            .and_then(|info| info.capabilities.resources.as_ref().and_then(|r| r.subscribe))
            .unwrap_or(false);
        if !offers {
            return;
        }
        let resources: Vec<String> = self.listing.borrow().resources.iter().map(|r| r.uri.clone()).collect();
        for uri in resources {
            if subscribed.contains(&uri) {
                continue;
            }
            match upstream.subscribe(rmcp::model::SubscribeRequestParams::new(uri.clone())).await {
                Ok(()) => {
                    subscribed.insert(uri);
                }
                Err(e) => {
                    tracing::debug!(peer = %self.config.name, %uri, error = %e, "peer refused resources/subscribe")
                }
            }
        }
    }

    /// Fetch every list the peer serves and publish it.
    async fn refresh(&self, upstream: &Upstream, announced: Vec<ListKind>) -> Result<(), String> {
        let capabilities = upstream.peer_info().map(|info| info.capabilities.clone()).unwrap_or_default();
        let failed = |what: &str, e: ServiceError| format!("listing {what} failed: {e}");
        let tools = match capabilities.tools {
            Some(_) => upstream.list_all_tools().await.map_err(|e| failed("tools", e))?,
            None => Vec::new(),
        };
        let prompts = match capabilities.prompts {
            Some(_) => upstream.list_all_prompts().await.map_err(|e| failed("prompts", e))?,
            None => Vec::new(),
        };
        let (resources, templates) = match capabilities.resources {
            Some(_) => (
                upstream.list_all_resources().await.map_err(|e| failed("resources", e))?,
                upstream.list_all_resource_templates().await.map_err(|e| failed("resource templates", e))?,
            ),
            None => (Vec::new(), Vec::new()),
        };
        let mut listing = PeerListing { announced, ..PeerListing::default() };
        let mut admit = |name: &str, meta: Option<&rmcp::model::MetaObject>| {
            if !self.config.imports(name) {
                return false;
            }
            if loops::path(meta).contains(&self.host_id) {
                listing.looped.push(name.to_owned());
                return false;
            }
            true
        };
        let tools: Vec<_> = tools.into_iter().filter(|t| admit(&t.name, t.meta.as_ref())).collect();
        let prompts: Vec<_> = prompts.into_iter().filter(|p| admit(&p.name, p.meta.as_ref())).collect();
        let resources: Vec<_> = resources.into_iter().filter(|r| admit(&r.uri, r.meta.as_ref())).collect();
        let templates: Vec<_> = templates.into_iter().filter(|t| admit(&t.uri_template, t.meta.as_ref())).collect();
        if !listing.looped.is_empty() {
            tracing::warn!(
                peer = %self.config.name,
                dropped = listing.looped.len(),
                "entries from this peer already passed through this host; not importing them (federation loop)"
            );
        }
        listing.tools = tools;
        listing.prompts = prompts;
        listing.resources = resources;
        listing.templates = templates;
        self.listing.send_replace(Arc::new(listing));
        Ok(())
    }

    fn set_relay(&self, relay: Option<Arc<Relay>>) {
        if let Ok(mut slot) = self.relay.write() {
            *slot = relay;
        }
    }
}
