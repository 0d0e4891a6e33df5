//! `rampart trace -c FILE --on IFACE --dir in|out PROTO SRC[:PORT] DST[:PORT] [--flags S]`
//!
//! Evaluates one packet against the compiled policy — the same code the workers run — with
//! no dataplane, and shows the verdict, the deciding rule and every rule matched on the way.

use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;
use std::process::ExitCode;
use std::str::FromStr;

use rampart_conf::{proto, tcp_flags, Action, Config, Direction, Rule};
use rampart_dataplane::filter::{CompiledPolicy, PacketMeta, Trace};
use serde_json::json;

#[derive(Clone, Copy, clap::ValueEnum)]
enum Dir {
    In,
    Out,
}

#[derive(clap::Args)]
pub struct Args {
    /// The appliance configuration file.
    #[arg(short = 'c', long = "config", value_name = "FILE")]
    config: PathBuf,
    /// The interface the packet is on.
    #[arg(long, value_name = "IFACE")]
    on: String,
    /// The packet's direction on that interface.
    #[arg(long, value_enum)]
    dir: Dir,
    /// tcp, udp, icmp, icmp6 or a protocol number.
    #[arg(value_name = "PROTO")]
    proto: String,
    /// Source address, with :PORT for tcp/udp (IPv6: [2001:db8::1]:443).
    #[arg(value_name = "SRC[:PORT]")]
    src: String,
    /// Destination address, with :PORT for tcp/udp.
    #[arg(value_name = "DST[:PORT]")]
    dst: String,
    /// TCP flags set on the packet, in pf's letters (FSRPAUEW); default S, a connection's first packet.
    #[arg(long, value_name = "FLAGS")]
    flags: Option<String>,
    /// Print one JSON object on stdout.
    #[arg(long)]
    json: bool,
}

fn fail(msg: String) -> ExitCode {
    eprintln!("rampart trace: {msg}");
    ExitCode::from(2)
}

fn parse_proto(s: &str) -> Result<u8, String> {
    match s {
        "tcp" => Ok(proto::TCP),
        "udp" => Ok(proto::UDP),
        "icmp" => Ok(proto::ICMP),
        "icmp6" | "ipv6-icmp" => Ok(proto::ICMP6),
        _ => s.parse::<u8>().map_err(|_| {
            format!("unknown protocol `{s}`: use tcp, udp, icmp, icmp6 or a number 0-255")
        }),
    }
}

/// `ADDR`, `ADDR:PORT`, `[V6]:PORT` or a bare IPv6 address.
fn parse_endpoint(s: &str) -> Result<(IpAddr, Option<u16>), String> {
    if let Ok(sa) = SocketAddr::from_str(s) {
        return Ok((sa.ip(), Some(sa.port())));
    }
    let bare = s
        .strip_prefix('[')
        .and_then(|r| r.strip_suffix(']'))
        .unwrap_or(s);
    IpAddr::from_str(bare).map(|a| (a, None)).map_err(|_| {
        format!(
            "invalid endpoint `{s}`: use 192.0.2.1, 192.0.2.1:80, 2001:db8::1 or [2001:db8::1]:443"
        )
    })
}

fn parse_packet_flags(s: &str) -> Result<u8, String> {
    let mut bits = 0;
    for c in s.chars() {
        match tcp_flags::LETTERS
            .iter()
            .find(|(l, _)| *l == c.to_ascii_uppercase())
        {
            Some((_, b)) => bits |= b,
            None => return Err(format!("unknown TCP flag `{c}`: flags are F S R P A U E W")),
        }
    }
    Ok(bits)
}

pub fn run(args: Args) -> ExitCode {
    let config = match rampart_conf::load(&args.config) {
        Ok(l) => l.config,
        Err(diags) => {
            for d in &diags {
                eprintln!("{d}");
            }
            return ExitCode::FAILURE;
        }
    };
    let Some(iface) = config.interface_index(&args.on) else {
        let names: Vec<&str> = config.interfaces.iter().map(|i| i.name.as_str()).collect();
        return fail(format!(
            "unknown interface `{}`; interfaces are: {}",
            args.on,
            names.join(", ")
        ));
    };
    let protocol = match parse_proto(&args.proto) {
        Ok(p) => p,
        Err(e) => return fail(e),
    };
    let (src, sport) = match parse_endpoint(&args.src) {
        Ok(v) => v,
        Err(e) => return fail(e),
    };
    let (dst, dport) = match parse_endpoint(&args.dst) {
        Ok(v) => v,
        Err(e) => return fail(e),
    };
    if src.is_ipv4() != dst.is_ipv4() {
        return fail(format!("{src} and {dst} are of different address families"));
    }
    let has_ports = protocol == proto::TCP || protocol == proto::UDP;
    let (sport, dport) = match (has_ports, sport, dport) {
        (true, Some(s), Some(d)) => (s, d),
        (true, _, _) => return fail(format!("{} needs ports: SRC:PORT DST:PORT", args.proto)),
        (false, None, None) => (0, 0),
        (false, _, _) => return fail(format!("{} has no ports; give addresses only", args.proto)),
    };
    let tcp_flags = match (&args.flags, protocol == proto::TCP) {
        (Some(f), true) => match parse_packet_flags(f) {
            Ok(b) => b,
            Err(e) => return fail(e),
        },
        (Some(_), false) => return fail("--flags applies to tcp only".to_string()),
        (None, true) => tcp_flags::SYN,
        (None, false) => 0,
    };
    let dir = match args.dir {
        Dir::In => Direction::In,
        Dir::Out => Direction::Out,
    };
    let pkt = PacketMeta {
        iface: iface as u16,
        dir,
        src,
        dst,
        proto: protocol,
        sport,
        dport,
        tcp_flags,
    };
    let policy = CompiledPolicy::compile(&config);
    let trace = policy.trace(&pkt);
    if args.json {
        println!("{}", trace_json(&config, &args, &pkt, &trace));
    } else {
        print_trace(&config, &pkt, &trace);
    }
    ExitCode::SUCCESS
}

