//! WebAssembly plugins: the engine, loading a component with its manifest, the sandbox a
//! call runs in, and conversion of what a plugin returns into the MCP model.
//!
//! The rest of the host never touches wasmtime types: it sees [`PluginRuntime`],
//! [`Plugin`] and the call types below.

// Logging and sampling are deprecated by SEP-2577 (2026-07-28) but are live in 2025-11-25,
// which fedmcp serves too.
#![allow(deprecated)]

mod bindings;
pub(crate) mod cache;
pub(crate) mod config;
mod convert;
mod engine;
pub(crate) mod grants;
pub(crate) mod loading;
pub(crate) mod manifest;
pub mod oci;
mod sandbox;
pub(crate) mod watch;

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use rmcp::model::{
    CallToolResult, CompleteResult, GetPromptResult, Prompt, ReadResourceResult, Resource, ResourceTemplate, Tool,
};
use wasmtime::Engine;
use wasmtime::component::{Component, InstancePre, Linker};

pub use crate::call::{
    CallContext, CallError, CallEvent, ClientSupport, InputRequest, InputRequired, ListKind, Outcome,
};
use bindings::exports::fedmcp::plugin as exports;
use grants::{Ceilings, Denials, Limits};
pub use manifest::Manifest;
use sandbox::CallState;

/// Defaults and ceilings that apply to every plugin.
#[derive(Debug, Clone)]
pub struct RuntimeOptions {
    pub pooling: bool,
    pub default_memory_mb: u64,
    pub max_memory_mb: u64,
    pub default_timeout_ms: u64,
    pub max_timeout_ms: u64,
    pub default_max_response_kb: u64,
    /// Where compiled components are cached; `None` compiles on every load.
    pub cache_dir: Option<PathBuf>,
    /// Host folders under which a manifest may grant files (`None`: anywhere).
    pub file_roots: Option<Vec<PathBuf>>,
    /// Environment variables a manifest may grant (`None`: any).
    pub env_allowed: Option<Vec<String>>,
    /// Destinations a manifest may grant, as `host:port` or `host:*` (`None`: any).
    pub network_allowed: Option<Vec<String>>,
    /// Whether grants by name (TCP and HTTP) may reach loopback, private and link-local
    /// addresses; IP literal grants may regardless.
    pub allow_private_networks: bool,
    /// The most log and progress messages one call may send its caller, and their total text
    /// in KiB; a manifest may ask for less, never more.
    pub max_events: u64,
    pub max_event_kb: u64,
    /// How long MCP tasks of plugin tools are kept, and how many there may be.
    pub tasks: crate::tasks::TaskLimits,
}

/// The default cache folder: `$XDG_CACHE_HOME/fedmcp` or `~/.cache/fedmcp`.
pub(crate) fn default_cache_dir() -> Option<PathBuf> {
    std::env::var_os("XDG_CACHE_HOME")
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|home| PathBuf::from(home).join(".cache")))
        .map(|base| base.join("fedmcp"))
}

impl Default for RuntimeOptions {
    fn default() -> Self {
        Self {
            pooling: true,
            default_memory_mb: 64,
            max_memory_mb: 512,
            default_timeout_ms: 10_000,
            max_timeout_ms: 120_000,
            default_max_response_kb: 4096,
            cache_dir: default_cache_dir(),
            file_roots: None,
            env_allowed: None,
            network_allowed: None,
            allow_private_networks: false,
            // Per call: a tool that reports progress every percent and logs a few hundred
            // lines stays well inside; a flood is cut at what a client can usefully show, and
            // what waits in the host for the caller stays near 1 MiB per call.
            max_events: 1_000,
            max_event_kb: 1_024,
            tasks: crate::tasks::TaskLimits::default(),
        }
    }
}

/// The engine and linker shared by every plugin.
pub struct PluginRuntime {
    engine: Engine,
    linker: Linker<CallState>,
    options: RuntimeOptions,
    cache: Option<cache::CompileCache>,
    pooling: bool,
    _ticker: engine::EpochTicker,
}

