//! Signatures of plugin artifacts in cosign's key-based layout, with the host's Ed25519 keys
//! (`fedmcp keys generate`).
//!
//! What cosign writes for an image with digest `sha256:<hex>` and what this module writes and
//! reads too: an OCI manifest under the tag `sha256-<hex>.sig` in the same repository, one
//! layer per signature, each layer a "simple signing" payload (JSON naming the signed manifest
//! digest) with the signature, base64, in its `dev.cosignproject.cosign/signature` annotation.
//! The signature is Ed25519 over the payload's bytes as stored (cosign's Ed25519 verifier
//! checks the same bytes). No transparency log and no certificate: key-based only.

use std::path::Path;

use base64::Engine as _;
use ed25519_dalek::pkcs8::{DecodePrivateKey, DecodePublicKey};
use ed25519_dalek::{Signature, Signer as _, SigningKey, VerifyingKey};
use serde::Deserialize;
use serde_json::json;

/// The media type of a signature layer (cosign's simple signing payload).
pub(crate) const SIMPLE_SIGNING_MEDIA_TYPE: &str = "application/vnd.dev.cosign.simplesigning.v1+json";
/// The layer annotation that carries the base64 signature.
pub(crate) const SIGNATURE_ANNOTATION: &str = "dev.cosignproject.cosign/signature";
/// The payload's `critical.type`.
const PAYLOAD_TYPE: &str = "cosign container image signature";
/// A payload larger than this is not one: they are a few hundred bytes.
pub(crate) const MAX_PAYLOAD_BYTES: u64 = 64 * 1024;

/// The tag cosign stores the signatures of manifest `digest` under: `sha256-<hex>.sig`.
pub(crate) fn signature_tag(digest: &str) -> String {
    format!("{}.sig", digest.replacen(':', "-", 1))
}

/// The simple signing payload for the manifest `digest` of `docker_reference`
/// (`registry/repository`), as cosign writes it (keys in the same order).
pub(crate) fn payload(docker_reference: &str, digest: &str) -> Vec<u8> {
    let payload = json!({
        "critical": {
            "identity": { "docker-reference": docker_reference },
            "image": { "docker-manifest-digest": digest },
            "type": PAYLOAD_TYPE,
        },
        "optional": null,
    });
    payload.to_string().into_bytes()
}

/// The base64 Ed25519 signature of `payload`.
pub(crate) fn sign(key: &SigningKey, payload: &[u8]) -> String {
    base64::engine::general_purpose::STANDARD.encode(key.sign(payload).to_bytes())
}

/// A private key that signs artifacts: PKCS#8 PEM, Ed25519 (what `fedmcp keys generate` writes).
pub fn load_signing_key(path: &Path) -> Result<SigningKey, String> {
    let text = std::fs::read_to_string(path).map_err(|e| format!("{}: cannot read: {e}", path.display()))?;
    SigningKey::from_pkcs8_pem(&text)
        .map_err(|e| format!("{}: not an Ed25519 private key in PKCS#8 PEM ({e})", path.display()))
}

/// A public key trusted to sign artifacts, and the file it came from (named in messages).
#[derive(Debug, Clone)]
pub struct TrustedKey {
    pub name: String,
    key: VerifyingKey,
}

impl TrustedKey {
    /// Read an Ed25519 public key (SPKI PEM, the `.pub.pem` of `fedmcp keys generate`).
    pub fn load(path: &Path) -> Result<Self, String> {
        let text = std::fs::read_to_string(path).map_err(|e| format!("{}: cannot read: {e}", path.display()))?;
        let key = VerifyingKey::from_public_key_pem(&text)
            .map_err(|e| format!("{}: not an Ed25519 public key in PEM ({e})", path.display()))?;
        Ok(Self { name: path.display().to_string(), key })
    }

    #[cfg(test)]
    pub(crate) fn of(name: &str, key: VerifyingKey) -> Self {
        Self { name: name.into(), key }
    }
}

#[derive(Deserialize)]
struct Payload {
    critical: Critical,
}

#[derive(Deserialize)]
struct Critical {
    image: Image,
    #[serde(rename = "type")]
    kind: String,
}

