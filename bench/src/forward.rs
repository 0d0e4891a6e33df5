//! `rampart-bench forward`: one worker forwarding established TCP traffic between DPDK
//! vdevs, fed by a generator on the other lcore, measured at the egress device.
//!
//! ```text
//!   lcore 0 (main): generator                    lcore 1: Worker::poll, busy
//!   alloc mbuf, copy a template  ──tx q0──▶ net_ring0 ──rx q0──▶ lan → state hit → wan
//!                                           (ring PMD: TX q loops to RX q)   │
//!                                                    net_null0 (no-rx=1) ◀──tx q0
//!                                                    frees the mbufs, counts opackets
//! ```
//!
//! - Two vCPUs: one generator core and one device-under-test core, never two busy pollers
//!   on one CPU (machine-facts.md).
//! - The figure is `net_null0`'s `opackets` over the window (after a warm-up): what left
//!   the appliance. The worker's drop counters and the generator's offered rate are
//!   reported beside it, so a run where the generator (not the worker) was the limit, or
//!   where frames were dropped, shows itself: the worker should never find the ring empty
//!   (`idle_time` ≈ 0). Both pollers' time on their CPUs is read from schedstat: on this
//!   shared machine a run where another process took either CPU is visible as such.
//! - The state table is filled directly with `--states` established connections, and the
//!   frames are the in-memory worker benchmark's (`dataplane/benches/worker.rs`), so the
//!   two measurements differ only by the ports.
//! - `--forwarder io` puts a plain I/O forwarder on lcore 1 instead of the worker (receive
//!   from `lan`, transmit to `wan`, nothing read): what testpmd's io mode does, with this
//!   harness's generator and the frames crossing cores. It is the ceiling of this setup,
//!   and it shows whether the generator could limit the worker's figure.

use std::ptr::NonNull;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{bail, ensure, Context, Result};
use crossbeam::queue::ArrayQueue;
use rampart_bench::flows::{self, Templates, Topology, FILLER_RULES};
use rampart_dataplane::filter::CompiledPolicy;
use rampart_dataplane::iface::InterfaceTable;
use rampart_dataplane::io::dpdk::{
    missing_prerequisites, DpdkQueue, Eal, EthPort, Mbuf, Mempool, PortConfig,
};
use rampart_dataplane::io::{PacketBuf, Port, BURST};
use rampart_dataplane::neighbor::NeighborTable;
use rampart_dataplane::route::RouteTable;
use rampart_dataplane::shared::Published;
use rampart_dataplane::state::{StateTable, StateTableConfig, TimeoutTable};
use rampart_dataplane::vip::VipTable;
use rampart_dataplane::wire::MacAddr;
use rampart_dataplane::worker::{DropReason, Shared, ToControl, Worker, WorkerStats};
use rampart_sys as sys;
use serde_json::json;

const LAN_DEVICE: &str = "net_ring0";
/// `no-rx=1`: the null PMD's RX returns nothing, so the worker's only input is the ring;
/// its TX frees every mbuf and counts it.
const WAN_DEVICE: &str = "net_null0,no-rx=1";
const GENERATOR_LCORE: u32 = 0;
const WORKER_LCORE: u32 = 1;
const EAL_EXTRA: &[&str] = &["--no-pci", "--in-memory", "--no-telemetry"];
/// Per-lcore mempool cache: the appliance's default (`[dpdk] mbuf_cache`).
const MBUF_CACHE: u32 = 256;
/// The mbuf data room: 128 bytes of headroom and 2048 for the frame (DPDK's default).
const DATA_ROOM: u16 = 2048 + 128;
/// Frames and messages from the worker to the control core (drained only at the end:
/// nothing here should reach it).
type ControlQueue = ArrayQueue<ToControl<Mbuf>>;
/// Interface indices in the configuration, which are the worker's port indices.
const LAN: usize = 0;
const WAN: usize = 1;

