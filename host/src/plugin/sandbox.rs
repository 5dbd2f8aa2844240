//! The sandbox one call runs in: a fresh store with its WASI context, limits and the host
//! imports. This is the one place that decides what a plugin may touch.

// Logging and sampling are deprecated by SEP-2577 (2026-07-28) but are live in 2025-11-25,
// which fedmcp serves too.
#![allow(deprecated)]

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use wasmtime::component::{HasData, HasSelf, Linker, Resource, ResourceTable};
use wasmtime::{Engine, Store, StoreLimits, StoreLimitsBuilder, UpdateDeadline};
use wasmtime_wasi::p2::SocketError;
use wasmtime_wasi::p2::bindings::sockets::ip_name_lookup;
use wasmtime_wasi::p2::bindings::sockets::network::{self, ErrorCode, IpAddress, Network};
use wasmtime_wasi::sockets::{SocketAddrUse, WasiSocketsCtxView};
use wasmtime_wasi::{FsPerms, WasiCtx, WasiCtxBuilder, WasiCtxView, WasiView};
use wasmtime_wasi_http::{WasiBody, WasiHttpCtx, WasiHttpCtxView, WasiHttpHooks, WasiHttpView};

use super::bindings::fedmcp::plugin::{host, types};
use super::manifest::{HttpGrant, Manifest, non_public_range};
use super::{CallContext, CallError, CallEvent, ListKind};
use crate::call::{Charge, EventBudget, EventsSpent};

/// The resource limits of one call.
#[derive(Debug, Clone)]
pub struct Limits {
    pub memory_bytes: u64,
    pub timeout: Duration,
    pub max_response_bytes: usize,
    /// The call's budget of log and progress messages: how many, and their text in bytes.
    pub max_events: u64,
    pub max_event_bytes: usize,
    /// Whether HTTP requests by name may reach loopback, private and link-local addresses.
    pub private_networks: bool,
}

/// What the sandbox refused during one call, for the error the caller sees.
pub type Denials = Arc<Mutex<Vec<String>>>;

/// A call's store data.
pub struct CallState {
    wasi: WasiCtx,
    http: WasiHttpCtx,
    http_gate: HttpGate,
    table: ResourceTable,
    limits: StoreLimits,
    events: Option<tokio::sync::mpsc::UnboundedSender<CallEvent>>,
    budget: EventBudget,
    /// The list kinds already announced this call: tools, resources, prompts.
    listed: [bool; 3],
    plugin: String,
    /// Host names the guest may look up: the names of its `network` grants (lowercase).
    lookup_names: Vec<String>,
    denials: Denials,
    timed_out: bool,
}

impl WasiView for CallState {
    fn ctx(&mut self) -> WasiCtxView<'_> {
        WasiCtxView { ctx: &mut self.wasi, table: &mut self.table }
    }
}

impl WasiHttpView for CallState {
    fn http(&mut self) -> WasiHttpCtxView<'_> {
        WasiHttpCtxView { hooks: &mut self.http_gate, table: &mut self.table, ctx: &mut self.http }
    }
}

/// Outgoing wasi:http requests go only to the origins the manifest lists; the host makes
/// the connection (the guest's socket grants play no part in it).
struct HttpGate {
    plugin: String,
    allowed: Vec<HttpGrant>,
    denials: Denials,
    private_networks: bool,
}

type PendingResponse = Box<
    dyn Future<
            Output = wasmtime_wasi_http::Result<(
                http::Response<WasiBody>,
                Box<dyn Future<Output = wasmtime_wasi_http::Result<()>> + Send>,
            )>,
        > + Send,
>;

