//! `rampart-bench`: benchmark scenarios for rampart.
//!
//! - `forward`: the worker on DPDK ports (`net_ring0` in, `net_null0` out) fed by a
//!   generator on the other lcore; see `forward.rs` and `bench/forwarding.sh`.
//! - `cross-core`: the cache-line round trip between the generator's and the forwarder's
//!   CPUs, recorded beside each `forward` run (see `cross_core.rs`).
//! - `pfsync-bulk`: a pfsync bulk update between two control planes, and a worker's
//!   throughput meanwhile (see `pfsync_bulk.rs`).
//! - `lookup-memory`: the state table's memory access pattern alone (see
//!   `lookup_memory.rs`).
//! - `workers`: two in-memory workers on one state table against one (see `workers.rs`).

mod cross_core;
mod forward;
mod lookup_memory;
mod pfsync_bulk;
mod workers;

use std::process::ExitCode;

use clap::{Parser, Subcommand};

#[derive(Parser)]
#[command(
    name = "rampart-bench",
    version,
    about = "rampart's benchmark scenarios"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Forward established TCP traffic through one worker on DPDK vdevs and measure it.
    Forward(forward::Args),
    /// Measure the cache-line round trip between two CPUs.
    CrossCore(cross_core::Args),
    /// Time a pfsync bulk update of N states between two control planes, and a worker's
    /// throughput while its node sends bulks.
    PfsyncBulk(pfsync_bulk::Args),
    /// Time the state table's two dependent random accesses per lookup (index, then
    /// state), batched as a worker batches them, beside a one-access layout.
    LookupMemory(lookup_memory::Args),
    /// Two in-memory workers forwarding from one state table, against one worker alone.
    Workers(workers::Args),
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Forward(args) => forward::run(args),
        Command::CrossCore(args) => cross_core::run(args),
        Command::PfsyncBulk(args) => pfsync_bulk::run(args),
        Command::LookupMemory(args) => lookup_memory::run(args),
        Command::Workers(args) => workers::run(args),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("rampart-bench: {e:#}");
            ExitCode::FAILURE
        }
    }
}
