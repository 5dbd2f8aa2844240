//! The packaging for Kubernetes: every manifest under deploy/kubernetes validates offline
//! against a pinned Kubernetes version in strict mode (PyPI `kubernetes-validate`, installed
//! in tests/.venv by `cargo xtask test`), and the host.toml its ConfigMap ships is served by
//! fedmcp itself, laid out as the Deployment mounts it (the Secret's files beside it), and
//! answers the Deployment's probes as the kubelet sends them.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{SystemTime, UNIX_EPOCH};

use reqwest::StatusCode;
use serde_json::{Value, json};

use crate::support::{Server, StatelessClient, fixture, repo_root};

/// The Kubernetes version the manifests are checked against (kubernetes-validate bundles the
/// schemas of each release).
const KUBERNETES_VERSION: &str = "1.33.0";

fn manifests() -> Vec<PathBuf> {
    let dir = repo_root().join("deploy/kubernetes");
    let entries = std::fs::read_dir(&dir).unwrap_or_else(|e| panic!("{}: {e}", dir.display()));
    let mut files: Vec<PathBuf> = entries
        .filter_map(Result::ok)
        .map(|entry| entry.path())
        .filter(|path| path.extension().is_some_and(|ext| ext == "yaml" || ext == "yml"))
        .collect();
    files.sort();
    assert!(!files.is_empty(), "no manifests in {}", dir.display());
    files
}

fn venv_bin(name: &str) -> PathBuf {
    let bin = repo_root().join("tests/.venv/bin").join(name);
    assert!(bin.is_file(), "{} is missing: run `cargo xtask test` (it installs tests/requirements.txt)", bin.display());
    bin
}

/// Every document of every manifest, as JSON (PyYAML comes with kubernetes-validate).
fn documents() -> Vec<Value> {
    let script = "import json, sys, yaml\n\
                  print(json.dumps([d for f in sys.argv[1:] for d in yaml.safe_load_all(open(f)) if d]))";
    let output =
        Command::new(venv_bin("python")).arg("-c").arg(script).args(manifests()).output().expect("python runs");
    assert!(output.status.success(), "the manifests are not YAML: {}", String::from_utf8_lossy(&output.stderr));
    serde_json::from_slice(&output.stdout).expect("JSON from the manifests")
}

fn of_kind<'a>(documents: &'a [Value], kind: &str) -> &'a Value {
    documents.iter().find(|d| d["kind"] == kind).unwrap_or_else(|| panic!("deploy/kubernetes has no {kind}"))
}

#[test]
fn every_manifest_validates_offline_against_a_pinned_kubernetes() {
    let files = manifests();
    let output = Command::new(venv_bin("kubernetes-validate"))
        .args(["--strict", "--kubernetes-version", KUBERNETES_VERSION])
        .args(&files)
        .output()
        .expect("kubernetes-validate runs");
    let report = format!("{}{}", String::from_utf8_lossy(&output.stdout), String::from_utf8_lossy(&output.stderr));
    println!("{report}");
    assert!(output.status.success(), "kubernetes-validate {KUBERNETES_VERSION} --strict failed:\n{report}");
    for kind in ["deployment", "service", "configmap", "secret", "horizontalpodautoscaler"] {
        assert!(report.contains(&format!("passed for resource {kind}/")), "no {kind} was validated:\n{report}");
    }
    let documents = documents();
    let validated = report.matches("passed for resource").count();
    assert_eq!(validated, documents.len(), "every document is validated, none skipped:\n{report}");
}

/// Where the Deployment mounts the volume that holds `source` (e.g. `("configMap", "name",
/// "fedmcp-config")`).
fn mount_of(deployment: &Value, source: &str, key: &str, name: &str) -> String {
    let pod = &deployment["spec"]["template"]["spec"];
    let volume = pod["volumes"]
        .as_array()
        .and_then(|volumes| volumes.iter().find(|v| v[source][key] == name))
        .unwrap_or_else(|| panic!("the Deployment mounts no {source} {name}"));
    let mount = pod["containers"][0]["volumeMounts"]
        .as_array()
        .and_then(|mounts| mounts.iter().find(|m| m["name"] == volume["name"]))
        .unwrap_or_else(|| panic!("the container does not mount volume {}", volume["name"]));
    mount["mountPath"].as_str().expect("a mount path").to_owned()
}

