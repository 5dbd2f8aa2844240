//! `plugins/<name>.toml`: what a plugin is called in the catalog and what it is granted.
//!
//! Deny by default: without a manifest (or with an empty one) a plugin gets no files, no
//! environment, no network, and the host's default memory and time limits.

use std::path::Path;

use serde::Deserialize;

/// A parsed, validated manifest.
#[derive(Debug, Clone, PartialEq)]
pub struct Manifest {
    /// The prefix of this plugin's entries: `Some("")` means unprefixed, `None` means the
    /// plugin's file name.
    pub namespace: Option<String>,
    pub memory_mb: Option<u64>,
    pub timeout_ms: Option<u64>,
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
    memory_mb: Option<u64>,
    timeout_ms: Option<u64>,
}

/// A manifest that cannot be used, with the file and the reason.
#[derive(Debug, thiserror::Error)]
pub enum ManifestError {
    #[error("{path}: cannot read: {source}")]
    Read {
        path: String,
        source: std::io::Error,
    },
    #[error("{path}: {message}")]
    Invalid { path: String, message: String },
}

impl Manifest {
    /// The manifest of a plugin with none: nothing granted, default limits.
    pub fn deny_all() -> Self {
        Self {
            namespace: None,
            memory_mb: None,
            timeout_ms: None,
        }
    }

    /// Read `path` if it exists; a missing file is [`Manifest::deny_all`].
    pub fn load(path: &Path) -> Result<Self, ManifestError> {
        let shown = path.display().to_string();
        let text = match std::fs::read_to_string(path) {
            Ok(text) => text,
            Err(error) if error.kind() == std::io::ErrorKind::NotFound => {
                return Ok(Self::deny_all());
            }
            Err(source) => {
                return Err(ManifestError::Read {
                    path: shown,
                    source,
                });
            }
        };
        Self::parse(&text).map_err(|message| ManifestError::Invalid {
            path: shown,
            message,
        })
    }

    /// Parse and validate manifest text; the error names the field and the reason.
    pub fn parse(text: &str) -> Result<Self, String> {
        let raw: RawManifest =
            toml::from_str(text).map_err(|e| e.to_string().trim_end().to_owned())?;
        let _ = raw.description;
        if let Some(namespace) = &raw.namespace
            && !namespace
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
        {
            return Err(format!(
                "namespace: {namespace:?} may hold only ASCII letters, digits, '-' and '_' (tool names must stay \
                 within ^[A-Za-z0-9_-]{{1,64}}$)"
            ));
        }
        if let Some(namespace) = &raw.namespace
            && namespace.len() > 32
        {
            return Err(format!(
                "namespace: {namespace:?} is longer than 32 characters"
            ));
        }
        if raw.capabilities.memory_mb == Some(0) {
            return Err("capabilities.memory_mb: must be at least 1".into());
        }
        if raw.capabilities.timeout_ms == Some(0) {
            return Err("capabilities.timeout_ms: must be at least 1".into());
        }
        Ok(Self {
            namespace: raw.namespace,
            memory_mb: raw.capabilities.memory_mb,
            timeout_ms: raw.capabilities.timeout_ms,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::Manifest;

    #[test]
    fn an_empty_manifest_grants_nothing() {
        assert_eq!(Manifest::parse("").unwrap(), Manifest::deny_all());
    }

    #[test]
    fn limits_and_namespace_are_read() {
        let m =
            Manifest::parse("namespace = \"\"\n[capabilities]\nmemory_mb = 32\ntimeout_ms = 500\n")
                .unwrap();
        assert_eq!(m.namespace.as_deref(), Some(""));
        assert_eq!(m.memory_mb, Some(32));
        assert_eq!(m.timeout_ms, Some(500));
    }

    #[test]
    fn bad_manifests_name_the_field() {
        let cases = [
            ("namespace = \"a b\"", "namespace"),
            ("[capabilities]\nmemory_mb = 0", "capabilities.memory_mb"),
            ("[capabilities]\ntimeout_ms = 0", "capabilities.timeout_ms"),
            ("[capabilities]\nteleport = true", "teleport"),
            ("unknown = 1", "unknown"),
        ];
        for (text, field) in cases {
            let error = Manifest::parse(text).unwrap_err();
            assert!(error.contains(field), "{text:?} gave {error:?}");
        }
    }
}
