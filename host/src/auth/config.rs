//! The sections of `host.toml` about who may call and what they may do: `[auth]` (with its
//! `[[auth.issuers]]`), `[audit]`, `[identity]`, `[local_user]`, `[consent]` and `[limits]`.
//!
//! Each section is read as written (`Raw*`), then checked into the settings the rest of the
//! host uses. Errors name fields relative to their section (`issuers[0].ceiling`);
//! `crate::config` adds the section's name.

use std::path::{Path, PathBuf};

use serde::Deserialize;

use super::consent::{ConsentRules, Policy};
use super::limits::RateSettings;
use super::{Algorithm, AuthSettings, Grants, Identity, IssuerSettings, KeySource};
use crate::config::{FieldError, resolve_file};

/// `[identity]`: the name this host signs as (`iss` and `kid` of its tokens) and its key.
#[derive(Debug, Clone)]
pub struct HostIdentity {
    pub name: String,
    pub key: PathBuf,
}

/// `[auth]` as written.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawAuth {
    audience: String,
    algorithms: Option<Vec<String>>,
    leeway_secs: Option<u64>,
    scope_claim: Option<String>,
    resource: Option<String>,
    #[serde(default)]
    authorization_servers: Vec<String>,
    #[serde(default)]
    issuers: Vec<RawIssuer>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawIssuer {
    issuer: String,
    public_key: Option<PathBuf>,
    jwks: Option<PathBuf>,
    secret_file: Option<PathBuf>,
    kid: Option<String>,
    ceiling: Option<Vec<String>>,
}

/// `[audit]` as written.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawAudit {
    file: Option<PathBuf>,
}

/// `[identity]` as written.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawIdentity {
    name: String,
    key: PathBuf,
}

/// `[local_user]` as written.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawLocalUser {
    subject: Option<String>,
    scopes: Option<Vec<String>>,
}

/// `[consent]` as written.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawConsent {
    destructive: Option<String>,
    #[serde(default)]
    rules: Vec<RawConsentRule>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawConsentRule {
    tools: String,
    policy: String,
}

/// `[limits]` as written.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawLimits {
    per_minute: u32,
    burst: Option<u32>,
    /// `redis://host:port`: share every caller's budget with the other replicas using it.
    redis: Option<String>,
}

const DEFAULT_ALGORITHMS: [Algorithm; 3] = [Algorithm::EdDSA, Algorithm::ES256, Algorithm::RS256];

/// Why a scope in a ceiling or the local user's grants means nothing here.
fn grant_problem(scopes: Option<&[String]>) -> Option<String> {
    let bad = scopes.into_iter().flatten().find(|s| !super::is_grant(s))?;
    Some(format!("{bad:?} is not *, tools:<pattern>, resources:<pattern> or prompts:<pattern>"))
}

impl RawAuth {
    pub(crate) fn parse(self) -> Result<AuthSettings, FieldError> {
        if self.audience.is_empty() {
            return Err(FieldError::new("audience", "must name this host (or its resource URL)"));
        }
        let algorithms = match self.algorithms {
            None => DEFAULT_ALGORITHMS.to_vec(),
            Some(names) => {
                let mut algorithms = Vec::new();
                for name in names {
                    let algorithm: Algorithm = name.parse().map_err(|_| {
                        let example = "(e.g. EdDSA, ES256, RS256, HS256)";
                        FieldError::new("algorithms", format!("{name:?} is not a JWS algorithm {example}"))
                    })?;
                    algorithms.push(algorithm);
                }
                if algorithms.is_empty() {
                    return Err(FieldError::new("algorithms", "must allow at least one"));
                }
                algorithms
            }
        };
        let leeway_secs = self.leeway_secs.unwrap_or(30);
        if leeway_secs > 300 {
            return Err(FieldError::new("leeway_secs", format!("{leeway_secs} is more than 300")));
        }
        if self.issuers.is_empty() {
            let message = "trust at least one issuer ([[auth.issuers]] with issuer and a key)";
            return Err(FieldError::new("issuers", message));
        }
        let mut issuers = Vec::new();
        for (index, issuer) in self.issuers.into_iter().enumerate() {
            issuers.push(issuer.parse().map_err(|e| e.under(format!("issuers[{index}]")))?);
        }
        Ok(AuthSettings {
            audience: self.audience,
            algorithms,
            leeway_secs,
            scope_claim: self.scope_claim.unwrap_or_else(|| "scope".into()),
            issuers,
            resource: self.resource,
            authorization_servers: self.authorization_servers,
        })
    }
}

impl RawIssuer {
    fn parse(self) -> Result<IssuerSettings, FieldError> {
        if self.issuer.is_empty() {
            return Err(FieldError::new("issuer", "must not be empty"));
        }
        let key = match (self.public_key, self.jwks, self.secret_file) {
            (Some(path), None, None) => KeySource::Pem { path, kid: self.kid },
            (None, Some(path), None) => KeySource::Jwks { path },
            (None, None, Some(path)) => KeySource::Secret { path, kid: self.kid },
            _ => return Err(FieldError::new("public_key", "give exactly one of public_key, jwks or secret_file")),
        };
        if let Some(problem) = grant_problem(self.ceiling.as_deref()) {
            return Err(FieldError::new("ceiling", problem));
        }
        Ok(IssuerSettings { issuer: self.issuer, keys: vec![key], ceiling: self.ceiling })
    }
}

