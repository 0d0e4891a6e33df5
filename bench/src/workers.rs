//! `rampart-bench workers`: do workers scale over the shared, lock-sharded state table?
//!
//! The in-memory worker (the loop `rampart run` drives, with the frame copy a NIC's DMA
//! would do) forwards established connections from one state table, measured three ways on
//! the machine's CPUs:
//!
//! 1. one worker, the other CPU idle;
//! 2. one worker, the other CPU busy with arithmetic that touches no memory: what a busy
//!    neighbour costs on this machine whatever it does (two vCPUs may be the two
//!    hyperthreads of one core);
//! 3. two workers, one per CPU, on the same table, each with its own half of the
//!    connections (what RSS gives them: a connection's packets all reach one worker);
//! 4. the same, but both workers forward all the connections (no RSS: any packet can reach
//!    any worker), from opposite ends of the same random order.
//!
//! Two workers' sum against twice (2) is what sharing the table costs; (2) against (1) is
//! what the machine costs. In (3) the workers share only the shards' locks; in (4) they
//! also write the same states.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Instant;

use anyhow::{bail, Context, Result};
use crossbeam::queue::ArrayQueue;
use rampart_dataplane::io::mem::MemPort;
use rampart_dataplane::state::StateTableConfig;
use rampart_dataplane::worker::{Shared, Worker};
use serde_json::json;

use rampart_bench::flows::{self, Templates, Topology};
use rampart_bench::inmem::{median, pin, round_trip_ns, spin_until, worker_rate};

#[derive(clap::Args)]
pub struct Args {
    /// Established connections in the table (`[limits] states` is this + 10 %).
    #[arg(long, default_value_t = 1_000_000)]
    states: u32,
    /// State table shards (`rampart run` uses 256).
    #[arg(long, default_value_t = 256)]
    shards: usize,
    /// Seconds of each measurement.
    #[arg(long, default_value_t = 3.0)]
    secs: f64,
    /// Rounds of the three measurements (medians are reported).
    #[arg(long, default_value_t = 3)]
    runs: usize,
    /// The two CPUs.
    #[arg(long, default_value_t = 0)]
    cpu_a: usize,
    #[arg(long, default_value_t = 1)]
    cpu_b: usize,
    /// Print one JSON object.
    #[arg(long)]
    json: bool,
}

/// A worker of its own over in-memory ports, on the shared tables.
fn worker(id: u16, shared: &Shared) -> Worker<MemPort> {
    let control = Arc::new(ArrayQueue::new(1024));
    Worker::new(id, vec![MemPort::new(), MemPort::new()], shared, control)
}