impl WasiHttpHooks for HttpGate {
    fn send_request(
        &mut self,
        request: http::Request<WasiBody>,
        options: Option<wasmtime_wasi_http::RequestOptions>,
        _response_errors: Box<dyn Future<Output = wasmtime_wasi_http::Result<()>> + Send>,
    ) -> PendingResponse {
        let uri = request.uri();
        let host = uri.host().unwrap_or_default().trim_start_matches('[').trim_end_matches(']').to_owned();
        let https = uri.scheme() == Some(&http::uri::Scheme::HTTPS);
        let port = uri.port_u16().unwrap_or(if https { 443 } else { 80 });
        let method = request.method().clone();
        if !self.allowed.iter().any(|grant| grant.admits(&host, port)) {
            let origin = format!("{host}:{port}");
            if deny(&self.denials, format!("http {method} {origin} (not in capabilities.http)")) {
                tracing::warn!(plugin = %self.plugin, %origin, %method, "HTTP request denied");
            }
            return Box::new(async { Err(wasmtime_wasi_http::Error::HttpRequestDenied) });
        }
        // A grant by name is checked where the name points now: the host resolves it, refuses
        // private answers, and (plain HTTP) connects to the address it checked, so a second
        // lookup cannot point elsewhere. HTTPS keeps the name, which TLS verifies: a rebound
        // name cannot present the origin's certificate.
        let check_name = !self.private_networks && host.parse::<std::net::IpAddr>().is_err();
        let plugin = self.plugin.clone();
        let denials = self.denials.clone();
        Box::new(async move {
            use http_body_util::BodyExt;
            let mut request = request;
            if check_name {
                let origin = format!("{host}:{port}");
                let addresses: Vec<std::net::SocketAddr> = match tokio::net::lookup_host(origin.as_str()).await {
                    Ok(addresses) => addresses.collect(),
                    Err(error) => {
                        return Err(wasmtime_wasi_http::Error::Connect(std::io::Error::other(format!(
                            "{origin} does not resolve: {error}"
                        ))));
                    }
                };
                if let Some((address, range)) =
                    addresses.iter().find_map(|a| non_public_range(a.ip()).map(|range| (a.ip(), range)))
                {
                    let what = format!(
                        "http {method} {origin} resolves to {address}, a {range} address (grant the IP literal or set \
                         plugins.allow_private_networks)"
                    );
                    if deny(&denials, what) {
                        tracing::warn!(plugin = %plugin, %origin, %address, range, %method, "HTTP request to a non-public address denied");
                    }
                    return Err(wasmtime_wasi_http::Error::HttpRequestDenied);
                }
                if !https && let Some(address) = addresses.first() {
                    pin_authority(&mut request, *address)?;
                }
            }
            let (response, io) = wasmtime_wasi_http::default_send_request(request, options).await?;
            Ok((response.map(BodyExt::boxed_unsync), Box::new(io) as Box<dyn Future<Output = _> + Send>))
        })
    }
}

/// The most distinct refusals one call records: a guest retrying in a loop must not grow
/// the list (held outside its memory cap) or the host log without bound.
const MAX_DENIALS: usize = 16;

/// Record what the sandbox refused, for the caller's error; whether it was new (and so worth
/// a line in the host log).
fn deny(denials: &Denials, what: String) -> bool {
    let Ok(mut denials) = denials.lock() else { return false };
    if denials.len() >= MAX_DENIALS || denials.contains(&what) {
        return false;
    }
    denials.push(what);
    true
}

/// Point a plain HTTP request at `address` (checked), keeping the name in its Host header
/// (wasi:http set it from the authority the guest gave).
fn pin_authority(
    request: &mut http::Request<WasiBody>,
    address: std::net::SocketAddr,
) -> wasmtime_wasi_http::Result<()> {
    let mut parts = request.uri().clone().into_parts();
    parts.authority = Some(address.to_string().parse().map_err(|_| wasmtime_wasi_http::Error::HttpRequestUriInvalid)?);
    *request.uri_mut() = http::Uri::from_parts(parts).map_err(|_| wasmtime_wasi_http::Error::HttpRequestUriInvalid)?;
    Ok(())
}

