//! `rampart-bench lookup-memory`: what the state table's memory access pattern costs on
//! this machine, apart from everything else a worker does.
//!
//! A worker's state lookup in a large table is a dependent pair of random accesses: an
//! 8-byte index slot, then the 128-byte state it names. The worker hides them across a
//! burst of 32 in two passes (prefetch every index slot; read them and prefetch every
//! state; then use the states). This scenario runs exactly that pattern over an index and
//! a slab sized as the state table sizes them for `--states` (16 MiB and 128 MiB at 1 M),
//! with `--work` rounds of arithmetic per lookup standing in for the rest of the packet,
//! and beside it the one-pass pattern a table keeping its states in the index itself would
//! have (one random 128-byte entry per lookup). The difference between the two is what the
//! index's dependent miss costs; the one-pass figure minus the same run at a small
//! `--states` is what the state's own miss costs.
//!
//! Both regions are advised onto transparent huge pages unless `--no-huge-pages`: comparing
//! the two shows whether huge pages in this system shorten its page walks (in a VM whose
//! host backs guest memory with small pages, they do not).

use std::time::Instant;

use anyhow::{ensure, Result};
use rampart_dataplane::prefetch;
use serde_json::json;

#[derive(clap::Args)]
pub struct Args {
    /// States in the table (the index is sized as the state table sizes it for this limit).
    #[arg(long, default_value_t = 1_000_000)]
    states: usize,
    /// Lookups per measurement.
    #[arg(long, default_value_t = 20_000_000)]
    lookups: usize,
    /// Rounds of dependent arithmetic per lookup (0: memory only). About 1 ns each.
    #[arg(long, default_value_t = 10)]
    work: u64,
    /// Leave the regions on the system's default pages.
    #[arg(long)]
    no_huge_pages: bool,
    /// Print one line of JSON.
    #[arg(long)]
    json: bool,
}

const BATCH: usize = 32;
/// u64 words per 128-byte entry.
const ENTRY_WORDS: usize = 16;

/// A zeroed, 2 MiB-aligned anonymous mapping of `words` u64s, unmapped on drop.
struct Region {
    ptr: *mut u64,
    bytes: usize,
}

impl Region {
    fn new(words: usize, huge: bool) -> Result<Region> {
        const ALIGN: usize = 2 << 20;
        let bytes = (words * 8).div_ceil(ALIGN) * ALIGN;
        // SAFETY: an anonymous private mapping; checked for failure below.
        let ptr = unsafe {
            libc::mmap(
                std::ptr::null_mut(),
                bytes,
                libc::PROT_READ | libc::PROT_WRITE,
                libc::MAP_PRIVATE | libc::MAP_ANONYMOUS,
                -1,
                0,
            )
        };
        ensure!(ptr != libc::MAP_FAILED, "mmap of {bytes} bytes failed");
        if huge {
            // SAFETY: advice on a mapping we own; failure only means small pages.
            unsafe { libc::madvise(ptr, bytes, libc::MADV_HUGEPAGE) };
        }
        Ok(Region {
            ptr: ptr.cast(),
            bytes,
        })
    }

    fn words(&mut self) -> &mut [u64] {
        // SAFETY: the mapping holds `bytes` zeroed bytes, ours for the region's life.
        unsafe { std::slice::from_raw_parts_mut(self.ptr, self.bytes / 8) }
    }
}

impl Drop for Region {
    fn drop(&mut self) {
        // SAFETY: unmapping our own mapping once.
        unsafe { libc::munmap(self.ptr.cast(), self.bytes) };
    }
}

fn xorshift(x: &mut u64) -> u64 {
    *x ^= *x << 13;
    *x ^= *x >> 7;
    *x ^= *x << 17;
    *x
}

/// Dependent arithmetic the compiler cannot remove: the stand-in for a packet's other work.
#[inline(always)]
fn work(mut acc: u64, rounds: u64) -> u64 {
    for j in 0..rounds {
        acc = acc.wrapping_mul(0x9e37_79b9_7f4a_7c15).wrapping_add(j);
    }
    acc
}

