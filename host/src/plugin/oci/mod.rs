//! Plugins as OCI artifacts: `fedmcp plugin push` and `pull`, and the `[[plugins.sources]]`
//! a host follows.
//!
//! The layout is the Wasm OCI artifact one (what `oci-wasm`, and so Wassette, write): an OCI
//! image manifest whose config is `application/vnd.wasm.config.v0+json` (architecture `wasm`,
//! os `wasip2`, the layer digests, the component's imports and exports) and whose first layer
//! is the component, `application/wasm`. The plugin's manifest (`plugin.toml`), when there is
//! one, is a second layer of its own type, [`MANIFEST_LAYER_MEDIA_TYPE`]. The config is built
//! here rather than with `oci-wasm`, which would bring a second `oci-client`, `wit-component`
//! and another `wasmparser` into the build for one JSON object.
//!
//! Pulling resolves the reference to a manifest digest (computed from the bytes, never taken
//! from the registry's word), checks signatures against it when keys are given (see
//! [`signature`]), checks each blob against its digest and size, and only then writes
//! `<name>.toml` and `<name>.wasm` into the plugins folder, each through a temporary file in the
//! same folder and a rename: a running host's watcher sees whole files, the manifest first.

mod credentials;
pub mod signature;
pub mod source;

use std::path::{Path, PathBuf};
use std::time::Duration;

use futures::StreamExt;
use oci_client::client::{ClientConfig, ClientProtocol};
use oci_client::manifest::{OCI_IMAGE_MEDIA_TYPE, OciDescriptor, OciImageManifest};
use oci_client::secrets::RegistryAuth;
use oci_client::{Client, Reference, RegistryOperation};
use serde_json::json;
use sha2::{Digest, Sha256};

use signature::TrustedKey;

/// The config media type of a Wasm OCI artifact.
pub const WASM_CONFIG_MEDIA_TYPE: &str = "application/vnd.wasm.config.v0+json";
/// The media type of the component layer.
pub const WASM_LAYER_MEDIA_TYPE: &str = "application/wasm";
/// The media type of the plugin manifest layer (`plugin.toml`).
pub const MANIFEST_LAYER_MEDIA_TYPE: &str = "application/vnd.fedmcp.plugin.manifest.v1+toml";
/// The config media type of a signature manifest (cosign's).
const SIGNATURE_CONFIG_MEDIA_TYPE: &str = "application/vnd.oci.image.config.v1+json";
/// Components this large are refused: the largest example (a Python plugin) is ~18 MB.
const MAX_WASM_BYTES: u64 = 512 << 20;
const MAX_MANIFEST_BYTES: u64 = 1 << 20;
const MAX_CONFIG_BYTES: u64 = 1 << 20;
/// The signature layers one pull looks at (the first ones).
const MAX_SIGNATURES: usize = 16;
/// The most of an OCI manifest (the artifact's or its signatures') that is read.
const MAX_OCI_MANIFEST_BYTES: u64 = 1 << 20;
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);
const READ_TIMEOUT: Duration = Duration::from_secs(60);
/// The longest one pull (manifest, signatures, blobs) may take in all.
const PULL_DEADLINE: Duration = Duration::from_secs(600);

/// Why a push or pull failed.
#[derive(Debug, thiserror::Error)]
pub enum OciError {
    /// The reference, a key or a local file cannot be used.
    #[error("{0}")]
    Input(String),
    /// The registry could not be reached or said no.
    #[error("{reference}: {message}")]
    Registry { reference: String, message: String },
    /// What the registry served failed a check (signature, digest, size, layout).
    #[error("{reference}: refused: {message}")]
    Refused { reference: String, message: String },
    /// The plugins folder could not be written.
    #[error("{0}")]
    Install(String),
}

/// `oci://HOST[:PORT]/REPO[:TAG|@sha256:HEX]`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OciReference {
    text: String,
    reference: Reference,
}

impl std::fmt::Display for OciReference {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.text)
    }
}

impl OciReference {
    pub fn parse(text: &str) -> Result<Self, OciError> {
        let usage =
            |why: &str| OciError::Input(format!("{text:?} {why}: write oci://HOST[:PORT]/REPO[:TAG|@sha256:…]"));
        let rest = text.strip_prefix("oci://").ok_or_else(|| usage("is not an oci:// reference"))?;
        let (registry, _) = rest.split_once('/').ok_or_else(|| usage("names no repository"))?;
        if registry.is_empty() {
            return Err(usage("names no registry"));
        }
        let reference = Reference::try_from(rest).map_err(|e| usage(&format!("is not a valid reference ({e})")))?;
        // Without a dot or port the first part would be read as a Docker Hub path.
        if reference.registry() != registry {
            return Err(usage("names no registry host (a host has a dot or a port, or is localhost)"));
        }
        if let Some(digest) = reference.digest()
            && !is_sha256_digest(digest)
        {
            return Err(usage("pins a digest that is not sha256:<64 hex>"));
        }
        Ok(Self { text: text.to_owned(), reference })
    }

