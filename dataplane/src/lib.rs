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

/// Asks the CPU to bring the cache line holding `addr` into L1: a hint that never faults,
/// whatever the address (the state table, the DPDK receive path and the benchmarks use it).
#[inline(always)]
pub fn prefetch<T>(addr: *const T) {
    #[cfg(target_arch = "x86_64")]
    // SAFETY: a prefetch is a hint and never faults. (The intrinsic is a safe fn on newer
    // toolchains, hence the allow.)
    #[allow(unused_unsafe)]
    unsafe {
        std::arch::x86_64::_mm_prefetch::<{ std::arch::x86_64::_MM_HINT_T0 }>(addr.cast())
    };
    #[cfg(not(target_arch = "x86_64"))]
    let _ = addr;
}

/// [`prefetch`] for a line about to be written (`prefetchw`): fetched for ownership, so
/// the write that follows does not have to take the line from another core's cache then.
/// For what several cores write, such as the state shards' locks.
#[inline(always)]
pub fn prefetch_write<T>(addr: *const T) {
    #[cfg(target_arch = "x86_64")]
    // SAFETY: a prefetch is a hint and never faults; `prefetchw` is in the 0F 0D opcode
    // space that every x86-64 CPU decodes (as a no-op where it lacks the instruction).
    unsafe {
        std::arch::asm!("prefetchw [{0}]", in(reg) addr, options(nostack, preserves_flags, readonly));
    };
    #[cfg(not(target_arch = "x86_64"))]
    let _ = addr;
}
