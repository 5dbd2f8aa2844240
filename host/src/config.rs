//! `config/host.toml`: one file, every field with a default.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use serde::Deserialize;

use crate::auth::consent::{ConsentRules, Policy};
use crate::auth::limits::RateSettings;
use crate::auth::{Algorithm, AuthSettings, Grants, Identity, IssuerSettings, KeySource};
use crate::plugin::RuntimeOptions;
use crate::tls::{PeerTls, ServerTls};

/// The host's configuration after defaults and command-line overrides.
#[derive(Debug, Clone)]
pub struct HostConfig {
    pub listen: SocketAddr,
    pub plugins_dir: PathBuf,
    /// Extra `Host` header values to accept besides loopback names (DNS-rebinding guard).
    pub allowed_hosts: Vec<String>,
    /// Browser origins allowed to call the endpoint; empty means only non-browser clients
    /// and loopback origins.
    pub allowed_origins: Vec<String>,
    pub max_request_body_bytes: usize,
    /// How long a legacy (2025-11-25) session may go without a request before it is ended.
    pub session_idle: std::time::Duration,
    /// Hex-encoded key that signs MRTR request states; random per start when unset.
    pub request_state_key: Option<String>,
    pub runtime: RuntimeOptions,
    /// Other MCP servers whose entries this host serves too.
    pub peers: Vec<PeerConfig>,
    /// How many hosts a forwarded request may cross before it is refused.
    pub max_hops: usize,
    /// Inbound bearer-token verification; `None` serves loopback clients as the local user.
    pub auth: Option<AuthSettings>,
    /// Start on a non-loopback address without `[auth]` (logged loudly).
    pub allow_unauthenticated_public: bool,
    /// Where audit lines go (`-` for stderr); `None` keeps no audit log.
    pub audit_log: Option<PathBuf>,
    /// This host's name and signing key, for the tokens it presents to peers.
    pub identity: Option<HostIdentity>,
    /// Which tools run only after the user says yes.
    pub consent: ConsentRules,
    /// Uses of entries per caller; `None`: unlimited.
    pub rate_limit: Option<RateSettings>,
    /// Serve HTTPS with this certificate; `None`: plain HTTP.
    pub tls: Option<ServerTls>,
    /// Who stdio clients (and HTTP clients of a host without `[auth]`) are.
    pub local_user: Identity,
}

/// `[identity]`: the name this host signs as (`iss` and `kid` of its tokens) and its key.
#[derive(Debug, Clone)]
pub struct HostIdentity {
    pub name: String,
    pub key: PathBuf,
}

/// What a host presents to a peer reached by URL.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PeerCredentials {
    None,
    /// A token from a file (minted by the peer's operator, say), read at each connection.
    TokenFile(PathBuf),
    /// Tokens this host mints with its `[identity]` key, per caller, refreshed before expiry.
    Minted {
        audience: String,
        scopes: Vec<String>,
    },
}

