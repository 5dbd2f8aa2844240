//! The on-disk cache of compiled components, so a restart or reload does not recompile.
//!
//! An entry is keyed by the SHA-256 of the component and by the engine's compatibility hash
//! (wasmtime version and compilation settings), and carries the SHA-256 of the compiled
//! artifact, checked before the artifact is loaded. A corrupt, truncated or stale entry is
//! detected, compiled again and replaced. The cache folder must be writable only by the
//! operator: wasmtime loads a verified artifact as native code.

use std::hash::{Hash, Hasher};
use std::path::{Path, PathBuf};

use sha2::{Digest, Sha256};
use wasmtime::Engine;
use wasmtime::component::Component;

/// How a component was obtained.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum CacheOutcome {
    Hit,
    /// Compiled (no entry, or the entry was stale or corrupt) and stored.
    Compiled,
    /// Compiled; no cache configured, or storing failed (logged).
    Uncached,
}

/// A folder of compiled components.
#[derive(Debug, Clone)]
pub(crate) struct CompileCache {
    dir: PathBuf,
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

fn engine_key(engine: &Engine) -> String {
    // DefaultHasher may change between Rust releases; that only makes old entries miss.
    let mut hasher = std::collections::hash_map::DefaultHasher::new();
    engine.precompile_compatibility_hash().hash(&mut hasher);
    format!("{:016x}", hasher.finish())
}

impl CompileCache {
    pub(crate) fn new(dir: impl Into<PathBuf>) -> Self {
        Self { dir: dir.into() }
    }

    fn entry(&self, engine: &Engine, component: &[u8]) -> PathBuf {
        let key = format!("{}-{}", hex(&Sha256::digest(component)), engine_key(engine));
        self.dir.join(format!("{key}.cwasm"))
    }

    /// The compiled component from the cache if its entry verifies, else compiled and stored.
    pub(crate) fn load_or_compile(
        &self,
        engine: &Engine,
        component: &[u8],
    ) -> wasmtime::Result<(Component, CacheOutcome)> {
        let entry = self.entry(engine, component);
        if let Some(loaded) = Self::read_verified(engine, &entry) {
            return Ok((loaded, CacheOutcome::Hit));
        }
        let artifact = engine.precompile_component(component)?;
        // SAFETY: the artifact was produced by this engine a moment ago.
        #[allow(unsafe_code)]
        let loaded = unsafe { Component::deserialize(engine, &artifact)? };
        match self.store(&entry, &artifact) {
            Ok(()) => Ok((loaded, CacheOutcome::Compiled)),
            Err(error) => {
                tracing::warn!(cache = %self.dir.display(), %error, "cannot store a compiled plugin");
                Ok((loaded, CacheOutcome::Uncached))
            }
        }
    }

    fn read_verified(engine: &Engine, entry: &Path) -> Option<Component> {
        let artifact = std::fs::read(entry).ok()?;
        let digest = std::fs::read_to_string(entry.with_extension("sha256")).ok()?;
        if digest.trim() != hex(&Sha256::digest(&artifact)) {
            tracing::warn!(entry = %entry.display(), "compiled-plugin cache entry is corrupt; compiling again");
            return None;
        }
        // SAFETY: the artifact's digest matches the one written when this host compiled it,
        // and the engine checks that the artifact is compatible with its settings.
        #[allow(unsafe_code)]
        match unsafe { Component::deserialize(engine, &artifact) } {
            Ok(component) => Some(component),
            Err(error) => {
                tracing::warn!(entry = %entry.display(), %error, "compiled-plugin cache entry is stale; compiling again");
                None
            }
        }
    }

    fn store(&self, entry: &Path, artifact: &[u8]) -> std::io::Result<()> {
        std::fs::create_dir_all(&self.dir)?;
        // Write to temporary names and rename, so a reader never sees half an entry.
        let temporary = entry.with_extension(format!("tmp{}", std::process::id()));
        std::fs::write(&temporary, artifact)?;
        std::fs::write(temporary.with_extension("sha256tmp"), hex(&Sha256::digest(artifact)))?;
        std::fs::rename(temporary.with_extension("sha256tmp"), entry.with_extension("sha256"))?;
        std::fs::rename(&temporary, entry)
    }
}
