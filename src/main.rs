//! `rampart`: the appliance's command line. CLI glue only; the work lives in the crates.

use std::process::ExitCode;

use clap::{Parser, Subcommand};

mod check;
mod replay;
mod trace;

#[derive(Parser)]
#[command(
    name = "rampart",
    version,
    about = "A DPDK-backed, pf-compatible stateful firewall with CARP and pfsync"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Validate a configuration without touching a running system (like `pfctl -nf`).
    Check(check::Args),
    /// Evaluate one packet against the policy and show which rules decided it.
    Trace(trace::Args),
    /// Run the worker pipeline over captured traffic, offline, and write what it sends.
    Replay(replay::Args),
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    match cli.command {
        Command::Check(args) => check::run(args),
        Command::Trace(args) => trace::run(args),
        Command::Replay(args) => replay::run(args),
    }
}
