//! `rampart-bench pfsync-bulk`: a pfsync bulk update of N states between two appliances'
//! control planes, and one worker's throughput while its node sends a bulk.
//!
//! Both nodes are the appliance's own `ControlPlane` (the code `rampart run` drives), each on
//! its own CPU, with the sync link between them a bounded queue of Ethernet frames: the
//! sender writes as many frames per loop as the link has room for, as `rampart run` does with
//! its TX queue. The receiver parses each frame, merges or inserts every state under its
//! shard lock, and the transfer ends at its BUS END with every state installed.
//!
//! The worker part runs the in-memory worker (the same loop as `rampart run`'s, with the
//! frame copy a NIC's DMA would do) over established connections of the sender's table,
//! first with the control core idle, then while it streams bulk after bulk from that table.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use crossbeam::channel::{bounded, unbounded, Receiver, Sender};
use crossbeam::queue::ArrayQueue;
use rampart_conf::{Config, MacAddr};
use rampart_control::pfsync::BulkPhase;
use rampart_control::runtime::{ControlPlane, Outgoing};
use rampart_dataplane::io::mem::MemPort;
use rampart_dataplane::state::StateTableConfig;
use rampart_dataplane::worker::{Shared, ToControl, Worker};
use serde_json::json;

use rampart_bench::flows::{self, Templates, Topology};
use rampart_bench::inmem::{median, pin, spin_until, worker_rate};

#[derive(clap::Args)]
pub struct Args {
    /// States in the sender's table.
    #[arg(long, default_value_t = 100_000)]
    states: u32,
    /// Transfers to time (the median is reported).
    #[arg(long, default_value_t = 3)]
    runs: usize,
    /// The sync interface's MTU.
    #[arg(long, default_value_t = 1500)]
    mtu: u16,
    /// Frames the sync link holds in flight.
    #[arg(long, default_value_t = 1024)]
    link_frames: usize,
    /// The sync link's line rate in Gbit/s, which paces the sender as a NIC's TX ring
    /// would (0: unpaced, as fast as the sender's CPU goes).
    #[arg(long, default_value_t = 10.0)]
    link_gbps: f64,
    /// `[pfsync] bulk_rate`: the sender's pacing in states per second (0: none).
    #[arg(long, default_value_t = rampart_conf::DEFAULT_BULK_RATE)]
    bulk_rate: u32,
    /// Seconds of each part of the worker comparison (0 skips it).
    #[arg(long, default_value_t = 3.0)]
    worker_secs: f64,
    /// The sender's control core.
    #[arg(long, default_value_t = 0)]
    cpu_a: usize,
    /// The receiver's control core, and the worker's CPU.
    #[arg(long, default_value_t = 1)]
    cpu_b: usize,
    /// Print one JSON object.
    #[arg(long)]
    json: bool,
}

impl Args {
    fn link(&self) -> Link {
        Link {
            frames: self.link_frames,
            bytes_per_s: self.link_gbps * 1e9 / 8.0,
        }
    }
}

const SYNC: u16 = 2;
const HOST_A: u32 = 0x0a;
const HOST_B: u32 = 0x0b;

fn config(node: char, limit: u32, mtu: u16, bulk_rate: u32) -> Result<Config> {
    let topology = Topology {
        lan_device: "net_null0",
        wan_device: "net_null1",
        control_lcore: 0,
        worker_lcore: 1,
        eal_args: &["--no-pci", "--in-memory"],
        mbufs: 8191,
        mbuf_cache: 256,
    };
    let mut text = flows::config_text(&topology, flows::FILLER_RULES, limit);
    let last = if node == 'a' { 1 } else { 2 };
    text.push_str(&format!(
        r#"
[[interface]]
name = "sync"
device = "net_null2"
mac = "02:00:00:00:03:0{last}"
addresses = ["192.0.2.{last}/24"]
mtu = {mtu}

[pfsync]
interface = "sync"
bulk_rate = {bulk_rate}
"#
    ));
    flows::load_config(&text)
}

struct Node {
    shared: Shared,
    plane: ControlPlane,
    started: Instant,
}

