//! `rampart check -c FILE [--json]`

use std::path::PathBuf;
use std::process::ExitCode;

use rampart_conf::{Config, Diagnostic, Severity};
use serde_json::json;

#[derive(clap::Args)]
pub struct Args {
    /// The appliance configuration file.
    #[arg(short = 'c', long = "config", value_name = "FILE")]
    config: PathBuf,
    /// Print the result as one JSON object on stdout.
    #[arg(long)]
    json: bool,
}

/// Counts an operator wants to see at a glance.
pub struct Summary {
    pub interfaces: usize,
    pub rules: usize,
    pub tables: usize,
    pub table_entries: usize,
    pub vips: usize,
    pub vhids: usize,
}

impl Summary {
    pub fn of(config: &Config) -> Summary {
        Summary {
            interfaces: config.interfaces.len(),
            rules: config.rules.len(),
            tables: config.tables.len(),
            table_entries: config.tables.iter().map(|t| t.entries.len()).sum(),
            vips: config.vips().count(),
            vhids: config.carp.len(),
        }
    }
}

fn plural(n: usize, one: &str, many: &str) -> String {
    format!("{n} {}", if n == 1 { one } else { many })
}

pub fn diagnostic_json(d: &Diagnostic) -> serde_json::Value {
    json!({
        "file": d.file.display().to_string(),
        "line": d.line,
        "column": d.column,
        "severity": match d.severity { Severity::Error => "error", Severity::Warning => "warning" },
        "message": d.message,
    })
}

pub fn run(args: Args) -> ExitCode {
    let result = rampart_conf::load(&args.config);
    let file = args.config.display().to_string();
    match result {
        Ok(loaded) => {
            let s = Summary::of(&loaded.config);
            if args.json {
                let out = json!({
                    "valid": true,
                    "file": file,
                    "summary": {
                        "interfaces": s.interfaces,
                        "rules": s.rules,
                        "tables": s.tables,
                        "table_entries": s.table_entries,
                        "vips": s.vips,
                        "vhids": s.vhids,
                    },
                    "errors": [],
                    "warnings": loaded.warnings.iter().map(diagnostic_json).collect::<Vec<_>>(),
                });
                println!("{out}");
            } else {
                for w in &loaded.warnings {
                    eprintln!("{w}");
                }
                println!(
                    "{file}: OK: {}, {}, {} ({}), {} ({})",
                    plural(s.interfaces, "interface", "interfaces"),
                    plural(s.rules, "rule", "rules"),
                    plural(s.tables, "table", "tables"),
                    plural(s.table_entries, "entry", "entries"),
                    plural(s.vips, "VIP", "VIPs"),
                    plural(s.vhids, "vhid", "vhids"),
                );
            }
            ExitCode::SUCCESS
        }
        Err(diags) => {
            if args.json {
                let (errors, warnings): (Vec<_>, Vec<_>) =
                    diags.iter().partition(|d| d.severity == Severity::Error);
                let out = json!({
                    "valid": false,
                    "file": file,
                    "summary": null,
                    "errors": errors.into_iter().map(diagnostic_json).collect::<Vec<_>>(),
                    "warnings": warnings.into_iter().map(diagnostic_json).collect::<Vec<_>>(),
                });
                println!("{out}");
            } else {
                // Exactly one `FILE:LINE:COL: message` line per diagnostic, for editors and scripts.
                for d in &diags {
                    eprintln!("{d}");
                }
            }
            ExitCode::FAILURE
        }
    }
}
