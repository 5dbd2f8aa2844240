//! Calls forwarded to the peer: each request with its `_meta` (the caller, the hosts crossed,
//! the progress token), the peer's time limit, cancellation sent on drop, and the peer's MRTR
//! input-required result mapped to the session's outcome; and the relay's direct road to a
//! 2026-07-28 HTTP peer.

use std::sync::Arc;
use std::time::Duration;

use rmcp::model::{
    CallToolRequest, CallToolRequestParams, CallToolResult, CancelTaskParams, CancelTaskRequest,
    CancelledNotificationParam, ClientRequest, CompleteRequest, CompleteRequestParams, CompleteResult,
    GetPromptRequest, GetPromptRequestParams, GetPromptResult, GetTaskParams, GetTaskRequest, GetTaskResult,
    InputRequiredResult, InputResponses, ReadResourceRequest, ReadResourceRequestParams, ReadResourceResult, RequestId,
    RequestMetaObject, ServerResult, UpdateTaskParams, UpdateTaskRequest,
};
use rmcp::service::{PeerRequestOptions, ServiceError};
use serde_json::{Value, json};

use crate::call::{CallContext, CallError, InputRequest, InputRequired, Outcome, ToolAnswer};
use crate::federation::credentials::{CALLER_KEY, Caller, with_causes};
use crate::federation::loops;
use crate::telemetry;

use super::*;

impl Peer {
    /// What a relayed call needs, while the peer is up and can take one.
    pub(crate) fn relay(&self) -> Option<Arc<Relay>> {
        self.relay.read().ok().and_then(|slot| slot.clone())
    }

    /// Post one stateless tools/call (already rewritten for the peer) over `relay`, with the
    /// caller's credentials for the peer and the caller's `Mcp-*` headers; the peer's response
    /// (its body not yet read). The time limit is the caller's to apply to the body. `caller`
    /// is whom the call is for (an `&Identity`: its subject and issuer); a bare subject is a
    /// caller without an issuer, as the local user is.
    pub(crate) async fn relay_post(
        &self,
        relay: &Relay,
        body: Vec<u8>,
        caller: impl Into<Caller>,
        headers: reqwest::header::HeaderMap,
        deadline: tokio::time::Instant,
    ) -> Result<reqwest::Response, CallError> {
        let mut request = relay
            .http
            .post(relay.url.clone())
            .headers(relay.headers.clone())
            .headers(headers)
            .header(reqwest::header::CONTENT_TYPE, "application/json")
            .header(reqwest::header::ACCEPT, "application/json, text/event-stream");
        if let Some(minter) = &self.minter {
            let token = minter.token_for(Some(&caller.into())).map_err(|e| CallError::Peer {
                peer: self.config.name.clone(),
                message: format!("cannot mint a token for the peer: {e}"),
            })?;
            request = request.bearer_auth(token);
        }
        let sent = tokio::time::timeout_at(deadline, request.body(body).send()).await;
        match sent {
            Ok(Ok(response)) => Ok(response),
            Ok(Err(error)) => {
                self.lost.notify_one();
                Err(CallError::PeerUnavailable { peer: self.config.name.clone(), reason: with_causes(&error) })
            }
            Err(_) => Err(self.timed_out()),
        }
    }

    /// The error of a call that outlived the peer's time limit.
    pub(crate) fn timed_out(&self) -> CallError {
        CallError::PeerTimeout { peer: self.config.name.clone(), limit_ms: self.config.timeout.as_millis() as u64 }
    }

    /// The peer's time limit for one call.
    pub(crate) fn timeout(&self) -> Duration {
        self.config.timeout
    }

    /// The host's id, which forwarded requests add to the hosts they crossed.
    pub(crate) fn host_id(&self) -> &str {
        &self.host_id
    }

    /// Refuse a forwarded request that already passed through this host or crossed too many.
    pub(crate) fn check_hops(&self, via: &[String]) -> Result<(), CallError> {
        loops::check_request(via, &self.host_id, self.max_hops).map_err(CallError::Loop)
    }

    /// The live connection, waiting briefly for one that is being made.
    async fn upstream(&self) -> Result<Upstream, CallError> {
        let _ = self.wake();
        let mut connected = self.upstream.subscribe();
        let waited = tokio::time::timeout(CONNECT_WAIT, connected.wait_for(Option::is_some)).await;
        match waited {
            Ok(Ok(upstream)) => upstream.clone().ok_or_else(|| self.unavailable()),
            _ => Err(self.unavailable()),
        }
    }

