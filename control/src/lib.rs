//! The control plane: what runs on the control core beside the workers.
//!
//! - [`neighbor`]: ARP / ND resolution of next hops and learning of neighbours.
//!
//! CARP and pfsync arrive with their own work; nothing here pretends to run them yet.

pub mod neighbor;
