//! `plugins/<name>.toml`: what a plugin is called in the catalog and what it is granted.
//!
//! Deny by default: without a manifest (or with an empty one) a plugin gets no files, no
//! environment, no network, no client round-trips, and the host's default limits.

use std::net::{IpAddr, Ipv4Addr, SocketAddr, ToSocketAddrs};
use std::path::{Path, PathBuf};

use serde::Deserialize;

/// A folder of the host made visible to the plugin.
#[derive(Debug, Clone, PartialEq)]
pub struct FileGrant {
    /// The host folder, absolute.
    pub host: PathBuf,
    /// Where the plugin sees it, e.g. `/data`.
    pub guest: String,
    pub writable: bool,
}

/// An outbound TCP destination the plugin may connect to.
#[derive(Debug, Clone, PartialEq)]
pub struct NetworkGrant {
    /// As written in the manifest (`host:port`).
    pub entry: String,
    /// What it resolved to when the plugin was loaded.
    pub addresses: Vec<SocketAddr>,
}

impl NetworkGrant {
    /// The host part as written: a name or an IP literal (IPv6 without brackets).
    pub fn host(&self) -> &str {
        self.entry.rsplit_once(':').map_or("", |(host, _)| host).trim_start_matches('[').trim_end_matches(']')
    }

    /// Whether the grant names its destination by IP literal rather than by a name that
    /// DNS could point anywhere.
    pub fn is_ip_literal(&self) -> bool {
        self.host().parse::<IpAddr>().is_ok()
    }
}

/// Why `ip` is not on the public internet (`None`: it is): loopback, private, link-local
/// and the like reach the host itself or its local network, which a grant by name must not
/// open by accident (the name's owner, not the operator, decides where it points).
pub fn non_public_range(ip: IpAddr) -> Option<&'static str> {
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

/// Why `namespace` cannot prefix entry names (`None`: it can). Names are
/// `<namespace>__<name>`: a namespace holding `__` or ending in `_` would make one owner's
/// names start with another's prefix (`docs_` + `__x` starts with `docs__`), so a grant
/// such as `tools:docs__*` would cover more than namespace `docs`.
pub fn namespace_problem(namespace: &str) -> Option<&'static str> {
    if !namespace.chars().all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_') {
        Some(
            "may hold only ASCII letters, digits, '-' and '_' (tool names must stay within              ^[A-Za-z0-9_-]{1,64}$)",
        )
    } else if namespace.contains("__") {
        Some("must not contain \"__\", which separates a namespace from its entry names")
    } else if namespace.ends_with('_') {
        Some("must not end in '_' (it would run into the \"__\" separator)")
    } else {
        None
    }
}

/// The longest namespace, leaving room for entry names within the 64 characters clients allow.
pub const MAX_NAMESPACE_LEN: usize = 32;

/// One origin a plugin may reach with wasi:http. Requests are checked by the name in their
/// URL (the host resolves it), so a grant for `localhost:8080` does not admit `127.0.0.1:8080`.
#[derive(Debug, Clone, PartialEq)]
pub struct HttpGrant {
    /// As written in the manifest.
    pub entry: String,
    /// Lowercase host name or IP literal (IPv6 without brackets).
    pub host: String,
    pub port: u16,
}

impl HttpGrant {
    /// Whether a request to `host`:`port` is covered.
    pub fn admits(&self, host: &str, port: u16) -> bool {
        self.port == port && self.host.eq_ignore_ascii_case(host.trim_start_matches('[').trim_end_matches(']'))
    }
}

