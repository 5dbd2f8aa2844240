//! Who is calling, and what they may use: bearer-token verification at the HTTP edge, grants
//! over namespaced entries, this host's own signing identity for its peers, and the audit log.
//!
//! The transport verifies the token and hands the session an [`Identity`]; the session filters
//! lists and refuses calls by its [`Grants`]. stdio clients (and HTTP clients of a host with no
//! `[auth]`, which then listens on loopback only) are the local user.

pub(crate) mod audit;
pub(crate) mod config;
pub(crate) mod consent;
pub mod edge;
pub(crate) mod gate;
pub mod jwt;
pub mod keys;
pub(crate) mod limits;

use std::path::PathBuf;

pub use jsonwebtoken::Algorithm;

/// What the session applies to every use of an entry, besides grants: the audit log, the
/// consent policy and the rate limit.
pub struct Guard {
    pub audit: std::sync::Arc<audit::AuditLog>,
    pub consent: consent::ConsentRules,
    pub limits: Option<limits::RateLimiter>,
    /// Who a request without a verified token is: stdio, or HTTP on a host without `[auth]`.
    pub local: std::sync::Arc<Identity>,
    /// `[auth]` is set: an HTTP request must carry a verified identity, and one that reaches
    /// the session without it is refused, never taken for the local user.
    pub requires_token: bool,
}

impl Guard {
    /// No audit log, no rate limit, and the default consent policy.
    pub fn permissive() -> Self {
        Self {
            audit: std::sync::Arc::new(audit::AuditLog::disabled()),
            consent: consent::ConsentRules::default(),
            limits: None,
            local: std::sync::Arc::new(Identity::local()),
            requires_token: false,
        }
    }
}

/// The `[auth]` section: how inbound bearer tokens are verified.
#[derive(Debug, Clone)]
pub struct AuthSettings {
    /// The `aud` every token must carry (this host's name or its resource URL).
    pub audience: String,
    /// Algorithms a token may be signed with; anything else is refused before its signature is
    /// looked at.
    pub algorithms: Vec<Algorithm>,
    /// Clock skew tolerated on `exp` and `nbf`.
    pub leeway_secs: u64,
    /// The claim holding the caller's scopes: a space-separated string or an array.
    pub scope_claim: String,
    pub issuers: Vec<IssuerSettings>,
    /// The protected resource's URL in the RFC 9728 metadata (default: this endpoint as the
    /// client reached it).
    pub resource: Option<String>,
    /// Authorization servers announced in the metadata.
    pub authorization_servers: Vec<String>,
}

/// One trusted token issuer (an identity provider, or a peer host).
#[derive(Debug, Clone)]
pub struct IssuerSettings {
    /// The `iss` its tokens carry.
    pub issuer: String,
    pub keys: Vec<KeySource>,
    /// At most what this issuer's tokens may grant, whatever scopes they carry.
    pub ceiling: Option<Vec<String>>,
}

/// A verification key, from a file.
#[derive(Debug, Clone)]
pub enum KeySource {
    /// A PEM public key (RSA, EC P-256/P-384 or Ed25519), optionally selected by `kid`.
    Pem { path: PathBuf, kid: Option<String> },
    /// A JWK Set file; tokens select a key by `kid`.
    Jwks { path: PathBuf },
    /// A shared secret for HS256/384/512 (the file's bytes, trailing newline trimmed).
    Secret { path: PathBuf, kid: Option<String> },
}

/// What an entry is, for grants (`tools:`, `resources:`, `prompts:`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum EntryKind {
    Tool,
    Resource,
    Prompt,
}

impl EntryKind {
    pub(crate) fn scope_prefix(self) -> &'static str {
        match self {
            Self::Tool => "tools",
            Self::Resource => "resources",
            Self::Prompt => "prompts",
        }
    }

    /// The scope that grants exactly this entry, for `insufficient_scope` answers.
    pub(crate) fn scope_for(self, name: &str) -> String {
        format!("{}:{name}", self.scope_prefix())
    }
}

/// One grant: a kind (or every kind) and a pattern over exposed names, where `*` matches any
/// run of characters. Resources are named `<namespace>__<uri>` (just the URI when unprefixed).
#[derive(Debug, Clone, PartialEq, Eq)]
struct Grant {
    kind: Option<EntryKind>,
    pattern: String,
}

impl Grant {
    /// `*`, `tools:<pattern>`, `resources:<pattern>`, `prompts:<pattern>`; other scopes (an
    /// identity provider's `openid`, say) grant nothing here.
    fn parse(scope: &str) -> Option<Self> {
        if scope == "*" {
            return Some(Self { kind: None, pattern: "*".into() });
        }
        let (kind, pattern) = scope.split_once(':')?;
        let kind = match kind {
            "tools" => EntryKind::Tool,
            "resources" => EntryKind::Resource,
            "prompts" => EntryKind::Prompt,
            _ => return None,
        };
        (!pattern.is_empty()).then(|| Self { kind: Some(kind), pattern: pattern.to_owned() })
    }

