//! The one decision on every use of an entry: grant, then rate limit, then consent, then an
//! audit record when the use ends.
//!
//! Every path that uses a tool, resource or prompt (the session's handlers for `tools/call`,
//! `resources/read`, `prompts/get`, `completion/complete`, `resources/subscribe`,
//! `subscriptions/listen`, and the relay's short road for `tools/call`) asks [`Guard::admit`]
//! and holds the [`Permit`] it returns until the use ends. A rule written here holds on every
//! path; a path cannot forget the audit record, because a permit that is dropped unfinished
//! records itself.
//!
//! Who the caller is comes first: [`Guard::caller`] takes the identity the HTTP edge verified,
//! or the local user where no token is required.

use std::sync::Arc;
use std::time::Instant;

use rmcp::ErrorData as McpError;
use rmcp::model::ToolAnnotations;
use serde_json::{Value, json};

use super::audit::{AuditLog, Decision, Record};
use super::consent::Policy;
use super::limits::Refused;
use super::{EntryKind, Guard, Identity};

/// The JSON-RPC error code of a refused use over the rate limit.
pub(crate) const RATE_LIMITED: i32 = -32029;

/// The methods that use an entry.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Method {
    CallTool,
    ReadResource,
    GetPrompt,
    Complete,
    Subscribe,
    Listen,
    /// `tasks/get`, `tasks/update`, `tasks/cancel`: uses of the tool whose task they name.
    GetTask,
    UpdateTask,
    CancelTask,
}

impl Method {
    pub(crate) fn as_str(self) -> &'static str {
        match self {
            Self::CallTool => "tools/call",
            Self::ReadResource => "resources/read",
            Self::GetPrompt => "prompts/get",
            Self::Complete => "completion/complete",
            Self::Subscribe => "resources/subscribe",
            Self::Listen => "subscriptions/listen",
            Self::GetTask => "tasks/get",
            Self::UpdateTask => "tasks/update",
            Self::CancelTask => "tasks/cancel",
        }
    }
}

/// One use of an entry, as the gate judges it.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Use<'a> {
    pub method: Method,
    pub kind: EntryKind,
    /// The entry as the caller named it (a tool's exposed name, a resource's URI): what the
    /// audit record shows.
    pub entry: &'a str,
    /// How grants name the entry (`<namespace>__<uri>` for a resource).
    pub grant_name: &'a str,
    /// A tool's annotations, for the consent policy; `None` for anything but `tools/call`.
    pub annotations: Option<&'a ToolAnnotations>,
}

/// What the consent policy asks of an admitted use before it runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Consent {
    /// Nothing: it may run.
    NotNeeded,
    /// The caller's user must say yes first (see [`Permit::consented`]).
    Ask,
}

impl Guard {
    /// The caller of a request that came over HTTP (`parts`) or stdio (`None`). With `[auth]`,
    /// an HTTP request without a verified identity is refused: the edge puts one on every
    /// request it lets through, so a missing one is a fault, never the local user.
    pub(crate) fn caller(&self, parts: Option<&axum::http::request::Parts>) -> Result<Arc<Identity>, McpError> {
        match parts.map(|parts| parts.extensions.get::<Arc<Identity>>()) {
            Some(Some(identity)) => Ok(identity.clone()),
            Some(None) if self.requires_token => Err(McpError::invalid_request(
                "this host requires a verified bearer token, and the request reached the session without one",
                None,
            )),
            _ => Ok(self.local.clone()),
        }
    }

    /// The consent policy for a tool call, without taking a use from anyone's rate limit: for
    /// a path that must know up front whether it could serve the call at all.
    pub(crate) fn consent_policy(&self, tool: &str, annotations: Option<&ToolAnnotations>) -> Policy {
        self.consent.policy_for(tool, annotations)
    }

    /// Judge one use: refused (and audited) if the caller's grant does not cover it, its rate
    /// limit is exhausted or the consent policy denies it; otherwise a permit that records the
    /// use when it ends.
    pub(crate) async fn admit(&self, identity: &Arc<Identity>, used: &Use<'_>) -> Result<Permit, McpError> {
        self.judge(identity, used, &[(used.entry, used.grant_name)]).await
    }