#[derive(clap::Args)]
pub struct Args {
    /// Established connections in the state table (`[limits] states` is this + 10 %).
    #[arg(long, default_value_t = 1_000_000)]
    states: u32,
    /// Length of the measurement window, after the warm-up.
    #[arg(long, default_value_t = 10.0)]
    seconds: f64,
    /// Distinct connections the generator cycles through, drawn at random among the
    /// states; default: all of them up to 1 000 000 (as the in-memory benchmark).
    #[arg(long)]
    flows: Option<u32>,
    /// Warm-up before the window opens, in seconds.
    #[arg(long, default_value_t = 1.0)]
    warmup: f64,
    /// Mbufs in the pool (a power of two minus one).
    #[arg(long, default_value_t = 16383)]
    mbufs: u32,
    /// What runs on lcore 1: rampart's worker, or a plain I/O forwarder (the ceiling).
    #[arg(long, value_enum, default_value_t = Forwarder::Rampart)]
    forwarder: Forwarder,
    /// Print the result as one line of JSON instead of the summary.
    #[arg(long)]
    json: bool,
}

#[derive(Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
enum Forwarder {
    /// rampart's worker (`Worker::poll`), state table filled.
    Rampart,
    /// Receive a burst from lan, transmit it to wan, touch nothing else.
    Io,
}

impl Forwarder {
    fn name(self) -> &'static str {
        match self {
            Forwarder::Rampart => "rampart",
            Forwarder::Io => "io",
        }
    }
}

/// The worker's queue on one port. On `lan` it is receive-only: the generator is the
/// producer of `net_ring0`'s TX queue 0, whose ring is single-producer, so the worker must
/// never transmit there. A frame the worker would send on `lan` is refused (the worker
/// counts it as a `tx-full` drop and frees it) and shows in the result.
struct WorkerQueue {
    queue: DpdkQueue,
    transmit: bool,
}

impl Port for WorkerQueue {
    type Buf = Mbuf;

    #[inline]
    fn rx_burst(&mut self, out: &mut Vec<Mbuf>, max: usize) -> usize {
        self.queue.rx_burst(out, max)
    }

    #[inline]
    fn tx_burst(&mut self, bufs: &mut Vec<Mbuf>) -> usize {
        if self.transmit {
            self.queue.tx_burst(bufs)
        } else {
            0
        }
    }

    #[inline]
    fn alloc(&mut self) -> Option<Mbuf> {
        self.queue.alloc()
    }
}

/// Written by the forwarder's loop after each poll (plain stores, read by the main lcore at
/// the window's edges): whether it ever waited for traffic. Empty polls are cheap next to
/// full ones, so the time they took says more than their number.
#[derive(Default)]
struct LoopCounters {
    polls: AtomicU64,
    empty_polls: AtomicU64,
    empty_poll_ns: AtomicU64,
    /// Frames the I/O forwarder could not transmit (the worker counts its own drops).
    io_dropped: AtomicU64,
    /// The forwarder thread's Linux thread id (0 until it has started), for its schedstat.
    tid: AtomicU64,
}

/// A thread's time on a CPU and waiting for one, in ns, from `/proc/.../schedstat`
/// (`None` where the kernel has no schedstat). The machine is shared: a busy poller that
/// did not get its whole CPU for the whole window (another process ran, or it waited on a
/// run queue) makes the run a measurement of the machine, not of rampart.
fn schedstat(path: &str) -> Option<(u64, u64)> {
    let text = std::fs::read_to_string(path).ok()?;
    let mut fields = text.split_whitespace().map(|f| f.parse::<u64>().ok());
    Some((fields.next()??, fields.next()??))
}

/// This thread's id, from the `/proc/thread-self` link (`PID/task/TID`).
fn current_tid() -> Option<u64> {
    let link = std::fs::read_link("/proc/thread-self").ok()?;
    link.file_name()?.to_str()?.parse().ok()
}

