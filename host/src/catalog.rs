//! The merged, namespaced view of everything the host serves (plugins and peers), and
//! routing of a call to its owner.
//!
//! Tools and prompts appear as `<namespace>__<name>` (a plugin's namespace is its file name
//! unless its manifest sets another; a peer's is its name unless its config sets another;
//! `""` means none). Resource URIs are served as their owner publishes them. When two owners
//! publish the same name or URI, plugins come before peers, each in name order, the first
//! keeps it and the collision is logged: never a silent overwrite.

use std::collections::{BTreeMap, HashMap};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, RwLock};

use rmcp::model::{
    CallToolResult, CompleteRequestParams, CompleteResult, GetPromptResult, Prompt, ReadResourceResult, Resource,
    ResourceTemplate, Tool,
};
use tokio::sync::broadcast;

use crate::call::{CallContext, CallError, Outcome};
use crate::federation::loops;
use crate::federation::{Peer, PeerListing};
use crate::plugin::loading::Loading;
use crate::plugin::{ListKind, Plugin};

/// Who serves an entry.
#[derive(Clone)]
pub enum Owner {
    Plugin(Arc<Plugin>),
    Peer(Arc<Peer>),
}

impl Owner {
    pub fn name(&self) -> &str {
        match self {
            Self::Plugin(plugin) => &plugin.name,
            Self::Peer(peer) => peer.name(),
        }
    }

    /// The prefix of its entries' names (`""`: none).
    pub fn namespace(&self) -> &str {
        match self {
            Self::Plugin(plugin) => plugin.manifest.namespace.as_deref().unwrap_or(&plugin.name),
            Self::Peer(peer) => peer.namespace(),
        }
    }

    pub async fn call_tool(
        &self,
        name: &str,
        arguments: &serde_json::Value,
        cx: CallContext,
    ) -> Result<Outcome<CallToolResult>, CallError> {
        match self {
            Self::Plugin(plugin) => plugin.call_tool(name, arguments, cx).await,
            Self::Peer(peer) => peer.call_tool(name, arguments, cx).await,
        }
    }

    pub async fn get_prompt(
        &self,
        name: &str,
        arguments: &[(String, String)],
        cx: CallContext,
    ) -> Result<Outcome<GetPromptResult>, CallError> {
        match self {
            Self::Plugin(plugin) => plugin.get_prompt(name, arguments, cx).await,
            Self::Peer(peer) => peer.get_prompt(name, arguments, cx).await,
        }
    }

    pub async fn read_resource(&self, uri: &str, cx: CallContext) -> Result<Outcome<ReadResourceResult>, CallError> {
        match self {
            Self::Plugin(plugin) => plugin.read_resource(uri, cx).await,
            Self::Peer(peer) => peer.read_resource(uri, cx).await,
        }
    }

    /// Complete an argument of the owner's prompt (`Ok(its name)`) or resource template
    /// (`Err(uri template)`); `request` is the caller's.
    pub async fn complete(
        &self,
        reference: Result<&str, &str>,
        request: &CompleteRequestParams,
        cx: CallContext,
    ) -> Result<CompleteResult, CallError> {
        match self {
            Self::Plugin(plugin) => {
                let context: Vec<(String, String)> = request
                    .context
                    .as_ref()
                    .and_then(|c| c.arguments.clone())
                    .map(|arguments| arguments.into_iter().collect())
                    .unwrap_or_default();
                let argument = &request.argument;
                plugin.complete(reference, &argument.name, &argument.value, &context).await
            }
            Self::Peer(peer) => {
                let mut request = request.clone();
                if let (Ok(name), rmcp::model::Reference::Prompt(prompt)) = (reference, &mut request.r#ref) {
                    prompt.name = name.to_owned();
                }
                peer.complete(request, cx).await
            }
        }
    }
}

/// Between a namespace and an entry's own name. `__` keeps names within
/// `^[A-Za-z0-9_-]{1,64}$`, the strictest tool-name rule among common clients.
pub const SEPARATOR: &str = "__";

/// A peer and what it lists.
type PeerEntries = (Arc<Peer>, Arc<PeerListing>);

/// Where an exposed entry lives.
#[derive(Clone)]
pub struct Route {
    pub owner: Owner,
    /// The entry's name (or URI template) inside its plugin.
    pub local_name: String,
    /// A tool's annotations (its consent policy may depend on them); `None` for prompts.
    pub annotations: Option<rmcp::model::ToolAnnotations>,
    /// A tool's input schema asks for some arguments in `Mcp-Param-*` headers (SEP-2243).
    pub param_headers: bool,
}

