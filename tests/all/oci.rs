//! Plugins from an OCI registry: a real one (Debian's `docker-registry`, the CNCF
//! distribution registry) started on a free loopback port with its storage in a temporary
//! folder, `fedmcp plugin push` and `pull`, a running host serving what was pulled and
//! following a `[[plugins.sources]]` entry, the refusals (wrong signature, unsigned, tampered
//! blob, a manifest over 1 MiB, a valid signature past the 16 layers looked at) and a second
//! client, `skopeo`, reading and copying what fedmcp pushed.
//!
//! `cargo xtask test` installs `docker-registry` and `skopeo` from Debian when missing.

use std::ffi::OsStr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use serde_json::json;

use crate::support::{Server, StatelessClient, eventually, example_plugins, free_port};

/// A registry on 127.0.0.1, killed when dropped.
struct Registry {
    child: Child,
    port: u16,
    storage: PathBuf,
    _dir: tempfile::TempDir,
}

impl Registry {
    fn start() -> Self {
        let dir = tempfile::tempdir().expect("temp dir");
        let storage = dir.path().join("storage");
        let port = free_port();
        let config = dir.path().join("config.yml");
        // HTTP on loopback, no auth, filesystem storage; no blob descriptor cache, so a blob
        // overwritten on disk is what the registry serves next.
        std::fs::write(
            &config,
            format!(
                "version: 0.1\nlog:\n  level: warn\nstorage:\n  filesystem:\n    rootdirectory: {}\n  delete:\n    \
                 enabled: true\nhttp:\n  addr: 127.0.0.1:{port}\n",
                storage.display()
            ),
        )
        .expect("write the registry config");
        let log = std::fs::File::create(dir.path().join("registry.log")).expect("log file");
        let child = Command::new("docker-registry")
            .arg("serve")
            .arg(&config)
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .expect("docker-registry starts (Debian package docker-registry; `cargo xtask test` installs it)");
        let registry = Self { child, port, storage, _dir: dir };
        let deadline = Instant::now() + Duration::from_secs(20);
        while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(Instant::now() < deadline, "the registry did not listen on {port} within 20 s");
            std::thread::sleep(Duration::from_millis(50));
        }
        registry
    }

    fn host(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }

    fn oci(&self, repository_and_tag: &str) -> String {
        format!("oci://{}/{repository_and_tag}", self.host())
    }

    fn manifest_url(&self, repository: &str, reference: &str) -> String {
        format!("http://{}/v2/{repository}/manifests/{reference}", self.host())
    }

    /// The OCI manifest at `repository:reference`, read over the registry's HTTP API.
    async fn manifest(&self, repository: &str, reference: &str) -> serde_json::Value {
        let response = http_client()
            .get(self.manifest_url(repository, reference))
            .header("accept", OCI_MANIFEST)
            .send()
            .await
            .expect("the registry answers");
        assert!(response.status().is_success(), "GET {repository}:{reference}: {}", response.status());
        response.json().await.expect("a JSON manifest")
    }

    /// Store `body` as the OCI manifest at `repository:tag`, as a client of the registry's
    /// HTTP API may (the registry checks the blobs it names are there, not what it says).
    async fn put_manifest(&self, repository: &str, tag: &str, body: Vec<u8>) {
        let response = http_client()
            .put(self.manifest_url(repository, tag))
            .header("content-type", OCI_MANIFEST)
            .body(body)
            .send()
            .await
            .expect("the registry answers");
        let status = response.status();
        let text = response.text().await.unwrap_or_default();
        assert_eq!(status, reqwest::StatusCode::CREATED, "PUT {repository}:{tag}: {text}");
    }

    /// Where the registry keeps the blob with `digest`.
    fn blob_file(&self, digest: &str) -> PathBuf {
        let hex = digest.strip_prefix("sha256:").expect("a sha256 digest");
        self.storage.join("docker/registry/v2/blobs/sha256").join(&hex[..2]).join(hex).join("data")
    }
}