    pub fn registry(&self) -> &str {
        self.reference.registry()
    }

    pub fn repository(&self) -> &str {
        self.reference.repository()
    }

    /// The digest the reference pins, if it does: what it names never changes.
    pub fn pinned_digest(&self) -> Option<&str> {
        self.reference.digest()
    }

    /// The plugin's name by default: the last part of the repository (`plugins/echo` → `echo`).
    pub fn default_name(&self) -> &str {
        self.repository().rsplit('/').next().unwrap_or_default()
    }

    /// Whether the registry is on this machine, where plain HTTP is allowed.
    pub fn is_loopback(&self) -> bool {
        let registry = self.registry();
        let host = if let Some(rest) = registry.strip_prefix('[') {
            rest.split(']').next().unwrap_or_default()
        } else {
            registry.rsplit_once(':').map_or(registry, |(host, _)| host)
        };
        host == "localhost" || host.parse::<std::net::IpAddr>().is_ok_and(|ip| ip.is_loopback())
    }

    fn at_tag(&self, tag: &str) -> Reference {
        Reference::with_tag(self.registry().to_owned(), self.repository().to_owned(), tag.to_owned())
    }

    fn at_digest(&self, digest: &str) -> Reference {
        Reference::with_digest(self.registry().to_owned(), self.repository().to_owned(), digest.to_owned())
    }
}

fn is_sha256_digest(digest: &str) -> bool {
    digest
        .strip_prefix("sha256:")
        .is_some_and(|hex| hex.len() == 64 && hex.bytes().all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b)))
}

/// A plugin name that is a plain file stem in the plugins folder (no separators, no dots).
pub fn check_plugin_name(name: &str) -> Result<(), OciError> {
    let valid = !name.is_empty()
        && name.len() <= 64
        && !name.starts_with(['-', '_'])
        && name.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_');
    if valid {
        Ok(())
    } else {
        Err(OciError::Input(format!(
            "{name:?} cannot be a plugin's file name (letters, digits, - and _ only); give the name to use"
        )))
    }
}

pub(crate) fn sha256_digest(bytes: &[u8]) -> String {
    let hash = Sha256::digest(bytes);
    let mut text = String::with_capacity(71);
    text.push_str("sha256:");
    for byte in hash {
        text.push_str(&format!("{byte:02x}"));
    }
    text
}

/// How to reach a registry.
#[derive(Debug, Clone, Default)]
pub struct RegistryOptions {
    /// Plain HTTP even to a registry that is not on loopback.
    pub insecure: bool,
    /// A docker-style config.json with the registry's credentials (default: the standard places).
    pub auth_file: Option<PathBuf>,
}

/// A client for one reference's registry, authenticated for `operation`.
struct Registry {
    client: Client,
    auth: RegistryAuth,
    shown: String,
    /// For manifests, read within [`MAX_OCI_MANIFEST_BYTES`] (oci-client reads them whole).
    http: reqwest::Client,
    /// `http` or `https`, as the client talks to this registry.
    scheme: &'static str,
    /// The bearer token the registry gave for this operation, if it gives tokens.
    token: Option<String>,
}

impl Registry {
    async fn connect(
        reference: &OciReference,
        options: &RegistryOptions,
        operation: RegistryOperation,
    ) -> Result<Self, OciError> {
        crate::tls::install_default_provider();
        let plain_http = options.insecure || reference.is_loopback();
        let protocol = if plain_http {
            ClientProtocol::HttpsExcept(vec![reference.registry().to_owned()])
        } else {
            ClientProtocol::Https
        };
        let config = ClientConfig {
            protocol,
            connect_timeout: Some(CONNECT_TIMEOUT),
            read_timeout: Some(READ_TIMEOUT),
            ..ClientConfig::default()
        };
        let auth = credentials::lookup(reference.registry(), options.auth_file.as_deref()).map_err(OciError::Input)?;
        let http = reqwest::Client::builder()
            .connect_timeout(CONNECT_TIMEOUT)
            .read_timeout(READ_TIMEOUT)
            .build()
            .map_err(|e| OciError::Registry { reference: reference.to_string(), message: e.to_string() })?;
        let scheme = if plain_http { "http" } else { "https" };
        let mut registry =
            Self { client: Client::new(config), auth, shown: reference.to_string(), http, scheme, token: None };
        registry.token = registry
            .client
            .auth(&reference.reference, &registry.auth, operation)
            .await
            .map_err(|e| registry.error(e))?;
        Ok(registry)
    }

