//! The control plane: what runs on the control core beside the workers.
//!
//! - [`neighbor`]: ARP / ND resolution of next hops and learning of neighbours.
//! - [`ctl`]: the management socket (`rampart ctl`).
//! - [`report`]: pfctl's views (info, states, rules) as JSON.
//!
//! CARP and pfsync arrive with their own work; nothing here pretends to run them yet.

pub mod ctl;
pub mod neighbor;
pub mod report;
