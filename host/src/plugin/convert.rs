//! What a plugin returns (WIT types) to the MCP model (rmcp types), and back for contexts.
//!
//! Results are built as MCP wire JSON and deserialized into the rmcp model, so the JSON
//! this module writes is exactly what clients see.

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as BASE64;
use rmcp::model::{
    CallToolResult, CompleteResult, CompletionInfo, ContentBlock, GetPromptResult, Prompt, ReadResourceResult,
    Resource, ResourceTemplate, Tool,
};
use serde_json::{Map, Value, json};

use super::bindings::exports::fedmcp::plugin::{completions, prompts, resources, tools};
use super::bindings::fedmcp::plugin::types;
use super::{CallContext, CallError, InputRequest, InputRequired, Outcome};

fn insert_some(object: &mut Map<String, Value>, key: &str, value: Option<impl Into<Value>>) {
    if let Some(value) = value {
        object.insert(key.to_owned(), value.into());
    }
}

fn from_wire<T: serde::de::DeserializeOwned>(plugin: &str, value: Value) -> Result<T, CallError> {
    serde_json::from_value(value).map_err(|e| CallError::BadOutput { plugin: plugin.to_owned(), reason: e.to_string() })
}

fn json_object(what: &str, text: &str) -> Result<Map<String, Value>, String> {
    match serde_json::from_str::<Value>(text) {
        Ok(Value::Object(object)) => Ok(object),
        Ok(_) => Err(format!("{what} is not a JSON object")),
        Err(e) => Err(format!("{what} is not valid JSON: {e}")),
    }
}

pub(super) fn tool(raw: tools::Tool) -> Result<Tool, String> {
    let what = format!("tool {:?}", raw.name);
    let mut object = Map::new();
    object.insert("name".into(), raw.name.clone().into());
    insert_some(&mut object, "title", raw.title);
    insert_some(&mut object, "description", raw.description);
    object.insert("inputSchema".into(), json_object(&format!("{what}: input schema"), &raw.input_schema)?.into());
    if let Some(schema) = raw.output_schema {
        object.insert("outputSchema".into(), json_object(&format!("{what}: output schema"), &schema)?.into());
    }
    if let Some(a) = raw.annotations {
        let mut annotations = Map::new();
        insert_some(&mut annotations, "title", a.title);
        insert_some(&mut annotations, "readOnlyHint", a.read_only);
        insert_some(&mut annotations, "destructiveHint", a.destructive);
        insert_some(&mut annotations, "idempotentHint", a.idempotent);
        insert_some(&mut annotations, "openWorldHint", a.open_world);
        object.insert("annotations".into(), annotations.into());
    }
    serde_json::from_value(object.into()).map_err(|e| format!("{what}: {e}"))
}

pub(super) fn resource(raw: resources::Resource) -> Result<Resource, String> {
    let mut object = Map::new();
    object.insert("uri".into(), raw.uri.into());
    object.insert("name".into(), raw.name.into());
    insert_some(&mut object, "title", raw.title);
    insert_some(&mut object, "description", raw.description);
    insert_some(&mut object, "mimeType", raw.mime_type);
    insert_some(&mut object, "size", raw.size);
    serde_json::from_value(object.into()).map_err(|e| e.to_string())
}

pub(super) fn resource_template(raw: resources::ResourceTemplate) -> Result<ResourceTemplate, String> {
    let mut object = Map::new();
    object.insert("uriTemplate".into(), raw.uri_template.into());
    object.insert("name".into(), raw.name.into());
    insert_some(&mut object, "title", raw.title);
    insert_some(&mut object, "description", raw.description);
    insert_some(&mut object, "mimeType", raw.mime_type);
    serde_json::from_value(object.into()).map_err(|e| e.to_string())
}

