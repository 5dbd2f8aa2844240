//! The `[plugins]` section of `host.toml`: the defaults a manifest gets when it asks for
//! nothing, and the ceilings it may not ask past (memory, time, files, environment, network,
//! events).
//!
//! Errors name fields relative to the section (`network_allowed[0]`); `crate::config` adds
//! `plugins.`.

use std::path::{Path, PathBuf};

use serde::Deserialize;

use crate::config::{FieldError, resolve};
use crate::plugin::RuntimeOptions;

/// `[plugins]` as written.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawPluginDefaults {
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
    task_ttl_secs: Option<u64>,
    max_tasks_per_identity: Option<u64>,
    max_tasks: Option<u64>,
    /// `[[plugins.sources]]`: checked by `plugin::oci::source`.
    #[serde(default)]
    sources: Vec<crate::plugin::oci::source::RawSource>,
}

impl RawPluginDefaults {
    /// The `[[plugins.sources]]` entries, taken out to be checked on their own.
    pub(crate) fn take_sources(&mut self) -> Vec<crate::plugin::oci::source::RawSource> {
        std::mem::take(&mut self.sources)
    }

    /// [`RuntimeOptions::default`] with what this section sets.
    pub(crate) fn parse(self) -> Result<RuntimeOptions, FieldError> {
        let mut runtime = RuntimeOptions::default();
        runtime.pooling = self.pooling.unwrap_or(runtime.pooling);
        runtime.default_memory_mb = self.default_memory_mb.unwrap_or(runtime.default_memory_mb);
        runtime.max_memory_mb = self.max_memory_mb.unwrap_or(runtime.max_memory_mb);
        runtime.default_timeout_ms = self.default_timeout_ms.unwrap_or(runtime.default_timeout_ms);
        runtime.max_timeout_ms = self.max_timeout_ms.unwrap_or(runtime.max_timeout_ms);
        runtime.default_max_response_kb = self.default_max_response_kb.unwrap_or(runtime.default_max_response_kb);
        runtime.file_roots = self.file_roots;
        runtime.env_allowed = self.env_allowed;
        for (i, pattern) in self.network_allowed.iter().flatten().enumerate() {
            let valid = pattern
                .rsplit_once(':')
                .is_some_and(|(host, port)| !host.is_empty() && (port == "*" || port.parse::<u16>().is_ok()));
            if !valid {
                let message = format!("{pattern:?} is not host:port or host:*");
                return Err(FieldError::new(format!("network_allowed[{i}]"), message));
            }
        }
        runtime.network_allowed = self.network_allowed;
        runtime.allow_private_networks = self.allow_private_networks.unwrap_or(runtime.allow_private_networks);
        // Upper bounds keep one call's queued messages (they wait in the host for the caller)
        // within what a host can hold for many calls at once.
        for (field, value, slot, most) in [
            ("max_events", self.max_events, &mut runtime.max_events, 100_000),
            ("max_event_kb", self.max_event_kb, &mut runtime.max_event_kb, 65_536),
        ] {
            if let Some(value) = value {
                if !(1..=most).contains(&value) {
                    return Err(FieldError::new(field, format!("{value} is out of range (1 to {most})")));
                }
                *slot = value;
            }
        }
        // A task keeps its result in memory until its TTL: the bounds keep that within reason.
        if let Some(secs) = self.task_ttl_secs {
            if !(1..=86_400).contains(&secs) {
                return Err(FieldError::new("task_ttl_secs", format!("{secs} is out of range (1 to 86400)")));
            }
            runtime.tasks.ttl = std::time::Duration::from_secs(secs);
        }
        for (field, value, slot) in [
            ("max_tasks_per_identity", self.max_tasks_per_identity, &mut runtime.tasks.per_identity),
            ("max_tasks", self.max_tasks, &mut runtime.tasks.total),
        ] {
            if let Some(value) = value {
                *slot = usize::try_from(value)
                    .ok()
                    .filter(|v| (1..=100_000).contains(v))
                    .ok_or_else(|| FieldError::new(field, format!("{value} is out of range (1 to 100000)")))?;
            }
        }
        if runtime.tasks.per_identity > runtime.tasks.total {
            return Err(FieldError::new("max_tasks_per_identity", "larger than plugins.max_tasks"));
        }
        if let Some(dir) = self.cache_dir {
            // An empty path turns the cache off.
            runtime.cache_dir = if dir.as_os_str().is_empty() { None } else { Some(dir) };
        }
        // The other field is named in full: the error's prefix names only the first.
        if runtime.default_memory_mb > runtime.max_memory_mb {
            return Err(FieldError::new("default_memory_mb", "larger than plugins.max_memory_mb"));
        }
        if runtime.default_timeout_ms > runtime.max_timeout_ms {
            return Err(FieldError::new("default_timeout_ms", "larger than plugins.max_timeout_ms"));
        }
        Ok(runtime)
    }
}

/// Make the cache folder and file roots relative to `base` (the config file's folder).
pub(crate) fn resolve_paths(runtime: &mut RuntimeOptions, base: &Path) {
    if let Some(cache) = runtime.cache_dir.as_mut() {
        resolve(base, cache);
    }
    for root in runtime.file_roots.iter_mut().flatten() {
        resolve(base, root);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> Result<RuntimeOptions, FieldError> {
        toml::from_str::<RawPluginDefaults>(text).unwrap().parse()
    }

    #[test]
    fn plugin_budgets_and_private_networks_are_read() {
        let runtime = parse("max_events = 50\nmax_event_kb = 8\nallow_private_networks = true").unwrap();
        assert_eq!((runtime.max_events, runtime.max_event_kb, runtime.allow_private_networks), (50, 8, true));
        let default = parse("").unwrap();
        assert_eq!((default.max_events, default.max_event_kb, default.allow_private_networks), (1_000, 1_024, false));
    }

    #[test]
    fn task_limits_are_read_and_checked() {
        let runtime = parse("task_ttl_secs = 60\nmax_tasks_per_identity = 2\nmax_tasks = 10").unwrap();
        assert_eq!(runtime.tasks.ttl, std::time::Duration::from_secs(60));
        assert_eq!((runtime.tasks.per_identity, runtime.tasks.total), (2, 10));
        assert_eq!(parse("max_tasks = 0").unwrap_err().field, "max_tasks");
        assert_eq!(parse("max_tasks_per_identity = 20\nmax_tasks = 10").unwrap_err().field, "max_tasks_per_identity");
    }

    #[test]
    fn an_empty_cache_dir_turns_the_cache_off() {
        assert_eq!(parse("cache_dir = \"\"").unwrap().cache_dir, None);
        let mut runtime = parse("cache_dir = \"cache\"\nfile_roots = [\"data\", \"/srv\"]").unwrap();
        resolve_paths(&mut runtime, Path::new("/conf"));
        assert_eq!(runtime.cache_dir.as_deref(), Some(Path::new("/conf/cache")));
        assert_eq!(runtime.file_roots, Some(vec![PathBuf::from("/conf/data"), PathBuf::from("/srv")]));
    }

    #[test]
    fn a_bad_pattern_is_named_by_its_index() {
        let error = parse("network_allowed = [\"a:1\", \"b\"]").unwrap_err();
        assert_eq!(error.field, "network_allowed[1]");
    }
}
