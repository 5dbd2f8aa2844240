//! `capabilities.files`: host folders preopened for the plugin, read-only or read-write,
//! capped by `plugins.file_roots`.

use std::path::{Path, PathBuf};

use serde::Deserialize;
use wasmtime_wasi::{FsPerms, WasiCtxBuilder};

/// A folder of the host made visible to the plugin.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct FileGrant {
    /// The host folder, absolute.
    pub host: PathBuf,
    /// Where the plugin sees it, e.g. `/data`.
    pub guest: String,
    pub writable: bool,
}

/// One entry of `capabilities.files` as written.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(in crate::plugin) struct RawFileGrant {
    host: PathBuf,
    guest: String,
    mode: String,
}

/// Validate the entries; relative host folders are relative to `base`, and every folder is
/// resolved (symlinks included) so the ceiling compares where it really is.
pub(super) fn parse(raw: Vec<RawFileGrant>, base: &Path) -> Result<Vec<FileGrant>, String> {
    let mut files = Vec::with_capacity(raw.len());
    for (i, grant) in raw.into_iter().enumerate() {
        let field = format!("capabilities.files[{i}]");
        let writable = match grant.mode.as_str() {
            "read" => false,
            "read-write" => true,
            other => return Err(format!("{field}.mode: {other:?} is neither \"read\" nor \"read-write\"")),
        };
        if !grant.guest.starts_with('/') {
            return Err(format!("{field}.guest: {:?} must be an absolute guest path like \"/data\"", grant.guest));
        }
        let host = base.join(&grant.host);
        let host = host.canonicalize().map_err(|e| format!("{field}.host: {} cannot be used: {e}", host.display()))?;
        if !host.is_dir() {
            return Err(format!("{field}.host: {} is not a folder", host.display()));
        }
        files.push(FileGrant { host, guest: grant.guest, writable });
    }
    Ok(files)
}

/// Refuse folders outside `roots` (`None`: anywhere). Compared after resolving symlinks, so a
/// link inside an allowed folder cannot reach outside it.
pub(super) fn check_ceiling(files: &[FileGrant], roots: Option<&[PathBuf]>) -> Result<(), String> {
    let Some(roots) = roots else { return Ok(()) };
    let roots: Vec<PathBuf> = roots.iter().map(|r| r.canonicalize().unwrap_or_else(|_| r.clone())).collect();
    for (i, grant) in files.iter().enumerate() {
        if !roots.iter().any(|root| grant.host.starts_with(root)) {
            let allowed: Vec<String> = roots.iter().map(|r| r.display().to_string()).collect();
            return Err(format!(
                "capabilities.files[{i}].host: {} is outside the folders this host lets plugins use \
                 (plugins.file_roots: {})",
                grant.host.display(),
                allowed.join(", ")
            ));
        }
    }
    Ok(())
}

/// Preopen each granted folder, and nothing else.
pub(in crate::plugin) fn wire(files: &[FileGrant], wasi: &mut WasiCtxBuilder) -> wasmtime::Result<()> {
    for grant in files {
        wasi.preopened_dir(&grant.host, &grant.guest, permissions(grant.writable))?;
    }
    Ok(())
}

fn permissions(writable: bool) -> FsPerms {
    if writable { FsPerms::ReadWrite } else { FsPerms::ReadOnly }
}

pub(super) fn describe(files: &[FileGrant], out: &mut Vec<String>) {
    for f in files {
        let mode = if f.writable { "read-write" } else { "read" };
        out.push(format!("files {} as {} ({mode})", f.host.display(), f.guest));
    }
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    use super::{check_ceiling, parse};
    use crate::plugin::Manifest;

    fn grant(dir: &Path, host: &str, mode: &str) -> Result<Vec<super::FileGrant>, String> {
        let text = format!("[capabilities]\nfiles = [{{ host = {host:?}, guest = \"/d\", mode = {mode:?} }}]");
        Manifest::parse(&text, dir).map(|m| m.grants.files)
    }

    #[test]
    fn folders_outside_the_roots_are_refused_even_through_a_link() {
        let dir = tempfile::tempdir().unwrap();
        let allowed = dir.path().join("allowed");
        let outside = dir.path().join("outside");
        std::fs::create_dir_all(allowed.join("inner")).unwrap();
        std::fs::create_dir_all(&outside).unwrap();
        std::os::unix::fs::symlink(&outside, allowed.join("escape")).unwrap();
        let roots = [allowed.clone()];
        for inside in ["allowed", "allowed/inner"] {
            let files = grant(dir.path(), inside, "read").unwrap();
            assert_eq!(check_ceiling(&files, Some(&roots)), Ok(()), "{inside}");
        }
        for escape in ["outside", "allowed/escape", "allowed/../outside"] {
            let files = grant(dir.path(), escape, "read").unwrap();
            let error = check_ceiling(&files, Some(&roots)).unwrap_err();
            assert!(error.starts_with("capabilities.files[0].host:") && error.contains("file_roots"), "{error}");
            // No ceiling: the manifest decides.
            assert_eq!(check_ceiling(&files, None), Ok(()));
        }
    }

    #[test]
    fn the_mode_decides_what_the_preopen_permits() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir(dir.path().join("d")).unwrap();
        assert!(!grant(dir.path(), "d", "read").unwrap()[0].writable);
        assert!(grant(dir.path(), "d", "read-write").unwrap()[0].writable);
        assert!(super::permissions(false).write_not_permitted());
        assert!(!super::permissions(true).write_not_permitted());
        let raw = toml::from_str::<super::RawFileGrant>("host = \"d\"\nguest = \"/d\"\nmode = \"write\"").unwrap();
        assert!(parse(vec![raw], dir.path()).unwrap_err().contains("capabilities.files[0].mode"));
    }
}