pub(super) fn prompt(raw: prompts::Prompt) -> Result<Prompt, String> {
    let arguments: Vec<Value> = raw
        .arguments
        .into_iter()
        .map(|a| {
            let mut object = Map::new();
            object.insert("name".into(), a.name.into());
            insert_some(&mut object, "title", a.title);
            insert_some(&mut object, "description", a.description);
            object.insert("required".into(), a.required.into());
            Value::Object(object)
        })
        .collect();
    let mut object = Map::new();
    object.insert("name".into(), raw.name.into());
    insert_some(&mut object, "title", raw.title);
    insert_some(&mut object, "description", raw.description);
    object.insert("arguments".into(), arguments.into());
    serde_json::from_value(object.into()).map_err(|e| e.to_string())
}

fn resource_contents(raw: types::ResourceContents) -> Value {
    match raw {
        types::ResourceContents::Text(t) => {
            let mut object = Map::new();
            object.insert("uri".into(), t.uri.into());
            insert_some(&mut object, "mimeType", t.mime_type);
            object.insert("text".into(), t.text.into());
            object.into()
        }
        types::ResourceContents::Blob(b) => {
            let mut object = Map::new();
            object.insert("uri".into(), b.uri.into());
            insert_some(&mut object, "mimeType", b.mime_type);
            object.insert("blob".into(), BASE64.encode(&b.blob).into());
            object.into()
        }
    }
}

fn content(raw: types::Content) -> Value {
    match raw {
        types::Content::Text(text) => json!({ "type": "text", "text": text }),
        types::Content::Image(m) => {
            json!({ "type": "image", "data": BASE64.encode(&m.data), "mimeType": m.mime_type })
        }
        types::Content::Audio(m) => {
            json!({ "type": "audio", "data": BASE64.encode(&m.data), "mimeType": m.mime_type })
        }
        types::Content::ResourceLink(link) => {
            let mut object = Map::new();
            object.insert("type".into(), "resource_link".into());
            object.insert("uri".into(), link.uri.into());
            object.insert("name".into(), link.name.into());
            insert_some(&mut object, "title", link.title);
            insert_some(&mut object, "description", link.description);
            insert_some(&mut object, "mimeType", link.mime_type);
            object.into()
        }
        types::Content::Resource(contents) => {
            json!({ "type": "resource", "resource": resource_contents(contents) })
        }
    }
}

/// One content block of a result: text as is, the other kinds through their JSON form.
fn content_block(plugin: &str, raw: types::Content) -> Result<ContentBlock, CallError> {
    match raw {
        types::Content::Text(text) => Ok(ContentBlock::text(text)),
        other => from_wire(plugin, content(other)),
    }
}

/// A finished result. 2026-07-28 requires `resultType`; rmcp removes it for older peers.
fn complete_result() -> Map<String, Value> {
    let mut object = Map::new();
    object.insert("resultType".into(), "complete".into());
    object
}

fn input_required(plugin: &str, raw: types::InputRequired) -> Result<InputRequired, CallError> {
    let mut requests = Vec::with_capacity(raw.requests.len());
    for (key, request) in raw.requests {
        let parse = |what: &str, text: &str| {
            serde_json::from_str::<Value>(text).map_err(|e| CallError::BadOutput {
                plugin: plugin.to_owned(),
                reason: format!("input request {key:?}: {what} params are not JSON: {e}"),
            })
        };
        let request = match request {
            types::InputRequest::Elicitation(params) => InputRequest::Elicitation(parse("elicitation", &params)?),
            types::InputRequest::Sampling(params) => InputRequest::Sampling(parse("sampling", &params)?),
            types::InputRequest::Roots => InputRequest::Roots,
        };
        requests.push((key, request));
    }
    if requests.is_empty() {
        return Err(CallError::BadOutput {
            plugin: plugin.to_owned(),
            reason: "returned input-required without any input request".into(),
        });
    }
    Ok(InputRequired { requests, state: raw.state })
}

