//! `capabilities.network` (outbound TCP destinations, `host:port`) and `capabilities.http`
//! (wasi:http origins), capped by `plugins.network_allowed` and the private-address rule
//! (`plugins.allow_private_networks`): a grant by name must reach public addresses only,
//! since the name's owner, not the operator, decides where it points.
//!
//! In the sandbox: TCP connects only to the addresses the grants resolved to at load, names
//! are looked up only if granted ([`lookup`]), and HTTP requests go only to granted origins,
//! checked where the name points at the time ([`http`]).

mod http;
mod lookup;

use std::net::{IpAddr, Ipv4Addr, SocketAddr, ToSocketAddrs};
use std::sync::Arc;

use wasmtime_wasi::WasiCtxBuilder;
use wasmtime_wasi::sockets::SocketAddrUse;

pub(in crate::plugin) use http::HttpGate;
pub(in crate::plugin) use lookup::{NameLookup, link_name_lookup};

use super::{Denials, deny};

/// An outbound TCP destination the plugin may connect to.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct NetworkGrant {
    /// As written in the manifest (`host:port`).
    pub entry: String,
    /// What it resolved to when the plugin was loaded.
    pub addresses: Vec<SocketAddr>,
}

impl NetworkGrant {
    /// The host part as written: a name or an IP literal (IPv6 without brackets).
    pub(crate) fn host(&self) -> &str {
        self.entry.rsplit_once(':').map_or("", |(host, _)| host).trim_start_matches('[').trim_end_matches(']')
    }

    /// Whether the grant names its destination by IP literal rather than by a name that
    /// DNS could point anywhere.
    pub(crate) fn is_ip_literal(&self) -> bool {
        self.host().parse::<IpAddr>().is_ok()
    }
}

/// One origin a plugin may reach with wasi:http. Requests are checked by the name in their
/// URL (the host resolves it), so a grant for `localhost:8080` does not admit `127.0.0.1:8080`.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct HttpGrant {
    /// As written in the manifest.
    pub entry: String,
    /// Lowercase host name or IP literal (IPv6 without brackets).
    pub host: String,
    pub port: u16,
}

impl HttpGrant {
    /// Whether a request to `host`:`port` is covered.
    pub(crate) fn admits(&self, host: &str, port: u16) -> bool {
        self.port == port && self.host.eq_ignore_ascii_case(host.trim_start_matches('[').trim_end_matches(']'))
    }
}

/// Why `ip` is not on the public internet (`None`: it is): loopback, private, link-local
/// and the like reach the host itself or its local network, which a grant by name must not
/// open by accident (the name's owner, not the operator, decides where it points).
pub(crate) fn non_public_range(ip: IpAddr) -> Option<&'static str> {
    fn v4(ip: Ipv4Addr) -> Option<&'static str> {
        let [a, b, ..] = ip.octets();
        if ip.is_loopback() {
            Some("loopback")
        } else if ip.is_private() {
            Some("private")
        } else if ip.is_link_local() {
            Some("link-local")
        } else if a == 0 {
            Some("unspecified (0.0.0.0/8)")
        } else if a == 100 && (64..128).contains(&b) {
            Some("shared (100.64.0.0/10)")
        } else if ip.is_broadcast() || ip.is_multicast() || a >= 240 {
            Some("broadcast, multicast or reserved")
        } else {
            None
        }
    }
    match ip {
        IpAddr::V4(ip) => v4(ip),
        IpAddr::V6(ip) => {
            // An IPv4 address in IPv6 clothing (mapped, or NAT64's well-known prefix) reaches
            // the IPv4 address.
            if let Some(mapped) = ip.to_ipv4_mapped() {
                return v4(mapped);
            }
            let segments = ip.segments();
            if segments[..6] == [0x64, 0xff9b, 0, 0, 0, 0] {
                let [.., hi, lo] = segments;
                return v4(Ipv4Addr::from((u32::from(hi) << 16) | u32::from(lo)));
            }
            if ip.is_loopback() {
                Some("loopback")
            } else if ip.is_unspecified() {
                Some("unspecified")
            } else if segments[0] & 0xfe00 == 0xfc00 || segments[0] & 0xffc0 == 0xfec0 {
                Some("private (unique or site local)")
            } else if segments[0] & 0xffc0 == 0xfe80 {
                Some("link-local")
            } else if ip.is_multicast() {
                Some("multicast")
            } else {
                None
            }
        }
    }
}

