//! The end-to-end tests, one module per area, built as one test binary so wasmtime and the
//! host crate are linked once rather than once per area. Each test starts its own `fedmcp`
//! process on a run-time port and keeps its files in its own temporary folder, so the modules
//! share nothing but this process and run in parallel.
//!
//! One area: `cargo test -p fedmcp --test all federation::`.

mod support;

mod auth;
mod bad_input;
mod clients;
mod conformance;
mod deploy;
mod direct;
mod federation;
mod languages;
mod metrics;
mod oci;
mod reload;
mod replicas;
mod sandbox;
mod scaffold;
mod start;
mod tasks;
mod traces;
mod websocket;
