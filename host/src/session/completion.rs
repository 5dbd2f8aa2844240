//! `completion/complete`: suggestions for a prompt's or a resource template's argument. A
//! completion asks for no input and sends no events, so it skips the input-required driver;
//! it is admitted through the gate and audited like every other use.

use rmcp::model::{CompleteRequestParams, CompleteResult, Reference};
use rmcp::service::RequestContext;
use rmcp::{ErrorData as McpError, RoleServer};

use super::serve::{failed, finish};
use super::{Session, call_error, checked_uri};
use crate::auth::EntryKind;
use crate::auth::gate::{Method, Use};
use crate::plugin::CallContext;

/// The owner of a completion's reference and how grants name it: the same lookup decides both,
/// so the grant checked is the grant of the owner that serves it.
enum CompletionRoute {
    Prompt(crate::catalog::Route),
    Template(crate::catalog::Owner),
}

impl Session {
    pub(super) async fn serve_completion(
        &self,
        request: CompleteRequestParams,
        cx: &RequestContext<RoleServer>,
    ) -> Result<CompleteResult, McpError> {
        let identity = self.identity(cx)?;
        let call_cx = CallContext { meta: self.forwardable_meta(cx, &identity), ..CallContext::default() };
        let (kind, entry, grant_name, route) = match &request.r#ref {
            Reference::Prompt(prompt) => {
                let route = self.catalog().prompt(&prompt.name).map(CompletionRoute::Prompt);
                (EntryKind::Prompt, prompt.name.clone(), prompt.name.clone(), route)
            }
            Reference::Resource(resource) => {
                checked_uri(&resource.uri)?;
                let route = self.catalog().template_owner(&resource.uri);
                let grant_name = self.catalog().template_grant_name(&resource.uri);
                (EntryKind::Resource, resource.uri.clone(), grant_name, route.map(CompletionRoute::Template))
            }
            _ => return Err(McpError::invalid_params("unsupported completion reference", None)),
        };
        let used = Use { method: Method::Complete, kind, entry: &entry, grant_name: &grant_name, annotations: None };
        let permit = self.shared.guard.admit(&identity, &used).await?;
        let result = match route {
            Some(CompletionRoute::Prompt(route)) => {
                route.owner.complete(Ok(&route.local_name), &request, call_cx).await
            }
            Some(CompletionRoute::Template(owner)) => owner.complete(Err(&entry), &request, call_cx).await,
            None => {
                let what = if kind == EntryKind::Prompt { "prompt" } else { "resource template" };
                return Err(failed(permit, McpError::invalid_params(format!("unknown {what}: {entry}"), None)));
            }
        };
        let result = result.map_err(call_error);
        finish(permit, &result);
        result
    }
}
