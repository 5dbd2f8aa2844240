//! The merged, namespaced view of everything the host serves, and routing of a call to its
//! owner.
//!
//! Tools and prompts appear as `<namespace>__<name>` (the namespace is the plugin's file
//! name unless its manifest sets another, or `""` for none). Resource URIs are served as the
//! plugin publishes them. When two owners publish the same name or URI, the plugin whose
//! file name sorts first keeps it and the collision is logged: never a silent overwrite.

use std::collections::HashMap;
use std::sync::{Arc, RwLock};

use rmcp::model::{Prompt, Resource, ResourceTemplate, Tool};
use tokio::sync::broadcast;

use crate::plugin::{ListKind, Plugin};

/// Between a namespace and an entry's own name. `__` keeps names within
/// `^[A-Za-z0-9_-]{1,64}$`, the strictest tool-name rule among common clients.
pub const SEPARATOR: &str = "__";

/// Where an exposed entry lives.
#[derive(Clone)]
pub struct Route {
    pub plugin: Arc<Plugin>,
    /// The entry's name (or URI template) inside its plugin.
    pub local_name: String,
}

#[derive(Default)]
struct Snapshot {
    plugins: Vec<Arc<Plugin>>,
    tools: Vec<Tool>,
    tool_routes: HashMap<String, Route>,
    prompts: Vec<Prompt>,
    prompt_routes: HashMap<String, Route>,
    resources: Vec<Resource>,
    resource_routes: HashMap<String, Arc<Plugin>>,
    templates: Vec<ResourceTemplate>,
    template_routes: Vec<(String, Arc<Plugin>)>,
}

/// A plugin that failed to load, and why.
#[derive(Debug, Clone, serde::Serialize)]
pub struct LoadFailure {
    pub path: String,
    pub reason: String,
}

/// The catalog: swapped as a whole when its plugins change, so a reader always sees one
/// consistent version.
pub struct Catalog {
    snapshot: RwLock<Arc<Snapshot>>,
    failures: RwLock<Vec<LoadFailure>>,
    changes: broadcast::Sender<ListKind>,
}

impl Default for Catalog {
    fn default() -> Self {
        Self::new()
    }
}

impl Catalog {
    pub fn new() -> Self {
        let (changes, _) = broadcast::channel(64);
        Self { snapshot: RwLock::new(Arc::default()), failures: RwLock::default(), changes }
    }

    fn current(&self) -> Arc<Snapshot> {
        match self.snapshot.read() {
            Ok(guard) => guard.clone(),
            Err(poisoned) => poisoned.into_inner().clone(),
        }
    }

    /// Replace the served plugins (and the record of failed loads). Listeners are told about
    /// each list that changed, and only those.
    pub fn set_plugins(&self, mut plugins: Vec<Arc<Plugin>>, failures: Vec<LoadFailure>) {
        plugins.sort_by(|a, b| a.name.cmp(&b.name));
        let snapshot = Arc::new(build(plugins));
        let previous = {
            let mut guard = match self.snapshot.write() {
                Ok(guard) => guard,
                Err(poisoned) => poisoned.into_inner(),
            };
            std::mem::replace(&mut *guard, snapshot.clone())
        };
        match self.failures.write() {
            Ok(mut guard) => *guard = failures,
            Err(poisoned) => *poisoned.into_inner() = failures,
        }
        let differs = |a: &dyn erased::Listed, b: &dyn erased::Listed| a.as_json() != b.as_json();
        if differs(&previous.tools, &snapshot.tools) {
            self.notify(ListKind::Tools);
        }
        if differs(&previous.resources, &snapshot.resources) || differs(&previous.templates, &snapshot.templates) {
            self.notify(ListKind::Resources);
        }
        if differs(&previous.prompts, &snapshot.prompts) {
            self.notify(ListKind::Prompts);
        }
    }

    /// Tell every listener that a list changed.
    pub fn notify(&self, kind: ListKind) {
        // No receivers simply means nobody is listening.
        let _ = self.changes.send(kind);
    }

    /// Changes of the catalog's lists, for sessions and subscriptions to forward.
    pub fn subscribe(&self) -> broadcast::Receiver<ListKind> {
        self.changes.subscribe()
    }

    pub fn plugins(&self) -> Vec<Arc<Plugin>> {
        self.current().plugins.clone()
    }

