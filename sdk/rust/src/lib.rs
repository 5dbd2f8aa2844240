//! Write fedmcp plugins in Rust.
//!
//! A plugin is a type implementing [`Plugin`], exported with [`export!`]. Tools take a typed
//! argument struct; its JSON Schema (the tool's `inputSchema`) is derived from the type.
//!
//! ```ignore
//! use fedmcp_sdk::{Plugin, Tools, JsonSchema};
//! use serde::Deserialize;
//!
//! #[derive(Deserialize, JsonSchema)]
//! struct Greet { /// Who to greet
//!     name: String }
//!
//! struct Hello;
//! impl Plugin for Hello {
//!     fn tools(tools: &mut Tools) {
//!         tools.add("greet", "Say hello", |args: Greet, _cx| Ok(format!("Hello, {}!", args.name)));
//!     }
//! }
//! fedmcp_sdk::export!(Hello);
//! ```
//!
//! Every call runs in a fresh instance, so a plugin keeps no state between calls; a handler
//! that needs the user or a model returns [`InputRequired`] and is called again with the
//! answers (see [`Context`]).

use std::collections::BTreeMap;

pub use schemars::JsonSchema;
pub use serde_json::{Value, json};

mod content;
mod registry;

pub use content::{Content, PromptMessage, ResourceContents, Role, ToolResult};
pub use registry::{
    Completion, CompletionRef, PromptBuilder, PromptResult, Prompts, ResourceBuilder, Resources,
    ToolBuilder, Tools,
};

#[doc(hidden)]
pub mod bindings {
    wit_bindgen::generate!({
        path: "../../wit",
        world: "plugin",
        pub_export_macro: true,
        export_macro_name: "__export_plugin_world",
    });
}

#[doc(hidden)]
pub mod __private;

/// What a plugin serves. Every method has an empty default: implement the ones you need.
pub trait Plugin {
    /// Register the plugin's tools.
    fn tools(_tools: &mut Tools) {}
    /// Register the plugin's resources and resource templates.
    fn resources(_resources: &mut Resources) {}
    /// Register the plugin's prompts.
    fn prompts(_prompts: &mut Prompts) {}
    /// Suggest values for a prompt or resource-template argument.
    fn complete(
        _reference: &CompletionRef,
        _argument: &str,
        _value: &str,
        _context: &BTreeMap<String, String>,
    ) -> Result<Completion, Error> {
        Ok(Completion::default())
    }
}

/// An error a handler returns; the client sees it as a JSON-RPC error.
#[derive(Debug, Clone, PartialEq)]
pub enum Error {
    /// The arguments are wrong; the message says how.
    InvalidParams(String),
    /// No such tool, prompt or resource.
    NotFound(String),
    /// Anything else.
    Internal(String),
}

impl Error {
    pub fn invalid_params(message: impl Into<String>) -> Self {
        Self::InvalidParams(message.into())
    }
    pub fn not_found(message: impl Into<String>) -> Self {
        Self::NotFound(message.into())
    }
    pub fn internal(message: impl Into<String>) -> Self {
        Self::Internal(message.into())
    }
}

impl std::fmt::Display for Error {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::InvalidParams(m) => write!(f, "invalid params: {m}"),
            Self::NotFound(m) => write!(f, "not found: {m}"),
            Self::Internal(m) => write!(f, "{m}"),
        }
    }
}

impl std::error::Error for Error {}

impl From<serde_json::Error> for Error {
    fn from(error: serde_json::Error) -> Self {
        Self::InvalidParams(error.to_string())
    }
}

/// A request to the client that the host makes on the plugin's behalf.
#[derive(Debug, Clone)]
pub enum InputRequest {
    /// `elicitation/create` params (`message`, `requestedSchema`, ...).
    Elicitation(Value),
    /// `sampling/createMessage` params (`messages`, `maxTokens`, ...).
    Sampling(Value),
    /// `roots/list`.
    Roots,
}

