//! The official MCP conformance suite against fedmcp serving the example plugins, for both
//! protocol revisions.

mod support;

use std::process::Command;

use support::{Server, example_plugins, node, node_package_bin};

fn conformance(server: &Server, requirements: &str) {
    let cli = node_package_bin("@modelcontextprotocol/conformance/dist/index.js");
    let work = tempfile::tempdir().expect("a temporary folder for results");
    let output = Command::new(node())
        .arg(cli)
        .args(["server", "--url", &server.url(), "--requirements", requirements])
        .current_dir(work.path())
        .output()
        .expect("the conformance CLI runs");
    let stdout = String::from_utf8_lossy(&output.stdout);
    let summary = stdout.split("=== SUMMARY ===").nth(1).unwrap_or(&stdout);
    println!("{summary}");
    assert!(
        output.status.success(),
        "conformance --requirements {requirements} failed:\n{summary}\n{}",
        String::from_utf8_lossy(&output.stderr)
    );
}

#[test]
fn passes_every_scored_scenario_of_2025_11_25() {
    let server = Server::start(&example_plugins());
    conformance(&server, "2025-11-25");
}

#[test]
fn passes_every_scored_scenario_of_2026_07_28() {
    let server = Server::start(&example_plugins());
    conformance(&server, "2026-07-28");
}