    fn unavailable(&self) -> CallError {
        let reason = match self.state.lock().map(|s| s.clone()) {
            Ok(State::Down { reason, .. }) => reason,
            Ok(State::Connecting { .. }) => "still connecting".to_owned(),
            _ => "not connected".to_owned(),
        };
        CallError::PeerUnavailable { peer: self.config.name.clone(), reason }
    }

    fn failed(&self, error: ServiceError) -> CallError {
        match error {
            ServiceError::McpError(error) => CallError::Upstream(error),
            ServiceError::Timeout { timeout } => {
                CallError::PeerTimeout { peer: self.config.name.clone(), limit_ms: timeout.as_millis() as u64 }
            }
            ServiceError::TransportClosed | ServiceError::TransportSend(_) => {
                self.lost.notify_one();
                CallError::PeerUnavailable { peer: self.config.name.clone(), reason: error.to_string() }
            }
            other => CallError::Peer { peer: self.config.name.clone(), message: other.to_string() },
        }
    }

    /// The `_meta` a forwarded request carries: the caller's (its progress token and the
    /// protocol version and client info aside, which rmcp sets for this connection), the
    /// capabilities of the caller rather than this host's (so a 2026-07-28 peer asks only for
    /// input the caller can give), and the hosts crossed.
    ///
    /// `tasks`: the caller's tasks extension goes with the request (the peer may answer with a
    /// task this host passes on); otherwise it is removed, and the peer runs a call inline or
    /// refuses a tool that runs only as a task with -32021.
    fn forwarded_meta(&self, cx: &CallContext, tasks: bool) -> Result<RequestMetaObject, CallError> {
        const CAPABILITIES: &str = "io.modelcontextprotocol/clientCapabilities";
        let mut meta = cx.meta.clone();
        // Only a token this host mints says who the caller is; nobody else gets the marker.
        let keep_caller = self.minter.is_some();
        meta.retain(|key, _| {
            (keep_caller || key != CALLER_KEY)
                && key != "progressToken"
                && !matches!(
                    key.as_str(),
                    "io.modelcontextprotocol/protocolVersion" | "io.modelcontextprotocol/clientInfo"
                )
        });
        if !tasks
            && let Some(Value::Object(capabilities)) = meta.get_mut(CAPABILITIES)
            && let Some(Value::Object(extensions)) = capabilities.get_mut("extensions")
        {
            extensions.remove(rmcp::model::TASKS_EXTENSION_ID);
        }
        if !meta.contains_key(CAPABILITIES) {
            let mut capabilities = serde_json::Map::new();
            for (name, declared) in
                [("sampling", cx.client.sampling), ("elicitation", cx.client.elicitation), ("roots", cx.client.roots)]
            {
                if declared {
                    capabilities.insert(name.to_owned(), json!({}));
                }
            }
            // A 2025-11-25 caller declared the extension at `initialize`, not in each request.
            if tasks {
                capabilities.insert("extensions".to_owned(), json!({ rmcp::model::TASKS_EXTENSION_ID: {} }));
            }
            meta.insert(CAPABILITIES.to_owned(), Value::Object(capabilities));
        }
        let mut via = loops::via(&cx.meta);
        loops::check_request(&via, &self.host_id, self.max_hops).map_err(CallError::Loop)?;
        via.push(self.host_id.clone());
        meta.insert(loops::VIA_KEY.to_owned(), json!(via));
        serde_json::from_value(Value::Object(meta))
            .map_err(|e| CallError::InvalidParams(format!("the request's _meta cannot be forwarded: {e}")))
    }

    /// Send one request to the peer and wait for its answer, with the peer's time limit.
    /// Dropping the future (the caller cancelled) cancels the request at the peer. When the
    /// request being served is traced, the forwarded one gets a span of its own, whose context
    /// its `_meta` carries to the peer.
    async fn request(&self, request: ClientRequest, cx: &CallContext, tasks: bool) -> Result<ServerResult, CallError> {
        let span = telemetry::send(request.method(), telemetry::target(&request), &self.config.name, None);
        let result = self.send(request, cx, tasks, span.as_ref()).await;
        if let Some(span) = &span {
            let ending = match &result {
                Ok(ServerResult::CallToolResult(result)) if result.is_error == Some(true) => {
                    telemetry::Ending::ToolError
                }
                Ok(_) => telemetry::Ending::Ok,
                Err(error) => telemetry::Ending::of_call_error(error),
            };
            telemetry::end_request(span, ending);
        }
        result
    }

