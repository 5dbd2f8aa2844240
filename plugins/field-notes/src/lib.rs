//! Field notes: a small knowledge base served as MCP resources, with prompts that use it.

use fedmcp_sdk::{
    Completion, CompletionRef, Content, Error, Plugin, PromptMessage, PromptResult, Prompts,
    ResourceContents, Resources,
};
use std::collections::BTreeMap;

const NOTES: &[(&str, &str, &str)] = &[
    (
        "getting-started",
        "Getting started with fedmcp",
        "# Getting started\n\nDrop a `.wasm` plugin into `plugins/`, start `fedmcp serve`, and point an MCP client \
         at `http://127.0.0.1:8931/mcp`. Each plugin's tools appear as `<plugin>__<tool>`.\n",
    ),
    (
        "manifests",
        "Plugin manifests",
        "# Plugin manifests\n\n`plugins/<name>.toml` sits beside `<name>.wasm`. Without one a plugin gets nothing: \
         no files, no network, no environment, default memory and time limits. `namespace = \"\"` serves its \
         entries unprefixed.\n",
    ),
    (
        "mrtr",
        "Asking the user mid-call",
        "# Input required\n\nA plugin that needs the user returns `InputRequired` with its questions. fedmcp asks \
         the client (2025-11-25) or returns an MRTR result with a signed state (2026-07-28), then calls the plugin \
         again with the answers.\n",
    ),
];

fn note(topic: &str) -> Option<&'static (&'static str, &'static str, &'static str)> {
    NOTES.iter().find(|(t, _, _)| *t == topic)
}

struct FieldNotes;

impl Plugin for FieldNotes {
    fn resources(resources: &mut Resources) {
        resources
            .add("notes://index", "Index of field notes", |uri, _cx| {
                let index: String = NOTES
                    .iter()
                    .map(|(topic, title, _)| format!("- notes://topics/{topic}: {title}\n"))
                    .collect();
                Ok(vec![ResourceContents::text(uri, "text/markdown", index)])
            })
            .description("Every note, one line each")
            .mime_type("text/markdown");
        resources
            .add_template(
                "notes://topics/{topic}",
                "A field note",
                |uri, vars, _cx| {
                    let topic = &vars["topic"];
                    let (_, _, body) = note(topic)
                        .ok_or_else(|| Error::not_found(format!("no note on {topic:?}")))?;
                    Ok(vec![ResourceContents::text(uri, "text/markdown", *body)])
                },
            )
            .description("A note by topic; see notes://index")
            .mime_type("text/markdown");
    }

    fn prompts(prompts: &mut Prompts) {
        prompts
            .add("review_code", "Ask for a careful code review", |args, _cx| {
                let language = args.get("language").map(String::as_str).unwrap_or("the given language");
                let text = format!(
                    "Review this {language} code. Point out bugs first, then unclear names, then style. Quote the \
                     lines you mean.\n\n```\n{}\n```",
                    args["code"]
                );
                Ok(PromptResult::new(vec![PromptMessage::user(text)]))
            })
            .title("Code review")
            .argument("code", "The code to review", true)
            .argument("language", "Its programming language", false);
        prompts
            .add(
                "explain_note",
                "Explain a field note in plain words",
                |args, _cx| {
                    let topic = &args["topic"];
                    let (_, title, body) = note(topic)
                        .ok_or_else(|| Error::invalid_params(format!("no note on {topic:?}")))?;
                    Ok(PromptResult::new(vec![
                        PromptMessage::user(Content::resource(ResourceContents::text(
                            format!("notes://topics/{topic}"),
                            "text/markdown",
                            *body,
                        ))),
                        PromptMessage::user(format!(
                            "Explain \"{title}\" to a newcomer in three sentences."
                        )),
                    ]))
                },
            )
            .argument("topic", "The note's topic (see notes://index)", true);
    }

    fn complete(
        reference: &CompletionRef,
        argument: &str,
        value: &str,
        _context: &BTreeMap<String, String>,
    ) -> Result<Completion, Error> {
        let topics = NOTES.iter().map(|(topic, _, _)| *topic);
        Ok(match (reference, argument) {
            (CompletionRef::Prompt(name), "topic") if name == "explain_note" => {
                Completion::matching(topics, value)
            }
            (CompletionRef::ResourceTemplate(_), "topic") => Completion::matching(topics, value),
            (CompletionRef::Prompt(name), "language") if name == "review_code" => {
                Completion::matching(
                    ["c", "go", "javascript", "python", "rust", "typescript"],
                    value,
                )
            }
            _ => Completion::default(),
        })
    }
}

fedmcp_sdk::export!(FieldNotes);
