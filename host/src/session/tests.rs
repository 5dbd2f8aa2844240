//! The session driven in process: an rmcp client talks to a [`Session`] over an in-memory
//! duplex pipe (as a stdio client would), with the text-tools example plugin in the catalog.

use std::sync::Arc;

use rmcp::model::{
    CallToolRequestParams, ClientCapabilities, ClientConfig, ElicitRequestParams, ElicitResult, ElicitationAction,
    Implementation, ReadResourceRequestParams, SubscribeRequestParams, UnsubscribeRequestParams,
};
use rmcp::service::{RequestContext, RunningService, ServiceError};
use rmcp::{ClientHandler, ErrorData as McpError, RoleClient, ServiceExt};
use serde_json::{Value, json};
use tokio::sync::{OnceCell, mpsc};

use super::subscriptions::MAX_SUBSCRIPTIONS;
use super::{Session, Shared};
use crate::auth::consent::{ConsentRules, Policy};
use crate::auth::{Grants, Guard, Identity};
use crate::catalog::Catalog;
use crate::federation::Federation;
use crate::plugin::{Plugin, PluginRuntime, RuntimeOptions};
use crate::testing::{AuditBuffer, within};

/// The text-tools example, compiled once for every test here (the runtime stays with it: its
/// epoch ticker enforces the plugin's time limit).
static TEXT_TOOLS: OnceCell<(Arc<PluginRuntime>, Arc<Plugin>)> = OnceCell::const_new();

async fn text_tools() -> Arc<Plugin> {
    let (_, plugin) = TEXT_TOOLS
        .get_or_init(|| async {
            let options = RuntimeOptions { cache_dir: None, ..RuntimeOptions::default() };
            let runtime = PluginRuntime::new(options).expect("a plugin runtime");
            let wasm = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../plugins/text-tools.wasm");
            let plugin = within("loading text-tools", runtime.load(&wasm)).await.expect("text-tools loads");
            (runtime, plugin)
        })
        .await;
    plugin.clone()
}

/// The host's shared state: `plugins` in the catalog, no peers, `guard` on every use.
fn shared(plugins: Vec<Arc<Plugin>>, guard: Guard) -> Arc<Shared> {
    let catalog = Arc::new(Catalog::new("host-under-test".to_owned()));
    catalog.set_plugins(plugins, Vec::new());
    Shared::new(catalog, Arc::new(Federation { peers: Vec::new() }), vec![7; 32], None, guard, Default::default())
}

/// A guard whose audit lines the test reads, with `consent` rules and the local user's grant.
fn guard(audit: &AuditBuffer, rules: Vec<(String, Policy)>, scopes: &[&str]) -> Guard {
    let local = Identity { grants: Grants::from_scopes(scopes), ..Identity::local() };
    Guard {
        audit: audit.log(),
        consent: ConsentRules { rules, destructive: Policy::Ask },
        local: Arc::new(local),
        ..Guard::permissive()
    }
}

/// A session of `shared` served over an in-memory pipe, and `client` initialized against it.
async fn connect<C: ClientHandler>(shared: Arc<Shared>, client: C) -> RunningService<RoleClient, C> {
    let (server_side, client_side) = tokio::io::duplex(1 << 16);
    tokio::spawn(async move {
        if let Ok(running) = Session::new(shared).serve(server_side).await {
            let _ = running.waiting().await;
        }
    });
    within("initialize", client.serve(client_side)).await.expect("the session initializes")
}

/// The MCP error a request failed with.
fn mcp_error<T: std::fmt::Debug>(result: Result<T, ServiceError>) -> McpError {
    match result {
        Err(ServiceError::McpError(error)) => error,
        other => panic!("expected an MCP error, got {other:?}"),
    }
}

fn slugify(text: &str) -> CallToolRequestParams {
    CallToolRequestParams::new("text-tools__slugify")
        .with_arguments(json!({ "text": text }).as_object().cloned().unwrap_or_default())
}