    fn allows(&self, kind: EntryKind, name: &str) -> bool {
        self.kind.is_none_or(|k| k == kind) && glob_matches(&self.pattern, name)
    }
}

/// What a caller may list and use: its scopes, within its issuer's ceiling.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Grants {
    scopes: Vec<Grant>,
    ceiling: Option<Vec<Grant>>,
}

impl Grants {
    pub(crate) fn from_scopes<S: AsRef<str>>(scopes: &[S]) -> Self {
        Self { scopes: scopes.iter().filter_map(|s| Grant::parse(s.as_ref())).collect(), ceiling: None }
    }

    pub(crate) fn everything() -> Self {
        Self::from_scopes(&["*"])
    }

    pub(crate) fn within<S: AsRef<str>>(mut self, ceiling: Option<&[S]>) -> Self {
        self.ceiling = ceiling.map(|c| c.iter().filter_map(|s| Grant::parse(s.as_ref())).collect());
        self
    }

    pub(crate) fn allows(&self, kind: EntryKind, name: &str) -> bool {
        let granted = self.scopes.iter().any(|g| g.allows(kind, name));
        granted && self.ceiling.as_ref().is_none_or(|c| c.iter().any(|g| g.allows(kind, name)))
    }
}

/// Whether a scope string is one fedmcp understands (for config validation).
pub fn is_grant(scope: &str) -> bool {
    Grant::parse(scope).is_some()
}

/// The caller of a request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Identity {
    /// The token's `sub`, or the configured local subject.
    pub subject: String,
    /// The token's `iss`; `None` for the local user.
    pub issuer: Option<String>,
    /// The party acting for the subject (`act.sub`): a host forwarding its client's call.
    pub actor: Option<String>,
    pub grants: Grants,
    /// When the token this identity came from expires; `None` for the local user.
    pub expires: Option<std::time::SystemTime>,
}

impl Identity {
    /// The local user (stdio, or HTTP on a host without `[auth]`): everything, unless
    /// `[local_user]` says otherwise.
    pub(crate) fn local() -> Self {
        Self { subject: "local".into(), issuer: None, actor: None, grants: Grants::everything(), expires: None }
    }

    pub(crate) fn allows(&self, kind: EntryKind, name: &str) -> bool {
        self.grants.allows(kind, name)
    }

    /// Who the caller is, as one key: for rate limits, the sessions it owns and the calls held
    /// for it. Issuer, subject and the party acting for them: a forwarding host that names a
    /// caller of another issuer (`sub_id`) speaks for that caller through itself only, and
    /// never owns the caller's own sessions or spends the caller's own budget.
    pub(crate) fn limit_key(&self) -> String {
        serde_json::json!([self.issuer, self.subject, self.actor]).to_string()
    }

    /// How the audit log and error messages name the caller.
    pub(crate) fn describe(&self) -> String {
        match (&self.issuer, &self.actor) {
            (Some(iss), Some(act)) => format!("{} (from {iss}, via {act})", self.subject),
            (Some(iss), None) => format!("{} (from {iss})", self.subject),
            _ => self.subject.clone(),
        }
    }
}

/// Refuse a resource URI that names one thing to a grant and maybe another to its owner:
/// dot-segments (`.` and `..`, also percent-encoded) and percent-encoded separators (`%2F`,
/// `%5C`). A grant `resources:docs__file:///a/*` must not cover `file:///a/../b/secret`.
/// Refusing is simpler than normalising (RFC 3986 §6) and leaves no doubt which form an owner
/// sees: clients send URIs as the server listed them, and listed URIs have no such segments.
pub(crate) fn check_resource_uri(uri: &str) -> Result<(), String> {
    // A `%25` (an encoded `%`) is decoded once more, so `%252e%252e` is judged as `%2e%2e`; and
    // `?`, `#` and `;` end a segment, as an owner that strips a query, fragment or path
    // parameter would see it.
    let once_decoded = uri.replace("%25", "%");
    for segment in once_decoded.split(['/', '\\', '?', '#', ';']) {
        let lowered = segment.to_ascii_lowercase();
        if lowered.contains("%2f") || lowered.contains("%5c") {
            return Err(format!(
                "the resource URI {uri:?} has an encoded path separator (%2F or %5C); send it unencoded"
            ));
        }
        let decoded = lowered.replace("%2e", ".");
        if decoded == "." || decoded == ".." {
            return Err(format!(
                "the resource URI {uri:?} has a dot-segment ('.' or '..'); send the URI as the server listed it"
            ));
        }
    }
    Ok(())
}

