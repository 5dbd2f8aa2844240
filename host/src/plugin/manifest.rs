//! `plugins/<name>.toml`: what a plugin is called in the catalog and what it is granted.
//! This module keeps the manifest's shape (`namespace`, `description`, `[capabilities]`, `[tasks]`);
//! each capability under `[capabilities]` is its own module in [`super::grants`].
//!
//! Deny by default: without a manifest (or with an empty one) a plugin gets no files, no
//! environment, no network, no client round-trips, and the host's default limits.

use std::collections::BTreeMap;
use std::path::Path;

use serde::Deserialize;

pub(crate) use super::grants::Ceilings;
use super::grants::{Grants, RawCapabilities};

/// Why `namespace` cannot prefix entry names (`None`: it can). Names are
/// `<namespace>__<name>`: a namespace holding `__` or ending in `_` would make one owner's
/// names start with another's prefix (`docs_` + `__x` starts with `docs__`), so a grant
/// such as `tools:docs__*` would cover more than namespace `docs`.
pub(crate) fn namespace_problem(namespace: &str) -> Option<&'static str> {
    if !namespace.chars().all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_') {
        Some(
            "may hold only ASCII letters, digits, '-' and '_' (tool names must stay within              ^[A-Za-z0-9_-]{1,64}$)",
        )
    } else if namespace.contains("__") {
        Some("must not contain \"__\", which separates a namespace from its entry names")
    } else if namespace.ends_with('_') {
        Some("must not end in '_' (it would run into the \"__\" separator)")
    } else {
        None
    }
}

/// The longest namespace, leaving room for entry names within the 64 characters clients allow.
pub(crate) const MAX_NAMESPACE_LEN: usize = 32;

/// A parsed, validated manifest.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Manifest {
    /// The prefix of this plugin's entries: `Some("")` means unprefixed, `None` means the
    /// plugin's file name.
    pub(crate) namespace: Option<String>,
    /// What `[capabilities]` grants.
    pub(crate) grants: Grants,
    /// The tools `[tasks]` declares may (or must) run as MCP tasks, by their name in the plugin.
    pub(crate) tasks: BTreeMap<String, TaskDeclaration>,
}

/// How a tool runs as an MCP task (SEP-2663, `io.modelcontextprotocol/tasks`), as the
/// manifest's `[tasks]` declares it. A tool not named there never runs as a task.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct TaskDeclaration {
    /// Only as a task: a client that did not declare the tasks extension is refused (-32021).
    pub(crate) required: bool,
    /// Its input-required rounds are answered inline (MRTR) while the request brings no
    /// answers; the request that brings them starts the task.
    pub(crate) input_first: bool,
}

/// `[tasks]` as written: lists of the plugin's own tool names.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawTasks {
    #[serde(default)]
    optional: Vec<String>,
    #[serde(default)]
    required: Vec<String>,
    #[serde(default)]
    input_first: Vec<String>,
}

impl RawTasks {
    fn parse(self) -> Result<BTreeMap<String, TaskDeclaration>, String> {
        let mut tasks = BTreeMap::new();
        for (list, required) in [(self.optional, false), (self.required, true)] {
            for name in list {
                if tasks.insert(name.clone(), TaskDeclaration { required, input_first: false }).is_some() {
                    return Err(format!("tasks: tool {name:?} is named twice (in optional and required)"));
                }
            }
        }
        for name in self.input_first {
            let Some(declaration) = tasks.get_mut(&name) else {
                return Err(format!(
                    "tasks.input_first: tool {name:?} is in neither tasks.optional nor tasks.required"
                ));
            };
            declaration.input_first = true;
        }
        Ok(tasks)
    }
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawManifest {
    namespace: Option<String>,
    description: Option<String>,
    #[serde(default)]
    capabilities: RawCapabilities,
    #[serde(default)]
    tasks: RawTasks,
}

/// A manifest that cannot be used, with the file and the reason.
#[derive(Debug, thiserror::Error)]
pub enum ManifestError {
    #[error("{path}: cannot read: {source}")]
    Read { path: String, source: std::io::Error },
    #[error("{path}: {message}")]
    Invalid { path: String, message: String },
}

impl Manifest {
    /// The manifest of a plugin with none: nothing granted, default limits.
    pub(crate) fn deny_all() -> Self {
        Self::default()
    }

    /// Read `path` if it exists; a missing file is [`Manifest::deny_all`]. Relative host
    /// folders are relative to the manifest's folder.
    pub(crate) fn load(path: &Path) -> Result<Self, ManifestError> {
        let shown = path.display().to_string();
        let text = match std::fs::read_to_string(path) {
            Ok(text) => text,
            Err(error) if error.kind() == std::io::ErrorKind::NotFound => return Ok(Self::deny_all()),
            Err(source) => return Err(ManifestError::Read { path: shown, source }),
        };
        let base = path.parent().unwrap_or(Path::new("."));
        Self::parse(&text, base).map_err(|message| ManifestError::Invalid { path: shown, message })
    }

