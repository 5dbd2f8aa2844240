//! The `[http]` section of `host.toml`: what the HTTP listener accepts (hosts, origins, body
//! size), how long an idle legacy session lives, how often `/ws` pings its connections, the
//! key that seals MRTR request states (or the file holding it, such as a mounted Kubernetes
//! Secret), this replica's tag among replicas behind one load balancer, and whether it may
//! serve a public address without `[auth]`.
//!
//! Errors name fields relative to the section (`session_idle_secs`); `crate::config` adds
//! `http.`.

use std::path::PathBuf;
use std::time::Duration;

use serde::Deserialize;

use crate::config::FieldError;

/// `[http]` as written.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawHttp {
    allowed_hosts: Option<Vec<String>>,
    allowed_origins: Option<Vec<String>>,
    max_request_body_bytes: Option<usize>,
    session_idle_secs: Option<u64>,
    websocket_ping_secs: Option<u64>,
    request_state_key: Option<String>,
    request_state_key_file: Option<PathBuf>,
    replica_id: Option<String>,
    allow_unauthenticated_public: Option<bool>,
}

/// `[http]` checked, with its defaults.
#[derive(Debug, Clone)]
pub(crate) struct HttpSettings {
    pub allowed_hosts: Vec<String>,
    pub allowed_origins: Vec<String>,
    pub max_request_body_bytes: usize,
    pub session_idle: Duration,
    /// How often `/ws` pings each connection; one that has sent nothing (not even the pong)
    /// by the next ping is dropped.
    pub websocket_ping: Duration,
    pub request_state_key: Option<String>,
    /// A file holding the key (hex), read when the whole file is known (relative paths are
    /// relative to it); `request_state_key` and this are not both set.
    pub request_state_key_file: Option<PathBuf>,
    /// This replica's tag in the ids of the tasks it creates (see [`replica_id`]).
    pub replica_id: Option<String>,
    pub allow_unauthenticated_public: bool,
}

impl Default for HttpSettings {
    fn default() -> Self {
        Self {
            allowed_hosts: Vec::new(),
            allowed_origins: Vec::new(),
            max_request_body_bytes: 4 << 20,
            session_idle: Duration::from_secs(300),
            websocket_ping: Duration::from_secs(30),
            request_state_key: None,
            request_state_key_file: None,
            replica_id: None,
            allow_unauthenticated_public: false,
        }
    }
}

impl RawHttp {
    pub(crate) fn parse(self) -> Result<HttpSettings, FieldError> {
        let mut http = HttpSettings::default();
        if let Some(hosts) = self.allowed_hosts {
            http.allowed_hosts = hosts;
        }
        if let Some(origins) = self.allowed_origins {
            http.allowed_origins = origins;
        }
        if let Some(limit) = self.max_request_body_bytes {
            if limit < 1024 {
                return Err(FieldError::new("max_request_body_bytes", format!("{limit} is too small (at least 1024)")));
            }
            http.max_request_body_bytes = limit;
        }
        if let Some(seconds) = self.session_idle_secs {
            if !(1..=86_400).contains(&seconds) {
                return Err(FieldError::new("session_idle_secs", format!("{seconds} is out of range (1 to 86400)")));
            }
            http.session_idle = Duration::from_secs(seconds);
        }
        if let Some(seconds) = self.websocket_ping_secs {
            if !(1..=3600).contains(&seconds) {
                return Err(FieldError::new("websocket_ping_secs", format!("{seconds} is out of range (1 to 3600)")));
            }
            http.websocket_ping = Duration::from_secs(seconds);
        }
        if let Some(key) = self.request_state_key {
            if self.request_state_key_file.is_some() {
                let message = "set request_state_key or request_state_key_file, not both";
                return Err(FieldError::new("request_state_key_file", message));
            }
            check_state_key(&key).map_err(|message| FieldError::new("request_state_key", message))?;
            http.request_state_key = Some(key);
        }
        http.request_state_key_file = self.request_state_key_file;
        if let Some(written) = self.replica_id {
            let from_env = |name: &str| std::env::var(name).ok();
            http.replica_id =
                Some(replica_id(&written, from_env).map_err(|message| FieldError::new("replica_id", message))?);
        }
        http.allow_unauthenticated_public = self.allow_unauthenticated_public.unwrap_or(false);
        Ok(http)
    }
}

/// The most of `request_state_key_file` that is read.
const MAX_KEY_FILE_BYTES: u64 = 4096;

/// Why `key` cannot sign request states, if it cannot.
fn check_state_key(key: &str) -> Result<(), &'static str> {
    if key.len() < 64 || !key.chars().all(|c| c.is_ascii_hexdigit()) {
        return Err("must be at least 32 bytes written as hex (64+ hex digits)");
    }
    if key.len() % 2 == 1 {
        return Err("has an odd number of hex digits (two make each byte)");
    }
    Ok(())
}

