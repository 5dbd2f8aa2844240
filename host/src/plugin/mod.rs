//! WebAssembly plugins: the engine, loading a component with its manifest, the sandbox a
//! call runs in, and conversion of what a plugin returns into the MCP model.
//!
//! The rest of the host never touches wasmtime types: it sees [`PluginRuntime`],
//! [`Plugin`] and the call types below.

// Logging and sampling are deprecated by SEP-2577 (2026-07-28) but are live in 2025-11-25,
// which fedmcp serves too.
#![allow(deprecated)]

mod bindings;
mod convert;
mod engine;
pub mod manifest;
mod sandbox;

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use rmcp::model::{
    CallToolResult, CompleteResult, GetPromptResult, Prompt, ReadResourceResult, Resource,
    ResourceTemplate, Tool,
};
use tokio::sync::mpsc::UnboundedSender;
use wasmtime::Engine;
use wasmtime::component::{Component, InstancePre, Linker};

use bindings::exports::fedmcp::plugin as exports;
pub use manifest::Manifest;
use sandbox::{CallState, Limits};

/// Defaults and ceilings that apply to every plugin.
#[derive(Debug, Clone)]
pub struct RuntimeOptions {
    pub pooling: bool,
    pub default_memory_mb: u64,
    pub max_memory_mb: u64,
    pub default_timeout_ms: u64,
    pub max_timeout_ms: u64,
}

impl Default for RuntimeOptions {
    fn default() -> Self {
        Self {
            pooling: true,
            default_memory_mb: 64,
            max_memory_mb: 512,
            default_timeout_ms: 10_000,
            max_timeout_ms: 120_000,
        }
    }
}

/// The engine and linker shared by every plugin.
pub struct PluginRuntime {
    engine: Engine,
    linker: Linker<CallState>,
    options: RuntimeOptions,
    pooling: bool,
    _ticker: engine::EpochTicker,
}

/// Why a plugin could not be loaded.
#[derive(Debug, thiserror::Error)]
pub enum LoadError {
    #[error("{path}: cannot read: {source}")]
    Read {
        path: String,
        source: std::io::Error,
    },
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
    Validate {
        path: String,
        what: &'static str,
        reason: String,
    },
}

/// Why a call into a plugin failed.
#[derive(Debug, Clone, thiserror::Error)]
pub enum CallError {
    #[error("{0}")]
    InvalidParams(String),
    #[error("{0}")]
    NotFound(String),
    #[error("plugin {plugin} failed: {message}")]
    Plugin { plugin: String, message: String },
    #[error("plugin {plugin} exceeded its time limit of {limit_ms} ms")]
    Timeout { plugin: String, limit_ms: u64 },
    #[error("plugin {plugin} trapped: {reason}")]
    Trap { plugin: String, reason: String },
    #[error("plugin {plugin} does not export {interface}")]
    Unsupported {
        plugin: String,
        interface: &'static str,
    },
    #[error("plugin {plugin} returned invalid data: {reason}")]
    BadOutput { plugin: String, reason: String },
}

/// Something a plugin reports while a call runs.
#[derive(Debug, Clone)]
pub enum CallEvent {
    Log {
        level: rmcp::model::LoggingLevel,
        logger: Option<String>,
        message: String,
    },
    Progress {
        progress: f64,
        total: Option<f64>,
        message: Option<String>,
    },
    ListChanged(ListKind),
}

/// Which list of a plugin changed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ListKind {
    Tools,
    Resources,
    Prompts,
}

/// What the client can do for a plugin mid-call.
#[derive(Debug, Clone, Copy, Default)]
pub struct ClientSupport {
    pub elicitation: bool,
    pub sampling: bool,
    pub roots: bool,
}

/// The request-scoped inputs of a call beyond its arguments.
#[derive(Debug, Clone, Default)]
pub struct CallContext {
    pub client: ClientSupport,
    /// Answers to the previous round's input requests, keyed as the plugin keyed them.
    pub input_responses: Vec<(String, serde_json::Value)>,
    /// The state the plugin returned with its previous input-required outcome (verified).
    pub state: Option<String>,
    /// Where log, progress and list-changed events of this call go.
    pub events: Option<UnboundedSender<CallEvent>>,
}

/// A request the host makes of the client on a plugin's behalf.
#[derive(Debug, Clone, PartialEq)]
pub enum InputRequest {
    Elicitation(serde_json::Value),
    Sampling(serde_json::Value),
    Roots,
}

/// A plugin's call cannot finish without answers from the client.
#[derive(Debug, Clone, PartialEq)]
pub struct InputRequired {
    pub requests: Vec<(String, InputRequest)>,
    pub state: Option<String>,
}

/// A call's outcome.
#[derive(Debug, Clone)]
pub enum Outcome<T> {
    Complete(T),
    InputRequired(InputRequired),
}