/// Why a plugin could not be loaded.
#[derive(Debug, thiserror::Error)]
pub enum LoadError {
    #[error("{path}: cannot read: {source}")]
    Read { path: String, source: std::io::Error },
    #[error(transparent)]
    Manifest(#[from] manifest::ManifestError),
    #[error("{path}: not a valid WebAssembly component: {reason}")]
    Compile { path: String, reason: String },
    #[error("{path}: cannot be linked (it imports something the host does not provide): {reason}")]
    Link { path: String, reason: String },
    #[error(
        "{path}: exports none of fedmcp:plugin/tools, resources, prompts or completions @0.1.0; build it with a fedmcp SDK"
    )]
    NoExports { path: String },
    #[error("{path}: {what} failed while validating the plugin: {reason}")]
    Validate { path: String, what: &'static str, reason: String },
    #[error(
        "{path}: the file name {name:?} is this plugin's namespace and {reason}; rename the file or set `namespace` \
         in {manifest}"
    )]
    Namespace { path: String, name: String, reason: String, manifest: String },
}

/// A loaded plugin version: its compiled component, limits, and the lists it serves.
pub struct Plugin {
    pub name: String,
    pub path: PathBuf,
    /// The files this version was loaded from, to tell when they change.
    pub stamp: SourceStamp,
    pub manifest: Manifest,
    pub tools: Vec<Tool>,
    pub resources: Vec<Resource>,
    pub resource_templates: Vec<ResourceTemplate>,
    pub prompts: Vec<Prompt>,
    pub exports: Exports,
    limits: Limits,
    pre: InstancePre<CallState>,
    indices: Indices,
    calls: bindings::CallExports,
    runtime: Arc<PluginRuntime>,
}

/// Size and modification time of a plugin's component and manifest.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SourceStamp {
    wasm: Option<(u64, std::time::SystemTime)>,
    manifest: Option<(u64, std::time::SystemTime)>,
}

impl SourceStamp {
    pub(crate) fn of(wasm_path: &Path) -> Self {
        let stat = |path: &Path| std::fs::metadata(path).ok().and_then(|m| Some((m.len(), m.modified().ok()?)));
        Self { wasm: stat(wasm_path), manifest: stat(&wasm_path.with_extension("toml")) }
    }
}

/// Which plugin interfaces a component exports.
#[derive(Debug, Clone, Copy, Default)]
pub struct Exports {
    pub tools: bool,
    pub resources: bool,
    pub prompts: bool,
    pub completions: bool,
}

struct Indices {
    tools: Option<exports::tools::GuestIndices>,
    resources: Option<exports::resources::GuestIndices>,
    prompts: Option<exports::prompts::GuestIndices>,
    completions: Option<exports::completions::GuestIndices>,
}

impl PluginRuntime {
    pub fn new(options: RuntimeOptions) -> anyhow::Result<Arc<Self>> {
        let max_memory_bytes = usize::try_from(options.max_memory_mb.saturating_mul(1 << 20)).unwrap_or(usize::MAX);
        let (engine, pooling) = engine::build_engine(options.pooling, max_memory_bytes)
            .map_err(|e| anyhow::anyhow!("cannot create the WebAssembly engine: {e:#}"))?;
        let mut linker = Linker::new(&engine);
        sandbox::link(&mut linker).map_err(|e| anyhow::anyhow!("cannot link the plugin interfaces: {e:#}"))?;
        let ticker = engine::EpochTicker::start(engine.clone());
        let cache = options.cache_dir.clone().map(cache::CompileCache::new);
        Ok(Arc::new(Self { engine, linker, options, cache, pooling, _ticker: ticker }))
    }

    /// Whether instances come from the pooling allocator.
    pub fn pooling(&self) -> bool {
        self.pooling
    }

    /// Compile, link and validate `wasm_path` (with its manifest beside it, if any).
    pub async fn load(self: &Arc<Self>, wasm_path: &Path) -> Result<Arc<Plugin>, LoadError> {
        let mut cached = None;
        let loaded = self.load_counting(wasm_path, &mut cached).await;
        crate::metrics::plugin_loaded(loaded.is_ok(), cached);
        loaded
    }