    fn error(&self, error: impl std::fmt::Display) -> OciError {
        OciError::Registry { reference: self.shown.clone(), message: clipped(error.to_string()) }
    }

    fn refused(&self, message: impl Into<String>) -> OciError {
        OciError::Refused { reference: self.shown.clone(), message: clipped(message.into()) }
    }

    /// The manifest at `reference` and the digest of its bytes; `None` if there is none.
    /// Read with the host's HTTP client, within [`MAX_OCI_MANIFEST_BYTES`]: a registry decides
    /// what a manifest holds, and oci-client would read any size whole.
    async fn manifest(&self, reference: &Reference) -> Result<Option<(Vec<u8>, String)>, OciError> {
        let at = reference.digest().or(reference.tag()).unwrap_or("latest");
        let url =
            format!("{}://{}/v2/{}/manifests/{at}", self.scheme, reference.resolve_registry(), reference.repository());
        let mut request = self.http.get(&url).header(reqwest::header::ACCEPT, OCI_IMAGE_MEDIA_TYPE);
        request = match (&self.token, &self.auth) {
            (Some(token), _) => request.bearer_auth(token),
            (None, RegistryAuth::Basic(user, password)) => request.basic_auth(user, Some(password)),
            (None, RegistryAuth::Bearer(token)) => request.bearer_auth(token),
            (None, _) => request,
        };
        let response = request.send().await.map_err(|e| self.error(e))?;
        if response.status() == reqwest::StatusCode::NOT_FOUND {
            return Ok(None);
        }
        if !response.status().is_success() {
            return Err(
                self.error(format!("the registry answered the manifest request with HTTP {}", response.status()))
            );
        }
        let too_large = || self.refused(format!("the manifest is larger than {MAX_OCI_MANIFEST_BYTES} bytes"));
        if response.content_length().is_some_and(|length| length > MAX_OCI_MANIFEST_BYTES) {
            return Err(too_large());
        }
        let mut body = Vec::new();
        let mut stream = response.bytes_stream();
        while let Some(chunk) = stream.next().await {
            let chunk = chunk.map_err(|e| self.error(e))?;
            if (body.len() + chunk.len()) as u64 > MAX_OCI_MANIFEST_BYTES {
                return Err(too_large());
            }
            body.extend_from_slice(&chunk);
        }
        let digest = sha256_digest(&body);
        if let Some(pinned) = reference.digest()
            && pinned != digest
        {
            return Err(self.refused(format!("the manifest served for {pinned} has digest {digest}")));
        }
        Ok(Some((body, digest)))
    }

    /// The digest the registry gives for `reference` (a HEAD request): to tell whether a tag
    /// moved, never to trust what is pulled.
    async fn current_digest(&self, reference: &Reference) -> Result<String, OciError> {
        self.client.fetch_manifest_digest(reference, &self.auth).await.map_err(|e| self.error(e))
    }

    /// A blob, checked against its descriptor's size (at most `max`) and digest.
    async fn blob(&self, reference: &Reference, descriptor: &OciDescriptor, max: u64) -> Result<Vec<u8>, OciError> {
        let size = u64::try_from(descriptor.size).map_err(|_| self.refused("a layer has a negative size"))?;
        if size > max {
            return Err(
                self.refused(format!("a {} layer of {size} bytes is over the limit of {max}", descriptor.media_type))
            );
        }
        if !is_sha256_digest(&descriptor.digest) {
            return Err(self.refused(format!("a layer's digest {:?} is not sha256:<64 hex>", descriptor.digest)));
        }
        let mut stream = self.client.pull_blob_stream(reference, descriptor).await.map_err(|e| self.error(e))?;
        let mut bytes = Vec::with_capacity(usize::try_from(size).unwrap_or_default());
        while let Some(chunk) = stream.next().await {
            let chunk = chunk.map_err(|error| {
                // oci-client checks the digest as it streams, too.
                if error.get_ref().is_some_and(|inner| inner.is::<oci_client::errors::DigestError>()) {
                    self.refused(format!(
                        "blob {} does not match its digest ({error}): tampered or corrupt",
                        descriptor.digest
                    ))
                } else {
                    self.error(error)
                }
            })?;
            if (bytes.len() + chunk.len()) as u64 > size {
                return Err(self.refused(format!("blob {} is larger than its {size} bytes", descriptor.digest)));
            }
            bytes.extend_from_slice(&chunk);
        }
        let digest = sha256_digest(&bytes);
        if digest != descriptor.digest || bytes.len() as u64 != size {
            return Err(self.refused(format!(
                "blob {} does not match its digest (got {digest}, {} bytes): tampered or corrupt",
                descriptor.digest,
                bytes.len()
            )));
        }
        Ok(bytes)
    }

