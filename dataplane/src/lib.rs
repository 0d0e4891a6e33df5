//! rampart's dataplane: everything a worker core does to a packet.
//!
//! - [`wire`]: zero-copy views over packet bytes (Ethernet … TCP/UDP/ICMP), checksums.
//! - [`filter`]: the policy compiled for fast evaluation with pf's semantics.
//! - [`iface`], [`route`], [`neighbor`], [`vip`]: the forwarding tables — interfaces,
//!   longest-prefix routes, the ARP/ND cache, CARP virtual IPs and their ownership.

pub mod filter;
pub mod iface;
pub mod io;
pub mod neighbor;
pub mod route;
pub mod shared;
pub mod state;
pub mod vip;
pub mod wire;
pub mod worker;