    /// Judge a `subscriptions/listen` stream: every resource its filter names (each as
    /// `(uri, grant name)`) must be within the caller's grant; the stream takes one use of the
    /// rate limit and gets one audit line.
    pub(crate) async fn admit_listen(
        &self,
        identity: &Arc<Identity>,
        resources: &[(&str, &str)],
    ) -> Result<Permit, McpError> {
        let used = Use {
            method: Method::Listen,
            kind: EntryKind::Resource,
            entry: "(notifications)",
            grant_name: "",
            annotations: None,
        };
        self.judge(identity, &used, resources).await
    }

    async fn judge(
        &self,
        identity: &Arc<Identity>,
        used: &Use<'_>,
        entries: &[(&str, &str)],
    ) -> Result<Permit, McpError> {
        let refuse = |entry: &str, reason: &'static str, message: String, error: McpError| {
            crate::metrics::refused(used.method.as_str(), reason);
            self.audit.record(Record {
                identity: Some(identity),
                method: used.method.as_str(),
                entry,
                decision: Decision::Denied(message),
                outcome: None,
                duration: None,
            });
            Err(error)
        };
        for (entry, grant_name) in entries {
            if !identity.allows(used.kind, grant_name) {
                let message = super::edge::denied_message(identity, used.kind, grant_name);
                let data = json!({ "required_scope": used.kind.scope_for(grant_name) });
                return refuse(entry, "grant", message.clone(), McpError::invalid_request(message, Some(data)));
            }
        }
        if let Some(limiter) = &self.limits {
            match limiter.check(&identity.limit_key()).await {
                Ok(()) => {}
                Err(Refused::Exceeded(exceeded)) => {
                    let message = format!(
                        "rate limit exceeded for {}: {} uses a minute; retry in {:.1} s",
                        identity.describe(),
                        exceeded.per_minute,
                        exceeded.retry_after.as_secs_f64()
                    );
                    let data = json!({ "retry_after_ms": exceeded.retry_after.as_millis() as u64 });
                    let error = McpError::new(rmcp::model::ErrorCode(RATE_LIMITED), message.clone(), Some(data));
                    return refuse(used.entry, "rate_limit", message, error);
                }
                Err(Refused::Unavailable(why)) => {
                    // Fail closed: without the shared count this use could exceed the limit.
                    let message = format!(
                        "{why}: the use is refused rather than let past the limit of {} a minute; retry shortly",
                        limiter.per_minute()
                    );
                    let data = json!({ "retry_after_ms": super::limits::REDIS_DEADLINE.as_millis() as u64 });
                    let error = McpError::new(rmcp::model::ErrorCode(RATE_LIMITED), message.clone(), Some(data));
                    return refuse(used.entry, "rate_limit_unavailable", message, error);
                }
            }
        }
        let consent = match used.method {
            Method::CallTool => match self.consent.policy_for(used.entry, used.annotations) {
                Policy::Allow => Consent::NotNeeded,
                Policy::Ask => Consent::Ask,
                Policy::Deny => {
                    let message = format!("the host's consent policy denies {}", used.entry);
                    let error = McpError::invalid_request(message.clone(), Some(json!({ "tool": used.entry })));
                    return refuse(used.entry, "consent_policy", message, error);
                }
            },
            _ => Consent::NotNeeded,
        };
        Ok(Permit {
            audit: self.audit.clone(),
            identity: identity.clone(),
            method: used.method,
            entry: used.entry.to_owned(),
            started: Instant::now(),
            decision: Decision::Allowed,
            consent,
            recorded: false,
        })
    }
}

/// An admitted use in progress. It records its audit line once: when finished, refused for
/// want of consent, or dropped (a cancelled request, a vanished client).
pub(crate) struct Permit {
    audit: Arc<AuditLog>,
    identity: Arc<Identity>,
    method: Method,
    entry: String,
    started: Instant,
    decision: Decision,
    consent: Consent,
    recorded: bool,
}

impl Permit {
    pub(crate) fn identity(&self) -> &Arc<Identity> {
        &self.identity
    }

    /// What the consent policy still asks before the use may run.
    pub(crate) fn consent(&self) -> Consent {
        self.consent
    }

    /// The answer to the consent question: `Ok` lets the use run; a refusal ends the permit
    /// (audited as asked and declined) with the error the caller gets.
    pub(crate) fn consented(&mut self, accepted: bool) -> Result<(), McpError> {
        self.decision = Decision::Asked { accepted };
        self.consent = Consent::NotNeeded;
        if accepted {
            return Ok(());
        }
        crate::metrics::denied("consent_declined");
        self.record(None);
        let message = format!("the user did not allow {} to run", self.entry);
        Err(McpError::invalid_request(message, Some(json!({ "tool": self.entry }))))
    }

