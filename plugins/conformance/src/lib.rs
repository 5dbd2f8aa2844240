//! The fixtures the MCP conformance suite's server scenarios call, as one fedmcp plugin.
//!
//! Served unprefixed (see `plugins/conformance.toml`), so fedmcp with this plugin can be
//! checked with `@modelcontextprotocol/conformance server` for both protocol revisions.
//! Every fixture is stateless: the ones that need the client (sampling, elicitation, roots)
//! return `InputRequired`, and the host either performs the requests over the session
//! (2025-11-25) or hands them to the client as an MRTR result (2026-07-28).

use std::collections::BTreeMap;
use std::time::Duration;

use fedmcp_sdk::{
    Completion, CompletionRef, Content, Error, InputRequest, InputRequired, ListKind, Plugin,
    PromptMessage, PromptOutcome, PromptResult, Prompts, ResourceContents, Resources, ToolOutcome,
    ToolResult, Tools, Value, json, log, progress,
};

const RED_PIXEL_PNG: &[u8] = include_bytes!("red-pixel.png");
const SILENT_WAV: &[u8] = include_bytes!("silence.wav");

struct Conformance;

fn no_arguments() -> Value {
    json!({ "type": "object", "properties": {} })
}

fn pause() {
    std::thread::sleep(Duration::from_millis(50));
}

/// The text of a sampling result (`content` is one block or, since 2025-11-25, a list).
fn sampled_text(result: &Value) -> String {
    let content = &result["content"];
    let block = if content.is_array() {
        &content[0]
    } else {
        content
    };
    block["text"].as_str().unwrap_or("(no text)").to_owned()
}

fn elicitation_summary(result: &Value) -> String {
    let action = result["action"].as_str().unwrap_or("unknown");
    let content = result.get("content").cloned().unwrap_or(Value::Null);
    format!("action={action}, content={content}")
}

fn ask_name(key: &str, message: &str) -> InputRequired {
    InputRequired::new().request(
        key,
        InputRequest::elicit(
            message,
            json!({ "type": "object", "properties": { "name": { "type": "string" } }, "required": ["name"] }),
        ),
    )
}

fn accepted_field<'a>(response: &'a Value, field: &str) -> Option<&'a str> {
    response
        .get("content")
        .and_then(|c| c.get(field))
        .and_then(Value::as_str)
}

fn root_uris(response: &Value) -> Vec<String> {
    response["roots"]
        .as_array()
        .map(|roots| {
            roots
                .iter()
                .filter_map(|r| r["uri"].as_str().map(str::to_owned))
                .collect()
        })
        .unwrap_or_default()
}

impl Plugin for Conformance {
    fn tools(tools: &mut Tools) {
        register_content_tools(tools);
        register_round_trip_tools(tools);
        register_input_required_tools(tools);
        register_diagnostic_tools(tools);
        register_header_tools(tools);
        register_task_tools(tools);
    }

    fn resources(resources: &mut Resources) {
        resources
            .add("test://static-text", "Static text", |uri, _cx| {
                Ok(vec![ResourceContents::text(
                    uri,
                    "text/plain",
                    "This is the content of the static text resource.",
                )])
            })
            .description("A static text resource for testing")
            .mime_type("text/plain");
        resources
            .add("test://static-binary", "Static binary", |uri, _cx| {
                Ok(vec![ResourceContents::blob(
                    uri,
                    "image/png",
                    RED_PIXEL_PNG,
                )])
            })
            .description("A static binary resource (a 1x1 PNG) for testing")
            .mime_type("image/png");
        resources
            .add("test://watched-resource", "Watched resource", |uri, _cx| {
                Ok(vec![ResourceContents::text(
                    uri,
                    "text/plain",
                    "Watched resource content",
                )])
            })
            .description("A resource clients may subscribe to")
            .mime_type("text/plain");
        resources
            .add_template("test://template/{id}/data", "Template data", |uri, vars, _cx| {
                let id = &vars["id"];
                let body = json!({ "id": id, "templateTest": true, "data": format!("Data for ID: {id}") });
                Ok(vec![ResourceContents::text(uri, "application/json", body.to_string())])
            })
            .description("A resource template with an id parameter")
            .mime_type("application/json");
    }