pub fn run(args: Args) -> Result<()> {
    let cpus = std::thread::available_parallelism().map_or(1, |n| n.get());
    if args.cpu_a == args.cpu_b || args.cpu_a >= cpus || args.cpu_b >= cpus {
        bail!("--cpu-a and --cpu-b must be two different CPUs of the {cpus} here");
    }
    if args.runs == 0 || args.states < 2 {
        bail!("--runs must be positive and --states at least 2 (each worker gets half)");
    }
    let topology = Topology {
        lan_device: "net_null0",
        wan_device: "net_null1",
        control_lcore: 0,
        worker_lcore: 1,
        eal_args: &[],
        mbufs: 16383,
        mbuf_cache: 256,
    };
    let limit = args.states + args.states / 10;
    let config = flows::load_config(&flows::config_text(&topology, flows::FILLER_RULES, limit))?;
    let macs = [flows::LAN_MAC, flows::WAN_MAC].map(|m| m.parse().expect("a MAC"));
    let shared = Shared::from_config(
        &config,
        &macs,
        StateTableConfig::from_config(&config, args.shards, 1, 1),
    );
    let filled = Instant::now();
    flows::fill(&shared.states, args.states).context("filling the state table")?;
    eprintln!(
        "workers: {} states in {} shards ({:.1} s to fill)",
        shared.states.len(),
        args.shards,
        filled.elapsed().as_secs_f64()
    );
    let flows = args.states.min(1 << 20);
    let templates = Templates::new(args.states, flows);
    let half = templates.len() / 2;
    let own = [
        Templates::among(0..args.states / 2, flows / 2),
        Templates::among(args.states / 2..args.states, flows / 2),
    ];
    let (mut a, mut b) = (worker(0, &shared), worker(1, &shared));

    let mut alone = Vec::new();
    let mut neighbour = Vec::new();
    let mut pair_own = Vec::new();
    let mut pair_shared = Vec::new();
    let mut round_trips = Vec::new();
    let two = |a: &mut Worker<MemPort>,
               b: &mut Worker<MemPort>,
               ta: &Templates,
               tb: &Templates,
               first_b: usize| {
        std::thread::scope(|s| {
            let other = s.spawn(|| {
                pin(args.cpu_b);
                worker_rate(b, tb, first_b, args.secs)
            });
            let ra = worker_rate(a, ta, 0, args.secs);
            ra + other.join().expect("the second worker")
        })
    };
    for run in 1..=args.runs {
        round_trips.push(round_trip_ns(args.cpu_a, args.cpu_b));
        worker_rate(&mut a, &templates, 0, 0.3);
        alone.push(worker_rate(&mut a, &templates, 0, args.secs));
        let stop = AtomicBool::new(false);
        neighbour.push(std::thread::scope(|s| {
            s.spawn(|| spin_until(args.cpu_b, &stop));
            let rate = worker_rate(&mut a, &templates, 0, args.secs);
            stop.store(true, Ordering::Relaxed);
            rate
        }));
        pair_own.push(two(&mut a, &mut b, &own[0], &own[1], 0));
        pair_shared.push(two(&mut a, &mut b, &templates, &templates, half));
        eprintln!(
            "workers: run {run}: CPUs {:.0} ns apart; alone {:.2} Mpps, beside a busy CPU {:.2}, two with their own connections {:.2}, two with all of them {:.2}",
            round_trips[run - 1],
            alone[run - 1] / 1e6,
            neighbour[run - 1] / 1e6,
            pair_own[run - 1] / 1e6,
            pair_shared[run - 1] / 1e6,
        );
    }
    for (name, w) in [("first", &a), ("second", &b)] {
        let stats = w.stats();
        if stats.total_drops() > 0 || stats.forwarded.get() == 0 {
            bail!(
                "the {name} worker did not forward the benchmark's traffic: {} forwarded, {} dropped",
                stats.forwarded.get(),
                stats.total_drops()
            );
        }
    }
    let own_runs: Vec<f64> = pair_own.iter().map(|x| x / 1e6).collect();
    let shared_runs: Vec<f64> = pair_shared.iter().map(|x| x / 1e6).collect();
    let (alone, neighbour) = (median(&mut alone), median(&mut neighbour));
    let (own, all) = (median(&mut pair_own), median(&mut pair_shared));
    if args.json {
        println!(
            "{}",
            json!({
                "scenario": "workers",
                "states": args.states,
                "shards": args.shards,
                "runs": args.runs,
                "secs": args.secs,
                "one_worker_mpps": alone / 1e6,
                "one_worker_busy_neighbour_mpps": neighbour / 1e6,
                "two_workers_own_connections_mpps": own / 1e6,
                "two_workers_own_connections_runs_mpps": own_runs,
                "two_workers_all_connections_mpps": all / 1e6,
                "two_workers_all_connections_runs_mpps": shared_runs,
                "round_trip_ns_runs": round_trips,
            })
        );
    } else {
        let line = |what: &str, rate: f64| {
            println!(
                "  {what:<42} {:6.2} Mpps ({:.2}x one worker; {:.1} % below twice the busy-neighbour figure)",
                rate / 1e6,
                rate / alone,
                100.0 * (1.0 - rate / (2.0 * neighbour))
            );
        };
        println!(
            "{} states, {} shards, medians of {} runs of {} s (cache-line round trip between the CPUs: {}):",
            args.states,
            args.shards,
            args.runs,
            args.secs,
            round_trips
                .iter()
                .map(|ns| format!("{ns:.0} ns"))
                .collect::<Vec<_>>()
                .join(", ")
        );
        println!(
            "  {:<42} {:6.2} Mpps ({:.1} ns/packet)",
            "one worker:",
            alone / 1e6,
            1e9 / alone
        );
        println!(
            "  {:<42} {:6.2} Mpps ({:.1} ns/packet)",
            "one worker beside a busy CPU:",
            neighbour / 1e6,
            1e9 / neighbour
        );
        line("two workers, each its own connections:", own);
        line("two workers, both all connections:", all);
    }
    Ok(())
}
