//! Building a catalog snapshot: namespacing (`<namespace>__<name>`), the rules that keep one
//! owner's names from passing for another's (no unprefixed `__` names), deterministic
//! collisions (plugins before peers, each in name order, the first keeps it, logged), and URI
//! template matching.

use std::sync::Arc;

use rmcp::model::{Prompt, Resource, ResourceTemplate, Tool};

use crate::federation::loops;
use crate::plugin::Plugin;

use super::*;

/// Whether an input schema has an `x-mcp-header` annotation anywhere (conservatively: rmcp
/// honours it only on properties, but a relay that misses one would send a request the peer
/// refuses).
pub(super) fn mentions_param_headers(schema: &serde_json::Map<String, serde_json::Value>) -> bool {
    fn mentions(value: &serde_json::Value) -> bool {
        match value {
            serde_json::Value::Object(map) => map.contains_key("x-mcp-header") || map.values().any(mentions),
            serde_json::Value::Array(items) => items.iter().any(mentions),
            _ => false,
        }
    }
    schema.contains_key("x-mcp-header") || schema.values().any(mentions)
}

/// Whether an unprefixed owner's entry name (or resource URI, as grants name it) would read
/// as another owner's: tool and prompt names with the separator anywhere; URIs whose text
/// before it could be a namespace (`docs__x`, not `file:///a__b`). Such entries are refused:
/// `tools:docs__*` must cover namespace `docs` only.
pub(super) fn passes_for_prefixed(name: &str, is_uri: bool) -> bool {
    match name.split_once(SEPARATOR) {
        None => false,
        Some(_) if !is_uri => true,
        Some((head, _)) => !head.is_empty() && head.chars().all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_'),
    }
}

/// Log and skip an unprefixed owner's entry that would pass for a prefixed one.
fn refused_unprefixed(owner: &Owner, namespace: &str, kind: &str, name: &str, is_uri: bool) -> bool {
    let refused = namespace.is_empty() && passes_for_prefixed(name, is_uri);
    if refused {
        tracing::warn!(owner = %owner.name(), kind, name, separator = SEPARATOR,
            "entry refused: an unprefixed owner's name holds the namespace separator, so it would pass for another \
             owner's (give the owner a namespace)");
    }
    refused
}

pub(super) fn exposed_name(namespace: &str, name: &str) -> String {
    if namespace.is_empty() { name.to_owned() } else { format!("{namespace}{SEPARATOR}{name}") }
}

/// What one owner serves, under its own names.
struct Entries<'a> {
    owner: Owner,
    namespace: &'a str,
    tools: &'a [Tool],
    prompts: &'a [Prompt],
    resources: &'a [Resource],
    templates: &'a [ResourceTemplate],
}