    fn prompts(prompts: &mut Prompts) {
        prompts.add(
            "test_simple_prompt",
            "A simple prompt without arguments",
            |_args, _cx| {
                Ok(PromptResult::new(vec![PromptMessage::user(
                    "This is a simple prompt for testing.",
                )]))
            },
        );
        prompts
            .add(
                "test_prompt_with_arguments",
                "A prompt with arguments",
                |args, _cx| {
                    let text = format!(
                        "Prompt with arguments: arg1='{}', arg2='{}'",
                        args["arg1"], args["arg2"]
                    );
                    Ok(PromptResult::new(vec![PromptMessage::user(text)]))
                },
            )
            .argument("arg1", "First test argument", true)
            .argument("arg2", "Second test argument", true);
        prompts
            .add(
                "test_prompt_with_embedded_resource",
                "A prompt with an embedded resource",
                |args, _cx| {
                    let uri = args["resourceUri"].clone();
                    Ok(PromptResult::new(vec![
                        PromptMessage::user(Content::resource(ResourceContents::text(
                            uri,
                            "text/plain",
                            "Embedded resource content for testing.",
                        ))),
                        PromptMessage::user("Please process the embedded resource above."),
                    ]))
                },
            )
            .argument("resourceUri", "URI of the resource to embed", true);
        prompts.add(
            "test_prompt_with_image",
            "A prompt with image content",
            |_args, _cx| {
                Ok(PromptResult::new(vec![
                    PromptMessage::user(Content::image(RED_PIXEL_PNG, "image/png")),
                    PromptMessage::user("Please analyze the image above."),
                ]))
            },
        );
        prompts.add("test_input_required_result_prompt", "A prompt that asks the user for context first", |_args, cx| -> Result<PromptOutcome, Error> {
            let Some(context) = cx.response("user_context").and_then(|r| accepted_field(r, "context")) else {
                return Ok(InputRequired::new()
                    .request(
                        "user_context",
                        InputRequest::elicit(
                            "What context should the prompt use?",
                            json!({ "type": "object", "properties": { "context": { "type": "string" } }, "required": ["context"] }),
                        ),
                    )
                    .into());
            };
            Ok(PromptResult::new(vec![PromptMessage::user(format!("Use this context: {context}"))]).into())
        });
    }

    fn complete(
        reference: &CompletionRef,
        argument: &str,
        value: &str,
        _context: &BTreeMap<String, String>,
    ) -> Result<Completion, Error> {
        Ok(match (reference, argument) {
            (CompletionRef::Prompt(name), "arg1") if name == "test_prompt_with_arguments" => {
                Completion::matching(["paris", "park", "party", "pasta"], value)
            }
            (CompletionRef::ResourceTemplate(_), "id") => {
                Completion::matching(["1", "123", "42"], value)
            }
            _ => Completion::default(),
        })
    }
}