impl Node {
    fn new(node: char, host_id: u32, limit: u32, args: &Args) -> Result<Node> {
        let config = config(node, limit, args.mtu, args.bulk_rate)?;
        let macs: Vec<MacAddr> = config
            .interfaces
            .iter()
            .map(|i| i.mac.expect("configured"))
            .collect();
        let shared = Shared::from_config(
            &config,
            &macs,
            StateTableConfig::from_config(&config, 256, host_id, u64::from(host_id) << 32),
        );
        let mut plane =
            ControlPlane::new(&config, shared.clone(), || 1).map_err(|e| anyhow::anyhow!("{e}"))?;
        plane.disable_carp();
        Ok(Node {
            shared,
            plane,
            started: Instant::now(),
        })
    }

    fn now(&self) -> Duration {
        self.started.elapsed()
    }

    fn frame(&mut self, frame: Vec<u8>, out: &mut Outgoing) {
        let now = self.now();
        self.plane.handle(
            ToControl::Frame {
                iface: SYNC,
                buf: frame,
            },
            now,
            out,
        );
    }

    fn bulk_states_sent(&self) -> u64 {
        self.plane
            .sync()
            .map_or(0, |s| s.engine().counters().bulk_states_sent)
    }

    fn bulk_phase(&self) -> BulkPhase {
        self.plane
            .sync()
            .map_or(BulkPhase::Idle, |s| s.engine().bulk_status().phase)
    }
}

/// The sender's control loop: answers what arrives on `rx`, sends its bulk into `tx` as
/// fast as the link takes it, until `stop`. With `repeat`, a finished bulk is requested
/// again from `request` (the worker comparison streams bulks back to back), and the link's
/// far end is this same loop, which throws away what it sent (no third thread to schedule
/// on the worker's CPU).
fn sender_loop(
    a: &mut Node,
    rx: &Receiver<Vec<u8>>,
    tx: &Sender<Vec<u8>>,
    link: &Link,
    stop: &AtomicBool,
    repeat: Option<(&[u8], &Receiver<Vec<u8>>)>,
) -> u64 {
    let mut frames = 0u64;
    // The line's byte budget (a token bucket a few dozen frames deep).
    let mut budget = 0.0f64;
    let mut last = Instant::now();
    while !stop.load(Ordering::Relaxed) {
        let mut out = Outgoing::new();
        while let Ok(f) = rx.try_recv() {
            a.frame(f, &mut out);
        }
        let now = a.now();
        a.plane.tick(now, &mut out);
        let mut room = link.frames.saturating_sub(tx.len()).min(64);
        if link.bytes_per_s > 0.0 {
            let t = Instant::now();
            budget = (budget + (t - last).as_secs_f64() * link.bytes_per_s).min(64.0 * WIRE_FRAME);
            last = t;
            room = room.min((budget / WIRE_FRAME) as usize);
        }
        a.plane.send_bulk(now, room, &mut out);
        let busy = a.plane.busy();
        for (iface, f) in out {
            if iface == SYNC {
                frames += 1;
                // On the wire: preamble, FCS and inter-frame gap besides the frame.
                budget -= (f.len() + 24) as f64;
                if tx.send(f).is_err() {
                    return frames;
                }
            }
        }
        match repeat {
            Some((request, sink)) => {
                while sink.try_recv().is_ok() {}
                if !busy {
                    let mut out = Outgoing::new();
                    a.frame(request.to_vec(), &mut out);
                }
            }
            None if !busy => std::thread::yield_now(),
            None => {}
        }
    }
    frames
}

/// The sync link: frames in flight, and its line rate (0: unpaced).
struct Link {
    frames: usize,
    bytes_per_s: f64,
}

/// A full frame on the wire, for the pacing: 1514 bytes, preamble, FCS and gap.
const WIRE_FRAME: f64 = 1538.0;

struct Transfer {
    secs: f64,
    frames: u64,
    installed: usize,
}