/// The plugin's network grants: TCP destinations and HTTP origins.
#[derive(Debug, Clone, PartialEq, Default)]
pub(crate) struct NetworkGrants {
    /// `capabilities.network`.
    pub tcp: Vec<NetworkGrant>,
    /// `capabilities.http`: origins (`host:port`) the plugin may send HTTP requests to
    /// through wasi:http.
    pub http: Vec<HttpGrant>,
}

impl NetworkGrants {
    /// Validate both lists; TCP destinations are resolved now, once, and connections go
    /// only to what they resolved to.
    pub(super) fn parse(network: Vec<String>, http: Vec<String>) -> Result<Self, String> {
        let mut tcp = Vec::with_capacity(network.len());
        for (i, entry) in network.into_iter().enumerate() {
            let field = format!("capabilities.network[{i}]");
            let Some((host, port)) = entry.rsplit_once(':') else {
                return Err(format!("{field}: {entry:?} lacks a port (write \"{entry}:443\")"));
            };
            if host.is_empty() || port.parse::<u16>().is_err() {
                return Err(format!("{field}: {entry:?} is not host:port"));
            }
            let addresses: Vec<SocketAddr> =
                entry.to_socket_addrs().map_err(|e| format!("{field}: {entry:?} does not resolve: {e}"))?.collect();
            tcp.push(NetworkGrant { entry, addresses });
        }
        let mut origins = Vec::with_capacity(http.len());
        for (i, entry) in http.into_iter().enumerate() {
            let field = format!("capabilities.http[{i}]");
            if entry.contains("://") || entry.contains('/') {
                return Err(format!("{field}: {entry:?} must be host:port, without a scheme or path"));
            }
            let Some((host, port)) = entry.rsplit_once(':') else {
                return Err(format!("{field}: {entry:?} lacks a port (write \"{entry}:443\" or \"{entry}:80\")"));
            };
            let host = host.trim_start_matches('[').trim_end_matches(']').to_ascii_lowercase();
            let Ok(port) = port.parse::<u16>() else {
                return Err(format!("{field}: {entry:?} is not host:port"));
            };
            if host.is_empty() {
                return Err(format!("{field}: {entry:?} is not host:port"));
            }
            origins.push(HttpGrant { entry, host, port });
        }
        Ok(Self { tcp, http: origins })
    }

    /// Unless the host allows private networks, refuse a TCP grant by name that resolved to a
    /// non-public address. IP literals are the operator's explicit choice and pass. (HTTP
    /// origins are checked per request, where the name points then.)
    pub(super) fn check_private_addresses(&self, private_networks: bool) -> Result<(), String> {
        if private_networks {
            return Ok(());
        }
        for (i, grant) in self.tcp.iter().enumerate().filter(|(_, grant)| !grant.is_ip_literal()) {
            for address in &grant.addresses {
                if let Some(range) = non_public_range(address.ip()) {
                    return Err(format!(
                        "capabilities.network[{i}]: {} resolves to {}, a {range} address; a grant by name \
                         must reach public addresses only (grant the IP literal, \"{address}\", or set \
                         plugins.allow_private_networks = true in the host config)",
                        grant.entry,
                        address.ip()
                    ));
                }
            }
        }
        Ok(())
    }

    /// Refuse destinations and origins not among `allowed` (`host:port` or `host:*`; `None`:
    /// any).
    pub(super) fn check_allowed(&self, allowed: Option<&[String]>) -> Result<(), String> {
        let Some(allowed) = allowed else { return Ok(()) };
        let destinations = self.tcp.iter().map(|grant| ("network", &grant.entry));
        let origins = self.http.iter().map(|grant| ("http", &grant.entry));
        let mut index = std::collections::HashMap::new();
        for (kind, entry) in destinations.chain(origins) {
            let i = index.entry(kind).and_modify(|i| *i += 1).or_insert(0);
            let host = entry.rsplit_once(':').map_or("", |(host, _)| host);
            let permitted = allowed.iter().any(|pattern| {
                pattern == entry || pattern.strip_suffix(":*").is_some_and(|pattern_host| pattern_host == host)
            });
            if !permitted {
                return Err(format!(
                    "capabilities.{kind}[{i}]: {entry} is not among the destinations this host lets plugins \
                     reach (plugins.network_allowed)"
                ));
            }
        }
        Ok(())
    }