fn register_content_tools(tools: &mut Tools) {
    tools.add_raw(
        "test_simple_text",
        "Returns simple text content",
        no_arguments(),
        |_args, _cx| Ok("This is a simple text response for testing."),
    );
    tools.add_raw(
        "test_image_content",
        "Returns image content",
        no_arguments(),
        |_args, _cx| {
            Ok(ToolResult::new(vec![Content::image(
                RED_PIXEL_PNG,
                "image/png",
            )]))
        },
    );
    tools.add_raw(
        "test_audio_content",
        "Returns audio content",
        no_arguments(),
        |_args, _cx| {
            Ok(ToolResult::new(vec![Content::audio(
                SILENT_WAV,
                "audio/wav",
            )]))
        },
    );
    tools.add_raw(
        "test_embedded_resource",
        "Returns embedded resource content",
        no_arguments(),
        |_args, _cx| {
            Ok(ToolResult::new(vec![Content::resource(
                ResourceContents::text(
                    "test://embedded-resource",
                    "text/plain",
                    "This is an embedded resource content.",
                ),
            )]))
        },
    );
    tools.add_raw(
        "test_multiple_content_types",
        "Returns multiple content types",
        no_arguments(),
        |_args, _cx| {
            Ok(ToolResult::new(vec![
                Content::text("Multiple content types test:"),
                Content::image(RED_PIXEL_PNG, "image/png"),
                Content::resource(ResourceContents::text(
                    "test://mixed-content-resource",
                    "application/json",
                    r#"{"test":"data","value":123}"#,
                )),
            ]))
        },
    );
    tools.add_raw(
        "test_tool_with_logging",
        "Sends log messages while it runs",
        no_arguments(),
        |_args, _cx| {
            log::info_from("conformance", "Tool execution started");
            pause();
            log::info_from("conformance", "Tool processing data");
            pause();
            log::info_from("conformance", "Tool execution completed");
            Ok("Logging test completed")
        },
    );
    tools.add_raw(
        "test_logging_tool",
        "Sends a log message (diagnostic)",
        no_arguments(),
        |_args, _cx| {
            log::info_from("conformance", "test_logging_tool ran");
            Ok("Logged one message")
        },
    );
    tools.add_raw(
        "test_error_handling",
        "Always fails",
        no_arguments(),
        |_args, _cx| {
            Ok(ToolResult::error(
                "This tool intentionally returns an error for testing",
            ))
        },
    );
    tools.add_raw(
        "test_tool_with_progress",
        "Reports progress while it runs",
        no_arguments(),
        |_args, _cx| {
            progress(0.0, Some(100.0), Some("Starting"));
            pause();
            progress(50.0, Some(100.0), Some("Halfway"));
            pause();
            progress(100.0, Some(100.0), Some("Complete"));
            Ok("Progress test completed")
        },
    );
    tools.add_raw(
        "json_schema_2020_12_tool",
        "Tool with JSON Schema 2020-12 features",
        json!({
            "$schema": "https://json-schema.org/draft/2020-12/schema",
            "type": "object",
            "$defs": {
                "address": {
                    "$anchor": "address",
                    "type": "object",
                    "properties": { "street": { "type": "string" }, "city": { "type": "string" } }
                }
            },
            "properties": {
                "name": { "type": "string" },
                "address": { "$ref": "#/$defs/address" },
                "contact": {
                    "anyOf": [
                        { "type": "string", "format": "email" },
                        { "type": "string", "pattern": "^\\+?[0-9 ]+$" }
                    ]
                },
                "kind": { "type": "string", "enum": ["person", "company"] }
            },
            "allOf": [
                { "required": ["name"] },
                { "anyOf": [{ "required": ["contact"] }, { "required": ["address"] }] }
            ],
            "if": { "properties": { "kind": { "const": "company" } } },
            "then": { "required": ["address"] },
            "else": { "required": [] },
            "additionalProperties": false
        }),
        |args, _cx| Ok(format!("Received: {args}")),
    );
    tools.add_raw(
        "test_trigger_tool_change",
        "Announces that the tool list changed",
        no_arguments(),
        |_args, _cx| {
            fedmcp_sdk::notify_list_changed(ListKind::Tools);
            Ok("Tool list change announced")
        },
    );
    tools.add_raw(
        "test_trigger_prompt_change",
        "Announces that the prompt list changed",
        no_arguments(),
        |_args, _cx| {
            fedmcp_sdk::notify_list_changed(ListKind::Prompts);
            Ok("Prompt list change announced")
        },
    );
}

