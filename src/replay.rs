//! `rampart replay -c FILE --in IFACE=in.pcap [--in IFACE2=b.pcap ...] --out-dir DIR [--json]`
//!
//! Runs the real worker pipeline over captured traffic, offline: frames are delivered to
//! in-memory ports in timestamp order across the input files, the captures' timestamps are
//! the clock (so timeouts behave as they would have), and what each interface transmits is
//! written to `DIR/<iface>.pcap`. The control core's part that a single appliance needs —
//! neighbour resolution and learning, state expiry — runs between packets.

use std::fs::File;
use std::io::{BufReader, BufWriter};
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{anyhow, bail, Context, Result};
use crossbeam::queue::ArrayQueue;
use pcap_file::pcap::{PcapHeader, PcapPacket, PcapReader, PcapWriter};
use pcap_file::DataLink;
use rampart_conf::Config;
use rampart_control::runtime::ControlPlane;
use rampart_dataplane::io::mem::MemPort;
use rampart_dataplane::state::StateTableConfig;
use rampart_dataplane::worker::{DropReason, Shared, ToControl, Worker, WorkerStats};
use serde_json::json;

#[derive(clap::Args)]
pub struct Args {
    /// The appliance configuration file (every interface needs a `mac`).
    #[arg(short = 'c', long = "config", value_name = "FILE")]
    config: PathBuf,
    /// A capture of what arrived on an interface: IFACE=PATH (repeat for more interfaces).
    #[arg(long = "in", value_name = "IFACE=PCAP", required = true)]
    inputs: Vec<String>,
    /// Where to write <iface>.pcap for every interface.
    #[arg(long, value_name = "DIR")]
    out_dir: PathBuf,
    /// CARP vhids this node is MASTER for during the replay (repeatable; default none).
    /// Without `--carp`, ownership stays as set here for the whole replay.
    #[arg(long = "master", value_name = "VHID")]
    masters: Vec<u8>,
    /// Run CARP's elections on the capture's clock (adverts in the inputs are heard; this
    /// node's adverts and announcements appear in the outputs).
    #[arg(long)]
    carp: bool,
    /// Print the counters as one JSON object.
    #[arg(long)]
    json: bool,
}

pub fn run(args: Args) -> ExitCode {
    match replay(&args) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("rampart replay: {e:#}");
            ExitCode::FAILURE
        }
    }
}

/// One captured frame, tagged with its input.
struct Arrival {
    ts: Duration,
    iface: u16,
    seq: usize,
    data: Vec<u8>,
}

/// The dataplane of one appliance over in-memory ports, with the control core's duties
/// that replay needs. Also used by tests and benchmarks through `rampart replay`.
pub struct Appliance {
    pub config: Config,
    pub shared: Shared,
    pub worker: Worker<MemPort>,
    pub control: Arc<ArrayQueue<ToControl<Vec<u8>>>>,
    /// The control core's duties (neighbour resolution, CARP, state expiry), on the
    /// capture's clock.
    plane: ControlPlane,
}

impl Appliance {
    pub fn new(config: Config, masters: &[u8], carp: bool) -> Result<Appliance> {
        let mut macs = Vec::new();
        for i in &config.interfaces {
            match i.mac {
                Some(m) => macs.push(m),
                None => bail!(
                    "interface `{}` needs a `mac` in the configuration for replay",
                    i.name
                ),
            }
        }
        let shared = Shared::from_config(
            &config,
            &macs,
            StateTableConfig::from_config(&config, 64, config.appliance.host_id.unwrap_or(1), 1),
        );
        let vips = &shared.vips;
        for vhid in masters {
            let groups: Vec<u16> = (0..vips.len() as u16)
                .filter(|g| vips.group(*g).is_some_and(|v| v.vhid() == *vhid))
                .collect();
            if groups.is_empty() {
                bail!("--master {vhid}: no [[carp]] group has vhid {vhid}");
            }
            for g in groups {
                vips.set_master(g, true);
            }
        }
        let control = Arc::new(ArrayQueue::new(4096));
        let ports = config.interfaces.iter().map(|_| MemPort::new()).collect();
        let worker = Worker::new(0, ports, &shared, control.clone());
        // Replays are deterministic: CARP's replay cookies are fixed per group.
        let mut cookie = 0x7261_6d70_6172_7400u64;
        let mut plane = ControlPlane::new(&config, shared.clone(), || {
            cookie += 1;
            cookie
        })
        .map_err(|e| anyhow!("CARP: {e}"))?;
        if !carp {
            plane.disable_carp();
        }
        // A replay has no pfsync peer: pfsync frames in the input are only counted.
        plane.disable_pfsync();
        Ok(Appliance {
            config,
            shared,
            worker,
            control,
            plane,
        })
    }

