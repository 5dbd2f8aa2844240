//! `config/host.toml`: one file, every field with a default.
//!
//! Each subsystem owns its section, as written and as checked: `[http]` in
//! `transport::config`, `[plugins]` in `plugin::config`, `[[peers]]` and `[federation]` in
//! `federation::config`, `[auth]`, `[audit]`, `[identity]`, `[local_user]`, `[consent]` and
//! `[limits]` in `auth::config`, `[tls]` in `tls`, `[telemetry]` in `telemetry::config`. This module combines them into
//! [`HostConfig`], resolves relative paths against the file's folder, and names a bad field
//! by its path from the file's root: a section reports a [`FieldError`] relative to itself
//! and [`FieldError::under`] adds the section's name.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use serde::Deserialize;

use crate::auth::config::{RawAudit, RawAuth, RawConsent, RawIdentity, RawLimits, RawLocalUser};
use crate::auth::consent::ConsentRules;
use crate::auth::limits::RateSettings;
use crate::auth::{AuthSettings, Identity};
use crate::federation::config::{RawFederation, RawPeer};
use crate::plugin::RuntimeOptions;
use crate::plugin::config::RawPluginDefaults;
use crate::telemetry::config::{RawTelemetry, TelemetrySettings};
use crate::tls::{RawTls, ServerTls};
use crate::transport::config::{HttpSettings, RawHttp};

pub(crate) use crate::auth::config::HostIdentity;
pub(crate) use crate::federation::config::{PeerConfig, PeerConnect, PeerCredentials, PeerTarget};

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
    /// How often `/ws` pings each WebSocket connection (and how long one may stay silent).
    pub websocket_ping: std::time::Duration,
    /// Hex-encoded key that signs MRTR request states; random per start when unset.
    pub request_state_key: Option<String>,
    /// Where `request_state_key` was read from, when the file named it by path
    /// (`http.request_state_key_file`, e.g. a mounted Secret).
    pub request_state_key_file: Option<PathBuf>,
    /// This replica's tag, which starts the ids of the tasks it creates; `None`: untagged.
    pub replica_id: Option<String>,
    pub runtime: RuntimeOptions,
    /// `[[plugins.sources]]`: plugins pulled from OCI registries into the plugins folder.
    pub plugin_sources: Vec<crate::plugin::oci::source::PluginSource>,
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
    /// Where OpenTelemetry traces go; `None`: nothing is traced.
    pub telemetry: Option<TelemetrySettings>,
}

/// The file as written: each section in its owner's shape.
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
    telemetry: Option<RawTelemetry>,
}

/// A configuration that cannot be used: the file, the field, the reason.
#[derive(Debug, thiserror::Error)]
#[error("{path}: {message}")]
pub struct ConfigError {
    pub path: String,
    pub message: String,
}

/// A field that cannot be used, named by its path from the table that reported it.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{field}: {message}")]
pub(crate) struct FieldError {
    pub field: String,
    pub message: String,
}

impl FieldError {
    pub(crate) fn new(field: impl Into<String>, message: impl Into<String>) -> Self {
        Self { field: field.into(), message: message.into() }
    }

    /// The same error seen from the table holding `parent`: `issuers[0].jwks` under `auth`
    /// is `auth.issuers[0].jwks`, and `[0].url` under `peers` is `peers[0].url`.
    pub(crate) fn under(mut self, parent: impl AsRef<str>) -> Self {
        let parent = parent.as_ref();
        let dot = if self.field.starts_with('[') { "" } else { "." };
        self.field = format!("{parent}{dot}{}", self.field);
        self
    }
}

/// Make `path` relative to `base`, the config file's folder, unless it is absolute.
pub(crate) fn resolve(base: &Path, path: &mut PathBuf) {
    if path.is_relative() {
        *path = base.join(&*path);
    }
}

/// [`resolve`] for a file a section reads or writes, where `-` and `stderr` name the
/// standard error stream rather than a file.
pub(crate) fn resolve_file(base: &Path, path: &mut PathBuf) {
    if path != Path::new("-") && path != Path::new("stderr") {
        resolve(base, path);
    }
}

pub(crate) const DEFAULT_LISTEN: &str = "127.0.0.1:8931";

