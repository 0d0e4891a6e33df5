//! `rampart ctl -s SOCKET info|states|rules|carp|pfsync [--json]`: pfctl's and ifconfig's
//! views of a running appliance.

use std::path::PathBuf;
use std::process::ExitCode;

use rampart_dataplane::worker::DropReason;
use serde_json::Value;

#[derive(Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
enum What {
    /// State table totals, drop counters and per-port counters (pfctl -s info).
    Info,
    /// The state table (pfctl -vs states).
    States,
    /// The rules with their counters (pfctl -vs rules).
    Rules,
    /// CARP groups as OpenBSD's ifconfig shows them; `carp demote N` / `carp promote`.
    Carp,
    /// pfsync: sync interface, peer, maxupd, defer, bulk status, packets and states sent and
    /// received, errors by reason (ifconfig pfsync0 + netstat -s -p pfsync).
    Pfsync,
}

#[derive(clap::Args)]
pub struct Args {
    /// The management socket (`[control] socket` in the configuration).
    #[arg(short = 's', long = "socket", value_name = "SOCKET")]
    socket: PathBuf,
    #[arg(value_enum)]
    what: What,
    /// For `carp`: `demote N` (operator demotion, like carpdemote) or `promote`.
    #[arg(value_name = "ARGS")]
    args: Vec<String>,
    /// Print the reply as JSON.
    #[arg(long)]
    json: bool,
}

pub fn run(args: Args) -> ExitCode {
    let mut command = match args.what {
        What::Info => "info",
        What::States => "states",
        What::Rules => "rules",
        What::Carp => "carp",
        What::Pfsync => "pfsync",
    }
    .to_string();
    if !args.args.is_empty() {
        if args.what != What::Carp {
            eprintln!("rampart ctl: `{command}` takes no arguments");
            return ExitCode::from(2);
        }
        command = format!("{command} {}", args.args.join(" "));
    }
    let reply = match rampart_control::ctl::request(&args.socket, &command) {
        Ok(v) => v,
        Err(e) => {
            let hint = match e.kind() {
                std::io::ErrorKind::NotFound | std::io::ErrorKind::ConnectionRefused => {
                    " (is `rampart run` running, with [control] socket set to this path?)"
                }
                std::io::ErrorKind::PermissionDenied => {
                    " (check the socket's owner and mode: ls -l)"
                }
                _ => "",
            };
            eprintln!("rampart ctl: {}: {e}{hint}", args.socket.display());
            return ExitCode::FAILURE;
        }
    };
    if let Some(err) = reply.get("error").and_then(Value::as_str) {
        eprintln!("rampart ctl: {err}");
        return ExitCode::FAILURE;
    }
    if args.json {
        println!("{reply}");
        return ExitCode::SUCCESS;
    }
    match args.what {
        What::Info => print_info(&reply),
        What::States => print_states(&reply),
        What::Rules => print_rules(&reply),
        What::Carp => print_carp(&reply),
        What::Pfsync => print_pfsync(&reply),
    }
    ExitCode::SUCCESS
}

fn n(v: &Value) -> u64 {
    v.as_u64().unwrap_or(0)
}

fn duration(secs: u64) -> String {
    format!(
        "{} days {:02}:{:02}:{:02}",
        secs / 86400,
        secs / 3600 % 24,
        secs / 60 % 60,
        secs % 60
    )
}

fn hms(secs: u64) -> String {
    format!("{:02}:{:02}:{:02}", secs / 3600, secs / 60 % 60, secs % 60)
}