    async fn push_blob(&self, reference: &Reference, bytes: Vec<u8>) -> Result<OciDescriptor, OciError> {
        let digest = sha256_digest(&bytes);
        let size = bytes.len() as i64;
        self.client.push_blob(reference, bytes, &digest).await.map_err(|e| self.error(e))?;
        Ok(OciDescriptor { digest, size, ..OciDescriptor::default() })
    }

    async fn push_manifest(&self, reference: &Reference, manifest: &serde_json::Value) -> Result<String, OciError> {
        let body = serde_json::to_vec(manifest).map_err(|e| self.error(e))?;
        let digest = sha256_digest(&body);
        let content_type = http::HeaderValue::from_static(OCI_IMAGE_MEDIA_TYPE);
        self.client.push_manifest_raw(reference, body, content_type).await.map_err(|e| self.error(e))?;
        Ok(digest)
    }
}

/// The component's top-level import and export names (interfaces such as
/// `fedmcp:plugin/tools@0.1.0`), as the Wasm OCI config lists them.
fn component_interfaces(bytes: &[u8]) -> Result<(Vec<String>, Vec<String>), String> {
    use wasmparser::{Encoding, Parser, Payload};
    let (mut imports, mut exports) = (Vec::new(), Vec::new());
    let mut depth = 0usize;
    for payload in Parser::new(0).parse_all(bytes) {
        match payload.map_err(|e| format!("not a WebAssembly component: {e}"))? {
            Payload::Version { encoding, .. } => {
                if depth == 0 && encoding != Encoding::Component {
                    return Err("a core WebAssembly module, not a component: build it for wasm32-wasip2".into());
                }
                depth += 1;
            }
            Payload::End(_) => depth = depth.saturating_sub(1),
            Payload::ComponentImportSection(reader) if depth == 1 => {
                for import in reader {
                    imports.push(import.map_err(|e| e.to_string())?.name.name.to_owned());
                }
            }
            Payload::ComponentExportSection(reader) if depth == 1 => {
                for export in reader {
                    exports.push(export.map_err(|e| e.to_string())?.name.name.to_owned());
                }
            }
            _ => {}
        }
    }
    Ok((imports, exports))
}

/// A plugin manifest's text is TOML with only the manifest's top-level keys. Its grants are
/// checked by the host that loads it, against that host's folders and ceilings: a file grant
/// names a folder on the machine that serves the plugin, which the publisher may not have.
fn check_manifest_text(text: &str) -> Result<(), String> {
    const KEYS: [&str; 4] = ["namespace", "description", "capabilities", "tasks"];
    let table: toml::Table = toml::from_str(text).map_err(|e| format!("is not TOML: {}", e.message()))?;
    match table.keys().find(|key| !KEYS.contains(&key.as_str())) {
        Some(key) => Err(format!("is not a plugin manifest: unknown key {key:?} (expected {})", KEYS.join(", "))),
        None => Ok(()),
    }
}

/// RFC 3339 UTC, to the second, for the config's `created`.
fn rfc3339_now() -> String {
    let secs = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_secs());
    let (days, rest) = (secs / 86_400, secs % 86_400);
    // Civil date from days since 1970-01-01 (Howard Hinnant's algorithm).
    let z = days as i64 + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1_460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!("{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}Z", rest / 3600, rest % 3600 / 60, rest % 60)
}

/// What `push` did.
#[derive(Debug)]
pub struct Pushed {
    pub digest: String,
    /// The tag the signature was stored under, if signed.
    pub signature_tag: Option<String>,
}

