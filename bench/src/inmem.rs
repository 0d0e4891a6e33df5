//! Running the worker over in-memory ports for a while and reading its rate, for the
//! scenarios that need no DPDK (`pfsync-bulk`'s worker part, `workers`).

use std::time::{Duration, Instant};

use rampart_dataplane::io::mem::MemPort;
use rampart_dataplane::io::BURST;
use rampart_dataplane::worker::Worker;

use crate::flows::Templates;

/// Pins the calling thread to `cpu`.
pub fn pin(cpu: usize) {
    // SAFETY: a zeroed cpu_set_t is a valid empty set; CPU_SET writes within it.
    unsafe {
        let mut set: libc::cpu_set_t = std::mem::zeroed();
        libc::CPU_SET(cpu, &mut set);
        libc::sched_setaffinity(0, std::mem::size_of::<libc::cpu_set_t>(), &set);
    }
}

/// Arithmetic on `cpu` until `stop`, touching no memory: a busy neighbour, to tell what
/// any busy CPU beside a worker costs on this machine (vCPUs may share a physical core)
/// from what sharing memory costs.
pub fn spin_until(cpu: usize, stop: &std::sync::atomic::AtomicBool) {
    pin(cpu);
    let mut x = 0x9e37_79b9_7f4a_7c15u64;
    while !stop.load(std::sync::atomic::Ordering::Relaxed) {
        for _ in 0..1000 {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
        }
        std::hint::black_box(x);
    }
}

/// Packets per second of `worker` (lan = port 0, wan = port 1) over `secs`, in 100 ms
/// windows: the median window. Each burst's frames are copied from `templates`, starting
/// at template `first`, into pooled buffers, as a NIC's DMA would write them; what leaves
/// on wan goes back to lan's pool, so nothing is allocated per packet.
pub fn worker_rate(
    worker: &mut Worker<MemPort>,
    templates: &Templates,
    first: usize,
    secs: f64,
) -> f64 {
    if templates.is_empty() {
        return 0.0;
    }
    let mut rates = Vec::new();
    let end = Instant::now() + Duration::from_secs_f64(secs);
    let mut next = first % templates.len();
    let mut now_ms = 1u64;
    while Instant::now() < end {
        let window = Instant::now();
        let mut packets = 0u64;
        while window.elapsed() < Duration::from_millis(100) {
            for _ in 0..64 {
                let port = &mut worker.ports_mut()[0];
                for _ in 0..BURST {
                    port.inject(templates.get(next));
                    next = (next + 1) % templates.len();
                }
                worker.poll(now_ms);
                let sent = worker.ports_mut()[1].take_tx();
                worker.ports_mut()[0].pool.extend(sent);
                packets += BURST as u64;
            }
            now_ms += 1;
        }
        rates.push(packets as f64 / window.elapsed().as_secs_f64());
    }
    median(&mut rates)
}

/// The median (the upper one of an even count); 0 for none.
pub fn median(v: &mut [f64]) -> f64 {
    v.sort_by(f64::total_cmp);
    v.get(v.len() / 2).copied().unwrap_or(0.0)
}

/// A cache line bounced between two threads (see `cross-core`).
#[repr(align(64))]
pub struct BouncingLine(pub std::sync::atomic::AtomicU64);

/// The pinging side of `round_trips` round trips over `line`: ns per round trip.
pub fn ping(line: &BouncingLine, round_trips: u64) -> f64 {
    use std::sync::atomic::Ordering;
    let start = Instant::now();
    for i in 0..round_trips {
        line.0.store(2 * i + 1, Ordering::Release);
        while line.0.load(Ordering::Acquire) != 2 * i + 2 {
            std::hint::spin_loop();
        }
    }
    start.elapsed().as_nanos() as f64 / round_trips as f64
}

/// The answering side of [`ping`].
pub fn pong(line: &BouncingLine, round_trips: u64) {
    use std::sync::atomic::Ordering;
    for i in 0..round_trips {
        while line.0.load(Ordering::Acquire) != 2 * i + 1 {
            std::hint::spin_loop();
        }
        line.0.store(2 * i + 2, Ordering::Release);
    }
}

/// The cache-line round trip between `cpu_a` (the caller, pinned there) and `cpu_b`, in ns
/// (the median of 5 samples of 100 000). The hypervisor places this VM's vCPUs near each
/// other or far apart, and everything two workers share follows.
pub fn round_trip_ns(cpu_a: usize, cpu_b: usize) -> f64 {
    const ROUND_TRIPS: u64 = 100_000;
    pin(cpu_a);
    let mut samples: Vec<f64> = (0..5)
        .map(|_| {
            let line = BouncingLine(std::sync::atomic::AtomicU64::new(0));
            std::thread::scope(|s| {
                s.spawn(|| {
                    pin(cpu_b);
                    pong(&line, ROUND_TRIPS);
                });
                ping(&line, ROUND_TRIPS)
            })
        })
        .collect();
    median(&mut samples)
}
