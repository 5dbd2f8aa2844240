//! `fedmcp plugin new` gives a plugin, in each language, that `fedmcp plugin build` builds
//! and the host serves without edits.

use std::process::Command;

use serde_json::json;

use crate::support::{Server, StatelessClient, repo_root};

fn fedmcp() -> Command {
    Command::new(env!("CARGO_BIN_EXE_fedmcp"))
}

#[tokio::test]
async fn a_scaffolded_plugin_in_each_language_builds_and_serves() {
    let work = tempfile::tempdir().expect("a work folder");
    let plugins = work.path().join("plugins");
    for lang in ["rust", "python", "js", "c"] {
        let name = format!("hello-{lang}");
        let dir = work.path().join(&name);
        let created = fedmcp().args(["plugin", "new", &name, "--lang", lang, "--path"]).arg(&dir).status();
        assert!(created.is_ok_and(|s| s.success()), "plugin new --lang {lang} failed");
        assert!(dir.join("README.md").is_file() && dir.join("plugin.toml").is_file());
        let built = fedmcp()
            .args(["plugin", "build"])
            .arg(&dir)
            .arg("--plugins")
            .arg(&plugins)
            // The examples' target folder already holds the SDK's dependencies.
            .env("CARGO_TARGET_DIR", repo_root().join("plugins/target"))
            .status();
        assert!(built.is_ok_and(|s| s.success()), "plugin build of the {lang} plugin failed");
        assert!(plugins.join(format!("{name}.wasm")).is_file() && plugins.join(format!("{name}.toml")).is_file());
    }
    let again = fedmcp().args(["plugin", "new", "hello-rust", "--lang", "rust", "--path"]).arg(work.path()).output();
    assert!(again.is_ok_and(|o| !o.status.success()), "plugin new overwrote a folder that is not empty");

    let server = Server::start(&plugins);
    let client = StatelessClient::new(&server);
    for lang in ["rust", "python", "js", "c"] {
        let reply = client.call(&format!("hello-{lang}__greet"), json!({ "name": "Ada" })).await;
        assert_eq!(reply.map(|r| r["content"][0]["text"].clone()), Ok(json!("Hello, Ada!")), "{lang}");
    }
}
