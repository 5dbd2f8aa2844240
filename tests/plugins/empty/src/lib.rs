//! Exports nothing fedmcp can serve.

/// Not exported to the component's interface.
pub fn unused() -> u32 {
    42
}