fn text_of(result: &rmcp::model::CallToolResult) -> String {
    let value = serde_json::to_value(result).expect("a result serialises");
    value["content"][0]["text"].as_str().unwrap_or_default().to_owned()
}

/// A client that declares elicitation and gives `answer` to every question, reporting each
/// question's message.
struct Answering {
    answer: ElicitationAction,
    asked: mpsc::UnboundedSender<String>,
}

impl ClientHandler for Answering {
    fn get_info(&self) -> ClientConfig {
        ClientConfig::new(ClientCapabilities::builder().enable_elicitation().build(), Implementation::new("test", "1"))
    }

    async fn create_elicitation(
        &self,
        request: ElicitRequestParams,
        _cx: RequestContext<RoleClient>,
    ) -> Result<ElicitResult, McpError> {
        let request = serde_json::to_value(&request).unwrap_or(Value::Null);
        let _ = self.asked.send(request["message"].as_str().unwrap_or_default().to_owned());
        Ok(match self.answer.clone() {
            ElicitationAction::Accept => ElicitResult::new(ElicitationAction::Accept).with_content(json!({})),
            other => ElicitResult::new(other),
        })
    }
}

#[tokio::test]
async fn tools_are_listed_under_the_plugins_namespace_and_a_call_returns_the_plugins_answer() {
    let shared = shared(vec![text_tools().await], Guard::permissive());
    let client = connect(shared, ()).await;
    let mut names: Vec<String> = within("tools/list", client.list_all_tools())
        .await
        .expect("listed")
        .iter()
        .map(|t| t.name.to_string())
        .collect();
    names.sort();
    assert_eq!(
        names,
        ["text-tools__change_case", "text-tools__format_json", "text-tools__slugify", "text-tools__word_count"]
    );
    let result = within("tools/call", client.call_tool(slugify("Hello, WebAssembly World"))).await.expect("answered");
    assert_eq!(text_of(&result), "hello-webassembly-world");
}

#[tokio::test]
async fn a_caller_whose_grant_lacks_the_tool_sees_it_unlisted_and_is_refused_with_the_refusal_audited() {
    let audit = AuditBuffer::default();
    let shared = shared(vec![text_tools().await], guard(&audit, Vec::new(), &["tools:text-tools__slugify"]));
    let client = connect(shared, ()).await;
    let listed = within("tools/list", client.list_all_tools()).await.expect("listed");
    let names: Vec<&str> = listed.iter().map(|t| &*t.name).collect();
    assert_eq!(names, ["text-tools__slugify"], "only what the grant covers is listed");
    let call = CallToolRequestParams::new("text-tools__word_count")
        .with_arguments(json!({ "text": "a b" }).as_object().cloned().unwrap_or_default());
    let refused = mcp_error(within("tools/call", client.call_tool(call)).await);
    assert_eq!(refused.data.as_ref().map(|d| d["required_scope"].clone()), Some(json!("tools:text-tools__word_count")));
    within("tools/call", client.call_tool(slugify("Granted"))).await.expect("the granted tool runs");
    let lines = audit.lines();
    let decisions: Vec<(&str, &str)> = lines
        .iter()
        .map(|l| (l["entry"].as_str().unwrap_or_default(), l["decision"].as_str().unwrap_or_default()))
        .collect();
    assert_eq!(decisions, [("text-tools__word_count", "denied"), ("text-tools__slugify", "allowed")], "{lines:?}");
}

#[tokio::test]
async fn a_resource_uri_with_a_dot_segment_is_refused_before_anything_serves_it() {
    let client = connect(shared(Vec::new(), Guard::permissive()), ()).await;
    let read = client.read_resource(ReadResourceRequestParams::new("file:///docs/../secret"));
    let refused = mcp_error(within("resources/read", read).await);
    assert!(refused.message.contains("dot-segment"), "{}", refused.message);
    #[allow(deprecated)] // resources/subscribe is a 2025-11-25 method, live here
    let subscribe = client.subscribe(SubscribeRequestParams::new("file:///docs/%2e%2e/secret"));
    let refused = mcp_error(within("resources/subscribe", subscribe).await);
    assert!(refused.message.contains("dot-segment"), "{}", refused.message);
}