impl AuthSettings {
    /// Make the key files relative to `base` (the config file's folder).
    pub(crate) fn resolve_paths(&mut self, base: &Path) {
        for key in self.issuers.iter_mut().flat_map(|issuer| issuer.keys.iter_mut()) {
            match key {
                KeySource::Pem { path, .. } | KeySource::Jwks { path } | KeySource::Secret { path, .. } => {
                    resolve_file(base, path)
                }
            }
        }
    }
}

impl RawAudit {
    /// Where audit lines go (`-` for stderr); `None` keeps no audit log.
    pub(crate) fn file(self) -> Option<PathBuf> {
        self.file
    }
}

impl RawIdentity {
    pub(crate) fn parse(self) -> Result<HostIdentity, FieldError> {
        let valid = !self.name.is_empty()
            && self.name.chars().all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'));
        if !valid {
            return Err(FieldError::new("name", format!("{:?} must be letters, digits, '-', '_' or '.'", self.name)));
        }
        Ok(HostIdentity { name: self.name, key: self.key })
    }
}

impl RawLocalUser {
    /// The local user: [`Identity::local`] with the subject and scopes given here.
    pub(crate) fn parse(self) -> Result<Identity, FieldError> {
        let mut local = Identity::local();
        if let Some(subject) = self.subject {
            local.subject = subject;
        }
        if let Some(scopes) = self.scopes {
            if let Some(problem) = grant_problem(Some(&scopes)) {
                return Err(FieldError::new("scopes", problem));
            }
            local.grants = Grants::from_scopes(&scopes);
        }
        Ok(local)
    }
}

impl RawConsent {
    /// The default rules with this section's policy for destructive tools and its rules.
    pub(crate) fn parse(self) -> Result<ConsentRules, FieldError> {
        let mut consent = ConsentRules::default();
        if let Some(policy) = self.destructive {
            consent.destructive = policy.parse().map_err(|e: String| FieldError::new("destructive", e))?;
        }
        for (index, rule) in self.rules.into_iter().enumerate() {
            let policy: Policy =
                rule.policy.parse().map_err(|e: String| FieldError::new(format!("rules[{index}].policy"), e))?;
            consent.rules.push((rule.tools, policy));
        }
        Ok(consent)
    }
}

impl RawLimits {
    pub(crate) fn parse(self) -> Result<RateSettings, FieldError> {
        if self.per_minute == 0 {
            return Err(FieldError::new("per_minute", "must be at least 1 (leave [limits] out for no limit)"));
        }
        let burst = self.burst.unwrap_or((self.per_minute / 10).max(1));
        if burst == 0 {
            return Err(FieldError::new("burst", "must be at least 1"));
        }
        if let Some(url) = &self.redis {
            super::limits::check_redis_url(url).map_err(|message| FieldError::new("redis", message))?;
        }
        Ok(RateSettings { per_minute: self.per_minute, burst, redis: self.redis })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_issuer_error_names_the_issuer() {
        let text = "audience = \"x\"\n[[issuers]]\nissuer = \"i\"\njwks = \"k\"\n[[issuers]]\nissuer = \"j\"";
        let error = toml::from_str::<RawAuth>(text).unwrap().parse().unwrap_err();
        assert_eq!(error.field, "issuers[1].public_key");
    }

    #[test]
    fn key_files_follow_the_config() {
        let text = "audience = \"x\"\n[[issuers]]\nissuer = \"i\"\njwks = \"keys.json\"";
        let mut auth = toml::from_str::<RawAuth>(text).unwrap().parse().unwrap();
        auth.resolve_paths(Path::new("/conf"));
        assert!(matches!(&auth.issuers[0].keys[0], KeySource::Jwks { path } if path == Path::new("/conf/keys.json")));
    }

    #[test]
    fn limits_default_to_a_tenth_of_a_minute_as_burst() {
        let limits = toml::from_str::<RawLimits>("per_minute = 5").unwrap().parse().unwrap();
        assert_eq!(limits, RateSettings { per_minute: 5, burst: 1, redis: None });
        let shared = "per_minute = 5\nredis = \"redis://127.0.0.1:6379\"";
        let limits = toml::from_str::<RawLimits>(shared).unwrap().parse().unwrap();
        assert_eq!(limits.redis.as_deref(), Some("redis://127.0.0.1:6379"));
    }

    #[test]
    fn the_local_user_takes_a_subject_and_scopes() {
        let local = toml::from_str::<RawLocalUser>("subject = \"ann\"\nscopes = [\"tools:a_*\"]").unwrap();
        let local = local.parse().unwrap();
        assert_eq!(local.subject, "ann");
        assert!(local.allows(crate::auth::EntryKind::Tool, "a_b"));
        assert!(!local.allows(crate::auth::EntryKind::Tool, "b"));
    }
}