    /// The user's answer to the consent question (an elicitation result, `None` if the caller
    /// sent none): only `accept` is consent; anything else refuses the use as
    /// [`Permit::consented`] does.
    pub(crate) fn answered(&mut self, answer: Option<&Value>) -> Result<(), McpError> {
        self.consented(answer.and_then(|answer| answer.get("action")).and_then(Value::as_str) == Some("accept"))
    }

    /// A later round of a use whose consent was given when it began.
    pub(crate) fn consented_earlier(&mut self) {
        self.consent = Consent::NotNeeded;
    }

    /// Refuse the use because its caller cannot be asked for consent (the permit is spent:
    /// its audit line is written).
    pub(crate) fn cannot_ask(&mut self, why: &str) -> McpError {
        let message =
            format!("{} runs only with the user's consent, and this client cannot be asked ({why})", self.entry);
        self.decision = Decision::Denied(message.clone());
        crate::metrics::denied("cannot_ask");
        self.record(None);
        McpError::invalid_request(message, Some(json!({ "tool": self.entry })))
    }

    /// The use ended: `outcome` is `ok`, `tool error`, `input required` or `error: ...`.
    pub(crate) fn finish(mut self, outcome: impl Into<String>) {
        self.record(Some(outcome.into()));
    }

    fn record(&mut self, outcome: Option<String>) {
        if std::mem::replace(&mut self.recorded, true) {
            return;
        }
        let duration = outcome.as_ref().map(|_| self.started.elapsed());
        crate::metrics::use_ended(self.method.as_str(), outcome.as_deref());
        self.audit.record(Record {
            identity: Some(&self.identity),
            method: self.method.as_str(),
            entry: &self.entry,
            decision: self.decision.clone(),
            outcome,
            duration,
        });
    }
}