#[tokio::test]
#[allow(deprecated)] // resources/subscribe and unsubscribe are 2025-11-25 methods, live here
async fn a_session_subscribes_to_at_most_max_subscriptions_resources() {
    let client = connect(shared(Vec::new(), Guard::permissive()), ()).await;
    let uri = |i: usize| format!("notes://note/{i}");
    within("subscribing up to the limit", async {
        for i in 0..MAX_SUBSCRIPTIONS {
            client.subscribe(SubscribeRequestParams::new(uri(i))).await.expect("within the limit");
        }
    })
    .await;
    let over =
        mcp_error(within("one more", client.subscribe(SubscribeRequestParams::new(uri(MAX_SUBSCRIPTIONS)))).await);
    assert!(over.message.contains(&format!("already subscribes to {MAX_SUBSCRIPTIONS}")), "{}", over.message);
    within("again", client.subscribe(SubscribeRequestParams::new(uri(0)))).await.expect("a repeat takes no room");
    within("unsubscribe", client.unsubscribe(UnsubscribeRequestParams::new(uri(0)))).await.expect("unsubscribed");
    let freed = client.subscribe(SubscribeRequestParams::new(uri(MAX_SUBSCRIPTIONS)));
    within("into the freed room", freed).await.expect("room was freed");
}

#[tokio::test]
async fn consent_policy_ask_sends_an_elicitation_and_a_declined_answer_refuses_the_call() {
    let audit = AuditBuffer::default();
    let rules = vec![("text-tools__slugify".to_owned(), Policy::Ask)];
    let shared = shared(vec![text_tools().await], guard(&audit, rules, &["*"]));
    let (asked, mut questions) = mpsc::unbounded_channel();
    let client = connect(shared, Answering { answer: ElicitationAction::Decline, asked }).await;
    let refused = mcp_error(within("tools/call", client.call_tool(slugify("Do Not Run"))).await);
    assert!(refused.message.contains("did not allow"), "{}", refused.message);
    let question = questions.try_recv().expect("the client was asked");
    assert!(question.contains("text-tools__slugify"), "{question}");
    let lines = audit.lines();
    assert_eq!(lines.len(), 1, "{lines:?}");
    assert_eq!((lines[0]["decision"].as_str(), lines[0]["accepted"].as_bool()), (Some("asked"), Some(false)));
    assert!(lines[0]["outcome"].is_null(), "a declined call never ran: {lines:?}");
}

#[tokio::test]
async fn consent_policy_ask_runs_the_call_once_the_client_accepts() {
    let audit = AuditBuffer::default();
    let rules = vec![("text-tools__slugify".to_owned(), Policy::Ask)];
    let shared = shared(vec![text_tools().await], guard(&audit, rules, &["*"]));
    let (asked, mut questions) = mpsc::unbounded_channel();
    let client = connect(shared, Answering { answer: ElicitationAction::Accept, asked }).await;
    let result = within("tools/call", client.call_tool(slugify("Go Ahead"))).await.expect("it ran");
    assert_eq!(text_of(&result), "go-ahead");
    assert!(questions.try_recv().is_ok(), "the client was asked first");
    let lines = audit.lines();
    assert_eq!((lines[0]["accepted"].as_bool(), lines[0]["outcome"].as_str()), (Some(true), Some("ok")), "{lines:?}");
}

#[tokio::test]
async fn a_tool_that_needs_consent_is_refused_to_a_client_that_cannot_be_asked() {
    let audit = AuditBuffer::default();
    let rules = vec![("text-tools__slugify".to_owned(), Policy::Ask)];
    let shared = shared(vec![text_tools().await], guard(&audit, rules, &["*"]));
    let client = connect(shared, ()).await;
    let refused = mcp_error(within("tools/call", client.call_tool(slugify("Unasked"))).await);
    assert!(refused.message.contains("elicitation"), "{}", refused.message);
}