/// Push `wasm` (and `manifest`, a plugin.toml) to `target`'s tag; sign it with `signing_key`.
pub async fn push(
    target: &OciReference,
    wasm: &Path,
    manifest: Option<&Path>,
    signing_key: Option<&Path>,
    options: &RegistryOptions,
) -> Result<Pushed, OciError> {
    if target.pinned_digest().is_some() {
        return Err(OciError::Input(format!("{target}: push to a tag, not a digest")));
    }
    let input = |path: &Path, e: std::io::Error| OciError::Input(format!("{}: cannot read: {e}", path.display()));
    let key = signing_key.map(signature::load_signing_key).transpose().map_err(OciError::Input)?;
    let wasm_bytes = std::fs::read(wasm).map_err(|e| input(wasm, e))?;
    let (imports, exports) =
        component_interfaces(&wasm_bytes).map_err(|e| OciError::Input(format!("{}: {e}", wasm.display())))?;
    let manifest_bytes = match manifest {
        Some(path) => {
            let text = std::fs::read_to_string(path).map_err(|e| input(path, e))?;
            check_manifest_text(&text).map_err(|e| OciError::Input(format!("{}: {e}", path.display())))?;
            Some(text.into_bytes())
        }
        None => None,
    };
    let registry = Registry::connect(target, options, RegistryOperation::Push).await?;
    let tag = target.reference.tag().unwrap_or("latest");
    let at_tag = target.at_tag(tag);

    let mut layers = Vec::new();
    let mut wasm_layer = registry.push_blob(&at_tag, wasm_bytes).await?;
    wasm_layer.media_type = WASM_LAYER_MEDIA_TYPE.into();
    layers.push(wasm_layer);
    if let Some(bytes) = manifest_bytes {
        let mut layer = registry.push_blob(&at_tag, bytes).await?;
        layer.media_type = MANIFEST_LAYER_MEDIA_TYPE.into();
        layers.push(layer);
    }
    let config = json!({
        "created": rfc3339_now(),
        "author": null,
        "architecture": "wasm",
        "os": "wasip2",
        "layerDigests": layers.iter().map(|l| l.digest.clone()).collect::<Vec<_>>(),
        "component": { "exports": exports, "imports": imports, "target": null },
    });
    let config_bytes = serde_json::to_vec(&config).map_err(|e| registry.error(e))?;
    let mut config_layer = registry.push_blob(&at_tag, config_bytes).await?;
    config_layer.media_type = WASM_CONFIG_MEDIA_TYPE.into();
    let manifest = json!({
        "schemaVersion": 2,
        "mediaType": OCI_IMAGE_MEDIA_TYPE,
        "config": config_layer,
        "layers": layers,
    });
    let digest = registry.push_manifest(&at_tag, &manifest).await?;
    let signature_tag = match key {
        Some(key) => Some(push_signature(&registry, target, &digest, &key).await?),
        None => None,
    };
    Ok(Pushed { digest, signature_tag })
}

/// Sign the artifact `target` names (a tag is resolved to its digest first) with another key,
/// beside the signatures already there: a second publisher, or a new key before the old one
/// is retired. Returns the digest signed and the signature's tag.
pub async fn sign(
    target: &OciReference,
    signing_key: &Path,
    options: &RegistryOptions,
) -> Result<(String, String), OciError> {
    let key = signature::load_signing_key(signing_key).map_err(OciError::Input)?;
    let registry = Registry::connect(target, options, RegistryOperation::Push).await?;
    let (_, digest) = registry
        .manifest(&target.reference)
        .await?
        .ok_or_else(|| registry.error("no such manifest (check the repository and tag)"))?;
    let tag = push_signature(&registry, target, &digest, &key).await?;
    Ok((digest, tag))
}

/// Store a signature of manifest `digest` under cosign's tag, beside any already there.
async fn push_signature(
    registry: &Registry,
    target: &OciReference,
    digest: &str,
    key: &ed25519_dalek::SigningKey,
) -> Result<String, OciError> {
    let tag = signature::signature_tag(digest);
    let at_tag = target.at_tag(&tag);
    let body = signature::payload(&format!("{}/{}", target.registry(), target.repository()), digest);
    let signature = signature::sign(key, &body);
    let mut layers: Vec<OciDescriptor> = match registry.manifest(&at_tag).await? {
        Some((existing, _)) => serde_json::from_slice::<OciImageManifest>(&existing)
            .map(|m| m.layers)
            .map_err(|e| registry.refused(format!("the signature manifest at {tag} is not an OCI manifest ({e})")))?,
        None => Vec::new(),
    };
    let mut layer = registry.push_blob(&at_tag, body).await?;
    layer.media_type = signature::SIMPLE_SIGNING_MEDIA_TYPE.into();
    // Every key signs the same payload, so layers differ by their signature alone. Ed25519 is
    // deterministic: signing again with the same key gives the same signature, which is kept
    // once.
    let signature_of =
        |l: &OciDescriptor| l.annotations.as_ref().and_then(|a| a.get(signature::SIGNATURE_ANNOTATION)).cloned();
    layers.retain(|existing| signature_of(existing).as_ref() != Some(&signature));
    layer.annotations = Some([(signature::SIGNATURE_ANNOTATION.to_owned(), signature)].into_iter().collect());
    layers.push(layer);
    let config = json!({
        "architecture": "",
        "os": "",
        "config": {},
        "rootfs": { "type": "layers", "diff_ids": layers.iter().map(|l| l.digest.clone()).collect::<Vec<_>>() },
    });
    let config_bytes = serde_json::to_vec(&config).map_err(|e| registry.error(e))?;
    let mut config_layer = registry.push_blob(&at_tag, config_bytes).await?;
    config_layer.media_type = SIGNATURE_CONFIG_MEDIA_TYPE.into();
    let manifest = json!({
        "schemaVersion": 2,
        "mediaType": OCI_IMAGE_MEDIA_TYPE,
        "config": config_layer,
        "layers": layers,
    });
    registry.push_manifest(&at_tag, &manifest).await?;
    Ok(tag)
}

