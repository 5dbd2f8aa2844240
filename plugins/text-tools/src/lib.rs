//! Everyday text tools: count words, make slugs, pretty-print JSON, change case.

use fedmcp_sdk::{Error, JsonSchema, Plugin, ToolResult, Tools, json};
use serde::Deserialize;

#[derive(Deserialize, JsonSchema)]
struct TextInput {
    /// The text to work on.
    text: String,
}

#[derive(Deserialize, JsonSchema)]
struct JsonInput {
    /// A JSON document.
    json: String,
    /// Spaces per indentation level (default 2; 0 for compact output).
    indent: Option<u8>,
}

#[derive(Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
enum Case {
    Upper,
    Lower,
    Title,
    Snake,
    Kebab,
}

#[derive(Deserialize, JsonSchema)]
struct CaseInput {
    /// The text to convert.
    text: String,
    /// The case to convert to.
    to: Case,
}

fn words(text: &str) -> impl Iterator<Item = &str> {
    text.split(|c: char| !c.is_alphanumeric())
        .filter(|w| !w.is_empty())
}

fn slugify(text: &str) -> String {
    words(text)
        .map(str::to_lowercase)
        .collect::<Vec<_>>()
        .join("-")
}

fn title_case(text: &str) -> String {
    text.split(' ')
        .map(|word| {
            let mut chars = word.chars();
            match chars.next() {
                Some(first) => first
                    .to_uppercase()
                    .chain(chars.flat_map(char::to_lowercase))
                    .collect(),
                None => String::new(),
            }
        })
        .collect::<Vec<_>>()
        .join(" ")
}

fn pretty_json(input: &JsonInput) -> Result<String, Error> {
    let value: serde_json::Value = serde_json::from_str(&input.json)
        .map_err(|e| Error::invalid_params(format!("not valid JSON: {e}")))?;
    let indent = input.indent.unwrap_or(2);
    if indent == 0 {
        return Ok(value.to_string());
    }
    let mut out = Vec::new();
    let spaces = " ".repeat(usize::from(indent));
    let formatter = serde_json::ser::PrettyFormatter::with_indent(spaces.as_bytes());
    let mut serializer = serde_json::Serializer::with_formatter(&mut out, formatter);
    serde::Serialize::serialize(&value, &mut serializer)
        .map_err(|e| Error::internal(e.to_string()))?;
    String::from_utf8(out).map_err(|e| Error::internal(e.to_string()))
}

struct TextTools;

impl Plugin for TextTools {
    fn tools(tools: &mut Tools) {
        tools
            .add(
                "word_count",
                "Count the words, lines and characters of a text",
                |input: TextInput, _cx| {
                    let counts = json!({
                        "words": words(&input.text).count(),
                        "lines": input.text.lines().count(),
                        "characters": input.text.chars().count(),
                    });
                    Ok(ToolResult::structured(counts))
                },
            )
            .title("Word count")
            .read_only()
            // Built when the tools are listed, not again in every call's fresh instance.
            .output_schema_with(|| {
                json!({
                    "type": "object",
                    "properties": {
                        "words": { "type": "integer" },
                        "lines": { "type": "integer" },
                        "characters": { "type": "integer" }
                    },
                    "required": ["words", "lines", "characters"]
                })
            });
        tools
            .add(
                "slugify",
                "Turn a title into a URL slug (lowercase words joined by '-')",
                |input: TextInput, _cx| Ok(slugify(&input.text)),
            )
            .read_only();
        tools
            .add(
                "format_json",
                "Validate and pretty-print a JSON document",
                |input: JsonInput, _cx| pretty_json(&input),
            )
            .read_only();
        tools
            .add(
                "change_case",
                "Convert text to upper, lower, title, snake or kebab case",
                |input: CaseInput, _cx| {
                    Ok(match input.to {
                        Case::Upper => input.text.to_uppercase(),
                        Case::Lower => input.text.to_lowercase(),
                        Case::Title => title_case(&input.text),
                        Case::Snake => words(&input.text)
                            .map(str::to_lowercase)
                            .collect::<Vec<_>>()
                            .join("_"),
                        Case::Kebab => slugify(&input.text),
                    })
                },
            )
            .read_only();
    }
}

fedmcp_sdk::export!(TextTools);

#[cfg(test)]
mod tests {
    #[test]
    fn slugs_keep_only_words() {
        assert_eq!(super::slugify("Hello, World! 2026"), "hello-world-2026");
    }

    #[test]
    fn title_case_capitalizes_each_word() {
        assert_eq!(super::title_case("the QUICK fox"), "The Quick Fox");
    }
}