/// The key in `request_state_key_file`: its text without surrounding whitespace (a Secret
/// written with `echo` ends in a newline), checked as `request_state_key` is. The error
/// names the file, never its content.
pub(crate) fn read_state_key(path: &std::path::Path) -> Result<String, FieldError> {
    use std::io::Read;
    let field = "request_state_key_file";
    let cannot_read = |e: std::io::Error| FieldError::new(field, format!("cannot read {}: {e}", path.display()));
    // A key is a few hundred bytes at most; a path to something endless (a device, a pipe)
    // must not hang the start.
    let mut text = String::new();
    std::fs::File::open(path)
        .and_then(|file| file.take(MAX_KEY_FILE_BYTES + 1).read_to_string(&mut text))
        .map_err(cannot_read)?;
    if text.len() as u64 > MAX_KEY_FILE_BYTES {
        let message = format!("{}: longer than {MAX_KEY_FILE_BYTES} bytes: not a key file", path.display());
        return Err(FieldError::new(field, message));
    }
    let key = text.trim();
    check_state_key(key).map_err(|message| FieldError::new(field, format!("{}: {message}", path.display())))?;
    Ok(key.to_owned())
}

/// `replica_id` as written: a tag of 1 to 32 letters, digits, `-` or `_` (it starts every task
/// id this replica creates, before a `.`, and load-balancer rules match it), or `$NAME` to take
/// it from environment variable NAME (`$HOSTNAME`: a Kubernetes pod's name), so replicas can
/// share one config file.
fn replica_id(written: &str, env: impl Fn(&str) -> Option<String>) -> Result<String, String> {
    let value = match written.strip_prefix('$') {
        Some(name) => env(name).ok_or_else(|| format!("names ${name}, and that environment variable is not set"))?,
        None => written.to_owned(),
    };
    let fits =
        (1..=32).contains(&value.len()) && value.chars().all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_');
    if !fits {
        return Err(format!("{value:?} is not 1 to 32 letters, digits, '-' or '_'"));
    }
    Ok(value)
}

/// The key that signs MRTR request states: `request_state_key` decoded, or fresh random
/// bytes when it is unset.
pub(crate) fn state_key(hex: Option<&str>) -> Vec<u8> {
    if let Some(hex) = hex {
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

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> Result<HttpSettings, FieldError> {
        toml::from_str::<RawHttp>(text).unwrap().parse()
    }

    #[test]
    fn limits_are_checked() {
        assert_eq!(parse("max_request_body_bytes = 1023").unwrap_err().field, "max_request_body_bytes");
        assert_eq!(parse("session_idle_secs = 86401").unwrap_err().field, "session_idle_secs");
        assert_eq!(parse("websocket_ping_secs = 0").unwrap_err().field, "websocket_ping_secs");
        assert_eq!(parse("websocket_ping_secs = 2").unwrap().websocket_ping, Duration::from_secs(2));
        let http = parse("max_request_body_bytes = 1024\nsession_idle_secs = 5").unwrap();
        assert_eq!((http.max_request_body_bytes, http.session_idle), (1024, Duration::from_secs(5)));
    }

    #[test]
    fn a_state_key_is_long_hex() {
        assert!(parse(&format!("request_state_key = \"{}\"", "ab".repeat(32))).is_ok());
        assert!(parse(&format!("request_state_key = \"{}\"", "zz".repeat(32))).is_err());
        assert_eq!(state_key(Some(&"0a".repeat(32))), vec![10; 32]);
        assert_eq!(state_key(None).len(), 32);
        let both = format!("request_state_key = \"{}\"\nrequest_state_key_file = \"key\"", "ab".repeat(32));
        assert_eq!(parse(&both).unwrap_err().field, "request_state_key_file");
    }

    #[test]
    fn a_state_key_file_is_trimmed_and_checked() {
        let dir = tempfile::tempdir().unwrap();
        let good = dir.path().join("good");
        std::fs::write(&good, format!("{}\n", "0a".repeat(32))).unwrap();
        assert_eq!(read_state_key(&good).unwrap(), "0a".repeat(32));
        let short = dir.path().join("short");
        std::fs::write(&short, "abcd").unwrap();
        let error = read_state_key(&short).unwrap_err();
        assert!(error.message.contains("64+ hex digits") && !error.message.contains("abcd"), "{error:?}");
        assert_eq!(read_state_key(&dir.path().join("missing")).unwrap_err().field, "request_state_key_file");
        let long = dir.path().join("long");
        std::fs::write(&long, "ab".repeat(4096)).unwrap();
        assert!(read_state_key(&long).unwrap_err().message.contains("longer than"));
        assert!(parse(&format!("request_state_key = \"{}a\"", "ab".repeat(32))).is_err(), "odd digits");
    }

    #[test]
    fn a_replica_id_is_a_short_tag_or_an_environment_variable() {
        let env = |name: &str| (name == "HOSTNAME").then(|| "fedmcp-2".to_owned());
        assert_eq!(replica_id("r1", env).unwrap(), "r1");
        assert_eq!(replica_id("$HOSTNAME", env).unwrap(), "fedmcp-2");
        assert!(replica_id("$POD_NAME", env).unwrap_err().contains("$POD_NAME"));
        assert!(replica_id("a.b", env).is_err(), "a dot ends the tag in a task id");
        assert!(replica_id("", env).is_err());
        assert!(replica_id(&"x".repeat(33), env).is_err());
    }
}