pub(super) fn call_outcome(plugin: &str, raw: tools::CallOutcome) -> Result<Outcome<CallToolResult>, CallError> {
    match raw {
        tools::CallOutcome::Complete(result) => {
            // Built as rmcp's type directly, not through a JSON value: this runs on every call.
            let blocks = result.content.into_iter().map(|raw| content_block(plugin, raw)).collect::<Result<_, _>>()?;
            let mut converted = CallToolResult::success(blocks);
            converted.is_error = result.is_error.then_some(true);
            if let Some(structured) = result.structured_content {
                let value: Value = serde_json::from_str(&structured).map_err(|e| CallError::BadOutput {
                    plugin: plugin.to_owned(),
                    reason: format!("structured content is not JSON: {e}"),
                })?;
                converted.structured_content = Some(value);
            }
            Ok(Outcome::Complete(converted))
        }
        tools::CallOutcome::InputRequired(input) => Ok(Outcome::InputRequired(input_required(plugin, input)?)),
    }
}

pub(super) fn read_outcome(
    plugin: &str,
    raw: resources::ReadOutcome,
) -> Result<Outcome<ReadResourceResult>, CallError> {
    match raw {
        resources::ReadOutcome::Complete(contents) => {
            if contents.is_empty() {
                return Err(CallError::BadOutput {
                    plugin: plugin.to_owned(),
                    reason: "read returned no contents".into(),
                });
            }
            let contents: Vec<Value> = contents.into_iter().map(resource_contents).collect();
            let mut object = complete_result();
            object.insert("contents".into(), contents.into());
            Ok(Outcome::Complete(from_wire(plugin, object.into())?))
        }
        resources::ReadOutcome::InputRequired(input) => Ok(Outcome::InputRequired(input_required(plugin, input)?)),
    }
}

pub(super) fn prompt_outcome(plugin: &str, raw: prompts::PromptOutcome) -> Result<Outcome<GetPromptResult>, CallError> {
    match raw {
        prompts::PromptOutcome::Complete(result) => {
            let messages: Vec<Value> = result
                .messages
                .into_iter()
                .map(|m| {
                    let role = match m.role {
                        types::Role::User => "user",
                        types::Role::Assistant => "assistant",
                    };
                    json!({ "role": role, "content": content(m.content) })
                })
                .collect();
            let mut object = complete_result();
            insert_some(&mut object, "description", result.description);
            object.insert("messages".into(), messages.into());
            Ok(Outcome::Complete(from_wire(plugin, object.into())?))
        }
        prompts::PromptOutcome::InputRequired(input) => Ok(Outcome::InputRequired(input_required(plugin, input)?)),
    }
}

pub(super) fn completion(raw: completions::Completion) -> CompleteResult {
    let mut values = raw.values;
    let has_more = raw.has_more || values.len() > CompletionInfo::MAX_VALUES;
    values.truncate(CompletionInfo::MAX_VALUES);
    let info = CompletionInfo::with_pagination(values, raw.total, has_more).unwrap_or_default();
    CompleteResult::new(info)
}

pub(super) fn plugin_error(plugin: &str, raw: types::PluginError) -> CallError {
    match raw {
        types::PluginError::InvalidParams(message) => CallError::InvalidParams(message),
        types::PluginError::NotFound(message) => CallError::NotFound(message),
        types::PluginError::Internal(message) => CallError::Plugin { plugin: plugin.to_owned(), message },
    }
}

pub(super) fn request_context(cx: &CallContext) -> types::RequestContext {
    types::RequestContext {
        client_capabilities: types::ClientCapabilities {
            elicitation: cx.client.elicitation,
            sampling: cx.client.sampling,
            roots: cx.client.roots,
        },
        input_responses: cx.input_responses.iter().map(|(k, v)| (k.clone(), v.to_string())).collect(),
        state: cx.state.clone(),
    }
}

/// Whatever a plugin returns, conversion never panics, and what it produces is the MCP JSON
/// the plugin meant: names, text and bytes kept exactly (bytes base64 on the wire), JSON
/// fields refused with a reason when they are not what the contract says.
#[cfg(test)]
mod proptests {
    use proptest::prelude::*;
    use proptest::test_runner::Config;

