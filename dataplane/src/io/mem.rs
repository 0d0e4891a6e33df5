//! The in-memory port: frames are byte vectors in queues.
//!
//! Used by unit and pipeline tests, by `rampart replay` (captured traffic in, captured
//! traffic out) and by the worker benchmarks. Buffers are recycled through a pool, so a
//! steady-state benchmark allocates nothing per packet, as with DPDK's mempools.

use std::collections::VecDeque;

use super::{PacketBuf, Port};

/// Room for a standard frame with headroom to spare, like a DPDK mbuf's data room.
pub const BUF_CAPACITY: usize = 2048;

impl PacketBuf for Vec<u8> {
    #[inline]
    fn data(&self) -> &[u8] {
        self
    }

    #[inline]
    fn data_mut(&mut self) -> &mut [u8] {
        self
    }

    #[inline]
    fn set_frame_len(&mut self, len: usize) -> bool {
        if len > self.capacity().max(BUF_CAPACITY) {
            return false;
        }
        self.resize(len, 0);
        true
    }
}

/// An in-memory port: what the "wire" delivers waits in `rx`; what the worker transmits
/// lands in `tx`.
#[derive(Default)]
pub struct MemPort {
    pub rx: VecDeque<Vec<u8>>,
    pub tx: Vec<Vec<u8>>,
    /// Recycled buffers.
    pub pool: Vec<Vec<u8>>,
    /// Accept at most this many frames per `tx_burst` (to test a full TX ring).
    pub tx_ring_room: Option<usize>,
}

impl MemPort {
    pub fn new() -> MemPort {
        MemPort::default()
    }

    /// Queues a received frame, copying it into a pooled buffer.
    pub fn inject(&mut self, frame: &[u8]) {
        let mut buf = self
            .pool
            .pop()
            .unwrap_or_else(|| Vec::with_capacity(BUF_CAPACITY));
        buf.clear();
        buf.extend_from_slice(frame);
        self.rx.push_back(buf);
    }

    /// Takes the transmitted frames.
    pub fn take_tx(&mut self) -> Vec<Vec<u8>> {
        std::mem::take(&mut self.tx)
    }

    /// Returns transmitted buffers to the pool (benchmarks: no allocation in steady state).
    pub fn recycle_tx(&mut self) {
        self.pool.append(&mut self.tx);
    }
}

impl Port for MemPort {
    type Buf = Vec<u8>;

    #[inline]
    fn rx_burst(&mut self, out: &mut Vec<Vec<u8>>, max: usize) -> usize {
        let n = max.min(self.rx.len());
        out.extend(self.rx.drain(..n));
        n
    }

    #[inline]
    fn tx_burst(&mut self, bufs: &mut Vec<Vec<u8>>) -> usize {
        let n = self
            .tx_ring_room
            .map_or(bufs.len(), |room| room.min(bufs.len()));
        self.tx.extend(bufs.drain(..n));
        n
    }

    fn alloc(&mut self) -> Option<Vec<u8>> {
        let mut buf = self
            .pool
            .pop()
            .unwrap_or_else(|| Vec::with_capacity(BUF_CAPACITY));
        buf.clear();
        Some(buf)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bursts_move_frames_in_order_and_respect_ring_room() {
        let mut p = MemPort::new();
        for i in 0..40u8 {
            p.inject(&[i; 60]);
        }
        let mut got = Vec::new();
        assert_eq!(p.rx_burst(&mut got, 32), 32);
        assert_eq!(got[0][0], 0);
        assert_eq!(got[31][0], 31);
        p.tx_ring_room = Some(10);
        assert_eq!(p.tx_burst(&mut got), 10);
        assert_eq!(got.len(), 22, "unsent frames stay with the caller");
        assert_eq!(p.take_tx().len(), 10);
        let mut b = p.alloc().unwrap();
        assert!(b.set_frame_len(1500));
        assert_eq!(b.data().len(), 1500);
        assert!(!b.set_frame_len(1 << 20));
    }
}
