//! Sealed MRTR `requestState`: what a state is bound to ([`StateBinding`]), sealing a plugin's
//! state for a 2026-07-28 caller's retry and opening it again, and the same for a held call's
//! id. A state opens only for a retry of the same request by the same caller.

use std::time::Duration;

use rmcp::ErrorData as McpError;
use rmcp::model::SealOptions;
use serde_json::{Value, json};

use super::{Session, Shared};
use crate::auth::Identity;
use crate::held::HOLD_LIMIT;

/// How long a sealed `requestState` stays valid.
pub(super) const REQUEST_STATE_TTL: Duration = Duration::from_secs(15 * 60);

/// What a sealed `requestState` belongs to: the method, the entry, the caller (issuer and
/// subject) and a digest of the request's arguments. A state is opened only by a retry of the
/// same request from the same caller: another caller with the same grant, or the same caller
/// with other arguments, cannot replay it.
pub(crate) struct StateBinding(Vec<u8>);

impl StateBinding {
    pub(crate) fn new(method: &str, target: &str, identity: &Identity, arguments: &Value) -> Self {
        Self::tagged("state", method, target, identity, arguments)
    }

    /// The binding of the host's own consent question for a tool call.
    pub(super) fn consent(tool: &str, identity: &Identity, arguments: &Value) -> Self {
        Self::tagged("consent", "tools/call", tool, identity, arguments)
    }

    fn tagged(tag: &str, method: &str, target: &str, identity: &Identity, arguments: &Value) -> Self {
        // A JSON array: no choice of names or values can make two bindings the same text.
        let parts = json!([
            tag,
            method,
            target,
            identity.issuer,
            identity.subject,
            identity.actor,
            arguments_digest(arguments)
        ]);
        Self(parts.to_string().into_bytes())
    }
}

/// SHA-256 of the arguments in a canonical form (object keys sorted at every depth), so a
/// retry that sends the same arguments in another key order still matches.
pub(crate) fn arguments_digest(arguments: &Value) -> String {
    use sha2::Digest;
    /// Writes JSON text straight into the hasher, so no scalar or key is copied to be hashed.
    struct Fed<'a>(&'a mut sha2::Sha256);
    impl std::io::Write for Fed<'_> {
        fn write(&mut self, bytes: &[u8]) -> std::io::Result<usize> {
            self.0.update(bytes);
            Ok(bytes.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }
    fn feed(hasher: &mut sha2::Sha256, value: &Value) {
        match value {
            Value::Object(map) => {
                let mut entries: Vec<(&String, &Value)> = map.iter().collect();
                entries.sort_unstable_by(|a, b| a.0.cmp(b.0));
                hasher.update(b"{");
                for (key, value) in entries {
                    // A key is fed as the JSON string it is on the wire, like a string value.
                    // Writing into a hasher cannot fail.
                    let _ = serde_json::to_writer(Fed(hasher), key);
                    hasher.update(b":");
                    feed(hasher, value);
                    hasher.update(b",");
                }
                hasher.update(b"}");
            }
            Value::Array(items) => {
                hasher.update(b"[");
                for item in items {
                    feed(hasher, item);
                    hasher.update(b",");
                }
                hasher.update(b"]");
            }
            scalar => {
                let _ = serde_json::to_writer(Fed(hasher), scalar);
            }
        }
    }
    let mut hasher = sha2::Sha256::new();
    feed(&mut hasher, arguments);
    hex(&hasher.finalize())
}

/// Lowercase hexadecimal of `bytes`.
fn hex(bytes: &[u8]) -> String {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    let mut text = String::with_capacity(bytes.len() * 2);
    for byte in bytes {
        text.push(char::from(DIGITS[usize::from(byte >> 4)]));
        text.push(char::from(DIGITS[usize::from(byte & 0x0f)]));
    }
    text
}

/// What a held call's `requestState` is bound to: the request and the caller it holds a call
/// for (the held call is also checked against its owner when resumed).
fn held_binding(held_target: &str, identity: &Identity) -> Vec<u8> {
    json!(["held", held_target, identity.issuer, identity.subject, identity.actor]).to_string().into_bytes()
}

impl Shared {
    /// Seal what an MRTR retry must bring back unchanged, bound to the request and its caller.
    pub(crate) fn seal_state(&self, binding: &StateBinding, state: &Option<String>) -> Result<String, McpError> {
        let options = SealOptions::new().associated_data(&binding.0).ttl(REQUEST_STATE_TTL);
        self.codec
            .seal_json_with(state, &options)
            .map_err(|e| McpError::internal_error(format!("cannot seal requestState: {e}"), None))
    }

    /// Whether `sealed` is a state sealed under `binding` (its contents aside).
    pub(super) fn state_opens(&self, binding: &StateBinding, sealed: &str) -> bool {
        self.codec.open_json_with::<Option<String>>(sealed, &binding.0).is_ok()
    }
}

impl Session {
    /// Verify and open the `requestState` of an MRTR retry.
    pub(super) fn open_state(&self, binding: &StateBinding, sealed: &str) -> Result<Option<String>, McpError> {
        self.shared.codec.open_json_with::<Option<String>>(sealed, &binding.0).map_err(|e| {
            McpError::invalid_params(
                format!(
                    "requestState failed its integrity check (it belongs to another request, caller or arguments): {e}"
                ),
                None,
            )
        })
    }