    /// Parse and validate manifest text; the error names the field and the reason.
    pub(crate) fn parse(text: &str, base: &Path) -> Result<Self, String> {
        let raw: RawManifest = toml::from_str(text).map_err(|e| e.to_string().trim_end().to_owned())?;
        let _ = raw.description;
        if let Some(namespace) = &raw.namespace {
            if let Some(problem) = namespace_problem(namespace) {
                return Err(format!("namespace: {namespace:?} {problem}"));
            }
            if namespace.len() > MAX_NAMESPACE_LEN {
                return Err(format!("namespace: {namespace:?} is longer than {MAX_NAMESPACE_LEN} characters"));
            }
        }
        let grants = Grants::parse(raw.capabilities, base)?;
        let tasks = raw.tasks.parse()?;
        Ok(Self { namespace: raw.namespace, grants, tasks })
    }

    /// Refuse grants beyond what the host allows any plugin.
    pub(crate) fn check_ceilings(&self, ceilings: &Ceilings) -> Result<(), String> {
        self.grants.check_ceilings(ceilings)
    }

    /// A tool `[tasks]` names that the plugin does not list (checked once its tools are known).
    pub(crate) fn unknown_task_tool<'a>(&'a self, tools: &[rmcp::model::Tool]) -> Option<&'a str> {
        self.tasks.keys().map(String::as_str).find(|name| !tools.iter().any(|tool| tool.name == *name))
    }

    /// One line a person can read: what this manifest grants.
    pub fn describe_grants(&self) -> String {
        self.grants.describe()
    }
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    use super::{Ceilings, Manifest, namespace_problem};

    #[test]
    fn namespaces_cannot_run_into_the_separator() {
        for bad in ["docs__y", "docs_", "__", "_", "a__", "a b", "a.b"] {
            assert!(namespace_problem(bad).is_some(), "{bad:?} should be refused");
            let error = parse(&format!("namespace = {bad:?}")).unwrap_err();
            assert!(error.starts_with("namespace:"), "{error}");
        }
        for good in ["", "docs", "docs_y", "_docs", "a-b", "unit-convert-python"] {
            assert_eq!(namespace_problem(good), None, "{good:?}");
        }
        let long = "a".repeat(33);
        assert!(parse(&format!("namespace = {long:?}")).is_err());
    }

    #[test]
    fn the_hosts_ceilings_cap_what_a_manifest_grants() {
        let dir = tempfile::tempdir().unwrap();
        let allowed = dir.path().join("allowed");
        let outside = dir.path().join("outside");
        std::fs::create_dir_all(allowed.join("inner")).unwrap();
        std::fs::create_dir_all(&outside).unwrap();
        // A link inside the allowed folder that points out of it.
        std::os::unix::fs::symlink(&outside, allowed.join("escape")).unwrap();
        let roots = [allowed.clone()];
        let env = ["API_KEY".to_owned()];
        let network = ["127.0.0.1:8080".to_owned(), "localhost:*".to_owned()];
        // Private networks allowed: this test is about the lists; names resolving to loopback
        // have their own test in `grants::network`.
        let ceilings =
            Ceilings { file_roots: Some(&roots), env: Some(&env), network: Some(&network), private_networks: true };
        let grant = |files: &str, env: &str, network: &str| {
            let text = format!(
                "[capabilities]\nfiles = [{{ host = {files:?}, guest = \"/d\", mode = \"read\" }}]\nenv = [{env:?}]\n\
                 network = [{network:?}]"
            );
            Manifest::parse(&text, dir.path()).unwrap().check_ceilings(&ceilings)
        };
        assert_eq!(grant("allowed/inner", "API_KEY", "127.0.0.1:8080"), Ok(()));
        assert_eq!(grant("allowed", "API_KEY", "localhost:9999"), Ok(()));
        let refused = [
            (grant("outside", "API_KEY", "127.0.0.1:8080"), "capabilities.files[0].host"),
            (grant("allowed/escape", "API_KEY", "127.0.0.1:8080"), "capabilities.files[0].host"),
            (grant("allowed/../outside", "API_KEY", "127.0.0.1:8080"), "capabilities.files[0].host"),
            (grant("allowed", "HOME", "127.0.0.1:8080"), "capabilities.env[0]"),
            (grant("allowed", "API_KEY", "127.0.0.1:8081"), "capabilities.network[0]"),
        ];
        let http = Manifest::parse("[capabilities]\nhttp = [\"localhost:1\", \"10.0.0.1:80\"]", dir.path()).unwrap();
        let refused_http = http.check_ceilings(&ceilings);
        assert!(refused_http.as_ref().is_err_and(|e| e.contains("capabilities.http[1]")), "{refused_http:?}");
        for (result, field) in refused {
            assert!(result.as_ref().is_err_and(|e| e.contains(field)), "{result:?} should name {field}");
        }
        assert_eq!(Manifest::deny_all().check_ceilings(&ceilings), Ok(()));
        // The private-address rule applies on top of the lists, and is reported first.
        let by_name = Manifest::parse("[capabilities]\nnetwork = [\"localhost:9\"]", dir.path()).unwrap();
        let strict = Ceilings { private_networks: false, ..ceilings };
        let error = by_name.check_ceilings(&strict).unwrap_err();
        assert!(error.contains("capabilities.network[0]") && error.contains("loopback"), "{error}");
        assert_eq!(by_name.check_ceilings(&Ceilings { private_networks: true, ..Ceilings::default() }), Ok(()));
    }

    fn parse(text: &str) -> Result<Manifest, String> {
        Manifest::parse(text, Path::new(env!("CARGO_MANIFEST_DIR")))
    }

    #[test]
    fn tasks_declare_which_tools_run_as_tasks() {
        let manifest = parse("[tasks]\noptional = [\"a\"]\nrequired = [\"b\"]\ninput_first = [\"b\"]").unwrap();
        let declared = |name: &str| manifest.tasks.get(name).map(|d| (d.required, d.input_first));
        assert_eq!((declared("a"), declared("b"), declared("c")), (Some((false, false)), Some((true, true)), None));
        let twice = parse("[tasks]\noptional = [\"a\"]\nrequired = [\"a\"]").unwrap_err();
        assert!(twice.contains("named twice"), "{twice}");
        let stray = parse("[tasks]\ninput_first = [\"a\"]").unwrap_err();
        assert!(stray.starts_with("tasks.input_first"), "{stray}");
        assert!(parse("[tasks]\nsometimes = []").is_err());
    }

    #[test]
    fn an_empty_manifest_grants_nothing() {
        let manifest = parse("").unwrap();
        assert_eq!(manifest, Manifest::deny_all());
        assert_eq!(manifest.describe_grants(), "nothing granted");
    }

    #[test]
    fn grants_and_limits_are_read() {
        let m = parse(
            "namespace = \"\"\n[capabilities]\nfiles = [{ host = \"src\", guest = \"/src\", mode = \"read\" }]\n\
             env = [\"HOME\"]\nnetwork = [\"127.0.0.1:9\"]\nmemory_mb = 32\ntimeout_ms = 500\nmax_response_kb = 8\n\
             max_events = 10\nmax_event_kb = 4\nsampling = true\n",
        )
        .unwrap();
        assert_eq!(m.namespace.as_deref(), Some(""));
        let g = &m.grants;
        assert_eq!(g.files[0].guest, "/src");
        assert!(!g.files[0].writable);
        assert_eq!(g.env, ["HOME"]);
        assert_eq!(g.network.tcp[0].addresses[0].to_string(), "127.0.0.1:9");
        let l = g.limits;
        assert_eq!((l.memory_mb, l.timeout_ms, l.max_response_kb), (Some(32), Some(500), Some(8)));
        assert_eq!((l.max_events, l.max_event_kb), (Some(10), Some(4)));
        assert!(g.client.sampling && !g.client.elicitation && !g.client.roots);
        assert_eq!(
            m.describe_grants(),
            format!("files {} as /src (read); env HOME; network 127.0.0.1:9; sampling", g.files[0].host.display())
        );
    }

    #[test]
    fn bad_manifests_name_the_field() {
        let cases = [
            ("namespace = \"a b\"", "namespace"),
            ("[capabilities]\nmemory_mb = 0", "capabilities.memory_mb"),
            ("[capabilities]\ntimeout_ms = 0", "capabilities.timeout_ms"),
            ("[capabilities]\nmax_events = 0", "capabilities.max_events"),
            ("[capabilities]\nmax_event_kb = 0", "capabilities.max_event_kb"),
            ("namespace = \"docs_\"", "namespace"),
            ("[capabilities]\nteleport = true", "teleport"),
            ("unknown = 1", "unknown"),
            ("[capabilities]\nnetwork = [\"example.com\"]", "capabilities.network[0]"),
            (
                "[capabilities]\nfiles = [{ host = \"src\", guest = \"data\", mode = \"read\" }]",
                "capabilities.files[0].guest",
            ),
            (
                "[capabilities]\nfiles = [{ host = \"src\", guest = \"/d\", mode = \"all\" }]",
                "capabilities.files[0].mode",
            ),
            (
                "[capabilities]\nfiles = [{ host = \"no-such-dir\", guest = \"/d\", mode = \"read\" }]",
                "capabilities.files[0].host",
            ),
            ("[capabilities]\nenv = [\"A=B\"]", "capabilities.env[0]"),
            ("[capabilities]\nhttp = [\"example.com\"]", "capabilities.http[0]"),
            ("[capabilities]\nhttp = [\"https://example.com:443\"]", "capabilities.http[0]"),
            ("[capabilities]\nhttp = [\"example.com:http\"]", "capabilities.http[0]"),
        ];
        for (text, field) in cases {
            let error = parse(text).unwrap_err();
            assert!(error.contains(field), "{text:?} gave {error:?}");
        }
    }
}
