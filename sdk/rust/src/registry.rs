//! Registries a plugin fills in: its tools, resources and prompts, each with a handler.

use std::collections::BTreeMap;

use schemars::JsonSchema;
use serde::de::DeserializeOwned;

use crate::{Context, Error, Outcome, PromptMessage, ResourceContents, ToolResult, Value};

/// A tool's handler, given the call's arguments as JSON text (a typed tool reads them straight
/// into its type, without building a `Value` first).
type ToolHandler = Box<dyn Fn(&str, &Context) -> Result<Outcome<ToolResult>, Error>>;
type ReadHandler = Box<
    dyn Fn(
        &str,
        &BTreeMap<String, String>,
        &Context,
    ) -> Result<Outcome<Vec<ResourceContents>>, Error>,
>;
type PromptHandler =
    Box<dyn Fn(&BTreeMap<String, String>, &Context) -> Result<Outcome<PromptResult>, Error>>;

pub(crate) struct ToolEntry {
    pub name: String,
    pub title: Option<String>,
    pub description: String,
    pub input_schema: Schema,
    pub output_schema: Option<Schema>,
    pub read_only: Option<bool>,
    pub destructive: Option<bool>,
    pub idempotent: Option<bool>,
    pub open_world: Option<bool>,
    pub handler: ToolHandler,
}

/// The plugin's tools.
#[derive(Default)]
pub struct Tools {
    pub(crate) entries: Vec<ToolEntry>,
    /// For a call, the name of the one tool it needs. Every call runs in a fresh instance
    /// that fills the registry again, so the other tools' names, descriptions and handlers
    /// are not built.
    only: Option<String>,
}

impl Tools {
    /// A registry that keeps only the tool named `name` (the first, if several have it).
    pub(crate) fn only(name: String) -> Self {
        Self { entries: Vec::new(), only: Some(name) }
    }

    /// Whether a tool of this name is kept.
    fn keeps(&self, name: &str) -> bool {
        self.only.as_deref().is_none_or(|only| only == name && self.entries.is_empty())
    }

    /// Add a tool whose arguments deserialize into `A`; its input schema is derived from `A`.
    pub fn add<A, R, F>(&mut self, name: &str, description: &str, handler: F) -> ToolBuilder<'_>
    where
        A: DeserializeOwned + JsonSchema,
        R: Into<Outcome<ToolResult>>,
        F: Fn(A, &Context) -> Result<R, Error> + 'static,
    {
        self.push(name, description, Schema::Derived(schema_of::<A>), move |arguments: &str, cx: &Context| {
            handler(parse_arguments::<A>(arguments)?, cx).map(Into::into)
        })
    }

    /// Add a tool with a hand-written JSON Schema; the handler gets the arguments as JSON.
    pub fn add_raw<R, F>(
        &mut self,
        name: &str,
        description: &str,
        input_schema: Value,
        handler: F,
    ) -> ToolBuilder<'_>
    where
        R: Into<Outcome<ToolResult>>,
        F: Fn(Value, &Context) -> Result<R, Error> + 'static,
    {
        self.push(name, description, Schema::Json(input_schema.clone()), move |arguments: &str, cx: &Context| {
            let arguments: Value = serde_json::from_str(arguments)?;
            check_arguments(&input_schema, &arguments)?;
            handler(arguments, cx)
        })
    }

    fn push<R, F>(&mut self, name: &str, description: &str, input_schema: Schema, handler: F) -> ToolBuilder<'_>
    where
        R: Into<Outcome<ToolResult>>,
        F: Fn(&str, &Context) -> Result<R, Error> + 'static,
    {
        if !self.keeps(name) {
            return ToolBuilder { entry: None };
        }
        self.entries.push(ToolEntry {
            name: name.to_owned(),
            title: None,
            description: description.to_owned(),
            input_schema,
            output_schema: None,
            read_only: None,
            destructive: None,
            idempotent: None,
            open_world: None,
            handler: Box::new(move |arguments, cx| handler(arguments, cx).map(Into::into)),
        });
        ToolBuilder { entry: self.entries.last_mut() }
    }
}

