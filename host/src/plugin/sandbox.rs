//! The sandbox one call runs in: a fresh store with its WASI context, limits and the host
//! imports. This is the one place that decides what a plugin may touch.

// Logging and sampling are deprecated by SEP-2577 (2026-07-28) but are live in 2025-11-25,
// which fedmcp serves too.
#![allow(deprecated)]

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use wasmtime::component::{HasSelf, Linker, ResourceTable};
use wasmtime::{Engine, Store, StoreLimits, StoreLimitsBuilder, UpdateDeadline};
use wasmtime_wasi::sockets::SocketAddrUse;
use wasmtime_wasi::{FsPerms, WasiCtx, WasiCtxBuilder, WasiCtxView, WasiView};
use wasmtime_wasi_http::{WasiBody, WasiHttpCtx, WasiHttpCtxView, WasiHttpHooks, WasiHttpView};

use super::bindings::fedmcp::plugin::{host, types};
use super::manifest::{HttpGrant, Manifest};
use super::{CallContext, CallError, CallEvent, ListKind};

/// The resource limits of one call.
#[derive(Debug, Clone)]
pub struct Limits {
    pub memory_bytes: u64,
    pub timeout: Duration,
    pub max_response_bytes: usize,
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
        let host = uri.host().unwrap_or_default();
        let https = uri.scheme() == Some(&http::uri::Scheme::HTTPS);
        let port = uri.port_u16().unwrap_or(if https { 443 } else { 80 });
        if !self.allowed.iter().any(|grant| grant.admits(host, port)) {
            let origin = format!("{host}:{port}");
            tracing::warn!(plugin = %self.plugin, %origin, method = %request.method(), "HTTP request denied");
            if let Ok(mut denials) = self.denials.lock() {
                denials.push(format!("http {} {origin} (not in capabilities.http)", request.method()));
            }
            return Box::new(async { Err(wasmtime_wasi_http::Error::HttpRequestDenied) });
        }
        Box::new(async move {
            use http_body_util::BodyExt;
            let (response, io) = wasmtime_wasi_http::default_send_request(request, options).await?;
            Ok((response.map(BodyExt::boxed_unsync), Box::new(io) as Box<dyn Future<Output = _> + Send>))
        })
    }
}

impl CallState {
    fn emit(&self, event: CallEvent) {
        if let Some(events) = &self.events {
            // The receiver is gone only when the caller stopped waiting; nothing to do.
            let _ = events.send(event);
        }
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
        self.emit(CallEvent::Log { level, logger, data: serde_json::Value::String(message) });
    }

    fn progress(&mut self, progress: f64, total: Option<f64>, message: Option<String>) {
        self.emit(CallEvent::Progress { progress, total, message });
    }

    fn notify_list_changed(&mut self, kind: host::ListKind) {
        let kind = match kind {
            host::ListKind::Tools => ListKind::Tools,
            host::ListKind::Resources => ListKind::Resources,
            host::ListKind::Prompts => ListKind::Prompts,
        };
        self.emit(CallEvent::ListChanged(kind));
    }
}

/// Link WASI p2 (wasi:http's outgoing handler included) and the fedmcp host interface. Every WASI import links so any component
/// instantiates; what it may actually reach is decided per call in [`store`].
pub fn link(linker: &mut Linker<CallState>) -> wasmtime::Result<()> {
    wasmtime_wasi::p2::add_to_linker_async(linker)?;
    wasmtime_wasi_http::p2::add_only_http_to_linker_async(linker)?;
    host::add_to_linker::<CallState, HasSelf<CallState>>(linker, |state| state)?;
    types::add_to_linker::<CallState, HasSelf<CallState>>(linker, |state| state)?;
    Ok(())
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
        if !permitted {
            tracing::warn!(plugin = %plugin, %address, ?usage, "network access denied");
            if let Ok(mut denials) = denials.lock() {
                denials.push(format!("network {usage:?} {address} (not in capabilities.network)"));
            }
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
    let http_gate = HttpGate { plugin: plugin.to_owned(), allowed: manifest.http.clone(), denials: denials.clone() };
    let state = CallState {
        wasi,
        http: WasiHttpCtx::new(),
        http_gate,
        table: ResourceTable::new(),
        limits: StoreLimitsBuilder::new().memory_size(memory).trap_on_grow_failure(true).build(),
        events: cx.events,
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