/// One `[[peers]]` entry.
#[derive(Debug, Clone)]
pub struct PeerConfig {
    pub name: String,
    /// Prefix of its entries' names (`<namespace>__<name>`); `""` for none.
    pub namespace: String,
    pub target: PeerTarget,
    /// Sent with every HTTP request to the peer (e.g. `Authorization`).
    pub headers: Vec<(String, String)>,
    /// Patterns (`*` matches any run of characters) over the peer's own entry names and
    /// resource URIs: empty `include` imports everything not excluded.
    pub include: Vec<String>,
    pub exclude: Vec<String>,
    pub connect: PeerConnect,
    /// Time limit of each request forwarded to the peer.
    pub timeout: std::time::Duration,
    pub credentials: PeerCredentials,
    /// For an `https://` peer: the CA to trust and this host's client certificate.
    pub tls: PeerTls,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PeerTarget {
    /// A Streamable HTTP endpoint.
    Url(String),
    /// A stdio MCP server the host starts and supervises.
    Command { program: String, args: Vec<String>, env: Vec<(String, String)> },
}

impl std::fmt::Display for PeerTarget {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Url(url) => f.write_str(url),
            Self::Command { program, args, .. } => {
                write!(f, "stdio: {program}")?;
                args.iter().try_for_each(|arg| write!(f, " {arg}"))
            }
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PeerConnect {
    /// Connect when the host starts (in the background; the host does not wait).
    Start,
    /// Connect at the first request that needs the peer.
    Lazy,
}

impl PeerConfig {
    /// Whether the filters let the entry named `name` (or with this URI) in.
    pub fn imports(&self, name: &str) -> bool {
        let included = self.include.is_empty() || self.include.iter().any(|p| crate::auth::glob_matches(p, name));
        included && !self.exclude.iter().any(|p| crate::auth::glob_matches(p, name))
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawPeer {
    name: String,
    namespace: Option<String>,
    url: Option<String>,
    command: Option<Vec<String>>,
    #[serde(default)]
    env: std::collections::BTreeMap<String, String>,
    #[serde(default)]
    headers: std::collections::BTreeMap<String, String>,
    #[serde(default)]
    include: Vec<String>,
    #[serde(default)]
    exclude: Vec<String>,
    connect: Option<String>,
    timeout_ms: Option<u64>,
    auth: Option<String>,
    token_file: Option<PathBuf>,
    audience: Option<String>,
    scopes: Option<Vec<String>>,
    ca: Option<PathBuf>,
    client_cert: Option<PathBuf>,
    client_key: Option<PathBuf>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawFederation {
    max_hops: Option<usize>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawConfig {
    listen: Option<String>,
    plugins_dir: Option<PathBuf>,
    #[serde(default)]
    http: RawHttp,
    #[serde(default)]
    plugins: RawPluginDefaults,
    #[serde(default)]
    federation: RawFederation,
    #[serde(default)]
    peers: Vec<RawPeer>,
    auth: Option<RawAuth>,
    #[serde(default)]
    audit: RawAudit,
    identity: Option<RawIdentity>,
    consent: Option<RawConsent>,
    limits: Option<RawLimits>,
    tls: Option<RawTls>,
    local_user: Option<RawLocalUser>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawLocalUser {
    subject: Option<String>,
    scopes: Option<Vec<String>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawTls {
    cert: PathBuf,
    key: PathBuf,
    client_ca: Option<PathBuf>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawConsent {
    destructive: Option<String>,
    #[serde(default)]
    rules: Vec<RawConsentRule>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawConsentRule {
    tools: String,
    policy: String,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawLimits {
    per_minute: u32,
    burst: Option<u32>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawAuth {
    audience: String,
    algorithms: Option<Vec<String>>,
    leeway_secs: Option<u64>,
    scope_claim: Option<String>,
    resource: Option<String>,
    #[serde(default)]
    authorization_servers: Vec<String>,
    #[serde(default)]
    issuers: Vec<RawIssuer>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawIssuer {
    issuer: String,
    public_key: Option<PathBuf>,
    jwks: Option<PathBuf>,
    secret_file: Option<PathBuf>,
    kid: Option<String>,
    ceiling: Option<Vec<String>>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawAudit {
    file: Option<PathBuf>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawIdentity {
    name: String,
    key: PathBuf,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawHttp {
    allowed_hosts: Option<Vec<String>>,
    allowed_origins: Option<Vec<String>>,
    max_request_body_bytes: Option<usize>,
    session_idle_secs: Option<u64>,
    request_state_key: Option<String>,
    allow_unauthenticated_public: Option<bool>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawPluginDefaults {
    pooling: Option<bool>,
    default_memory_mb: Option<u64>,
    max_memory_mb: Option<u64>,
    default_timeout_ms: Option<u64>,
    max_timeout_ms: Option<u64>,
    default_max_response_kb: Option<u64>,
    cache_dir: Option<PathBuf>,
    file_roots: Option<Vec<PathBuf>>,
    env_allowed: Option<Vec<String>>,
    network_allowed: Option<Vec<String>>,
    allow_private_networks: Option<bool>,
    max_events: Option<u64>,
    max_event_kb: Option<u64>,
}

/// A configuration that cannot be used: the file, the field, the reason.
#[derive(Debug, thiserror::Error)]
#[error("{path}: {message}")]
pub struct ConfigError {
    pub path: String,
    pub message: String,
}

pub const DEFAULT_LISTEN: &str = "127.0.0.1:8931";

impl Default for HostConfig {
    fn default() -> Self {
        Self {
            listen: DEFAULT_LISTEN.parse().unwrap_or_else(|_| SocketAddr::from(([127, 0, 0, 1], 8931))),
            plugins_dir: PathBuf::from("plugins"),
            allowed_hosts: Vec::new(),
            allowed_origins: Vec::new(),
            max_request_body_bytes: 4 << 20,
            session_idle: std::time::Duration::from_secs(300),
            request_state_key: None,
            runtime: RuntimeOptions::default(),
            peers: Vec::new(),
            max_hops: crate::federation::loops::DEFAULT_MAX_HOPS,
            auth: None,
            allow_unauthenticated_public: false,
            audit_log: None,
            identity: None,
            consent: ConsentRules::default(),
            rate_limit: None,
            tls: None,
            local_user: Identity::local(),
        }
    }
}

impl HostConfig {
    /// Read `path`; relative paths in it are relative to the file's folder.
    pub fn load(path: &Path) -> Result<Self, ConfigError> {
        let shown = path.display().to_string();
        let error = |message: String| ConfigError { path: shown.clone(), message };
        let text = std::fs::read_to_string(path).map_err(|e| error(format!("cannot read: {e}")))?;
        let mut config = Self::parse(&text).map_err(error)?;
        if let Some(base) = path.parent() {
            if config.plugins_dir.is_relative() {
                config.plugins_dir = base.join(&config.plugins_dir);
            }
            if let Some(cache) = config.runtime.cache_dir.as_mut().filter(|dir| dir.is_relative()) {
                *cache = base.join(&*cache);
            }
            config.resolve_peer_paths(base);
            config.resolve_auth_paths(base);
            for root in config.runtime.file_roots.iter_mut().flatten() {
                if root.is_relative() {
                    *root = base.join(&*root);
                }
            }
        }
        Ok(config)
    }

    pub fn parse(text: &str) -> Result<Self, String> {
        let raw: RawConfig = toml::from_str(text).map_err(|e| e.to_string().trim_end().to_owned())?;
        let mut config = Self::default();
        if let Some(listen) = raw.listen {
            config.listen = listen
                .parse()
                .map_err(|e| format!("listen: {listen:?} is not an address like 127.0.0.1:8931 ({e})"))?;
        }
        if let Some(dir) = raw.plugins_dir {
            config.plugins_dir = dir;
        }
        if let Some(hosts) = raw.http.allowed_hosts {
            config.allowed_hosts = hosts;
        }
        if let Some(origins) = raw.http.allowed_origins {
            config.allowed_origins = origins;
        }
        if let Some(limit) = raw.http.max_request_body_bytes {
            if limit < 1024 {
                return Err(format!("http.max_request_body_bytes: {limit} is too small (at least 1024)"));
            }
            config.max_request_body_bytes = limit;
        }
        if let Some(seconds) = raw.http.session_idle_secs {
            if !(1..=86_400).contains(&seconds) {
                return Err(format!("http.session_idle_secs: {seconds} is out of range (1 to 86400)"));
            }
            config.session_idle = std::time::Duration::from_secs(seconds);
        }
        if let Some(key) = raw.http.request_state_key {
            if key.len() < 64 || !key.chars().all(|c| c.is_ascii_hexdigit()) {
                return Err("http.request_state_key: must be at least 32 bytes written as hex (64+ hex digits)".into());
            }
            config.request_state_key = Some(key);
        }
        let p = raw.plugins;
        let runtime = &mut config.runtime;
        runtime.pooling = p.pooling.unwrap_or(runtime.pooling);
        runtime.default_memory_mb = p.default_memory_mb.unwrap_or(runtime.default_memory_mb);
        runtime.max_memory_mb = p.max_memory_mb.unwrap_or(runtime.max_memory_mb);
        runtime.default_timeout_ms = p.default_timeout_ms.unwrap_or(runtime.default_timeout_ms);
        runtime.max_timeout_ms = p.max_timeout_ms.unwrap_or(runtime.max_timeout_ms);
        runtime.default_max_response_kb = p.default_max_response_kb.unwrap_or(runtime.default_max_response_kb);
        runtime.file_roots = p.file_roots;
        runtime.env_allowed = p.env_allowed;
        if let Some(allowed) = &p.network_allowed {
            for (i, pattern) in allowed.iter().enumerate() {
                let valid = pattern
                    .rsplit_once(':')
                    .is_some_and(|(host, port)| !host.is_empty() && (port == "*" || port.parse::<u16>().is_ok()));
                if !valid {
                    return Err(format!("plugins.network_allowed[{i}]: {pattern:?} is not host:port or host:*"));
                }
            }
        }
        runtime.network_allowed = p.network_allowed;
        runtime.allow_private_networks = p.allow_private_networks.unwrap_or(runtime.allow_private_networks);
        // Upper bounds keep one call's queued messages (they wait in the host for the caller)
        // within what a host can hold for many calls at once.
        for (field, value, slot, most) in [
            ("max_events", p.max_events, &mut runtime.max_events, 100_000),
            ("max_event_kb", p.max_event_kb, &mut runtime.max_event_kb, 65_536),
        ] {
            if let Some(value) = value {
                if !(1..=most).contains(&value) {
                    return Err(format!("plugins.{field}: {value} is out of range (1 to {most})"));
                }
                *slot = value;
            }
        }
        if let Some(dir) = p.cache_dir {
            // An empty path turns the cache off.
            runtime.cache_dir = if dir.as_os_str().is_empty() { None } else { Some(dir) };
        }
        if runtime.default_memory_mb > runtime.max_memory_mb {
            return Err("plugins.default_memory_mb: larger than plugins.max_memory_mb".into());
        }
        if runtime.default_timeout_ms > runtime.max_timeout_ms {
            return Err("plugins.default_timeout_ms: larger than plugins.max_timeout_ms".into());
        }
        if let Some(max_hops) = raw.federation.max_hops {
            if max_hops == 0 {
                return Err("federation.max_hops: must be at least 1".into());
            }
            config.max_hops = max_hops;
        }
        config.allow_unauthenticated_public = raw.http.allow_unauthenticated_public.unwrap_or(false);
        if let Some(auth) = raw.auth {
            config.auth = Some(parse_auth(auth).map_err(|e| format!("auth.{e}"))?);
        }
        config.audit_log = raw.audit.file;
        if let Some(identity) = raw.identity {
            if !valid_name(&identity.name) {
                return Err(format!("identity.name: {:?} must be letters, digits, '-', '_' or '.'", identity.name));
            }
            config.identity = Some(HostIdentity { name: identity.name, key: identity.key });
        }
        if let Some(consent) = raw.consent {
            if let Some(policy) = consent.destructive {
                config.consent.destructive = policy.parse().map_err(|e| format!("consent.destructive: {e}"))?;
            }
            for (index, rule) in consent.rules.into_iter().enumerate() {
                let policy: Policy = rule.policy.parse().map_err(|e| format!("consent.rules[{index}].policy: {e}"))?;
                config.consent.rules.push((rule.tools, policy));
            }
        }
        if let Some(local) = raw.local_user {
            if let Some(subject) = local.subject {
                config.local_user.subject = subject;
            }
            if let Some(scopes) = local.scopes {
                if let Some(bad) = scopes.iter().find(|s| !crate::auth::is_grant(s)) {
                    return Err(format!(
                        "local_user.scopes: {bad:?} is not *, tools:<pattern>, resources:<pattern> or prompts:<pattern>"
                    ));
                }
                config.local_user.grants = Grants::from_scopes(&scopes);
            }
        }
        if let Some(tls) = raw.tls {
            config.tls = Some(ServerTls { cert: tls.cert, key: tls.key, client_ca: tls.client_ca });
        }
        if let Some(limits) = raw.limits {
            if limits.per_minute == 0 {
                return Err("limits.per_minute: must be at least 1 (leave [limits] out for no limit)".into());
            }
            let burst = limits.burst.unwrap_or((limits.per_minute / 10).max(1));
            if burst == 0 {
                return Err("limits.burst: must be at least 1".into());
            }
            config.rate_limit = Some(RateSettings { per_minute: limits.per_minute, burst });
        }
        for (index, raw) in raw.peers.into_iter().enumerate() {
            let peer = parse_peer(raw).map_err(|e| format!("peers[{index}].{e}"))?;
            if config.peers.iter().any(|p| p.name == peer.name) {
                return Err(format!("peers[{index}].name: {:?} is used by another peer", peer.name));
            }
            if matches!(peer.credentials, PeerCredentials::Minted { .. }) && config.identity.is_none() {
                return Err(format!("peers[{index}].auth: \"identity\" needs an [identity] section (name and key)"));
            }
            config.peers.push(peer);
        }
        Ok(config)
    }

    fn resolve_auth_paths(&mut self, base: &Path) {
        let absolute = |path: &mut PathBuf| {
            if path.is_relative() && path != Path::new("-") && path != Path::new("stderr") {
                *path = base.join(&*path);
            }
        };
        for issuer in self.auth.iter_mut().flat_map(|auth| auth.issuers.iter_mut()) {
            for key in &mut issuer.keys {
                match key {
                    KeySource::Pem { path, .. } | KeySource::Jwks { path } | KeySource::Secret { path, .. } => {
                        absolute(path)
                    }
                }
            }
        }
        if let Some(path) = self.audit_log.as_mut() {
            absolute(path);
        }
        if let Some(identity) = self.identity.as_mut() {
            absolute(&mut identity.key);
        }
        if let Some(tls) = self.tls.as_mut() {
            absolute(&mut tls.cert);
            absolute(&mut tls.key);
            if let Some(ca) = tls.client_ca.as_mut() {
                absolute(ca);
            }
        }
        for peer in &mut self.peers {
            if let PeerCredentials::TokenFile(path) = &mut peer.credentials {
                absolute(path);
            }
            if let Some(ca) = peer.tls.ca.as_mut() {
                absolute(ca);
            }
            if let Some((cert, key)) = peer.tls.client_cert.as_mut() {
                absolute(cert);
                absolute(key);
            }
        }
    }

    /// Resolve a relative program path of a peer command against the config's folder.
    fn resolve_peer_paths(&mut self, base: &Path) {
        for peer in &mut self.peers {
            if let PeerTarget::Command { program, .. } = &mut peer.target
                && (program.starts_with("./") || program.starts_with("../"))
            {
                *program = base.join(&*program).display().to_string();
            }
        }
    }

    /// The key that signs request states, from the config or fresh random bytes.
    pub fn state_key(&self) -> Vec<u8> {
        if let Some(hex) = &self.request_state_key {
            let bytes: Option<Vec<u8>> =
                (0..hex.len() / 2).map(|i| u8::from_str_radix(&hex[2 * i..2 * i + 2], 16).ok()).collect();
            if let Some(bytes) = bytes {
                return bytes;
            }
        }
        let mut key = vec![0u8; 32];
        if getrandom::fill(&mut key).is_err() {
            // Without an OS random source, fall back to a key unique to this process start.
            let seed = format!("{:?}{}", std::time::SystemTime::now(), std::process::id());
            key = seed.into_bytes();
            key.resize(32, 0x5a);
        }
        key
    }
}

fn valid_name(name: &str) -> bool {
    !name.is_empty() && name.chars().all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'))
}

const DEFAULT_ALGORITHMS: [Algorithm; 3] = [Algorithm::EdDSA, Algorithm::ES256, Algorithm::RS256];

fn parse_auth(raw: RawAuth) -> Result<AuthSettings, String> {
    if raw.audience.is_empty() {
        return Err("audience: must name this host (or its resource URL)".into());
    }
    let algorithms = match raw.algorithms {
        None => DEFAULT_ALGORITHMS.to_vec(),
        Some(names) => {
            let mut algorithms = Vec::new();
            for name in names {
                let algorithm: Algorithm = name.parse().map_err(|_| {
                    format!("algorithms: {name:?} is not a JWS algorithm (e.g. EdDSA, ES256, RS256, HS256)")
                })?;
                algorithms.push(algorithm);
            }
            if algorithms.is_empty() {
                return Err("algorithms: must allow at least one".into());
            }
            algorithms
        }
    };
    let leeway_secs = raw.leeway_secs.unwrap_or(30);
    if leeway_secs > 300 {
        return Err(format!("leeway_secs: {leeway_secs} is more than 300"));
    }
    if raw.issuers.is_empty() {
        return Err("issuers: trust at least one issuer ([[auth.issuers]] with issuer and a key)".into());
    }
    let mut issuers = Vec::new();
    for (index, issuer) in raw.issuers.into_iter().enumerate() {
        let error = |message: String| format!("issuers[{index}].{message}");
        if issuer.issuer.is_empty() {
            return Err(error("issuer: must not be empty".into()));
        }
        let key = match (issuer.public_key, issuer.jwks, issuer.secret_file) {
            (Some(path), None, None) => KeySource::Pem { path, kid: issuer.kid },
            (None, Some(path), None) => KeySource::Jwks { path },
            (None, None, Some(path)) => KeySource::Secret { path, kid: issuer.kid },
            _ => return Err(error("public_key: give exactly one of public_key, jwks or secret_file".into())),
        };
        if let Some(bad) = issuer.ceiling.iter().flatten().find(|s| !crate::auth::is_grant(s)) {
            return Err(error(format!(
                "ceiling: {bad:?} is not *, tools:<pattern>, resources:<pattern> or prompts:<pattern>"
            )));
        }
        issuers.push(IssuerSettings { issuer: issuer.issuer, keys: vec![key], ceiling: issuer.ceiling });
    }
    Ok(AuthSettings {
        audience: raw.audience,
        algorithms,
        leeway_secs,
        scope_claim: raw.scope_claim.unwrap_or_else(|| "scope".into()),
        issuers,
        resource: raw.resource,
        authorization_servers: raw.authorization_servers,
    })
}

fn parse_credentials(raw: &RawPeer) -> Result<PeerCredentials, String> {
    match (raw.auth.as_deref(), &raw.token_file) {
        (None, None) => {
            if raw.audience.is_some() || raw.scopes.is_some() {
                return Err("auth: audience and scopes need auth = \"identity\"".into());
            }
            Ok(PeerCredentials::None)
        }
        (None, Some(path)) => Ok(PeerCredentials::TokenFile(path.clone())),
        (Some("identity"), None) => {
            let scopes = raw.scopes.clone().unwrap_or_else(|| vec!["*".into()]);
            Ok(PeerCredentials::Minted { audience: raw.audience.clone().unwrap_or_else(|| raw.name.clone()), scopes })
        }
        (Some("identity"), Some(_)) => Err("auth: give auth = \"identity\" or token_file, not both".into()),
        (Some(other), _) => Err(format!("auth: {other:?} is not \"identity\" (or leave it out)")),
    }
}

fn parse_peer(raw: RawPeer) -> Result<PeerConfig, String> {
    let credentials = parse_credentials(&raw)?;
    let client_cert = match (raw.client_cert.clone(), raw.client_key.clone()) {
        (Some(cert), Some(key)) => Some((cert, key)),
        (None, None) => None,
        _ => return Err("client_cert: give client_cert and client_key together".into()),
    };
    if client_cert.is_some() && raw.ca.is_none() {
        return Err("client_cert: mutual TLS needs the peer's ca too".into());
    }
    let tls = PeerTls { ca: raw.ca.clone(), client_cert };
    let name_ok = !raw.name.is_empty() && raw.name.chars().all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_');
    if !name_ok {
        return Err(format!("name: {:?} must be letters, digits, '-' or '_'", raw.name));
    }
    let namespace = raw.namespace.clone().unwrap_or_else(|| raw.name.clone());
    if let Some(problem) = crate::plugin::manifest::namespace_problem(&namespace) {
        let from_name = if raw.namespace.is_none() { " (the peer's name; set `namespace` to use another)" } else { "" };
        return Err(format!("namespace: {namespace:?}{from_name} {problem} (or \"\" for none)"));
    }
    let target = match (raw.url, raw.command) {
        (Some(url), None) => {
            if !url.starts_with("http://") && !url.starts_with("https://") {
                return Err(format!("url: {url:?} is not an http:// or https:// URL"));
            }
            if url.starts_with("http://") && (raw.ca.is_some() || raw.client_cert.is_some()) {
                return Err("ca: TLS settings need an https:// url".into());
            }
            if !raw.env.is_empty() {
                return Err("env: only for a peer started with `command`".into());
            }
            PeerTarget::Url(url)
        }
        (None, Some(command)) => {
            let Some((program, args)) = command.split_first() else {
                return Err("command: must name a program, e.g. [\"npx\", \"some-mcp-server\"]".into());
            };
            if !raw.headers.is_empty() {
                return Err("headers: only for a peer reached by `url`".into());
            }
            PeerTarget::Command { program: program.clone(), args: args.to_vec(), env: raw.env.into_iter().collect() }
        }
        (Some(_), Some(_)) => return Err("url: give either `url` or `command`, not both".into()),
        (None, None) => return Err("url: a peer needs `url` (Streamable HTTP) or `command` (stdio)".into()),
    };
    if credentials != PeerCredentials::None && !matches!(target, PeerTarget::Url(_)) {
        return Err("auth: credentials are for a peer reached by `url`".into());
    }
    let connect = match raw.connect.as_deref() {
        None | Some("start") => PeerConnect::Start,
        Some("lazy") => PeerConnect::Lazy,
        Some(other) => return Err(format!("connect: {other:?} is not \"start\" or \"lazy\"")),
    };
    let timeout_ms = raw.timeout_ms.unwrap_or(60_000);
    if timeout_ms == 0 {
        return Err("timeout_ms: must be at least 1".into());
    }
    Ok(PeerConfig {
        name: raw.name,
        namespace,
        target,
        headers: raw.headers.into_iter().collect(),
        include: raw.include,
        exclude: raw.exclude,
        connect,
        timeout: std::time::Duration::from_millis(timeout_ms),
        credentials,
        tls,
    })
}

#[cfg(test)]
mod tests {
    use super::HostConfig;

    #[test]
    fn an_empty_file_is_the_default() {
        let config = HostConfig::parse("").unwrap();
        assert_eq!(config.listen.to_string(), super::DEFAULT_LISTEN);
        assert_eq!(config.plugins_dir.to_str(), Some("plugins"));
    }

    #[test]
    fn plugin_budgets_and_private_networks_are_read() {
        let config =
            HostConfig::parse("[plugins]\nmax_events = 50\nmax_event_kb = 8\nallow_private_networks = true").unwrap();
        let runtime = &config.runtime;
        assert_eq!((runtime.max_events, runtime.max_event_kb, runtime.allow_private_networks), (50, 8, true));
        let default = HostConfig::parse("").unwrap().runtime;
        assert_eq!((default.max_events, default.max_event_kb, default.allow_private_networks), (1_000, 1_024, false));
        let unprefixed = HostConfig::parse("[[peers]]\nname = \"b\"\nnamespace = \"\"\nurl = \"http://x\"").unwrap();
        assert_eq!(unprefixed.peers[0].namespace, "");
    }

    #[test]
    fn peer_filters_take_patterns() {
        let text = "[[peers]]\nname = \"b\"\nurl = \"http://127.0.0.1:1/mcp\"\ninclude = [\"get_*\", \"echo\"]\nexclude = [\"*_secret\"]";
        let config = HostConfig::parse(text).unwrap();
        let peer = &config.peers[0];
        assert_eq!(peer.namespace, "b");
        for (name, imported) in [("echo", true), ("get_weather", true), ("get_secret", false), ("put_x", false)] {
            assert_eq!(peer.imports(name), imported, "{name}");
        }
    }

    #[test]
    fn bad_fields_are_named() {
        let cases = [
            ("listen = \"nowhere\"", "listen"),
            ("[http]\nmax_request_body_bytes = 10", "http.max_request_body_bytes"),
            ("[http]\nsession_idle_secs = 0", "http.session_idle_secs"),
            ("[http]\nrequest_state_key = \"abc\"", "http.request_state_key"),
            ("[plugins]\ndefault_memory_mb = 1024\nmax_memory_mb = 64", "plugins.default_memory_mb"),
            ("colour = \"blue\"", "colour"),
            ("[[peers]]\nname = \"b\"", "peers[0].url"),
            ("[[peers]]\nname = \"b\"\nurl = \"ftp://x\"", "peers[0].url"),
            ("[[peers]]\nname = \"b\"\nurl = \"http://x\"\nca = \"ca.pem\"", "peers[0].ca"),
            ("[[peers]]\nname = \"b\"\nurl = \"https://x\"\nclient_cert = \"c.pem\"", "peers[0].client_cert"),
            ("[[peers]]\nname = \"b\"\ncommand = []", "peers[0].command"),
            ("[[peers]]\nname = \"b c\"\nurl = \"http://x\"", "peers[0].name"),
            ("[[peers]]\nname = \"b\"\nurl = \"http://x\"\nconnect = \"later\"", "peers[0].connect"),
            (
                "[[peers]]\nname = \"b\"\nurl = \"http://x\"\n[[peers]]\nname = \"b\"\nurl = \"http://y\"",
                "peers[1].name",
            ),
            ("[federation]\nmax_hops = 0", "federation.max_hops"),
            ("[consent]\ndestructive = \"maybe\"", "consent.destructive"),
            ("[[consent.rules]]\ntools = \"x\"\npolicy = \"never\"", "consent.rules[0].policy"),
            ("[limits]\nper_minute = 0", "limits.per_minute"),
            ("[local_user]\nscopes = [\"everything\"]", "local_user.scopes"),
            ("[auth]\naudience = \"x\"", "auth.issuers"),
            ("[auth]\naudience = \"x\"\nalgorithms = [\"none\"]", "auth.algorithms"),
            (
                "[auth]\naudience = \"x\"\n[[auth.issuers]]\nissuer = \"i\"\npublic_key = \"k\"\nceiling = [\"all\"]",
                "auth.issuers[0].ceiling",
            ),
            ("[[peers]]\nname = \"b\"\nurl = \"http://x\"\nauth = \"identity\"", "peers[0].auth"),
            ("[plugins]\nnetwork_allowed = [\"example.com\"]", "plugins.network_allowed[0]"),
            ("[plugins]\nmax_events = 0", "plugins.max_events"),
            ("[plugins]\nmax_event_kb = 100000000", "plugins.max_event_kb"),
            ("[plugins]\nallow_private_networks = \"yes\"", "allow_private_networks"),
            ("[[peers]]\nname = \"docs_\"\nurl = \"http://x\"", "peers[0].namespace"),
            ("[[peers]]\nname = \"b\"\nnamespace = \"docs__y\"\nurl = \"http://x\"", "peers[0].namespace"),
            ("[[peers]]\nname = \"b\"\nnamespace = \"docs_\"\nurl = \"http://x\"", "peers[0].namespace"),
        ];
        for (text, field) in cases {
            let error = HostConfig::parse(text).unwrap_err();
            assert!(error.contains(field), "{text:?} gave {error:?}");
        }
    }
}