impl InputRequest {
    /// Ask the user to fill in a form described by `schema` (a flat JSON Schema object).
    pub fn elicit(message: impl Into<String>, schema: Value) -> Self {
        Self::Elicitation(json!({ "message": message.into(), "requestedSchema": schema }))
    }
    /// Ask the client's model to answer `prompt`.
    pub fn sample(prompt: impl Into<String>, max_tokens: u32) -> Self {
        Self::Sampling(json!({
            "messages": [{ "role": "user", "content": { "type": "text", "text": prompt.into() } }],
            "maxTokens": max_tokens,
        }))
    }
}

/// The handler needs answers before it can finish. It is called again with them in
/// [`Context::response`], and with `state` in [`Context::state`].
#[derive(Debug, Clone, Default)]
pub struct InputRequired {
    pub requests: Vec<(String, InputRequest)>,
    pub state: Option<String>,
}

impl InputRequired {
    pub fn new() -> Self {
        Self::default()
    }
    /// Add a request under `key`; its answer arrives under the same key.
    pub fn request(mut self, key: impl Into<String>, request: InputRequest) -> Self {
        self.requests.push((key.into(), request));
        self
    }
    /// State to receive back, unchanged and verified by the host, on the next call.
    pub fn state(mut self, state: impl Into<String>) -> Self {
        self.state = Some(state.into());
        self
    }
}

/// A handler's outcome: finished, or waiting for input.
#[derive(Debug, Clone)]
pub enum Outcome<T> {
    Complete(T),
    InputRequired(InputRequired),
}

/// What a tool handler returns when it may need input.
pub type ToolOutcome = Outcome<ToolResult>;
/// What a prompt handler returns when it may need input.
pub type PromptOutcome = Outcome<PromptResult>;

impl<T> From<InputRequired> for Outcome<T> {
    fn from(input: InputRequired) -> Self {
        Self::InputRequired(input)
    }
}

impl From<ToolResult> for Outcome<ToolResult> {
    fn from(result: ToolResult) -> Self {
        Self::Complete(result)
    }
}

impl From<String> for Outcome<ToolResult> {
    fn from(text: String) -> Self {
        Self::Complete(ToolResult::text(text))
    }
}

impl From<&str> for Outcome<ToolResult> {
    fn from(text: &str) -> Self {
        Self::Complete(ToolResult::text(text))
    }
}

impl From<PromptResult> for Outcome<PromptResult> {
    fn from(result: PromptResult) -> Self {
        Self::Complete(result)
    }
}

impl From<Vec<ResourceContents>> for Outcome<Vec<ResourceContents>> {
    fn from(contents: Vec<ResourceContents>) -> Self {
        Self::Complete(contents)
    }
}

/// What a handler knows about the request beyond its arguments.
#[derive(Debug, Clone, Default)]
pub struct Context {
    pub(crate) responses: BTreeMap<String, Value>,
    pub(crate) state: Option<String>,
    pub(crate) capabilities: ClientCapabilities,
}

/// Which client-side features the caller declared. Ask only for what it supports.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ClientCapabilities {
    pub elicitation: bool,
    pub sampling: bool,
    pub roots: bool,
}

impl Context {
    /// The client's answer to the input request made under `key` in the previous round.
    pub fn response(&self, key: &str) -> Option<&Value> {
        self.responses.get(key)
    }
    /// All answers of the previous round.
    pub fn responses(&self) -> &BTreeMap<String, Value> {
        &self.responses
    }
    /// The state returned with the previous round's [`InputRequired`], verified by the host.
    pub fn state(&self) -> Option<&str> {
        self.state.as_deref()
    }
    /// What the client can do for the plugin (elicitation, sampling, roots).
    pub fn client_capabilities(&self) -> ClientCapabilities {
        self.capabilities
    }
    /// Whether this call is a retry carrying answers.
    pub fn is_retry(&self) -> bool {
        !self.responses.is_empty() || self.state.is_some()
    }
}

/// Logging to the client that made the call (and to the host's log).
pub mod log {
    use crate::bindings::fedmcp::plugin::{host, types::LogLevel};

    pub fn debug(message: &str) {
        host::log(LogLevel::Debug, None, message);
    }
    pub fn info(message: &str) {
        host::log(LogLevel::Info, None, message);
    }
    pub fn warning(message: &str) {
        host::log(LogLevel::Warning, None, message);
    }
    pub fn error(message: &str) {
        host::log(LogLevel::Error, None, message);
    }
    /// A message from a named logger.
    pub fn info_from(logger: &str, message: &str) {
        host::log(LogLevel::Info, Some(logger), message);
    }
}

