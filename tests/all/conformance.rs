//! The official MCP conformance suite against fedmcp serving the example plugins, for both
//! protocol revisions: every scored scenario passes, and so does every other scenario the run
//! includes (the Tasks extension and the pending ones), so none can regress unnoticed.

use crate::support::{Server, example_plugins, failing_scenarios, run_conformance};

#[test]
fn passes_every_scored_scenario_of_2025_11_25() {
    let server = Server::start(&example_plugins());
    let summary = run_conformance(&server.url(), "2025-11-25");
    assert_eq!(failing_scenarios(&summary), Vec::<&str>::new(), "{summary}");
}

#[test]
fn passes_every_scored_scenario_of_2026_07_28() {
    let server = Server::start(&example_plugins());
    let summary = run_conformance(&server.url(), "2026-07-28");
    assert_eq!(failing_scenarios(&summary), Vec::<&str>::new(), "{summary}");
}
