//! Verifying inbound bearer tokens (JWT): algorithm allow-list, key by `kid`, signature, `exp`,
//! `nbf`, `iss`, `aud`; then the caller's identity and grants from its claims.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use jsonwebtoken::jwk::JwkSet;
use jsonwebtoken::{Algorithm, DecodingKey, Validation, decode, decode_header, errors::ErrorKind};
use serde_json::{Map, Value};

use super::{AuthSettings, Grants, Identity, KeySource};

/// Why a token was refused. The message is safe to show the client: it names the check that
/// failed, never a key.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub(crate) enum TokenError {
    #[error("no bearer token (send it in the Authorization header)")]
    Missing,
    #[error("bearer tokens in the URL are refused; send it in the Authorization header")]
    InQuery,
    #[error("the token is malformed: {0}")]
    Malformed(String),
    #[error("the token's algorithm {0} is not accepted")]
    AlgorithmRefused(String),
    #[error("no key with the token's kid {0:?}")]
    UnknownKey(String),
    #[error("no trusted key for the token's algorithm {0:?}")]
    NoKeyFor(Algorithm),
    #[error("the token's signature is invalid")]
    BadSignature,
    #[error("the token has expired")]
    Expired,
    #[error("the token is not valid yet (nbf)")]
    NotYetValid,
    #[error("the token is for another audience")]
    WrongAudience,
    #[error("the token's issuer is not trusted")]
    WrongIssuer,
    #[error("the token lacks the {0} claim")]
    MissingClaim(String),
}

/// Why the `[auth]` keys cannot be used.
#[derive(Debug, thiserror::Error)]
#[error("{path}: {message}")]
pub struct KeyError {
    pub path: String,
    pub message: String,
}

struct TrustedKey {
    kid: Option<String>,
    key: DecodingKey,
    issuer: usize,
}

/// Tokens verified recently, by their exact text: a client sends the same token with every
/// request, and checking a signature each time costs more than the rest of a small call.
const CACHED_TOKENS: usize = 4096;

/// Checks tokens against the configured issuers and their keys.
pub struct Verifier {
    settings: AuthSettings,
    keys: Vec<TrustedKey>,
    /// token → (its identity, its `exp`).
    verified: Mutex<HashMap<String, (Arc<Identity>, u64)>>,
}

impl Verifier {
    /// Read every key file; a key that cannot be read or parsed stops the host.
    pub fn new(settings: AuthSettings) -> Result<Self, KeyError> {
        let mut keys = Vec::new();
        for (issuer, trusted) in settings.issuers.iter().enumerate() {
            for source in &trusted.keys {
                for (kid, key) in load(source)? {
                    keys.push(TrustedKey { kid, key, issuer });
                }
            }
        }
        Ok(Self { settings, keys, verified: Mutex::default() })
    }

    pub(crate) fn settings(&self) -> &AuthSettings {
        &self.settings
    }

    /// The caller a token names, if every check passes. A token that passed before is taken
    /// from the cache while its `exp` (with the leeway) has not passed.
    pub(crate) fn verify(&self, token: &str) -> Result<Arc<Identity>, TokenError> {
        let now = jsonwebtoken::get_current_timestamp();
        if let Ok(verified) = self.verified.lock()
            && let Some((identity, exp)) = verified.get(token)
            && now <= exp.saturating_add(self.settings.leeway_secs)
        {
            return Ok(identity.clone());
        }
        let (identity, exp) = self.verify_signed(token)?;
        let identity = Arc::new(identity);
        if let Ok(mut verified) = self.verified.lock() {
            if verified.len() >= CACHED_TOKENS {
                verified.retain(|_, (_, exp)| now <= exp.saturating_add(self.settings.leeway_secs));
                if verified.len() >= CACHED_TOKENS {
                    verified.clear();
                }
            }
            verified.insert(token.to_owned(), (identity.clone(), exp));
        }
        Ok(identity)
    }

    fn verify_signed(&self, token: &str) -> Result<(Identity, u64), TokenError> {
        let header = decode_header(token).map_err(|e| match e.kind() {
            // `alg: none` (or any name jsonwebtoken does not know) fails here.
            ErrorKind::Json(_) => TokenError::AlgorithmRefused(alg_name(token)),
            _ => TokenError::Malformed(e.to_string()),
        })?;
        if !self.settings.algorithms.contains(&header.alg) {
            return Err(TokenError::AlgorithmRefused(format!("{:?}", header.alg)));
        }
        let mut candidates: Vec<&TrustedKey> = match &header.kid {
            Some(kid) => self.keys.iter().filter(|k| k.kid.as_deref() == Some(kid)).collect(),
            None => self.keys.iter().collect(),
        };
        if candidates.is_empty()
            && let Some(kid) = &header.kid
        {
            return Err(TokenError::UnknownKey(kid.clone()));
        }
        // A key verifies only the algorithms of its own family: an RSA public key is never
        // used as an HMAC secret.
        candidates.retain(|k| k.key.family() == header.alg.family());
        if candidates.is_empty() {
            return Err(TokenError::NoKeyFor(header.alg));
        }
        let mut last = TokenError::BadSignature;
        for candidate in candidates {
            let issuer = &self.settings.issuers[candidate.issuer];
            let mut validation = Validation::new(header.alg);
            validation.leeway = self.settings.leeway_secs;
            validation.validate_nbf = true;
            validation.set_audience(&[&self.settings.audience]);
            validation.set_issuer(&[&issuer.issuer]);
            validation.set_required_spec_claims(&["exp", "aud", "iss", "sub"]);
            match decode::<Map<String, Value>>(token, &candidate.key, &validation) {
                Ok(data) => {
                    let exp = data.claims.get("exp").and_then(Value::as_f64).map_or(0, |exp| exp as u64);
                    return Ok((self.identity(data.claims, issuer), exp));
                }
                Err(error) => {
                    last = token_error(error.kind());
                    // Another issuer's key may be the right one; any other failure is final.
                    if !matches!(last, TokenError::BadSignature | TokenError::WrongIssuer) {
                        return Err(last);
                    }
                }
            }
        }
        Err(last)
    }