    /// The held call a retry's `requestState` names, if it names one (a state sealed for a
    /// held call cannot be mistaken for an owner's state: it is sealed under another binding):
    /// the process that holds it ([`Shared::instance`]) and its id there.
    pub(super) fn open_held(&self, held_target: &str, sealed: &str, identity: &Identity) -> Option<(String, u64)> {
        let binding = held_binding(held_target, identity);
        self.shared.codec.open_json_with::<(String, u64)>(sealed, &binding).ok()
    }

    /// Seal held call `id` of this process. Replicas share the sealing key, and each numbers
    /// its held calls from 1: the process's instance in the state keeps a retry that reaches
    /// another replica (or this host after a restart) from resuming another call of the same
    /// caller there.
    pub(super) fn seal_held(&self, held_target: &str, id: u64, identity: &Identity) -> Result<String, McpError> {
        let binding = held_binding(held_target, identity);
        let options = SealOptions::new().associated_data(&binding).ttl(HOLD_LIMIT);
        self.shared
            .codec
            .seal_json_with(&(self.shared.instance.as_str(), id), &options)
            .map_err(|e| McpError::internal_error(format!("cannot seal requestState: {e}"), None))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_arguments_digest_is_lowercase_hex_sha256() {
        // The canonical text: keys sorted at every depth, each member and item followed by a
        // comma, keys and scalars as compact JSON (escapes included).
        use sha2::Digest;
        let canonical = r#"{"a\"b":[1,"x\n",null,true,2.5,],"z":{"k":-3,},}"#;
        let expected: String =
            sha2::Sha256::digest(canonical.as_bytes()).iter().map(|byte| format!("{byte:02x}")).collect();
        let arguments = json!({ "z": { "k": -3 }, "a\"b": [1, "x\n", null, true, 2.5] });
        assert_eq!(arguments_digest(&arguments), expected);
    }

    /// The digest as versions before 2026-12-03 computed it (each key and scalar through
    /// `Value::to_string`): a state sealed by such a version must still open.
    fn arguments_digest_before(arguments: &Value) -> String {
        use sha2::Digest;
        fn feed(hasher: &mut sha2::Sha256, value: &Value) {
            match value {
                Value::Object(map) => {
                    let mut keys: Vec<&String> = map.keys().collect();
                    keys.sort();
                    hasher.update(b"{");
                    for key in keys {
                        feed(hasher, &Value::String(key.clone()));
                        hasher.update(b":");
                        feed(hasher, &map[key]);
                        hasher.update(b",");
                    }
                    hasher.update(b"}");
                }
                Value::Array(items) => {
                    hasher.update(b"[");
                    for item in items {
                        feed(hasher, item);
                        hasher.update(b",");
                    }
                    hasher.update(b"]");
                }
                scalar => hasher.update(scalar.to_string().as_bytes()),
            }
        }
        let mut hasher = sha2::Sha256::new();
        feed(&mut hasher, arguments);
        hasher.finalize().iter().map(|byte| format!("{byte:02x}")).collect()
    }

    #[test]
    fn the_arguments_digest_is_the_one_earlier_versions_sealed_under() {
        let cases = [
            json!(null),
            json!("top-level string with \u{2028} and \u{0} and \"quotes\""),
            json!(u64::MAX),
            json!(i64::MIN),
            json!(-0.0),
            json!(1e300),
            json!(0.1),
            json!({}),
            json!([]),
            json!({ "é": 1, "e": 2, "Z": 3, "": [null, false, { "b": "\u{1F600}", "a": "\t\r\u{7f}" }] }),
            json!({ "nested": { "deeper": { "x": [1.5, -2, "s"], "a\u{0}b": true } } }),
        ];
        for arguments in &cases {
            assert_eq!(arguments_digest(arguments), arguments_digest_before(arguments), "{arguments}");
        }
    }

    #[test]
    fn a_state_binding_covers_caller_and_arguments_in_any_key_order() {
        let alice = Identity::local();
        let mut bob = Identity::local();
        bob.subject = "bob".into();
        let mut other_issuer = Identity::local();
        other_issuer.issuer = Some("elsewhere".into());
        let arguments = json!({ "a": 1, "b": { "c": [1, 2], "d": "x" } });
        let reordered: Value = serde_json::from_str(r#"{ "b": { "d": "x", "c": [1, 2] }, "a": 1 }"#).expect("JSON");
        let binding =
            |identity: &Identity, arguments: &Value| StateBinding::new("tools/call", "t", identity, arguments).0;
        assert_eq!(binding(&alice, &arguments), binding(&alice, &reordered));
        assert_ne!(binding(&alice, &arguments), binding(&bob, &arguments));
        assert_ne!(binding(&alice, &arguments), binding(&other_issuer, &arguments));
        assert_ne!(binding(&alice, &arguments), binding(&alice, &json!({ "a": 2, "b": { "c": [1, 2], "d": "x" } })));
        assert_ne!(binding(&alice, &json!([1, 2])), binding(&alice, &json!([2, 1])));
        assert_ne!(
            StateBinding::new("tools/call", "t", &alice, &arguments).0,
            StateBinding::consent("t", &alice, &arguments).0
        );
    }
}