/// Optional details of a tool just added (of one a call does not need, nothing is kept).
pub struct ToolBuilder<'a> {
    entry: Option<&'a mut ToolEntry>,
}

impl ToolBuilder<'_> {
    fn with(mut self, set: impl FnOnce(&mut ToolEntry)) -> Self {
        if let Some(entry) = self.entry.as_deref_mut() {
            set(entry);
        }
        self
    }
    pub fn title(self, title: &str) -> Self {
        self.with(|entry| entry.title = Some(title.to_owned()))
    }
    /// The schema of the tool's structured content, derived from `O`.
    pub fn output<O: JsonSchema>(self) -> Self {
        self.with(|entry| entry.output_schema = Some(Schema::Derived(schema_of::<O>)))
    }
    /// A hand-written schema of the tool's structured content. The plugin builds this value
    /// again in every call (each runs in a fresh instance): [`output_schema_with`]
    /// (Self::output_schema_with) builds it only when the tools are listed.
    pub fn output_schema(self, schema: Value) -> Self {
        self.with(|entry| entry.output_schema = Some(Schema::Json(schema)))
    }
    /// A hand-written schema of the tool's structured content, built by `schema` only when the
    /// tools are listed, e.g. `.output_schema_with(|| json!({ "type": "object", ... }))`.
    pub fn output_schema_with(self, schema: fn() -> Value) -> Self {
        self.with(|entry| entry.output_schema = Some(Schema::Derived(schema)))
    }
    /// The tool does not change anything.
    pub fn read_only(self) -> Self {
        self.with(|entry| {
            entry.read_only = Some(true);
            entry.destructive = Some(false);
        })
    }
    /// The tool may destroy data; hosts may ask the user before calling it.
    pub fn destructive(self) -> Self {
        self.with(|entry| entry.destructive = Some(true))
    }
    pub fn idempotent(self) -> Self {
        self.with(|entry| entry.idempotent = Some(true))
    }
    /// The tool reaches outside the plugin (the network, other systems).
    pub fn open_world(self, open: bool) -> Self {
        self.with(|entry| entry.open_world = Some(open))
    }
}

/// A tool's schema: written out, or built by a function (derived from a type, or written in
/// one) when the tools are listed. Those are not built for calls, which run in a fresh
/// instance each time.
pub(crate) enum Schema {
    Json(Value),
    Derived(fn() -> Value),
}

impl Schema {
    pub(crate) fn to_json(&self) -> Value {
        match self {
            Self::Json(value) => value.clone(),
            Self::Derived(derive) => derive(),
        }
    }
}

/// Deserialize a tool's arguments (JSON text) into `A`, refusing names `A` does not have.
/// Read straight from the text; arguments that do not fit are read again as a `Value`, so
/// what is refused, and how, is as when every call built one. Deriving the schema costs more
/// than a whole call of a small tool (every call has a fresh instance), so it is derived only
/// to word an error the way the other SDKs do.
fn parse_arguments<A: DeserializeOwned + JsonSchema>(arguments: &str) -> Result<A, Error> {
    let mut unknown = false;
    let mut json = serde_json::Deserializer::from_str(arguments);
    let parsed = serde_ignored::deserialize(&mut json, |_| unknown = true)
        .and_then(|parsed| json.end().map(|()| parsed));
    match parsed {
        Ok(arguments) if !unknown => Ok(arguments),
        _ => parse_value::<A>(&serde_json::from_str(arguments)?),
    }
}