pub fn print_info(v: &Value) {
    let s = &v["status"];
    println!(
        "{:<44}{:>15}",
        format!("Status: Enabled for {}", duration(n(&s["uptime_s"]))),
        format!("Workers: {}", n(&s["workers"]))
    );
    println!();
    println!("Hostid:   {}", s["host_id"].as_str().unwrap_or("?"));
    println!("Name:     {}", s["name"].as_str().unwrap_or("?"));
    println!();
    let st = &v["state_table"];
    println!("{:<34}{:>14}", "State Table", "Total");
    for (label, key) in [
        ("current entries", "current"),
        ("searches", "searches"),
        ("inserts", "inserts"),
        ("removals", "removals"),
        ("refused (limit)", "refused"),
    ] {
        println!("  {:<25} {:>14}", label, n(&st[key]));
    }
    println!("  {:<25} {:>14}", "limit", n(&st["limit"]));
    println!("Counters");
    // In pf's order (match, bad-offset, fragment, short, …, then rampart's own), not the
    // JSON object's.
    let c = &v["counters"];
    for reason in DropReason::ALL {
        println!("  {:<25} {:>14}", reason.name(), n(&c[reason.name()]));
    }
    println!("Packets");
    if let Some(c) = v["packets"].as_object() {
        for (k, val) in c {
            println!("  {:<25} {:>14}", k.replace('_', " "), n(val));
        }
    }
    println!();
    println!(
        "{:<10} {:>12} {:>14} {:>12} {:>14} {:>10} {:>10}",
        "Interface", "rx packets", "rx bytes", "tx packets", "tx bytes", "tx drops", "missed"
    );
    for p in v["ports"].as_array().into_iter().flatten() {
        println!(
            "{:<10} {:>12} {:>14} {:>12} {:>14} {:>10} {:>10}",
            p["name"].as_str().unwrap_or("?"),
            n(&p["rx_packets"]),
            n(&p["rx_bytes"]),
            n(&p["tx_packets"]),
            n(&p["tx_bytes"]),
            n(&p["tx_dropped"]),
            p.get("missed")
                .map_or("-".to_string(), |m| n(m).to_string()),
        );
    }
    let pollers = v["pollers"].as_array().into_iter().flatten();
    let mut header = false;
    for w in pollers {
        if !header {
            println!();
            println!(
                "{:<10} {:>6} {:>14} {:>14} {:>6} {:>14} {:>12} {:>12} {:>10}",
                "Worker",
                "lcore",
                "polls",
                "busy polls",
                "busy",
                "frames",
                "frames/busy",
                "full bursts",
                "napped"
            );
            header = true;
        }
        let polls = n(&w["polls"]);
        let busy = n(&w["busy_polls"]);
        println!(
            "{:<10} {:>6} {:>14} {:>14} {:>5.1}% {:>14} {:>12.1} {:>12} {:>8.1} s",
            n(&w["worker"]),
            w["lcore"]
                .as_u64()
                .map_or("-".to_string(), |l| l.to_string()),
            polls,
            busy,
            if polls == 0 {
                0.0
            } else {
                busy as f64 * 100.0 / polls as f64
            },
            n(&w["frames"]),
            w["frames_per_busy_poll"].as_f64().unwrap_or(0.0),
            n(&w["full_bursts"]),
            n(&w["nap_ms"]) as f64 / 1000.0,
        );
    }
}

fn print_states(v: &Value) {
    for s in v["states"].as_array().into_iter().flatten() {
        let (a, arrow, b) = if s["direction"] == "out" {
            (&s["src"], "->", &s["dst"])
        } else {
            (&s["dst"], "<-", &s["src"])
        };
        println!(
            "{} {} {} {} {}       {}",
            s["iface"].as_str().unwrap_or("all"),
            s["proto"].as_str().unwrap_or("?"),
            a.as_str().unwrap_or("?"),
            arrow,
            b.as_str().unwrap_or("?"),
            s["state"].as_str().unwrap_or("?"),
        );
        let p = &s["packets"];
        let b = &s["bytes"];
        println!(
            "   age {}, expires in {}, {}:{} pkts, {}:{} bytes{}",
            hms(n(&s["age_s"])),
            hms(n(&s["expires_in_s"])),
            n(&p[0]),
            n(&p[1]),
            n(&b[0]),
            n(&b[1]),
            s["rule"]
                .as_u64()
                .map(|r| format!(", rule {r}"))
                .unwrap_or_default(),
        );
        println!(
            "   id: {} creatorid: {}{}",
            s["id"].as_str().unwrap_or("?"),
            s["creator"].as_str().unwrap_or("?"),
            if s["synced"] == true {
                " (from the pfsync peer)"
            } else {
                ""
            }
        );
    }
    if n(&v["total"]) > n(&v["shown"]) {
        println!("({} of {} states shown)", n(&v["shown"]), n(&v["total"]));
    }
}

fn print_rules(v: &Value) {
    for r in v["rules"].as_array().into_iter().flatten() {
        println!("@{} {}", n(&r["rule"]), r["text"].as_str().unwrap_or("?"));
        println!(
            "  [ Evaluations: {:<8} Packets: {:<8} Bytes: {:<10} States: {:<6} ]",
            n(&r["evaluations"]),
            n(&r["packets"]),
            n(&r["bytes"]),
            n(&r["states"])
        );
    }
    println!(
        "(no rule matched: default {})",
        v["default"].as_str().unwrap_or("?")
    );
}

