//! A host's signing identity: generating its Ed25519 key pair, and minting the short-lived
//! tokens it presents to its peers (and that `fedmcp token issue` prints).

use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use ed25519_dalek::SigningKey;
use ed25519_dalek::pkcs8::spki::der::pem::LineEnding;
use ed25519_dalek::pkcs8::{EncodePrivateKey, EncodePublicKey, KeypairBytes};
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
///
/// The private key is PKCS#8 v1 (RFC 5208: the seed alone), the form OpenSSL, Python's
/// `cryptography` and most JWT libraries read; the v2 form (RFC 5958, with the public key
/// inside), which earlier versions wrote, is still accepted by [`Signer::load`].
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
    let private_pem = KeypairBytes { secret_key: key.to_bytes(), public_key: None }
        .to_pkcs8_pem(LineEnding::LF)
        .map_err(|e| error(&private, e.to_string()))?;
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

    pub(crate) fn name(&self) -> &str {
        &self.name
    }

    /// A signed token, and when it expires.
    pub fn mint(&self, request: &TokenRequest) -> Result<(String, SystemTime), SigningError> {
        self.mint_for(request, None)
    }

    /// A signed token for a subject named by another issuer (`subject_issuer`, the issuer of
    /// the caller this host forwards): besides `sub`, it carries `sub_id` in RFC 9493's
    /// `iss_sub` format, so the peer can tell apart callers with the same subject from
    /// different issuers.
    pub(crate) fn mint_for(
        &self,
        request: &TokenRequest,
        subject_issuer: Option<&str>,
    ) -> Result<(String, SystemTime), SigningError> {
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
        if let Some(issuer) = subject_issuer {
            claims.insert("sub_id".into(), json!({ "format": "iss_sub", "iss": issuer, "sub": request.subject }));
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

    fn verifier(public: PathBuf) -> Verifier {
        Verifier::new(AuthSettings {
            audience: "host-b".into(),
            algorithms: vec![Algorithm::EdDSA],
            leeway_secs: 5,
            scope_claim: "scope".into(),
            issuers: vec![IssuerSettings {
                issuer: "host-a".into(),
                keys: vec![KeySource::Pem { path: public, kid: Some("host-a".into()) }],
                ceiling: None,
            }],
            resource: None,
            authorization_servers: Vec::new(),
        })
        .expect("verifier")
    }

    fn request(subject: &str) -> TokenRequest {
        TokenRequest {
            subject: subject.into(),
            audience: "host-b".into(),
            scopes: vec!["*".into()],
            ttl: Duration::from_secs(60),
            actor: Some("host-a".into()),
        }
    }

    #[test]
    fn a_generated_private_key_is_pkcs8_v1_and_a_v2_key_of_earlier_versions_still_loads() {
        use ed25519_dalek::pkcs8::spki::der::pem::decode_vec;
        // The DER starts `SEQUENCE { INTEGER version, ...`: version 0 is v1, 1 is v2.
        let version = |pem: &str| decode_vec(pem.as_bytes()).map(|(_, der)| der.get(2..5).map(<[u8]>::to_vec));
        let dir = tempfile::tempdir().expect("temp dir");
        let files = generate(dir.path(), "host-a").expect("keys");
        let pem = std::fs::read_to_string(&files.private).expect("key");
        assert_eq!(version(&pem).expect("PEM"), Some(vec![2, 1, 0]), "OpenSSL and PyJWT read v1");
        Signer::load("host-a", &files.private).expect("a v1 key loads");

        // What `keys generate` wrote before: v2, the public key inside.
        let old = SigningKey::from_bytes(&[7u8; 32]);
        let v2 = old.to_pkcs8_pem(LineEnding::LF).expect("v2 PEM");
        assert_eq!(version(&v2).expect("PEM"), Some(vec![2, 1, 1]));
        let old_private = dir.path().join("old.pem");
        let old_public = dir.path().join("old.pub.pem");
        std::fs::write(&old_private, v2.as_bytes()).expect("write");
        std::fs::write(&old_public, old.verifying_key().to_public_key_pem(LineEnding::LF).expect("PEM"))
            .expect("write");
        let (token, _) =
            Signer::load("host-a", &old_private).expect("a v2 key loads").mint(&request("x")).expect("token");
        assert_eq!(verifier(old_public).verify(&token).expect("valid").subject, "x");
    }

    /// A token's `exp` becomes its identity's expiry, whether written as an integer or (as some
    /// issuers do) with a fraction: a stream opened with it must end, never live on.
    #[test]
    fn a_tokens_expiry_is_kept_with_its_identity_integer_or_not() {
        let dir = tempfile::tempdir().expect("temp dir");
        let files = generate(dir.path(), "host-a").expect("keys");
        let key = jsonwebtoken::EncodingKey::from_ed_pem(&std::fs::read(&files.private).expect("key")).expect("key");
        let verifier = verifier(files.public);
        let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).expect("clock").as_secs();
        for exp in [serde_json::json!(now + 60), serde_json::json!(now as f64 + 60.5)] {
            let claims = serde_json::json!({ "iss": "host-a", "aud": "host-b", "sub": "x", "exp": exp, "scope": "*" });
            let mut header = jsonwebtoken::Header::new(Algorithm::EdDSA);
            header.kid = Some("host-a".into());
            let token = jsonwebtoken::encode(&header, &claims, &key).expect("token");
            // An integer `exp` must verify; a fractional one may be refused outright, which is fine.
            let identity = match verifier.verify(&token) {
                Ok(identity) => identity,
                Err(_) if exp.is_f64() => continue,
                Err(error) => panic!("{exp}: {error}"),
            };
            let expires = identity.expires.expect("an expiry");
            let secs = expires.duration_since(std::time::UNIX_EPOCH).expect("after 1970").as_secs();
            assert_eq!(secs, now + 60, "{exp}");
        }
    }

    #[test]
    fn callers_with_one_subject_from_two_issuers_are_two_principals_at_the_peer() {
        let dir = tempfile::tempdir().expect("temp dir");
        let files = generate(dir.path(), "host-a").expect("keys");
        let signer = Signer::load("host-a", &files.private).expect("signer");
        let verifier = verifier(files.public);
        let as_seen = |issuer: Option<&str>| {
            let (token, _) = signer.mint_for(&request("alice"), issuer).expect("token");
            verifier.verify(&token).expect("valid")
        };
        let one = as_seen(Some("https://idp-one"));
        let two = as_seen(Some("https://idp-two"));
        assert_eq!((one.subject.as_str(), two.subject.as_str()), ("alice", "alice"));
        assert_eq!(one.issuer.as_deref(), Some("https://idp-one"));
        assert_eq!(one.actor.as_deref(), Some("host-a"));
        assert_ne!(one.limit_key(), two.limit_key());
        assert_ne!(one.describe(), two.describe());
        // Without sub_id the subject is the host's to name.
        assert_eq!(as_seen(None).issuer.as_deref(), Some("host-a"));
        // sub_id counts only from a host acting for its own caller, and only for its `sub`.
        let mut own = request("alice");
        own.actor = None;
        let (token, _) = signer.mint_for(&own, Some("https://idp-one")).expect("token");
        assert_eq!(verifier.verify(&token).expect("valid").issuer.as_deref(), Some("host-a"));
    }

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
        let verifier = verifier(files.public);
        let identity = verifier.verify(&token).expect("valid");
        assert_eq!(identity.subject, "alice");
        assert_eq!(identity.actor.as_deref(), Some("host-a"));
        assert!(identity.allows(EntryKind::Tool, "text__upper"));
        assert!(!identity.allows(EntryKind::Tool, "other__x"));
    }
}
