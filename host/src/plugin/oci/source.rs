//! `[[plugins.sources]]`: plugins a host pulls from OCI registries into its plugins folder at
//! start, and, with `poll_secs`, again whenever the tag points somewhere new. The watcher then
//! loads them like any other file. A failed pull is logged and shown in `/health`; the
//! version in the folder keeps serving.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde::{Deserialize, Serialize};

use super::signature::TrustedKey;
use super::{Installed, OciError, OciReference, Registry, RegistryOptions, check_plugin_name};
use crate::config::{FieldError, resolve};

/// The shortest and longest re-check period.
const POLL_SECS: std::ops::RangeInclusive<u64> = 1..=86_400;

/// One `[[plugins.sources]]` entry as written.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawSource {
    oci: String,
    name: Option<String>,
    verify_key: Option<OneOrMany>,
    allow_unsigned: Option<bool>,
    poll_secs: Option<u64>,
    insecure: Option<bool>,
    auth_file: Option<PathBuf>,
}

#[derive(Debug, Deserialize)]
#[serde(untagged)]
enum OneOrMany {
    One(PathBuf),
    Many(Vec<PathBuf>),
}

/// A plugin the host pulls from a registry.
#[derive(Debug, Clone)]
pub struct PluginSource {
    pub reference: OciReference,
    /// The plugin's file name in the plugins folder (and so its namespace).
    pub name: String,
    /// Public keys, one of which must have signed the artifact; read by [`Self::read_keys`].
    pub verify_key_paths: Vec<PathBuf>,
    pub trusted: Vec<TrustedKey>,
    /// How often to check whether the tag moved; `None`: only at start.
    pub poll: Option<Duration>,
    pub registry: RegistryOptions,
}

/// Check the `[[plugins.sources]]` entries; errors are named `sources[i].field`.
pub(crate) fn parse_sources(raw: Vec<RawSource>) -> Result<Vec<PluginSource>, FieldError> {
    let mut sources: Vec<PluginSource> = Vec::new();
    for (i, raw) in raw.into_iter().enumerate() {
        let field = |name: &str, message: String| FieldError::new(format!("sources[{i}].{name}"), message);
        let reference = OciReference::parse(&raw.oci).map_err(|e| field("oci", e.to_string()))?;
        let name = raw.name.unwrap_or_else(|| reference.default_name().to_owned());
        check_plugin_name(&name).map_err(|e| field("name", e.to_string()))?;
        if sources.iter().any(|s| s.name == name) {
            return Err(field("name", format!("{name:?} is the name of an earlier source")));
        }
        let verify_key_paths = match raw.verify_key {
            None => Vec::new(),
            Some(OneOrMany::One(path)) => vec![path],
            Some(OneOrMany::Many(paths)) => paths,
        };
        match (verify_key_paths.is_empty(), raw.allow_unsigned.unwrap_or(false)) {
            (true, false) => {
                return Err(field(
                    "verify_key",
                    "required: the public key (PEM) that signs this plugin, or allow_unsigned = true".into(),
                ));
            }
            (false, true) => {
                return Err(field("allow_unsigned", "contradicts verify_key: give one or the other".into()));
            }
            _ => {}
        }
        let poll = match raw.poll_secs {
            Some(secs) if !POLL_SECS.contains(&secs) => {
                return Err(field("poll_secs", format!("{secs} is out of range (1 to 86400)")));
            }
            secs => secs.map(Duration::from_secs),
        };
        sources.push(PluginSource {
            reference,
            name,
            verify_key_paths,
            trusted: Vec::new(),
            poll,
            registry: RegistryOptions { insecure: raw.insecure.unwrap_or(false), auth_file: raw.auth_file },
        });
    }
    Ok(sources)
}

impl PluginSource {
    /// Make the key and credential files relative to `base` (the config file's folder).
    pub(crate) fn resolve_paths(&mut self, base: &Path) {
        self.verify_key_paths.iter_mut().for_each(|path| resolve(base, path));
        if let Some(path) = self.registry.auth_file.as_mut() {
            resolve(base, path);
        }
    }