#[derive(Deserialize)]
struct Image {
    #[serde(rename = "docker-manifest-digest")]
    digest: String,
}

/// Check one signature layer: `signature` (base64) over `payload` by one of `keys`, and the
/// payload names `digest`. Returns the key that signed, or why this layer does not count.
pub(crate) fn check<'k>(
    payload: &[u8],
    signature: &str,
    keys: &'k [TrustedKey],
    digest: &str,
) -> Result<&'k TrustedKey, String> {
    let bytes = base64::engine::general_purpose::STANDARD
        .decode(signature.trim())
        .map_err(|e| format!("the signature is not base64 ({e})"))?;
    let signature = Signature::from_slice(&bytes).map_err(|_| "not an Ed25519 signature (64 bytes)".to_owned())?;
    let signer = keys
        .iter()
        .find(|trusted| trusted.key.verify_strict(payload, &signature).is_ok())
        .ok_or_else(|| "signed by none of the trusted keys".to_owned())?;
    // Only once the payload is known to be the signer's does what it says count.
    let payload: Payload =
        serde_json::from_slice(payload).map_err(|e| format!("the signed payload is not simple signing JSON ({e})"))?;
    if payload.critical.kind != PAYLOAD_TYPE {
        return Err(format!("the signed payload is of type {:?}, not {PAYLOAD_TYPE:?}", payload.critical.kind));
    }
    if payload.critical.image.digest != digest {
        return Err(format!("the signature is for {}, not this manifest ({digest})", payload.critical.image.digest));
    }
    Ok(signer)
}

#[cfg(test)]
mod tests {
    use super::*;

    const DIGEST: &str = "sha256:0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef";

    fn key(seed: u8) -> SigningKey {
        SigningKey::from_bytes(&[seed; 32])
    }

    #[test]
    fn a_payload_is_cosigns_and_its_tag_is_cosigns() {
        let text = String::from_utf8(payload("127.0.0.1:5000/plugins/echo", DIGEST)).expect("UTF-8");
        assert_eq!(
            text,
            format!(
                "{{\"critical\":{{\"identity\":{{\"docker-reference\":\"127.0.0.1:5000/plugins/echo\"}},\"image\":\
                 {{\"docker-manifest-digest\":\"{DIGEST}\"}},\"type\":\"cosign container image signature\"}},\
                 \"optional\":null}}"
            )
        );
        assert_eq!(
            signature_tag(DIGEST),
            "sha256-0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef.sig"
        );
    }

    #[test]
    fn a_signature_counts_only_from_a_trusted_key_and_for_this_digest() {
        let signer = key(1);
        let trusted = [TrustedKey::of("one", signer.verifying_key())];
        let body = payload("r/p", DIGEST);
        let signature = sign(&signer, &body);
        assert_eq!(check(&body, &signature, &trusted, DIGEST).expect("valid").name, "one");

        let other = [TrustedKey::of("two", key(2).verifying_key())];
        assert!(check(&body, &signature, &other, DIGEST).unwrap_err().contains("none of the trusted keys"));

        let elsewhere = DIGEST.replace("0123", "ffff");
        assert!(check(&body, &signature, &trusted, &elsewhere).unwrap_err().contains("not this manifest"));

        let mut tampered = body.clone();
        tampered[20] ^= 1;
        assert!(check(&tampered, &signature, &trusted, DIGEST).is_err());
        assert!(check(&body, "not base64!", &trusted, DIGEST).unwrap_err().contains("base64"));
    }

    #[test]
    fn the_hosts_generated_keys_sign_and_verify() {
        let dir = tempfile::tempdir().expect("temp dir");
        let files = crate::auth::keys::generate(dir.path(), "publisher").expect("keys");
        let signer = load_signing_key(&files.private).expect("private key");
        let trusted = [TrustedKey::load(&files.public).expect("public key")];
        let body = payload("r/p", DIGEST);
        check(&body, &sign(&signer, &body), &trusted, DIGEST).expect("valid");
        assert!(TrustedKey::load(&files.private).is_err(), "a private key is not a public key");
    }
}