#[derive(Default)]
struct Snapshot {
    plugins: Vec<Arc<Plugin>>,
    tools: Vec<Tool>,
    tool_routes: HashMap<String, Route>,
    prompts: Vec<Prompt>,
    prompt_routes: HashMap<String, Route>,
    resources: Vec<Resource>,
    resource_routes: HashMap<String, Owner>,
    templates: Vec<ResourceTemplate>,
    template_routes: Vec<(String, Owner)>,
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
    /// This host's id in the federation, recorded in the path of every entry it serves.
    host_id: String,
    peers: RwLock<BTreeMap<String, PeerEntries>>,
    snapshot: RwLock<Arc<Snapshot>>,
    failures: RwLock<Vec<LoadFailure>>,
    changes: broadcast::Sender<ListKind>,
    /// URIs of resources whose contents may have changed, for subscribed sessions.
    updates: broadcast::Sender<String>,
    /// How many list changes have been announced: a session that subscribes after it was
    /// created learns from it whether it missed one.
    announced: AtomicU64,
    loading: Loading,
}

impl Catalog {
    pub fn new(host_id: String) -> Self {
        let (changes, _) = broadcast::channel(64);
        let (updates, _) = broadcast::channel(256);
        Self {
            host_id,
            peers: RwLock::default(),
            snapshot: RwLock::new(Arc::default()),
            failures: RwLock::default(),
            changes,
            updates,
            announced: AtomicU64::new(0),
            loading: Loading::default(),
        }
    }

    /// The plugins of the first load still loading.
    pub fn loading(&self) -> &Loading {
        &self.loading
    }

    pub fn host_id(&self) -> &str {
        &self.host_id
    }

    fn current(&self) -> Arc<Snapshot> {
        match self.snapshot.read() {
            Ok(guard) => guard.clone(),
            Err(poisoned) => poisoned.into_inner().clone(),
        }
    }

    /// Replace the served plugins (and the record of failed loads). Listeners are told about
    /// each list that changed, and only those.
    /// A plugin replaced by a new version may serve its resources differently, so sessions
    /// subscribed to them are told they were updated.
    pub fn set_plugins(&self, mut plugins: Vec<Arc<Plugin>>, failures: Vec<LoadFailure>) {
        plugins.sort_by(|a, b| a.name.cmp(&b.name));
        match self.failures.write() {
            Ok(mut guard) => *guard = failures,
            Err(poisoned) => *poisoned.into_inner() = failures,
        }
        let previous = self.current().plugins.clone();
        let replaced: Vec<Arc<Plugin>> = plugins
            .iter()
            .filter(|p| previous.iter().any(|old| old.name == p.name && !Arc::ptr_eq(old, p)))
            .cloned()
            .collect();
        self.rebuild(Some(plugins), &[]);
        let snapshot = self.current();
        for plugin in replaced {
            for resource in &plugin.resources {
                let served = matches!(snapshot.resource_routes.get(&resource.uri),
                    Some(Owner::Plugin(owner)) if Arc::ptr_eq(owner, &plugin));
                if served {
                    self.resource_updated(&resource.uri);
                }
            }
        }
    }

    /// Tell subscribed sessions that a resource's contents may have changed.
    pub fn resource_updated(&self, uri: &str) {
        // No receivers simply means nobody is listening.
        let _ = self.updates.send(uri.to_owned());
    }

    /// URIs of resources that were updated, for sessions to pass on to their subscribers.
    pub fn subscribe_updates(&self) -> broadcast::Receiver<String> {
        self.updates.subscribe()
    }

    /// Whether `peer` serves the listed resource `uri` here.
    pub fn peer_serves(&self, peer: &Peer, uri: &str) -> bool {
        matches!(self.current().resource_routes.get(uri), Some(Owner::Peer(owner)) if std::ptr::eq(owner.as_ref(), peer))
    }

    /// Replace what a peer serves. Lists the peer announced as changed are passed on even if
    /// they look the same.
    pub fn set_peer(&self, peer: Arc<Peer>, listing: Arc<PeerListing>) {
        let announced = listing.announced.clone();
        match self.peers.write() {
            Ok(mut guard) => guard.insert(peer.name().to_owned(), (peer, listing)),
            Err(poisoned) => poisoned.into_inner().insert(peer.name().to_owned(), (peer, listing)),
        };
        self.rebuild(None, &announced);
    }