impl CallState {
    fn send(&self, event: CallEvent) {
        if let Some(events) = &self.events {
            // The receiver is gone only when the caller stopped waiting; nothing to do.
            let _ = events.send(event);
        }
    }

    /// Send a log or progress message carrying `bytes` of text, if the call's budget has room;
    /// otherwise drop it, and tell the caller the first time.
    fn emit_counted(&mut self, bytes: usize, event: impl FnOnce() -> CallEvent) {
        match self.budget.charge(bytes) {
            Charge::Send => self.send(event()),
            Charge::DropAndWarn => {
                let notice = self.budget.warning(&format!("plugin {}", self.plugin));
                self.send(CallEvent::Log {
                    level: rmcp::model::LoggingLevel::Warning,
                    logger: Some("fedmcp".to_owned()),
                    data: serde_json::Value::String(notice),
                });
            }
            Charge::Drop => {}
        }
    }

    /// What this call sent and dropped so far.
    pub fn budget_spent(&self) -> EventsSpent {
        self.budget.spent()
    }
}

impl types::Host for CallState {}

impl host::Host for CallState {
    fn log(&mut self, level: types::LogLevel, logger: Option<String>, message: String) {
        use rmcp::model::LoggingLevel as L;
        let level = match level {
            types::LogLevel::Debug => L::Debug,
            types::LogLevel::Info => L::Info,
            types::LogLevel::Notice => L::Notice,
            types::LogLevel::Warning => L::Warning,
            types::LogLevel::Error => L::Error,
            types::LogLevel::Critical => L::Critical,
            types::LogLevel::Alert => L::Alert,
            types::LogLevel::Emergency => L::Emergency,
        };
        let bytes = message.len().saturating_add(logger.as_ref().map_or(0, String::len));
        self.emit_counted(bytes, || CallEvent::Log { level, logger, data: serde_json::Value::String(message) });
    }

    fn progress(&mut self, progress: f64, total: Option<f64>, message: Option<String>) {
        let bytes = message.as_ref().map_or(0, String::len);
        self.emit_counted(bytes, || CallEvent::Progress { progress, total, message });
    }

    fn notify_list_changed(&mut self, kind: host::ListKind) {
        let (kind, index) = match kind {
            host::ListKind::Tools => (ListKind::Tools, 0),
            host::ListKind::Resources => (ListKind::Resources, 1),
            host::ListKind::Prompts => (ListKind::Prompts, 2),
        };
        // Each reaches every connected session and makes clients list again: once per kind
        // and call says all there is to say.
        if std::mem::replace(&mut self.listed[index], true) {
            self.budget.coalesced();
            return;
        }
        self.send(CallEvent::ListChanged(kind));
    }
}

/// Link WASI p2 (wasi:http's outgoing handler included) and the fedmcp host interface. Every WASI import links so any component
/// instantiates; what it may actually reach is decided per call in [`store`].
pub fn link(linker: &mut Linker<CallState>) -> wasmtime::Result<()> {
    wasmtime_wasi::p2::add_to_linker_async(linker)?;
    // Name lookups go through the gate below instead of wasmtime-wasi's own, which resolves
    // any name (a DNS channel out of the sandbox).
    linker.allow_shadowing(true);
    ip_name_lookup::add_to_linker::<CallState, NameLookupGate>(linker, |state| NameLookup {
        sockets: WasiSocketsCtxView { ctx: state.wasi.sockets(), table: &mut state.table },
        names: &state.lookup_names,
        plugin: &state.plugin,
        denials: &state.denials,
    })?;
    linker.allow_shadowing(false);
    wasmtime_wasi_http::p2::add_only_http_to_linker_async(linker)?;
    host::add_to_linker::<CallState, HasSelf<CallState>>(linker, |state| state)?;
    types::add_to_linker::<CallState, HasSelf<CallState>>(linker, |state| state)?;
    Ok(())
}

