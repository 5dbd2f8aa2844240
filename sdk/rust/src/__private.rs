//! Glue between the [`Plugin`] registries and the generated WIT bindings; used by `export!`.

use std::collections::BTreeMap;

use crate::bindings::exports::fedmcp::plugin::{
    completions as wc, prompts as wp, resources as wr, tools as wt,
};
use crate::bindings::fedmcp::plugin::types as w;
use crate::{
    Completion, CompletionRef, Content, Context, Error, InputRequest, InputRequired, Outcome,
    Plugin, PromptMessage, Prompts, ResourceContents, Resources, Role, Tools, Value,
};

fn context(raw: w::RequestContext) -> Context {
    let responses = raw
        .input_responses
        .into_iter()
        .map(|(key, json)| (key, serde_json::from_str(&json).unwrap_or(Value::Null)))
        .collect();
    let caps = raw.client_capabilities;
    Context {
        responses,
        state: raw.state,
        capabilities: crate::ClientCapabilities {
            elicitation: caps.elicitation,
            sampling: caps.sampling,
            roots: caps.roots,
        },
    }
}

fn error(error: Error) -> w::PluginError {
    match error {
        Error::InvalidParams(m) => w::PluginError::InvalidParams(m),
        Error::NotFound(m) => w::PluginError::NotFound(m),
        Error::Internal(m) => w::PluginError::Internal(m),
    }
}

fn input_required(input: InputRequired) -> w::InputRequired {
    let requests = input
        .requests
        .into_iter()
        .map(|(key, request)| {
            let request = match request {
                InputRequest::Elicitation(params) => {
                    w::InputRequest::Elicitation(params.to_string())
                }
                InputRequest::Sampling(params) => w::InputRequest::Sampling(params.to_string()),
                InputRequest::Roots => w::InputRequest::Roots,
            };
            (key, request)
        })
        .collect();
    w::InputRequired {
        requests,
        state: input.state,
    }
}

fn resource_contents(contents: ResourceContents) -> w::ResourceContents {
    match contents {
        ResourceContents::Text {
            uri,
            mime_type,
            text,
        } => w::ResourceContents::Text(w::TextResourceContents {
            uri,
            mime_type,
            text,
        }),
        ResourceContents::Blob {
            uri,
            mime_type,
            blob,
        } => w::ResourceContents::Blob(w::BlobResourceContents {
            uri,
            mime_type,
            blob,
        }),
    }
}

fn content(content: Content) -> w::Content {
    match content {
        Content::Text(text) => w::Content::Text(text),
        Content::Image { data, mime_type } => w::Content::Image(w::Media { data, mime_type }),
        Content::Audio { data, mime_type } => w::Content::Audio(w::Media { data, mime_type }),
        Content::ResourceLink {
            uri,
            name,
            description,
            mime_type,
        } => w::Content::ResourceLink(w::ResourceLink {
            uri,
            name,
            title: None,
            description,
            mime_type,
        }),
        Content::Resource(contents) => w::Content::Resource(resource_contents(contents)),
    }
}

pub fn list_tools<P: Plugin>() -> Vec<wt::Tool> {
    let mut tools = Tools::default();
    P::tools(&mut tools);
    tools
        .entries
        .into_iter()
        .map(|t| {
            let annotated = t.title.is_some()
                || t.read_only.is_some()
                || t.destructive.is_some()
                || t.idempotent.is_some()
                || t.open_world.is_some();
            wt::Tool {
                annotations: annotated.then(|| wt::ToolAnnotations {
                    title: t.title.clone(),
                    read_only: t.read_only,
                    destructive: t.destructive,
                    idempotent: t.idempotent,
                    open_world: t.open_world,
                }),
                name: t.name,
                title: t.title,
                description: Some(t.description),
                input_schema: t.input_schema.to_json().to_string(),
                output_schema: t.output_schema.map(|s| s.to_json().to_string()),
            }
        })
        .collect()
}

pub fn call_tool<P: Plugin>(
    name: String,
    arguments: String,
    raw_context: w::RequestContext,
) -> Result<wt::CallOutcome, w::PluginError> {
    let mut tools = Tools::only(name.clone());
    P::tools(&mut tools);
    let tool = tools
        .entries
        .first()
        .ok_or_else(|| w::PluginError::NotFound(format!("no tool named {name:?}")))?;
    let arguments = if arguments.trim().is_empty() {
        "{}"
    } else {
        &arguments
    };
    match (tool.handler)(arguments, &context(raw_context)).map_err(error)? {
        Outcome::Complete(result) => Ok(wt::CallOutcome::Complete(wt::CallResult {
            content: result.content.into_iter().map(content).collect(),
            structured_content: result.structured.map(|v| v.to_string()),
            is_error: result.is_error,
        })),
        Outcome::InputRequired(input) => Ok(wt::CallOutcome::InputRequired(input_required(input))),
    }
}

