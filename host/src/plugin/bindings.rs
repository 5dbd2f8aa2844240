//! Host-side bindings generated from `wit/plugin.wit`, and the per-call exports of a plugin
//! bound without a type check per call.

wasmtime::component::bindgen!({
    path: "../wit",
    world: "plugin",
    exports: { default: async },
});

use wasmtime::AsContextMut;
use wasmtime::component::types::ComponentItem;
use wasmtime::component::{ComponentExportIndex, ComponentNamedList, Instance, InstancePre, Lift, Lower, TypedFunc};

use self::exports::fedmcp::plugin::{prompts, resources, tools};
use self::fedmcp::plugin::types::{PluginError, RequestContext};

/// The world's interface names as the component exports them.
const TOOLS: &str = "fedmcp:plugin/tools@0.1.0";
const RESOURCES: &str = "fedmcp:plugin/resources@0.1.0";
const PROMPTS: &str = "fedmcp:plugin/prompts@0.1.0";

/// The Rust signatures of the exports [`CallExports`] binds. `check` and the binders use
/// these same aliases, so what was checked is what is called.
type CallToolParams<'a> = (&'a str, &'a str, &'a RequestContext);
type CallToolResults = (Result<tools::CallOutcome, PluginError>,);
type ReadResourceParams<'a> = (&'a str, &'a RequestContext);
type ReadResourceResults = (Result<resources::ReadOutcome, PluginError>,);
type GetPromptParams<'a> = (&'a str, &'a [(String, String)], &'a RequestContext);
type GetPromptResults = (Result<prompts::PromptOutcome, PluginError>,);

/// The exports a request calls (`call-tool`, `read-resource`, `get-prompt`), found in the
/// component and type-checked once, when the plugin loads.
///
/// The generated bindings look each export up and type-check it again in every instance;
/// with a fresh instance per call that was 8.5k of the ~166k instructions a trivial tool call
/// cost the host. The check is against the component's types (as the generated code checks
/// a world's own functions), which every instance of it has.
#[derive(Debug, Clone)]
pub(super) struct CallExports {
    call_tool: Option<ComponentExportIndex>,
    read_resource: Option<ComponentExportIndex>,
    get_prompt: Option<ComponentExportIndex>,
}

/// Which of the world's interfaces a component exports in full (as the generated
/// `GuestIndices::new` found them).
#[derive(Debug, Clone, Copy)]
pub(super) struct Interfaces {
    pub(super) tools: bool,
    pub(super) resources: bool,
    pub(super) prompts: bool,
}

impl CallExports {
    /// Find and type-check the call export of each interface `pre`'s component exports. One
    /// missing or of the wrong type fails the plugin's load.
    pub(super) fn check<T>(pre: &InstancePre<T>, interfaces: Interfaces) -> wasmtime::Result<Self> {
        Ok(Self {
            call_tool: interfaces
                .tools
                .then(|| checked::<CallToolParams<'_>, CallToolResults, T>(pre, TOOLS, "call-tool"))
                .transpose()?,
            read_resource: interfaces
                .resources
                .then(|| checked::<ReadResourceParams<'_>, ReadResourceResults, T>(pre, RESOURCES, "read-resource"))
                .transpose()?,
            get_prompt: interfaces
                .prompts
                .then(|| checked::<GetPromptParams<'_>, GetPromptResults, T>(pre, PROMPTS, "get-prompt"))
                .transpose()?,
        })
    }

    /// `call-tool` of `instance`, an instance of the component [`CallExports::check`] checked.
    pub(super) fn call_tool<'a>(
        &self,
        store: impl AsContextMut,
        instance: &Instance,
    ) -> wasmtime::Result<TypedFunc<CallToolParams<'a>, CallToolResults>> {
        let func = bind(&self.call_tool, store, instance, "call-tool")?;
        // SAFETY: `check` type-checked this export of this component against these same
        // aliases, and every instance of a component has its component's export types
        // (`get_func` returns `None` for an index of another component's).
        #[allow(unsafe_code)]
        let typed = unsafe { TypedFunc::new_unchecked(func) };
        Ok(typed)
    }

    /// `read-resource` of `instance`, as [`CallExports::call_tool`].
    pub(super) fn read_resource<'a>(
        &self,
        store: impl AsContextMut,
        instance: &Instance,
    ) -> wasmtime::Result<TypedFunc<ReadResourceParams<'a>, ReadResourceResults>> {
        let func = bind(&self.read_resource, store, instance, "read-resource")?;
        // SAFETY: as in `call_tool`.
        #[allow(unsafe_code)]
        let typed = unsafe { TypedFunc::new_unchecked(func) };
        Ok(typed)
    }

    /// `get-prompt` of `instance`, as [`CallExports::call_tool`].
    pub(super) fn get_prompt<'a>(
        &self,
        store: impl AsContextMut,
        instance: &Instance,
    ) -> wasmtime::Result<TypedFunc<GetPromptParams<'a>, GetPromptResults>> {
        let func = bind(&self.get_prompt, store, instance, "get-prompt")?;
        // SAFETY: as in `call_tool`.
        #[allow(unsafe_code)]
        let typed = unsafe { TypedFunc::new_unchecked(func) };
        Ok(typed)
    }
}

