//! `fedmcp plugin new` and `fedmcp plugin build`: start a plugin in Rust, Python,
//! JavaScript or C, and build it into a plugins folder.
//!
//! The SDKs and the WIT contract are used from the fedmcp source tree this binary was built
//! from (`FEDMCP_HOME` overrides it), and so are the Python and JavaScript toolchains that
//! `cargo xtask plugins` installs there.

use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::process::Command;

/// A language a plugin can be written in.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Language {
    Rust,
    Python,
    Js,
    C,
}

#[derive(Debug, thiserror::Error)]
pub enum ScaffoldError {
    #[error("{0}")]
    Invalid(String),
    #[error("{path}: {source}")]
    Io { path: String, source: std::io::Error },
    #[error("{0}")]
    MissingToolchain(String),
    #[error("the build failed: {0}")]
    BuildFailed(String),
}

fn io(path: &Path) -> impl FnOnce(std::io::Error) -> ScaffoldError + '_ {
    move |source| ScaffoldError::Io { path: path.display().to_string(), source }
}

/// The fedmcp source tree: SDKs, WIT and the toolchains `cargo xtask plugins` installs.
pub(crate) fn home() -> PathBuf {
    std::env::var_os("FEDMCP_HOME")
        .map(PathBuf::from)
        .unwrap_or_else(|| Path::new(env!("CARGO_MANIFEST_DIR")).join(".."))
}

fn check_name(name: &str) -> Result<(), ScaffoldError> {
    let valid = !name.is_empty()
        && name.len() <= 40
        && name.starts_with(|c: char| c.is_ascii_lowercase())
        && name.chars().all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-');
    if valid {
        Ok(())
    } else {
        Err(ScaffoldError::Invalid(format!(
            "plugin name {name:?}: use lowercase letters, digits and '-', starting with a letter (it becomes the tools' \
             prefix, `{name}__<tool>`)"
        )))
    }
}

fn camel_case(name: &str) -> String {
    name.split('-')
        .map(|part| {
            let mut chars = part.chars();
            chars.next().map(|first| first.to_ascii_uppercase().to_string() + chars.as_str()).unwrap_or_default()
        })
        .collect()
}