/// `*` matches any run of characters; everything else matches itself.
pub(crate) fn glob_matches(pattern: &str, text: &str) -> bool {
    let mut parts = pattern.split('*');
    let first = parts.next().unwrap_or_default();
    let Some(mut rest) = text.strip_prefix(first) else { return false };
    let parts: Vec<&str> = parts.collect();
    let Some((last, middle)) = parts.split_last() else { return rest.is_empty() };
    for part in middle {
        match rest.find(part) {
            Some(at) => rest = &rest[at + part.len()..],
            None => return false,
        }
    }
    rest.len() >= last.len() && rest.ends_with(last)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn scopes_grant_patterns_per_kind() {
        let grants = Grants::from_scopes(&["tools:weather__*", "prompts:*", "openid", "resources:docs__file:///a/*"]);
        assert!(grants.allows(EntryKind::Tool, "weather__forecast"));
        assert!(!grants.allows(EntryKind::Tool, "text__upper"));
        assert!(!grants.allows(EntryKind::Resource, "weather__forecast"));
        assert!(grants.allows(EntryKind::Prompt, "anything"));
        assert!(grants.allows(EntryKind::Resource, "docs__file:///a/b.md"));
        assert!(!grants.allows(EntryKind::Resource, "docs__file:///etc/passwd"));
        assert!(!Grants::from_scopes(&["tools:"]).allows(EntryKind::Tool, ""));
    }

    #[test]
    fn a_ceiling_caps_what_scopes_grant() {
        let grants = Grants::from_scopes(&["*"]).within(Some(&["tools:text__*"]));
        assert!(grants.allows(EntryKind::Tool, "text__upper"));
        assert!(!grants.allows(EntryKind::Tool, "secret__launch"));
        assert!(!grants.allows(EntryKind::Prompt, "text__upper"));
        let none = Grants::from_scopes::<&str>(&[]).within(Some(&["*"]));
        assert!(!none.allows(EntryKind::Tool, "text__upper"));
    }

    #[test]
    fn resource_uris_with_dot_segments_or_encoded_separators_are_refused() {
        for refused in [
            "file:///a/../b/secret",
            "file:///a/./b",
            "file:///a/..",
            "file:///a/%2e%2E/b",
            "file:///a/.%2e/b",
            "file:///a/b%2Fc",
            "file:///a/b%5cc",
            "file:///a\\..\\b",
            "docs://x/?q=../../b",
            "file:///a/..?x",
            "file:///a/..#f",
            "file:///a/..;/b",
            "file:///a/%252e%252e/b",
            "file:///a/b%252Fc",
        ] {
            assert!(check_resource_uri(refused).is_err(), "{refused}");
        }
        for allowed in
            ["file:///a/b.md", "file:///a/..b/c", "notes://today", "file:///a/b/", "urn:x:..", "mem://x/{id}"]
        {
            assert!(check_resource_uri(allowed).is_ok(), "{allowed}");
        }
        // The attack the rule stops: a grant for /a/* would match the raw text.
        let grants = Grants::from_scopes(&["resources:docs__file:///a/*"]);
        assert!(grants.allows(EntryKind::Resource, "docs__file:///a/../b/secret"));
        assert!(check_resource_uri("file:///a/../b/secret").is_err());
    }

    #[test]
    fn a_caller_named_by_a_forwarding_host_is_not_the_caller_in_person() {
        let direct = Identity {
            subject: "alice".into(),
            issuer: Some("https://corp-idp".into()),
            actor: None,
            grants: Grants::everything(),
            expires: None,
        };
        let forwarded = Identity { actor: Some("host-a".into()), ..direct.clone() };
        assert_ne!(direct.limit_key(), forwarded.limit_key());
        // No choice of names makes two identities one key.
        let local = Identity::local();
        let named_local = Identity { issuer: Some("local".into()), ..Identity::local() };
        assert_ne!(local.limit_key(), named_local.limit_key());
        let split = Identity { subject: "b\nc".into(), issuer: Some("a".into()), ..Identity::local() };
        let joined = Identity { subject: "c".into(), issuer: Some("a\nb".into()), ..Identity::local() };
        assert_ne!(split.limit_key(), joined.limit_key());
    }

    #[test]
    fn globs_match_whole_names() {
        assert!(glob_matches("a*c", "abc"));
        assert!(glob_matches("a*", "a"));
        assert!(!glob_matches("a", "ab"));
        assert!(glob_matches("*__x", "y__x"));
        assert!(!glob_matches("a*b*c", "acb"));
    }
}