/// A loaded plugin version: its compiled component, limits, and the lists it serves.
pub struct Plugin {
    pub name: String,
    pub path: PathBuf,
    pub manifest: Manifest,
    pub tools: Vec<Tool>,
    pub resources: Vec<Resource>,
    pub resource_templates: Vec<ResourceTemplate>,
    pub prompts: Vec<Prompt>,
    pub exports: Exports,
    limits: Limits,
    pre: InstancePre<CallState>,
    indices: Indices,
    runtime: Arc<PluginRuntime>,
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
        let max_memory_bytes =
            usize::try_from(options.max_memory_mb.saturating_mul(1 << 20)).unwrap_or(usize::MAX);
        let (engine, pooling) = engine::build_engine(options.pooling, max_memory_bytes)
            .map_err(|e| anyhow::anyhow!("cannot create the WebAssembly engine: {e:#}"))?;
        let mut linker = Linker::new(&engine);
        sandbox::link(&mut linker)
            .map_err(|e| anyhow::anyhow!("cannot link the plugin interfaces: {e:#}"))?;
        let ticker = engine::EpochTicker::start(engine.clone());
        Ok(Arc::new(Self {
            engine,
            linker,
            options,
            pooling,
            _ticker: ticker,
        }))
    }

    /// Whether instances come from the pooling allocator.
    pub fn pooling(&self) -> bool {
        self.pooling
    }

    /// Compile, link and validate `wasm_path` (with its manifest beside it, if any).
    pub async fn load(self: &Arc<Self>, wasm_path: &Path) -> Result<Arc<Plugin>, LoadError> {
        let shown = wasm_path.display().to_string();
        let name = wasm_path
            .file_stem()
            .and_then(|s| s.to_str())
            .unwrap_or("plugin")
            .to_owned();
        let manifest = Manifest::load(&wasm_path.with_extension("toml"))?;
        let bytes = tokio::fs::read(wasm_path)
            .await
            .map_err(|source| LoadError::Read {
                path: shown.clone(),
                source,
            })?;
        let engine = self.engine.clone();
        // Compiling is CPU-bound and can take seconds for large components.
        let component = tokio::task::spawn_blocking(move || Component::new(&engine, &bytes))
            .await
            .map_err(|e| LoadError::Compile {
                path: shown.clone(),
                reason: e.to_string(),
            })?
            .map_err(|e| LoadError::Compile {
                path: shown.clone(),
                reason: format!("{e:#}"),
            })?;
        let pre = self
            .linker
            .instantiate_pre(&component)
            .map_err(|e| LoadError::Link {
                path: shown.clone(),
                reason: format!("{e:#}"),
            })?;
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
        let limits = Limits {
            memory_bytes: manifest
                .memory_mb
                .unwrap_or(self.options.default_memory_mb)
                .min(self.options.max_memory_mb)
                .saturating_mul(1 << 20),
            timeout: Duration::from_millis(
                manifest
                    .timeout_ms
                    .unwrap_or(self.options.default_timeout_ms)
                    .min(self.options.max_timeout_ms),
            ),
        };
        let mut plugin = Plugin {
            name,
            path: wasm_path.to_owned(),
            manifest,
            tools: Vec::new(),
            resources: Vec::new(),
            resource_templates: Vec::new(),
            prompts: Vec::new(),
            exports,
            limits,
            pre,
            indices,
            runtime: self.clone(),
        };
        plugin
            .refresh_lists()
            .await
            .map_err(|(what, error)| LoadError::Validate {
                path: wasm_path.display().to_string(),
                what,
                reason: error.to_string(),
            })?;
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
                .run(CallContext::default(), async |store, instance| {
                    indices
                        .load(&mut *store, instance)?
                        .call_list_tools(&mut *store)
                        .await
                })
                .await
                .map_err(|e| ("list-tools", e))?;
            self.tools = raw
                .into_iter()
                .map(convert::tool)
                .collect::<Result<_, _>>()
                .map_err(|reason| {
                    (
                        "list-tools",
                        CallError::BadOutput {
                            plugin: self.name.clone(),
                            reason,
                        },
                    )
                })?;
        }
        if let Some(indices) = &self.indices.resources {
            let (resources, templates) = self
                .run(CallContext::default(), async |store, instance| {
                    let guest = indices.load(&mut *store, instance)?;
                    let resources = guest.call_list_resources(&mut *store).await?;
                    let templates = guest.call_list_resource_templates(&mut *store).await?;
                    Ok((resources, templates))
                })
                .await
                .map_err(|e| ("list-resources", e))?;
            let bad = |reason| {
                (
                    "list-resources",
                    CallError::BadOutput {
                        plugin: self.name.clone(),
                        reason,
                    },
                )
            };
            self.resources = resources
                .into_iter()
                .map(convert::resource)
                .collect::<Result<_, _>>()
                .map_err(bad)?;
            self.resource_templates = templates
                .into_iter()
                .map(convert::resource_template)
                .collect::<Result<_, _>>()
                .map_err(bad)?;
        }
        if let Some(indices) = &self.indices.prompts {
            let prompts = self
                .run(CallContext::default(), async |store, instance| {
                    indices
                        .load(&mut *store, instance)?
                        .call_list_prompts(&mut *store)
                        .await
                })
                .await
                .map_err(|e| ("list-prompts", e))?;
            self.prompts = prompts
                .into_iter()
                .map(convert::prompt)
                .collect::<Result<_, _>>()
                .map_err(|reason| {
                    (
                        "list-prompts",
                        CallError::BadOutput {
                            plugin: self.name.clone(),
                            reason,
                        },
                    )
                })?;
        }
        Ok(())
    }

    /// Instantiate a fresh sandbox, run `f` in it, and drop it.
    async fn run<R>(
        &self,
        cx: CallContext,
        f: impl AsyncFnOnce(
            &mut wasmtime::Store<CallState>,
            &wasmtime::component::Instance,
        ) -> wasmtime::Result<R>,
    ) -> Result<R, CallError> {
        let mut store = sandbox::store(&self.runtime.engine, &self.name, &self.limits, cx);
        let result = match self.pre.instantiate_async(&mut store).await {
            Ok(instance) => f(&mut store, &instance).await,
            Err(error) => Err(error),
        };
        result.map_err(|error| sandbox::call_error(&self.name, &self.limits, &store, error))
    }

    fn unsupported(&self, interface: &'static str) -> CallError {
        CallError::Unsupported {
            plugin: self.name.clone(),
            interface,
        }
    }

    /// Call tool `name` (the plugin's own name for it) with JSON object `arguments`.
    pub async fn call_tool(
        &self,
        name: &str,
        arguments: &serde_json::Value,
        cx: CallContext,
    ) -> Result<Outcome<CallToolResult>, CallError> {
        let indices = self
            .indices
            .tools
            .as_ref()
            .ok_or_else(|| self.unsupported("tools"))?;
        let wit_cx = convert::request_context(&cx);
        let arguments = arguments.to_string();
        let outcome = self
            .run(cx, async |store, instance| {
                indices
                    .load(&mut *store, instance)?
                    .call_call_tool(&mut *store, name, &arguments, &wit_cx)
                    .await
            })
            .await?
            .map_err(|e| convert::plugin_error(&self.name, e))?;
        convert::call_outcome(&self.name, outcome)
    }

    /// Read resource `uri`.
    pub async fn read_resource(
        &self,
        uri: &str,
        cx: CallContext,
    ) -> Result<Outcome<ReadResourceResult>, CallError> {
        let indices = self
            .indices
            .resources
            .as_ref()
            .ok_or_else(|| self.unsupported("resources"))?;
        let wit_cx = convert::request_context(&cx);
        let outcome = self
            .run(cx, async |store, instance| {
                indices
                    .load(&mut *store, instance)?
                    .call_read_resource(&mut *store, uri, &wit_cx)
                    .await
            })
            .await?
            .map_err(|e| convert::plugin_error(&self.name, e))?;
        convert::read_outcome(&self.name, outcome)
    }

    /// Get prompt `name` (the plugin's own name for it).
    pub async fn get_prompt(
        &self,
        name: &str,
        arguments: &[(String, String)],
        cx: CallContext,
    ) -> Result<Outcome<GetPromptResult>, CallError> {
        let indices = self
            .indices
            .prompts
            .as_ref()
            .ok_or_else(|| self.unsupported("prompts"))?;
        let wit_cx = convert::request_context(&cx);
        let outcome = self
            .run(cx, async |store, instance| {
                indices
                    .load(&mut *store, instance)?
                    .call_get_prompt(&mut *store, name, arguments, &wit_cx)
                    .await
            })
            .await?
            .map_err(|e| convert::plugin_error(&self.name, e))?;
        convert::prompt_outcome(&self.name, outcome)
    }

    /// Complete an argument of a prompt (`Ok(prompt name)`) or resource template
    /// (`Err(uri template)`).
    pub async fn complete(
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
            Err(template) => {
                exports::completions::CompletionReference::ResourceTemplate(template.to_owned())
            }
        };
        let completion = self
            .run(CallContext::default(), async |store, instance| {
                indices
                    .load(&mut *store, instance)?
                    .call_complete(&mut *store, &reference, argument, value, context)
                    .await
            })
            .await?
            .map_err(|e| convert::plugin_error(&self.name, e))?;
        Ok(convert::completion(completion))
    }
}

/// Load every `*.wasm` in `dir`, in file-name order. Each result stands alone: a plugin
/// that fails to load does not keep the others from serving.
pub async fn load_dir(
    runtime: &Arc<PluginRuntime>,
    dir: &Path,
) -> Vec<Result<Arc<Plugin>, LoadError>> {
    let mut paths: Vec<PathBuf> = match std::fs::read_dir(dir) {
        Ok(entries) => entries
            .filter_map(Result::ok)
            .map(|entry| entry.path())
            .filter(|path| path.extension().is_some_and(|ext| ext == "wasm") && path.is_file())
            .collect(),
        Err(source) => {
            return vec![Err(LoadError::Read {
                path: dir.display().to_string(),
                source,
            })];
        }
    };
    paths.sort();
    let mut loaded = Vec::with_capacity(paths.len());
    for path in paths {
        loaded.push(runtime.load(&path).await);
    }
    loaded
}