pub fn run(args: Args) -> Result<()> {
    ensure!(args.states > 0, "--states must be positive");
    // As StateTable sizes them: 4/3 of the states, rounded up to a power of two.
    let slots = (args.states * 4 / 3 + 1).next_power_of_two();
    let huge = !args.no_huge_pages;
    let mut index = Region::new(slots, huge)?;
    let mut slab = Region::new(args.states * ENTRY_WORDS, huge)?;
    let mut inline = Region::new(slots * ENTRY_WORDS, huge)?;
    let mut rng = 0x2545_f491_4f6c_dd1d_u64;
    for slot in index.words().iter_mut() {
        *slot = xorshift(&mut rng) % args.states as u64;
    }
    for (i, entry) in slab.words().chunks_mut(ENTRY_WORDS).enumerate() {
        entry[0] = i as u64;
        entry[8] = 1;
    }
    for (i, entry) in inline.words().chunks_mut(ENTRY_WORDS).enumerate() {
        entry[0] = i as u64;
        entry[8] = 1;
    }
    let queries: Vec<usize> = (0..1 << 20)
        .map(|_| (xorshift(&mut rng) % slots as u64) as usize)
        .collect();
    let batches = args.lookups.div_ceil(BATCH);
    let (index, slab, inline) = (index.ptr as *const u64, slab.ptr as *const u64, inline.ptr);
    let inline = inline as *const u64;

    // Two passes, as the worker: index slots, then the states they name.
    let start = Instant::now();
    let mut acc = 0u64;
    for b in 0..batches {
        let q = &queries[(b * BATCH) % queries.len()..][..BATCH];
        // SAFETY (all three loops): every query is < slots and every slot value < states,
        // so each pointer stays inside its region.
        for &h in q {
            prefetch(unsafe { index.add(h) });
            acc = work(acc, args.work);
        }
        for &h in q {
            let s = unsafe { *index.add(h) } as usize;
            let state = unsafe { slab.add(s * ENTRY_WORDS) };
            prefetch(state);
            prefetch(unsafe { state.add(8) });
        }
        for &h in q {
            let s = unsafe { *index.add(h) } as usize;
            let state = unsafe { slab.add(s * ENTRY_WORDS) };
            acc = acc.wrapping_add(unsafe { *state + *state.add(8) });
            acc = work(acc, 3 * args.work);
        }
    }
    let two_pass_ns = start.elapsed().as_nanos() as f64 / (batches * BATCH) as f64;

    // One pass: the entry itself is the slot.
    let start = Instant::now();
    for b in 0..batches {
        let q = &queries[(b * BATCH) % queries.len()..][..BATCH];
        for &h in q {
            let entry = unsafe { inline.add(h * ENTRY_WORDS) };
            prefetch(entry);
            prefetch(unsafe { entry.add(8) });
            acc = work(acc, args.work);
        }
        for &h in q {
            let entry = unsafe { inline.add(h * ENTRY_WORDS) };
            acc = acc.wrapping_add(unsafe { *entry + *entry.add(8) });
            acc = work(acc, 3 * args.work);
        }
    }
    let one_pass_ns = start.elapsed().as_nanos() as f64 / (batches * BATCH) as f64;
    std::hint::black_box(acc);

    let index_mib = (slots * 8) as f64 / (1 << 20) as f64;
    let slab_mib = (args.states * 128) as f64 / (1 << 20) as f64;
    if args.json {
        println!(
            "{}",
            json!({
                "scenario": "lookup-memory",
                "states": args.states,
                "index_mib": index_mib,
                "slab_mib": slab_mib,
                "work": args.work,
                "huge_pages": huge,
                "two_pass_ns_per_lookup": two_pass_ns,
                "one_pass_ns_per_lookup": one_pass_ns,
            })
        );
    } else {
        println!(
            "{} states (index {index_mib:.1} MiB, slab {slab_mib:.1} MiB), work {}, huge pages {}:",
            args.states,
            args.work,
            if huge { "advised" } else { "off" }
        );
        println!("  two passes (index, then state): {two_pass_ns:.1} ns per lookup");
        println!("  one pass (state in the index):  {one_pass_ns:.1} ns per lookup");
    }
    Ok(())
}