/// The forwarder loop's clock and idle accounting, the same for both forwarders: one clock
/// read per poll (the worker needs it anyway for state timeouts, as in `rampart run`), which
/// also times the previous poll.
struct PollClock {
    counters: Arc<LoopCounters>,
    polls: u64,
    empty: u64,
    empty_ns: u64,
    empty_since: Option<Instant>,
}

impl PollClock {
    fn new(counters: Arc<LoopCounters>) -> PollClock {
        counters
            .tid
            .store(current_tid().unwrap_or(0), Ordering::Relaxed);
        PollClock {
            counters,
            polls: 0,
            empty: 0,
            empty_ns: 0,
            empty_since: None,
        }
    }

    #[inline]
    fn before_poll(&mut self) -> Instant {
        let now = Instant::now();
        if let Some(then) = self.empty_since.take() {
            self.empty_ns += (now - then).as_nanos() as u64;
        }
        now
    }

    #[inline]
    fn after_poll(&mut self, started: Instant, received: usize) {
        self.polls += 1;
        if received == 0 {
            self.empty += 1;
            self.empty_since = Some(started);
        }
        self.counters.polls.store(self.polls, Ordering::Relaxed);
        self.counters
            .empty_polls
            .store(self.empty, Ordering::Relaxed);
        self.counters
            .empty_poll_ns
            .store(self.empty_ns, Ordering::Relaxed);
    }
}

/// The worker's loop: `poll = "busy"` as `rampart run` runs it.
fn worker_loop(
    mut worker: Worker<WorkerQueue>,
    stop: Arc<AtomicBool>,
    counters: Arc<LoopCounters>,
    start: Instant,
) -> i32 {
    let mut clock = PollClock::new(counters);
    while !stop.load(Ordering::Relaxed) {
        let now = clock.before_poll();
        let received = worker.poll((now - start).as_millis() as u64);
        clock.after_poll(now, received);
    }
    0
}

/// The plain I/O forwarder (`--forwarder io`): lan's bursts straight to wan. It never
/// transmits on lan (the generator is that ring's only producer).
fn io_loop(
    mut lan: DpdkQueue,
    mut wan: DpdkQueue,
    stop: Arc<AtomicBool>,
    counters: Arc<LoopCounters>,
) -> i32 {
    let mut clock = PollClock::new(counters.clone());
    let mut burst: Vec<Mbuf> = Vec::with_capacity(BURST);
    let mut dropped = 0u64;
    while !stop.load(Ordering::Relaxed) {
        let now = clock.before_poll();
        let received = lan.rx_burst(&mut burst, BURST);
        if received > 0 {
            wan.tx_burst(&mut burst);
            if !burst.is_empty() {
                dropped += burst.len() as u64;
                counters.io_dropped.store(dropped, Ordering::Relaxed);
                burst.clear();
            }
        }
        clock.after_poll(now, received);
    }
    0
}

/// Builds frames into fresh mbufs and pushes them into `net_ring0`'s TX queue 0, keeping
/// the ring full: when the ring refuses some, it retries those (without allocating more)
/// until they go.
struct Generator<'a> {
    port_id: u16,
    pool: &'a Mempool,
    templates: &'a Templates,
    next: usize,
    /// Frames built and not yet accepted by the ring, oldest first; raw because the
    /// burst call takes them from this array (each is an mbuf we own until it is sent).
    pending: Vec<*mut sys::rte_mbuf>,
    sent: u64,
    /// Times the pool had no mbuf for a new burst.
    no_mbuf: u64,
}

