//! The two backends agree: `rampart run` on DPDK `net_pcap` vdevs (frames read from and
//! written to capture files by DPDK's pcap driver) transmits exactly what `rampart replay`
//! (the in-memory backend) transmits for the same input; with two workers, each on its
//! own queue of every port, as well.
//!
//! Needs root and free hugepages (CI has both: `echo 256 > /proc/sys/vm/nr_hugepages`).
//! Without them the test says so loudly and skips: that is the only allowed skip.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use pcap_file::pcap::{PcapPacket, PcapReader, PcapWriter};
use rampart_dataplane::wire::build::{EchoFrame, TcpFrame, UdpFrame};
use rampart_dataplane::wire::{MacAddr, TcpFlags};

const LAN_MAC: &str = "02:00:00:00:01:01";
const WAN_MAC: &str = "02:00:00:00:02:01";

fn dpdk_available() -> Result<(), String> {
    // SAFETY: geteuid has no preconditions.
    if unsafe { libc::geteuid() } != 0 {
        return Err("not running as root".into());
    }
    let meminfo = std::fs::read_to_string("/proc/meminfo").map_err(|e| e.to_string())?;
    let free = meminfo
        .lines()
        .find_map(|l| l.strip_prefix("HugePages_Free:"))
        .and_then(|v| v.trim().parse::<u64>().ok())
        .unwrap_or(0);
    if free < 64 {
        return Err(format!(
            "only {free} free hugepages (echo 256 > /proc/sys/vm/nr_hugepages)"
        ));
    }
    Ok(())
}

/// One worker on lcore 1.
const ONE_WORKER: &str = r#"worker_lcores = [1]
eal_args = ["--no-pci", "--in-memory", "--no-telemetry"]"#;

/// Two workers, on lcores 1 and 2, both placed on CPU 1 (this machine may have two CPUs):
/// adaptive polling lets them share it, as `poll = "adaptive"` is for.
const TWO_WORKERS: &str = r#"worker_lcores = [1, 2]
eal_args = ["--no-pci", "--in-memory", "--no-telemetry", "--lcores=0@0,1@1,2@1"]"#;

fn config(dir: &Path, devices: [String; 2], workers: &str) -> String {
    format!(
        r#"
[dpdk]
control_lcore = 0
{workers}
mbufs = 4095
poll = "adaptive"

[[interface]]
name = "lan"
device = "{lan}"
mac = "{LAN_MAC}"
addresses = ["192.0.2.1/24"]

[[interface]]
name = "wan"
device = "{wan}"
mac = "{WAN_MAC}"
addresses = ["198.51.100.1/24"]

[[neighbor]]
interface = "wan"
address = "198.51.100.7"
mac = "02:00:00:00:02:07"

[[neighbor]]
interface = "lan"
address = "192.0.2.10"
mac = "02:00:00:00:01:10"

[control]
socket = "{sock}"

[[rule]]
action = "pass"
direction = "in"
on = "lan"
from = "192.0.2.0/24"

[[rule]]
action = "pass"
direction = "out"

[[rule]]
action = "pass"
direction = "in"
proto = "icmp"
to = "self"

[[rule]]
action = "block"
return = true
proto = "tcp"
to_port = 23
"#,
        lan = devices[0],
        wan = devices[1],
        sock = dir.join("ctl.sock").display()
    )
}

/// Frames from the client side only (so the order across interfaces cannot differ between
/// the backends): UDP flows, a ping of the firewall, a blocked-and-answered telnet SYN, a
/// packet with no state and no passing rule, and garbage.
fn lan_frames() -> Vec<Vec<u8>> {
    let client: MacAddr = "02:00:00:00:01:10".parse().unwrap();
    let fw: MacAddr = LAN_MAC.parse().unwrap();
    let mut v = Vec::new();
    for i in 0..20u16 {
        v.push(
            UdpFrame {
                src_mac: client,
                dst_mac: fw,
                src: "192.0.2.10".parse().unwrap(),
                dst: "198.51.100.7".parse().unwrap(),
                sport: 40000 + i,
                dport: 53,
                payload: vec![i as u8; 20],
                ..UdpFrame::default()
            }
            .to_bytes(),
        );
    }
    v.push(
        EchoFrame {
            src_mac: client,
            dst_mac: fw,
            src: "192.0.2.10".parse().unwrap(),
            dst: "192.0.2.1".parse().unwrap(),
            ..EchoFrame::default()
        }
        .to_bytes(),
    );
    v.push(
        TcpFrame {
            src_mac: client,
            dst_mac: fw,
            src: "192.0.2.10".parse().unwrap(),
            dst: "198.51.100.7".parse().unwrap(),
            sport: 50000,
            dport: 23,
            flags: TcpFlags::SYN,
            ..TcpFrame::default()
        }
        .to_bytes(),
    );
    // From outside the client network: blocked by the default.
    v.push(
        UdpFrame {
            src_mac: client,
            dst_mac: fw,
            src: "203.0.113.9".parse().unwrap(),
            dst: "198.51.100.7".parse().unwrap(),
            ..UdpFrame::default()
        }
        .to_bytes(),
    );
    v.push(vec![0xff; 20]);
    v
}