impl Default for HostConfig {
    fn default() -> Self {
        let http = HttpSettings::default();
        Self {
            listen: DEFAULT_LISTEN.parse().unwrap_or_else(|_| SocketAddr::from(([127, 0, 0, 1], 8931))),
            plugins_dir: PathBuf::from("plugins"),
            allowed_hosts: http.allowed_hosts,
            allowed_origins: http.allowed_origins,
            max_request_body_bytes: http.max_request_body_bytes,
            session_idle: http.session_idle,
            websocket_ping: http.websocket_ping,
            request_state_key: http.request_state_key,
            request_state_key_file: http.request_state_key_file,
            replica_id: http.replica_id,
            runtime: RuntimeOptions::default(),
            plugin_sources: Vec::new(),
            peers: Vec::new(),
            max_hops: crate::federation::loops::DEFAULT_MAX_HOPS,
            auth: None,
            allow_unauthenticated_public: http.allow_unauthenticated_public,
            audit_log: None,
            identity: None,
            consent: ConsentRules::default(),
            rate_limit: None,
            tls: None,
            local_user: Identity::local(),
            telemetry: None,
        }
    }
}

impl HostConfig {
    /// Read `path`; relative paths in it are relative to the file's folder.
    pub fn load(path: &Path) -> Result<Self, ConfigError> {
        let shown = path.display().to_string();
        let error = |message: String| ConfigError { path: shown.clone(), message };
        let text = std::fs::read_to_string(path).map_err(|e| error(format!("cannot read: {e}")))?;
        let mut config = Self::parse_sections(&text).map_err(error)?;
        if let Some(base) = path.parent() {
            config.resolve_paths(base);
        }
        config.read_key_files().map_err(|e| error(e.to_string()))?;
        Ok(config)
    }

    /// Read the text of a config file; an error names the field by its path from the root.
    /// Files it names are relative to the current folder.
    pub fn parse(text: &str) -> Result<Self, String> {
        let mut config = Self::parse_sections(text)?;
        config.read_key_files().map_err(|e| e.to_string())?;
        Ok(config)
    }

    fn parse_sections(text: &str) -> Result<Self, String> {
        let raw: RawConfig = toml::from_str(text).map_err(|e| e.to_string().trim_end().to_owned())?;
        Self::from_sections(raw).map_err(|e| e.to_string())
    }

    /// Read the keys the file names by path rather than holds (once its paths are resolved).
    fn read_key_files(&mut self) -> Result<(), FieldError> {
        if let Some(path) = &self.request_state_key_file {
            let key = crate::transport::config::read_state_key(path).map_err(|e| e.under("http"))?;
            self.request_state_key = Some(key);
        }
        for (index, source) in self.plugin_sources.iter_mut().enumerate() {
            source.read_keys(index).map_err(|e| e.under("plugins"))?;
        }
        Ok(())
    }

    fn from_sections(mut raw: RawConfig) -> Result<Self, FieldError> {
        let mut config = Self::default();
        if let Some(listen) = raw.listen {
            config.listen = listen.parse().map_err(|e| {
                FieldError::new("listen", format!("{listen:?} is not an address like 127.0.0.1:8931 ({e})"))
            })?;
        }
        if let Some(dir) = raw.plugins_dir {
            config.plugins_dir = dir;
        }
        let http = raw.http.parse().map_err(|e| e.under("http"))?;
        config.allowed_hosts = http.allowed_hosts;
        config.allowed_origins = http.allowed_origins;
        config.max_request_body_bytes = http.max_request_body_bytes;
        config.session_idle = http.session_idle;
        config.websocket_ping = http.websocket_ping;
        config.request_state_key = http.request_state_key;
        config.request_state_key_file = http.request_state_key_file;
        config.replica_id = http.replica_id;
        config.allow_unauthenticated_public = http.allow_unauthenticated_public;
        let sources = raw.plugins.take_sources();
        config.runtime = raw.plugins.parse().map_err(|e| e.under("plugins"))?;
        config.plugin_sources = crate::plugin::oci::source::parse_sources(sources).map_err(|e| e.under("plugins"))?;
        config.max_hops = raw.federation.max_hops().map_err(|e| e.under("federation"))?;
        config.auth = raw.auth.map(RawAuth::parse).transpose().map_err(|e| e.under("auth"))?;
        config.audit_log = raw.audit.file();
        config.identity = raw.identity.map(RawIdentity::parse).transpose().map_err(|e| e.under("identity"))?;
        if let Some(consent) = raw.consent {
            config.consent = consent.parse().map_err(|e| e.under("consent"))?;
        }
        if let Some(local) = raw.local_user {
            config.local_user = local.parse().map_err(|e| e.under("local_user"))?;
        }
        config.tls = raw.tls.map(ServerTls::from);
        config.rate_limit = raw.limits.map(RawLimits::parse).transpose().map_err(|e| e.under("limits"))?;
        config.telemetry = match raw.telemetry {
            Some(telemetry) => telemetry.parse().map_err(|e| e.under("telemetry"))?,
            None => None,
        };
        let has_identity = config.identity.is_some();
        config.peers = crate::federation::config::parse_peers(raw.peers, has_identity).map_err(|e| e.under("peers"))?;
        Ok(config)
    }

