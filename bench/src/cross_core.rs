//! `rampart-bench cross-core`: the round trip of one cache line bouncing between the
//! generator's lcore and the forwarder's.
//!
//! Every frame in `forward` crosses cores: the generator writes the mbuf and the frame on
//! CPU 0, the forwarder reads them on CPU 1 and frees the mbuf, which the generator then
//! reuses. On this VM that cost is not a constant: the hypervisor places the two vCPUs near
//! each other or far apart, and cross-core throughput follows (testpmd split over the two
//! CPUs moved about 70 Mpps in one placement and about 20 in the other). `forward` records
//! the round trip before each run, and this subcommand measures it alone (beside testpmd
//! runs), so every figure says which machine it had.
//!
//! The two threads are EAL lcores, pinned by EAL: the same pinning as `forward`.

use std::sync::atomic::AtomicU64;
use std::sync::Arc;

use anyhow::{bail, ensure, Context, Result};
use rampart_bench::inmem::{median, ping, pong, BouncingLine};
use rampart_dataplane::io::dpdk::{missing_prerequisites, Eal};
use serde_json::json;

#[derive(clap::Args)]
pub struct Args {
    /// Round trips per sample.
    #[arg(long, default_value_t = ROUND_TRIPS)]
    round_trips: u64,
    /// Samples; the median is reported.
    #[arg(long, default_value_t = SAMPLES)]
    samples: usize,
    /// Print one line of JSON.
    #[arg(long)]
    json: bool,
}

/// About 40 ms per sample in the far placement.
pub const ROUND_TRIPS: u64 = 100_000;
pub const SAMPLES: usize = 5;

/// Median ns per round trip between the calling lcore and `peer` (an idle worker lcore).
pub fn measure(eal: &Eal, peer: u32, round_trips: u64, samples: usize) -> Result<f64> {
    ensure!(round_trips > 0 && samples > 0, "nothing to measure");
    let mut results = Vec::with_capacity(samples);
    for _ in 0..samples {
        let line = Arc::new(BouncingLine(AtomicU64::new(0)));
        {
            let line = line.clone();
            eal.launch(peer, move || {
                pong(&line, round_trips);
                0
            })
            .context("starting the ping-pong peer")?;
        }
        let ns = ping(&line, round_trips);
        ensure!(eal.wait(peer) == 0, "the ping-pong peer failed");
        results.push(ns);
    }
    Ok(median(&mut results))
}

pub fn run(args: Args) -> Result<()> {
    if let Some(why) = missing_prerequisites() {
        bail!("DPDK cannot start here: {why}");
    }
    let eal_args: Vec<String> = [
        "-l",
        "0,1",
        "--main-lcore",
        "0",
        "--no-pci",
        "--in-memory",
        "--no-telemetry",
    ]
    .iter()
    .map(|a| a.to_string())
    .collect();
    let eal = Eal::init(&eal_args).context("starting DPDK")?;
    let peer = *eal.worker_lcores().first().context("no worker lcore")?;
    let ns = measure(&eal, peer, args.round_trips, args.samples)?;
    if args.json {
        println!(
            "{}",
            json!({ "scenario": "cross-core", "lcores": [eal.main_lcore(), peer], "round_trip_ns": ns })
        );
    } else {
        println!(
            "cross-core: lcore {} <-> lcore {peer}: {ns:.1} ns per cache-line round trip (median of {} samples of {})",
            eal.main_lcore(),
            args.samples,
            args.round_trips
        );
    }
    Ok(())
}
