//! Registry credentials from a docker-style `config.json` (`auths`, base64 `user:password`,
//! or `username` and `password`): a file named by the caller, else `$REGISTRY_AUTH_FILE`
//! (podman's and skopeo's), else `$DOCKER_CONFIG/config.json`, else `~/.docker/config.json`.
//! No entry for the registry: anonymous. Credential helpers (`credsStore`, `credHelpers`) are
//! not run.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use base64::Engine as _;
use oci_client::secrets::RegistryAuth;
use serde::Deserialize;

#[derive(Deserialize)]
struct DockerConfig {
    #[serde(default)]
    auths: HashMap<String, AuthEntry>,
}

#[derive(Deserialize)]
struct AuthEntry {
    auth: Option<String>,
    username: Option<String>,
    password: Option<String>,
    #[serde(rename = "identitytoken")]
    identity_token: Option<String>,
}

/// The file to read credentials from: `explicit`, or the first of the standard places that exists.
fn config_file(explicit: Option<&Path>) -> Option<PathBuf> {
    if let Some(path) = explicit {
        return Some(path.to_path_buf());
    }
    let candidates = [
        std::env::var_os("REGISTRY_AUTH_FILE").map(PathBuf::from),
        std::env::var_os("DOCKER_CONFIG").map(|dir| PathBuf::from(dir).join("config.json")),
        std::env::var_os("HOME").map(|home| PathBuf::from(home).join(".docker/config.json")),
    ];
    candidates.into_iter().flatten().find(|path| path.is_file())
}

/// The credentials for `registry` (`host[:port]`). An explicit file that cannot be read or
/// parsed is an error; so is one in the standard places (a silent anonymous fallback would
/// hide the mistake).
pub(crate) fn lookup(registry: &str, explicit: Option<&Path>) -> Result<RegistryAuth, String> {
    let Some(path) = config_file(explicit) else { return Ok(RegistryAuth::Anonymous) };
    let text = std::fs::read_to_string(&path).map_err(|e| format!("{}: cannot read: {e}", path.display()))?;
    from_config(&text, registry).map_err(|e| format!("{}: {e}", path.display()))
}

fn from_config(text: &str, registry: &str) -> Result<RegistryAuth, String> {
    let config: DockerConfig = serde_json::from_str(text).map_err(|e| {
        // Not serde's own words: they quote the value, which may be a credential.
        format!("not a docker config.json (line {}, column {})", e.line(), e.column())
    })?;
    // Keys are written as `host:port`, or as a URL (`https://host/v1/`, docker's own habit).
    let key_host = |key: &str| {
        let without_scheme = key.split_once("://").map_or(key, |(_, rest)| rest);
        without_scheme.split('/').next().unwrap_or_default().to_owned()
    };
    let Some(entry) = config.auths.iter().find(|(key, _)| key_host(key) == registry).map(|(_, entry)| entry) else {
        return Ok(RegistryAuth::Anonymous);
    };
    if let Some(token) = &entry.identity_token {
        return Ok(RegistryAuth::Bearer(token.clone()));
    }
    if let (Some(user), Some(password)) = (&entry.username, &entry.password) {
        return Ok(RegistryAuth::Basic(user.clone(), password.clone()));
    }
    let Some(encoded) = &entry.auth else { return Ok(RegistryAuth::Anonymous) };
    let decoded = base64::engine::general_purpose::STANDARD
        .decode(encoded.trim())
        .map_err(|_| format!("auths.{registry:?}.auth is not base64"))?;
    let decoded = String::from_utf8(decoded).map_err(|_| format!("auths.{registry:?}.auth is not UTF-8"))?;
    let (user, password) =
        decoded.split_once(':').ok_or_else(|| format!("auths.{registry:?}.auth is not base64 of user:password"))?;
    Ok(RegistryAuth::Basic(user.to_owned(), password.to_owned()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn credentials_are_found_by_registry_in_either_spelling() {
        let text = r#"{"auths": {
            "registry.example.com:5000": {"auth": "YWxpY2U6czNjcmV0"},
            "https://other.example/v1/": {"username": "bob", "password": "pw"}
        }}"#;
        let basic = |user: &str, password: &str| RegistryAuth::Basic(user.into(), password.into());
        assert_eq!(from_config(text, "registry.example.com:5000").expect("found"), basic("alice", "s3cret"));
        assert_eq!(from_config(text, "other.example").expect("found"), basic("bob", "pw"));
        assert_eq!(from_config(text, "elsewhere").expect("none"), RegistryAuth::Anonymous);
        assert!(from_config(r#"{"auths": {"x": {"auth": "!!"}}}"#, "x").is_err());
        assert!(from_config("not json", "x").is_err());
    }
}