    /// Delivers one frame on `iface` at `now_ms`, runs the worker and the control core's
    /// duties, and returns what each interface transmitted (control frames first).
    pub fn step(&mut self, iface: u16, frame: &[u8], now_ms: u64) -> Vec<Vec<Vec<u8>>> {
        self.worker.ports_mut()[iface as usize].inject(frame);
        while self.worker.poll(now_ms) > 0 {}
        let now = Duration::from_millis(now_ms);
        let mut control_out = Vec::new();
        while let Some(msg) = self.control.pop() {
            self.plane.handle(msg, now, &mut control_out);
        }
        self.plane.tick(now, &mut control_out);
        let mut out: Vec<Vec<Vec<u8>>> = vec![Vec::new(); self.worker.ports().len()];
        for (i, f) in control_out {
            out[i as usize].push(f);
        }
        for (i, port) in self.worker.ports_mut().iter_mut().enumerate() {
            out[i].append(&mut port.take_tx());
        }
        out
    }

    pub fn stats(&self) -> Arc<WorkerStats> {
        self.worker.stats()
    }
}

fn parse_input(s: &str, config: &Config) -> Result<(u16, PathBuf)> {
    let (name, path) = s
        .split_once('=')
        .ok_or_else(|| anyhow!("--in {s}: expected IFACE=PATH"))?;
    let idx = config.interface_index(name).ok_or_else(|| {
        let names: Vec<&str> = config.interfaces.iter().map(|i| i.name.as_str()).collect();
        anyhow!(
            "--in {s}: unknown interface `{name}`; interfaces are: {}",
            names.join(", ")
        )
    })?;
    Ok((idx as u16, PathBuf::from(path)))
}

fn read_pcap(path: &Path, iface: u16, seq: &mut usize, out: &mut Vec<Arrival>) -> Result<()> {
    let file = File::open(path).with_context(|| format!("cannot open {}", path.display()))?;
    let mut reader = PcapReader::new(BufReader::new(file))
        .with_context(|| format!("{} is not a pcap file", path.display()))?;
    if reader.header().datalink != DataLink::ETHERNET {
        bail!(
            "{}: link type {:?}, expected Ethernet",
            path.display(),
            reader.header().datalink
        );
    }
    while let Some(pkt) = reader.next_packet() {
        let pkt = pkt.with_context(|| format!("{}: bad packet record", path.display()))?;
        out.push(Arrival {
            ts: pkt.timestamp,
            iface,
            seq: *seq,
            data: pkt.data.into_owned(),
        });
        *seq += 1;
    }
    Ok(())
}

