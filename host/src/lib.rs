//! fedmcp: an MCP server that serves WebAssembly plugins.
//!
//! Data flows one way: [`transport`] → [`session`] → [`catalog`] → [`plugin`]. See
//! ARCHITECTURE.md at the repository root.
//!
//! The public modules are what the binary (`main.rs`) and the benches use; everything else is
//! `pub(crate)`, so the crate's invariants (one gate, grants by capability, bounded queues)
//! cannot be bypassed from outside it.

pub mod app;
pub mod auth;
pub(crate) mod call;
pub mod catalog;
pub mod config;
pub mod federation;
pub(crate) mod held;
pub(crate) mod metrics;
pub mod plugin;
pub(crate) mod relay;
pub mod scaffold;
pub mod session;
pub mod tasks;
pub mod telemetry;
pub(crate) mod text;
pub mod tls;
pub mod transport;

#[cfg(test)]
mod proptests;
#[cfg(test)]
mod testing;
