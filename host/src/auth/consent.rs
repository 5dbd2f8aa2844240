//! Consent policy: whether a tool runs, is refused, or runs only after the caller's user says
//! yes (an elicitation sent to the client that made the call).

use rmcp::model::ToolAnnotations;

use super::glob_matches;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Policy {
    Allow,
    Deny,
    Ask,
}

impl std::str::FromStr for Policy {
    type Err = String;

    fn from_str(text: &str) -> Result<Self, String> {
        match text {
            "allow" => Ok(Self::Allow),
            "deny" => Ok(Self::Deny),
            "ask" => Ok(Self::Ask),
            other => Err(format!("{other:?} is not \"allow\", \"deny\" or \"ask\"")),
        }
    }
}

/// `[consent]`: rules over exposed tool names (first match wins), then a policy for tools whose
/// annotations say they are destructive, then `allow`.
#[derive(Debug, Clone)]
pub struct ConsentRules {
    pub rules: Vec<(String, Policy)>,
    pub destructive: Policy,
}

impl Default for ConsentRules {
    fn default() -> Self {
        Self { rules: Vec::new(), destructive: Policy::Ask }
    }
}

impl ConsentRules {
    /// The policy for the tool exposed as `name`, with these annotations.
    pub(crate) fn policy_for(&self, name: &str, annotations: Option<&ToolAnnotations>) -> Policy {
        if let Some((_, policy)) = self.rules.iter().find(|(pattern, _)| glob_matches(pattern, name)) {
            return *policy;
        }
        // Only an explicit `destructiveHint: true` on a tool that is not read-only counts: the
        // hint is advisory, and most tools say nothing.
        let destructive =
            annotations.is_some_and(|a| a.destructive_hint == Some(true) && a.read_only_hint != Some(true));
        if destructive { self.destructive } else { Policy::Allow }
    }
}

/// The question put to the user.
pub(crate) fn question(tool: &str, arguments: &serde_json::Value) -> String {
    let shown = crate::text::clip(arguments.to_string(), 300);
    format!("Allow the tool {tool} to run with {shown}?")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn annotations(destructive: Option<bool>) -> Option<ToolAnnotations> {
        destructive.map(|d| ToolAnnotations::new().destructive(d))
    }

    #[test]
    fn rules_then_destructive_hint_then_allow() {
        let rules = ConsentRules {
            rules: vec![("files__delete*".into(), Policy::Deny), ("files__*".into(), Policy::Allow)],
            destructive: Policy::Ask,
        };
        assert_eq!(rules.policy_for("files__delete_all", annotations(Some(true)).as_ref()), Policy::Deny);
        assert_eq!(rules.policy_for("files__write", annotations(Some(true)).as_ref()), Policy::Allow);
        assert_eq!(rules.policy_for("db__drop", annotations(Some(true)).as_ref()), Policy::Ask);
        assert_eq!(rules.policy_for("db__query", annotations(Some(false)).as_ref()), Policy::Allow);
        assert_eq!(rules.policy_for("db__other", annotations(None).as_ref()), Policy::Allow);
    }
}