fn write_pcap(path: &Path, frames: &[Vec<u8>]) {
    let mut w = PcapWriter::new(std::fs::File::create(path).unwrap()).unwrap();
    for (i, f) in frames.iter().enumerate() {
        w.write_packet(&PcapPacket::new(
            Duration::from_millis(1000 + i as u64),
            f.len() as u32,
            f,
        ))
        .unwrap();
    }
}

fn read_pcap(path: &Path) -> Vec<Vec<u8>> {
    let mut r = PcapReader::new(std::fs::File::open(path).unwrap()).unwrap();
    let mut out = Vec::new();
    while let Some(p) = r.next_packet() {
        out.push(p.unwrap().data.into_owned());
    }
    out
}

/// One DPDK test at a time: each starts a rampart with pollers, and this machine may have
/// two CPUs.
static ONE_AT_A_TIME: std::sync::Mutex<()> = std::sync::Mutex::new(());

fn temp_dir(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("rampart-dpdk-pcap-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// `rampart replay` of `lan_in` and `wan_in` with `config`, into `out`.
fn replay(config: &Path, lan_in: &Path, wan_in: &Path, out: &Path) {
    let done = Command::new(env!("CARGO_BIN_EXE_rampart"))
        .args(["replay", "-c"])
        .arg(config)
        .arg("--in")
        .arg(format!("lan={}", lan_in.display()))
        .arg("--in")
        .arg(format!("wan={}", wan_in.display()))
        .arg("--out-dir")
        .arg(out)
        .output()
        .unwrap();
    assert!(
        done.status.success(),
        "replay: {}",
        String::from_utf8_lossy(&done.stderr)
    );
}

/// `net_pcapN` reading `rx` (one RX queue per file) and writing `tx` (one TX queue per file).
fn pcap_device(i: u8, rx: &[PathBuf], tx: &[PathBuf]) -> String {
    let mut dev = format!("net_pcap{i}");
    for f in rx {
        dev += &format!(",rx_pcap={}", f.display());
    }
    for f in tx {
        dev += &format!(",tx_pcap={}", f.display());
    }
    dev
}

/// Runs `rampart run -c config` until it has received `expected` frames on lan (its
/// management socket in `dir` says so; bounded), then stops it with SIGINT. Returns its
/// stdout and the last `ctl info`.
fn run_until_received(dir: &Path, config: &Path, expected: u64) -> (String, serde_json::Value) {
    let mut child = Command::new(env!("CARGO_BIN_EXE_rampart"))
        .args(["run", "-c"])
        .arg(config)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let pid = child.id() as i32;
    let deadline = Instant::now() + Duration::from_secs(30);
    let mut info = serde_json::Value::Null;
    while Instant::now() < deadline {
        if let Ok(v) = rampart_control::ctl::request(&dir.join("ctl.sock"), "info") {
            info = v;
            if info["ports"][0]["rx_packets"].as_u64().unwrap_or(0) >= expected {
                break;
            }
        }
        if let Ok(Some(status)) = child.try_wait() {
            let out = child.wait_with_output().unwrap();
            panic!(
                "rampart run exited early ({status}): {}",
                String::from_utf8_lossy(&out.stderr)
            );
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    // SAFETY: signalling the child we started, by its PID.
    unsafe {
        libc::kill(pid, libc::SIGINT);
    }
    let out = child.wait_with_output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "rampart run: {stderr}");
    assert_eq!(
        info["ports"][0]["rx_packets"].as_u64(),
        Some(expected),
        "rampart run received every frame: {info}\n{stderr}"
    );
    (String::from_utf8_lossy(&out.stdout).into_owned(), info)
}

#[test]
fn run_on_net_pcap_matches_replay() {
    if let Err(why) = dpdk_available() {
        eprintln!("WARNING: skipping DPDK test: {why}");
        return;
    }
    let _one = ONE_AT_A_TIME.lock().unwrap_or_else(|e| e.into_inner());
    let dir = temp_dir("one");
    let lan_in = dir.join("lan-in.pcap");
    let wan_in = dir.join("wan-in.pcap");
    write_pcap(&lan_in, &lan_frames());
    write_pcap(&wan_in, &[]);

    // The in-memory backend.
    let replay_cfg = dir.join("replay.toml");
    let null = ["net_null0".into(), "net_null1".into()];
    std::fs::write(&replay_cfg, config(&dir, null, ONE_WORKER)).unwrap();
    replay(&replay_cfg, &lan_in, &wan_in, &dir.join("replay"));

    // DPDK's pcap driver reads the same captures and writes what rampart transmits.
    // Two TX queues per port (the worker's and the control core's): two tx_pcap files.
    // With static neighbours the control core sends nothing.
    let dev = |name: &str, i: u8| {
        pcap_device(
            i,
            &[dir.join(format!("{name}-in.pcap"))],
            &[
                dir.join(format!("{name}-run.pcap")),
                dir.join(format!("{name}-control.pcap")),
            ],
        )
    };
    let run_cfg = dir.join("run.toml");
    let devices = [dev("lan", 0), dev("wan", 1)];
    std::fs::write(&run_cfg, config(&dir, devices, ONE_WORKER)).unwrap();
    let (stdout, _) = run_until_received(&dir, &run_cfg, lan_frames().len() as u64);
    assert!(
        stdout.contains("State Table"),
        "final counters printed: {stdout}"
    );

    for iface in ["lan", "wan"] {
        let replayed = read_pcap(&dir.join("replay").join(format!("{iface}.pcap")));
        let ran = read_pcap(&dir.join(format!("{iface}-run.pcap")));
        assert!(
            !replayed.is_empty(),
            "{iface}: replay transmitted something"
        );
        assert_eq!(
            ran, replayed,
            "{iface}: DPDK run and replay transmitted the same frames"
        );
    }
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn two_workers_on_their_own_queues_match_replay() {
    if let Err(why) = dpdk_available() {
        eprintln!("WARNING: skipping DPDK test: {why}");
        return;
    }
    let _one = ONE_AT_A_TIME.lock().unwrap_or_else(|e| e.into_inner());
    let dir = temp_dir("two");
    // Every input frame is a flow of its own; alternate frames arrive on RX queue 0 and 1
    // of lan, as RSS would spread flows. Each worker's output must be what replay makes
    // of its half, on its own TX queue.
    let frames = lan_frames();
    let halves: [Vec<Vec<u8>>; 2] =
        [0, 1].map(|q| frames.iter().skip(q).step_by(2).cloned().collect());
    let wan_in = dir.join("wan-in.pcap");
    write_pcap(&wan_in, &[]);
    let replay_cfg = dir.join("replay.toml");
    let null = ["net_null0".into(), "net_null1".into()];
    std::fs::write(&replay_cfg, config(&dir, null, ONE_WORKER)).unwrap();
    for (q, half) in halves.iter().enumerate() {
        let lan_in = dir.join(format!("lan-in{q}.pcap"));
        write_pcap(&lan_in, half);
        replay(
            &replay_cfg,
            &lan_in,
            &wan_in,
            &dir.join(format!("replay{q}")),
        );
    }

    // Two RX queues per port (one per worker) and three TX queues (one per worker and the
    // control core's).
    let dev = |name: &str, i: u8| {
        let rx = |q: usize| match name {
            "lan" => dir.join(format!("lan-in{q}.pcap")),
            _ => wan_in.clone(),
        };
        pcap_device(
            i,
            &[rx(0), rx(1)],
            &[
                dir.join(format!("{name}-run0.pcap")),
                dir.join(format!("{name}-run1.pcap")),
                dir.join(format!("{name}-control.pcap")),
            ],
        )
    };
    let run_cfg = dir.join("run.toml");
    let devices = [dev("lan", 0), dev("wan", 1)];
    std::fs::write(&run_cfg, config(&dir, devices, TWO_WORKERS)).unwrap();
    let (_, info) = run_until_received(&dir, &run_cfg, frames.len() as u64);

    let pollers = info["pollers"].as_array().expect("pollers in ctl info");
    assert_eq!(pollers.len(), 2, "{info}");
    for (q, half) in halves.iter().enumerate() {
        assert_eq!(pollers[q]["lcore"], q + 1, "{info}");
        assert_eq!(
            pollers[q]["frames"].as_u64(),
            Some(half.len() as u64),
            "worker {q} received its queue's frames: {info}"
        );
        for iface in ["lan", "wan"] {
            let replayed = read_pcap(&dir.join(format!("replay{q}")).join(format!("{iface}.pcap")));
            let ran = read_pcap(&dir.join(format!("{iface}-run{q}.pcap")));
            assert_eq!(
                ran, replayed,
                "{iface}: worker {q}'s TX queue carries what replay makes of its half"
            );
        }
    }
    for q in 0..2 {
        let sent =
            ["lan", "wan"].map(|iface| read_pcap(&dir.join(format!("{iface}-run{q}.pcap"))).len());
        assert!(sent[0] + sent[1] > 0, "worker {q} transmitted");
    }
    let _ = std::fs::remove_dir_all(&dir);
}