impl Generator<'_> {
    fn refill(&mut self) {
        for _ in 0..BURST {
            let Some(mut m) = self.pool.alloc() else {
                break;
            };
            let frame = self.templates.get(self.next);
            self.next += 1;
            if self.next == self.templates.len() {
                self.next = 0;
            }
            // A 60-byte frame always fits a 2048-byte data room.
            let fits = m.set_frame_len(frame.len());
            debug_assert!(fits);
            m.data_mut().copy_from_slice(frame);
            self.pending.push(m.into_raw().as_ptr());
        }
    }

    #[inline]
    fn step(&mut self) {
        if self.pending.is_empty() {
            self.refill();
            if self.pending.is_empty() {
                self.no_mbuf += 1;
                std::hint::spin_loop();
                return;
            }
        }
        let offered = self.pending.len();
        // SAFETY: `port_id` is net_ring0, started, and kept open (its EthPort outlives the
        // generator) with TX queue 0 configured. The ring behind TX queue 0 is single-
        // producer, and this is its only producer: the forwarder on lcore 1 holds that queue
        // only to receive (the worker through a receive-only WorkerQueue, the io loop by
        // never calling tx_burst on lan). `pending` holds `offered` valid mbufs we own; DPDK
        // takes ownership of the first `n` and only reads the array.
        let n = unsafe {
            sys::rampart_tx_burst(self.port_id, 0, self.pending.as_mut_ptr(), offered as u16)
        };
        let n = usize::from(n);
        self.pending.drain(..n);
        self.sent += n as u64;
        if n < offered {
            // The ring is full: the worker is the bottleneck, as it should be. Give it the
            // ring's cache lines for a moment instead of hammering them.
            std::hint::spin_loop();
        }
    }
}

impl Drop for Generator<'_> {
    fn drop(&mut self) {
        for raw in self.pending.drain(..) {
            // SAFETY: unsent frames are still ours (from Mbuf::into_raw); freed once here.
            drop(unsafe { Mbuf::from_raw(NonNull::new(raw).expect("non-null")) });
        }
    }
}

/// Every counter at one instant.
struct Snapshot {
    at: Instant,
    wan_opackets: u64,
    lan_ipackets: u64,
    worker_forwarded: u64,
    drops: [u64; DropReason::COUNT],
    io_dropped: u64,
    polls: u64,
    empty_polls: u64,
    empty_poll_ns: u64,
    /// (on a CPU, waiting for one) in ns, of the worker's and the generator's threads.
    worker_sched: Option<(u64, u64)>,
    generator_sched: Option<(u64, u64)>,
    sent: u64,
    no_mbuf: u64,
}

fn snapshot(
    at: Instant,
    lan: &EthPort,
    wan: &EthPort,
    stats: Option<&WorkerStats>,
    counters: &LoopCounters,
    generator: &Generator<'_>,
) -> Result<Snapshot> {
    Ok(Snapshot {
        at,
        wan_opackets: wan.stats()?.opackets,
        lan_ipackets: lan.stats()?.ipackets,
        worker_forwarded: stats.map_or(0, |s| s.forwarded.get()),
        drops: DropReason::ALL.map(|r| stats.map_or(0, |s| s.dropped(r))),
        io_dropped: counters.io_dropped.load(Ordering::Relaxed),
        polls: counters.polls.load(Ordering::Relaxed),
        empty_polls: counters.empty_polls.load(Ordering::Relaxed),
        empty_poll_ns: counters.empty_poll_ns.load(Ordering::Relaxed),
        worker_sched: match counters.tid.load(Ordering::Relaxed) {
            0 => None,
            tid => schedstat(&format!("/proc/self/task/{tid}/schedstat")),
        },
        generator_sched: schedstat("/proc/thread-self/schedstat"),
        sent: generator.sent,
        no_mbuf: generator.no_mbuf,
    })
}

fn ratio(part: u64, whole: u64) -> f64 {
    if whole == 0 {
        0.0
    } else {
        part as f64 / whole as f64
    }
}

