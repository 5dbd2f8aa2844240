//! The `[[peers]]` and `[federation]` sections of `host.toml`: which MCP servers this host
//! imports, how it reaches and authenticates to each, and how far a request may travel.
//!
//! Errors name fields relative to the section (`[1].url`, `max_hops`); `crate::config` adds
//! the section's name.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde::Deserialize;

use crate::config::{FieldError, resolve_file};
use crate::tls::PeerTls;

/// What a host presents to a peer reached by URL.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PeerCredentials {
    None,
    /// A token from a file (minted by the peer's operator, say), read at each connection.
    TokenFile(PathBuf),
    /// Tokens this host mints with its `[identity]` key, per caller, refreshed before expiry.
    Minted {
        audience: String,
        scopes: Vec<String>,
    },
}

/// One `[[peers]]` entry.
#[derive(Debug, Clone)]
pub struct PeerConfig {
    pub name: String,
    /// Prefix of its entries' names (`<namespace>__<name>`); `""` for none.
    pub namespace: String,
    pub target: PeerTarget,
    /// Sent with every HTTP request to the peer (e.g. `Authorization`).
    pub headers: Vec<(String, String)>,
    /// Patterns (`*` matches any run of characters) over the peer's own entry names and
    /// resource URIs: empty `include` imports everything not excluded.
    pub include: Vec<String>,
    pub exclude: Vec<String>,
    pub connect: PeerConnect,
    /// Time limit of each request forwarded to the peer.
    pub timeout: std::time::Duration,
    pub credentials: PeerCredentials,
    /// For an `https://` peer: the CA to trust and this host's client certificate.
    pub tls: PeerTls,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PeerTarget {
    /// A Streamable HTTP endpoint.
    Url(String),
    /// A stdio MCP server the host starts and supervises.
    Command { program: String, args: Vec<String>, env: Vec<(String, String)> },
}

impl std::fmt::Display for PeerTarget {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Url(url) => f.write_str(url),
            Self::Command { program, args, .. } => {
                write!(f, "stdio: {program}")?;
                args.iter().try_for_each(|arg| write!(f, " {arg}"))
            }
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PeerConnect {
    /// Connect when the host starts (in the background; the host does not wait).
    Start,
    /// Connect at the first request that needs the peer.
    Lazy,
}

impl PeerConfig {
    /// Whether the filters let the entry named `name` (or with this URI) in.
    pub(crate) fn imports(&self, name: &str) -> bool {
        let included = self.include.is_empty() || self.include.iter().any(|p| crate::auth::glob_matches(p, name));
        included && !self.exclude.iter().any(|p| crate::auth::glob_matches(p, name))
    }

    /// Make the peer's files, and a command's program given as `./` or `../`, relative to
    /// `base` (the config file's folder). A bare program name is left for `PATH`.
    pub(crate) fn resolve_paths(&mut self, base: &Path) {
        if let PeerTarget::Command { program, .. } = &mut self.target
            && (program.starts_with("./") || program.starts_with("../"))
        {
            *program = base.join(&*program).display().to_string();
        }
        if let PeerCredentials::TokenFile(path) = &mut self.credentials {
            resolve_file(base, path);
        }
        if let Some(ca) = self.tls.ca.as_mut() {
            resolve_file(base, ca);
        }
        if let Some((cert, key)) = self.tls.client_cert.as_mut() {
            resolve_file(base, cert);
            resolve_file(base, key);
        }
    }
}

/// One `[[peers]]` entry as written.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawPeer {
    name: String,
    namespace: Option<String>,
    url: Option<String>,
    command: Option<Vec<String>>,
    #[serde(default)]
    env: BTreeMap<String, String>,
    #[serde(default)]
    headers: BTreeMap<String, String>,
    #[serde(default)]
    include: Vec<String>,
    #[serde(default)]
    exclude: Vec<String>,
    connect: Option<String>,
    timeout_ms: Option<u64>,
    auth: Option<String>,
    token_file: Option<PathBuf>,
    audience: Option<String>,
    scopes: Option<Vec<String>>,
    ca: Option<PathBuf>,
    client_cert: Option<PathBuf>,
    client_key: Option<PathBuf>,
}

/// `[federation]` as written.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawFederation {
    max_hops: Option<usize>,
}

