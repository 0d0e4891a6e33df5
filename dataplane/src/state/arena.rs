//! The state table's memory: one anonymous mapping holds every shard's slab of states and
//! another every shard's index, each 2 MiB-aligned and advised onto transparent huge pages.
//!
//! Why not a `Vec` per shard: a table of a million states spread over 256 shards gives each
//! shard well under 2 MiB, and the allocator maps such blocks at 4 KiB alignment, where the
//! kernel can never back them with huge pages. Every lookup at random in 128 MiB of 4 KiB pages
//! is a TLB miss on top of the cache miss, and under a hypervisor's nested paging a page walk
//! costs several memory accesses. One mapping of the whole table fits in a few dozen huge
//! pages, which the TLB holds.
//!
//! A mapping is zeroed by the OS and committed page by page as it is touched, so a large
//! limit costs address space until states arrive. Windows never move or grow: a shard's slab
//! has a fixed capacity, and the prefetches that read it without the lock always see the
//! right base.

use std::ptr::NonNull;
use std::sync::atomic::AtomicU64;

use super::State;

/// Huge page size on x86-64 and arm64 (4 KiB granule).
const HUGE: usize = 2 << 20;

/// An anonymous, zeroed mapping of at least `len` bytes, 2 MiB-aligned.
pub(super) struct Arena {
    /// The mapping as made (for `munmap`), and its aligned part.
    base: NonNull<u8>,
    mapped: usize,
    start: NonNull<u8>,
    len: usize,
}

// SAFETY: an `Arena` is plain memory; who writes where is the table's business (each shard
// owns its window and writes it under its lock).
unsafe impl Send for Arena {}
unsafe impl Sync for Arena {}

impl Arena {
    /// Reserves `len` bytes (at least one page). Panics if the address space cannot be
    /// reserved, as an allocation failure would.
    pub(super) fn new(len: usize) -> Arena {
        let len = len.max(1).next_multiple_of(4096);
        let mapped = len + HUGE;
        // SAFETY: an anonymous private mapping with no address hint; the result is checked.
        let base = unsafe {
            libc::mmap(
                std::ptr::null_mut(),
                mapped,
                libc::PROT_READ | libc::PROT_WRITE,
                libc::MAP_PRIVATE | libc::MAP_ANONYMOUS | libc::MAP_NORESERVE,
                -1,
                0,
            )
        };
        if base == libc::MAP_FAILED {
            panic!(
                "cannot reserve {} MiB of address space for the state table",
                mapped >> 20
            );
        }
        let base = base as *mut u8;
        let offset = base.align_offset(HUGE);
        // SAFETY: `offset < HUGE`, so `start .. start + len` lies inside the mapping.
        let start = unsafe { base.add(offset) };
        // SAFETY: the range lies inside our mapping; a refusal (THP disabled) is harmless.
        unsafe {
            libc::madvise(start.cast(), len, libc::MADV_HUGEPAGE);
        }
        Arena {
            base: NonNull::new(base).expect("mmap returned a null mapping"),
            mapped,
            start: NonNull::new(start).expect("inside a non-null mapping"),
            len,
        }
    }

    fn at<T>(&self, offset: usize, count: usize) -> NonNull<T> {
        assert!(
            offset % std::mem::align_of::<T>() == 0
                && offset + count * std::mem::size_of::<T>() <= self.len,
            "window outside the arena"
        );
        // SAFETY: checked just above to lie inside the aligned part of the mapping.
        unsafe { NonNull::new_unchecked(self.start.as_ptr().add(offset).cast()) }
    }
}

impl Drop for Arena {
    fn drop(&mut self) {
        // SAFETY: exactly the mapping `new` made; nothing refers to it any more (the table
        // drops its shards, and their windows, before its arenas).
        unsafe {
            libc::munmap(self.base.as_ptr().cast(), self.mapped);
        }
    }
}

/// A shard's states: a fixed window of the slab arena, filled from the front.
pub(super) struct Slab {
    ptr: NonNull<State>,
    len: usize,
    cap: usize,
}

impl Slab {
    /// The window of `cap` states at byte `offset` of `arena`. The arena must outlive it.
    pub(super) fn new(arena: &Arena, offset: usize, cap: usize) -> Slab {
        Slab {
            ptr: arena.at(offset, cap),
            len: 0,
            cap,
        }
    }

    #[inline]
    pub(super) fn len(&self) -> usize {
        self.len
    }

    pub(super) fn capacity(&self) -> usize {
        self.cap
    }

    /// Appends `state`; its index, or `None` when the window is full.
    #[inline]
    pub(super) fn push(&mut self, state: State) -> Option<usize> {
        if self.len == self.cap {
            return None;
        }
        // SAFETY: `len < cap`: inside this slab's window, which only this slab writes.
        unsafe { self.ptr.as_ptr().add(self.len).write(state) };
        self.len += 1;
        Some(self.len - 1)
    }

    /// Forgets every state (`State` has no destructor).
    pub(super) fn clear(&mut self) {
        self.len = 0;
    }

    pub(super) fn as_ptr(&self) -> *mut State {
        self.ptr.as_ptr()
    }

    #[inline]
    pub(super) fn as_slice(&self) -> &[State] {
        // SAFETY: the first `len` entries were written by `push` and live as long as the
        // arena, which outlives the slab.
        unsafe { std::slice::from_raw_parts(self.ptr.as_ptr(), self.len) }
    }

    #[inline]
    pub(super) fn as_mut_slice(&mut self) -> &mut [State] {
        // SAFETY: as in `as_slice`, and `&mut self` makes this the only reference.
        unsafe { std::slice::from_raw_parts_mut(self.ptr.as_ptr(), self.len) }
    }
}

impl std::ops::Index<usize> for Slab {
    type Output = State;

    #[inline]
    fn index(&self, i: usize) -> &State {
        &self.as_slice()[i]
    }
}

impl std::ops::IndexMut<usize> for Slab {
    #[inline]
    fn index_mut(&mut self, i: usize) -> &mut State {
        &mut self.as_mut_slice()[i]
    }
}

/// A shard's index: a window of zeroed slots in the index arena.
pub(super) struct Slots {
    ptr: NonNull<AtomicU64>,
    len: usize,
}

impl Slots {
    /// The window of `len` slots at byte `offset` of `arena` (zeroed: every slot empty).
    pub(super) fn new(arena: &Arena, offset: usize, len: usize) -> Slots {
        Slots {
            ptr: arena.at(offset, len),
            len,
        }
    }

    #[inline]
    pub(super) fn as_slice(&self) -> &[AtomicU64] {
        // SAFETY: the window lies in the arena, zero-initialised by the OS (a valid
        // `AtomicU64` 0), and is only accessed through atomics.
        unsafe { std::slice::from_raw_parts(self.ptr.as_ptr(), self.len) }
    }
}

// SAFETY: a `Slab` or `Slots` is the only handle to its window of an arena that outlives it;
// the table moves them between threads only inside the shard's mutex.
unsafe impl Send for Slab {}
unsafe impl Send for Slots {}
unsafe impl Sync for Slots {}