fn parse_value<A: DeserializeOwned + JsonSchema>(arguments: &Value) -> Result<A, Error> {
    let mut unknown = None;
    let parsed = serde_ignored::deserialize(arguments, |path| {
        unknown.get_or_insert_with(|| path.to_string());
    });
    match (parsed, unknown) {
        (Ok(arguments), None) => Ok(arguments),
        (Ok(_), Some(name)) => Err(Error::invalid_params(format!("unknown argument: {name}"))),
        (Err(error), _) => {
            check_arguments(&schema_of::<A>(), arguments)?;
            Err(Error::invalid_params(format!(
                "arguments do not match the input schema: {error}"
            )))
        }
    }
}

/// Check arguments against the top level of an input schema with the same rules and the
/// same messages as the Python and JavaScript SDKs, so a tool answers alike in every
/// language: required names present, no names the schema does not declare (unless it
/// allows additional properties), and each value of its declared JSON type.
pub(crate) fn check_arguments(schema: &Value, arguments: &Value) -> Result<(), Error> {
    let Some(arguments) = arguments.as_object() else {
        return Err(Error::invalid_params("arguments must be an object"));
    };
    let required = schema.get("required").and_then(Value::as_array);
    for name in required.into_iter().flatten().filter_map(Value::as_str) {
        if !arguments.contains_key(name) {
            return Err(Error::invalid_params(format!(
                "missing required argument: {name}"
            )));
        }
    }
    let properties = schema.get("properties").and_then(Value::as_object);
    let open = match schema.get("additionalProperties") {
        None => properties.is_none(),
        Some(additional) => additional != &Value::Bool(false),
    };
    for (name, value) in arguments {
        let Some(expected) = properties.and_then(|p| p.get(name)) else {
            if open {
                continue;
            }
            return Err(Error::invalid_params(format!("unknown argument: {name}")));
        };
        let kinds: Vec<&str> = match expected.get("type") {
            Some(Value::String(kind)) => vec![kind.as_str()],
            Some(Value::Array(kinds)) => kinds.iter().filter_map(Value::as_str).collect(),
            _ => continue,
        };
        if !kinds.iter().any(|kind| is_of_type(value, kind)) {
            let declared = kinds.iter().find(|k| **k != "null").unwrap_or(&"null");
            return Err(Error::invalid_params(format!(
                "argument {name} must be of type {declared}"
            )));
        }
    }
    Ok(())
}

fn is_of_type(value: &Value, kind: &str) -> bool {
    match kind {
        "string" => value.is_string(),
        "boolean" => value.is_boolean(),
        "integer" => value.is_i64() || value.is_u64(),
        "number" => value.is_number(),
        "array" => value.is_array(),
        "object" => value.is_object(),
        "null" => value.is_null(),
        _ => true,
    }
}

fn schema_of<T: JsonSchema>() -> Value {
    let mut schema = serde_json::to_value(schemars::schema_for!(T))
        .unwrap_or_else(|_| serde_json::json!({"type": "object"}));
    // A tool without arguments (`()` or an empty struct) still needs an object schema.
    if let Some(object) = schema.as_object_mut() {
        object
            .entry("type")
            .or_insert_with(|| Value::from("object"));
        if object.get("type") == Some(&Value::from("null")) {
            object.insert("type".into(), Value::from("object"));
        }
        // A derived schema lists every field the type has, so "no properties" means "no
        // arguments" (and other arguments are refused), not "any arguments".
        if object.get("type") == Some(&Value::from("object")) && !object.contains_key("$ref") {
            object
                .entry("properties")
                .or_insert_with(|| Value::Object(Default::default()));
        }
    }
    schema
}

pub(crate) struct ResourceEntry {
    pub uri: String,
    pub name: String,
    pub title: Option<String>,
    pub description: Option<String>,
    pub mime_type: Option<String>,
    pub template: bool,
    pub handler: ReadHandler,
}

/// The plugin's resources and resource templates.
#[derive(Default)]
pub struct Resources {
    pub(crate) entries: Vec<ResourceEntry>,
    /// For a read, the URI it reads: only the resources and templates that could serve it
    /// are kept (see [`Tools`]).
    only: Option<String>,
}

