//! The official MCP conformance suite against fedmcp serving the example plugins, for both
//! protocol revisions.

use crate::support::{Server, example_plugins, run_conformance};

#[test]
fn passes_every_scored_scenario_of_2025_11_25() {
    let server = Server::start(&example_plugins());
    run_conformance(&server.url(), "2025-11-25");
}

#[test]
fn passes_every_scored_scenario_of_2026_07_28() {
    let server = Server::start(&example_plugins());
    run_conformance(&server.url(), "2026-07-28");
}
