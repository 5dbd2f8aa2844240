//! The on-disk cache of compiled components, so a restart or reload does not recompile.
//!
//! An entry is keyed by the SHA-256 of the component and by the engine's compatibility hash
//! (wasmtime version and compilation settings), and carries the SHA-256 of the compiled
//! artifact, checked before the artifact is loaded. A corrupt, truncated or stale entry is
//! detected, compiled again and replaced. The cache folder must be writable only by the
//! operator: wasmtime loads a verified artifact as native code.

use std::hash::{Hash, Hasher};
use std::io::Read;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

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

/// Why [`CompileCache::load_or_compile_file`] failed.
#[derive(Debug)]
pub(crate) enum FileError {
    /// The component file could not be read.
    Read(std::io::Error),
    /// It is not a component this engine compiles.
    Compile(wasmtime::Error),
}

/// The SHA-256 of a file, read in pieces: a large component need not be held in memory (and
/// its pages zeroed and filled) only to be hashed.
fn file_digest(path: &Path) -> std::io::Result<[u8; 32]> {
    let mut file = std::fs::File::open(path)?;
    let mut hasher = Sha256::new();
    let mut buffer = vec![0u8; 256 << 10];
    loop {
        match file.read(&mut buffer) {
            Ok(0) => return Ok(hasher.finalize().into()),
            Ok(read) => hasher.update(&buffer[..read]),
            Err(error) if error.kind() == std::io::ErrorKind::Interrupted => {}
            Err(error) => return Err(error),
        }
    }
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

    fn entry(&self, engine: &Engine, component_digest: &[u8]) -> PathBuf {
        let key = format!("{}-{}", hex(component_digest), engine_key(engine));
        self.dir.join(format!("{key}.cwasm"))
    }

    /// The compiled component of the file at `path`: from the cache if its entry verifies,
    /// else compiled and stored. On a hit the component is never held in memory (only
    /// hashed as it is read) and the entry is mapped, not copied: a warm start of large
    /// components costs little more than hashing them.
    pub(crate) fn load_or_compile_file(
        &self,
        engine: &Engine,
        path: &Path,
    ) -> Result<(Component, CacheOutcome), FileError> {
        let digest = file_digest(path).map_err(FileError::Read)?;
        if let Some(loaded) = Self::read_verified(engine, &self.entry(engine, &digest)) {
            return Ok((loaded, CacheOutcome::Hit));
        }
        // Compiled from the bytes read now, and keyed by them again: the file may have been
        // replaced since it was hashed, and an entry must hold what its key names.
        let component = std::fs::read(path).map_err(FileError::Read)?;
        self.load_or_compile(engine, &component).map_err(FileError::Compile)
    }

    /// The compiled component from the cache if its entry verifies, else compiled and stored.
    pub(crate) fn load_or_compile(
        &self,
        engine: &Engine,
        component: &[u8],
    ) -> wasmtime::Result<(Component, CacheOutcome)> {
        let entry = self.entry(engine, &Sha256::digest(component));
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
        let digest = std::fs::read_to_string(entry.with_extension("sha256")).ok()?;
        let actual = file_digest(entry).ok()?;
        if digest.trim() != hex(&actual) {
            tracing::warn!(entry = %entry.display(), "compiled-plugin cache entry is corrupt; compiling again");
            return None;
        }
        // SAFETY: the artifact's digest matches the one written when this host compiled it,
        // and the engine checks that the artifact is compatible with its settings. The file
        // is mapped for as long as the component lives, so it must not change in place: this
        // cache never writes an entry in place (it writes a new file and renames it over the
        // old one, which leaves a mapped one as it was), and the folder is the operator's.
        #[allow(unsafe_code)]
        match unsafe { Component::deserialize_file(engine, entry) } {
            Ok(component) => Some(component),
            Err(error) => {
                tracing::warn!(entry = %entry.display(), %error, "compiled-plugin cache entry is stale; compiling again");
                None
            }
        }
    }

    fn store(&self, entry: &Path, artifact: &[u8]) -> std::io::Result<()> {
        std::fs::create_dir_all(&self.dir)?;
        // Write to temporary names and rename, so a reader never sees half an entry. The names
        // are this store's own: plugins load in parallel, and two may be the same component.
        static STORES: AtomicU64 = AtomicU64::new(0);
        let store = STORES.fetch_add(1, Ordering::Relaxed);
        let unique = format!("{}-{store}", std::process::id());
        let temporary = entry.with_extension(format!("tmp{unique}"));
        let temporary_digest = entry.with_extension(format!("sha256tmp{unique}"));
        std::fs::write(&temporary, artifact)?;
        std::fs::write(&temporary_digest, hex(&Sha256::digest(artifact)))?;
        std::fs::rename(&temporary_digest, entry.with_extension("sha256"))?;
        std::fs::rename(&temporary, entry)
    }
}

#[cfg(test)]
mod tests {
    use wasmtime::{Config, Engine};

    use super::{CacheOutcome, CompileCache, FileError};

    /// The smallest component: its header, and nothing in it.
    const EMPTY_COMPONENT: &[u8] = b"\0asm\x0d\x00\x01\x00";

    fn engine() -> Engine {
        Engine::new(&Config::new()).expect("an engine")
    }

    #[test]
    fn a_file_is_compiled_once_then_mapped_from_the_cache_and_a_corrupt_entry_is_replaced() {
        let (engine, work) = (engine(), tempfile::tempdir().expect("a temporary folder"));
        let cache = CompileCache::new(work.path().join("cache"));
        let component = work.path().join("empty.wasm");
        std::fs::write(&component, EMPTY_COMPONENT).expect("write the component");
        let outcome =
            |cache: &CompileCache| cache.load_or_compile_file(&engine, &component).map(|(_, outcome)| outcome);

        assert!(matches!(outcome(&cache), Ok(CacheOutcome::Compiled)));
        assert!(matches!(outcome(&cache), Ok(CacheOutcome::Hit)));
        // The same bytes by another route share the entry.
        assert!(matches!(cache.load_or_compile(&engine, EMPTY_COMPONENT), Ok((_, CacheOutcome::Hit))));

        let entry = std::fs::read_dir(&cache.dir)
            .expect("the cache folder")
            .filter_map(Result::ok)
            .map(|e| e.path())
            .find(|p| p.extension().is_some_and(|ext| ext == "cwasm"))
            .expect("an entry");
        let mut artifact = std::fs::read(&entry).expect("the entry");
        let last = artifact.len() - 1;
        artifact[last] ^= 0xff;
        std::fs::write(&entry, &artifact).expect("corrupt the entry");
        assert!(matches!(outcome(&cache), Ok(CacheOutcome::Compiled)), "a corrupt entry was used");
        assert!(matches!(outcome(&cache), Ok(CacheOutcome::Hit)), "the corrupt entry was not replaced");
    }

    #[test]
    fn a_missing_file_is_a_read_error_and_garbage_a_compile_error() {
        let (engine, work) = (engine(), tempfile::tempdir().expect("a temporary folder"));
        let cache = CompileCache::new(work.path().join("cache"));
        let missing = work.path().join("missing.wasm");
        assert!(matches!(cache.load_or_compile_file(&engine, &missing), Err(FileError::Read(_))));
        let garbage = work.path().join("garbage.wasm");
        std::fs::write(&garbage, b"not a component").expect("write");
        assert!(matches!(cache.load_or_compile_file(&engine, &garbage), Err(FileError::Compile(_))));
    }
}