/// A plugin pulled and checked, not yet written.
#[derive(Debug)]
pub struct Fetched {
    pub digest: String,
    pub wasm: Vec<u8>,
    pub manifest: Option<Vec<u8>>,
    /// The trusted key whose signature was checked; `None` when no keys were given.
    pub signed_by: Option<String>,
}

/// Pull `source` and check it: with `trusted` keys, a signature by one of them over the
/// manifest's digest is required; every blob must match its digest.
pub async fn fetch(
    source: &OciReference,
    trusted: &[TrustedKey],
    options: &RegistryOptions,
) -> Result<Fetched, OciError> {
    let registry = Registry::connect(source, options, RegistryOperation::Pull).await?;
    fetch_with(&registry, source, trusted).await
}

async fn fetch_with(registry: &Registry, source: &OciReference, trusted: &[TrustedKey]) -> Result<Fetched, OciError> {
    let (body, digest) = registry
        .manifest(&source.reference)
        .await?
        .ok_or_else(|| registry.error("no such manifest (check the repository and tag)"))?;
    // From here on, every read is by this digest: a tag that moves meanwhile changes nothing.
    let pinned = source.at_digest(&digest);
    let manifest: OciImageManifest =
        serde_json::from_slice(&body).map_err(|e| registry.refused(format!("not an OCI image manifest ({e})")))?;
    if manifest.config.media_type != WASM_CONFIG_MEDIA_TYPE {
        return Err(registry.refused(format!(
            "the artifact's config is {:?}, not a Wasm component ({WASM_CONFIG_MEDIA_TYPE})",
            manifest.config.media_type
        )));
    }
    let single = |media_type: &str| -> Result<Option<&OciDescriptor>, OciError> {
        let mut found = manifest.layers.iter().filter(|l| l.media_type == media_type);
        let first = found.next();
        if found.next().is_some() {
            return Err(registry.refused(format!("more than one {media_type} layer")));
        }
        Ok(first)
    };
    let wasm_layer =
        single(WASM_LAYER_MEDIA_TYPE)?.ok_or_else(|| registry.refused(format!("no {WASM_LAYER_MEDIA_TYPE} layer")))?;
    let manifest_layer = single(MANIFEST_LAYER_MEDIA_TYPE)?;
    let signed_by = if trusted.is_empty() { None } else { Some(verify(registry, source, &digest, trusted).await?) };
    // The config is checked too, though nothing from it is used, so a tampered one is noticed.
    registry.blob(&pinned, &manifest.config, MAX_CONFIG_BYTES).await?;
    let wasm = registry.blob(&pinned, wasm_layer, MAX_WASM_BYTES).await?;
    component_interfaces(&wasm).map_err(|e| registry.refused(format!("the {WASM_LAYER_MEDIA_TYPE} layer is {e}")))?;
    let manifest = match manifest_layer {
        Some(layer) => {
            let bytes = registry.blob(&pinned, layer, MAX_MANIFEST_BYTES).await?;
            let text = std::str::from_utf8(&bytes).map_err(|_| registry.refused("the plugin manifest is not UTF-8"))?;
            check_manifest_text(text).map_err(|e| registry.refused(format!("the plugin manifest {e}")))?;
            Some(bytes)
        }
        None => None,
    };
    Ok(Fetched { digest, wasm, manifest, signed_by })
}

/// The trusted key that signed manifest `digest`, or why none did.
async fn verify(
    registry: &Registry,
    source: &OciReference,
    digest: &str,
    trusted: &[TrustedKey],
) -> Result<String, OciError> {
    let tag = signature::signature_tag(digest);
    let Some((body, _)) = registry.manifest(&source.at_tag(&tag)).await? else {
        return Err(registry.refused(format!("unsigned: no signature at tag {tag}, and a verify key is required")));
    };
    let manifest: OciImageManifest = serde_json::from_slice(&body)
        .map_err(|e| registry.refused(format!("the signature manifest at {tag} is not an OCI manifest ({e})")))?;
    let at_signature = source.at_tag(&tag);
    let mut reasons = Vec::new();
    // Each signature is a blob to fetch: a registry cannot make one pull fetch thousands.
    let signatures = manifest.layers.iter().filter(|l| l.media_type == signature::SIMPLE_SIGNING_MEDIA_TYPE);
    for layer in signatures.take(MAX_SIGNATURES) {
        let Some(signature) = layer.annotations.as_ref().and_then(|a| a.get(signature::SIGNATURE_ANNOTATION)) else {
            reasons.push(format!("layer {} has no {} annotation", layer.digest, signature::SIGNATURE_ANNOTATION));
            continue;
        };
        let payload = registry.blob(&at_signature, layer, signature::MAX_PAYLOAD_BYTES).await?;
        match signature::check(&payload, signature, trusted, digest) {
            Ok(key) => return Ok(key.name.clone()),
            Err(reason) => reasons.push(reason),
        }
    }
    if reasons.is_empty() {
        reasons.push("it holds no signature layers".into());
    }
    Err(registry.refused(format!("no valid signature by a trusted key at {tag}: {}", reasons.join("; "))))
}

