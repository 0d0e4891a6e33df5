//! The traffic generator and benchmark scenarios of `rampart-bench`.
//!
//! - [`flows`]: the benchmark's appliance configuration, its established TCP connections
//!   (inserted straight into the state table) and the frames of those connections. The same
//!   traffic as the in-memory worker benchmark (`dataplane/benches/worker.rs`), so the
//!   figures of the two can be set side by side.
//! - [`inmem`]: the worker over in-memory ports, run for a while, and its rate.
//!
//! The `forward` scenario itself (DPDK EAL, ports, generator and worker lcores) is in the
//! binary (`src/forward.rs`): EAL can start once per process, so it cannot be a library
//! function that tests call.

pub mod flows;
pub mod inmem;