/// Fixtures of the handshake era that ask the client for something mid-call.
fn register_round_trip_tools(tools: &mut Tools) {
    tools.add_raw(
        "test_sampling",
        "Asks the client's model to answer a prompt",
        json!({
            "type": "object",
            "properties": { "prompt": { "type": "string", "description": "The prompt to send" } },
            "required": ["prompt"]
        }),
        |args, cx| -> Result<ToolOutcome, Error> {
            if let Some(result) = cx.response("sample") {
                return Ok(format!("LLM response: {}", sampled_text(result)).into());
            }
            let prompt = args["prompt"].as_str().unwrap_or("Hello");
            Ok(InputRequired::new()
                .request("sample", InputRequest::sample(prompt, 100))
                .into())
        },
    );
    tools.add_raw(
        "test_elicitation",
        "Asks the user for their name and email",
        json!({
            "type": "object",
            "properties": { "message": { "type": "string", "description": "The message to show" } },
            "required": ["message"]
        }),
        |args, cx| -> Result<ToolOutcome, Error> {
            if let Some(result) = cx.response("form") {
                return Ok(format!("User response: {}", elicitation_summary(result)).into());
            }
            let message = args["message"]
                .as_str()
                .unwrap_or("Please provide your information");
            let schema = json!({
                "type": "object",
                "properties": {
                    "username": { "type": "string", "description": "User's response" },
                    "email": { "type": "string", "description": "User's email address" }
                },
                "required": ["username", "email"]
            });
            Ok(InputRequired::new()
                .request("form", InputRequest::elicit(message, schema))
                .into())
        },
    );
    tools.add_raw(
        "test_elicitation_sep1034_defaults",
        "Asks the user for values that all have defaults",
        no_arguments(),
        |_args, cx| -> Result<ToolOutcome, Error> {
            if let Some(result) = cx.response("form") {
                return Ok(format!("Elicitation completed: {}", elicitation_summary(result)).into());
            }
            let schema = json!({
                "type": "object",
                "properties": {
                    "name": { "type": "string", "description": "User's name", "default": "John Doe" },
                    "age": { "type": "integer", "description": "User's age", "default": 30 },
                    "score": { "type": "number", "description": "User's score", "default": 95.5 },
                    "status": {
                        "type": "string", "description": "User's status",
                        "enum": ["active", "inactive", "pending"], "default": "active"
                    },
                    "verified": { "type": "boolean", "description": "Whether user is verified", "default": true }
                }
            });
            let request = InputRequest::elicit("Please provide values (all have defaults)", schema);
            Ok(InputRequired::new().request("form", request).into())
        },
    );
    tools.add_raw(
        "test_elicitation_sep1330_enums",
        "Asks the user to pick from every kind of enum",
        no_arguments(),
        |_args, cx| -> Result<ToolOutcome, Error> {
            if let Some(result) = cx.response("form") {
                return Ok(format!("Elicitation completed: {}", elicitation_summary(result)).into());
            }
            let schema = json!({
                "type": "object",
                "properties": {
                    "untitledSingle": { "type": "string", "enum": ["option1", "option2", "option3"] },
                    "titledSingle": {
                        "type": "string",
                        "oneOf": [
                            { "const": "value1", "title": "First Option" },
                            { "const": "value2", "title": "Second Option" },
                            { "const": "value3", "title": "Third Option" }
                        ]
                    },
                    "legacyEnum": {
                        "type": "string",
                        "enum": ["opt1", "opt2", "opt3"],
                        "enumNames": ["Option One", "Option Two", "Option Three"]
                    },
                    "untitledMulti": {
                        "type": "array",
                        "items": { "type": "string", "enum": ["option1", "option2", "option3"] }
                    },
                    "titledMulti": {
                        "type": "array",
                        "items": {
                            "anyOf": [
                                { "const": "value1", "title": "First Choice" },
                                { "const": "value2", "title": "Second Choice" },
                                { "const": "value3", "title": "Third Choice" }
                            ]
                        }
                    }
                }
            });
            let request = InputRequest::elicit("Please choose your options", schema);
            Ok(InputRequired::new().request("form", request).into())
        },
    );
}

