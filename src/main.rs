//! `rampart`: the appliance's command line. CLI glue only; the work lives in the crates.

use std::process::ExitCode;

use clap::{Parser, Subcommand};

mod check;
mod ctl;
mod replay;
mod run;
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
    /// Run the appliance on DPDK ports until SIGINT or SIGTERM.
    Run(run::Args),
    /// Ask a running appliance for its counters, states or rules.
    Ctl(ctl::Args),
}

fn main() -> ExitCode {
    // Behave like a Unix tool when piped into `head`: die quietly on a closed pipe.
    // SAFETY: restoring the default disposition of SIGPIPE before any thread starts.
    unsafe {
        libc::signal(libc::SIGPIPE, libc::SIG_DFL);
    }
    let cli = Cli::parse();
    match cli.command {
        Command::Check(args) => check::run(args),
        Command::Trace(args) => trace::run(args),
        Command::Replay(args) => replay::run(args),
        Command::Run(args) => run::run(args),
        Command::Ctl(args) => ctl::run(args),
    }
}