pub(super) fn build(host_id: &str, plugins: Vec<Arc<Plugin>>, peers: &[PeerEntries]) -> Snapshot {
    let mut snapshot = Snapshot::default();
    let plugin_entries = plugins.iter().map(|plugin| Entries {
        owner: Owner::Plugin(plugin.clone()),
        namespace: plugin.manifest.namespace.as_deref().unwrap_or(&plugin.name),
        tools: &plugin.tools,
        prompts: &plugin.prompts,
        resources: &plugin.resources,
        templates: &plugin.resource_templates,
    });
    let peer_entries = peers.iter().map(|(peer, listing)| Entries {
        owner: Owner::Peer(peer.clone()),
        namespace: peer.namespace(),
        tools: &listing.tools,
        prompts: &listing.prompts,
        resources: &listing.resources,
        templates: &listing.templates,
    });
    for entries in plugin_entries.chain(peer_entries) {
        let owner = &entries.owner;
        for tool in entries.tools {
            if refused_unprefixed(owner, entries.namespace, "tool", &tool.name, false) {
                continue;
            }
            let exposed = exposed_name(entries.namespace, &tool.name);
            if let Some(kept) = snapshot.tool_routes.get(&exposed) {
                tracing::warn!(tool = %exposed, kept = %kept.owner.name(), skipped = %owner.name(), "tool name collision");
                continue;
            }
            let mut tool = tool.clone();
            let local_name = tool.name.to_string();
            tool.name = exposed.clone().into();
            loops::stamp(&mut tool.meta, host_id);
            let annotations = tool.annotations.clone();
            let param_headers = mentions_param_headers(&tool.input_schema);
            // Only a plugin's tools run as this host's tasks; a peer runs its own, which the
            // session passes on (`serve_peer_task`).
            let task = match owner {
                Owner::Plugin(plugin) => plugin.manifest.tasks.get(&local_name).copied(),
                Owner::Peer(_) => None,
            };
            snapshot.tools.push(tool);
            let route = Route { owner: owner.clone(), local_name, annotations, param_headers, task };
            snapshot.tool_routes.insert(exposed, route);
        }
        for prompt in entries.prompts {
            if refused_unprefixed(owner, entries.namespace, "prompt", &prompt.name, false) {
                continue;
            }
            let exposed = exposed_name(entries.namespace, &prompt.name);
            if let Some(kept) = snapshot.prompt_routes.get(&exposed) {
                tracing::warn!(prompt = %exposed, kept = %kept.owner.name(), skipped = %owner.name(), "prompt name collision");
                continue;
            }
            let mut prompt = prompt.clone();
            let local_name = std::mem::replace(&mut prompt.name, exposed.clone());
            loops::stamp(&mut prompt.meta, host_id);
            snapshot.prompts.push(prompt);
            let route = Route { owner: owner.clone(), local_name, annotations: None, param_headers: false, task: None };
            snapshot.prompt_routes.insert(exposed, route);
        }
        for resource in entries.resources {
            if refused_unprefixed(owner, entries.namespace, "resource", &resource.uri, true) {
                continue;
            }
            if let Some(kept) = snapshot.resource_routes.get(&resource.uri) {
                tracing::warn!(uri = %resource.uri, kept = %kept.name(), skipped = %owner.name(), "resource URI collision");
                continue;
            }
            let mut resource = resource.clone();
            loops::stamp(&mut resource.meta, host_id);
            snapshot.resource_routes.insert(resource.uri.clone(), owner.clone());
            snapshot.resources.push(resource);
        }
        for template in entries.templates {
            if refused_unprefixed(owner, entries.namespace, "resource template", &template.uri_template, true) {
                continue;
            }
            if let Some((_, kept)) = snapshot.template_routes.iter().find(|(t, _)| *t == template.uri_template) {
                tracing::warn!(template = %template.uri_template, kept = %kept.name(), skipped = %owner.name(), "resource template collision");
                continue;
            }
            let mut template = template.clone();
            loops::stamp(&mut template.meta, host_id);
            snapshot.template_routes.push((template.uri_template.clone(), owner.clone()));
            snapshot.templates.push(template);
        }
    }
    snapshot.plugins = plugins;
    snapshot
}

pub(crate) mod erased {
    /// A list compared by its wire form, so any change a client could see counts.
    pub(crate) trait Listed {
        fn as_json(&self) -> serde_json::Value;
    }

    impl<T: serde::Serialize> Listed for Vec<T> {
        fn as_json(&self) -> serde_json::Value {
            serde_json::to_value(self).unwrap_or(serde_json::Value::Null)
        }
    }
}