/// Fixtures of the multi-round-trip (MRTR) scenarios.
fn register_input_required_tools(tools: &mut Tools) {
    tools.add_raw(
        "test_input_required_result_elicitation",
        "Asks the user for their name",
        no_arguments(),
        |_a, cx| -> Result<ToolOutcome, Error> {
            match cx
                .response("user_name")
                .and_then(|r| accepted_field(r, "name"))
            {
                Some(name) => Ok(format!("Hello, {name}!").into()),
                None => Ok(ask_name("user_name", "What is your name?").into()),
            }
        },
    );
    tools.add_raw(
        "test_streaming_elicitation",
        "Asks the user for their name (diagnostic)",
        no_arguments(),
        |_a, cx| -> Result<ToolOutcome, Error> {
            match cx
                .response("user_name")
                .and_then(|r| accepted_field(r, "name"))
            {
                Some(name) => Ok(format!("Hello, {name}!").into()),
                None => Ok(ask_name("user_name", "What is your name?").into()),
            }
        },
    );
    tools.add_raw(
        "test_input_required_result_sampling",
        "Asks the client's model a question",
        no_arguments(),
        |_a, cx| -> Result<ToolOutcome, Error> {
            match cx.response("capital_question") {
                Some(result) => Ok(format!("The model answered: {}", sampled_text(result)).into()),
                None => Ok(InputRequired::new()
                    .request(
                        "capital_question",
                        InputRequest::sample("What is the capital of France?", 100),
                    )
                    .into()),
            }
        },
    );
    tools.add_raw(
        "test_input_required_result_list_roots",
        "Asks the client for its roots",
        no_arguments(),
        |_a, cx| -> Result<ToolOutcome, Error> {
            match cx.response("client_roots") {
                Some(result) => {
                    Ok(format!("Client roots: {}", root_uris(result).join(", ")).into())
                }
                None => Ok(InputRequired::new()
                    .request("client_roots", InputRequest::Roots)
                    .into()),
            }
        },
    );
    tools.add_raw("test_input_required_result_request_state", "Round-trips a request state", no_arguments(), |_a, cx| -> Result<ToolOutcome, Error> {
        match (cx.response("confirm"), cx.state()) {
            (Some(result), Some("awaiting-confirmation")) => {
                let ok = result.get("content").and_then(|c| c.get("ok")).cloned().unwrap_or(Value::Null);
                Ok(format!("state-ok: confirmed={ok}").into())
            }
            _ => Ok(InputRequired::new()
                .request(
                    "confirm",
                    InputRequest::elicit(
                        "Please confirm",
                        json!({ "type": "object", "properties": { "ok": { "type": "boolean" } }, "required": ["ok"] }),
                    ),
                )
                .state("awaiting-confirmation")
                .into()),
        }
    });
    tools.add_raw(
        "test_input_required_result_multiple_inputs",
        "Asks for three inputs at once",
        no_arguments(),
        |_a, cx| -> Result<ToolOutcome, Error> {
            let keys = ["user_name", "greeting", "client_roots"];
            if cx.state() == Some("multiple") && keys.iter().all(|k| cx.response(k).is_some()) {
                let name = cx
                    .response("user_name")
                    .and_then(|r| accepted_field(r, "name"))
                    .unwrap_or("someone");
                let greeting = cx
                    .response("greeting")
                    .map(sampled_text)
                    .unwrap_or_default();
                let roots = cx
                    .response("client_roots")
                    .map(root_uris)
                    .unwrap_or_default();
                return Ok(format!(
                    "name={name}; greeting={greeting}; roots={}",
                    roots.join(",")
                )
                .into());
            }
            Ok(ask_name("user_name", "What is your name?")
                .request("greeting", InputRequest::sample("Generate a greeting", 50))
                .request("client_roots", InputRequest::Roots)
                .state("multiple")
                .into())
        },
    );
    tools.add_raw("test_input_required_result_multi_round", "Asks two questions, one after the other", no_arguments(), |_a, cx| -> Result<ToolOutcome, Error> {
        if let Some(state) = cx.state().and_then(|s| s.strip_prefix("step2:"))
            && let Some(color) = cx.response("step2").and_then(|r| accepted_field(r, "color"))
        {
            return Ok(format!("{state} likes {color}").into());
        }
        if let Some(name) = cx.response("step1").and_then(|r| accepted_field(r, "name")) {
            return Ok(InputRequired::new()
                .request(
                    "step2",
                    InputRequest::elicit(
                        "Step 2: What is your favorite color?",
                        json!({ "type": "object", "properties": { "color": { "type": "string" } }, "required": ["color"] }),
                    ),
                )
                .state(format!("step2:{name}"))
                .into());
        }
        Ok(ask_name("step1", "Step 1: What is your name?").state("step1").into())
    });
    tools.add_raw("test_input_required_result_tampered_state", "Relies on an integrity-protected state", no_arguments(), |_a, cx| -> Result<ToolOutcome, Error> {
        match (cx.response("confirm"), cx.state()) {
            (Some(_), Some("untampered")) => Ok("state verified".into()),
            _ => Ok(InputRequired::new()
                .request(
                    "confirm",
                    InputRequest::elicit(
                        "Please confirm",
                        json!({ "type": "object", "properties": { "ok": { "type": "boolean" } }, "required": ["ok"] }),
                    ),
                )
                .state("untampered")
                .into()),
        }
    });
    tools.add_raw(
        "test_input_required_result_capabilities",
        "Asks only for what the client declared it supports",
        no_arguments(),
        |_a, cx| -> Result<ToolOutcome, Error> {
            if !cx.responses().is_empty() {
                return Ok(format!("Received {} answer(s)", cx.responses().len()).into());
            }
            let caps = cx.client_capabilities();
            let mut input = InputRequired::new();
            if caps.elicitation {
                input = ask_name("user_name", "What is your name?");
            }
            if caps.sampling {
                input = input.request("greeting", InputRequest::sample("Generate a greeting", 50));
            }
            if caps.roots {
                input = input.request("client_roots", InputRequest::Roots);
            }
            if input.requests.is_empty() {
                return Ok("The client supports no input requests".into());
            }
            Ok(input.into())
        },
    );
}

