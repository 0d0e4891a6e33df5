#![recursion_limit = "256"]
//! The control plane: what runs on the control core beside the workers.
//!
//! - [`carp`]: CARP as a sans-IO engine, wire-compatible with OpenBSD.
//! - [`neighbor`]: ARP / ND resolution of next hops and learning of neighbours.
//! - [`ctl`]: the management socket (`rampart ctl`).
//! - [`report`]: pfctl's views (info, states, rules) as JSON.
//! - [`runtime`]: the control core's duties, driving the engines (backend-independent).
//!
//! pfsync arrives with its own work; nothing here pretends to run it yet.

pub mod carp;
pub mod ctl;
pub mod neighbor;
pub mod pfsync;
pub mod report;
pub mod runtime;