impl Drop for Permit {
    fn drop(&mut self) {
        if !self.recorded {
            self.record(Some("error: abandoned (the request was cancelled or its client went away)".to_owned()));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::auth::Grants;
    use crate::auth::consent::ConsentRules;
    use crate::auth::limits::RateLimiter;

    /// A guard whose audit lines land in a buffer the test reads.
    fn guard(per_minute: Option<u32>, rules: Vec<(String, Policy)>) -> (Guard, Arc<std::sync::Mutex<Vec<u8>>>) {
        #[derive(Clone)]
        struct Shared(Arc<std::sync::Mutex<Vec<u8>>>);
        impl std::io::Write for Shared {
            fn write(&mut self, bytes: &[u8]) -> std::io::Result<usize> {
                self.0.lock().map_err(|_| std::io::ErrorKind::Other)?.extend_from_slice(bytes);
                Ok(bytes.len())
            }
            fn flush(&mut self) -> std::io::Result<()> {
                Ok(())
            }
        }
        let buffer = Arc::new(std::sync::Mutex::new(Vec::new()));
        let guard = Guard {
            audit: Arc::new(AuditLog::to_writer(Box::new(Shared(buffer.clone())))),
            consent: ConsentRules { rules, destructive: Policy::Ask },
            limits: per_minute.map(|per_minute| RateLimiter::local(per_minute, per_minute)),
            local: Arc::new(Identity::local()),
            requires_token: false,
        };
        (guard, buffer)
    }

    fn lines(buffer: &std::sync::Mutex<Vec<u8>>) -> Vec<serde_json::Value> {
        let text = String::from_utf8(buffer.lock().expect("buffer").clone()).expect("utf-8");
        text.lines().map(|line| serde_json::from_str(line).expect("a JSON line")).collect()
    }

    fn caller(scopes: &[&str]) -> Arc<Identity> {
        Arc::new(Identity {
            subject: "alice".into(),
            issuer: Some("idp".into()),
            actor: None,
            grants: Grants::from_scopes(scopes),
            expires: None,
        })
    }

    fn tool(name: &str) -> Use<'_> {
        Use { method: Method::CallTool, kind: EntryKind::Tool, entry: name, grant_name: name, annotations: None }
    }

    #[test]
    fn with_auth_an_http_request_without_an_identity_is_refused_not_taken_for_the_local_user() {
        let mut guard = Guard::permissive();
        let (parts, ()) = axum::http::Request::post("/mcp").body(()).expect("a request").into_parts();
        assert_eq!(guard.caller(Some(&parts)).expect("no [auth]: the local user").subject, "local");
        assert_eq!(guard.caller(None).expect("stdio").subject, "local");
        guard.requires_token = true;
        let refused = guard.caller(Some(&parts)).expect_err("an HTTP request the edge did not name");
        assert!(refused.message.contains("bearer token"), "{}", refused.message);
        assert_eq!(guard.caller(None).expect("stdio is still the local user").subject, "local");
        let (mut parts, ()) = axum::http::Request::post("/mcp").body(()).expect("a request").into_parts();
        parts.extensions.insert(caller(&["*"]));
        assert_eq!(guard.caller(Some(&parts)).expect("named by the edge").subject, "alice");
    }

    #[tokio::test]
    async fn grant_then_limit_then_consent_each_refusal_audited() {
        let (guard, buffer) = guard(Some(2), vec![("t__denied".into(), Policy::Deny), ("t__ask".into(), Policy::Ask)]);
        let alice = caller(&["tools:t__*"]);
        let outside = guard.admit(&alice, &tool("u__x")).await.err().expect("outside the grant");
        assert_eq!(outside.data.expect("data")["required_scope"], "tools:u__x");
        let denied = guard.admit(&alice, &tool("t__denied")).await.err().expect("consent policy deny");
        assert!(denied.message.contains("consent policy denies"), "{}", denied.message);
        let asked = guard.admit(&alice, &tool("t__ask")).await.expect("admitted");
        assert_eq!(asked.consent(), Consent::Ask);
        drop(asked);
        let limited = guard.admit(&alice, &tool("t__x")).await.err().expect("over the limit of 2");
        assert_eq!(limited.code.0, RATE_LIMITED);
        let lines = lines(&buffer);
        let decisions: Vec<_> = lines.iter().map(|l| l["decision"].as_str().unwrap_or_default().to_owned()).collect();
        assert_eq!(decisions, ["denied", "denied", "allowed", "denied"], "{lines:?}");
        assert!(lines[2]["outcome"].as_str().is_some_and(|o| o.contains("abandoned")), "{lines:?}");
    }

    #[tokio::test]
    async fn a_permit_records_once_with_its_outcome_and_consent() {
        let (guard, buffer) = guard(None, vec![("t__ask".into(), Policy::Ask)]);
        let alice = caller(&["*"]);
        let mut permit = guard.admit(&alice, &tool("t__ask")).await.expect("admitted");
        permit.consented(true).expect("accepted");
        permit.finish("ok");
        let mut declined = guard.admit(&alice, &tool("t__ask")).await.expect("admitted");
        assert!(declined.consented(false).is_err());
        drop(declined);
        let read = Use {
            method: Method::ReadResource,
            kind: EntryKind::Resource,
            entry: "file:///a",
            grant_name: "docs__file:///a",
            annotations: None,
        };
        let permit = guard.admit(&alice, &read).await.expect("no consent for reads");
        assert_eq!(permit.consent(), Consent::NotNeeded);
        permit.finish("ok");
        let lines = lines(&buffer);
        assert_eq!(lines.len(), 3, "{lines:?}");
        assert_eq!(lines[0]["decision"], "asked");
        assert_eq!(lines[0]["outcome"], "ok");
        assert_eq!(lines[1]["decision"], "asked");
        assert!(lines[1]["outcome"].is_null(), "declined: not run");
        assert_eq!(lines[2]["method"], "resources/read");
    }

    #[tokio::test]
    async fn only_an_accepted_elicitation_is_consent() {
        let (guard, buffer) = guard(None, vec![("t__ask".into(), Policy::Ask)]);
        let alice = caller(&["*"]);
        for answer in [None, Some(json!({ "action": "decline" })), Some(json!({ "action": "cancel" })), Some(json!({}))]
        {
            let mut permit = guard.admit(&alice, &tool("t__ask")).await.expect("admitted");
            assert!(permit.answered(answer.as_ref()).is_err(), "{answer:?} is no consent");
        }
        let mut accepted = guard.admit(&alice, &tool("t__ask")).await.expect("admitted");
        accepted.answered(Some(&json!({ "action": "accept", "content": {} }))).expect("accept is consent");
        accepted.finish("ok");
        let lines = lines(&buffer);
        let outcomes: Vec<_> = lines.iter().map(|l| l["outcome"].clone()).collect();
        assert_eq!(outcomes, [Value::Null, Value::Null, Value::Null, Value::Null, json!("ok")], "{lines:?}");
    }
}
