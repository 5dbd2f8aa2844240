//! fedmcp: an MCP server that serves WebAssembly plugins.
//!
//! Data flows one way: [`transport`] → [`session`] → [`catalog`] → [`plugin`]. See
//! ARCHITECTURE.md at the repository root.

pub mod app;
pub mod auth;
pub mod call;
pub mod catalog;
pub mod config;
pub mod federation;
pub mod held;
pub mod legacy_sessions;
pub mod plugin;
pub mod relay;
pub mod scaffold;
pub mod session;
pub mod tls;
pub mod transport;

#[cfg(test)]
mod proptests;