    /// [`PluginRuntime::load`], telling `cached` whether the compile cache had the component
    /// (left `None` when no cache was asked).
    async fn load_counting(
        self: &Arc<Self>,
        wasm_path: &Path,
        cached_out: &mut Option<bool>,
    ) -> Result<Arc<Plugin>, LoadError> {
        let shown = wasm_path.display().to_string();
        let name = wasm_path.file_stem().and_then(|s| s.to_str()).unwrap_or("plugin").to_owned();
        let manifest_path = wasm_path.with_extension("toml");
        let manifest = Manifest::load(&manifest_path)?;
        // Without a namespace in the manifest, the file name prefixes every entry: it must
        // be as unambiguous as a namespace written out.
        if manifest.namespace.is_none() {
            let reason = match manifest::namespace_problem(&name) {
                Some(problem) => Some(problem.to_owned()),
                None if name.len() > manifest::MAX_NAMESPACE_LEN => {
                    Some(format!("is longer than {} characters", manifest::MAX_NAMESPACE_LEN))
                }
                None => None,
            };
            if let Some(reason) = reason {
                return Err(LoadError::Namespace {
                    path: shown,
                    name,
                    reason,
                    manifest: manifest_path.display().to_string(),
                });
            }
        }
        manifest.check_ceilings(&Ceilings::of(&self.options)).map_err(|message| {
            LoadError::Manifest(manifest::ManifestError::Invalid { path: manifest_path.display().to_string(), message })
        })?;
        let stamp = SourceStamp::of(wasm_path);
        let (engine, cache, path) = (self.engine.clone(), self.cache.clone(), wasm_path.to_owned());
        let started = std::time::Instant::now();
        // Reading, hashing and above all compiling are CPU-bound and can take seconds for
        // large components.
        let (component, cached) = tokio::task::spawn_blocking(move || match cache {
            Some(cache) => cache.load_or_compile_file(&engine, &path),
            None => {
                let bytes = std::fs::read(&path).map_err(cache::FileError::Read)?;
                let component = Component::new(&engine, &bytes).map_err(cache::FileError::Compile)?;
                Ok((component, cache::CacheOutcome::Uncached))
            }
        })
        .await
        .map_err(|e| LoadError::Compile { path: shown.clone(), reason: e.to_string() })?
        .map_err(|error| match error {
            cache::FileError::Read(source) => LoadError::Read { path: shown.clone(), source },
            cache::FileError::Compile(e) => LoadError::Compile { path: shown.clone(), reason: format!("{e:#}") },
        })?;
        *cached_out = match cached {
            cache::CacheOutcome::Hit => Some(true),
            cache::CacheOutcome::Compiled => Some(false),
            cache::CacheOutcome::Uncached => None,
        };
        tracing::debug!(plugin = %name, ?cached, elapsed_ms = started.elapsed().as_millis() as u64, "component ready");
        let pre = self
            .linker
            .instantiate_pre(&component)
            .map_err(|e| LoadError::Link { path: shown.clone(), reason: format!("{e:#}") })?;
        let indices = Indices {
            tools: exports::tools::GuestIndices::new(&pre).ok(),
            resources: exports::resources::GuestIndices::new(&pre).ok(),
            prompts: exports::prompts::GuestIndices::new(&pre).ok(),
            completions: exports::completions::GuestIndices::new(&pre).ok(),
        };
        let exports = Exports {
            tools: indices.tools.is_some(),
            resources: indices.resources.is_some(),
            prompts: indices.prompts.is_some(),
            completions: indices.completions.is_some(),
        };
        if !(exports.tools || exports.resources || exports.prompts || exports.completions) {
            return Err(LoadError::NoExports { path: shown });
        }
        let interfaces =
            bindings::Interfaces { tools: exports.tools, resources: exports.resources, prompts: exports.prompts };
        let calls = bindings::CallExports::check(&pre, interfaces).map_err(|error| LoadError::Validate {
            path: shown.clone(),
            what: "type-checking its exports",
            reason: format!("{error:#}"),
        })?;
        let limits = Limits::resolve(&manifest.grants.limits, &self.options);
        let mut plugin = Plugin {
            name,
            path: wasm_path.to_owned(),
            stamp,
            manifest,
            tools: Vec::new(),
            resources: Vec::new(),
            resource_templates: Vec::new(),
            prompts: Vec::new(),
            exports,
            limits,
            pre,
            indices,
            calls,
            runtime: self.clone(),
        };
        plugin.refresh_lists().await.map_err(|(what, error)| LoadError::Validate {
            path: wasm_path.display().to_string(),
            what,
            reason: error.to_string(),
        })?;
        if let Some(name) = plugin.manifest.unknown_task_tool(&plugin.tools) {
            let message = format!("tasks: {name:?} is not a tool of this plugin");
            return Err(LoadError::Manifest(manifest::ManifestError::Invalid {
                path: manifest_path.display().to_string(),
                message,
            }));
        }
        Ok(Arc::new(plugin))
    }
}

