//! What reaches a client besides its answers: a running call's events (log messages at the
//! level the client asked for, progress, list changes, a plugin's questions to a legacy
//! session's client), and the catalog's list changes and resource updates, to a legacy
//! session or a `subscriptions/listen` stream, while its caller's token is valid and its grant
//! covers them.

use std::time::SystemTime;

use rmcp::model::{
    LoggingLevel, LoggingMessageNotificationParam, ProgressNotificationParam, ResourceUpdatedNotificationParam,
};
use rmcp::service::{RequestContext, SubscriptionContext};
use rmcp::{ErrorData as McpError, RoleServer};

use super::input_required::ask_client;
use super::{Session, is_stateless};
use crate::auth::{EntryKind, Identity};
use crate::plugin::{CallEvent, ListKind};

impl Session {
    /// Pass one of a running call's events on to its caller.
    pub(super) async fn forward_event(&self, cx: &RequestContext<RoleServer>, event: CallEvent) {
        match event {
            CallEvent::Log { level, logger, data } => {
                tracing::debug!(?level, logger = logger.as_deref().unwrap_or("plugin"), %data, "plugin log");
                let threshold = if is_stateless(cx) {
                    cx.meta.log_level()
                } else {
                    self.log_level.lock().map(|l| *l).unwrap_or(None).or(Some(LoggingLevel::Debug))
                };
                let Some(threshold) = threshold else { return };
                if severity(level) < severity(threshold) {
                    return;
                }
                let mut param = LoggingMessageNotificationParam::new(level, data);
                param.logger = logger;
                let _ = cx.peer.notify_logging_message(param).await;
            }
            CallEvent::Progress { progress, total, message } => {
                if let Some(token) = cx.meta.get_progress_token() {
                    let mut param = ProgressNotificationParam::new(token, progress);
                    param.total = total;
                    param.message = message;
                    let _ = cx.peer.notify_progress(param).await;
                }
            }
            CallEvent::ListChanged(kind) => self.catalog().notify(kind),
            CallEvent::ClientRequest { request, reply } => {
                let answer = if is_stateless(cx) {
                    // Only once the call has ended: the caller can no longer be asked.
                    Err(McpError::internal_error("the call ended before its question could be asked", None))
                } else {
                    ask_client(cx, &request).await
                };
                let _ = reply.send(answer);
            }
        }
    }

    /// Pass the catalog's list changes, and updates of the resources this session subscribed
    /// to, on to a legacy session's client, while the token of its latest request is valid.
    pub(super) fn forward_changes(&self, peer: rmcp::Peer<RoleServer>) {
        use tokio::sync::broadcast::error::RecvError;
        let mut changes = self.catalog().subscribe();
        let mut updates = self.catalog().subscribe_updates();
        // A list changed between the session's start and now (a plugin of the first load
        // arrived): the client may have listed before it, so it is told all the same.
        let missed = self.catalog().announced() != self.announced_at_start;
        let subscriptions = self.subscriptions.clone();
        let latest = self.latest.clone();
        let caller = move || latest.lock().ok().and_then(|latest| latest.clone());
        let expired = {
            let caller = caller.clone();
            move || caller().is_none_or(|identity| identity.expires.is_some_and(|at| SystemTime::now() >= at))
        };
        let catalog = self.shared.catalog.clone();
        let may_see = move |uri: &str| {
            caller().is_some_and(|identity| identity.allows(EntryKind::Resource, &catalog.resource_grant_name(uri)))
        };
        tokio::spawn(async move {
            if missed && !expired() {
                let told = async {
                    peer.notify_tool_list_changed().await?;
                    peer.notify_resource_list_changed().await?;
                    peer.notify_prompt_list_changed().await
                };
                if told.await.is_err() {
                    return; // the session is gone
                }
            }
            loop {
                let sent = tokio::select! {
                    change = changes.recv() => match change {
                        Ok(_) if expired() => continue,
                        Ok(ListKind::Tools) => peer.notify_tool_list_changed().await,
                        Ok(ListKind::Resources) => peer.notify_resource_list_changed().await,
                        Ok(ListKind::Prompts) => peer.notify_prompt_list_changed().await,
                        Err(RecvError::Lagged(_)) => continue,
                        Err(RecvError::Closed) => break,
                    },
                    update = updates.recv() => match update {
                        Ok(_) if expired() => continue,
                        Ok(uri) => {
                            let subscribed = subscriptions.lock().map(|s| s.contains(&uri)).unwrap_or(false);
                            // Judged again now: a reload may have moved the resource, a later
                            // token may grant less.
                            if !subscribed || !may_see(&uri) {
                                continue;
                            }
                            peer.notify_resource_updated(ResourceUpdatedNotificationParam::new(uri)).await
                        }
                        Err(RecvError::Lagged(_)) => continue,
                        Err(RecvError::Closed) => break,
                    },
                };
                if sent.is_err() {
                    break; // the session is gone
                }
            }
        });
    }