/// The index of function `name` of `interface` in `pre`'s component, checked to have the
/// signature `Params -> Results`.
fn checked<Params, Results, T>(
    pre: &InstancePre<T>,
    interface: &str,
    name: &str,
) -> wasmtime::Result<ComponentExportIndex>
where
    Params: ComponentNamedList + Lower,
    Results: ComponentNamedList + Lift,
{
    let component = pre.component();
    let missing = || wasmtime::format_err!("`{interface}` has no function `{name}`");
    let interface_index = component.get_export_index(None, interface).ok_or_else(missing)?;
    let (item, index) = component.get_export(Some(&interface_index), name).ok_or_else(missing)?;
    let ComponentItem::ComponentFunc(func) = item else {
        return Err(wasmtime::format_err!("`{name}` of `{interface}` is not a function"));
    };
    func.typecheck::<Params, Results>(&pre.instance_type())
        .map_err(|error| wasmtime::format_err!("`{name}` of `{interface}` has the wrong type: {error:#}"))?;
    Ok(index)
}

fn bind(
    index: &Option<ComponentExportIndex>,
    store: impl AsContextMut,
    instance: &Instance,
    name: &str,
) -> wasmtime::Result<wasmtime::component::Func> {
    let index = index.as_ref().ok_or_else(|| wasmtime::format_err!("the plugin does not export `{name}`"))?;
    instance.get_func(store, index).ok_or_else(|| wasmtime::format_err!("the plugin's instance has no `{name}`"))
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    use wasmtime::component::Component;

    use super::{CallExports, CallToolParams, CallToolResults, Interfaces, TOOLS, checked};
    use crate::plugin::{PluginRuntime, RuntimeOptions};

    #[tokio::test]
    async fn a_call_export_is_checked_against_its_signature_and_another_is_refused() {
        let runtime =
            PluginRuntime::new(RuntimeOptions { pooling: false, cache_dir: None, ..RuntimeOptions::default() })
                .expect("a plugin runtime");
        let wasm = Path::new(env!("CARGO_MANIFEST_DIR")).join("../plugins/text-tools.wasm");
        let component =
            Component::from_file(&runtime.engine, &wasm).expect("text-tools compiles (cargo xtask plugins)");
        let pre = runtime.linker.instantiate_pre(&component).expect("text-tools links");

        let tools_only = Interfaces { tools: true, resources: false, prompts: false };
        let calls = CallExports::check(&pre, tools_only).expect("text-tools' call-tool has the bound signature");
        assert!(calls.call_tool.is_some() && calls.read_resource.is_none() && calls.get_prompt.is_none());

        // Binding without a check per call is sound only because this check refuses any other
        // signature: wrong parameters, wrong results.
        let wrong = checked::<(&str,), CallToolResults, _>(&pre, TOOLS, "call-tool").expect_err("one parameter");
        assert!(wrong.to_string().contains("has the wrong type"), "{wrong}");
        let wrong = checked::<CallToolParams<'_>, (u32,), _>(&pre, TOOLS, "call-tool").expect_err("a u32 result");
        assert!(wrong.to_string().contains("has the wrong type"), "{wrong}");
        let wrong =
            checked::<CallToolParams<'_>, CallToolResults, _>(&pre, TOOLS, "list-tools").expect_err("list-tools");
        assert!(wrong.to_string().contains("has the wrong type"), "{wrong}");

        // A function the interface does not have, or an interface the component does not
        // export, is named as missing.
        let missing =
            checked::<CallToolParams<'_>, CallToolResults, _>(&pre, TOOLS, "call-tools").expect_err("no such function");
        assert!(missing.to_string().contains("has no function `call-tools`"), "{missing}");
        let missing = checked::<CallToolParams<'_>, CallToolResults, _>(&pre, "fedmcp:plugin/tools@9.0.0", "call-tool")
            .expect_err("no such interface");
        assert!(missing.to_string().contains("has no function `call-tool`"), "{missing}");
    }
}