/// Report progress of the current call; reaches the client if it asked for progress.
pub fn progress(progress: f64, total: Option<f64>, message: Option<&str>) {
    bindings::fedmcp::plugin::host::progress(progress, total, message);
}

/// Tell the host that this plugin's list of tools, resources or prompts changed; it
/// notifies connected clients, which list again.
pub fn notify_list_changed(kind: ListKind) {
    bindings::fedmcp::plugin::host::notify_list_changed(kind);
}

pub use bindings::fedmcp::plugin::host::ListKind;

/// Export a [`Plugin`] implementation as the component's exports.
#[macro_export]
macro_rules! export {
    ($plugin:ty) => {
        #[doc(hidden)]
        struct __FedmcpExports;

        impl $crate::bindings::exports::fedmcp::plugin::tools::Guest for __FedmcpExports {
            fn list_tools() -> ::std::vec::Vec<$crate::bindings::exports::fedmcp::plugin::tools::Tool> {
                $crate::__private::list_tools::<$plugin>()
            }
            fn call_tool(
                name: ::std::string::String,
                arguments: ::std::string::String,
                context: $crate::bindings::fedmcp::plugin::types::RequestContext,
            ) -> ::std::result::Result<
                $crate::bindings::exports::fedmcp::plugin::tools::CallOutcome,
                $crate::bindings::fedmcp::plugin::types::PluginError,
            > {
                $crate::__private::call_tool::<$plugin>(name, arguments, context)
            }
        }

        impl $crate::bindings::exports::fedmcp::plugin::resources::Guest for __FedmcpExports {
            fn list_resources() -> ::std::vec::Vec<$crate::bindings::exports::fedmcp::plugin::resources::Resource> {
                $crate::__private::list_resources::<$plugin>()
            }
            fn list_resource_templates() -> ::std::vec::Vec<
                $crate::bindings::exports::fedmcp::plugin::resources::ResourceTemplate,
            > {
                $crate::__private::list_resource_templates::<$plugin>()
            }
            fn read_resource(
                uri: ::std::string::String,
                context: $crate::bindings::fedmcp::plugin::types::RequestContext,
            ) -> ::std::result::Result<
                $crate::bindings::exports::fedmcp::plugin::resources::ReadOutcome,
                $crate::bindings::fedmcp::plugin::types::PluginError,
            > {
                $crate::__private::read_resource::<$plugin>(uri, context)
            }
        }

        impl $crate::bindings::exports::fedmcp::plugin::prompts::Guest for __FedmcpExports {
            fn list_prompts() -> ::std::vec::Vec<$crate::bindings::exports::fedmcp::plugin::prompts::Prompt> {
                $crate::__private::list_prompts::<$plugin>()
            }
            fn get_prompt(
                name: ::std::string::String,
                arguments: ::std::vec::Vec<(::std::string::String, ::std::string::String)>,
                context: $crate::bindings::fedmcp::plugin::types::RequestContext,
            ) -> ::std::result::Result<
                $crate::bindings::exports::fedmcp::plugin::prompts::PromptOutcome,
                $crate::bindings::fedmcp::plugin::types::PluginError,
            > {
                $crate::__private::get_prompt::<$plugin>(name, arguments, context)
            }
        }

        impl $crate::bindings::exports::fedmcp::plugin::completions::Guest for __FedmcpExports {
            fn complete(
                reference: $crate::bindings::exports::fedmcp::plugin::completions::CompletionReference,
                argument_name: ::std::string::String,
                argument_value: ::std::string::String,
                context: ::std::vec::Vec<(::std::string::String, ::std::string::String)>,
            ) -> ::std::result::Result<
                $crate::bindings::exports::fedmcp::plugin::completions::Completion,
                $crate::bindings::fedmcp::plugin::types::PluginError,
            > {
                $crate::__private::complete::<$plugin>(reference, argument_name, argument_value, context)
            }
        }

        $crate::bindings::__export_plugin_world!(__FedmcpExports with_types_in $crate::bindings);
    };
}