/// `wasi:sockets/ip-name-lookup` for one call: only the names of the plugin's `network`
/// grants (and IP literals, which need no lookup) resolve. Where they may connect is still
/// decided by the address check, against what the names resolved to at load.
struct NameLookup<'a> {
    sockets: WasiSocketsCtxView<'a>,
    names: &'a [String],
    plugin: &'a str,
    denials: &'a Denials,
}

struct NameLookupGate;

impl HasData for NameLookupGate {
    type Data<'a> = NameLookup<'a>;
}

impl ip_name_lookup::Host for NameLookup<'_> {
    fn resolve_addresses(
        &mut self,
        network: Resource<Network>,
        name: String,
    ) -> Result<Resource<ip_name_lookup::ResolveAddressStream>, SocketError> {
        let wanted = name.trim_start_matches('[').trim_end_matches(']').trim_end_matches('.');
        let granted = wanted.parse::<std::net::IpAddr>().is_ok()
            || self.names.iter().any(|granted| granted.trim_end_matches('.').eq_ignore_ascii_case(wanted));
        if !granted {
            if deny(self.denials, format!("name lookup {name} (not a host in capabilities.network)")) {
                tracing::warn!(plugin = %self.plugin, %name, "name lookup denied");
            }
            return Err(ErrorCode::AccessDenied.into());
        }
        ip_name_lookup::Host::resolve_addresses(&mut self.sockets, network, name)
    }
}

// The lookup interface names the network interface's error type, so its (stateless) helpers
// come along.
impl network::Host for NameLookup<'_> {
    fn convert_error_code(&mut self, error: SocketError) -> wasmtime::Result<ErrorCode> {
        network::Host::convert_error_code(&mut self.sockets, error)
    }

    fn network_error_code(&mut self, error: Resource<network::Error>) -> wasmtime::Result<Option<ErrorCode>> {
        network::Host::network_error_code(&mut self.sockets, error)
    }
}

impl network::HostNetwork for NameLookup<'_> {
    fn drop(&mut self, network: Resource<Network>) -> wasmtime::Result<()> {
        network::HostNetwork::drop(&mut self.sockets, network)
    }
}

impl ip_name_lookup::HostResolveAddressStream for NameLookup<'_> {
    fn resolve_next_address(
        &mut self,
        stream: Resource<ip_name_lookup::ResolveAddressStream>,
    ) -> Result<Option<IpAddress>, SocketError> {
        ip_name_lookup::HostResolveAddressStream::resolve_next_address(&mut self.sockets, stream)
    }

    fn subscribe(
        &mut self,
        stream: Resource<ip_name_lookup::ResolveAddressStream>,
    ) -> wasmtime::Result<Resource<wasmtime_wasi::p2::DynPollable>> {
        ip_name_lookup::HostResolveAddressStream::subscribe(&mut self.sockets, stream)
    }

    fn drop(&mut self, stream: Resource<ip_name_lookup::ResolveAddressStream>) -> wasmtime::Result<()> {
        ip_name_lookup::HostResolveAddressStream::drop(&mut self.sockets, stream)
    }
}