fn resources<P: Plugin>() -> Resources {
    let mut resources = Resources::default();
    P::resources(&mut resources);
    resources
}

pub fn list_resources<P: Plugin>() -> Vec<wr::Resource> {
    resources::<P>()
        .entries
        .into_iter()
        .filter(|e| !e.template)
        .map(|e| wr::Resource {
            uri: e.uri,
            name: e.name,
            title: e.title,
            description: e.description,
            mime_type: e.mime_type,
            size: None,
        })
        .collect()
}

pub fn list_resource_templates<P: Plugin>() -> Vec<wr::ResourceTemplate> {
    resources::<P>()
        .entries
        .into_iter()
        .filter(|e| e.template)
        .map(|e| wr::ResourceTemplate {
            uri_template: e.uri,
            name: e.name,
            title: e.title,
            description: e.description,
            mime_type: e.mime_type,
        })
        .collect()
}

pub fn read_resource<P: Plugin>(
    uri: String,
    raw_context: w::RequestContext,
) -> Result<wr::ReadOutcome, w::PluginError> {
    let mut resources = Resources::only(uri.clone());
    P::resources(&mut resources);
    let (entry, vars) = resources
        .find(&uri)
        .ok_or_else(|| w::PluginError::NotFound(format!("no resource at {uri}")))?;
    match (entry.handler)(&uri, &vars, &context(raw_context)).map_err(error)? {
        Outcome::Complete(contents) => Ok(wr::ReadOutcome::Complete(
            contents.into_iter().map(resource_contents).collect(),
        )),
        Outcome::InputRequired(input) => Ok(wr::ReadOutcome::InputRequired(input_required(input))),
    }
}

pub fn list_prompts<P: Plugin>() -> Vec<wp::Prompt> {
    let mut prompts = Prompts::default();
    P::prompts(&mut prompts);
    prompts
        .entries
        .into_iter()
        .map(|p| wp::Prompt {
            name: p.name,
            title: p.title,
            description: p.description,
            arguments: p
                .arguments
                .into_iter()
                .map(|(name, description, required)| wp::PromptArgument {
                    name,
                    title: None,
                    description,
                    required,
                })
                .collect(),
        })
        .collect()
}

pub fn get_prompt<P: Plugin>(
    name: String,
    arguments: Vec<(String, String)>,
    raw_context: w::RequestContext,
) -> Result<wp::PromptOutcome, w::PluginError> {
    let mut prompts = Prompts::only(name.clone());
    P::prompts(&mut prompts);
    let prompt = prompts
        .entries
        .first()
        .ok_or_else(|| w::PluginError::NotFound(format!("no prompt named {name:?}")))?;
    let arguments: BTreeMap<String, String> = arguments.into_iter().collect();
    if let Some((missing, _, _)) = prompt
        .arguments
        .iter()
        .find(|(n, _, required)| *required && !arguments.contains_key(n))
    {
        return Err(w::PluginError::InvalidParams(format!(
            "prompt {name:?} needs the argument {missing:?}"
        )));
    }
    match (prompt.handler)(&arguments, &context(raw_context)).map_err(error)? {
        Outcome::Complete(result) => Ok(wp::PromptOutcome::Complete(wp::PromptResult {
            description: result.description,
            messages: result
                .messages
                .into_iter()
                .map(|PromptMessage { role, content: c }| wp::PromptMessage {
                    role: match role {
                        Role::User => w::Role::User,
                        Role::Assistant => w::Role::Assistant,
                    },
                    content: content(c),
                })
                .collect(),
        })),
        Outcome::InputRequired(input) => {
            Ok(wp::PromptOutcome::InputRequired(input_required(input)))
        }
    }
}

pub fn complete<P: Plugin>(
    reference: wc::CompletionReference,
    argument: String,
    value: String,
    context: Vec<(String, String)>,
) -> Result<wc::Completion, w::PluginError> {
    let reference = match reference {
        wc::CompletionReference::Prompt(name) => CompletionRef::Prompt(name),
        wc::CompletionReference::ResourceTemplate(uri) => CompletionRef::ResourceTemplate(uri),
    };
    let context: BTreeMap<String, String> = context.into_iter().collect();
    let Completion {
        values,
        total,
        has_more,
    } = P::complete(&reference, &argument, &value, &context).map_err(error)?;
    Ok(wc::Completion {
        values,
        total,
        has_more,
    })
}