impl Drop for Registry {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The media type of an OCI image manifest.
const OCI_MANIFEST: &str = "application/vnd.oci.image.manifest.v1+json";

/// The most of an OCI manifest, and of a plugin manifest layer, a pull reads (the host's
/// `MAX_OCI_MANIFEST_BYTES` and `MAX_MANIFEST_BYTES`).
const MANIFEST_LIMIT: usize = 1 << 20;

/// The signature layers a pull looks at (the host's `MAX_SIGNATURES`).
const SIGNATURES_LOOKED_AT: usize = 16;

/// An HTTP client whose every request ends within 30 s.
fn http_client() -> reqwest::Client {
    // reqwest is built with rustls and no provider of its own.
    fedmcp::tls::install_default_provider();
    reqwest::Client::builder().timeout(Duration::from_secs(30)).build().expect("an HTTP client")
}

/// Run the fedmcp binary with no registry credentials but those the test gives.
fn fedmcp<S: AsRef<OsStr>>(args: &[S], home: &Path) -> Output {
    Command::new(env!("CARGO_BIN_EXE_fedmcp"))
        .args(args)
        .env("HOME", home)
        .env("DOCKER_CONFIG", home.join(".docker"))
        .env_remove("REGISTRY_AUTH_FILE")
        .env("RUST_LOG", "warn")
        .output()
        .expect("fedmcp runs")
}

fn succeeds<S: AsRef<OsStr> + std::fmt::Debug>(args: &[S], home: &Path) -> String {
    let output = fedmcp(args, home);
    let stdout = String::from_utf8_lossy(&output.stdout).into_owned();
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(output.status.success(), "fedmcp {args:?} failed:\n{stdout}\n{stderr}");
    stdout
}

/// Run and expect failure; the error message.
fn fails<S: AsRef<OsStr> + std::fmt::Debug>(args: &[S], home: &Path) -> String {
    let output = fedmcp(args, home);
    let stderr = String::from_utf8_lossy(&output.stderr).into_owned();
    assert!(
        !output.status.success(),
        "fedmcp {args:?} should have failed:\n{}",
        String::from_utf8_lossy(&output.stdout)
    );
    stderr
}

/// The digest `plugin push` printed.
fn pushed_digest(stdout: &str) -> String {
    stdout
        .lines()
        .find_map(|line| {
            line.split_once('@').filter(|_| line.starts_with("pull by digest:")).map(|(_, d)| d.to_owned())
        })
        .unwrap_or_else(|| panic!("no digest in {stdout:?}"))
}

/// A key pair made by `fedmcp keys generate`: (private, public).
fn keys(home: &Path, name: &str) -> (String, String) {
    let dir = home.join("keys");
    succeeds(&["keys", "generate", "--name", name, "--dir", dir.to_str().expect("UTF-8")], home);
    let path = |file: String| dir.join(file).to_str().expect("UTF-8").to_owned();
    (path(format!("{name}.pem")), path(format!("{name}.pub.pem")))
}

fn example(name: &str) -> String {
    example_plugins().join(format!("{name}.wasm")).to_str().expect("UTF-8").to_owned()
}

fn path(path: &Path) -> &str {
    path.to_str().expect("UTF-8")
}

fn skopeo(args: &[&str]) -> String {
    let output = Command::new("skopeo").args(args).output().expect("skopeo runs (Debian package skopeo)");
    let stdout = String::from_utf8_lossy(&output.stdout).into_owned();
    assert!(output.status.success(), "skopeo {args:?} failed:\n{stdout}\n{}", String::from_utf8_lossy(&output.stderr));
    stdout
}

/// Push, pull by tag into a running host's folder (which then serves it), pull by digest, and
/// let skopeo read the artifact and copy it, signature included, to a repository fedmcp pulls
/// and verifies from.
#[tokio::test(flavor = "multi_thread")]
async fn a_pushed_plugin_pulls_by_tag_and_digest_and_a_running_host_serves_it() {
    let registry = Registry::start();
    let home = tempfile::tempdir().expect("temp dir");
    let (private, public) = keys(home.path(), "publisher");
    let manifest = home.path().join("text-tools.toml");
    std::fs::write(&manifest, "description = \"from a registry\"\n[capabilities]\ntimeout_ms = 5000\n").expect("write");
    let target = registry.oci("fedmcp/text-tools:v1");
    let wasm = example("text-tools");
    let stdout =
        succeeds(&["plugin", "push", &wasm, &target, "--manifest", path(&manifest), "--sign", &private], home.path());
    let digest = pushed_digest(&stdout);
    assert!(stdout.contains(&format!("signed: oci://{}/fedmcp/text-tools:sha256-", registry.host())), "{stdout}");

    // A second key signs the same digest; either key now verifies it.
    let (second_private, second_public) = keys(home.path(), "second");
    let signed = succeeds(&["plugin", "sign", &target, "--key", &second_private], home.path());
    assert!(signed.contains(&digest), "{signed}");
    for trusted in [&public, &second_public] {
        let dir = home.path().join("check");
        let pulled =
            succeeds(&["plugin", "pull", &target, "--plugins", path(&dir), "--verify-key", trusted], home.path());
        assert!(pulled.contains(&format!("signature verified with {trusted}")), "{pulled}");
    }

    let plugins = home.path().join("plugins");
    std::fs::create_dir_all(&plugins).expect("plugins folder");
    let server = Server::start(&plugins);
    let client = StatelessClient::new(&server);
    let pulled =
        succeeds(&["plugin", "pull", &target, "--plugins", path(&plugins), "--verify-key", &public], home.path());
    assert!(pulled.contains(&digest) && pulled.contains("signature verified"), "{pulled}");
    assert_eq!(
        std::fs::read(plugins.join("text-tools.wasm")).expect("pulled"),
        std::fs::read(&wasm).expect("original")
    );
    assert_eq!(
        std::fs::read(plugins.join("text-tools.toml")).expect("pulled"),
        std::fs::read(&manifest).expect("original")
    );
    eventually("the running host serves the pulled plugin", Duration::from_secs(60), async || {
        client.call("text-tools__slugify", json!({ "text": "From A Registry" })).await.is_ok()
    })
    .await;
    let result = client.call("text-tools__slugify", json!({ "text": "From A Registry" })).await.expect("called");
    assert_eq!(result["content"][0]["text"], "from-a-registry", "{result}");
    // Pulling again changes nothing (the watcher has nothing to reload).
    let again =
        succeeds(&["plugin", "pull", &target, "--plugins", path(&plugins), "--verify-key", &public], home.path());
    assert!(again.contains("is already"), "{again}");

    // By digest, under another name.
    let by_digest = registry.oci(&format!("fedmcp/text-tools@{digest}"));
    let elsewhere = home.path().join("elsewhere");
    let pulled = succeeds(
        &["plugin", "pull", &by_digest, "--plugins", path(&elsewhere), "--name", "tt", "--verify-key", &public],
        home.path(),
    );
    assert!(pulled.contains(&digest), "{pulled}");
    assert_eq!(std::fs::read(elsewhere.join("tt.wasm")).expect("pulled"), std::fs::read(&wasm).expect("original"));

    // A second client reads our layout...
    let docker = |repository: &str| format!("docker://{}/{repository}", registry.host());
    let raw = skopeo(&["inspect", "--tls-verify=false", "--raw", &docker("fedmcp/text-tools:v1")]);
    let raw: serde_json::Value = serde_json::from_str(&raw).expect("a JSON manifest");
    assert_eq!(raw["config"]["mediaType"], "application/vnd.wasm.config.v0+json", "{raw}");
    assert_eq!(raw["layers"][0]["mediaType"], "application/wasm", "{raw}");
    assert_eq!(raw["layers"][1]["mediaType"], "application/vnd.fedmcp.plugin.manifest.v1+toml", "{raw}");
    let config = skopeo(&["inspect", "--tls-verify=false", "--raw", "--config", &docker("fedmcp/text-tools:v1")]);
    let config: serde_json::Value = serde_json::from_str(&config).expect("a JSON config");
    assert_eq!((config["architecture"].as_str(), config["os"].as_str()), (Some("wasm"), Some("wasip2")), "{config}");
    assert!(config["component"]["exports"].to_string().contains("fedmcp:plugin/tools@"), "{config}");
    // ...and copies it, and its signature, byte for byte: fedmcp pulls the copy and verifies it.
    let signature_tag = format!("sha256-{}.sig", digest.trim_start_matches("sha256:"));
    for tag in ["v1", signature_tag.as_str()] {
        skopeo(&[
            "copy",
            "--src-tls-verify=false",
            "--dest-tls-verify=false",
            "--preserve-digests",
            &docker(&format!("fedmcp/text-tools:{tag}")),
            &docker(&format!("mirror/text-tools:{tag}")),
        ]);
    }
    let mirrored = home.path().join("mirrored");
    let pulled = succeeds(
        &[
            "plugin",
            "pull",
            &registry.oci("mirror/text-tools:v1"),
            "--plugins",
            path(&mirrored),
            "--verify-key",
            &public,
        ],
        home.path(),
    );
    assert!(pulled.contains(&digest) && pulled.contains("signature verified"), "{pulled}");
}

/// A wrong signature, an unsigned artifact (when a key is required) and a tampered blob are
/// refused with a clear error, and the plugin already in the folder is left as it was.
#[tokio::test(flavor = "multi_thread")]
async fn a_wrong_signature_an_unsigned_artifact_and_a_tampered_blob_are_refused() {
    let registry = Registry::start();
    let home = tempfile::tempdir().expect("temp dir");
    let (private, public) = keys(home.path(), "publisher");
    let (stranger, _) = keys(home.path(), "stranger");
    let plugins = home.path().join("plugins");
    let pull = |tag: &str| -> Vec<String> {
        let source = registry.oci(&format!("fedmcp/echo:{tag}"));
        ["plugin", "pull", &source, "--plugins", path(&plugins), "--verify-key", &public].map(str::to_owned).into()
    };

    succeeds(
        &["plugin", "push", &example("text-tools"), &registry.oci("fedmcp/echo:good"), "--sign", &private],
        home.path(),
    );
    succeeds(&pull("good"), home.path());
    let installed = std::fs::read(plugins.join("echo.wasm")).expect("installed");
    let unchanged = || {
        assert_eq!(
            std::fs::read(plugins.join("echo.wasm")).expect("still there"),
            installed,
            "the old version is kept"
        );
        let names: Vec<_> = std::fs::read_dir(&plugins).expect("list").map(|e| e.expect("entry").file_name()).collect();
        assert_eq!(names, ["echo.wasm"], "nothing else was written");
    };

    let field_notes = example("field-notes");
    succeeds(
        &["plugin", "push", &field_notes, &registry.oci("fedmcp/echo:wrong-key"), "--sign", &stranger],
        home.path(),
    );
    let error = fails(&pull("wrong-key"), home.path());
    assert!(error.contains("refused") && error.contains("none of the trusted keys"), "{error}");
    unchanged();

    succeeds(&["plugin", "push", &field_notes, &registry.oci("fedmcp/echo:unsigned")], home.path());
    let error = fails(&pull("unsigned"), home.path());
    assert!(error.contains("refused") && error.contains("unsigned"), "{error}");
    unchanged();

    // Without a key, an unsigned artifact pulls (and says it was not checked).
    let output = fedmcp(
        &["plugin", "pull", &registry.oci("fedmcp/echo:unsigned"), "--plugins", path(&home.path().join("open"))],
        home.path(),
    );
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(output.status.success() && stderr.contains("not checked"), "{stderr}");

    // Signed properly, then the component's blob (the one the unsigned tag shares) is
    // overwritten in the registry's storage.
    succeeds(&["plugin", "push", &field_notes, &registry.oci("fedmcp/echo:tampered"), "--sign", &private], home.path());
    let wasm_digest =
        format!("sha256:{}", std::fs::read(&field_notes).map(|bytes| sha256_hex(&bytes)).expect("read field-notes"));
    let blob = registry.blob_file(&wasm_digest);
    let mut bytes = std::fs::read(&blob).expect("the blob is in the storage");
    let last = bytes.len() - 1;
    bytes[last] ^= 0xff;
    std::fs::write(&blob, &bytes).expect("tamper");
    let error = fails(&pull("tampered"), home.path());
    assert!(error.contains("refused") && error.contains("does not match its digest"), "{error}");
    unchanged();
}

fn sha256_hex(bytes: &[u8]) -> String {
    use sha2::Digest;
    sha2::Sha256::digest(bytes).iter().map(|b| format!("{b:02x}")).collect()
}

/// A host following a tag (`poll_secs`) loads what it names, moves to a new push, and keeps
/// serving it when the next push is unsigned or signed by an untrusted key; `/health` shows
/// the source's digest and error.
#[tokio::test(flavor = "multi_thread")]
async fn a_host_following_a_tag_picks_up_a_new_push_and_refuses_badly_signed_ones() {
    let registry = Registry::start();
    let home = tempfile::tempdir().expect("temp dir");
    let (private, public) = keys(home.path(), "publisher");
    let tag = registry.oci("fedmcp/live:stable");
    let first =
        pushed_digest(&succeeds(&["plugin", "push", &example("text-tools"), &tag, "--sign", &private], home.path()));
    let plugins = home.path().join("plugins");
    std::fs::create_dir_all(&plugins).expect("plugins folder");
    let config = home.path().join("host.toml");
    std::fs::write(
        &config,
        format!("[[plugins.sources]]\noci = \"{tag}\"\nverify_key = \"{public}\"\npoll_secs = 1\n"),
    )
    .expect("write the config");
    let server = Server::start_configured(&plugins, &config, "127.0.0.1:0");
    let live = async |server: &Server| -> (serde_json::Value, serde_json::Value) {
        let health = server.health().await;
        let plugin = health["plugins"]["loaded"]
            .as_array()
            .and_then(|loaded| loaded.iter().find(|p| p["name"] == "live").cloned())
            .unwrap_or_default();
        (plugin, health["sources"][0].clone())
    };
    eventually("the source's first version is served", Duration::from_secs(60), async || {
        let (plugin, source) = live(&server).await;
        plugin["tools"].as_u64().is_some_and(|n| n > 0) && source["digest"] == first.as_str()
    })
    .await;

    // A new version under the same tag: a plugin with prompts and no tools.
    let second =
        pushed_digest(&succeeds(&["plugin", "push", &example("field-notes"), &tag, "--sign", &private], home.path()));
    eventually("the new push is served", Duration::from_secs(60), async || {
        let (plugin, source) = live(&server).await;
        plugin["prompts"].as_u64().is_some_and(|n| n > 0) && plugin["tools"] == 0 && source["digest"] == second.as_str()
    })
    .await;

    // An unsigned push to the tag is refused; the signed version keeps serving.
    succeeds(&["plugin", "push", &example("text-tools"), &tag], home.path());
    eventually("the unsigned push is refused", Duration::from_secs(30), async || {
        let (_, source) = live(&server).await;
        source["error"].as_str().is_some_and(|e| e.contains("unsigned"))
    })
    .await;
    // So is one signed by a key the host does not trust.
    let (stranger, _) = keys(home.path(), "stranger");
    succeeds(&["plugin", "push", &example("text-tools"), &tag, "--sign", &stranger], home.path());
    eventually("the stranger's push is refused", Duration::from_secs(30), async || {
        let (_, source) = live(&server).await;
        source["error"].as_str().is_some_and(|e| e.contains("none of the trusted keys"))
    })
    .await;
    let (plugin, source) = live(&server).await;
    assert_eq!(source["digest"], second.as_str(), "{source}");
    assert!(plugin["prompts"].as_u64().is_some_and(|n| n > 0), "{plugin}");
    assert!(server.log_lines().iter().any(|line| line.contains("plugin source not pulled")));
}

/// What a folder holds (nothing if it does not exist).
fn folder_names(dir: &Path) -> Vec<String> {
    let Ok(entries) = std::fs::read_dir(dir) else { return Vec::new() };
    let mut names: Vec<String> =
        entries.map(|e| e.expect("entry").file_name().to_string_lossy().into_owned()).collect();
    names.sort();
    names
}

/// `manifest` with an annotation padded so that its JSON text is exactly `size` bytes.
fn padded_to(manifest: &serde_json::Value, size: usize) -> Vec<u8> {
    let mut padded = manifest.clone();
    padded["annotations"] = json!({ "padding": "" });
    let unpadded = serde_json::to_vec(&padded).expect("JSON").len();
    padded["annotations"]["padding"] = json!("x".repeat(size - unpadded));
    let body = serde_json::to_vec(&padded).expect("JSON");
    assert_eq!(body.len(), size);
    body
}

/// A pull reads an OCI manifest of 1 MiB at most, and a plugin manifest layer of 1 MiB at
/// most: one byte over either is refused with a clear error naming the limit, and nothing is
/// installed; exactly the limit pulls. The oversized OCI manifest is a valid one with a large
/// annotation, stored through the registry's own API (the registry takes up to 4 MiB).
#[tokio::test(flavor = "multi_thread")]
async fn a_manifest_over_one_mib_is_refused_and_nothing_is_installed() {
    let registry = Registry::start();
    let home = tempfile::tempdir().expect("temp dir");
    let plugins = home.path().join("plugins");
    let pull = |tag: &str| -> Vec<String> {
        let source = registry.oci(&format!("fedmcp/big:{tag}"));
        ["plugin", "pull", &source, "--plugins", path(&plugins), "--name", tag].map(str::to_owned).into()
    };
    succeeds(&["plugin", "push", &example("text-tools"), &registry.oci("fedmcp/big:base")], home.path());
    let base = registry.manifest("fedmcp/big", "base").await;
    registry.put_manifest("fedmcp/big", "over", padded_to(&base, MANIFEST_LIMIT + 1)).await;
    registry.put_manifest("fedmcp/big", "at", padded_to(&base, MANIFEST_LIMIT)).await;

    let error = fails(&pull("over"), home.path());
    assert!(error.contains("refused") && error.contains("manifest is larger than 1048576 bytes"), "{error}");
    assert_eq!(folder_names(&plugins), Vec::<String>::new(), "nothing was installed");
    succeeds(&pull("at"), home.path());
    assert_eq!(folder_names(&plugins), ["at.wasm"]);

    // The plugin manifest (plugin.toml) is a layer of its own, with the same limit.
    let toml_of = |size: usize| {
        let text = format!("description = \"{}\"\n", "x".repeat(size - "description = \"\"\n".len()));
        assert_eq!(text.len(), size);
        text
    };
    for (tag, size) in [("toml-over", MANIFEST_LIMIT + 1), ("toml-at", MANIFEST_LIMIT)] {
        let manifest = home.path().join(format!("{tag}.toml"));
        std::fs::write(&manifest, toml_of(size)).expect("write the plugin manifest");
        let target = registry.oci(&format!("fedmcp/big:{tag}"));
        succeeds(&["plugin", "push", &example("text-tools"), &target, "--manifest", path(&manifest)], home.path());
    }
    let error = fails(&pull("toml-over"), home.path());
    assert!(error.contains("refused") && error.contains("over the limit of 1048576"), "{error}");
    assert_eq!(folder_names(&plugins), ["at.wasm"], "nothing more was installed");
    succeeds(&pull("toml-at"), home.path());
    assert_eq!(folder_names(&plugins), ["at.wasm", "toml-at.toml", "toml-at.wasm"]);
}

/// A pull looks at the first 16 signature layers only (each is a blob to fetch): a signature
/// manifest whose valid signature comes after 16 others is refused as not verified; the same
/// signature 16th is found. The layers are stored through the
/// registry's own API; the 16 others carry a signature of no key over the real payload.
#[tokio::test(flavor = "multi_thread")]
async fn a_valid_signature_after_the_first_16_layers_is_not_looked_at() {
    let registry = Registry::start();
    let home = tempfile::tempdir().expect("temp dir");
    let (private, public) = keys(home.path(), "publisher");
    let plugins = home.path().join("plugins");
    let target = registry.oci("fedmcp/many:v1");
    let digest =
        pushed_digest(&succeeds(&["plugin", "push", &example("text-tools"), &target, "--sign", &private], home.path()));
    let signature_tag = format!("sha256-{}.sig", digest.trim_start_matches("sha256:"));
    let signed = registry.manifest("fedmcp/many", &signature_tag).await;
    let valid = signed["layers"][0].clone();
    assert!(valid["annotations"]["dev.cosignproject.cosign/signature"].is_string(), "{signed}");
    let mut forged = valid.clone();
    // 64 zero bytes, base64: an Ed25519 signature by no key.
    forged["annotations"]["dev.cosignproject.cosign/signature"] = json!(format!("{}==", "A".repeat(86)));
    let with_valid_at = |position: usize| {
        let mut layers = vec![forged.clone(); position - 1];
        layers.push(valid.clone());
        let mut manifest = signed.clone();
        manifest["layers"] = json!(layers);
        serde_json::to_vec(&manifest).expect("JSON")
    };
    let pull = || -> Vec<String> {
        ["plugin", "pull", &target, "--plugins", path(&plugins), "--verify-key", &public].map(str::to_owned).into()
    };

    registry.put_manifest("fedmcp/many", &signature_tag, with_valid_at(SIGNATURES_LOOKED_AT + 1)).await;
    let error = fails(&pull(), home.path());
    assert!(error.contains("refused") && error.contains("no valid signature by a trusted key"), "{error}");
    assert!(error.contains("signed by none of the trusted keys"), "{error}");
    assert_eq!(folder_names(&plugins), Vec::<String>::new(), "nothing was installed");

    registry.put_manifest("fedmcp/many", &signature_tag, with_valid_at(SIGNATURES_LOOKED_AT)).await;
    let pulled = succeeds(&pull(), home.path());
    assert!(pulled.contains("signature verified"), "{pulled}");
    assert_eq!(folder_names(&plugins), ["many.wasm"]);
}