impl Resources {
    /// A registry that keeps only what could serve a read of `uri`.
    pub(crate) fn only(uri: String) -> Self {
        Self { entries: Vec::new(), only: Some(uri) }
    }

    /// A resource at a fixed URI.
    pub fn add<R, F>(&mut self, uri: &str, name: &str, handler: F) -> ResourceBuilder<'_>
    where
        R: Into<Outcome<Vec<ResourceContents>>>,
        F: Fn(&str, &Context) -> Result<R, Error> + 'static,
    {
        self.push(
            uri,
            name,
            false,
            Box::new(move |uri, _vars, cx| handler(uri, cx).map(Into::into)),
        )
    }

    /// A resource template (RFC 6570 level 1: `{name}` variables), e.g. `notes://{topic}`.
    /// The handler receives the variables matched from the requested URI.
    pub fn add_template<R, F>(
        &mut self,
        uri_template: &str,
        name: &str,
        handler: F,
    ) -> ResourceBuilder<'_>
    where
        R: Into<Outcome<Vec<ResourceContents>>>,
        F: Fn(&str, &BTreeMap<String, String>, &Context) -> Result<R, Error> + 'static,
    {
        self.push(
            uri_template,
            name,
            true,
            Box::new(move |uri, vars, cx| handler(uri, vars, cx).map(Into::into)),
        )
    }

    fn push(
        &mut self,
        uri: &str,
        name: &str,
        template: bool,
        handler: ReadHandler,
    ) -> ResourceBuilder<'_> {
        let serves = |wanted: &str| if template { match_template(uri, wanted).is_some() } else { uri == wanted };
        if !self.only.as_deref().is_none_or(serves) {
            return ResourceBuilder { entry: None };
        }
        self.entries.push(ResourceEntry {
            uri: uri.to_owned(),
            name: name.to_owned(),
            title: None,
            description: None,
            mime_type: None,
            template,
            handler,
        });
        ResourceBuilder { entry: self.entries.last_mut() }
    }

    pub(crate) fn find(&self, uri: &str) -> Option<(&ResourceEntry, BTreeMap<String, String>)> {
        if let Some(entry) = self.entries.iter().find(|e| !e.template && e.uri == uri) {
            return Some((entry, BTreeMap::new()));
        }
        self.entries
            .iter()
            .filter(|e| e.template)
            .find_map(|e| match_template(&e.uri, uri).map(|vars| (e, vars)))
    }
}

/// Optional details of a resource just added (of one a read does not need, nothing is kept).
pub struct ResourceBuilder<'a> {
    entry: Option<&'a mut ResourceEntry>,
}

impl ResourceBuilder<'_> {
    fn with(mut self, set: impl FnOnce(&mut ResourceEntry)) -> Self {
        if let Some(entry) = self.entry.as_deref_mut() {
            set(entry);
        }
        self
    }
    pub fn title(self, title: &str) -> Self {
        self.with(|entry| entry.title = Some(title.to_owned()))
    }
    pub fn description(self, description: &str) -> Self {
        self.with(|entry| entry.description = Some(description.to_owned()))
    }
    pub fn mime_type(self, mime_type: &str) -> Self {
        self.with(|entry| entry.mime_type = Some(mime_type.to_owned()))
    }
}

/// Match `uri` against a level-1 URI template; a variable matches one or more characters
/// up to the next literal part (and never `/` unless it is the last part).
pub(crate) fn match_template(template: &str, uri: &str) -> Option<BTreeMap<String, String>> {
    let mut vars = BTreeMap::new();
    let mut rest = uri;
    let mut parts = template.split('{').peekable();
    let head = parts.next().unwrap_or_default();
    rest = rest.strip_prefix(head)?;
    while let Some(part) = parts.next() {
        let (name, literal) = part.split_once('}')?;
        let is_last = parts.peek().is_none() && literal.is_empty();
        let end = if literal.is_empty() {
            if is_last { rest.len() } else { return None }
        } else {
            rest.find(literal)?
        };
        let value = &rest[..end];
        if value.is_empty() || (!is_last && value.contains('/')) {
            return None;
        }
        vars.insert(name.to_owned(), value.to_owned());
        rest = &rest[end + literal.len()..];
    }
    rest.is_empty().then_some(vars)
}