fn replay(args: &Args) -> Result<()> {
    let config = match rampart_conf::load(&args.config) {
        Ok(l) => l.config,
        Err(diags) => {
            for d in &diags {
                eprintln!("{d}");
            }
            bail!("the configuration is not valid");
        }
    };
    let mut arrivals = Vec::new();
    let mut seq = 0;
    for input in &args.inputs {
        let (iface, path) = parse_input(input, &config)?;
        read_pcap(&path, iface, &mut seq, &mut arrivals)?;
    }
    // Timestamp order across the inputs; ties keep file order.
    arrivals.sort_by_key(|a| (a.ts, a.seq));

    std::fs::create_dir_all(&args.out_dir)
        .with_context(|| format!("cannot create {}", args.out_dir.display()))?;
    let mut writers = Vec::new();
    for i in &config.interfaces {
        let path = args.out_dir.join(format!("{}.pcap", i.name));
        let file =
            File::create(&path).with_context(|| format!("cannot create {}", path.display()))?;
        let header = PcapHeader {
            datalink: DataLink::ETHERNET,
            ..Default::default()
        };
        writers.push(PcapWriter::with_header(BufWriter::new(file), header)?);
    }

    let mut appliance = Appliance::new(config, &args.masters, args.carp)?;
    let mut written = vec![0u64; writers.len()];
    for a in &arrivals {
        let now_ms = a.ts.as_millis() as u64;
        let out = appliance.step(a.iface, &a.data, now_ms);
        for (i, frames) in out.into_iter().enumerate() {
            for f in frames {
                writers[i].write_packet(&PcapPacket::new(a.ts, f.len() as u32, &f))?;
                written[i] += 1;
            }
        }
    }
    for w in writers {
        w.into_writer()
            .into_inner()
            .map_err(|e| anyhow!("flushing a capture: {e}"))?;
    }
    report(&appliance, &arrivals, args.json);
    Ok(())
}

fn report(a: &Appliance, arrivals: &[Arrival], json_out: bool) {
    let stats = a.stats();
    let states = a.shared.states.stats();
    let names: Vec<&str> = a
        .config
        .interfaces
        .iter()
        .map(|i| i.name.as_str())
        .collect();
    if json_out {
        let interfaces: Vec<_> = names
            .iter()
            .enumerate()
            .map(|(i, n)| {
                let p = &stats.ports[i];
                json!({
                    "name": n,
                    "rx_packets": p.rx_packets.get(),
                    "rx_bytes": p.rx_bytes.get(),
                    "tx_packets": p.tx_packets.get(),
                    "tx_bytes": p.tx_bytes.get(),
                })
            })
            .collect();
        let drop_map: serde_json::Map<String, serde_json::Value> = DropReason::ALL
            .iter()
            .map(|r| (r.name().to_string(), json!(stats.dropped(*r))))
            .collect();
        let out = json!({
            "frames": arrivals.len(),
            "interfaces": interfaces,
            "drops": drop_map,
            "states": {
                "created": states.inserts,
                "removed": states.removals,
                "live": states.current,
                "refused": states.refused,
                "searches": stats.state_searches.get(),
            },
            "forwarded": stats.forwarded.get(),
            "replies": stats.replies.get(),
            "rule_evaluations": stats.rule_evaluations.get(),
            "to_control": stats.to_control.get(),
        });
        println!("{out}");
        return;
    }
    println!("replayed {} frames", arrivals.len());
    println!(
        "{:<12} {:>12} {:>14} {:>12} {:>14}",
        "interface", "rx packets", "rx bytes", "tx packets", "tx bytes"
    );
    for (i, n) in names.iter().enumerate() {
        let p = &stats.ports[i];
        println!(
            "{:<12} {:>12} {:>14} {:>12} {:>14}",
            n,
            p.rx_packets.get(),
            p.rx_bytes.get(),
            p.tx_packets.get(),
            p.tx_bytes.get()
        );
    }
    println!("State Table");
    println!("  {:<25} {:>14}", "current entries", states.current);
    println!("  {:<25} {:>14}", "searches", stats.state_searches.get());
    println!("  {:<25} {:>14}", "inserts", states.inserts);
    println!("  {:<25} {:>14}", "removals", states.removals);
    println!("Counters");
    println!("  {:<25} {:>14}", "forwarded", stats.forwarded.get());
    println!("  {:<25} {:>14}", "answered", stats.replies.get());
    println!(
        "  {:<25} {:>14}",
        "rule evaluations",
        stats.rule_evaluations.get()
    );
    for r in DropReason::ALL {
        println!("  {:<25} {:>14}", r.name(), stats.dropped(r));
    }
}