fn rule_at(config: &Config, index: u32) -> &Rule {
    &config.rules[index as usize]
}

fn rule_json(config: &Config, index: u32) -> serde_json::Value {
    let r = rule_at(config, index);
    json!({
        "rule": index + 1,
        "file": r.origin.file.display().to_string(),
        "line": r.origin.line,
        "label": r.label,
        "text": r.to_pf_string(config),
    })
}

fn trace_json(config: &Config, args: &Args, pkt: &PacketMeta, trace: &Trace) -> serde_json::Value {
    let v = &trace.verdict;
    let decided = v.rule.map(|i| rule_at(config, i));
    json!({
        "action": v.action.as_str(),
        "rule": v.rule.map(|i| i + 1),
        "quick": v.quick,
        "keep_state": v.keep_state,
        "log": v.log,
        "return": v.return_,
        "label": decided.and_then(|r| r.label.clone()),
        "file": decided.map(|r| r.origin.file.display().to_string()),
        "line": decided.map(|r| r.origin.line),
        "default": v.rule.is_none(),
        "matched": trace.matched.iter().map(|i| i + 1).collect::<Vec<_>>(),
        "rules": trace.matched.iter().map(|i| rule_json(config, *i)).collect::<Vec<_>>(),
        "packet": {
            "on": args.on,
            "dir": pkt.dir.as_str(),
            "af": if pkt.src.is_ipv4() { "inet" } else { "inet6" },
            "proto": pkt.proto,
            "src": pkt.src.to_string(),
            "dst": pkt.dst.to_string(),
            "src_port": (pkt.proto == proto::TCP || pkt.proto == proto::UDP).then_some(pkt.sport),
            "dst_port": (pkt.proto == proto::TCP || pkt.proto == proto::UDP).then_some(pkt.dport),
            "flags": (pkt.proto == proto::TCP).then(|| tcp_flags::letters(pkt.tcp_flags)),
        },
    })
}

fn endpoint(addr: IpAddr, port: u16, with_port: bool) -> String {
    match (addr, with_port) {
        (IpAddr::V6(a), true) => format!("[{a}]:{port}"),
        (a, true) => format!("{a}:{port}"),
        (a, false) => a.to_string(),
    }
}

fn print_trace(config: &Config, pkt: &PacketMeta, trace: &Trace) {
    let v = &trace.verdict;
    let ports = pkt.proto == proto::TCP || pkt.proto == proto::UDP;
    let pname = proto::name(pkt.proto)
        .map(str::to_string)
        .unwrap_or_else(|| pkt.proto.to_string());
    let mut packet = format!(
        "{} on {} {} {} -> {}",
        pkt.dir.as_str(),
        config.interfaces[pkt.iface as usize].name,
        pname,
        endpoint(pkt.src, pkt.sport, ports),
        endpoint(pkt.dst, pkt.dport, ports),
    );
    if pkt.proto == proto::TCP {
        packet.push_str(&format!(" flags {}", tcp_flags::letters(pkt.tcp_flags)));
    }
    println!("packet:  {packet}");
    let mut verdict = v.action.as_str().to_string();
    if v.action == Action::Block && v.return_ {
        verdict.push_str(" return");
    }
    if v.action == Action::Pass {
        verdict.push_str(if v.keep_state {
            ", keep state"
        } else {
            ", no state"
        });
    }
    if v.log {
        verdict.push_str(", log");
    }
    println!("verdict: {verdict}");
    match v.rule {
        Some(i) => {
            let r = rule_at(config, i);
            let label = r
                .label
                .as_ref()
                .map(|l| format!(" label \"{l}\""))
                .unwrap_or_default();
            let why = if v.quick {
                "first matching quick rule"
            } else {
                "last matching rule"
            };
            println!(
                "decided: rule {} at {}:{}{label} ({why})",
                i + 1,
                r.origin.file.display(),
                r.origin.line
            );
        }
        None => println!(
            "decided: no rule matched; [policy] default = \"{}\"",
            config.policy.default.as_str()
        ),
    }
    if trace.matched.is_empty() {
        println!("matched: none");
    } else {
        println!("matched:");
        for i in &trace.matched {
            let r = rule_at(config, *i);
            let mark = if Some(*i) == v.rule { "*" } else { " " };
            println!(
                " {mark} @{:<4} {}:{:<5} {}",
                i + 1,
                r.origin
                    .file
                    .file_name()
                    .map(|f| f.to_string_lossy())
                    .unwrap_or_default(),
                r.origin.line,
                r.to_pf_string(config)
            );
        }
    }
}