/// Whether `uri` matches an RFC 6570 level-1 template (`{var}` matches one or more
/// characters other than `/`, except a trailing variable, which takes the rest).
pub(super) fn template_matches(template: &str, uri: &str) -> bool {
    let mut parts = template.split('{');
    let Some(rest) = uri.strip_prefix(parts.next().unwrap_or_default()) else {
        return false;
    };
    let mut rest = rest;
    let mut parts = parts.peekable();
    while let Some(part) = parts.next() {
        let Some((_, literal)) = part.split_once('}') else {
            return false;
        };
        let last = parts.peek().is_none() && literal.is_empty();
        let end = if last {
            rest.len()
        } else if literal.is_empty() {
            return false;
        } else {
            match rest.find(literal) {
                Some(end) => end,
                None => return false,
            }
        };
        let value = &rest[..end];
        if value.is_empty() || (!last && value.contains('/')) {
            return false;
        }
        rest = &rest[end + literal.len()..];
    }
    rest.is_empty()
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use rmcp::model::{Prompt, Resource, ResourceTemplate, Tool};

    use super::{passes_for_prefixed, template_matches};
    use crate::catalog::Catalog;
    use crate::federation::{Peer, PeerListing};

    #[tokio::test]
    async fn an_unprefixed_peer_cannot_publish_names_that_pass_for_a_namespace() {
        let text = "[[peers]]\nname = \"b\"\nnamespace = \"\"\nurl = \"http://127.0.0.1:9/mcp\"\nconnect = \"lazy\"";
        let config = crate::config::HostConfig::parse(text).unwrap();
        let peer = Peer::start(config.peers[0].clone(), "h".into(), 8, None);
        let tool = |name: &'static str| Tool::new(name, "t", Arc::new(serde_json::Map::new()));
        let listing = PeerListing {
            tools: vec![tool("docs__read"), tool("read")],
            prompts: vec![Prompt::new("docs__ask", None::<String>, None), Prompt::new("ask", None::<String>, None)],
            resources: vec![Resource::new("docs__secret", "s"), Resource::new("file:///a__b", "f")],
            ..PeerListing::default()
        };
        let catalog = Catalog::new("h".into());
        catalog.set_peer(peer, Arc::new(listing));
        assert!(catalog.tool("docs__read").is_none() && catalog.tool("read").is_some());
        assert!(catalog.prompt("docs__ask").is_none() && catalog.prompt("ask").is_some());
        assert!(catalog.resource_owner("docs__secret").is_none());
        assert!(catalog.resource_owner("file:///a__b").is_some());
    }

    /// A completion names a template by its text; another owner's template may match that
    /// text as if it were a URI (`test://{rest}` matches `test://template/{id}/data`). The
    /// grant is judged after the template's own owner, the one the completion goes to.
    #[tokio::test]
    async fn a_templates_grant_name_comes_from_its_own_owner_not_one_whose_template_matches_its_text() {
        let text = "[[peers]]\nname = \"a\"\nurl = \"http://127.0.0.1:9/mcp\"\nconnect = \"lazy\"\n\
                    [[peers]]\nname = \"b\"\nurl = \"http://127.0.0.1:9/mcp\"\nconnect = \"lazy\"";
        let config = crate::config::HostConfig::parse(text).unwrap();
        let catalog = Catalog::new("h".into());
        for (peer, template) in [(&config.peers[0], "test://{rest}"), (&config.peers[1], "test://template/{id}/data")] {
            let listing =
                PeerListing { templates: vec![ResourceTemplate::new(template, "t")], ..PeerListing::default() };
            catalog.set_peer(Peer::start(peer.clone(), "h".into(), 8, None), Arc::new(listing));
        }
        let template = "test://template/{id}/data";
        assert_eq!(catalog.template_owner(template).map(|o| o.namespace().to_owned()).as_deref(), Some("b"));
        assert_eq!(catalog.template_grant_name(template), format!("b__{template}"));
        // Read as a URI, the same text is a's: the grant name completion used to be judged by.
        assert_eq!(catalog.resource_grant_name(template), format!("a__{template}"));
        // A resource a serves through its template is judged as a's.
        assert_eq!(catalog.resource_grant_name("test://x/y"), "a__test://x/y");
    }

    /// An unprefixed owner's catch-all template does not take URIs that pass for another
    /// namespace's names.
    #[tokio::test]
    async fn an_unprefixed_catch_all_template_does_not_own_names_of_a_namespace() {
        let text = "[[peers]]\nname = \"u\"\nnamespace = \"\"\nurl = \"http://127.0.0.1:9/mcp\"\nconnect = \"lazy\"";
        let config = crate::config::HostConfig::parse(text).unwrap();
        let catalog = Catalog::new("h".into());
        let listing = PeerListing { templates: vec![ResourceTemplate::new("{rest}", "t")], ..PeerListing::default() };
        catalog.set_peer(Peer::start(config.peers[0].clone(), "h".into(), 8, None), Arc::new(listing));
        assert!(catalog.resource_owner("notes://today").is_some());
        assert!(catalog.resource_owner("docs__secret").is_none(), "the catch-all took a namespaced name");
    }

    #[test]
    fn unprefixed_names_with_the_separator_are_refused() {
        for (name, is_uri, refused) in [
            ("docs__read", false, true),
            ("__x", false, true),
            ("a__b__c", false, true),
            ("read_docs", false, false),
            ("docs_read", false, false),
            ("docs__secret", true, true),
            ("docs-1__x://y", true, true),
            ("file:///tmp/a__b", true, false),
            ("notes://a__b", true, false),
            ("notes://x", true, false),
        ] {
            assert_eq!(passes_for_prefixed(name, is_uri), refused, "{name}");
        }
    }

    #[test]
    fn templates_match_their_uris_only() {
        let cases = [
            ("test://template/{id}/data", "test://template/123/data", true),
            ("test://template/{id}/data", "test://template/123/other", false),
            ("test://template/{id}/data", "test://template//data", false),
            ("test://template/{id}/data", "test://template/a/b/data", false),
            ("notes://{topic}", "notes://rust/async", true),
            ("notes://{topic}", "notes://", false),
            ("file:///{a}-{b}", "file:///x-y", true),
            ("plain://fixed", "plain://fixed", true),
            ("plain://fixed", "plain://fixed/more", false),
        ];
        for (template, uri, expected) in cases {
            assert_eq!(template_matches(template, uri), expected, "{template} vs {uri}");
        }
    }
}