impl Plugin {
    /// The memory a call of this plugin may use.
    pub fn memory_limit_mb(&self) -> u64 {
        self.limits.memory_bytes >> 20
    }

    /// The most a call of this plugin may run.
    pub fn timeout(&self) -> Duration {
        self.limits.timeout
    }

    /// Call the list functions and check what they return.
    async fn refresh_lists(&mut self) -> Result<(), (&'static str, CallError)> {
        if let Some(indices) = &self.indices.tools {
            let raw = self
                .run(("tools/list", ""), CallContext::default(), async |store, instance| {
                    indices.load(&mut *store, instance)?.call_list_tools(&mut *store).await
                })
                .await
                .map_err(|e| ("list-tools", e))?
                .0;
            self.tools = raw
                .into_iter()
                .map(convert::tool)
                .collect::<Result<_, _>>()
                .map_err(|reason| ("list-tools", CallError::BadOutput { plugin: self.name.clone(), reason }))?;
        }
        if let Some(indices) = &self.indices.resources {
            let (resources, templates) = self
                .run(("resources/list", ""), CallContext::default(), async |store, instance| {
                    let guest = indices.load(&mut *store, instance)?;
                    let resources = guest.call_list_resources(&mut *store).await?;
                    let templates = guest.call_list_resource_templates(&mut *store).await?;
                    Ok((resources, templates))
                })
                .await
                .map_err(|e| ("list-resources", e))?
                .0;
            let bad = |reason| ("list-resources", CallError::BadOutput { plugin: self.name.clone(), reason });
            self.resources = resources.into_iter().map(convert::resource).collect::<Result<_, _>>().map_err(bad)?;
            self.resource_templates =
                templates.into_iter().map(convert::resource_template).collect::<Result<_, _>>().map_err(bad)?;
        }
        if let Some(indices) = &self.indices.prompts {
            let prompts = self
                .run(("prompts/list", ""), CallContext::default(), async |store, instance| {
                    indices.load(&mut *store, instance)?.call_list_prompts(&mut *store).await
                })
                .await
                .map_err(|e| ("list-prompts", e))?
                .0;
            self.prompts = prompts
                .into_iter()
                .map(convert::prompt)
                .collect::<Result<_, _>>()
                .map_err(|reason| ("list-prompts", CallError::BadOutput { plugin: self.name.clone(), reason }))?;
        }
        Ok(())
    }

