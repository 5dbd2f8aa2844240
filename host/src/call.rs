//! The contract between a session and whatever owns an entry (a plugin or a peer): the
//! context a call runs in, what it reports while running, and how it ends.

// Logging is deprecated by SEP-2577 (2026-07-28) but is live in 2025-11-25, which fedmcp
// serves too.
#![allow(deprecated)]

use tokio::sync::mpsc::UnboundedSender;

/// Why a call failed.
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
    Unsupported { plugin: String, interface: &'static str },
    #[error("plugin {plugin} returned invalid data: {reason}")]
    BadOutput { plugin: String, reason: String },
    #[error(
        "plugin {plugin} returned {size} bytes, more than its limit of {limit} bytes (capabilities.max_response_kb)"
    )]
    ResponseTooLarge { plugin: String, size: usize, limit: usize },
    #[error(
        "plugin {plugin} asked the client for {capability}, which its manifest does not grant (set `{capability} = \
         true` under [capabilities] in {manifest})"
    )]
    NotGranted { plugin: String, capability: &'static str, manifest: String },
    #[error("{message} (the sandbox denied: {denied})")]
    Denied { message: String, denied: String },
    /// The peer answered with an MCP error; passed on unchanged.
    #[error("{}", .0.message)]
    Upstream(rmcp::ErrorData),
    #[error("peer {peer} is unavailable: {reason}")]
    PeerUnavailable { peer: String, reason: String },
    #[error("peer {peer} did not answer within {limit_ms} ms")]
    PeerTimeout { peer: String, limit_ms: u64 },
    #[error("peer {peer} failed: {message}")]
    Peer { peer: String, message: String },
    #[error("federation loop: {0}")]
    Loop(String),
}

/// Something an entry's owner reports, or asks of the caller, while a call runs.
#[derive(Debug)]
pub enum CallEvent {
    Log {
        level: rmcp::model::LoggingLevel,
        logger: Option<String>,
        data: serde_json::Value,
    },
    Progress {
        progress: f64,
        total: Option<f64>,
        message: Option<String>,
    },
    ListChanged(ListKind),
    /// A legacy peer asks the caller for input mid-call (server-to-client request); the
    /// answer goes back through `reply`.
    ClientRequest {
        request: InputRequest,
        reply: tokio::sync::oneshot::Sender<Result<serde_json::Value, rmcp::ErrorData>>,
    },
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
    /// The caller's request `_meta`, for a peer to pass on.
    pub meta: serde_json::Map<String, serde_json::Value>,
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
