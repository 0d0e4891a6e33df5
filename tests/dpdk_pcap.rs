//! The two backends agree: `rampart run` on DPDK `net_pcap` vdevs (frames read from and
//! written to capture files by DPDK's pcap driver) transmits exactly what `rampart replay`
//! (the in-memory backend) transmits for the same input.
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

fn config(dir: &Path, devices: [String; 2]) -> String {
    format!(
        r#"
[dpdk]
control_lcore = 0
worker_lcores = [1]
eal_args = ["--no-pci", "--in-memory", "--no-telemetry"]
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

fn temp_dir() -> PathBuf {
    let dir = std::env::temp_dir().join(format!("rampart-dpdk-pcap-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

#[test]
fn run_on_net_pcap_matches_replay() {
    if let Err(why) = dpdk_available() {
        eprintln!("WARNING: skipping DPDK test: {why}");
        return;
    }
    let dir = temp_dir();
    let lan_in = dir.join("lan-in.pcap");
    let wan_in = dir.join("wan-in.pcap");
    write_pcap(&lan_in, &lan_frames());
    write_pcap(&wan_in, &[]);
    let rampart = env!("CARGO_BIN_EXE_rampart");

    // The in-memory backend.
    let replay_cfg = dir.join("replay.toml");
    std::fs::write(
        &replay_cfg,
        config(&dir, ["net_null0".into(), "net_null1".into()]),
    )
    .unwrap();
    let out = Command::new(rampart)
        .args(["replay", "-c"])
        .arg(&replay_cfg)
        .arg("--in")
        .arg(format!("lan={}", lan_in.display()))
        .arg("--in")
        .arg(format!("wan={}", wan_in.display()))
        .arg("--out-dir")
        .arg(dir.join("replay"))
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "replay: {}",
        String::from_utf8_lossy(&out.stderr)
    );

    // DPDK's pcap driver reads the same captures and writes what rampart transmits.
    // Two TX queues per port (the worker's and the control core's): two tx_pcap files.
    // With static neighbours the control core sends nothing.
    let dev = |name: &str, i: u8| {
        format!(
            "net_pcap{i},rx_pcap={},tx_pcap={},tx_pcap={}",
            dir.join(format!("{name}-in.pcap")).display(),
            dir.join(format!("{name}-run.pcap")).display(),
            dir.join(format!("{name}-control.pcap")).display()
        )
    };
    let run_cfg = dir.join("run.toml");
    std::fs::write(&run_cfg, config(&dir, [dev("lan", 0), dev("wan", 1)])).unwrap();
    let mut child = Command::new(rampart)
        .args(["run", "-c"])
        .arg(&run_cfg)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let pid = child.id() as i32;
    // Wait until every input frame was received (the management socket says so), bounded.
    let deadline = Instant::now() + Duration::from_secs(30);
    let expected = lan_frames().len() as u64;
    let mut received = 0;
    while Instant::now() < deadline {
        if let Ok(v) = rampart_control::ctl::request(&dir.join("ctl.sock"), "info") {
            received = v["ports"][0]["rx_packets"].as_u64().unwrap_or(0);
            if received >= expected {
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
    assert!(
        out.status.success(),
        "rampart run: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(received, expected, "rampart run received every frame");
    let stdout = String::from_utf8_lossy(&out.stdout);
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
