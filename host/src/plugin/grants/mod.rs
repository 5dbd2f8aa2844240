//! What a plugin is granted, one module per capability. Each module owns its manifest
//! field(s) under `[capabilities]` (parsing and validation, with file/field/reason errors),
//! the host ceiling that caps it (`[plugins]` in `config/host.toml`, via
//! [`RuntimeOptions`](super::RuntimeOptions)), its part of the sandbox a call runs in, and
//! the words `fedmcp check` prints for it.
//!
//! Deny by default: an empty `[capabilities]` grants no files, no environment, no network,
//! no client round-trips, and leaves the host's default limits.

pub(crate) mod client;
pub(crate) mod env;
pub(crate) mod files;
pub(crate) mod limits;
pub(crate) mod network;

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use serde::Deserialize;

pub(crate) use client::ClientGrants;
pub(crate) use files::FileGrant;
pub(crate) use limits::{LimitRequests, Limits};
pub(crate) use network::NetworkGrants;

/// Everything `[capabilities]` grants, validated.
#[derive(Debug, Clone, PartialEq, Default)]
pub(crate) struct Grants {
    pub files: Vec<FileGrant>,
    /// Names of host environment variables the plugin may read.
    pub env: Vec<String>,
    /// Outbound TCP destinations and wasi:http origins.
    pub network: NetworkGrants,
    /// What the manifest asks of the host's limits.
    pub limits: LimitRequests,
    /// Client round-trips the plugin may ask for.
    pub client: ClientGrants,
}

/// `[capabilities]` as written. One flat table rather than a `#[serde(flatten)]` of each
/// module's part: serde ignores `deny_unknown_fields` under `flatten`, and a misspelt grant
/// must stay an error. The field order is the order the "expected one of" error lists.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawCapabilities {
    #[serde(default)]
    files: Vec<files::RawFileGrant>,
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

/// What the operator lets any manifest grant (`[plugins]` in `config/host.toml`); `None`
/// leaves that kind of grant to the manifest. The limits' ceilings are applied when they are
/// resolved ([`Limits::resolve`]), since they clamp rather than refuse.
#[derive(Debug, Default)]
pub(crate) struct Ceilings<'a> {
    pub file_roots: Option<&'a [PathBuf]>,
    pub env: Option<&'a [String]>,
    pub network: Option<&'a [String]>,
    /// Whether a grant by name may resolve to loopback, private or link-local addresses
    /// (`plugins.allow_private_networks`); IP literal grants may regardless.
    pub private_networks: bool,
}

impl<'a> Ceilings<'a> {
    /// The ceilings of a host's plugin options.
    pub(crate) fn of(options: &'a super::RuntimeOptions) -> Self {
        Self {
            file_roots: options.file_roots.as_deref(),
            env: options.env_allowed.as_deref(),
            network: options.network_allowed.as_deref(),
            private_networks: options.allow_private_networks,
        }
    }
}

impl Grants {
    /// Validate `[capabilities]`; relative host folders are relative to `base`. The error
    /// names the field and the reason.
    pub(super) fn parse(raw: RawCapabilities, base: &Path) -> Result<Self, String> {
        let limits =
            LimitRequests::parse(raw.memory_mb, raw.timeout_ms, raw.max_response_kb, raw.max_events, raw.max_event_kb)?;
        let files = files::parse(raw.files, base)?;
        env::parse(&raw.env)?;
        let network = NetworkGrants::parse(raw.network, raw.http)?;
        let client = ClientGrants { sampling: raw.sampling, elicitation: raw.elicitation, roots: raw.roots };
        Ok(Self { files, env: raw.env, network, limits, client })
    }

    /// Refuse grants beyond what the host allows any plugin.
    pub(crate) fn check_ceilings(&self, ceilings: &Ceilings) -> Result<(), String> {
        // The order is the order errors were always reported in: the private-address rule
        // first, the operator's lists after.
        self.network.check_private_addresses(ceilings.private_networks)?;
        files::check_ceiling(&self.files, ceilings.file_roots)?;
        env::check_ceiling(&self.env, ceilings.env)?;
        self.network.check_allowed(ceilings.network)
    }

    /// One line a person can read: what is granted.
    pub(crate) fn describe(&self) -> String {
        let mut grants = Vec::new();
        files::describe(&self.files, &mut grants);
        env::describe(&self.env, &mut grants);
        self.network.describe(&mut grants);
        self.client.describe(&mut grants);
        if grants.is_empty() { "nothing granted".to_owned() } else { grants.join("; ") }
    }
}

/// What the sandbox refused during one call, for the error the caller sees.
pub(crate) type Denials = Arc<Mutex<Vec<String>>>;

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

#[cfg(test)]
mod tests {
    use super::{Denials, MAX_DENIALS, deny};

    #[test]
    fn denials_are_recorded_once_and_bounded() {
        let denials = Denials::default();
        assert!(deny(&denials, "a".to_owned()));
        assert!(!deny(&denials, "a".to_owned()), "a repeat is not news");
        for i in 0..2 * MAX_DENIALS {
            deny(&denials, format!("d{i}"));
        }
        assert_eq!(denials.lock().unwrap().len(), MAX_DENIALS);
    }
}