impl RawFederation {
    /// How many hosts a forwarded request may cross.
    pub(crate) fn max_hops(&self) -> Result<usize, FieldError> {
        match self.max_hops {
            None => Ok(super::loops::DEFAULT_MAX_HOPS),
            Some(0) => Err(FieldError::new("max_hops", "must be at least 1")),
            Some(max_hops) => Ok(max_hops),
        }
    }
}

/// Every `[[peers]]` entry, in order; `has_identity`: the file has an `[identity]` section,
/// which peers with `auth = "identity"` need. Fields are named from the array (`[0].url`).
pub(crate) fn parse_peers(raw: Vec<RawPeer>, has_identity: bool) -> Result<Vec<PeerConfig>, FieldError> {
    let mut peers: Vec<PeerConfig> = Vec::new();
    for (index, raw) in raw.into_iter().enumerate() {
        let at = |error: FieldError| error.under(format!("[{index}]"));
        let peer = parse_peer(raw).map_err(at)?;
        if peers.iter().any(|p| p.name == peer.name) {
            return Err(at(FieldError::new("name", format!("{:?} is used by another peer", peer.name))));
        }
        if matches!(peer.credentials, PeerCredentials::Minted { .. }) && !has_identity {
            return Err(at(FieldError::new("auth", "\"identity\" needs an [identity] section (name and key)")));
        }
        peers.push(peer);
    }
    Ok(peers)
}

fn parse_credentials(raw: &RawPeer) -> Result<PeerCredentials, FieldError> {
    let error = |message: &str| Err(FieldError::new("auth", message));
    match (raw.auth.as_deref(), &raw.token_file) {
        (None, None) => {
            if raw.audience.is_some() || raw.scopes.is_some() {
                return error("audience and scopes need auth = \"identity\"");
            }
            Ok(PeerCredentials::None)
        }
        (None, Some(path)) => Ok(PeerCredentials::TokenFile(path.clone())),
        (Some("identity"), None) => {
            let scopes = raw.scopes.clone().unwrap_or_else(|| vec!["*".into()]);
            Ok(PeerCredentials::Minted { audience: raw.audience.clone().unwrap_or_else(|| raw.name.clone()), scopes })
        }
        (Some("identity"), Some(_)) => error("give auth = \"identity\" or token_file, not both"),
        (Some(other), _) => error(&format!("{other:?} is not \"identity\" (or leave it out)")),
    }
}