fn transfer(a: &mut Node, args: &Args) -> Result<Transfer> {
    let mut b = Node::new('b', HOST_B, args.states + 1024, args)?;
    let (a_tx, b_rx) = bounded::<Vec<u8>>(args.link_frames);
    let (b_tx, a_rx) = unbounded::<Vec<u8>>();
    let stop = AtomicBool::new(false);
    let link = args.link();
    let (cpu_a, cpu_b) = (args.cpu_a, args.cpu_b);
    std::thread::scope(|scope| -> Result<Transfer> {
        let sender = scope.spawn(|| {
            pin(cpu_a);
            sender_loop(a, &a_rx, &a_tx, &link, &stop, None)
        });
        pin(cpu_b);
        let t0 = Instant::now();
        let mut out = Outgoing::new();
        b.plane.start(b.now(), &mut out);
        for (iface, f) in out {
            if iface == SYNC {
                b_tx.send(f).ok();
            }
        }
        let deadline = t0 + Duration::from_secs(120);
        while b.bulk_phase() != BulkPhase::Done {
            if Instant::now() > deadline {
                stop.store(true, Ordering::Relaxed);
                bail!("the bulk did not complete in 120 s");
            }
            let mut out = Outgoing::new();
            if let Ok(f) = b_rx.recv_timeout(Duration::from_millis(1)) {
                b.frame(f, &mut out);
                while let Ok(f) = b_rx.try_recv() {
                    b.frame(f, &mut out);
                }
            }
            b.plane.tick(b.now(), &mut out);
            for (iface, f) in out {
                if iface == SYNC {
                    b_tx.send(f).ok();
                }
            }
        }
        let secs = t0.elapsed().as_secs_f64();
        stop.store(true, Ordering::Relaxed);
        drop(b_rx);
        let frames = sender.join().expect("the sender thread");
        Ok(Transfer {
            secs,
            frames,
            installed: b.shared.states.len(),
        })
    })
}