    fn identity(&self, claims: Map<String, Value>, issuer: &super::IssuerSettings) -> Identity {
        let scopes: Vec<String> = match claims.get(&self.settings.scope_claim) {
            Some(Value::String(scopes)) => scopes.split_whitespace().map(str::to_owned).collect(),
            Some(Value::Array(scopes)) => scopes.iter().filter_map(Value::as_str).map(str::to_owned).collect(),
            _ => Vec::new(),
        };
        let actor = claims.get("act").and_then(|act| act.get("sub")).and_then(Value::as_str).map(str::to_owned);
        let subject = claims.get("sub").and_then(Value::as_str).unwrap_or_default().to_owned();
        let named_by = subject_issuer(&claims, &issuer.issuer, actor.as_deref(), &subject);
        Identity {
            issuer: Some(named_by.unwrap_or_else(|| issuer.issuer.clone())),
            subject,
            actor,
            grants: Grants::from_scopes(&scopes).within(issuer.ceiling.as_deref()),
            // Streams opened with this token stop delivering when it expires (`exp` is required).
            expires: claims
                .get("exp")
                .and_then(Value::as_f64)
                .and_then(|exp| std::time::Duration::try_from_secs_f64(exp).ok())
                .map(|exp| std::time::UNIX_EPOCH + exp),
        }
    }
}

/// The issuer that named the subject of a token a host minted for a caller it forwards: the
/// `iss` of its `sub_id` (RFC 9493 `iss_sub`). Taken only from a host acting for its own
/// caller (`act.sub` is the token's issuer) and only when `sub_id` names the token's `sub`;
/// the grants stay capped by the token's issuer, whatever `sub_id` says. Without it, a
/// forwarded subject's issuer would be the forwarding host's, and callers with the same
/// subject from two issuers would be one principal here.
fn subject_issuer(claims: &Map<String, Value>, issuer: &str, actor: Option<&str>, subject: &str) -> Option<String> {
    if actor != Some(issuer) {
        return None;
    }
    let id = claims.get("sub_id")?;
    let named = id.get("format").and_then(Value::as_str) == Some("iss_sub")
        && id.get("sub").and_then(Value::as_str) == Some(subject);
    id.get("iss").and_then(Value::as_str).filter(|iss| named && !iss.is_empty()).map(str::to_owned)
}

/// The `alg` a header names, for the error message when jsonwebtoken cannot parse it.
fn alg_name(token: &str) -> String {
    use base64::Engine;
    let header = token.split('.').next().unwrap_or_default();
    base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(header)
        .ok()
        .and_then(|bytes| serde_json::from_slice::<Value>(&bytes).ok())
        .and_then(|header| header.get("alg").map(|alg| alg.to_string()))
        .unwrap_or_else(|| "(unreadable)".into())
}

fn token_error(kind: &ErrorKind) -> TokenError {
    match kind {
        ErrorKind::InvalidSignature => TokenError::BadSignature,
        ErrorKind::ExpiredSignature => TokenError::Expired,
        ErrorKind::ImmatureSignature => TokenError::NotYetValid,
        ErrorKind::InvalidAudience => TokenError::WrongAudience,
        ErrorKind::InvalidIssuer => TokenError::WrongIssuer,
        ErrorKind::MissingRequiredClaim(claim) => TokenError::MissingClaim(claim.clone()),
        ErrorKind::InvalidAlgorithm | ErrorKind::InvalidKeyFormat => TokenError::BadSignature,
        other => TokenError::Malformed(format!("{other:?}")),
    }
}

fn load(source: &KeySource) -> Result<Vec<(Option<String>, DecodingKey)>, KeyError> {
    let (path, kid) = match source {
        KeySource::Pem { path, kid } | KeySource::Secret { path, kid } => (path, kid),
        KeySource::Jwks { path } => (path, &None),
    };
    let error = |message: String| KeyError { path: path.display().to_string(), message };
    let bytes = std::fs::read(path).map_err(|e| error(format!("cannot read: {e}")))?;
    match source {
        KeySource::Pem { .. } => {
            let key = DecodingKey::from_ed_pem(&bytes)
                .or_else(|_| DecodingKey::from_ec_pem(&bytes))
                .or_else(|_| DecodingKey::from_rsa_pem(&bytes))
                .map_err(|_| error("not a PEM public key (RSA, EC P-256/P-384 or Ed25519)".into()))?;
            Ok(vec![(kid.clone(), key)])
        }
        KeySource::Secret { .. } => {
            let secret = bytes.strip_suffix(b"\n").unwrap_or(&bytes);
            if secret.len() < 32 {
                return Err(error("an HMAC secret must be at least 32 bytes".into()));
            }
            Ok(vec![(kid.clone(), DecodingKey::from_secret(secret))])
        }
        KeySource::Jwks { .. } => {
            let set: JwkSet = serde_json::from_slice(&bytes).map_err(|e| error(format!("not a JWK Set: {e}")))?;
            let mut keys = Vec::new();
            for jwk in &set.keys {
                let kid = jwk.common.key_id.clone();
                if kid.is_none() {
                    return Err(error("every key in a JWK Set needs a kid".into()));
                }
                let key = DecodingKey::from_jwk(jwk).map_err(|e| error(format!("key {kid:?}: {e}")))?;
                keys.push((kid, key));
            }
            Ok(keys)
        }
    }
}