fn parse_peer(raw: RawPeer) -> Result<PeerConfig, FieldError> {
    let credentials = parse_credentials(&raw)?;
    let client_cert = match (raw.client_cert.clone(), raw.client_key.clone()) {
        (Some(cert), Some(key)) => Some((cert, key)),
        (None, None) => None,
        _ => return Err(FieldError::new("client_cert", "give client_cert and client_key together")),
    };
    if client_cert.is_some() && raw.ca.is_none() {
        return Err(FieldError::new("client_cert", "mutual TLS needs the peer's ca too"));
    }
    let tls = PeerTls { ca: raw.ca.clone(), client_cert };
    let name_ok = !raw.name.is_empty() && raw.name.chars().all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_');
    if !name_ok {
        return Err(FieldError::new("name", format!("{:?} must be letters, digits, '-' or '_'", raw.name)));
    }
    let namespace = raw.namespace.clone().unwrap_or_else(|| raw.name.clone());
    if let Some(problem) = crate::plugin::manifest::namespace_problem(&namespace) {
        let from_name = if raw.namespace.is_none() { " (the peer's name; set `namespace` to use another)" } else { "" };
        return Err(FieldError::new("namespace", format!("{namespace:?}{from_name} {problem} (or \"\" for none)")));
    }
    let target = match (raw.url, raw.command) {
        (Some(url), None) => {
            if !url.starts_with("http://") && !url.starts_with("https://") {
                return Err(FieldError::new("url", format!("{url:?} is not an http:// or https:// URL")));
            }
            if url.starts_with("http://") && (raw.ca.is_some() || raw.client_cert.is_some()) {
                return Err(FieldError::new("ca", "TLS settings need an https:// url"));
            }
            if !raw.env.is_empty() {
                return Err(FieldError::new("env", "only for a peer started with `command`"));
            }
            PeerTarget::Url(url)
        }
        (None, Some(command)) => {
            let Some((program, args)) = command.split_first() else {
                return Err(FieldError::new("command", "must name a program, e.g. [\"npx\", \"some-mcp-server\"]"));
            };
            if !raw.headers.is_empty() {
                return Err(FieldError::new("headers", "only for a peer reached by `url`"));
            }
            PeerTarget::Command { program: program.clone(), args: args.to_vec(), env: raw.env.into_iter().collect() }
        }
        (Some(_), Some(_)) => return Err(FieldError::new("url", "give either `url` or `command`, not both")),
        (None, None) => {
            return Err(FieldError::new("url", "a peer needs `url` (Streamable HTTP) or `command` (stdio)"));
        }
    };
    if credentials != PeerCredentials::None && !matches!(target, PeerTarget::Url(_)) {
        return Err(FieldError::new("auth", "credentials are for a peer reached by `url`"));
    }
    let connect = match raw.connect.as_deref() {
        None | Some("start") => PeerConnect::Start,
        Some("lazy") => PeerConnect::Lazy,
        Some(other) => return Err(FieldError::new("connect", format!("{other:?} is not \"start\" or \"lazy\""))),
    };
    let timeout_ms = raw.timeout_ms.unwrap_or(60_000);
    if timeout_ms == 0 {
        return Err(FieldError::new("timeout_ms", "must be at least 1"));
    }
    Ok(PeerConfig {
        name: raw.name,
        namespace,
        target,
        headers: raw.headers.into_iter().collect(),
        include: raw.include,
        exclude: raw.exclude,
        connect,
        timeout: std::time::Duration::from_millis(timeout_ms),
        credentials,
        tls,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn peers(text: &str, has_identity: bool) -> Result<Vec<PeerConfig>, FieldError> {
        #[derive(Deserialize)]
        struct File {
            peers: Vec<RawPeer>,
        }
        let file: File = toml::from_str(text).unwrap();
        parse_peers(file.peers, has_identity)
    }

    #[test]
    fn peer_filters_take_patterns() {
        let text = "[[peers]]\nname = \"b\"\nurl = \"http://127.0.0.1:1/mcp\"\ninclude = [\"get_*\", \"echo\"]\nexclude = [\"*_secret\"]";
        let peer = &peers(text, false).unwrap()[0];
        assert_eq!(peer.namespace, "b");
        for (name, imported) in [("echo", true), ("get_weather", true), ("get_secret", false), ("put_x", false)] {
            assert_eq!(peer.imports(name), imported, "{name}");
        }
    }

    #[test]
    fn an_empty_namespace_is_no_prefix() {
        let unprefixed = peers("[[peers]]\nname = \"b\"\nnamespace = \"\"\nurl = \"http://x\"", false).unwrap();
        assert_eq!(unprefixed[0].namespace, "");
    }

    #[test]
    fn errors_name_the_entry_and_its_field() {
        let second = "[[peers]]\nname = \"a\"\nurl = \"http://x\"\n[[peers]]\nname = \"b\"\nurl = \"ftp://x\"";
        assert_eq!(peers(second, false).unwrap_err().field, "[1].url");
        let minted = "[[peers]]\nname = \"a\"\nurl = \"http://x\"\nauth = \"identity\"";
        assert_eq!(peers(minted, false).unwrap_err().field, "[0].auth");
        let peer = &peers(minted, true).unwrap()[0];
        assert_eq!(peer.credentials, PeerCredentials::Minted { audience: "a".into(), scopes: vec!["*".into()] });
    }

    #[test]
    fn relative_files_and_programs_follow_the_config() {
        let text = "[[peers]]\nname = \"a\"\ncommand = [\"./server\", \"x\"]\n[[peers]]\nname = \"b\"\nurl = \"https://x\"\ntoken_file = \"t\"\nca = \"/etc/ca.pem\"";
        let mut peers = peers(text, false).unwrap();
        peers.iter_mut().for_each(|peer| peer.resolve_paths(Path::new("/conf")));
        assert_eq!(peers[0].target.to_string(), "stdio: /conf/./server x");
        assert_eq!(peers[1].credentials, PeerCredentials::TokenFile("/conf/t".into()));
        assert_eq!(peers[1].tls.ca.as_deref(), Some(Path::new("/etc/ca.pem")));
    }
}