fn print_carp(v: &Value) {
    for g in v["groups"].as_array().into_iter().flatten() {
        println!(
            "carp: {} carpdev {} vhid {} advbase {} advskew {}",
            g["state"].as_str().unwrap_or("?"),
            g["carpdev"].as_str().unwrap_or("?"),
            n(&g["vhid"]),
            n(&g["advbase"]),
            n(&g["advskew"]),
        );
        let addrs: Vec<&str> = g["addresses"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(Value::as_str)
            .collect();
        println!(
            "      lladdr {} inet {}",
            g["mac"].as_str().unwrap_or("?"),
            addrs.join(" ")
        );
        println!(
            "      since {:.1} s: {}",
            g["since_s"].as_f64().unwrap_or(0.0),
            g["reason"].as_str().unwrap_or("?")
        );
        if let Some(h) = g["last_heard"].as_object() {
            println!(
                "      last advert {:.1} s ago from {} (advbase {} advskew {} demote {})",
                h["ago_s"].as_f64().unwrap_or(0.0),
                h["from"].as_str().unwrap_or("?"),
                n(&h["advbase"]),
                n(&h["advskew"]),
                n(&h["demote"])
            );
        }
        let c = &g["counters"];
        println!(
            "      sent {} accepted {} bad-hmac {} own-loop {} became-master {}",
            n(&c["sent"]),
            n(&c["accepted"]),
            n(&c["bad_hmac"]),
            n(&c["own_loop"]),
            n(&c["became_master"])
        );
    }
    println!("demotion: {}", n(&v["demotion"]));
    if let Some(c) = v["counters"].as_object() {
        let parts: Vec<String> = c.iter().map(|(k, val)| format!("{k} {}", n(val))).collect();
        println!("counters: {}", parts.join(", "));
    }
}

fn print_pfsync(v: &Value) {
    let text = |k: &str| v[k].as_str().unwrap_or("?").to_string();
    println!(
        "pfsync: syncdev {} syncpeer {} maxupd {} defer {} mtu {}",
        text("interface"),
        text("peer"),
        n(&v["maxupd"]),
        if v["defer"] == true { "on" } else { "off" },
        n(&v["mtu"]),
    );
    println!(
        "        source {} creatorid {}{}",
        text("source"),
        text("creator"),
        if v["authenticated"] == true {
            ", authenticated (HMAC-SHA1 trailer)"
        } else {
            ""
        }
    );
    let b = &v["bulk"];
    let sending = b["sending"]
        .as_object()
        .map(|s| format!(", sending {} of {} states", n(&s["sent"]), n(&s["total"])))
        .unwrap_or_default();
    println!(
        "bulk update: {} (tries {}, received {}, sent {} with {} states, timeouts {}){}",
        b["status"].as_str().unwrap_or("?"),
        n(&b["tries"]),
        n(&b["received"]),
        n(&b["sent"]),
        n(&b["states_sent"]),
        n(&b["timeouts"]),
        sending
    );
    println!(
        "packets: {} sent ({} bytes), {} received; states: {} sent, {} received; {} known, {} queued",
        n(&v["packets_sent"]),
        n(&v["bytes_sent"]),
        n(&v["packets_received"]),
        n(&v["states_sent"]),
        n(&v["states_received"]),
        n(&v["known_states"]),
        n(&v["queued"]),
    );
    if n(&v["merged_states"]) > 0 {
        println!(
            "merged: {} of the peer's states were its second state of a connection (pf keeps one per filter point)",
            n(&v["merged_states"])
        );
    }
    if v["split_states"] == true {
        println!("split states: forwarded connections are sent as pf's two states");
    } else if n(&v["pf_states_received"]) > 0 {
        println!(
            "warning: the peer sent {} states the way pf does (an OpenBSD peer?); set [pfsync] split_states = true so that it gets both states of each forwarded connection",
            n(&v["pf_states_received"])
        );
    }
    for (what, key) in [("sent", "sent"), ("received", "received")] {
        if let Some(m) = v[key].as_object() {
            let parts: Vec<String> = m.iter().map(|(k, val)| format!("{k} {}", n(val))).collect();
            println!("messages {what}: {}", parts.join(", "));
        }
    }
    if let Some(e) = v["errors"].as_object() {
        let parts: Vec<String> = e
            .iter()
            .filter(|(_, val)| n(val) > 0)
            .map(|(k, val)| format!("{k} {}", n(val)))
            .collect();
        if parts.is_empty() {
            println!("errors: none");
        } else {
            println!("errors: {}", parts.join(", "));
        }
    }
}