    /// Host names the guest may look up: the names of its TCP grants (lowercase).
    pub(in crate::plugin) fn lookup_names(&self) -> Vec<String> {
        self.tcp.iter().filter(|grant| !grant.is_ip_literal()).map(|grant| grant.host().to_ascii_lowercase()).collect()
    }

    /// TCP in the WASI context: connect only to the granted addresses; no UDP, no listening,
    /// and name lookups only with a TCP grant (the gate in [`lookup`] narrows them to the
    /// granted names).
    pub(in crate::plugin) fn wire_sockets(&self, plugin: &str, denials: &Denials, wasi: &mut WasiCtxBuilder) {
        // TCP goes through an address check even with nothing granted, so a refused connect is
        // recorded and the caller's error can name the missing grant.
        let allowed: Arc<Vec<SocketAddr>> =
            Arc::new(self.tcp.iter().flat_map(|grant| grant.addresses.iter().copied()).collect());
        let denials = denials.clone();
        let plugin = plugin.to_owned();
        wasi.allow_udp(false).allow_tcp(true).allow_ip_name_lookup(!self.tcp.is_empty());
        wasi.socket_addr_check(move |address, usage| {
            let permitted = socket_permitted(&allowed, address, usage);
            if !permitted && deny(&denials, format!("network {usage:?} {address} (not in capabilities.network)")) {
                tracing::warn!(plugin = %plugin, %address, ?usage, "network access denied");
            }
            Box::pin(async move { permitted })
        });
    }

    /// The gate for this call's wasi:http requests.
    pub(in crate::plugin) fn http_gate(&self, plugin: &str, private_networks: bool, denials: &Denials) -> HttpGate {
        HttpGate::new(plugin, self.http.clone(), private_networks, denials)
    }

    pub(super) fn describe(&self, out: &mut Vec<String>) {
        if !self.tcp.is_empty() {
            let entries: Vec<&str> = self.tcp.iter().map(|n| n.entry.as_str()).collect();
            out.push(format!("network {}", entries.join(", ")));
        }
        if !self.http.is_empty() {
            let entries: Vec<&str> = self.http.iter().map(|n| n.entry.as_str()).collect();
            out.push(format!("http {}", entries.join(", ")));
        }
    }
}

