//! Raw FFI bindings to the system DPDK.
//!
//! Empty for now: the bindings (bindgen over `pkg-config libdpdk` plus a C shim for the
//! static-inline fast path) arrive with the DPDK port backend. Nothing here pretends to work.