    async fn send(
        &self,
        request: ClientRequest,
        cx: &CallContext,
        tasks: bool,
        span: Option<&telemetry::Span>,
    ) -> Result<ServerResult, CallError> {
        let mut meta = self.forwarded_meta(cx, tasks)?;
        if let Some(span) = span {
            telemetry::inject(span, &mut meta);
        }
        let upstream = self.upstream().await?;
        let call = self.calls.begin(&self.config.name, cx.events.clone());
        let mut options = PeerRequestOptions::no_options();
        options.timeout = Some(self.config.timeout);
        options.meta = Some(meta);
        let handle = upstream.send_request_with_option(request, options).await.map_err(|e| self.failed(e))?;
        if let Some(span) = span {
            telemetry::set_request_id(span, &handle.id);
        }
        call.set_request(handle.id.clone(), handle.progress_token.clone());
        let mut cancel = CancelOnDrop { upstream: Some(upstream), id: handle.id.clone() };
        let result = handle.await_response().await;
        cancel.upstream = None;
        self.calls.settle().await;
        result.map_err(|e| self.failed(e))
    }

    pub(crate) async fn call_tool(
        &self,
        name: &str,
        arguments: &Value,
        cx: CallContext,
    ) -> Result<Outcome<CallToolResult>, CallError> {
        let mut params = CallToolRequestParams::new(name.to_owned());
        params.arguments = arguments.as_object().cloned();
        params.input_responses = input_responses(&cx)?;
        params.request_state = cx.state.clone();
        let result = self.request(ClientRequest::CallToolRequest(CallToolRequest::new(params)), &cx, false).await?;
        match result {
            ServerResult::CallToolResult(result) => Ok(Outcome::Complete(result)),
            ServerResult::InputRequiredResult(result) => Ok(Outcome::InputRequired(input_required(result)?)),
            other => Err(self.unexpected("tools/call", &other)),
        }
    }

    /// A `tools/call` for a caller that declared the tasks extension: the peer may run the
    /// tool as a task, whose `CreateTaskResult` comes back as it is (the session gives it an
    /// id of this host's).
    pub(crate) async fn call_tool_or_task(
        &self,
        name: &str,
        arguments: &Value,
        cx: CallContext,
    ) -> Result<Outcome<ToolAnswer>, CallError> {
        let mut params = CallToolRequestParams::new(name.to_owned());
        params.arguments = arguments.as_object().cloned();
        params.input_responses = input_responses(&cx)?;
        params.request_state = cx.state.clone();
        let result = self.request(ClientRequest::CallToolRequest(CallToolRequest::new(params)), &cx, true).await?;
        match result {
            ServerResult::CallToolResult(result) => Ok(Outcome::Complete(ToolAnswer::Result(result))),
            ServerResult::CreateTaskResult(created) => Ok(Outcome::Complete(ToolAnswer::Task(created))),
            ServerResult::InputRequiredResult(result) => Ok(Outcome::InputRequired(input_required(result)?)),
            other => Err(self.unexpected("tools/call", &other)),
        }
    }

    /// `tasks/get` of the peer's task `remote_id`.
    pub(crate) async fn get_task(&self, remote_id: &str, cx: &CallContext) -> Result<GetTaskResult, CallError> {
        let request = ClientRequest::GetTaskRequest(GetTaskRequest::new(GetTaskParams::new(remote_id.to_owned())));
        match self.request(request, cx, true).await? {
            ServerResult::GetTaskResult(result) => Ok(result),
            other => Err(self.unexpected("tasks/get", &other)),
        }
    }

    /// `tasks/update` of the peer's task `remote_id`: the caller's answers to its questions.
    pub(crate) async fn update_task(
        &self,
        remote_id: &str,
        answers: InputResponses,
        cx: &CallContext,
    ) -> Result<(), CallError> {
        let params = UpdateTaskParams::new(remote_id.to_owned(), answers);
        self.request(ClientRequest::UpdateTaskRequest(UpdateTaskRequest::new(params)), cx, true).await?;
        Ok(())
    }

    /// `tasks/cancel` of the peer's task `remote_id`.
    pub(crate) async fn cancel_task(&self, remote_id: &str, cx: &CallContext) -> Result<(), CallError> {
        let params = CancelTaskParams::new(remote_id.to_owned());
        self.request(ClientRequest::CancelTaskRequest(CancelTaskRequest::new(params)), cx, true).await?;
        Ok(())
    }