/// What `install` did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Installed {
    /// The folder already held these files.
    Unchanged,
    Written,
}

/// Write a fetched plugin into `dir` as `<name>.toml` and `<name>.wasm` (both staged, then
/// renamed in that order); a plugin without a manifest has any old `<name>.toml` removed (so
/// the new component never runs with grants it did not ask for).
pub fn install(dir: &Path, name: &str, fetched: &Fetched) -> Result<Installed, OciError> {
    check_plugin_name(name)?;
    let wasm_path = dir.join(format!("{name}.wasm"));
    let manifest_path = dir.join(format!("{name}.toml"));
    let same = |path: &Path, bytes: Option<&[u8]>| match std::fs::read(path) {
        Ok(existing) => bytes == Some(existing.as_slice()),
        Err(_) => bytes.is_none(),
    };
    if same(&wasm_path, Some(&fetched.wasm)) && same(&manifest_path, fetched.manifest.as_deref()) {
        return Ok(Installed::Unchanged);
    }
    let fail = |path: &Path, what: &str, e: std::io::Error| {
        OciError::Install(format!("{}: cannot {what}: {e}", path.display()))
    };
    std::fs::create_dir_all(dir).map_err(|e| fail(dir, "create", e))?;
    // Both files are written and flushed before either is renamed into place, then the two
    // renames follow each other: the watcher never sees the new grants beside the old
    // component for longer than a rename, and a failed write leaves the old pair as it was.
    let staged_wasm = stage(&wasm_path, &fetched.wasm).map_err(|e| fail(&wasm_path, "write", e))?;
    let staged_manifest = match &fetched.manifest {
        Some(bytes) => match stage(&manifest_path, bytes) {
            Ok(staged) => Some(staged),
            Err(e) => {
                let _ = std::fs::remove_file(&staged_wasm);
                return Err(fail(&manifest_path, "write", e));
            }
        },
        None => None,
    };
    let placed = match &staged_manifest {
        Some(staged) => std::fs::rename(staged, &manifest_path).map_err(|e| fail(&manifest_path, "write", e)),
        None => match std::fs::remove_file(&manifest_path) {
            Err(e) if e.kind() != std::io::ErrorKind::NotFound => Err(fail(&manifest_path, "remove", e)),
            _ => Ok(()),
        },
    };
    let placed =
        placed.and_then(|()| std::fs::rename(&staged_wasm, &wasm_path).map_err(|e| fail(&wasm_path, "write", e)));
    if placed.is_err() {
        let _ = std::fs::remove_file(&staged_wasm);
        if let Some(staged) = &staged_manifest {
            let _ = std::fs::remove_file(staged);
        }
    }
    placed.map(|()| Installed::Written)
}

/// Write `bytes` to a hidden temporary file beside `path` (the watcher ignores dot files) and
/// flush it to disk; its path, to rename over `path`.
fn stage(path: &Path, bytes: &[u8]) -> std::io::Result<std::path::PathBuf> {
    use std::io::Write;
    let dir = path.parent().unwrap_or(Path::new("."));
    let file_name = path.file_name().and_then(|n| n.to_str()).unwrap_or("plugin");
    let temporary = dir.join(format!(".{file_name}.{}.part", std::process::id()));
    let written = (|| {
        let mut file = std::fs::File::create(&temporary)?;
        file.write_all(bytes)?;
        file.sync_all()
    })();
    match written {
        Ok(()) => Ok(temporary),
        Err(error) => {
            let _ = std::fs::remove_file(&temporary);
            Err(error)
        }
    }
}

/// The most of a registry's words an error quotes (a registry's error body is whatever it
/// sends, and errors are logged on every poll and shown in `/health`).
const MAX_QUOTED: usize = 512;

fn clipped(text: String) -> String {
    crate::text::clip(text, MAX_QUOTED)
}

