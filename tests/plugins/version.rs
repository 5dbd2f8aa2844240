// Shared by the version-one and version-two fixtures: the same tools, answering with the
// crate's VERSION, so a test can tell which version served a call.

use std::time::Duration;

use fedmcp_sdk::{JsonSchema, Plugin, Tools};
use serde::Deserialize;

#[derive(Deserialize, JsonSchema)]
struct Nothing {}

#[derive(Deserialize, JsonSchema)]
struct Wait {
    /// Milliseconds to wait before answering.
    millis: u64,
}

struct Versioned;

impl Plugin for Versioned {
    fn tools(tools: &mut Tools) {
        tools.add("version", "Which version of the plugin answers", |_: Nothing, _cx| Ok(VERSION));
        tools.add("slow_version", "Wait, then say which version answers", |w: Wait, _cx| {
            std::thread::sleep(Duration::from_millis(w.millis));
            Ok(VERSION)
        });
    }
}

fedmcp_sdk::export!(Versioned);