    pub(crate) async fn get_prompt(
        &self,
        name: &str,
        arguments: &[(String, String)],
        cx: CallContext,
    ) -> Result<Outcome<GetPromptResult>, CallError> {
        let mut params = GetPromptRequestParams::new(name.to_owned());
        if !arguments.is_empty() {
            params.arguments = Some(arguments.iter().map(|(k, v)| (k.clone(), Value::String(v.clone()))).collect());
        }
        params.input_responses = input_responses(&cx)?;
        params.request_state = cx.state.clone();
        let result = self.request(ClientRequest::GetPromptRequest(GetPromptRequest::new(params)), &cx, false).await?;
        match result {
            ServerResult::GetPromptResult(result) => Ok(Outcome::Complete(result)),
            ServerResult::InputRequiredResult(result) => Ok(Outcome::InputRequired(input_required(result)?)),
            other => Err(self.unexpected("prompts/get", &other)),
        }
    }

    pub(crate) async fn read_resource(
        &self,
        uri: &str,
        cx: CallContext,
    ) -> Result<Outcome<ReadResourceResult>, CallError> {
        let mut params = ReadResourceRequestParams::new(uri.to_owned());
        params.input_responses = input_responses(&cx)?;
        params.request_state = cx.state.clone();
        let result =
            self.request(ClientRequest::ReadResourceRequest(ReadResourceRequest::new(params)), &cx, false).await?;
        match result {
            ServerResult::ReadResourceResult(result) => Ok(Outcome::Complete(result)),
            ServerResult::InputRequiredResult(result) => Ok(Outcome::InputRequired(input_required(result)?)),
            other => Err(self.unexpected("resources/read", &other)),
        }
    }

    pub(crate) async fn complete(
        &self,
        params: CompleteRequestParams,
        cx: CallContext,
    ) -> Result<CompleteResult, CallError> {
        let result = self.request(ClientRequest::CompleteRequest(CompleteRequest::new(params)), &cx, false).await?;
        match result {
            ServerResult::CompleteResult(result) => Ok(result),
            other => Err(self.unexpected("completion/complete", &other)),
        }
    }

    fn unexpected(&self, method: &str, result: &ServerResult) -> CallError {
        let kind = serde_json::to_value(result)
            .ok()
            .and_then(|v| v.get("resultType").and_then(Value::as_str).map(str::to_owned))
            .unwrap_or_else(|| "another kind of result".to_owned());
        CallError::Peer { peer: self.config.name.clone(), message: format!("answered {method} with {kind}") }
    }
}

/// Tells the peer a request is abandoned unless disarmed (by taking `upstream`).
struct CancelOnDrop {
    upstream: Option<Upstream>,
    id: RequestId,
}

impl Drop for CancelOnDrop {
    fn drop(&mut self) {
        let Some(upstream) = self.upstream.take() else { return };
        let params =
            CancelledNotificationParam::new(Some(self.id.clone()), Some("the caller cancelled the request".to_owned()));
        tokio::spawn(async move {
            let _ = upstream.notify_cancelled(params).await;
        });
    }
}

fn input_responses(cx: &CallContext) -> Result<Option<InputResponses>, CallError> {
    if cx.input_responses.is_empty() {
        return Ok(None);
    }
    let responses: serde_json::Map<String, Value> = cx.input_responses.iter().cloned().collect();
    serde_json::from_value(Value::Object(responses))
        .map(Some)
        .map_err(|e| CallError::InvalidParams(format!("inputResponses cannot be forwarded: {e}")))
}

/// A peer's MRTR result as the session's input-required outcome; the peer's `requestState`
/// rides along as the state (the session seals it again before it reaches the caller).
fn input_required(result: InputRequiredResult) -> Result<InputRequired, CallError> {
    let mut requests = Vec::new();
    for (key, request) in result.input_requests.unwrap_or_default() {
        let wire = serde_json::to_value(&request).unwrap_or(Value::Null);
        let params = wire.get("params").cloned().unwrap_or_else(|| json!({}));
        let request = match wire.get("method").and_then(Value::as_str) {
            Some("elicitation/create") => InputRequest::Elicitation(params),
            Some("sampling/createMessage") => InputRequest::Sampling(params),
            Some("roots/list") => InputRequest::Roots,
            other => {
                return Err(CallError::InvalidParams(format!(
                    "the peer asked for input fedmcp cannot relay: {}",
                    other.unwrap_or("(no method)")
                )));
            }
        };
        requests.push((key, request));
    }
    Ok(InputRequired { requests, state: result.request_state })
}