/// Create a ready-to-build plugin `name` in `dir`; the files written.
pub fn new_plugin(name: &str, language: Language, dir: &Path) -> Result<Vec<PathBuf>, ScaffoldError> {
    check_name(name)?;
    if dir.exists() && std::fs::read_dir(dir).map_err(io(dir))?.next().is_some() {
        return Err(ScaffoldError::Invalid(format!("{} exists and is not empty", dir.display())));
    }
    let home = home();
    let (build, source_files): (&str, Vec<(String, String)>) = match language {
        Language::Rust => {
            let sdk = home.join("sdk/rust");
            let cargo_toml = format!(
                "[package]\nname = \"{name}\"\nedition = \"2024\"\nversion = \"0.1.0\"\npublish = false\n\n\
                 [lib]\ncrate-type = [\"cdylib\"]\n\n\
                 [dependencies]\nfedmcp-sdk = {{ path = {sdk:?} }}\nserde = {{ version = \"1\", features = \
                 [\"derive\"] }}\nschemars = {{ version = \"1\", default-features = false, features = [\"derive\", \
                 \"std\"] }}\n\n\
                 # A plugin is its own workspace, wherever its folder is.\n[workspace]\n\n\
                 [profile.release]\nopt-level = \"s\"\nstrip = true\n",
                sdk = sdk.display().to_string()
            );
            let lib = format!(
                "//! {name}: a fedmcp plugin.\n\n\
                 use fedmcp_sdk::{{JsonSchema, Plugin, Tools}};\nuse serde::Deserialize;\n\n\
                 #[derive(Deserialize, JsonSchema)]\nstruct Greet {{\n    /// Who to greet.\n    name: String,\n}}\n\n\
                 struct {camel};\n\n\
                 impl Plugin for {camel} {{\n    fn tools(tools: &mut Tools) {{\n        \
                 tools.add(\"greet\", \"Say hello to someone.\", |args: Greet, _cx| Ok(format!(\"Hello, {{}}!\", \
                 args.name)));\n    }}\n}}\n\nfedmcp_sdk::export!({camel});\n",
                camel = camel_case(name)
            );
            (
                "cargo (with the wasm32-wasip2 target)",
                vec![("Cargo.toml".into(), cargo_toml), ("src/lib.rs".into(), lib)],
            )
        }
        Language::Python => {
            let app = format!(
                "\"\"\"{name}: a fedmcp plugin.\"\"\"\n\nfrom fedmcp import Plugin\n\nplugin = Plugin()\n\n\n\
                 @plugin.tool\ndef greet(name: str) -> str:\n    \"Say hello to someone.\"\n    \
                 return f\"Hello, {{name}}!\"\n\n\nTools, Resources, Prompts, Completions = plugin.export()\n"
            );
            ("componentize-py", vec![("app.py".into(), app)])
        }
        Language::Js => {
            let plugin = format!(
                "// {name}: a fedmcp plugin.\n\nimport {{ Plugin }} from \"./fedmcp.js\";\n\n\
                 const plugin = new Plugin();\n\nplugin.tool(\"greet\", {{\n  description: \"Say hello to \
                 someone.\",\n  input: {{ name: {{ type: \"string\", description: \"Who to greet.\" }} }},\n  \
                 handler: ({{ name }}) => `Hello, ${{name}}!`,\n}});\n\n\
                 export const {{ tools, resources, prompts, completions }} = plugin.exports();\n"
            );
            ("componentize-js (Node.js 20+)", vec![("plugin.js".into(), plugin)])
        }
        Language::C => {
            let plugin = format!(
                "/* {name}: a fedmcp plugin. */\n#include \"fedmcp.h\"\n\n                 static int greet(const fedmcp_args *args, fedmcp_result *result) {{\n                     return fedmcp_text(result, \"Hello, %s!\", fedmcp_arg_string(args, \"name\"));\n}}\n\n                 static const fedmcp_param greet_params[] = {{\n                     {{ \"name\", FEDMCP_STRING, true, \"Who to greet.\" }},\n}};\n\n                 const fedmcp_tool fedmcp_tools[] = {{\n                     {{ \"greet\", \"Say hello to someone.\", greet_params, 1, greet }},\n}};\n                 const size_t fedmcp_tool_count = 1;\n"
            );
            ("clang for wasm32-wasi with wasi-libc, and jco (Node.js 20+)", vec![("plugin.c".into(), plugin)])
        }
    };
    let manifest = "# What this plugin may use; nothing is granted unless listed here.\n\
                    # namespace = \"\"            # serve its tools unprefixed\n\
                    [capabilities]\n\
                    # files = [{ host = \"./data\", guest = \"/data\", mode = \"read\" }]\n\
                    # env = [\"API_KEY\"]\n\
                    # network = [\"127.0.0.1:8080\"]\n\
                    # timeout_ms = 10000\n"
        .to_owned();
    let mut readme = format!("# {name}\n\nA fedmcp plugin. Its tools appear to clients as `{name}__<tool>`.\n\n");
    let _ = write!(
        readme,
        "Build it into a plugins folder (a running fedmcp picks it up at once):\n\n    \
         fedmcp plugin build {dir} --plugins path/to/plugins\n\n\
         This uses {build}. `plugin.toml` is the manifest: it is copied beside the component as \
         `{name}.toml` and grants the plugin files, environment variables or network; without a \
         grant the plugin gets nothing.\n",
        dir = dir.display()
    );
    let mut files = source_files;
    files.push(("plugin.toml".into(), manifest));
    files.push(("README.md".into(), readme));
    let mut written = Vec::new();
    for (relative, text) in files {
        let path = dir.join(relative);
        if let Some(parent) = path.parent() {
            std::fs::create_dir_all(parent).map_err(io(parent))?;
        }
        std::fs::write(&path, text).map_err(io(&path))?;
        written.push(path);
    }
    Ok(written)
}

