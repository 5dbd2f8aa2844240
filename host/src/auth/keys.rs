//! A host's signing identity: generating its Ed25519 key pair, and minting the short-lived
//! tokens it presents to its peers (and that `fedmcp token issue` prints).

use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use ed25519_dalek::SigningKey;
use ed25519_dalek::pkcs8::spki::der::pem::LineEnding;
use ed25519_dalek::pkcs8::{EncodePrivateKey, EncodePublicKey};
use jsonwebtoken::{Algorithm, EncodingKey, Header, encode};
use serde_json::{Map, Value, json};

/// Why a key could not be made, read or used.
#[derive(Debug, thiserror::Error)]
pub enum SigningError {
    #[error("{path}: {message}")]
    Key { path: String, message: String },
    #[error("cannot sign the token: {0}")]
    Sign(String),
}

/// The files `generate` wrote.
pub struct GeneratedKeys {
    pub private: PathBuf,
    pub public: PathBuf,
}

/// Write a new Ed25519 key pair as `<dir>/<name>.pem` (private, owner-only) and
/// `<dir>/<name>.pub.pem`. An existing private key is never overwritten.
pub fn generate(dir: &Path, name: &str) -> Result<GeneratedKeys, SigningError> {
    let private = dir.join(format!("{name}.pem"));
    let public = dir.join(format!("{name}.pub.pem"));
    let error = |path: &Path, message: String| SigningError::Key { path: path.display().to_string(), message };
    if private.exists() {
        return Err(error(&private, "exists already; remove it first to replace this host's key".into()));
    }
    std::fs::create_dir_all(dir).map_err(|e| error(dir, format!("cannot create: {e}")))?;
    let mut seed = [0u8; 32];
    getrandom::fill(&mut seed).map_err(|e| error(&private, format!("no random source: {e}")))?;
    let key = SigningKey::from_bytes(&seed);
    let private_pem = key.to_pkcs8_pem(LineEnding::LF).map_err(|e| error(&private, e.to_string()))?;
    let public_pem =
        key.verifying_key().to_public_key_pem(LineEnding::LF).map_err(|e| error(&public, e.to_string()))?;
    write_private(&private, private_pem.as_bytes()).map_err(|e| error(&private, format!("cannot write: {e}")))?;
    std::fs::write(&public, public_pem).map_err(|e| error(&public, format!("cannot write: {e}")))?;
    Ok(GeneratedKeys { private, public })
}

fn write_private(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    use std::io::Write;
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        options.mode(0o600);
    }
    options.open(path)?.write_all(bytes)
}

/// What a minted token says.
#[derive(Debug, Clone)]
pub struct TokenRequest {
    pub subject: String,
    pub audience: String,
    pub scopes: Vec<String>,
    pub ttl: Duration,
    /// The party acting for the subject (RFC 8693 `act`).
    pub actor: Option<String>,
}

/// A host's name and private key; its tokens carry `iss` = the name and `kid` = the name.
pub struct Signer {
    name: String,
    key: EncodingKey,
    algorithm: Algorithm,
}

impl Signer {
    /// Read a PEM private key: Ed25519 (what `fedmcp keys generate` makes), EC P-256 or RSA.
    pub fn load(name: &str, path: &Path) -> Result<Self, SigningError> {
        let error = |message: String| SigningError::Key { path: path.display().to_string(), message };
        let bytes = std::fs::read(path).map_err(|e| error(format!("cannot read: {e}")))?;
        let (key, algorithm) = EncodingKey::from_ed_pem(&bytes)
            .map(|k| (k, Algorithm::EdDSA))
            .or_else(|_| EncodingKey::from_ec_pem(&bytes).map(|k| (k, Algorithm::ES256)))
            .or_else(|_| EncodingKey::from_rsa_pem(&bytes).map(|k| (k, Algorithm::RS256)))
            .map_err(|_| error("not a PEM private key (Ed25519, EC P-256 or RSA)".into()))?;
        Ok(Self { name: name.to_owned(), key, algorithm })
    }

    pub fn name(&self) -> &str {
        &self.name
    }

    /// A signed token, and when it expires.
    pub fn mint(&self, request: &TokenRequest) -> Result<(String, SystemTime), SigningError> {
        let now = SystemTime::now();
        let expires = now + request.ttl;
        let seconds = |t: SystemTime| t.duration_since(UNIX_EPOCH).map(|d| d.as_secs()).unwrap_or_default();
        let mut claims = Map::new();
        claims.insert("iss".into(), json!(self.name));
        claims.insert("sub".into(), json!(request.subject));
        claims.insert("aud".into(), json!(request.audience));
        claims.insert("iat".into(), json!(seconds(now)));
        claims.insert("nbf".into(), json!(seconds(now)));
        claims.insert("exp".into(), json!(seconds(expires)));
        claims.insert("scope".into(), json!(request.scopes.join(" ")));
        if let Some(actor) = &request.actor {
            claims.insert("act".into(), json!({ "sub": actor }));
        }
        let mut header = Header::new(self.algorithm);
        header.kid = Some(self.name.clone());
        let token =
            encode(&header, &Value::Object(claims), &self.key).map_err(|e| SigningError::Sign(e.to_string()))?;
        Ok((token, expires))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::auth::{AuthSettings, EntryKind, IssuerSettings, KeySource, jwt::Verifier};

    #[test]
    fn a_generated_key_mints_tokens_its_public_key_verifies() {
        let dir = tempfile::tempdir().expect("temp dir");
        let files = generate(dir.path(), "host-a").expect("keys");
        assert!(generate(dir.path(), "host-a").is_err(), "an existing key is not overwritten");
        let signer = Signer::load("host-a", &files.private).expect("signer");
        let request = TokenRequest {
            subject: "alice".into(),
            audience: "host-b".into(),
            scopes: vec!["tools:text__*".into()],
            ttl: Duration::from_secs(60),
            actor: Some("host-a".into()),
        };
        let (token, _) = signer.mint(&request).expect("token");
        let verifier = Verifier::new(AuthSettings {
            audience: "host-b".into(),
            algorithms: vec![Algorithm::EdDSA],
            leeway_secs: 5,
            scope_claim: "scope".into(),
            issuers: vec![IssuerSettings {
                issuer: "host-a".into(),
                keys: vec![KeySource::Pem { path: files.public, kid: Some("host-a".into()) }],
                ceiling: None,
            }],
            resource: None,
            authorization_servers: Vec::new(),
        })
        .expect("verifier");
        let identity = verifier.verify(&token).expect("valid");
        assert_eq!(identity.subject, "alice");
        assert_eq!(identity.actor.as_deref(), Some("host-a"));
        assert!(identity.allows(EntryKind::Tool, "text__upper"));
        assert!(!identity.allows(EntryKind::Tool, "other__x"));
    }
}
