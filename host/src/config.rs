//! `config/host.toml`: one file, every field with a default.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use serde::Deserialize;

use crate::plugin::RuntimeOptions;

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
    /// Hex-encoded key that signs MRTR request states; random per start when unset.
    pub request_state_key: Option<String>,
    pub runtime: RuntimeOptions,
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
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawHttp {
    allowed_hosts: Option<Vec<String>>,
    allowed_origins: Option<Vec<String>>,
    max_request_body_bytes: Option<usize>,
    request_state_key: Option<String>,
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
            request_state_key: None,
            runtime: RuntimeOptions::default(),
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
        Ok(config)
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
    fn bad_fields_are_named() {
        let cases = [
            ("listen = \"nowhere\"", "listen"),
            ("[http]\nmax_request_body_bytes = 10", "http.max_request_body_bytes"),
            ("[http]\nrequest_state_key = \"abc\"", "http.request_state_key"),
            ("[plugins]\ndefault_memory_mb = 1024\nmax_memory_mb = 64", "plugins.default_memory_mb"),
            ("colour = \"blue\"", "colour"),
        ];
        for (text, field) in cases {
            let error = HostConfig::parse(text).unwrap_err();
            assert!(error.contains(field), "{text:?} gave {error:?}");
        }
    }
}