/// The WASI context of one call: exactly what `manifest` grants, nothing else. No stdio,
/// no arguments, no UDP, no listening sockets; files, environment variables and outbound
/// TCP destinations only as listed.
fn wasi_context(plugin: &str, manifest: &Manifest, denials: &Denials) -> wasmtime::Result<WasiCtx> {
    let mut wasi = WasiCtxBuilder::new();
    for grant in &manifest.files {
        let perms = if grant.writable { FsPerms::ReadWrite } else { FsPerms::ReadOnly };
        wasi.preopened_dir(&grant.host, &grant.guest, perms)?;
    }
    for name in &manifest.env {
        if let Ok(value) = std::env::var(name) {
            wasi.env(name, value);
        }
    }
    // TCP goes through an address check even with nothing granted, so a refused connect is
    // recorded and the caller's error can name the missing grant.
    let allowed: Arc<Vec<std::net::SocketAddr>> =
        Arc::new(manifest.network.iter().flat_map(|grant| grant.addresses.iter().copied()).collect());
    let denials = denials.clone();
    let plugin = plugin.to_owned();
    wasi.allow_udp(false).allow_tcp(true).allow_ip_name_lookup(!manifest.network.is_empty());
    wasi.socket_addr_check(move |address, usage| {
        // Connecting needs an implicit bind to the wildcard address; everything else
        // (listening, accepting, explicit binds) is refused.
        let permitted = match usage {
            SocketAddrUse::TcpConnect => allowed.contains(&address),
            SocketAddrUse::TcpBind => address.ip().is_unspecified() && address.port() == 0,
            _ => false,
        };
        if !permitted && deny(&denials, format!("network {usage:?} {address} (not in capabilities.network)")) {
            tracing::warn!(plugin = %plugin, %address, ?usage, "network access denied");
        }
        Box::pin(async move { permitted })
    });
    Ok(wasi.build())
}

/// A fresh store for one call, with the grants of `manifest`, memory and time limited.
pub fn store(
    engine: &Engine,
    plugin: &str,
    manifest: &Manifest,
    limits: &Limits,
    cx: CallContext,
    denials: &Denials,
) -> wasmtime::Result<Store<CallState>> {
    let wasi = wasi_context(plugin, manifest, denials)?;
    let memory = usize::try_from(limits.memory_bytes).unwrap_or(usize::MAX);
    let http_gate = HttpGate {
        plugin: plugin.to_owned(),
        allowed: manifest.http.clone(),
        denials: denials.clone(),
        private_networks: limits.private_networks,
    };
    let budget = EventBudget::new(limits.max_events, limits.max_event_bytes);
    let state = CallState {
        wasi,
        http: WasiHttpCtx::new(),
        http_gate,
        table: ResourceTable::new(),
        limits: StoreLimitsBuilder::new().memory_size(memory).trap_on_grow_failure(true).build(),
        events: cx.events,
        budget,
        listed: [false; 3],
        plugin: plugin.to_owned(),
        lookup_names: manifest
            .network
            .iter()
            .filter(|grant| !grant.is_ip_literal())
            .map(|grant| grant.host().to_ascii_lowercase())
            .collect(),
        denials: denials.clone(),
        timed_out: false,
    };
    let mut store = Store::new(engine, state);
    store.limiter(|state| &mut state.limits);
    let started = Instant::now();
    let timeout = limits.timeout;
    let plugin = plugin.to_owned();
    store.set_epoch_deadline(1);
    store.epoch_deadline_callback(move |mut store| {
        if started.elapsed() >= timeout {
            tracing::warn!(plugin = %plugin, limit_ms = timeout.as_millis() as u64, "plugin call stopped at its time limit");
            store.data_mut().timed_out = true;
            return Ok(UpdateDeadline::Interrupt);
        }
        // Yield so a busy guest shares the runtime thread with the host's other tasks.
        Ok(UpdateDeadline::Yield(1))
    });
    Ok(store)
}

/// Turn a wasmtime error from a call into what the caller sees.
pub fn call_error(plugin: &str, limits: &Limits, store: &Store<CallState>, error: wasmtime::Error) -> CallError {
    if store.data().timed_out {
        return CallError::Timeout { plugin: plugin.to_owned(), limit_ms: limits.timeout.as_millis() as u64 };
    }
    let reason = format!("{error:#}");
    let reason = if reason.contains("forcing a memory growth failure") || reason.contains("memory minimum size") {
        format!("memory limit of {} MiB exceeded ({reason})", limits.memory_bytes >> 20)
    } else {
        reason
    };
    CallError::Trap { plugin: plugin.to_owned(), reason }
}