pub(crate) struct PromptEntry {
    pub name: String,
    pub title: Option<String>,
    pub description: Option<String>,
    pub arguments: Vec<(String, Option<String>, bool)>,
    pub handler: PromptHandler,
}

/// The plugin's prompts.
#[derive(Default)]
pub struct Prompts {
    pub(crate) entries: Vec<PromptEntry>,
    /// For a `prompts/get`, the name of the one prompt it needs (see [`Tools`]).
    only: Option<String>,
}

impl Prompts {
    /// A registry that keeps only the prompt named `name` (the first, if several have it).
    pub(crate) fn only(name: String) -> Self {
        Self { entries: Vec::new(), only: Some(name) }
    }

    /// Add a prompt; the handler receives its arguments by name.
    pub fn add<R, F>(&mut self, name: &str, description: &str, handler: F) -> PromptBuilder<'_>
    where
        R: Into<Outcome<PromptResult>>,
        F: Fn(&BTreeMap<String, String>, &Context) -> Result<R, Error> + 'static,
    {
        if !self.only.as_deref().is_none_or(|only| only == name && self.entries.is_empty()) {
            return PromptBuilder { entry: None };
        }
        self.entries.push(PromptEntry {
            name: name.to_owned(),
            title: None,
            description: Some(description.to_owned()),
            arguments: Vec::new(),
            handler: Box::new(move |arguments, cx| handler(arguments, cx).map(Into::into)),
        });
        PromptBuilder { entry: self.entries.last_mut() }
    }
}

/// Optional details of a prompt just added (of one a `prompts/get` does not need, nothing is
/// kept).
pub struct PromptBuilder<'a> {
    entry: Option<&'a mut PromptEntry>,
}

impl PromptBuilder<'_> {
    fn with(mut self, set: impl FnOnce(&mut PromptEntry)) -> Self {
        if let Some(entry) = self.entry.as_deref_mut() {
            set(entry);
        }
        self
    }
    pub fn title(self, title: &str) -> Self {
        self.with(|entry| entry.title = Some(title.to_owned()))
    }
    /// An argument; the host refuses a `prompts/get` that lacks a required one.
    pub fn argument(self, name: &str, description: &str, required: bool) -> Self {
        self.with(|entry| {
            entry
                .arguments
                .push((name.to_owned(), Some(description.to_owned()), required));
        })
    }
}

/// A prompt's messages.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct PromptResult {
    pub description: Option<String>,
    pub messages: Vec<PromptMessage>,
}

impl PromptResult {
    pub fn new(messages: Vec<PromptMessage>) -> Self {
        Self {
            description: None,
            messages,
        }
    }
}

/// What a completion request refers to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CompletionRef {
    Prompt(String),
    ResourceTemplate(String),
}

/// Suggested values for an argument.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Completion {
    pub values: Vec<String>,
    pub total: Option<u32>,
    pub has_more: bool,
}