    fn rebuild(&self, plugins: Option<Vec<Arc<Plugin>>>, announced: &[ListKind]) {
        let peers: Vec<PeerEntries> = match self.peers.read() {
            Ok(guard) => guard.values().cloned().collect(),
            Err(poisoned) => poisoned.into_inner().values().cloned().collect(),
        };
        let (previous, snapshot) = {
            let mut guard = match self.snapshot.write() {
                Ok(guard) => guard,
                Err(poisoned) => poisoned.into_inner(),
            };
            let plugins = plugins.unwrap_or_else(|| guard.plugins.clone());
            let snapshot = Arc::new(build(&self.host_id, plugins, &peers));
            (std::mem::replace(&mut *guard, snapshot.clone()), snapshot)
        };
        let differs = |a: &dyn erased::Listed, b: &dyn erased::Listed| a.as_json() != b.as_json();
        if differs(&previous.tools, &snapshot.tools) || announced.contains(&ListKind::Tools) {
            self.notify(ListKind::Tools);
        }
        if differs(&previous.resources, &snapshot.resources)
            || differs(&previous.templates, &snapshot.templates)
            || announced.contains(&ListKind::Resources)
        {
            self.notify(ListKind::Resources);
        }
        if differs(&previous.prompts, &snapshot.prompts) || announced.contains(&ListKind::Prompts) {
            self.notify(ListKind::Prompts);
        }
    }

    /// Tell every listener that a list changed.
    pub fn notify(&self, kind: ListKind) {
        self.announced.fetch_add(1, Ordering::Release);
        // No receivers simply means nobody is listening.
        let _ = self.changes.send(kind);
    }

    /// How many list changes have been announced so far (see [`Catalog::subscribe`]).
    pub fn announced(&self) -> u64 {
        self.announced.load(Ordering::Acquire)
    }

    /// Changes of the catalog's lists, for sessions and subscriptions to forward. Changes
    /// announced before the call are not received: compare [`Catalog::announced`] from before
    /// with its value after subscribing to know whether one was missed.
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
    pub fn resource_owner(&self, uri: &str) -> Option<Owner> {
        let snapshot = self.current();
        if let Some(owner) = snapshot.resource_routes.get(uri) {
            return Some(owner.clone());
        }
        // An unprefixed owner's catch-all template must not make a URI that passes for
        // another namespace's (`docs__secret`) its own: a grant for `docs__*` would cover it.
        snapshot
            .template_routes
            .iter()
            .find(|(template, owner)| {
                template_matches(template, uri) && !(owner.namespace().is_empty() && passes_for_prefixed(uri, true))
            })
            .map(|(_, owner)| owner.clone())
    }

    /// How grants name a resource URI: `<namespace>__<uri>` after the owner that serves it
    /// (`resource_owner`), or the URI alone when its owner is unprefixed or unknown.
    pub fn resource_grant_name(&self, uri: &str) -> String {
        exposed_name(self.resource_owner(uri).as_ref().map_or("", Owner::namespace), uri)
    }

    /// How grants name a resource template, after the owner that serves it (`template_owner`,
    /// by the template itself: never another owner's template that happens to match its text).
    pub fn template_grant_name(&self, uri_template: &str) -> String {
        exposed_name(self.template_owner(uri_template).as_ref().map_or("", Owner::namespace), uri_template)
    }

    /// The owner of a resource template, by its URI template.
    pub fn template_owner(&self, uri_template: &str) -> Option<Owner> {
        self.current().template_routes.iter().find(|(t, _)| t == uri_template).map(|(_, o)| o.clone())
    }
}

/// Whether an input schema has an `x-mcp-header` annotation anywhere (conservatively: rmcp
/// honours it only on properties, but a relay that misses one would send a request the peer
/// refuses).
fn mentions_param_headers(schema: &serde_json::Map<String, serde_json::Value>) -> bool {
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
fn passes_for_prefixed(name: &str, is_uri: bool) -> bool {
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

fn exposed_name(namespace: &str, name: &str) -> String {
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

fn build(host_id: &str, plugins: Vec<Arc<Plugin>>, peers: &[PeerEntries]) -> Snapshot {
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
            snapshot.tools.push(tool);
            let route = Route { owner: owner.clone(), local_name, annotations, param_headers };
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
            let route = Route { owner: owner.clone(), local_name, annotations: None, param_headers: false };
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
    use std::sync::Arc;

    use rmcp::model::{Prompt, Resource, ResourceTemplate, Tool};

    use super::{Catalog, passes_for_prefixed, template_matches};
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