fn language_of(dir: &Path) -> Result<Language, ScaffoldError> {
    let has = |file: &str| dir.join(file).is_file();
    match (has("Cargo.toml"), has("app.py"), has("plugin.js"), has("plugin.c")) {
        (true, ..) => Ok(Language::Rust),
        (_, true, ..) => Ok(Language::Python),
        (_, _, true, _) => Ok(Language::Js),
        (.., true) => Ok(Language::C),
        _ => Err(ScaffoldError::Invalid(format!(
            "{}: not a plugin folder (expected Cargo.toml, app.py, plugin.js or plugin.c)",
            dir.display()
        ))),
    }
}

/// The Debian packages that make clang build for wasm32-wasi.
const C_PACKAGES: &str = "clang-14 lld-14 wasi-libc libclang-rt-14-dev-wasm32";

/// Build the C files of `dir` with the C SDK into a core module (a WASI reactor against
/// wasi-libc), then make it a component with jco and the WASI preview 1 adapter.
fn build_c(home: &Path, dir: &Path, output: &Path) -> Result<(), ScaffoldError> {
    let sdk = home.join("sdk/c");
    let jco = home.join("sdk/js/node_modules/@bytecodealliance/jco/dist/jco.js");
    if !jco.is_file() {
        return Err(ScaffoldError::MissingToolchain(format!(
            "jco is not installed: run `npm ci` in {} (needs Node.js 20+)",
            home.join("sdk/js").display()
        )));
    }
    let mut sources: Vec<PathBuf> = std::fs::read_dir(dir)
        .map_err(io(dir))?
        .filter_map(Result::ok)
        .map(|e| e.path())
        .filter(|p| p.extension().is_some_and(|x| x == "c"))
        .collect();
    sources.sort();
    sources.extend(["fedmcp.c", "json.c", "bindings/plugin.c"].map(|f| sdk.join(f)));
    let core = output.with_extension("core.wasm");
    let sysroot = std::env::var("WASI_SYSROOT").unwrap_or_else(|_| "/usr".to_owned());
    let clang = std::env::var("FEDMCP_CLANG")
        .ok()
        .into_iter()
        .chain(["clang-14".to_owned(), "clang".to_owned()])
        .find(|c| Command::new(c).arg("--version").output().is_ok_and(|o| o.status.success()))
        .ok_or_else(|| {
            ScaffoldError::MissingToolchain(format!(
                "clang is not installed: C plugins need clang with the wasm32-wasi target and wasi-libc (Debian 12:                  apt install {C_PACKAGES})"
            ))
        })?;
    run(Command::new(clang)
        .args(["--target=wasm32-wasi", "-mexec-model=reactor", "-fuse-ld=lld", "-O2", "-Wall", "-Wextra"])
        .arg(format!("--sysroot={sysroot}"))
        .arg("-I")
        .arg(&sdk)
        .arg("-I")
        .arg(sdk.join("bindings"))
        .args(&sources)
        .arg(sdk.join("bindings/plugin_component_type.o"))
        .arg("-o")
        .arg(&core))
    .map_err(|e| {
        ScaffoldError::BuildFailed(format!(
            "{e}\n(C plugins need wasi-libc and the wasm32 runtime too; Debian 12: apt install {C_PACKAGES}, or set              WASI_SYSROOT to wasi-sdk's sysroot)"
        ))
    })?;
    let made = run(Command::new("node").arg(&jco).args(["new", "--wasi-reactor", "-o"]).arg(output).arg(&core));
    let _ = std::fs::remove_file(&core);
    made
}

fn run(command: &mut Command) -> Result<(), ScaffoldError> {
    let status = command.status().map_err(|e| ScaffoldError::BuildFailed(format!("cannot run {command:?}: {e}")))?;
    if status.success() { Ok(()) } else { Err(ScaffoldError::BuildFailed(format!("{command:?} exited with {status}"))) }
}