pub fn run(args: Args) -> Result<()> {
    ensure!(args.states > 0, "--states must be at least 1");
    ensure!(
        args.seconds > 0.0 && args.warmup >= 0.0,
        "--seconds must be positive and --warmup not negative"
    );
    let flows = args.flows.unwrap_or(args.states.min(1_000_000));
    ensure!(flows > 0, "--flows must be at least 1");
    if let Some(why) = missing_prerequisites() {
        bail!("DPDK cannot start here: {why}");
    }

    let topology = Topology {
        lan_device: LAN_DEVICE,
        wan_device: WAN_DEVICE,
        control_lcore: GENERATOR_LCORE,
        worker_lcore: WORKER_LCORE,
        eal_args: EAL_EXTRA,
        mbufs: args.mbufs,
        mbuf_cache: MBUF_CACHE,
    };
    let limit = args
        .states
        .checked_add(args.states / 10)
        .context("--states too large")?;
    let config = flows::load_config(&flows::config_text(&topology, FILLER_RULES, limit))?;
    // EAL's command line as `rampart run` builds it from `[dpdk]` and the interfaces.
    let mut eal_args = vec![
        "-l".to_string(),
        format!("{GENERATOR_LCORE},{WORKER_LCORE}"),
        "--main-lcore".to_string(),
        GENERATOR_LCORE.to_string(),
    ];
    eal_args.extend(config.dpdk.eal_args.iter().cloned());
    eal_args.extend(
        config
            .interfaces
            .iter()
            .map(|i| format!("--vdev={}", i.device)),
    );

    // The I/O forwarder reads no state: its table stays empty.
    let states = Arc::new(StateTable::new(StateTableConfig {
        limit: config.limits.states as usize,
        shards: 256,
        timeouts: TimeoutTable::new(&config.timeouts, config.limits.states),
        creator: 1,
        first_id: 1,
    }));
    let fill_start = Instant::now();
    if args.forwarder == Forwarder::Rampart {
        flows::fill(&states, args.states)?;
    }
    let fill_seconds = fill_start.elapsed().as_secs_f64();
    let templates = Templates::new(args.states, flows);
    eprintln!(
        "rampart-bench forward: {} forwarder, {} states ({} in the table, {:.0} bytes/state, filled in {fill_seconds:.1} s), {} flows; EAL {}",
        args.forwarder.name(),
        args.states,
        states.len(),
        states.memory_bytes() as f64 / f64::from(args.states),
        templates.len(),
        eal_args.join(" ")
    );

    let eal = Eal::init(&eal_args)
        .context("starting DPDK (are hugepages reserved? echo 512 > /proc/sys/vm/nr_hugepages)")?;
    ensure!(
        eal.main_lcore() == GENERATOR_LCORE && eal.worker_lcores() == [WORKER_LCORE],
        "EAL gave main lcore {} and worker lcores {:?}",
        eal.main_lcore(),
        eal.worker_lcores()
    );
    let pool = Mempool::new(
        &eal,
        "bench_mbufs",
        config.dpdk.mbufs,
        config.dpdk.mbuf_cache,
        DATA_ROOM,
    )
    .context("creating the mbuf pool")?;
    // One queue pair per port: one worker, and no control-core queue (nothing here
    // sends from the control plane).
    let port_config = PortConfig {
        rx_queues: 1,
        tx_queues: 1,
        rx_desc: config.dpdk.rx_descriptors,
        tx_desc: config.dpdk.tx_descriptors,
        rss: false,
    };
    let lan = EthPort::open(&config.interfaces[LAN].device, &port_config, &pool)
        .context("opening lan")?;
    let wan = EthPort::open(&config.interfaces[WAN].device, &port_config, &pool)
        .context("opening wan")?;
    let (lan_queue, wan_queue) = (lan.queue(0)?, wan.queue(0)?);
    // Which placement of the two vCPUs this run had (see cross_core.rs).
    let cross_core_ns = crate::cross_core::measure(
        &eal,
        WORKER_LCORE,
        crate::cross_core::ROUND_TRIPS,
        crate::cross_core::SAMPLES,
    )?;

    let counters = Arc::new(LoopCounters::default());
    let stop = Arc::new(AtomicBool::new(false));
    let start = Instant::now();
    // The worker's statistics and its queue to the control core (rampart only).
    let mut worker_side: Option<(Arc<WorkerStats>, Arc<ControlQueue>)> = None;
    match args.forwarder {
        Forwarder::Rampart => {
            let macs: Vec<MacAddr> = config
                .interfaces
                .iter()
                .zip([&lan, &wan])
                .map(|(i, p)| i.mac.unwrap_or(MacAddr(p.mac())))
                .collect();
            let shared = Shared {
                interfaces: Arc::new(InterfaceTable::new(&config, &macs)),
                policy: Arc::new(Published::new(CompiledPolicy::compile(&config))),
                routes: Arc::new(Published::new(RouteTable::from_config(&config))),
                neighbors: Arc::new(Published::new(NeighborTable::from_config(&config))),
                vips: Arc::new(VipTable::from_config(&config)),
                states: states.clone(),
            };
            let control = Arc::new(ArrayQueue::new(1024));
            let queues = vec![
                WorkerQueue {
                    queue: lan_queue,
                    transmit: false,
                },
                WorkerQueue {
                    queue: wan_queue,
                    transmit: true,
                },
            ];
            let worker = Worker::new(0, queues, &shared, control.clone());
            worker_side = Some((worker.stats(), control));
            let (stop, counters) = (stop.clone(), counters.clone());
            eal.launch(WORKER_LCORE, move || {
                worker_loop(worker, stop, counters, start)
            })
            .context("starting the worker")?;
        }
        Forwarder::Io => {
            let (stop, counters) = (stop.clone(), counters.clone());
            eal.launch(WORKER_LCORE, move || {
                io_loop(lan_queue, wan_queue, stop, counters)
            })
            .context("starting the I/O forwarder")?;
        }
    }
    let stats = worker_side.as_ref().map(|(s, _)| &**s);

    let mut generator = Generator {
        port_id: lan.port_id(),
        pool: &pool,
        templates: &templates,
        next: 0,
        pending: Vec::with_capacity(BURST),
        sent: 0,
        no_mbuf: 0,
    };
    let window_opens = start + Duration::from_secs_f64(args.warmup);
    let window_closes = window_opens + Duration::from_secs_f64(args.seconds);
    let mut before = None;
    let after = loop {
        // The clock is read once per 64 bursts (at most 2 048 frames, well under a
        // millisecond): often enough for the window's edges, rarely enough to cost nothing.
        for _ in 0..64 {
            generator.step();
        }
        let now = Instant::now();
        if before.is_none() && now >= window_opens {
            before = Some(snapshot(now, &lan, &wan, stats, &counters, &generator)?);
        }
        if now >= window_closes {
            break snapshot(now, &lan, &wan, stats, &counters, &generator)?;
        }
    };
    let before = before.expect("the window opens before it closes");

    // Stop: let the forwarder empty the ring first, so every mbuf is back in the pool.
    drop(generator);
    std::thread::sleep(Duration::from_millis(50));
    stop.store(true, Ordering::Relaxed);
    let exit = eal.wait(WORKER_LCORE);
    ensure!(exit == 0, "the forwarder's lcore job failed ({exit})");
    let (lan_tx_refused, to_control, drops_total) = match &worker_side {
        Some((stats, control)) => {
            // Frames queued for the control core hold mbufs: free them before the pool.
            while control.pop().is_some() {}
            (
                stats.ports[LAN].tx_packets.get() + stats.ports[LAN].tx_dropped.get(),
                stats.to_control.get(),
                stats.total_drops(),
            )
        }
        None => (0, 0, counters.io_dropped.load(Ordering::Relaxed)),
    };

    let seconds = (after.at - before.at).as_secs_f64();
    let forwarded = after.wan_opackets - before.wan_opackets;
    let mpps = forwarded as f64 / seconds / 1e6;
    let ns_per_packet = if forwarded > 0 {
        seconds * 1e9 / forwarded as f64
    } else {
        f64::INFINITY
    };
    let offered = after.sent - before.sent;
    let received = after.lan_ipackets - before.lan_ipackets;
    let mut drops_window = serde_json::Map::new();
    let mut drops_sum = after.io_dropped - before.io_dropped;
    if drops_sum > 0 {
        drops_window.insert("io-tx-full".into(), drops_sum.into());
    }
    for (i, reason) in DropReason::ALL.iter().enumerate() {
        let d = after.drops[i] - before.drops[i];
        if d > 0 {
            drops_window.insert(reason.name().to_string(), d.into());
            drops_sum += d;
        }
    }
    let idle_polls = ratio(
        after.empty_polls - before.empty_polls,
        after.polls - before.polls,
    );
    // The share of the window the forwarder spent on polls that found nothing.
    let idle_time = (after.empty_poll_ns - before.empty_poll_ns) as f64 / (seconds * 1e9);
    // Shares of the window each poller spent on its CPU and waiting for it (1 and 0 when
    // it had its CPU to itself).
    let share = |a: Option<(u64, u64)>, b: Option<(u64, u64)>| match (a, b) {
        (Some(a), Some(b)) => json!({
            "on_cpu": (b.0 - a.0) as f64 / (seconds * 1e9),
            "waited": (b.1 - a.1) as f64 / (seconds * 1e9),
        }),
        _ => serde_json::Value::Null,
    };
    let worker_cpu = share(before.worker_sched, after.worker_sched);
    let generator_cpu = share(before.generator_sched, after.generator_sched);
    let result = json!({
        "scenario": "forward",
        "forwarder": args.forwarder.name(),
        "states": args.states,
        "states_in_table": states.len(),
        "flows": templates.len(),
        "frame_bytes": templates.frame_len(),
        "seconds": seconds,
        "forwarded": forwarded,
        "mpps": mpps,
        "ns_per_packet": ns_per_packet,
        "offered_mpps": offered as f64 / seconds / 1e6,
        "received_mpps": received as f64 / seconds / 1e6,
        "worker_forwarded": after.worker_forwarded - before.worker_forwarded,
        "drops": drops_sum,
        "drops_by_reason": drops_window,
        "drops_whole_run": drops_total,
        "lan_tx_refused": lan_tx_refused,
        "to_control": to_control,
        "idle_polls": idle_polls,
        "idle_time": idle_time,
        "worker_cpu": worker_cpu,
        "generator_cpu": generator_cpu,
        "no_mbuf": after.no_mbuf - before.no_mbuf,
        "cross_core_round_trip_ns": cross_core_ns,
        "fill_seconds": fill_seconds,
        "state_bytes": states.memory_bytes(),
        "eal": eal_args.join(" "),
    });

    // Everything that holds DPDK memory goes before EAL's cleanup.
    drop(worker_side);
    drop((lan, wan));
    let pool_in_use = pool.in_use();
    drop(pool);
    if let Err(e) = eal.shutdown() {
        eprintln!("rampart-bench forward: EAL not cleaned up ({pool_in_use} mbufs out): {e}");
    }

    if args.json {
        println!("{result}");
    } else {
        println!(
            "forward ({}): {} states, {} flows, {seconds:.2} s: {mpps:.2} Mpps out of net_null0 \
             = {ns_per_packet:.1} ns/packet on the forwarding core; offered {:.2} Mpps; drops \
             {drops_sum} (whole run {drops_total}); forwarder idle {:.2} % of the time ({:.1} % \
             of polls); on their CPUs: forwarder {:.1} %, generator {:.1} % of the window; \
             cross-core round trip {cross_core_ns:.0} ns",
            args.forwarder.name(),
            args.states,
            templates.len(),
            offered as f64 / seconds / 1e6,
            idle_time * 100.0,
            idle_polls * 100.0,
            worker_cpu["on_cpu"].as_f64().unwrap_or(f64::NAN) * 100.0,
            generator_cpu["on_cpu"].as_f64().unwrap_or(f64::NAN) * 100.0,
        );
    }
    if drops_sum > 0 || lan_tx_refused > 0 {
        eprintln!(
            "rampart-bench forward: WARNING: {drops_sum} frames dropped in the window \
             ({lan_tx_refused} meant for lan): every frame of an established connection should pass"
        );
    }
    Ok(())
}
