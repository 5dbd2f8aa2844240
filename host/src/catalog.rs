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
use crate::federation::{Peer, PeerListing};
use crate::plugin::loading::Loading;
use crate::plugin::{ListKind, Plugin};

mod merge;

use merge::{build, erased, exposed_name, passes_for_prefixed, template_matches};

/// Who serves an entry.
#[derive(Clone)]
pub enum Owner {
    Plugin(Arc<Plugin>),
    Peer(Arc<Peer>),
}

impl Owner {
    pub(crate) fn name(&self) -> &str {
        match self {
            Self::Plugin(plugin) => &plugin.name,
            Self::Peer(peer) => peer.name(),
        }
    }

    /// The prefix of its entries' names (`""`: none).
    pub(crate) fn namespace(&self) -> &str {
        match self {
            Self::Plugin(plugin) => plugin.manifest.namespace.as_deref().unwrap_or(&plugin.name),
            Self::Peer(peer) => peer.namespace(),
        }
    }

    pub(crate) async fn call_tool(
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

    pub(crate) async fn get_prompt(
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

    pub(crate) async fn read_resource(
        &self,
        uri: &str,
        cx: CallContext,
    ) -> Result<Outcome<ReadResourceResult>, CallError> {
        match self {
            Self::Plugin(plugin) => plugin.read_resource(uri, cx).await,
            Self::Peer(peer) => peer.read_resource(uri, cx).await,
        }
    }

    /// Complete an argument of the owner's prompt (`Ok(its name)`) or resource template
    /// (`Err(uri template)`); `request` is the caller's.
    pub(crate) async fn complete(
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
pub(crate) const SEPARATOR: &str = "__";

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
    /// How a plugin's tool runs as an MCP task (its manifest's `[tasks]`); `None`: never.
    pub(crate) task: Option<crate::plugin::manifest::TaskDeclaration>,
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
    /// What the `[[plugins.sources]]` last pulled, or why they could not.
    sources: Arc<crate::plugin::oci::source::SourceStatuses>,
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
            sources: Arc::default(),
        }
    }

    /// The plugin sources' last outcomes.
    pub fn sources(&self) -> &Arc<crate::plugin::oci::source::SourceStatuses> {
        &self.sources
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
    pub(crate) fn resource_updated(&self, uri: &str) {
        // No receivers simply means nobody is listening.
        let _ = self.updates.send(uri.to_owned());
    }

    /// URIs of resources that were updated, for sessions to pass on to their subscribers.
    pub fn subscribe_updates(&self) -> broadcast::Receiver<String> {
        self.updates.subscribe()
    }

    /// Whether `peer` serves the listed resource `uri` here.
    pub(crate) fn peer_serves(&self, peer: &Peer, uri: &str) -> bool {
        matches!(self.current().resource_routes.get(uri), Some(Owner::Peer(owner)) if std::ptr::eq(owner.as_ref(), peer))
    }

    /// Replace what a peer serves. Lists the peer announced as changed are passed on even if
    /// they look the same.
    pub(crate) fn set_peer(&self, peer: Arc<Peer>, listing: Arc<PeerListing>) {
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
    pub(crate) fn notify(&self, kind: ListKind) {
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

    pub(crate) fn tools(&self) -> Vec<Tool> {
        self.current().tools.clone()
    }

    pub(crate) fn prompts(&self) -> Vec<Prompt> {
        self.current().prompts.clone()
    }

    pub(crate) fn resources(&self) -> Vec<Resource> {
        self.current().resources.clone()
    }

    pub(crate) fn resource_templates(&self) -> Vec<ResourceTemplate> {
        self.current().templates.clone()
    }

    pub fn tool(&self, name: &str) -> Option<Route> {
        self.current().tool_routes.get(name).cloned()
    }

    /// The listed definition of a tool whose input schema asks for `Mcp-Param-*` headers
    /// (SEP-2243), for rmcp to check a request's headers against; `None` for any other tool,
    /// whose requests carry no such headers to check.
    pub(crate) fn tool_with_param_headers(&self, name: &str) -> Option<Tool> {
        let snapshot = self.current();
        if !snapshot.tool_routes.get(name)?.param_headers {
            return None;
        }
        snapshot.tools.iter().find(|tool| tool.name == name).cloned()
    }

    pub(crate) fn prompt(&self, name: &str) -> Option<Route> {
        self.current().prompt_routes.get(name).cloned()
    }

    /// The owner of a resource URI: a listed resource first, then a matching template.
    pub(crate) fn resource_owner(&self, uri: &str) -> Option<Owner> {
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
    pub(crate) fn resource_grant_name(&self, uri: &str) -> String {
        exposed_name(self.resource_owner(uri).as_ref().map_or("", Owner::namespace), uri)
    }

    /// How grants name a resource template, after the owner that serves it (`template_owner`,
    /// by the template itself: never another owner's template that happens to match its text).
    pub(crate) fn template_grant_name(&self, uri_template: &str) -> String {
        exposed_name(self.template_owner(uri_template).as_ref().map_or("", Owner::namespace), uri_template)
    }

    /// The owner of a resource template, by its URI template.
    pub(crate) fn template_owner(&self, uri_template: &str) -> Option<Owner> {
        self.current().template_routes.iter().find(|(t, _)| t == uri_template).map(|(_, o)| o.clone())
    }
}
