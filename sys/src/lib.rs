//! Raw FFI bindings to the system DPDK, for rampart-dataplane's `io::dpdk` backend.
//!
//! With the `dpdk` feature (on by default in rampart-dataplane), `build.rs` finds DPDK
//! through `pkg-config libdpdk`, generates bindings for an allowlisted slice of its API
//! with bindgen (into `OUT_DIR`, never committed), and compiles `shim/shim.c`: exported
//! forwarders (`rampart_*`) for DPDK's `static inline` fast path and thread-locals, which
//! have no symbol to bind to. Without the feature this crate is empty.
//!
//! Everything here is raw and `unsafe`; the safe wrappers live in
//! `rampart_dataplane::io::dpdk`.

// C names and bindgen's generated style, not ours to lint.
#[cfg(feature = "dpdk")]
#[allow(
    non_upper_case_globals,
    non_camel_case_types,
    non_snake_case,
    clippy::all
)]
mod bindings {
    include!(concat!(env!("OUT_DIR"), "/bindings.rs"));
}

#[cfg(feature = "dpdk")]
pub use bindings::*;
