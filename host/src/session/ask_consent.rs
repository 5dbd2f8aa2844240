//! Asking the caller's user for the consent the gate requires of a tool call, and taking the
//! answer. Whether consent is needed, and what counts as given, is the gate's decision
//! ([`crate::auth::gate::Permit`]); this is the protocol of asking: an elicitation sent to a
//! legacy session's client, or an MRTR question (with a sealed state) for a 2026-07-28 caller.

use rmcp::model::{InputRequests, InputRequiredResult};
use rmcp::service::RequestContext;
use rmcp::{ErrorData as McpError, RoleServer};
use serde_json::json;

use super::input_required::{ask_client, mcp_input_request};
use super::{Sent, Session, StateBinding, client_support, is_stateless};
use crate::auth::consent;
use crate::auth::gate::Permit;
use crate::plugin::InputRequest;

/// The key of the consent question among a request's input requests.
const CONSENT_KEY: &str = "fedmcp.consent";

impl Session {
    /// Ask the caller's user for consent to a tool call the policy says to ask about, or
    /// accept the answer to that question. `Ok(Some(result))`: the question, to return to a
    /// 2026-07-28 caller; `Ok(None)`: consent given, go on.
    pub(super) async fn consent(
        &self,
        cx: &RequestContext<RoleServer>,
        permit: &mut Permit,
        tool: &str,
        sent: &mut Sent,
    ) -> Result<Option<InputRequiredResult>, McpError> {
        let identity = permit.identity().clone();
        let binding = StateBinding::consent(tool, &identity, &sent.arguments);
        if let Some(sealed) = sent.request_state.as_deref() {
            if self.shared.state_opens(&binding, sealed) {
                let answer = sent.input_responses.as_mut().and_then(|responses| responses.remove(CONSENT_KEY));
                sent.request_state = None;
                permit.answered(answer.as_ref())?;
                return Ok(None);
            }
            // A later round of a call that already began: its state was sealed for this
            // caller and these arguments (or it holds this caller's call at a peer), which
            // happened only after consent was given. Anything else is not consent.
            let call_state = StateBinding::new("tools/call", tool, &identity, &sent.arguments);
            let held = self.open_held(&format!("tools/call\n{tool}"), sealed, &identity).is_some();
            if held || self.shared.state_opens(&call_state, sealed) {
                permit.consented_earlier();
                return Ok(None);
            }
            return Err(McpError::invalid_params(
                "requestState failed its integrity check (it belongs to another request, caller or arguments)",
                None,
            ));
        }
        if !client_support(cx).elicitation {
            return Err(permit.cannot_ask("it does not declare the elicitation capability"));
        }
        let question = InputRequest::Elicitation(json!({
            "mode": "form",
            "message": consent::question(tool, &sent.arguments),
            "requestedSchema": { "type": "object", "properties": {} },
        }));
        crate::metrics::consent_asked();
        if is_stateless(cx) {
            let state = self.shared.seal_state(&binding, &None)?;
            let mut requests = InputRequests::new();
            requests.insert(CONSENT_KEY.to_owned(), mcp_input_request(&question)?);
            return Ok(Some(InputRequiredResult::new(Some(requests), Some(state))));
        }
        let answer = ask_client(cx, &question).await?;
        permit.answered(Some(&answer))?;
        Ok(None)
    }
}
