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

impl CallError {
    /// The error's kind, as a span's `error.type` names it.
    pub(crate) fn kind(&self) -> &'static str {
        match self {
            Self::InvalidParams(_) => "invalid_params",
            Self::NotFound(_) => "not_found",
            Self::Plugin { .. } => "plugin_error",
            Self::Timeout { .. } => "timeout",
            Self::Trap { .. } => "trap",
            Self::Unsupported { .. } => "unsupported",
            Self::BadOutput { .. } => "bad_output",
            Self::ResponseTooLarge { .. } => "response_too_large",
            Self::NotGranted { .. } => "not_granted",
            Self::Denied { .. } => "denied",
            Self::Upstream(_) => "upstream_error",
            Self::PeerUnavailable { .. } => "peer_unavailable",
            Self::PeerTimeout { .. } => "peer_timeout",
            Self::Peer { .. } => "peer_error",
            Self::Loop(_) => "federation_loop",
        }
    }
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

/// What a peer answered a `tools/call` with when the caller declared the tasks extension: the
/// tool's result, or a task the peer created and runs (SEP-2663), which this host passes on
/// under an id of its own.
#[derive(Debug, Clone)]
pub enum ToolAnswer {
    Result(rmcp::model::CallToolResult),
    Task(rmcp::model::CreateTaskResult),
}

impl From<ToolAnswer> for rmcp::model::CallToolResponse {
    fn from(answer: ToolAnswer) -> Self {
        match answer {
            ToolAnswer::Result(result) => result.into(),
            ToolAnswer::Task(created) => Self::Task(created),
        }
    }
}

/// A call's outcome.
#[derive(Debug, Clone)]
pub enum Outcome<T> {
    Complete(T),
    InputRequired(InputRequired),
}

/// What one call sent its caller, and what it had to drop.
#[derive(Debug, Clone, Copy, Default)]
pub(crate) struct EventsSpent {
    pub events: u64,
    pub bytes: usize,
    pub dropped: u64,
    pub dropped_bytes: usize,
    /// Every list-changed after the first of its kind (they say nothing new).
    pub coalesced: u64,
}

/// A call's allowance of log and progress messages: how many, and their text in bytes. A
/// plugin's messages are copied out of the guest, outside its memory cap, and a peer's come
/// as fast as it sends them; both wait in the caller's channel: the budget bounds it all. What
/// exceeds it is dropped and counted, and the caller is told once. The one rule for plugins,
/// forwarded calls and relayed calls.
#[derive(Debug, Clone, Copy)]
pub(crate) struct EventBudget {
    max_events: u64,
    max_bytes: usize,
    spent: EventsSpent,
    warned: bool,
}

/// What to do with one message under a call's budget.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Charge {
    /// It fits: pass it on.
    Send,
    /// The first message over the budget: drop it, and tell the caller (`EventBudget::warning`).
    DropAndWarn,
    /// Over the budget, and the caller was told: drop it.
    Drop,
}

impl EventBudget {
    pub(crate) fn new(max_events: u64, max_bytes: usize) -> Self {
        Self { max_events, max_bytes, spent: EventsSpent::default(), warned: false }
    }

    /// Charge a message carrying `bytes` of text.
    pub(crate) fn charge(&mut self, bytes: usize) -> Charge {
        if self.spent.events < self.max_events && self.spent.bytes.saturating_add(bytes) <= self.max_bytes {
            self.spent.events += 1;
            self.spent.bytes += bytes;
            return Charge::Send;
        }
        self.spent.dropped += 1;
        self.spent.dropped_bytes = self.spent.dropped_bytes.saturating_add(bytes);
        if std::mem::replace(&mut self.warned, true) { Charge::Drop } else { Charge::DropAndWarn }
    }

    /// A list-changed that says nothing new in this call.
    pub(crate) fn coalesced(&mut self) {
        self.spent.coalesced += 1;
    }

    pub(crate) fn spent(&self) -> EventsSpent {
        self.spent
    }

    /// What the caller is told once: `who` (e.g. "plugin x") is past the budget.
    pub(crate) fn warning(&self, who: &str) -> String {
        format!(
            "{who} exceeded its event budget ({} messages or {} KiB of text per call); its further log and progress \
             messages in this call are dropped",
            self.max_events,
            self.max_bytes >> 10
        )
    }
}

/// The length of `value`'s compact JSON text, counted without building it: what a result,
/// an event or an input request counts for against a size cap. A value that cannot be
/// serialised counts 0 (it fails where it is sent, not here).
pub(crate) fn json_len<T: serde::Serialize + ?Sized>(value: &T) -> usize {
    struct Counter(usize);
    impl std::io::Write for Counter {
        fn write(&mut self, bytes: &[u8]) -> std::io::Result<usize> {
            self.0 = self.0.saturating_add(bytes.len());
            Ok(bytes.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }
    let mut counter = Counter(0);
    match serde_json::to_writer(&mut counter, value) {
        Ok(()) => counter.0,
        Err(_) => 0,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_budget_passes_what_fits_then_warns_once_and_drops_the_rest() {
        let mut budget = EventBudget::new(2, 10);
        assert_eq!(budget.charge(4), Charge::Send);
        assert_eq!(budget.charge(7), Charge::DropAndWarn, "past the bytes");
        assert_eq!(budget.charge(6), Charge::Send, "a smaller one still fits");
        assert_eq!(budget.charge(0), Charge::Drop, "past the count; told already");
        let spent = budget.spent();
        assert_eq!((spent.events, spent.bytes, spent.dropped, spent.dropped_bytes), (2, 10, 2, 7));
        assert!(budget.warning("plugin x").contains("plugin x exceeded its event budget (2 messages"));
    }
}