/// Build the plugin in `dir` into `<plugins>/<name>.wasm` (and its manifest into
/// `<plugins>/<name>.toml`); the component's path.
pub fn build_plugin(dir: &Path, plugins: &Path) -> Result<PathBuf, ScaffoldError> {
    let dir = std::path::absolute(dir).map_err(io(dir))?;
    let name = dir
        .file_name()
        .and_then(|n| n.to_str())
        .ok_or_else(|| ScaffoldError::Invalid(format!("{}: cannot tell the plugin's name", dir.display())))?
        .to_owned();
    let language = language_of(&dir)?;
    let name = match language {
        Language::Rust => cargo_package_name(&dir)?,
        _ => name,
    };
    check_name(&name)?;
    std::fs::create_dir_all(plugins).map_err(io(plugins))?;
    let output = plugins.join(format!("{name}.wasm"));
    let home = home();
    match language {
        Language::Rust => {
            let target = std::env::var_os("CARGO_TARGET_DIR").map(PathBuf::from).unwrap_or_else(|| dir.join("target"));
            run(Command::new(std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into())).current_dir(&dir).args([
                "build",
                "--release",
                "--target",
                "wasm32-wasip2",
            ]))
            .map_err(|e| {
                ScaffoldError::BuildFailed(format!("{e}\n(needs the target: rustup target add wasm32-wasip2)"))
            })?;
            let built = target.join("wasm32-wasip2/release").join(format!("{}.wasm", name.replace('-', "_")));
            std::fs::copy(&built, &output).map_err(io(&built))?;
        }
        Language::Python => {
            let componentize = home.join("sdk/python/.venv/bin/componentize-py");
            let componentize = if componentize.is_file() { componentize } else { PathBuf::from("componentize-py") };
            let mut command = Command::new(&componentize);
            command
                .arg("-d")
                .arg(home.join("wit"))
                .args(["-w", "plugin", "componentize", "-p"])
                .arg(home.join("sdk/python"))
                .arg("-p")
                .arg(&dir)
                .args(["app", "-o"])
                .arg(&output);
            match command.status() {
                Ok(status) if status.success() => {}
                Ok(status) => return Err(ScaffoldError::BuildFailed(format!("componentize-py exited with {status}"))),
                Err(_) => {
                    return Err(ScaffoldError::MissingToolchain(
                        "componentize-py is not installed: run `pip install componentize-py==0.25.1` (or `cargo xtask \
                         plugins` in the fedmcp source tree, which installs it under sdk/python/.venv)"
                            .to_owned(),
                    ));
                }
            }
        }
        Language::C => build_c(&home, &dir, &output)?,
        Language::Js => {
            if !home.join("sdk/js/node_modules/@bytecodealliance/componentize-js").is_dir() {
                return Err(ScaffoldError::MissingToolchain(format!(
                    "componentize-js is not installed: run `npm ci` in {} (needs Node.js 20+)",
                    home.join("sdk/js").display()
                )));
            }
            let build = home.join("sdk/js/build.mjs");
            match Command::new("node").arg(&build).arg(dir.join("plugin.js")).arg(&output).status() {
                Ok(status) if status.success() => {}
                Ok(status) => {
                    return Err(ScaffoldError::BuildFailed(format!("{} exited with {status}", build.display())));
                }
                Err(_) => {
                    return Err(ScaffoldError::MissingToolchain(
                        "node is not installed: install Node.js 20 or newer".to_owned(),
                    ));
                }
            }
        }
    }
    let manifest = dir.join("plugin.toml");
    if manifest.is_file() {
        let installed = plugins.join(format!("{name}.toml"));
        std::fs::copy(&manifest, &installed).map_err(io(&manifest))?;
    }
    Ok(output)
}

fn cargo_package_name(dir: &Path) -> Result<String, ScaffoldError> {
    let path = dir.join("Cargo.toml");
    let text = std::fs::read_to_string(&path).map_err(io(&path))?;
    let parsed: toml::Table = toml::from_str(&text)
        .map_err(|e| ScaffoldError::Invalid(format!("{}: {}", path.display(), e.to_string().trim_end())))?;
    parsed
        .get("package")
        .and_then(|p| p.get("name"))
        .and_then(|n| n.as_str())
        .map(str::to_owned)
        .ok_or_else(|| ScaffoldError::Invalid(format!("{}: no [package] name", path.display())))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_become_tool_prefixes() {
        assert!(check_name("weather-tools").is_ok());
        for bad in ["", "Weather", "1st", "has space", "under_score", "a__b"] {
            assert!(check_name(bad).is_err(), "{bad:?} was accepted");
        }
        assert_eq!(camel_case("weather-tools"), "WeatherTools");
    }
}