impl Completion {
    /// The candidates that start with `prefix`, in order.
    pub fn matching<'a>(candidates: impl IntoIterator<Item = &'a str>, prefix: &str) -> Self {
        let values: Vec<String> = candidates
            .into_iter()
            .filter(|c| c.starts_with(prefix))
            .map(str::to_owned)
            .collect();
        Self {
            total: u32::try_from(values.len()).ok(),
            values,
            has_more: false,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::{Prompts, Resources, Tools, check_arguments, match_template, parse_arguments};
    use crate::{Context, ResourceContents, ToolResult};
    use serde_json::json;

    fn fill_tools(tools: &mut Tools) {
        tools
            .add_raw("first", "one", json!({}), |_, _| Ok("first"))
            .title("First")
            .read_only();
        tools
            .add_raw("second", "two", json!({}), |_, _| Ok("second"))
            .output_schema(json!({ "type": "object" }))
            .destructive();
        tools
            .add_raw("second", "a second of that name", json!({}), |_, _| {
                Ok("other")
            })
            .title("Shadowed");
    }

    fn text_of(result: crate::Outcome<ToolResult>) -> String {
        match result {
            crate::Outcome::Complete(result) => format!("{:?}", result.content),
            crate::Outcome::InputRequired(_) => "input required".into(),
        }
    }

    #[test]
    fn a_call_keeps_the_first_tool_of_its_name_with_its_details() {
        let mut all = Tools::default();
        fill_tools(&mut all);
        assert_eq!(all.entries.len(), 3);

        let mut called = Tools::only("second".into());
        fill_tools(&mut called);
        assert_eq!(called.entries.len(), 1);
        let tool = &called.entries[0];
        assert_eq!(tool.description, "two");
        assert_eq!(tool.title, None);
        assert_eq!(tool.destructive, Some(true));
        assert!(tool.output_schema.is_some());
        let cx = Context::default();
        assert!(text_of((tool.handler)("{}", &cx).unwrap()).contains("second"));

        let mut missing = Tools::only("third".into());
        fill_tools(&mut missing);
        assert!(missing.entries.is_empty());
    }

    fn fill_resources(resources: &mut Resources) {
        let text = |uri: &str| Ok(vec![ResourceContents::text(uri, "text/plain", "x")]);
        resources
            .add("notes://all", "all", move |uri, _| text(uri))
            .title("All");
        resources
            .add_template("notes://{topic}", "topic", move |uri, _, _| text(uri))
            .description("One topic");
        resources.add("docs://readme", "readme", move |uri, _| text(uri));
    }

    #[test]
    fn a_read_finds_what_the_whole_registry_finds() {
        let mut all = Resources::default();
        fill_resources(&mut all);
        for uri in [
            "notes://all",
            "notes://rust",
            "docs://readme",
            "docs://other",
            "notes://a/b",
        ] {
            let mut read = Resources::only(uri.into());
            fill_resources(&mut read);
            let expected = all
                .find(uri)
                .map(|(entry, vars)| (entry.name.clone(), vars));
            let found = read
                .find(uri)
                .map(|(entry, vars)| (entry.name.clone(), vars));
            assert_eq!(found, expected, "{uri}");
            assert!(
                read.entries.len() <= 2,
                "{uri}: kept {}",
                read.entries.len()
            );
        }
        let mut read = Resources::only("notes://all".into());
        fill_resources(&mut read);
        assert_eq!(read.entries[0].title.as_deref(), Some("All"));
        assert_eq!(read.entries[1].description.as_deref(), Some("One topic"));
    }

    #[test]
    fn a_get_keeps_the_first_prompt_of_its_name_with_its_arguments() {
        let fill = |prompts: &mut Prompts| {
            prompts
                .add("greet", "say hello", |_, _| {
                    Ok(super::PromptResult::default())
                })
                .argument("who", "", true);
            prompts
                .add("part", "say goodbye", |_, _| {
                    Ok(super::PromptResult::default())
                })
                .argument("why", "", false);
            prompts.add("greet", "again", |_, _| Ok(super::PromptResult::default()));
        };
        let mut got = Prompts::only("greet".into());
        fill(&mut got);
        assert_eq!(got.entries.len(), 1);
        assert_eq!(got.entries[0].description.as_deref(), Some("say hello"));
        assert_eq!(got.entries[0].arguments.len(), 1);
        let mut missing = Prompts::only("other".into());
        fill(&mut missing);
        assert!(missing.entries.is_empty());
    }


    #[derive(serde::Deserialize, schemars::JsonSchema)]
    struct Convert {
        #[allow(dead_code)]
        value: f64,
        #[allow(dead_code)]
        to: Option<String>,
    }

    #[derive(serde::Deserialize, schemars::JsonSchema)]
    #[serde(rename_all = "snake_case")]
    enum Case {
        Upper,
    }

    #[derive(serde::Deserialize, schemars::JsonSchema)]
    struct ChangeCase {
        #[allow(dead_code)]
        to: Case,
    }

    #[test]
    fn arguments_that_do_not_fit_are_refused_as_when_they_were_read_as_a_value() {
        let refused = parse_arguments::<ChangeCase>(r#"{"to": "weird"}"#)
            .err()
            .map(|e| e.to_string())
            .unwrap_or_default();
        assert!(refused.contains("unknown variant `weird`"), "{refused}");
        assert!(!refused.contains("line 1"), "no position in the text: {refused}");
        // A name sent twice: the value keeps the last, as before.
        assert!(parse_arguments::<ChangeCase>(r#"{"to": "weird", "to": "upper"}"#).is_ok());
        assert!(parse_arguments::<ChangeCase>("not json").is_err());
    }

    #[test]
    fn derived_arguments_are_refused_with_the_messages_of_the_other_sdks() {
        assert!(parse_arguments::<Convert>(&json!({ "value": 1 }).to_string()).is_ok());
        assert!(parse_arguments::<Convert>("{\"value\": 1} trailing").is_err());
        let refused = |arguments: serde_json::Value| {
            parse_arguments::<Convert>(&arguments.to_string())
                .err()
                .map(|e| e.to_string())
                .unwrap_or_default()
        };
        assert!(refused(json!({ "value": 1, "round": 2 })).contains("unknown argument: round"));
        assert!(refused(json!({ "value": "one" })).contains("argument value must be of type number"));
        assert!(refused(json!({ "to": "km" })).contains("missing required argument: value"));
        assert!(refused(json!({ "value": 1, "to": 3 })).contains("argument to must be of type string"));
    }

    #[test]
    fn arguments_are_checked_by_name_and_type() {
        let schema = json!({
            "type": "object",
            "properties": {
                "value": { "type": "number", "format": "double" },
                "unit": { "type": "string" },
                "indent": { "type": ["integer", "null"] },
                "case": { "$ref": "#/$defs/Case" }
            },
            "required": ["value", "unit"]
        });
        let message = |arguments| check_arguments(&schema, &arguments).map_err(|e| e.to_string());
        assert!(message(json!({ "value": 1.5, "unit": "km" })).is_ok());
        assert!(message(json!({ "value": 2, "unit": "km", "indent": null, "case": "x" })).is_ok());
        let fails = [
            (json!({ "unit": "km" }), "missing required argument: value"),
            (json!({ "value": "one", "unit": "km" }), "argument value must be of type number"),
            (json!({ "value": 1, "unit": "km", "indent": 1.5 }), "argument indent must be of type integer"),
            (json!({ "value": 1, "unit": "km", "extra": 1 }), "unknown argument: extra"),
            (json!([1]), "arguments must be an object"),
        ];
        for (arguments, expected) in fails {
            let error = message(arguments.clone()).expect_err("refused");
            assert!(error.contains(expected), "{arguments}: {error}");
        }
        let open = json!({ "type": "object", "additionalProperties": true, "properties": {} });
        assert!(check_arguments(&open, &json!({ "anything": 1 })).is_ok());
    }

    #[test]
    fn template_variables_are_matched_between_literals() {
        let vars = match_template("test://template/{id}/data", "test://template/123/data").unwrap();
        assert_eq!(vars["id"], "123");
        assert!(match_template("test://template/{id}/data", "test://template//data").is_none());
        assert!(match_template("test://template/{id}/data", "test://template/1/2/data").is_none());
        assert!(match_template("test://template/{id}/data", "test://other/1/data").is_none());
    }

    #[test]
    fn a_trailing_variable_takes_the_rest() {
        let vars = match_template("notes://{topic}", "notes://rust/async").unwrap();
        assert_eq!(vars["topic"], "rust/async");
    }
}