    /// Read the trusted keys, so a missing or malformed one stops the start.
    pub(crate) fn read_keys(&mut self, index: usize) -> Result<(), FieldError> {
        self.trusted = self
            .verify_key_paths
            .iter()
            .map(|path| TrustedKey::load(path))
            .collect::<Result<_, _>>()
            .map_err(|message| FieldError::new(format!("sources[{index}].verify_key"), message))?;
        Ok(())
    }
}

/// What `/health` shows of a source.
#[derive(Debug, Clone, Serialize)]
pub struct SourceStatus {
    pub name: String,
    pub oci: String,
    /// The manifest digest now in the plugins folder, once pulled.
    pub digest: Option<String>,
    /// Why the last check failed; `None` after a good one.
    pub error: Option<String>,
}

/// Every source's last outcome, by name.
#[derive(Debug, Default)]
pub struct SourceStatuses(Mutex<BTreeMap<String, SourceStatus>>);

impl SourceStatuses {
    pub fn snapshot(&self) -> Vec<SourceStatus> {
        self.0.lock().map(|statuses| statuses.values().cloned().collect()).unwrap_or_default()
    }

    fn update(&self, status: SourceStatus) {
        if let Ok(mut statuses) = self.0.lock() {
            statuses.insert(status.name.clone(), status);
        }
    }
}

/// Follow every source in the background: pull each now, and again when its tag moves.
pub fn follow_all(sources: &[PluginSource], dir: &Path, statuses: &Arc<SourceStatuses>) {
    for source in sources {
        statuses.update(SourceStatus {
            name: source.name.clone(),
            oci: source.reference.to_string(),
            digest: None,
            error: None,
        });
        tokio::spawn(follow(source.clone(), dir.to_path_buf(), statuses.clone()));
    }
}

/// After a failed check, the wait before the next one starts at the source's `poll_secs` (or
/// this, without it) and doubles with each failure in a row, up to [`MAX_RETRY`].
const FIRST_RETRY: Duration = Duration::from_secs(30);
const MAX_RETRY: Duration = Duration::from_secs(3600);

async fn follow(source: PluginSource, dir: PathBuf, statuses: Arc<SourceStatuses>) {
    let mut current: Option<String> = None;
    let mut failures: u32 = 0;
    let mut last_error: Option<String> = None;
    loop {
        let outcome = match tokio::time::timeout(super::PULL_DEADLINE, check(&source, &dir, current.as_deref())).await {
            Ok(outcome) => outcome,
            Err(_) => Err(OciError::Registry {
                reference: source.reference.to_string(),
                message: format!("did not finish within {} s", super::PULL_DEADLINE.as_secs()),
            }),
        };
        let error = match outcome {
            Ok(digest) => {
                current = Some(digest);
                failures = 0;
                last_error = None;
                None
            }
            Err(error) => {
                failures = failures.saturating_add(1);
                let text = error.to_string();
                // Logged when it starts failing, or fails differently; not on every retry.
                if last_error.as_deref() != Some(text.as_str()) {
                    tracing::error!(source = %source.name, oci = %source.reference, %error, "plugin source not pulled; the version in the folder (if any) keeps serving");
                }
                last_error = Some(text.clone());
                Some(text)
            }
        };
        statuses.update(SourceStatus {
            name: source.name.clone(),
            oci: source.reference.to_string(),
            digest: current.clone(),
            error,
        });
        // A pinned digest never changes: once pulled, there is nothing more to check.
        let done = source.reference.pinned_digest().is_some() && current.is_some();
        if done {
            return;
        }
        if failures > 0 {
            // Retried (even without `poll_secs`: a registry down at start comes back), backing off.
            let base = source.poll.unwrap_or(FIRST_RETRY);
            let wait = base.saturating_mul(1 << failures.saturating_sub(1).min(16)).min(MAX_RETRY);
            tokio::time::sleep(wait).await;
            continue;
        }
        match source.poll {
            Some(period) => tokio::time::sleep(period).await,
            None => return,
        }
    }
}

