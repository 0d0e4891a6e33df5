//! The state shard's lock: a spinning raw mutex under `lock_api` (the lock framework
//! parking_lot is built on, re-exported by it), so the shard keeps parking_lot's guard API.
//!
//! Why not `parking_lot::Mutex` itself: its unlock is a `compare_exchange` (it must see
//! whether a thread is parked), a second locked instruction per packet beside the one that
//! takes the lock; here unlock is a plain release store. Together they were 14 % of a
//! worker's time with every state in cache. And a worker must never sleep in the kernel on
//! the per-packet path: when the control core holds a shard (a sweep or a bulk-update walk
//! holds it for at most a few dozen states), a worker spins rather than park on a futex.
//! Only after a long spin (the holder lost its CPU) does the waiter yield its timeslice,
//! so a holder that shares the waiter's CPU can finish.

use std::sync::atomic::{AtomicBool, Ordering};

use parking_lot::lock_api::{self, GuardSend};

/// Spins (with the CPU's pause hint) this many times before yielding the CPU while waiting.
const SPINS_BEFORE_YIELD: u32 = 1 << 10;

/// A test-and-test-and-set lock: one `lock cmpxchg` to take it uncontended, one store to
/// release it.
pub struct RawShardLock {
    locked: AtomicBool,
}

// SAFETY: `lock` returns only after this thread swapped `locked` from false to true with
// Acquire ordering, so at most one holder exists; `unlock` (called only by the holder, as
// lock_api guarantees) releases with Release ordering, publishing the holder's writes.
unsafe impl lock_api::RawMutex for RawShardLock {
    #[allow(clippy::declare_interior_mutable_const)]
    const INIT: RawShardLock = RawShardLock {
        locked: AtomicBool::new(false),
    };

    type GuardMarker = GuardSend;

    #[inline]
    fn lock(&self) {
        if !self.try_lock() {
            self.lock_contended();
        }
    }

    #[inline]
    fn try_lock(&self) -> bool {
        self.locked
            .compare_exchange(false, true, Ordering::Acquire, Ordering::Relaxed)
            .is_ok()
    }

    #[inline]
    unsafe fn unlock(&self) {
        self.locked.store(false, Ordering::Release);
    }

    #[inline]
    fn is_locked(&self) -> bool {
        self.locked.load(Ordering::Relaxed)
    }
}

impl RawShardLock {
    #[cold]
    fn lock_contended(&self) {
        let mut spins = 0u32;
        loop {
            // Wait reading, not writing, so the holder's line is not bounced meanwhile.
            while self.locked.load(Ordering::Relaxed) {
                if spins < SPINS_BEFORE_YIELD {
                    spins += 1;
                    std::hint::spin_loop();
                } else {
                    std::thread::yield_now();
                }
            }
            if self
                .locked
                .compare_exchange_weak(false, true, Ordering::Acquire, Ordering::Relaxed)
                .is_ok()
            {
                return;
            }
        }
    }
}

/// A mutex over a shard.
pub type ShardMutex<T> = lock_api::Mutex<RawShardLock, T>;
/// A held shard lock.
pub type ShardMutexGuard<'a, T> = lock_api::MutexGuard<'a, RawShardLock, T>;

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;

    #[test]
    fn excludes_and_releases() {
        let m = ShardMutex::new(0u32);
        let g = m.lock();
        assert!(
            m.try_lock().is_none(),
            "a held lock must refuse a second holder"
        );
        drop(g);
        assert!(m.try_lock().is_some(), "a released lock must be free");
    }

    #[test]
    fn contended_increments_are_not_lost() {
        // Two threads (this machine has two CPUs) and one that must yield to the other on a
        // single CPU: every increment must survive.
        let m = Arc::new(ShardMutex::new(0u64));
        let threads: Vec<_> = (0..3)
            .map(|_| {
                let m = m.clone();
                std::thread::spawn(move || {
                    for _ in 0..100_000 {
                        *m.lock() += 1;
                    }
                })
            })
            .collect();
        for t in threads {
            t.join().unwrap();
        }
        assert_eq!(*m.lock(), 300_000);
    }
}