/// Pull `source` into `dir` as `name`: [`fetch`] then [`install`].
pub async fn pull(
    source: &OciReference,
    name: &str,
    dir: &Path,
    trusted: &[TrustedKey],
    options: &RegistryOptions,
) -> Result<(Fetched, Installed), OciError> {
    check_plugin_name(name)?;
    // Each read has its own timeout; a registry that trickles bytes must not hold a pull (or a
    // source's polling) for ever.
    let fetched = match tokio::time::timeout(PULL_DEADLINE, fetch(source, trusted, options)).await {
        Ok(fetched) => fetched?,
        Err(_) => {
            let message = format!("did not finish within {} s", PULL_DEADLINE.as_secs());
            return Err(OciError::Registry { reference: source.to_string(), message });
        }
    };
    let installed = install(dir, name, &fetched)?;
    Ok((fetched, installed))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn references_name_a_registry_and_a_tag_or_digest() {
        let tagged = OciReference::parse("oci://127.0.0.1:5000/plugins/echo:v1").expect("valid");
        assert_eq!((tagged.registry(), tagged.repository()), ("127.0.0.1:5000", "plugins/echo"));
        assert_eq!((tagged.reference.tag(), tagged.pinned_digest()), (Some("v1"), None));
        assert_eq!(tagged.default_name(), "echo");
        assert!(tagged.is_loopback());
        let digest = format!("sha256:{}", "a".repeat(64));
        let pinned = OciReference::parse(&format!("oci://registry.example.com/echo@{digest}")).expect("valid");
        assert_eq!(pinned.pinned_digest(), Some(digest.as_str()));
        assert!(!pinned.is_loopback());
        assert!(OciReference::parse("oci://localhost:5000/x").expect("valid").is_loopback());
        for bad in [
            "127.0.0.1:5000/echo:v1",
            "oci://echo",
            "oci:///echo",
            "oci://library/echo",
            "oci://r.example.com/Echo",
            "oci://r.example.com/echo@sha256:abc",
        ] {
            assert!(OciReference::parse(bad).is_err(), "{bad} was accepted");
        }
    }

    #[test]
    fn plugin_names_are_plain_file_stems() {
        for good in ["echo", "text-tools", "a_b2"] {
            check_plugin_name(good).expect(good);
        }
        for bad in ["", "../x", "a.b", "-x", "a/b", ".hidden"] {
            assert!(check_plugin_name(bad).is_err(), "{bad:?} was accepted");
        }
    }

    #[test]
    fn a_component_lists_its_interfaces_and_a_module_is_refused() {
        let plugins = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../plugins/text-tools.wasm");
        if let Ok(bytes) = std::fs::read(&plugins) {
            let (imports, exports) = component_interfaces(&bytes).expect("a component");
            assert!(exports.iter().any(|e| e.starts_with("fedmcp:plugin/tools@")), "{exports:?}");
            assert!(imports.iter().any(|i| i.starts_with("wasi:cli/")), "{imports:?}");
        }
        let core_module = b"\0asm\x01\0\0\0";
        assert!(component_interfaces(core_module).unwrap_err().contains("not a component"));
        assert!(component_interfaces(b"nonsense").is_err());
    }

    #[test]
    fn installing_writes_whole_files_and_removes_a_stale_manifest() {
        let dir = tempfile::tempdir().expect("temp dir");
        let fetched = |wasm: &[u8], manifest: Option<&[u8]>| Fetched {
            digest: String::new(),
            wasm: wasm.to_vec(),
            manifest: manifest.map(<[u8]>::to_vec),
            signed_by: None,
        };
        let first = fetched(b"one", Some(b"[capabilities]\n"));
        assert_eq!(install(dir.path(), "p", &first).expect("written"), Installed::Written);
        assert_eq!(install(dir.path(), "p", &first).expect("same"), Installed::Unchanged);
        assert_eq!(std::fs::read(dir.path().join("p.toml")).expect("manifest"), b"[capabilities]\n");
        assert_eq!(install(dir.path(), "p", &fetched(b"two", None)).expect("written"), Installed::Written);
        assert!(!dir.path().join("p.toml").exists(), "the old manifest was removed");
        assert_eq!(std::fs::read(dir.path().join("p.wasm")).expect("wasm"), b"two");
        let names: Vec<_> =
            std::fs::read_dir(dir.path()).expect("list").map(|e| e.expect("entry").file_name()).collect();
        assert_eq!(names, ["p.wasm"], "no temporary files are left");
        assert!(install(dir.path(), "../p", &first).is_err());
    }

    #[test]
    fn a_manifest_is_toml_with_manifest_keys() {
        check_manifest_text("namespace = \"x\"\n[capabilities]\nfiles = [{ host = \"./nowhere\", guest = \"/d\" }]\n")
            .expect("grants are the loading host's to check");
        assert!(check_manifest_text("[capabilities\n").unwrap_err().contains("not TOML"));
        assert!(check_manifest_text("colour = 1").unwrap_err().contains("unknown key \"colour\""));
    }

    #[test]
    fn the_creation_time_is_rfc3339() {
        let now = rfc3339_now();
        assert_eq!(now.len(), 20, "{now}");
        assert!(now.starts_with("20") && now.ends_with('Z'), "{now}");
    }
}