fn register_diagnostic_tools(tools: &mut Tools) {
    tools.add_raw(
        "test_missing_capability",
        "Needs sampling; a client that did not declare it is refused",
        no_arguments(),
        |_a, cx| -> Result<ToolOutcome, Error> {
            match cx.response("sample") {
                Some(result) => Ok(format!("LLM response: {}", sampled_text(result)).into()),
                None => Ok(InputRequired::new()
                    .request("sample", InputRequest::sample("Say hello", 20))
                    .into()),
            }
        },
    );
}

/// The fixture of `http-custom-header-server-validation` (SEP-2243): a parameter the client
/// mirrors into an `Mcp-Param-Region` header, which the host checks against the argument.
fn register_header_tools(tools: &mut Tools) {
    tools.add_raw(
        "test_param_header",
        "Echoes a region that the client also sends as the Mcp-Param-Region header",
        json!({
            "type": "object",
            "properties": {
                "region": { "type": "string", "description": "A region name", "x-mcp-header": "Region" }
            },
            "required": ["region"]
        }),
        |args, _cx| Ok(format!("Region: {}", args["region"].as_str().unwrap_or_default())),
    );
}

fn sleep_seconds(seconds: f64) {
    if seconds > 0.0 {
        std::thread::sleep(Duration::from_secs_f64(seconds.min(600.0)));
    }
}

