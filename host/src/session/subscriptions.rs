//! Resource subscriptions: `resources/subscribe` and `resources/unsubscribe` for a legacy
//! session (its updates are sent by [`Session::forward_changes`]), and `subscriptions/listen`
//! for a 2026-07-28 caller. Each is admitted through the gate like any other use; what is
//! bounded here is how many resources one session or stream may follow.

use std::time::SystemTime;

use rmcp::ErrorData as McpError;
use rmcp::model::{SubscribeRequestParams, UnsubscribeRequestParams};
use rmcp::service::SubscriptionContext;
use serde_json::json;

use super::serve::failed;
use super::{Session, checked_uri};
use crate::auth::EntryKind;
use crate::auth::gate::{Method, Use};

/// How many resources one session may subscribe to.
pub(crate) const MAX_SUBSCRIPTIONS: usize = 1024;

impl Session {
    pub(super) async fn add_subscription(
        &self,
        request: SubscribeRequestParams,
        cx: &rmcp::service::RequestContext<rmcp::RoleServer>,
    ) -> Result<(), McpError> {
        let identity = self.identity(cx)?;
        checked_uri(&request.uri)?;
        let grant_name = self.catalog().resource_grant_name(&request.uri);
        let used = Use {
            method: Method::Subscribe,
            kind: EntryKind::Resource,
            entry: &request.uri,
            grant_name: &grant_name,
            annotations: None,
        };
        let permit = self.shared.guard.admit(&identity, &used).await?;
        let Ok(mut subscriptions) = self.subscriptions.lock() else {
            return Err(failed(permit, McpError::internal_error("the session's subscriptions are unavailable", None)));
        };
        if subscriptions.len() >= MAX_SUBSCRIPTIONS && !subscriptions.contains(&request.uri) {
            let message = format!(
                "this session already subscribes to {MAX_SUBSCRIPTIONS} resources, the most a session may; unsubscribe \
                 from one first"
            );
            return Err(failed(
                permit,
                McpError::invalid_request(message, Some(json!({ "limit": MAX_SUBSCRIPTIONS }))),
            ));
        }
        subscriptions.insert(request.uri);
        permit.finish("ok");
        Ok(())
    }

    pub(super) fn remove_subscription(&self, request: &UnsubscribeRequestParams) {
        if let Ok(mut subscriptions) = self.subscriptions.lock() {
            subscriptions.remove(&request.uri);
        }
    }

    /// Serve one `subscriptions/listen` stream until it ends.
    pub(super) async fn serve_listen(&self, subscription: &SubscriptionContext) -> Result<(), McpError> {
        let identity = self.identity(subscription.request_context())?;
        // Every resource the filter names must be within the caller's grant, as for
        // `resources/subscribe`; one use of the rate limit and one audit line for the stream.
        let uris = subscription.accepted().resource_subscriptions.clone().unwrap_or_default();
        if uris.len() > MAX_SUBSCRIPTIONS {
            return Err(McpError::invalid_params(
                format!("a listen filter may name at most {MAX_SUBSCRIPTIONS} resources ({} given)", uris.len()),
                None,
            ));
        }
        let mut resources = Vec::with_capacity(uris.len());
        for uri in &uris {
            checked_uri(uri)?;
            resources.push((uri.as_str(), self.catalog().resource_grant_name(uri)));
        }
        let resources: Vec<(&str, &str)> = resources.iter().map(|(uri, grant)| (*uri, grant.as_str())).collect();
        let permit = self.shared.guard.admit_listen(&identity, &resources).await?;
        let expiry = identity.expires.map(|at| {
            let left = at.duration_since(SystemTime::now()).unwrap_or_default();
            tokio::time::Instant::now() + left
        });
        let result = self.deliver(subscription, &identity, expiry).await;
        permit.finish("ok");
        result
    }
}