    pub fn failures(&self) -> Vec<LoadFailure> {
        match self.failures.read() {
            Ok(guard) => guard.clone(),
            Err(poisoned) => poisoned.into_inner().clone(),
        }
    }

    pub fn tools(&self) -> Vec<Tool> {
        self.current().tools.clone()
    }

    pub fn prompts(&self) -> Vec<Prompt> {
        self.current().prompts.clone()
    }

    pub fn resources(&self) -> Vec<Resource> {
        self.current().resources.clone()
    }

    pub fn resource_templates(&self) -> Vec<ResourceTemplate> {
        self.current().templates.clone()
    }

    pub fn tool(&self, name: &str) -> Option<Route> {
        self.current().tool_routes.get(name).cloned()
    }

    pub fn prompt(&self, name: &str) -> Option<Route> {
        self.current().prompt_routes.get(name).cloned()
    }

    /// The owner of a resource URI: a listed resource first, then a matching template.
    pub fn resource_owner(&self, uri: &str) -> Option<Arc<Plugin>> {
        let snapshot = self.current();
        if let Some(plugin) = snapshot.resource_routes.get(uri) {
            return Some(plugin.clone());
        }
        snapshot
            .template_routes
            .iter()
            .find(|(template, _)| template_matches(template, uri))
            .map(|(_, plugin)| plugin.clone())
    }

    /// The owner of a resource template, by its URI template.
    pub fn template_owner(&self, uri_template: &str) -> Option<Arc<Plugin>> {
        self.current().template_routes.iter().find(|(t, _)| t == uri_template).map(|(_, p)| p.clone())
    }
}

fn exposed_name(plugin: &Plugin, name: &str) -> String {
    match plugin.manifest.namespace.as_deref() {
        Some("") => name.to_owned(),
        Some(namespace) => format!("{namespace}{SEPARATOR}{name}"),
        None => format!("{}{SEPARATOR}{name}", plugin.name),
    }
}

fn build(plugins: Vec<Arc<Plugin>>) -> Snapshot {
    let mut snapshot = Snapshot::default();
    for plugin in &plugins {
        for tool in &plugin.tools {
            let exposed = exposed_name(plugin, &tool.name);
            if let Some(owner) = snapshot.tool_routes.get(&exposed) {
                tracing::warn!(tool = %exposed, kept = %owner.plugin.name, skipped = %plugin.name, "tool name collision");
                continue;
            }
            let mut tool = tool.clone();
            let local_name = tool.name.to_string();
            tool.name = exposed.clone().into();
            snapshot.tools.push(tool);
            snapshot.tool_routes.insert(exposed, Route { plugin: plugin.clone(), local_name });
        }
        for prompt in &plugin.prompts {
            let exposed = exposed_name(plugin, &prompt.name);
            if let Some(owner) = snapshot.prompt_routes.get(&exposed) {
                tracing::warn!(prompt = %exposed, kept = %owner.plugin.name, skipped = %plugin.name, "prompt name collision");
                continue;
            }
            let mut prompt = prompt.clone();
            let local_name = std::mem::replace(&mut prompt.name, exposed.clone());
            snapshot.prompts.push(prompt);
            snapshot.prompt_routes.insert(exposed, Route { plugin: plugin.clone(), local_name });
        }
        for resource in &plugin.resources {
            if let Some(owner) = snapshot.resource_routes.get(&resource.uri) {
                tracing::warn!(uri = %resource.uri, kept = %owner.name, skipped = %plugin.name, "resource URI collision");
                continue;
            }
            snapshot.resources.push(resource.clone());
            snapshot.resource_routes.insert(resource.uri.clone(), plugin.clone());
        }
        for template in &plugin.resource_templates {
            if let Some((_, owner)) = snapshot.template_routes.iter().find(|(t, _)| *t == template.uri_template) {
                tracing::warn!(template = %template.uri_template, kept = %owner.name, skipped = %plugin.name, "resource template collision");
                continue;
            }
            snapshot.templates.push(template.clone());
            snapshot.template_routes.push((template.uri_template.clone(), plugin.clone()));
        }
    }
    snapshot.plugins = plugins;
    snapshot
}

mod erased {
    /// A list compared by its wire form, so any change a client could see counts.
    pub trait Listed {
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
pub fn template_matches(template: &str, uri: &str) -> bool {
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
    use super::template_matches;

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