/// The fixtures of the Tasks extension scenarios (SEP-2663). Which of them run as tasks is
/// declared in `plugins/conformance.toml` (`[tasks]`); the code is that of any tool.
fn register_task_tools(tools: &mut Tools) {
    tools.add_raw(
        "greet",
        "Greets someone (never a task)",
        json!({ "type": "object", "properties": { "name": { "type": "string" } }, "required": ["name"] }),
        |args, _cx| Ok(format!("Hello, {}!", args["name"].as_str().unwrap_or("World"))),
    );
    tools.add_raw(
        "slow_compute",
        "Sleeps for `seconds`, then answers (may run as a task)",
        json!({
            "type": "object",
            "properties": { "seconds": { "type": "number" }, "label": { "type": "string" } }
        }),
        |args, _cx| {
            let seconds = args["seconds"].as_f64().unwrap_or(0.0);
            sleep_seconds(seconds);
            let label = args["label"].as_str().unwrap_or("compute");
            Ok(format!("{label}: done after {seconds} s"))
        },
    );
    tools.add_raw(
        "failing_job",
        "Reports a tool error after about a second (runs only as a task)",
        no_arguments(),
        |_args, _cx| {
            sleep_seconds(1.0);
            Ok(ToolResult::error("failing_job failed, as it always does"))
        },
    );
    tools.add_raw(
        "protocol_error_job",
        "Traps after about a second, so its task fails (runs only as a task)",
        no_arguments(),
        |_args, _cx| -> Result<ToolResult, Error> {
            sleep_seconds(1.0);
            panic!("protocol_error_job traps on purpose");
        },
    );
    tools.add_raw(
        "confirm_delete",
        "Asks the user to confirm before it deletes a file (may run as a task)",
        json!({ "type": "object", "properties": { "filename": { "type": "string" } } }),
        |args, cx| -> Result<ToolOutcome, Error> {
            let filename = args["filename"].as_str().unwrap_or("the file");
            match cx.response("confirm") {
                Some(answer) if answer["action"] == "accept" => Ok(format!("Deleted {filename}").into()),
                Some(_) => Ok(format!("Kept {filename}").into()),
                None => Ok(InputRequired::new()
                    .request(
                        "confirm",
                        InputRequest::elicit(
                            format!("Delete {filename}?"),
                            json!({ "type": "object", "properties": { "confirm": { "type": "boolean" } }, "required": ["confirm"] }),
                        ),
                    )
                    .into()),
            }
        },
    );
    tools.add_raw(
        "multi_input",
        "Asks two questions at once (may run as a task)",
        no_arguments(),
        |_args, cx| -> Result<ToolOutcome, Error> {
            match (cx.response("name"), cx.response("confirm")) {
                (Some(name), Some(confirm)) => {
                    let name = accepted_field(name, "name").unwrap_or("someone");
                    let confirmed = confirm["content"]["confirm"] == true;
                    Ok(format!("name={name}, confirmed={confirmed}").into())
                }
                _ => Ok(ask_name("name", "What is your name?")
                    .request(
                        "confirm",
                        InputRequest::elicit(
                            "Confirm?",
                            json!({ "type": "object", "properties": { "confirm": { "type": "boolean" } }, "required": ["confirm"] }),
                        ),
                    )
                    .into()),
            }
        },
    );
    tools.add_raw(
        "test_tool_with_task",
        "Asks for a name by MRTR, then runs as a task with it",
        no_arguments(),
        |_args, cx| -> Result<ToolOutcome, Error> {
            match cx
                .response("user_name")
                .and_then(|r| accepted_field(r, "name"))
            {
                Some(name) => {
                    sleep_seconds(0.2);
                    Ok(format!("Hello, {name}! (from a task)").into())
                }
                None => Ok(ask_name("user_name", "What is your name?").into()),
            }
        },
    );
}

fedmcp_sdk::export!(Conformance);