pub fn run(args: Args) -> Result<()> {
    if args.runs == 0 {
        bail!("--runs must be at least 1");
    }
    let cpus = std::thread::available_parallelism().map_or(1, |n| n.get());
    if args.cpu_a == args.cpu_b || args.cpu_a >= cpus || args.cpu_b >= cpus {
        bail!(
            "--cpu-a and --cpu-b must be two different CPUs of the {cpus} here (two busy threads never share one)"
        );
    }
    let mut a = Node::new('a', HOST_A, args.states + 1024, &args)?;
    let filled = Instant::now();
    flows::fill(&a.shared.states, args.states).context("filling the sender's table")?;
    eprintln!(
        "pfsync-bulk: {} states in the sender's table ({:.1} s to fill)",
        a.shared.states.len(),
        filled.elapsed().as_secs_f64()
    );

    let mut times = Vec::new();
    let mut last = None;
    for run in 1..=args.runs {
        let t = transfer(&mut a, &args)?;
        if t.installed != args.states as usize {
            bail!(
                "run {run}: {} of {} states installed",
                t.installed,
                args.states
            );
        }
        eprintln!(
            "pfsync-bulk: run {run}: {} states in {:.3} s ({:.0} states/s, {} frames)",
            t.installed,
            t.secs,
            f64::from(args.states) / t.secs,
            t.frames
        );
        times.push(t.secs);
        last = Some(t);
    }
    let secs = median(&mut times);
    let frames = last.map_or(0, |t| t.frames);

    let mut worker_figures = None;
    if args.worker_secs > 0.0 {
        // The request a starting peer sends, to make the sender stream bulk after bulk.
        let mut b = Node::new('b', HOST_B, 1024, &args)?;
        let mut out = Outgoing::new();
        b.plane.start(b.now(), &mut out);
        let request = out
            .into_iter()
            .find(|(iface, _)| *iface == SYNC)
            .map(|(_, f)| f)
            .context("no bulk request frame")?;
        let control = Arc::new(ArrayQueue::new(4096));
        let ports = (0..3).map(|_| MemPort::new()).collect();
        let mut worker = Worker::new(0, ports, &a.shared, control);
        let templates = Templates::new(args.states, 1 << 20);
        let (cpu_a, cpu_b) = (args.cpu_a, args.cpu_b);
        pin(cpu_b);
        // Warm up, then the worker alone (the control core idles on its CPU).
        worker_rate(&mut worker, &templates, 0, 0.5);
        let idle = worker_rate(&mut worker, &templates, 0, args.worker_secs);
        // The other CPU merely busy (arithmetic, no memory): what any busy neighbour costs
        // on this machine (vCPUs may share a physical core), apart from the bulk's reads.
        let spin_stop = AtomicBool::new(false);
        let busy_neighbour = std::thread::scope(|scope| {
            let spin_stop = &spin_stop;
            scope.spawn(move || spin_until(cpu_a, spin_stop));
            let rate = worker_rate(&mut worker, &templates, 0, args.worker_secs);
            spin_stop.store(true, Ordering::Relaxed);
            rate
        });
        let stop = AtomicBool::new(false);
        let sent = AtomicU64::new(0);
        let states_before = a.bulk_states_sent();
        let during = std::thread::scope(|scope| {
            let (tx, sink) = bounded::<Vec<u8>>(args.link_frames);
            let (_keep, rx) = unbounded::<Vec<u8>>();
            let link = args.link();
            let a = &mut a;
            let stop = &stop;
            let sent = &sent;
            let request = &request;
            scope.spawn(move || {
                pin(cpu_a);
                sent.store(
                    sender_loop(a, &rx, &tx, &link, stop, Some((request, &sink))),
                    Ordering::Relaxed,
                );
            });
            let rate = worker_rate(&mut worker, &templates, 0, args.worker_secs);
            stop.store(true, Ordering::Relaxed);
            rate
        });
        let frames_during = sent.load(Ordering::Relaxed);
        let states_during = a.bulk_states_sent() - states_before;
        let stats = worker.stats();
        if stats.total_drops() > 0 || stats.forwarded.get() == 0 {
            bail!(
                "the worker did not forward the benchmark's traffic: {} forwarded, {} dropped",
                stats.forwarded.get(),
                stats.total_drops()
            );
        }
        worker_figures = Some((idle, busy_neighbour, during, frames_during, states_during));
    }

    let states_per_sec = f64::from(args.states) / secs;
    if args.json {
        let mut v = json!({
            "states": args.states,
            "mtu": args.mtu,
            "link_gbps": args.link_gbps,
            "bulk_rate": args.bulk_rate,
            "runs": args.runs,
            "transfer_s_median": secs,
            "transfer_s": times,
            "states_per_s": states_per_sec,
            "frames": frames,
        });
        if let Some((idle, busy, during, f, n)) = worker_figures {
            v["worker_mpps_idle"] = json!(idle / 1e6);
            v["worker_mpps_busy_neighbour"] = json!(busy / 1e6);
            v["worker_ratio_to_busy_neighbour"] = json!(during / busy);
            v["worker_mpps_during_bulk"] = json!(during / 1e6);
            v["worker_ratio"] = json!(during / idle);
            v["bulk_frames_during"] = json!(f);
            v["bulk_states_during"] = json!(n);
            v["bulk_states_per_s_during"] = json!(n as f64 / args.worker_secs);
        }
        println!("{v}");
    } else {
        println!(
            "pfsync bulk: {} states, MTU {}, link {} Gbit/s, bulk_rate {}: median {:.3} s over {} runs ({:.0} states/s, {} frames)",
            args.states, args.mtu, args.link_gbps, args.bulk_rate, secs, args.runs, states_per_sec, frames
        );
        if let Some((idle, busy, during, f, n)) = worker_figures {
            println!(
                "worker: {:.2} Mpps with the control core idle, {:.2} Mpps beside a spinning control core, {:.2} Mpps while it sends bulks ({:.1} % of idle, {:.1} % of spinning; {} bulk frames with {} states meanwhile, {:.0} states/s)",
                idle / 1e6,
                busy / 1e6,
                during / 1e6,
                during / idle * 100.0,
                during / busy * 100.0,
                f,
                n,
                n as f64 / args.worker_secs
            );
        }
    }
    Ok(())
}
