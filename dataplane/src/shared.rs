//! Read-mostly tables shared by the control plane (the only writer) and the workers.
//!
//! A worker must not take a lock per packet, so each worker keeps its own `Arc` of the
//! current version and checks a generation counter once per burst: one relaxed atomic
//! load per burst on the hot path, and a fresh `Arc` only when the control plane has
//! published a new version. Writers build a whole new value and publish it atomically, so a
//! worker never sees a half-updated table.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use arc_swap::ArcSwap;

/// A value the control plane replaces as a whole and workers read without locks.
pub struct Published<T> {
    current: ArcSwap<T>,
    generation: AtomicU64,
}

impl<T> Published<T> {
    pub fn new(value: T) -> Self {
        Published {
            current: ArcSwap::from_pointee(value),
            generation: AtomicU64::new(0),
        }
    }

    /// Publishes a new version; readers pick it up at their next burst.
    pub fn publish(&self, value: T) {
        self.current.store(Arc::new(value));
        self.generation.fetch_add(1, Ordering::Release);
    }

    /// The current version (for the control plane and tools; workers use [`Snapshot`]).
    pub fn load(&self) -> Arc<T> {
        self.current.load_full()
    }

    /// Publishes `f(current)`: read-copy-update for rarely changed tables.
    pub fn update(&self, f: impl FnOnce(&T) -> T) {
        let next = f(&self.current.load());
        self.publish(next);
    }

    pub fn generation(&self) -> u64 {
        self.generation.load(Ordering::Acquire)
    }
}

/// A worker's cached view of a [`Published`] value.
pub struct Snapshot<T> {
    source: Arc<Published<T>>,
    value: Arc<T>,
    generation: u64,
}

impl<T> Snapshot<T> {
    pub fn new(source: Arc<Published<T>>) -> Self {
        let generation = source.generation();
        let value = source.load();
        Snapshot {
            source,
            value,
            generation,
        }
    }

    /// Picks up a newer version if one was published. Call once per burst.
    #[inline]
    pub fn refresh(&mut self) {
        let g = self.source.generation();
        if g != self.generation {
            self.value = self.source.load();
            self.generation = g;
        }
    }

    #[inline]
    pub fn get(&self) -> &T {
        &self.value
    }

    /// The version this snapshot holds (changes whenever a new value was picked up).
    #[inline]
    pub fn generation(&self) -> u64 {
        self.generation
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn snapshot_sees_new_versions_only_after_refresh() {
        let p = Arc::new(Published::new(1));
        let mut s = Snapshot::new(p.clone());
        assert_eq!(*s.get(), 1);
        p.publish(2);
        assert_eq!(*s.get(), 1, "a burst in progress keeps its version");
        s.refresh();
        assert_eq!(*s.get(), 2);
        p.update(|v| v + 1);
        s.refresh();
        assert_eq!(*s.get(), 3);
    }
}