    /// Instantiate a fresh sandbox, run `f` in it, and drop it. `call` (method, target) names
    /// the call in the log line that records what the sandbox refused.
    async fn run<R>(
        &self,
        call: (&'static str, &str),
        cx: CallContext,
        f: impl AsyncFnOnce(&mut wasmtime::Store<CallState>, &wasmtime::component::Instance) -> wasmtime::Result<R>,
    ) -> Result<(R, String), CallError> {
        // A child of the request's span when the request is traced (`None`, at no cost, when not).
        let (method, target) = call;
        let mut span = crate::telemetry::PluginSpan::start(&self.name, method, target);
        let denials = Denials::default();
        let ceilings = Ceilings::of(&self.runtime.options);
        let mut store = sandbox::store(
            &self.runtime.engine,
            &self.name,
            &self.manifest.grants,
            &self.limits,
            &ceilings,
            cx,
            &denials,
        )
        .map_err(|e| CallError::Plugin {
            plugin: self.name.clone(),
            message: format!("cannot set up its sandbox: {e:#}"),
        })?;
        // The epoch deadline stops a guest that computes; a guest waiting on the host (a
        // socket or HTTP origin that never answers) runs no code to interrupt, so the wait
        // itself is bounded too. Dropping the call's future mid-way is safe: the store goes next.
        let running = async {
            let started = std::time::Instant::now();
            let instance = self.pre.instantiate_async(&mut store).await?;
            let took = started.elapsed();
            crate::metrics::instantiated(took);
            if let Some(span) = span.as_mut() {
                span.instantiated(took);
            }
            f(&mut store, &instance).await
        };
        let outcome = tokio::time::timeout(self.limits.timeout, running).await;
        let result = match outcome {
            Ok(result) => result.map_err(|error| sandbox::call_error(&self.name, &self.limits, &store, error)),
            Err(_) => {
                tracing::warn!(plugin = %self.name, limit_ms = self.limits.timeout.as_millis() as u64,
                    "plugin call stopped at its time limit while waiting on the host");
                Err(CallError::Timeout { plugin: self.name.clone(), limit_ms: self.limits.timeout.as_millis() as u64 })
            }
        };
        if let (Some(span), Err(error)) = (span.as_mut(), &result) {
            span.failed(error.kind(), error);
        }
        drop(span);
        let spent = store.data().budget_spent();
        drop(store);
        if spent.dropped > 0 {
            crate::metrics::events_dropped(spent.dropped);
            tracing::warn!(plugin = %self.name, %method, %target, dropped = spent.dropped,
                dropped_bytes = spent.dropped_bytes, max_events = self.limits.max_events,
                max_event_kb = self.limits.max_event_bytes >> 10,
                "plugin call exceeded its event budget; the excess log and progress messages were dropped");
        }
        let denied = denials.lock().map(|d| d.join("; ")).unwrap_or_default();
        if !denied.is_empty() {
            tracing::warn!(plugin = %self.name, %method, %target, %denied, "plugin call was refused access");
        }
        match result {
            Ok(value) => Ok((value, denied)),
            Err(error) => Err(self.with_denials(error, &denied)),
        }
    }

    /// Name what the sandbox denied in a plugin's own error.
    fn with_denials(&self, error: CallError, denied: &str) -> CallError {
        if denied.is_empty() {
            error
        } else {
            CallError::Denied { message: error.to_string(), denied: denied.to_owned() }
        }
    }

    /// Refuse input requests the manifest does not grant, and results over the size cap.
    fn check_outcome<T: serde::Serialize>(&self, outcome: Outcome<T>) -> Result<Outcome<T>, CallError> {
        let size = match &outcome {
            Outcome::InputRequired(input) => {
                for (_, request) in &input.requests {
                    self.manifest.grants.client.check(request).map_err(|capability| CallError::NotGranted {
                        plugin: self.name.clone(),
                        capability,
                        manifest: self.path.with_extension("toml").display().to_string(),
                    })?;
                }
                grants::limits::input_required_size(input)
            }
            Outcome::Complete(result) => crate::call::json_len(result),
        };
        self.limits.check_response_size(&self.name, size)?;
        Ok(outcome)
    }

    fn unsupported(&self, interface: &'static str) -> CallError {
        CallError::Unsupported { plugin: self.name.clone(), interface }
    }

    /// Call tool `name` (the plugin's own name for it) with JSON object `arguments`.
    pub async fn call_tool(
        &self,
        name: &str,
        arguments: &serde_json::Value,
        cx: CallContext,
    ) -> Result<Outcome<CallToolResult>, CallError> {
        if self.indices.tools.is_none() {
            return Err(self.unsupported("tools"));
        }
        let wit_cx = convert::request_context(&cx);
        let arguments = arguments.to_string();
        let outcome = self
            .run(("tools/call", name), cx, async |store, instance| {
                let call_tool = self.calls.call_tool(&mut *store, instance)?;
                Ok(call_tool.call_async(&mut *store, (name, &arguments, &wit_cx)).await?.0)
            })
            .await?;
        let outcome = outcome.0.map_err(|e| self.with_denials(convert::plugin_error(&self.name, e), &outcome.1))?;
        self.check_outcome(convert::call_outcome(&self.name, outcome)?)
    }

    /// Read resource `uri`.
    pub(crate) async fn read_resource(
        &self,
        uri: &str,
        cx: CallContext,
    ) -> Result<Outcome<ReadResourceResult>, CallError> {
        if self.indices.resources.is_none() {
            return Err(self.unsupported("resources"));
        }
        let wit_cx = convert::request_context(&cx);
        let outcome = self
            .run(("resources/read", uri), cx, async |store, instance| {
                let read_resource = self.calls.read_resource(&mut *store, instance)?;
                Ok(read_resource.call_async(&mut *store, (uri, &wit_cx)).await?.0)
            })
            .await?;
        let outcome = outcome.0.map_err(|e| self.with_denials(convert::plugin_error(&self.name, e), &outcome.1))?;
        self.check_outcome(convert::read_outcome(&self.name, outcome)?)
    }

    /// Get prompt `name` (the plugin's own name for it).
    pub(crate) async fn get_prompt(
        &self,
        name: &str,
        arguments: &[(String, String)],
        cx: CallContext,
    ) -> Result<Outcome<GetPromptResult>, CallError> {
        if self.indices.prompts.is_none() {
            return Err(self.unsupported("prompts"));
        }
        let wit_cx = convert::request_context(&cx);
        let outcome = self
            .run(("prompts/get", name), cx, async |store, instance| {
                let get_prompt = self.calls.get_prompt(&mut *store, instance)?;
                Ok(get_prompt.call_async(&mut *store, (name, arguments, &wit_cx)).await?.0)
            })
            .await?;
        let outcome = outcome.0.map_err(|e| self.with_denials(convert::plugin_error(&self.name, e), &outcome.1))?;
        self.check_outcome(convert::prompt_outcome(&self.name, outcome)?)
    }

    /// Complete an argument of a prompt (`Ok(prompt name)`) or resource template
    /// (`Err(uri template)`).
    pub(crate) async fn complete(
        &self,
        reference: Result<&str, &str>,
        argument: &str,
        value: &str,
        context: &[(String, String)],
    ) -> Result<CompleteResult, CallError> {
        let Some(indices) = self.indices.completions.as_ref() else {
            return Ok(CompleteResult::default());
        };
        let reference = match reference {
            Ok(prompt) => exports::completions::CompletionReference::Prompt(prompt.to_owned()),
            Err(template) => exports::completions::CompletionReference::ResourceTemplate(template.to_owned()),
        };
        let completion = self
            .run(("completion/complete", ""), CallContext::default(), async |store, instance| {
                indices
                    .load(&mut *store, instance)?
                    .call_complete(&mut *store, &reference, argument, value, context)
                    .await
            })
            .await?
            .0
            .map_err(|e| convert::plugin_error(&self.name, e))?;
        Ok(convert::completion(completion))
    }
}

/// The `*.wasm` files of `dir`, sorted.
pub(crate) fn plugin_files(dir: &Path) -> std::io::Result<Vec<PathBuf>> {
    let mut paths: Vec<PathBuf> = std::fs::read_dir(dir)?
        .filter_map(Result::ok)
        .map(|entry| entry.path())
        .filter(|path| {
            path.extension().is_some_and(|ext| ext == "wasm")
                && path.is_file()
                && !path.file_name().is_some_and(|n| n.to_string_lossy().starts_with('.'))
        })
        .collect();
    paths.sort();
    Ok(paths)
}

#[cfg(test)]
mod tests {
    use super::{LoadError, PluginRuntime, RuntimeOptions};