/// Pull `source` unless its tag still names `current`; the digest now installed.
async fn check(source: &PluginSource, dir: &Path, current: Option<&str>) -> Result<String, OciError> {
    let registry = Registry::connect(&source.reference, &source.registry, oci_client::RegistryOperation::Pull).await?;
    // Unchanged tag and the file still there: nothing to do. (Removed by hand: pulled again.)
    if let Some(current) = current
        && dir.join(format!("{}.wasm", source.name)).is_file()
        && registry.current_digest(&source.reference.reference).await? == current
    {
        return Ok(current.to_owned());
    }
    let fetched = super::fetch_with(&registry, &source.reference, &source.trusted).await?;
    let dir_for_install = dir.to_path_buf();
    let name = source.name.clone();
    let (fetched, installed) = tokio::task::spawn_blocking(move || {
        let installed = super::install(&dir_for_install, &name, &fetched);
        (fetched, installed)
    })
    .await
    .map_err(|e| OciError::Install(format!("the install ended abnormally: {e}")))?;
    if installed? == Installed::Written {
        tracing::info!(source = %source.name, oci = %source.reference, digest = %fetched.digest, signed_by = ?fetched.signed_by, "plugin source pulled");
    }
    Ok(fetched.digest)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> Result<Vec<PluginSource>, FieldError> {
        #[derive(Deserialize)]
        struct Wrapper {
            sources: Vec<RawSource>,
        }
        let wrapper: Wrapper = toml::from_str(text).map_err(|e| FieldError::new("toml", e.to_string()))?;
        parse_sources(wrapper.sources)
    }

    #[test]
    fn a_source_is_read_with_its_defaults() {
        let sources = parse(
            "[[sources]]\noci = \"oci://127.0.0.1:5000/plugins/echo:stable\"\nverify_key = \"keys/pub.pem\"\n\
             poll_secs = 30\n[[sources]]\noci = \"oci://r.example.com/x:1\"\nname = \"other\"\nallow_unsigned = true",
        )
        .expect("valid");
        assert_eq!(sources[0].name, "echo");
        assert_eq!(sources[0].poll, Some(Duration::from_secs(30)));
        assert_eq!(sources[0].verify_key_paths, [PathBuf::from("keys/pub.pem")]);
        assert_eq!((sources[1].name.as_str(), sources[1].poll), ("other", None));
    }

    #[test]
    fn bad_sources_are_named_by_field() {
        let cases = [
            ("oci = \"127.0.0.1:5000/x:1\"\nallow_unsigned = true", "sources[0].oci"),
            ("oci = \"oci://r.example.com/x:1\"", "sources[0].verify_key"),
            (
                "oci = \"oci://r.example.com/x:1\"\nverify_key = \"k\"\nallow_unsigned = true",
                "sources[0].allow_unsigned",
            ),
            ("oci = \"oci://r.example.com/x:1\"\nallow_unsigned = true\npoll_secs = 0", "sources[0].poll_secs"),
            ("oci = \"oci://r.example.com/x.y:1\"\nallow_unsigned = true", "sources[0].name"),
            ("oci = \"oci://r.example.com/x:1\"\nallow_unsigned = true\ncolour = 1", "colour"),
        ];
        for (text, expected) in cases {
            let error = parse(&format!("[[sources]]\n{text}")).unwrap_err();
            assert!(error.to_string().contains(expected), "{text:?} gave {error}");
        }
        let twice = "[[sources]]\noci = \"oci://r.example.com/x:1\"\nallow_unsigned = true\n\
                     [[sources]]\noci = \"oci://s.example.com/x:2\"\nallow_unsigned = true";
        assert_eq!(parse(twice).unwrap_err().field, "sources[1].name");
    }
}