/// Whether a socket may be used at `address`: connecting to a granted address, and the
/// implicit bind to the wildcard address a connect needs. Everything else (listening,
/// accepting, explicit binds, UDP) is refused.
fn socket_permitted(allowed: &[SocketAddr], address: SocketAddr, usage: SocketAddrUse) -> bool {
    match usage {
        SocketAddrUse::TcpConnect => allowed.contains(&address),
        SocketAddrUse::TcpBind => address.ip().is_unspecified() && address.port() == 0,
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use std::net::{IpAddr, SocketAddr};

    use wasmtime_wasi::sockets::SocketAddrUse;

    use super::{NetworkGrants, non_public_range, socket_permitted};

    fn grants(network: &[&str], http: &[&str]) -> NetworkGrants {
        let owned = |list: &[&str]| list.iter().map(|s| (*s).to_owned()).collect();
        NetworkGrants::parse(owned(network), owned(http)).unwrap()
    }

    #[test]
    fn non_public_addresses_are_recognised() {
        let non_public = [
            "127.0.0.1",
            "127.8.9.10",
            "10.1.2.3",
            "172.16.0.1",
            "172.31.255.255",
            "192.168.1.1",
            "169.254.169.254",
            "0.0.0.0",
            "100.64.0.1",
            "255.255.255.255",
            "224.0.0.1",
            "::1",
            "::",
            "fc00::1",
            "fd12:3456::1",
            "fe80::1",
            "fec0::1",
            "ff02::1",
            "::ffff:127.0.0.1",
            "::ffff:10.0.0.1",
            "64:ff9b::7f00:1",
        ];
        for ip in non_public {
            let ip: IpAddr = ip.parse().unwrap();
            assert!(non_public_range(ip).is_some(), "{ip} should not count as public");
        }
        let public = ["1.1.1.1", "8.8.8.8", "172.32.0.1", "100.128.0.1", "2606:4700::1111", "::ffff:1.1.1.1"];
        for ip in public {
            let ip: IpAddr = ip.parse().unwrap();
            assert_eq!(non_public_range(ip), None, "{ip} is public");
        }
        assert_eq!(non_public_range("127.0.0.1".parse().unwrap()), Some("loopback"));
    }

    #[test]
    fn a_grant_by_name_that_resolves_to_a_private_address_is_refused() {
        let by_name = grants(&["127.0.0.1:9", "localhost:9"], &[]);
        let error = by_name.check_private_addresses(false).unwrap_err();
        assert!(error.contains("capabilities.network[1]") && error.contains("loopback"), "{error}");
        assert!(error.contains("plugins.allow_private_networks"), "{error}");
        assert_eq!(by_name.check_private_addresses(true), Ok(()));
        // IP literals are the operator's explicit choice.
        let literal = grants(&["127.0.0.1:9", "[::1]:9"], &[]);
        assert_eq!(literal.check_private_addresses(false), Ok(()));
        assert!(literal.tcp.iter().all(|grant| grant.is_ip_literal()));
        assert_eq!(literal.tcp[1].host(), "::1");
        assert_eq!(by_name.lookup_names(), ["localhost"], "only names are looked up");
    }

    #[test]
    fn the_hosts_list_caps_destinations_and_origins() {
        let allowed = ["127.0.0.1:8080".to_owned(), "localhost:*".to_owned()];
        assert_eq!(
            grants(&["127.0.0.1:8080", "localhost:9999"], &["localhost:1"]).check_allowed(Some(&allowed)),
            Ok(())
        );
        let error = grants(&["127.0.0.1:8081"], &[]).check_allowed(Some(&allowed)).unwrap_err();
        assert!(error.starts_with("capabilities.network[0]:") && error.contains("plugins.network_allowed"), "{error}");
        let error = grants(&[], &["localhost:1", "10.0.0.1:80"]).check_allowed(Some(&allowed)).unwrap_err();
        assert!(error.starts_with("capabilities.http[1]:"), "{error}");
        assert_eq!(grants(&["127.0.0.1:8081"], &[]).check_allowed(None), Ok(()));
    }

    #[test]
    fn sockets_connect_only_to_granted_addresses() {
        let granted: SocketAddr = "127.0.0.1:9".parse().unwrap();
        let allowed = [granted];
        assert!(socket_permitted(&allowed, granted, SocketAddrUse::TcpConnect));
        assert!(!socket_permitted(&allowed, "127.0.0.1:10".parse().unwrap(), SocketAddrUse::TcpConnect));
        assert!(socket_permitted(&allowed, "0.0.0.0:0".parse().unwrap(), SocketAddrUse::TcpBind));
        assert!(!socket_permitted(&allowed, "0.0.0.0:8080".parse().unwrap(), SocketAddrUse::TcpBind));
        assert!(!socket_permitted(&allowed, "0.0.0.0:0".parse().unwrap(), SocketAddrUse::TcpListen));
        assert!(!socket_permitted(&allowed, granted, SocketAddrUse::UdpSend));
    }

    #[test]
    fn http_grants_admit_only_their_origin() {
        let g = grants(&[], &["API.example.com:443", "[::1]:8080"]);
        assert!(g.http[0].admits("api.example.com", 443));
        assert!(!g.http[0].admits("api.example.com", 80));
        assert!(!g.http[0].admits("example.com", 443));
        assert!(g.http[1].admits("[::1]", 8080));
        assert!(!g.http[1].admits("127.0.0.1", 8080));
        let mut described = Vec::new();
        g.describe(&mut described);
        assert_eq!(described, ["http API.example.com:443, [::1]:8080"]);
    }
}