/// A parsed, validated manifest.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Manifest {
    /// The prefix of this plugin's entries: `Some("")` means unprefixed, `None` means the
    /// plugin's file name.
    pub namespace: Option<String>,
    pub files: Vec<FileGrant>,
    /// Names of host environment variables the plugin may read.
    pub env: Vec<String>,
    pub network: Vec<NetworkGrant>,
    /// Origins (`host:port`) the plugin may send HTTP requests to through wasi:http.
    pub http: Vec<HttpGrant>,
    pub memory_mb: Option<u64>,
    pub timeout_ms: Option<u64>,
    pub max_response_kb: Option<u64>,
    /// Lower the host's per-call budget of log and progress messages (count, and KiB of text).
    pub max_events: Option<u64>,
    pub max_event_kb: Option<u64>,
    /// Client round-trips the plugin may ask for.
    pub sampling: bool,
    pub elicitation: bool,
    pub roots: bool,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawManifest {
    namespace: Option<String>,
    description: Option<String>,
    #[serde(default)]
    capabilities: RawCapabilities,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawCapabilities {
    #[serde(default)]
    files: Vec<RawFileGrant>,
    #[serde(default)]
    env: Vec<String>,
    #[serde(default)]
    network: Vec<String>,
    #[serde(default)]
    http: Vec<String>,
    memory_mb: Option<u64>,
    timeout_ms: Option<u64>,
    max_response_kb: Option<u64>,
    max_events: Option<u64>,
    max_event_kb: Option<u64>,
    #[serde(default)]
    sampling: bool,
    #[serde(default)]
    elicitation: bool,
    #[serde(default)]
    roots: bool,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawFileGrant {
    host: PathBuf,
    guest: String,
    mode: String,
}

/// What the operator lets any manifest grant (`[plugins]` in `config/host.toml`); `None`
/// leaves that kind of grant to the manifest.
#[derive(Debug, Default)]
pub struct Ceilings<'a> {
    pub file_roots: Option<&'a [PathBuf]>,
    pub env: Option<&'a [String]>,
    pub network: Option<&'a [String]>,
    /// Whether a grant by name may resolve to loopback, private or link-local addresses
    /// (`plugins.allow_private_networks`); IP literal grants may regardless.
    pub private_networks: bool,
}

/// A manifest that cannot be used, with the file and the reason.
#[derive(Debug, thiserror::Error)]
pub enum ManifestError {
    #[error("{path}: cannot read: {source}")]
    Read { path: String, source: std::io::Error },
    #[error("{path}: {message}")]
    Invalid { path: String, message: String },
}

impl Manifest {
    /// The manifest of a plugin with none: nothing granted, default limits.
    pub fn deny_all() -> Self {
        Self::default()
    }

    /// Read `path` if it exists; a missing file is [`Manifest::deny_all`]. Relative host
    /// folders are relative to the manifest's folder.
    pub fn load(path: &Path) -> Result<Self, ManifestError> {
        let shown = path.display().to_string();
        let text = match std::fs::read_to_string(path) {
            Ok(text) => text,
            Err(error) if error.kind() == std::io::ErrorKind::NotFound => return Ok(Self::deny_all()),
            Err(source) => return Err(ManifestError::Read { path: shown, source }),
        };
        let base = path.parent().unwrap_or(Path::new("."));
        Self::parse(&text, base).map_err(|message| ManifestError::Invalid { path: shown, message })
    }

    /// Parse and validate manifest text; the error names the field and the reason.
    pub fn parse(text: &str, base: &Path) -> Result<Self, String> {
        let raw: RawManifest = toml::from_str(text).map_err(|e| e.to_string().trim_end().to_owned())?;
        let _ = raw.description;
        if let Some(namespace) = &raw.namespace {
            if let Some(problem) = namespace_problem(namespace) {
                return Err(format!("namespace: {namespace:?} {problem}"));
            }
            if namespace.len() > MAX_NAMESPACE_LEN {
                return Err(format!("namespace: {namespace:?} is longer than {MAX_NAMESPACE_LEN} characters"));
            }
        }
        let caps = raw.capabilities;
        for (field, value) in [
            ("memory_mb", caps.memory_mb),
            ("timeout_ms", caps.timeout_ms),
            ("max_response_kb", caps.max_response_kb),
            ("max_events", caps.max_events),
            ("max_event_kb", caps.max_event_kb),
        ] {
            if value == Some(0) {
                return Err(format!("capabilities.{field}: must be at least 1"));
            }
        }
        let mut files = Vec::with_capacity(caps.files.len());
        for (i, grant) in caps.files.into_iter().enumerate() {
            let field = format!("capabilities.files[{i}]");
            let writable = match grant.mode.as_str() {
                "read" => false,
                "read-write" => true,
                other => return Err(format!("{field}.mode: {other:?} is neither \"read\" nor \"read-write\"")),
            };
            if !grant.guest.starts_with('/') {
                return Err(format!("{field}.guest: {:?} must be an absolute guest path like \"/data\"", grant.guest));
            }
            let host = base.join(&grant.host);
            let host =
                host.canonicalize().map_err(|e| format!("{field}.host: {} cannot be used: {e}", host.display()))?;
            if !host.is_dir() {
                return Err(format!("{field}.host: {} is not a folder", host.display()));
            }
            files.push(FileGrant { host, guest: grant.guest, writable });
        }
        for (i, name) in caps.env.iter().enumerate() {
            if name.is_empty() || name.contains('=') {
                return Err(format!("capabilities.env[{i}]: {name:?} is not a variable name"));
            }
        }
        let mut network = Vec::with_capacity(caps.network.len());
        for (i, entry) in caps.network.into_iter().enumerate() {
            let field = format!("capabilities.network[{i}]");
            let Some((host, port)) = entry.rsplit_once(':') else {
                return Err(format!("{field}: {entry:?} lacks a port (write \"{entry}:443\")"));
            };
            if host.is_empty() || port.parse::<u16>().is_err() {
                return Err(format!("{field}: {entry:?} is not host:port"));
            }
            let addresses: Vec<SocketAddr> =
                entry.to_socket_addrs().map_err(|e| format!("{field}: {entry:?} does not resolve: {e}"))?.collect();
            network.push(NetworkGrant { entry, addresses });
        }
        let mut http = Vec::with_capacity(caps.http.len());
        for (i, entry) in caps.http.into_iter().enumerate() {
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
            http.push(HttpGrant { entry, host, port });
        }
        Ok(Self {
            namespace: raw.namespace,
            files,
            env: caps.env,
            network,
            http,
            memory_mb: caps.memory_mb,
            timeout_ms: caps.timeout_ms,
            max_response_kb: caps.max_response_kb,
            max_events: caps.max_events,
            max_event_kb: caps.max_event_kb,
            sampling: caps.sampling,
            elicitation: caps.elicitation,
            roots: caps.roots,
        })
    }

    /// Refuse grants beyond what the host allows any plugin. File grants are compared after
    /// resolving symlinks, so a link inside an allowed folder cannot reach outside it.
    pub fn check_ceilings(&self, ceilings: &Ceilings) -> Result<(), String> {
        if !ceilings.private_networks {
            for (i, grant) in self.network.iter().enumerate().filter(|(_, grant)| !grant.is_ip_literal()) {
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
        }
        if let Some(roots) = ceilings.file_roots {
            let roots: Vec<PathBuf> = roots.iter().map(|r| r.canonicalize().unwrap_or_else(|_| r.clone())).collect();
            for (i, grant) in self.files.iter().enumerate() {
                if !roots.iter().any(|root| grant.host.starts_with(root)) {
                    let allowed: Vec<String> = roots.iter().map(|r| r.display().to_string()).collect();
                    return Err(format!(
                        "capabilities.files[{i}].host: {} is outside the folders this host lets plugins use \
                         (plugins.file_roots: {})",
                        grant.host.display(),
                        allowed.join(", ")
                    ));
                }
            }
        }
        if let Some(allowed) = ceilings.env {
            for (i, name) in self.env.iter().enumerate() {
                if !allowed.contains(name) {
                    return Err(format!(
                        "capabilities.env[{i}]: {name} is not among the variables this host lets plugins read \
                         (plugins.env_allowed)"
                    ));
                }
            }
        }
        if let Some(allowed) = ceilings.network {
            let destinations = self.network.iter().map(|grant| ("network", &grant.entry));
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
        }
        Ok(())
    }

    /// One line a person can read: what this manifest grants.
    pub fn describe_grants(&self) -> String {
        let mut grants = Vec::new();
        for f in &self.files {
            let mode = if f.writable { "read-write" } else { "read" };
            grants.push(format!("files {} as {} ({mode})", f.host.display(), f.guest));
        }
        if !self.env.is_empty() {
            grants.push(format!("env {}", self.env.join(", ")));
        }
        if !self.network.is_empty() {
            let entries: Vec<&str> = self.network.iter().map(|n| n.entry.as_str()).collect();
            grants.push(format!("network {}", entries.join(", ")));
        }
        if !self.http.is_empty() {
            let entries: Vec<&str> = self.http.iter().map(|n| n.entry.as_str()).collect();
            grants.push(format!("http {}", entries.join(", ")));
        }
        for (granted, name) in [(self.sampling, "sampling"), (self.elicitation, "elicitation"), (self.roots, "roots")] {
            if granted {
                grants.push(name.to_owned());
            }
        }
        if grants.is_empty() { "nothing granted".to_owned() } else { grants.join("; ") }
    }
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    use std::net::IpAddr;

    use super::{Ceilings, Manifest, namespace_problem, non_public_range};

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
        let m = parse("[capabilities]\nnetwork = [\"127.0.0.1:9\", \"localhost:9\"]").unwrap();
        let refused = m.check_ceilings(&Ceilings::default());
        let error = refused.unwrap_err();
        assert!(error.contains("capabilities.network[1]") && error.contains("loopback"), "{error}");
        assert!(error.contains("plugins.allow_private_networks"), "{error}");
        assert_eq!(m.check_ceilings(&Ceilings { private_networks: true, ..Ceilings::default() }), Ok(()));
        // IP literals are the operator's explicit choice.
        let literal = parse("[capabilities]\nnetwork = [\"127.0.0.1:9\", \"[::1]:9\"]").unwrap();
        assert_eq!(literal.check_ceilings(&Ceilings::default()), Ok(()));
        assert!(literal.network.iter().all(|grant| grant.is_ip_literal()));
        assert_eq!(literal.network[1].host(), "::1");
    }

    #[test]
    fn namespaces_cannot_run_into_the_separator() {
        for bad in ["docs__y", "docs_", "__", "_", "a__", "a b", "a.b"] {
            assert!(namespace_problem(bad).is_some(), "{bad:?} should be refused");
            let error = parse(&format!("namespace = {bad:?}")).unwrap_err();
            assert!(error.starts_with("namespace:"), "{error}");
        }
        for good in ["", "docs", "docs_y", "_docs", "a-b", "unit-convert-python"] {
            assert_eq!(namespace_problem(good), None, "{good:?}");
        }
        let long = "a".repeat(33);
        assert!(parse(&format!("namespace = {long:?}")).is_err());
    }

    #[test]
    fn the_hosts_ceilings_cap_what_a_manifest_grants() {
        let dir = tempfile::tempdir().unwrap();
        let allowed = dir.path().join("allowed");
        let outside = dir.path().join("outside");
        std::fs::create_dir_all(allowed.join("inner")).unwrap();
        std::fs::create_dir_all(&outside).unwrap();
        // A link inside the allowed folder that points out of it.
        std::os::unix::fs::symlink(&outside, allowed.join("escape")).unwrap();
        let roots = [allowed.clone()];
        let env = ["API_KEY".to_owned()];
        let network = ["127.0.0.1:8080".to_owned(), "localhost:*".to_owned()];
        // Private networks allowed: this test is about the lists; names resolving to loopback
        // have their own test below.
        let ceilings =
            Ceilings { file_roots: Some(&roots), env: Some(&env), network: Some(&network), private_networks: true };
        let grant = |files: &str, env: &str, network: &str| {
            let text = format!(
                "[capabilities]\nfiles = [{{ host = {files:?}, guest = \"/d\", mode = \"read\" }}]\nenv = [{env:?}]\n\
                 network = [{network:?}]"
            );
            Manifest::parse(&text, dir.path()).unwrap().check_ceilings(&ceilings)
        };
        assert_eq!(grant("allowed/inner", "API_KEY", "127.0.0.1:8080"), Ok(()));
        assert_eq!(grant("allowed", "API_KEY", "localhost:9999"), Ok(()));
        let refused = [
            (grant("outside", "API_KEY", "127.0.0.1:8080"), "capabilities.files[0].host"),
            (grant("allowed/escape", "API_KEY", "127.0.0.1:8080"), "capabilities.files[0].host"),
            (grant("allowed/../outside", "API_KEY", "127.0.0.1:8080"), "capabilities.files[0].host"),
            (grant("allowed", "HOME", "127.0.0.1:8080"), "capabilities.env[0]"),
            (grant("allowed", "API_KEY", "127.0.0.1:8081"), "capabilities.network[0]"),
        ];
        let http = Manifest::parse("[capabilities]\nhttp = [\"localhost:1\", \"10.0.0.1:80\"]", dir.path()).unwrap();
        let refused_http = http.check_ceilings(&ceilings);
        assert!(refused_http.as_ref().is_err_and(|e| e.contains("capabilities.http[1]")), "{refused_http:?}");
        for (result, field) in refused {
            assert!(result.as_ref().is_err_and(|e| e.contains(field)), "{result:?} should name {field}");
        }
        assert_eq!(Manifest::deny_all().check_ceilings(&ceilings), Ok(()));
    }

    fn parse(text: &str) -> Result<Manifest, String> {
        Manifest::parse(text, Path::new(env!("CARGO_MANIFEST_DIR")))
    }

    #[test]
    fn an_empty_manifest_grants_nothing() {
        let manifest = parse("").unwrap();
        assert_eq!(manifest, Manifest::deny_all());
        assert_eq!(manifest.describe_grants(), "nothing granted");
    }

    #[test]
    fn grants_and_limits_are_read() {
        let m = parse(
            "namespace = \"\"\n[capabilities]\nfiles = [{ host = \"src\", guest = \"/src\", mode = \"read\" }]\n\
             env = [\"HOME\"]\nnetwork = [\"127.0.0.1:9\"]\nmemory_mb = 32\ntimeout_ms = 500\nmax_response_kb = 8\n\
             max_events = 10\nmax_event_kb = 4\nsampling = true\n",
        )
        .unwrap();
        assert_eq!(m.namespace.as_deref(), Some(""));
        assert_eq!(m.files[0].guest, "/src");
        assert!(!m.files[0].writable);
        assert_eq!(m.env, ["HOME"]);
        assert_eq!(m.network[0].addresses[0].to_string(), "127.0.0.1:9");
        assert_eq!((m.memory_mb, m.timeout_ms, m.max_response_kb), (Some(32), Some(500), Some(8)));
        assert_eq!((m.max_events, m.max_event_kb), (Some(10), Some(4)));
        assert!(m.sampling && !m.elicitation && !m.roots);
    }

    #[test]
    fn http_grants_admit_only_their_origin() {
        let m = parse("[capabilities]\nhttp = [\"API.example.com:443\", \"[::1]:8080\"]").unwrap();
        assert!(m.http[0].admits("api.example.com", 443));
        assert!(!m.http[0].admits("api.example.com", 80));
        assert!(!m.http[0].admits("example.com", 443));
        assert!(m.http[1].admits("[::1]", 8080));
        assert!(!m.http[1].admits("127.0.0.1", 8080));
        assert_eq!(m.describe_grants(), "http API.example.com:443, [::1]:8080");
    }

    #[test]
    fn bad_manifests_name_the_field() {
        let cases = [
            ("namespace = \"a b\"", "namespace"),
            ("[capabilities]\nmemory_mb = 0", "capabilities.memory_mb"),
            ("[capabilities]\ntimeout_ms = 0", "capabilities.timeout_ms"),
            ("[capabilities]\nmax_events = 0", "capabilities.max_events"),
            ("[capabilities]\nmax_event_kb = 0", "capabilities.max_event_kb"),
            ("namespace = \"docs_\"", "namespace"),
            ("[capabilities]\nteleport = true", "teleport"),
            ("unknown = 1", "unknown"),
            ("[capabilities]\nnetwork = [\"example.com\"]", "capabilities.network[0]"),
            (
                "[capabilities]\nfiles = [{ host = \"src\", guest = \"data\", mode = \"read\" }]",
                "capabilities.files[0].guest",
            ),
            (
                "[capabilities]\nfiles = [{ host = \"src\", guest = \"/d\", mode = \"all\" }]",
                "capabilities.files[0].mode",
            ),
            (
                "[capabilities]\nfiles = [{ host = \"no-such-dir\", guest = \"/d\", mode = \"read\" }]",
                "capabilities.files[0].host",
            ),
            ("[capabilities]\nenv = [\"A=B\"]", "capabilities.env[0]"),
            ("[capabilities]\nhttp = [\"example.com\"]", "capabilities.http[0]"),
            ("[capabilities]\nhttp = [\"https://example.com:443\"]", "capabilities.http[0]"),
            ("[capabilities]\nhttp = [\"example.com:http\"]", "capabilities.http[0]"),
        ];
        for (text, field) in cases {
            let error = parse(text).unwrap_err();
            assert!(error.contains(field), "{text:?} gave {error:?}");
        }
    }
}