    use super::*;

    fn json_text() -> impl Strategy<Value = String> {
        prop_oneof![
            Just("{}".to_owned()),
            Just(r#"{"type":"object","properties":{"a":{"type":"string"}}}"#.to_owned()),
            Just("[]".to_owned()),
            Just("null".to_owned()),
            Just("{".to_owned()),
            any::<String>(),
        ]
    }

    fn media() -> impl Strategy<Value = types::Media> {
        (prop::collection::vec(any::<u8>(), 0..64), any::<String>())
            .prop_map(|(data, mime_type)| types::Media { data, mime_type })
    }

    fn contents() -> impl Strategy<Value = types::ResourceContents> {
        prop_oneof![
            (any::<String>(), prop::option::of(any::<String>()), any::<String>()).prop_map(|(uri, mime_type, text)| {
                types::ResourceContents::Text(types::TextResourceContents { uri, mime_type, text })
            }),
            (any::<String>(), prop::option::of(any::<String>()), prop::collection::vec(any::<u8>(), 0..64)).prop_map(
                |(uri, mime_type, blob)| types::ResourceContents::Blob(types::BlobResourceContents {
                    uri,
                    mime_type,
                    blob
                })
            ),
        ]
    }

    fn content() -> impl Strategy<Value = types::Content> {
        prop_oneof![
            any::<String>().prop_map(types::Content::Text),
            media().prop_map(types::Content::Image),
            media().prop_map(types::Content::Audio),
            contents().prop_map(types::Content::Resource),
            (any::<String>(), any::<String>(), prop::option::of(any::<String>())).prop_map(|(uri, name, title)| {
                types::Content::ResourceLink(types::ResourceLink {
                    uri,
                    name,
                    title,
                    description: None,
                    mime_type: None,
                })
            }),
        ]
    }

    proptest! {
        #![proptest_config(Config { cases: 256, ..Config::default() })]

        #[test]
        fn a_tool_converts_with_its_name_or_names_what_is_wrong(
            name in any::<String>(),
            title in prop::option::of(any::<String>()),
            input_schema in json_text(),
            output_schema in prop::option::of(json_text()),
            destructive in prop::option::of(any::<bool>()),
        ) {
            let annotations = destructive.map(|destructive| tools::ToolAnnotations {
                title: None,
                read_only: None,
                destructive: Some(destructive),
                idempotent: None,
                open_world: None,
            });
            let raw = tools::Tool {
                name: name.clone(),
                title,
                description: None,
                input_schema: input_schema.clone(),
                output_schema: output_schema.clone(),
                annotations,
            };
            let objects = |text: &str| matches!(serde_json::from_str::<Value>(text), Ok(Value::Object(_)));
            match tool(raw) {
                Ok(tool) => {
                    prop_assert_eq!(tool.name.as_ref(), name.as_str());
                    prop_assert!(objects(&input_schema));
                    prop_assert!(output_schema.as_deref().is_none_or(objects));
                    prop_assert_eq!(tool.annotations.and_then(|a| a.destructive_hint), destructive);
                }
                Err(reason) => {
                    prop_assert!(!objects(&input_schema) || output_schema.as_deref().is_some_and(|s| !objects(s)));
                    prop_assert!(reason.contains("schema"), "{}", reason);
                }
            }
        }

        #[test]
        fn a_call_result_keeps_every_content_item_exactly(
            items in prop::collection::vec(content(), 0..6),
            structured in prop::option::of(json_text()),
            is_error in any::<bool>(),
        ) {
            let raw = tools::CallOutcome::Complete(tools::CallResult {
                content: items.clone(),
                structured_content: structured.clone(),
                is_error,
            });
            let converted = call_outcome("p", raw);
            let parses = structured.as_deref().is_none_or(|s| serde_json::from_str::<Value>(s).is_ok());
            let Ok(Outcome::Complete(result)) = converted else {
                prop_assert!(!parses, "refused a valid result");
                return Ok(());
            };
            let wire = serde_json::to_value(&result).expect("a result serializes");
            let content = wire["content"].as_array().cloned().unwrap_or_default();
            prop_assert_eq!(content.len(), items.len());
            for (item, wire) in items.iter().zip(&content) {
                match item {
                    types::Content::Text(text) => prop_assert_eq!(wire["text"].as_str(), Some(text.as_str())),
                    types::Content::Image(m) | types::Content::Audio(m) => {
                        let data = wire["data"].as_str().and_then(|d| BASE64.decode(d).ok());
                        prop_assert_eq!(data.as_ref(), Some(&m.data));
                    }
                    types::Content::ResourceLink(link) => prop_assert_eq!(wire["uri"].as_str(), Some(link.uri.as_str())),
                    types::Content::Resource(types::ResourceContents::Blob(b)) => {
                        let blob = wire["resource"]["blob"].as_str().and_then(|d| BASE64.decode(d).ok());
                        prop_assert_eq!(blob.as_ref(), Some(&b.blob));
                    }
                    types::Content::Resource(types::ResourceContents::Text(t)) => {
                        prop_assert_eq!(wire["resource"]["text"].as_str(), Some(t.text.as_str()));
                    }
                }
            }
            prop_assert_eq!(wire.get("isError").and_then(Value::as_bool).unwrap_or(false), is_error);
        }

        #[test]
        fn input_requests_convert_or_name_the_bad_one(
            requests in prop::collection::vec((any::<String>(), json_text(), any::<bool>()), 0..4),
            state in prop::option::of(any::<String>()),
        ) {
            let raw = types::InputRequired {
                requests: requests
                    .iter()
                    .map(|(key, params, sampling)| {
                        let request = if *sampling {
                            types::InputRequest::Sampling(params.clone())
                        } else {
                            types::InputRequest::Elicitation(params.clone())
                        };
                        (key.clone(), request)
                    })
                    .collect(),
                state: state.clone(),
            };
            match call_outcome("p", tools::CallOutcome::InputRequired(raw)) {
                Ok(Outcome::InputRequired(input)) => {
                    prop_assert_eq!(input.requests.len(), requests.len());
                    prop_assert_eq!(input.state, state);
                }
                Ok(Outcome::Complete(_)) => prop_assert!(false, "input required became complete"),
                Err(CallError::BadOutput { reason, .. }) => {
                    let bad_json = requests.iter().any(|(_, p, _)| serde_json::from_str::<Value>(p).is_err());
                    prop_assert!(requests.is_empty() || bad_json, "{}", reason);
                }
                Err(other) => prop_assert!(false, "{}", other),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn a_call_result_reads_on_the_wire_as_the_plugin_returned_it() {
        let raw = tools::CallOutcome::Complete(tools::CallResult {
            content: vec![
                types::Content::Text("plain".into()),
                types::Content::Image(types::Media { data: vec![1, 2, 3], mime_type: "image/png".into() }),
            ],
            structured_content: Some(r#"{"n":1}"#.into()),
            is_error: false,
        });
        let Ok(Outcome::Complete(result)) = call_outcome("p", raw) else { panic!("a complete result") };
        assert_eq!(
            serde_json::to_value(&result).expect("serialisable"),
            json!({
                "resultType": "complete",
                "content": [
                    { "type": "text", "text": "plain" },
                    { "type": "image", "data": "AQID", "mimeType": "image/png" }
                ],
                "structuredContent": { "n": 1 }
            })
        );
        let failed = tools::CallOutcome::Complete(tools::CallResult {
            content: vec![types::Content::Text("no".into())],
            structured_content: None,
            is_error: true,
        });
        let Ok(Outcome::Complete(result)) = call_outcome("p", failed) else { panic!("a complete result") };
        assert_eq!(
            serde_json::to_value(&result).expect("serialisable"),
            json!({ "resultType": "complete", "content": [{ "type": "text", "text": "no" }], "isError": true })
        );
    }
}