    /// Make every relative path in the file relative to `base`, the file's folder.
    fn resolve_paths(&mut self, base: &Path) {
        resolve(base, &mut self.plugins_dir);
        if let Some(path) = self.request_state_key_file.as_mut() {
            resolve(base, path);
        }
        crate::plugin::config::resolve_paths(&mut self.runtime, base);
        self.plugin_sources.iter_mut().for_each(|source| source.resolve_paths(base));
        self.peers.iter_mut().for_each(|peer| peer.resolve_paths(base));
        if let Some(auth) = self.auth.as_mut() {
            auth.resolve_paths(base);
        }
        if let Some(path) = self.audit_log.as_mut() {
            resolve_file(base, path);
        }
        if let Some(identity) = self.identity.as_mut() {
            resolve_file(base, &mut identity.key);
        }
        if let Some(tls) = self.tls.as_mut() {
            tls.resolve_paths(base);
        }
    }

    /// The key that signs request states, from `[http]` or fresh random bytes.
    pub(crate) fn state_key(&self) -> Vec<u8> {
        crate::transport::config::state_key(self.request_state_key.as_deref())
    }
}

#[cfg(test)]
mod tests {
    use super::{FieldError, HostConfig};

    #[test]
    fn an_empty_file_is_the_default() {
        let config = HostConfig::parse("").unwrap();
        assert_eq!(config.listen.to_string(), super::DEFAULT_LISTEN);
        assert_eq!(config.plugins_dir.to_str(), Some("plugins"));
    }

    #[test]
    fn telemetry_is_off_unless_a_collector_is_named() {
        assert_eq!(HostConfig::parse("").unwrap().telemetry, None);
        let config = HostConfig::parse("[telemetry]\notlp_endpoint = \"http://127.0.0.1:4318\"").unwrap();
        let telemetry = config.telemetry.expect("tracing is on");
        assert_eq!(telemetry.traces_url, "http://127.0.0.1:4318/v1/traces");
    }

    #[test]
    fn a_section_error_is_named_from_the_root() {
        let error = FieldError::new("jwks", "unreadable").under("issuers[0]").under("auth");
        assert_eq!(error.to_string(), "auth.issuers[0].jwks: unreadable");
        assert_eq!(FieldError::new("[1].url", "bad").under("peers").to_string(), "peers[1].url: bad");
        let text =
            "[auth]\naudience = \"x\"\n[[auth.issuers]]\nissuer = \"i\"\npublic_key = \"k\"\nceiling = [\"all\"]";
        let expected =
            "auth.issuers[0].ceiling: \"all\" is not *, tools:<pattern>, resources:<pattern> or prompts:<pattern>";
        assert_eq!(HostConfig::parse(text).unwrap_err(), expected);
    }

    #[test]
    fn bad_fields_are_named() {
        let cases = [
            ("listen = \"nowhere\"", "listen"),
            ("[http]\nmax_request_body_bytes = 10", "http.max_request_body_bytes"),
            ("[http]\nsession_idle_secs = 0", "http.session_idle_secs"),
            ("[http]\nrequest_state_key = \"abc\"", "http.request_state_key"),
            ("[http]\nreplica_id = \"a.b\"", "http.replica_id"),
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
            ("[limits]\nper_minute = 5\nredis = \"http://x\"", "limits.redis"),
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
            ("[[plugins.sources]]\noci = \"oci://r.example.com/x:1\"", "plugins.sources[0].verify_key"),
            ("[[plugins.sources]]\noci = \"x\"\nallow_unsigned = true", "plugins.sources[0].oci"),
            (
                "[[plugins.sources]]\noci = \"oci://r.example.com/x:1\"\nverify_key = \"/nonexistent.pem\"",
                "plugins.sources[0].verify_key",
            ),
            ("[plugins]\nmax_event_kb = 100000000", "plugins.max_event_kb"),
            ("[plugins]\nallow_private_networks = \"yes\"", "allow_private_networks"),
            ("[[peers]]\nname = \"docs_\"\nurl = \"http://x\"", "peers[0].namespace"),
            ("[[peers]]\nname = \"b\"\nnamespace = \"docs__y\"\nurl = \"http://x\"", "peers[0].namespace"),
            ("[[peers]]\nname = \"b\"\nnamespace = \"docs_\"\nurl = \"http://x\"", "peers[0].namespace"),
            ("[telemetry]\notlp_endpoint = \"localhost:4318\"", "telemetry.otlp_endpoint"),
            ("[telemetry]\notlp_endpoint = \"http://x\"\nendpoint = \"http://y\"", "endpoint"),
        ];
        for (text, field) in cases {
            let error = HostConfig::parse(text).unwrap_err();
            assert!(error.contains(field), "{text:?} gave {error:?}");
        }
    }
}