    #[tokio::test]
    async fn a_file_name_that_would_be_an_ambiguous_namespace_is_refused() {
        let runtime =
            PluginRuntime::new(RuntimeOptions { pooling: false, cache_dir: None, ..RuntimeOptions::default() })
                .unwrap();
        let dir = tempfile::tempdir().unwrap();
        // Not WebAssembly: a name that passes goes on to compile and fails there.
        for name in ["docs__y", "docs_", "docs.v2"] {
            let path = dir.path().join(format!("{name}.wasm"));
            std::fs::write(&path, b"not wasm").unwrap();
            let error = runtime.load(&path).await.err().unwrap();
            assert!(matches!(error, LoadError::Namespace { .. }), "{name}: {error}");
            let message = error.to_string();
            assert!(message.contains(&format!("{name}.wasm")) && message.contains("namespace"), "{message}");
        }
        let fine = dir.path().join("docs.wasm");
        std::fs::write(&fine, b"not wasm").unwrap();
        assert!(matches!(runtime.load(&fine).await, Err(LoadError::Compile { .. })));
        // A namespace in the manifest takes the file name's place.
        let renamed = dir.path().join("docs_.wasm");
        std::fs::write(dir.path().join("docs_.toml"), "namespace = \"docs\"\n").unwrap();
        assert!(matches!(runtime.load(&renamed).await, Err(LoadError::Compile { .. })));
    }
}