fn fedmcp(args: &[&str]) {
    let output = Command::new(env!("CARGO_BIN_EXE_fedmcp")).args(args).output().expect("fedmcp runs");
    assert!(output.status.success(), "fedmcp {args:?}: {}", String::from_utf8_lossy(&output.stderr));
}

/// `/etc/fedmcp/...` of the pod, under `root`.
fn under(root: &Path, pod_path: &str) -> PathBuf {
    root.join(pod_path.trim_start_matches('/'))
}

#[tokio::test]
async fn the_shipped_config_serves_and_answers_the_probes_as_the_kubelet_sends_them() {
    let documents = documents();
    let config_map = of_kind(&documents, "ConfigMap");
    let secret = of_kind(&documents, "Secret");
    let deployment = of_kind(&documents, "Deployment");
    let container = &deployment["spec"]["template"]["spec"]["containers"][0];

    // The pod's filesystem, under a temporary root: host.toml where the ConfigMap is
    // mounted, a real key for each of the Secret's files where the Secret is mounted.
    let pod = tempfile::tempdir().expect("a temporary folder");
    let config_mount = mount_of(deployment, "configMap", "name", config_map["metadata"]["name"].as_str().unwrap_or(""));
    let secret_mount = mount_of(deployment, "secret", "secretName", secret["metadata"]["name"].as_str().unwrap_or(""));
    let config_path = format!("{config_mount}/host.toml");
    let args: Vec<&str> = container["args"].as_array().expect("args").iter().filter_map(Value::as_str).collect();
    assert_eq!(args, ["serve", "--config", config_path.as_str()], "the container serves the ConfigMap's file");
    let host_toml = config_map["data"]["host.toml"].as_str().expect("the ConfigMap holds host.toml");
    let parsed: toml::Table = toml::from_str(host_toml).expect("host.toml is TOML");
    let issuer = &parsed["auth"]["issuers"][0];
    let (issuer_name, kid) = (issuer["issuer"].as_str().expect("iss"), issuer["kid"].as_str().expect("kid"));
    let audience = parsed["auth"]["audience"].as_str().expect("an audience");

    let secrets = under(pod.path(), &secret_mount);
    std::fs::create_dir_all(&secrets).expect("the Secret's folder");
    let secret_files = secret["stringData"].as_object().expect("the Secret's stringData");
    let mut idp_key = None;
    for name in secret_files.keys() {
        if name == "request-state-key" {
            let key: String = (0..32).map(|i| format!("{:02x}", (i * 37 + 11) % 256)).collect();
            std::fs::write(secrets.join(name), format!("{key}\n")).expect("the state key");
        } else if let Some(stem) = name.strip_suffix(".pub.pem") {
            let keys = pod.path().join("issuer-keys");
            fedmcp(&["keys", "generate", "--name", stem, "--dir", keys.to_str().expect("UTF-8")]);
            std::fs::copy(keys.join(name), secrets.join(name)).expect("the issuer's public key");
            idp_key = Some(keys.join(format!("{stem}.pem")));
        } else {
            panic!("the test does not know how to make the Secret's {name}: teach it");
        }
    }
    let idp_key = idp_key.expect("the Secret carries the issuer's public key");

    // The plugins and the compile cache are volumes: the same paths under the root, checked
    // against the Deployment's mounts.
    let mounts: Vec<(String, String)> = container["volumeMounts"]
        .as_array()
        .expect("mounts")
        .iter()
        .map(|m| (m["name"].as_str().unwrap_or("").to_owned(), m["mountPath"].as_str().unwrap_or("").to_owned()))
        .collect();
    let mount = |name: &str| mounts.iter().find(|(n, _)| n == name).map(|(_, path)| path.clone());
    let plugins_dir = parsed["plugins_dir"].as_str().expect("plugins_dir");
    let cache_dir = parsed["plugins"]["cache_dir"].as_str().expect("plugins.cache_dir");
    assert_eq!(mount("plugins").as_deref(), Some(plugins_dir), "plugins_dir is the plugins volume");
    assert_eq!(mount("compile-cache").as_deref(), Some(cache_dir), "the compile cache is the emptyDir");
    let plugins = under(pod.path(), plugins_dir);
    std::fs::create_dir_all(&plugins).expect("plugins folder");
    std::fs::copy(fixture("version-one"), plugins.join("greeter.wasm")).expect("copy a plugin");
    let cache = under(pod.path(), cache_dir);
    let local_toml = host_toml
        .replace(&format!("{plugins_dir:?}"), &format!("{:?}", plugins.to_str().expect("UTF-8")))
        .replace(&format!("{cache_dir:?}"), &format!("{:?}", cache.to_str().expect("UTF-8")));
    let config = under(pod.path(), &config_path);
    std::fs::write(&config, local_toml).expect("host.toml");

    // As the pod would start it: on 0.0.0.0, which the host allows because [auth] is set.
    let loaded = fedmcp::config::HostConfig::load(&config).expect("the shipped host.toml loads");
    assert_eq!(loaded.listen.to_string(), "0.0.0.0:8931");
    fedmcp::app::check_exposure(&loaded).expect("the shipped config may listen on every interface");
    // Served on loopback here (the tests talk only to 127.0.0.1), otherwise as shipped.
    let server = Server::start_configured(&plugins, &config, "127.0.0.1:0");

    // The probes, with the headers the Deployment gives the kubelet.
    for (probe, expected) in [("readinessProbe", "/ready"), ("livenessProbe", "/health")] {
        let get = &container[probe]["httpGet"];
        assert_eq!(get["path"], expected, "{probe}");
        let mut request = reqwest::Client::new().get(format!("http://{}{expected}", server.address));
        for header in get["httpHeaders"].as_array().map(Vec::as_slice).unwrap_or_default() {
            request = request.header(header["name"].as_str().unwrap_or(""), header["value"].as_str().unwrap_or(""));
        }
        let response = request.send().await.expect("the probe is answered");
        assert_eq!(response.status(), StatusCode::OK, "{probe} {expected}");
        let body: Value = response.json().await.expect("JSON");
        assert_eq!(body["ready"], true, "{probe}: {body}");
    }
    // Without that header the kubelet would send the pod's address, which the guard refuses.
    let refused = reqwest::Client::new()
        .get(format!("http://{}/ready", server.address))
        .header("host", "10.244.1.7:8931")
        .send()
        .await
        .expect("answered");
    assert_eq!(refused.status(), StatusCode::FORBIDDEN, "a pod-IP Host header passes the guard");

    // /mcp wants a token of the configured issuer; with one, the plugin is served.
    let anonymous = StatelessClient::new(&server);
    let (status, _) = anonymous.request("tools/list", json!({})).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    let now = SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_secs()).unwrap_or_default();
    let claims =
        json!({ "iss": issuer_name, "aud": audience, "sub": "operator", "iat": now, "exp": now + 600, "scope": "*" });
    let mut header = jsonwebtoken::Header::new(jsonwebtoken::Algorithm::EdDSA);
    header.kid = Some(kid.to_owned());
    let signing = jsonwebtoken::EncodingKey::from_ed_pem(&std::fs::read(idp_key).expect("key")).expect("Ed25519 key");
    let token = jsonwebtoken::encode(&header, &claims, &signing).expect("a token");
    let client = StatelessClient::with_token(&server, &token);
    assert_eq!(
        client.call("greeter__version", json!({})).await.map(|r| r["content"][0]["text"].clone()),
        Ok(json!("one"))
    );
}
