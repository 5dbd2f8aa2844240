//! `wasi:sockets/ip-name-lookup` for one call: only the names of the plugin's `network`
//! grants (and IP literals, which need no lookup) resolve. wasmtime-wasi's own lookup
//! resolves any name, which would be a DNS channel out of the sandbox.

use wasmtime::component::{HasData, Linker, Resource};
use wasmtime_wasi::p2::SocketError;
use wasmtime_wasi::p2::bindings::sockets::ip_name_lookup;
use wasmtime_wasi::p2::bindings::sockets::network::{self, ErrorCode, IpAddress, Network};
use wasmtime_wasi::sockets::WasiSocketsCtxView;

use crate::plugin::grants::{Denials, deny};

/// The lookup host of one call. Where a looked-up name may connect is still decided by the
/// address check, against what the names resolved to at load.
pub(in crate::plugin) struct NameLookup<'a> {
    sockets: WasiSocketsCtxView<'a>,
    /// Lowercase, from [`NetworkGrants::lookup_names`](super::NetworkGrants::lookup_names).
    names: &'a [String],
    plugin: &'a str,
    denials: &'a Denials,
}

impl<'a> NameLookup<'a> {
    pub(in crate::plugin) fn new(
        sockets: WasiSocketsCtxView<'a>,
        names: &'a [String],
        plugin: &'a str,
        denials: &'a Denials,
    ) -> Self {
        Self { sockets, names, plugin, denials }
    }
}

struct NameLookupGate;

impl HasData for NameLookupGate {
    type Data<'a> = NameLookup<'a>;
}

/// Replace the lookup interface `wasmtime_wasi::p2::add_to_linker_async` linked with the
/// gate; `state` finds the call's gate in its store data.
pub(in crate::plugin) fn link_name_lookup<T: Send + 'static>(
    linker: &mut Linker<T>,
    state: fn(&mut T) -> NameLookup<'_>,
) -> wasmtime::Result<()> {
    linker.allow_shadowing(true);
    let linked = ip_name_lookup::add_to_linker::<T, NameLookupGate>(linker, state);
    linker.allow_shadowing(false);
    linked
}

/// Whether `name` may be looked up: an IP literal, or one of the granted names (a trailing
/// dot and case aside).
fn granted(names: &[String], name: &str) -> bool {
    let wanted = name.trim_start_matches('[').trim_end_matches(']').trim_end_matches('.');
    wanted.parse::<std::net::IpAddr>().is_ok()
        || names.iter().any(|granted| granted.trim_end_matches('.').eq_ignore_ascii_case(wanted))
}

impl ip_name_lookup::Host for NameLookup<'_> {
    fn resolve_addresses(
        &mut self,
        network: Resource<Network>,
        name: String,
    ) -> Result<Resource<ip_name_lookup::ResolveAddressStream>, SocketError> {
        if !granted(self.names, &name) {
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

#[cfg(test)]
mod tests {
    use super::granted;

    #[test]
    fn only_granted_names_and_ip_literals_resolve() {
        let names = ["api.example.com".to_owned()];
        for name in ["api.example.com", "API.Example.com", "api.example.com.", "127.0.0.1", "[::1]"] {
            assert!(granted(&names, name), "{name}");
        }
        for name in ["example.com", "evil.api.example.com", "exfiltrate.attacker.test", ""] {
            assert!(!granted(&names, name), "{name}");
        }
        assert!(!granted(&[], "api.example.com"), "nothing granted, no names");
    }
}
