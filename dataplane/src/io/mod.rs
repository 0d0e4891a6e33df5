//! Ports: where workers receive and transmit bursts of frames.
//!
//! The worker loop is written once against [`Port`]; the DPDK backend (mbufs on real or
//! virtual devices) and the in-memory backend ([`mem`], for tests, `rampart replay` and
//! benchmarks) both implement it.

#[cfg(feature = "dpdk")]
pub mod dpdk;
pub mod mem;

/// The most frames a worker moves per `rx_burst`/`tx_burst` (DPDK's customary burst).
pub const BURST: usize = 32;

/// A frame buffer owned by the worker: an mbuf, or bytes in memory. Dropping it frees it.
pub trait PacketBuf {
    /// The frame, from the Ethernet header on.
    fn data(&self) -> &[u8];
    fn data_mut(&mut self) -> &mut [u8];
    /// Sets the frame length, within the buffer's room; `false` (and no change) if it
    /// does not fit.
    fn set_frame_len(&mut self, len: usize) -> bool;
}

/// One worker's queue pair on one port.
pub trait Port {
    type Buf: PacketBuf;

    /// Appends up to `max` received frames to `out`; returns how many.
    fn rx_burst(&mut self, out: &mut Vec<Self::Buf>, max: usize) -> usize;

    /// Transmits frames from the front of `bufs`, removing those sent; returns how many.
    /// Frames left in `bufs` were not accepted (the ring is full): the caller drops them.
    fn tx_burst(&mut self, bufs: &mut Vec<Self::Buf>) -> usize;

    /// A fresh buffer for a frame the worker originates, if the pool has one.
    fn alloc(&mut self) -> Option<Self::Buf>;
}