    /// The notifications of one `subscriptions/listen` stream, until the client cancels it or
    /// the token that opened it expires.
    pub(super) async fn deliver(
        &self,
        subscription: &SubscriptionContext,
        identity: &Identity,
        expiry: Option<tokio::time::Instant>,
    ) -> Result<(), McpError> {
        let mut changes = self.catalog().subscribe();
        let mut updates = self.catalog().subscribe_updates();
        let expired = async {
            match expiry {
                Some(at) => tokio::time::sleep_until(at).await,
                None => std::future::pending().await,
            }
        };
        tokio::pin!(expired);
        loop {
            tokio::select! {
                () = subscription.cancelled() => return Ok(()),
                () = &mut expired => {
                    tracing::debug!(caller = %identity.describe(), "a listen stream ended with its token");
                    return Ok(());
                }
                update = updates.recv() => {
                    let uri = match update {
                        Ok(uri) => uri,
                        Err(tokio::sync::broadcast::error::RecvError::Lagged(_)) => continue,
                        Err(tokio::sync::broadcast::error::RecvError::Closed) => return Ok(()),
                    };
                    let wanted = subscription.accepted().resource_subscriptions.as_ref().is_some_and(|uris| uris.contains(&uri));
                    if !wanted || !identity.allows(EntryKind::Resource, &self.catalog().resource_grant_name(&uri)) {
                        continue;
                    }
                    let notification = rmcp::model::ServerNotification::ResourceUpdatedNotification(
                        rmcp::model::ResourceUpdatedNotification::new(ResourceUpdatedNotificationParam::new(uri)),
                    );
                    if subscription.sink().send(notification).await.is_err() {
                        return Ok(());
                    }
                }
                change = changes.recv() => {
                    let kind = match change {
                        Ok(kind) => kind,
                        Err(tokio::sync::broadcast::error::RecvError::Lagged(_)) => continue,
                        Err(tokio::sync::broadcast::error::RecvError::Closed) => return Ok(()),
                    };
                    let accepted = subscription.accepted();
                    let notification = match kind {
                        ListKind::Tools if accepted.tools_list_changed == Some(true) => {
                            rmcp::model::ServerNotification::ToolListChangedNotification(Default::default())
                        }
                        ListKind::Prompts if accepted.prompts_list_changed == Some(true) => {
                            rmcp::model::ServerNotification::PromptListChangedNotification(Default::default())
                        }
                        ListKind::Resources if accepted.resources_list_changed == Some(true) => {
                            rmcp::model::ServerNotification::ResourceListChangedNotification(Default::default())
                        }
                        _ => continue,
                    };
                    if subscription.sink().send(notification).await.is_err() {
                        return Ok(());
                    }
                }
            }
        }
    }
}

/// A log level's rank, to compare a message with the client's threshold.
fn severity(level: LoggingLevel) -> u8 {
    match level {
        LoggingLevel::Debug => 0,
        LoggingLevel::Info => 1,
        LoggingLevel::Notice => 2,
        LoggingLevel::Warning => 3,
        LoggingLevel::Error => 4,
        LoggingLevel::Critical => 5,
        LoggingLevel::Alert => 6,
        LoggingLevel::Emergency => 7,
    }
}
