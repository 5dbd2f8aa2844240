//! The sandbox one call runs in: a fresh store with its WASI context, limits and the host
//! imports. What a plugin may touch is decided here, by asking each capability module in
//! [`super::grants`] to wire its part (preopens, environment, socket checks, name lookups,
//! HTTP origins, store limits and deadline).

// Logging and sampling are deprecated by SEP-2577 (2026-07-28) but are live in 2025-11-25,
// which fedmcp serves too.
#![allow(deprecated)]

use wasmtime::component::{HasSelf, Linker, ResourceTable};
use wasmtime::{Engine, Store, StoreLimits};
use wasmtime_wasi::sockets::WasiSocketsCtxView;
use wasmtime_wasi::{WasiCtx, WasiCtxBuilder, WasiCtxView, WasiView};
use wasmtime_wasi_http::{WasiHttpCtx, WasiHttpCtxView, WasiHttpView};

use super::bindings::fedmcp::plugin::{host, types};
use super::grants::network::{self, HttpGate, NameLookup};
use super::grants::{Ceilings, Denials, Grants, Limits, env, files};
use super::{CallContext, CallError, CallEvent, ListKind};
use crate::call::{Charge, EventBudget, EventsSpent};

/// A call's store data.
pub(super) struct CallState {
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
    pub(super) fn budget_spent(&self) -> EventsSpent {
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

/// Link WASI p2 (wasi:http's outgoing handler included) and the fedmcp host interface. Every
/// WASI import links so any component instantiates; what it may actually reach is decided per
/// call in [`store`], by each capability in [`super::grants`].
pub(super) fn link(linker: &mut Linker<CallState>) -> wasmtime::Result<()> {
    wasmtime_wasi::p2::add_to_linker_async(linker)?;
    network::link_name_lookup(linker, |state| {
        NameLookup::new(
            WasiSocketsCtxView { ctx: state.wasi.sockets(), table: &mut state.table },
            &state.lookup_names,
            &state.plugin,
            &state.denials,
        )
    })?;
    wasmtime_wasi_http::p2::add_only_http_to_linker_async(linker)?;
    host::add_to_linker::<CallState, HasSelf<CallState>>(linker, |state| state)?;
    types::add_to_linker::<CallState, HasSelf<CallState>>(linker, |state| state)?;
    Ok(())
}

/// The WASI context of one call: exactly what `grants` grants, nothing else. No stdio, no
/// arguments, no UDP, no listening sockets; files, environment variables and outbound TCP
/// destinations only as listed.
fn wasi_context(plugin: &str, grants: &Grants, denials: &Denials) -> wasmtime::Result<WasiCtx> {
    let mut wasi = WasiCtxBuilder::new();
    files::wire(&grants.files, &mut wasi)?;
    env::wire(&grants.env, &mut wasi);
    grants.network.wire_sockets(plugin, denials, &mut wasi);
    Ok(wasi.build())
}

/// A fresh store for one call, with `grants`, memory and time limited.
pub(super) fn store(
    engine: &Engine,
    plugin: &str,
    grants: &Grants,
    limits: &Limits,
    ceilings: &Ceilings,
    cx: CallContext,
    denials: &Denials,
) -> wasmtime::Result<Store<CallState>> {
    let state = CallState {
        wasi: wasi_context(plugin, grants, denials)?,
        http: WasiHttpCtx::new(),
        http_gate: grants.network.http_gate(plugin, ceilings.private_networks, denials),
        table: ResourceTable::new(),
        limits: limits.store_limits(),
        events: cx.events,
        budget: limits.event_budget(),
        listed: [false; 3],
        plugin: plugin.to_owned(),
        lookup_names: grants.network.lookup_names(),
        denials: denials.clone(),
        timed_out: false,
    };
    let mut store = Store::new(engine, state);
    store.limiter(|state| &mut state.limits);
    limits.arm_deadline(&mut store, plugin, |state| state.timed_out = true);
    Ok(store)
}

/// Turn a wasmtime error from a call into what the caller sees.
pub(super) fn call_error(plugin: &str, limits: &Limits, store: &Store<CallState>, error: wasmtime::Error) -> CallError {
    if store.data().timed_out {
        return CallError::Timeout { plugin: plugin.to_owned(), limit_ms: limits.timeout.as_millis() as u64 };
    }
    CallError::Trap { plugin: plugin.to_owned(), reason: limits.trap_reason(format!("{error:#}")) }
}
