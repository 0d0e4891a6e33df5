//! The whole worker pipeline, black-box, through `rampart replay`: captures in, captures
//! and counters out. Frames are built here; what rampart sends is checked with tshark, an
//! independent decoder (checksums, TTL, addresses), where tshark is installed.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use pcap_file::pcap::{PcapPacket, PcapReader, PcapWriter};
use rampart_dataplane::wire::build::{ArpFrame, NeighborFrame, TcpFrame, UdpFrame};
use rampart_dataplane::wire::parse::{parse_frame, L4};
use rampart_dataplane::wire::MacAddr;

const LAN_MAC: &str = "02:00:00:00:01:01";
const WAN_MAC: &str = "02:00:00:00:02:01";
const CLIENT_MAC: [u8; 6] = [0x02, 0, 0, 0, 0x01, 0x10];
const SERVER_MAC: [u8; 6] = [0x02, 0, 0, 0, 0x02, 0x07];

fn config(extra: &str) -> String {
    format!(
        r#"
[[interface]]
name = "lan"
device = "net_null0"
mac = "{LAN_MAC}"
addresses = ["192.0.2.1/24", "2001:db8:1::1/64"]

[[interface]]
name = "wan"
device = "net_null1"
mac = "{WAN_MAC}"
addresses = ["198.51.100.1/24", "2001:db8:2::1/64"]

[[neighbor]]
interface = "lan"
address = "192.0.2.10"
mac = "02:00:00:00:01:10"

[[neighbor]]
interface = "wan"
address = "198.51.100.7"
mac = "02:00:00:00:02:07"

[[neighbor]]
interface = "lan"
address = "2001:db8:1::10"
mac = "02:00:00:00:01:10"

[[neighbor]]
interface = "wan"
address = "2001:db8:2::7"
mac = "02:00:00:00:02:07"

[[carp]]
vhid = 7
interface = "lan"
addresses = ["192.0.2.254", "2001:db8:1::fe"]
passphrase = "secret"

[[rule]]
action = "pass"
direction = "in"
on = "lan"
from = ["192.0.2.0/24", "2001:db8:1::/64"]

[[rule]]
action = "pass"
direction = "out"

[[rule]]
action = "pass"
direction = "in"
proto = ["icmp"]
to = "self"
{extra}
"#
    )
}

fn mac(s: &str) -> MacAddr {
    s.parse().unwrap()
}

struct Lab {
    dir: PathBuf,
}

impl Lab {
    fn new(name: &str, extra: &str) -> Lab {
        let dir =
            std::env::temp_dir().join(format!("rampart-pipeline-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(dir.join("fw.toml"), config(extra)).unwrap();
        Lab { dir }
    }

    fn write_pcap(&self, name: &str, frames: &[(u64, Vec<u8>)]) -> PathBuf {
        let path = self.dir.join(name);
        let mut w = PcapWriter::new(std::fs::File::create(&path).unwrap()).unwrap();
        for (ms, f) in frames {
            w.write_packet(&PcapPacket::new(
                Duration::from_millis(*ms),
                f.len() as u32,
                f,
            ))
            .unwrap();
        }
        path
    }

    /// Runs `rampart replay`; returns the JSON counters.
    fn replay(
        &self,
        lan: &[(u64, Vec<u8>)],
        wan: &[(u64, Vec<u8>)],
        extra_args: &[&str],
    ) -> serde_json::Value {
        let lan_in = self.write_pcap("lan-in.pcap", lan);
        let wan_in = self.write_pcap("wan-in.pcap", wan);
        let out = Command::new(env!("CARGO_BIN_EXE_rampart"))
            .arg("replay")
            .arg("-c")
            .arg(self.dir.join("fw.toml"))
            .arg("--in")
            .arg(format!("lan={}", lan_in.display()))
            .arg("--in")
            .arg(format!("wan={}", wan_in.display()))
            .arg("--out-dir")
            .arg(self.dir.join("out"))
            .arg("--json")
            .args(extra_args)
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "replay failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        serde_json::from_slice(&out.stdout).unwrap()
    }

    fn out(&self, iface: &str) -> PathBuf {
        self.dir.join("out").join(format!("{iface}.pcap"))
    }

    fn frames(&self, iface: &str) -> Vec<Vec<u8>> {
        let mut r = PcapReader::new(std::fs::File::open(self.out(iface)).unwrap()).unwrap();
        let mut v = Vec::new();
        while let Some(p) = r.next_packet() {
            v.push(p.unwrap().data.into_owned());
        }
        v
    }
}

impl Drop for Lab {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

fn v4(s: &str) -> IpAddr {
    IpAddr::V4(s.parse::<Ipv4Addr>().unwrap())
}

fn v6(s: &str) -> IpAddr {
    IpAddr::V6(s.parse::<Ipv6Addr>().unwrap())
}

/// A TCP segment between client (on lan) and server (on wan), as the wire would carry it
/// to rampart: on lan addressed to rampart's lan MAC, on wan to its wan MAC.
fn tcp(
    from_client: bool,
    client: IpAddr,
    server: IpAddr,
    seq: u32,
    ack: u32,
    flags: u8,
    payload: &[u8],
) -> Vec<u8> {
    let (src, dst, sport, dport, src_mac, dst_mac) = if from_client {
        (
            client,
            server,
            40000,
            443,
            MacAddr(CLIENT_MAC),
            mac(LAN_MAC),
        )
    } else {
        (
            server,
            client,
            443,
            40000,
            MacAddr(SERVER_MAC),
            mac(WAN_MAC),
        )
    };
    TcpFrame {
        src_mac,
        dst_mac,
        src,
        dst,
        sport,
        dport,
        seq,
        ack,
        flags: rampart_dataplane::wire::TcpFlags(flags),
        window: 64240,
        payload: payload.to_vec(),
        ..TcpFrame::default()
    }
    .to_bytes()
}

const SYN: u8 = 0x02;
const ACK: u8 = 0x10;
const PSH: u8 = 0x08;

fn tshark() -> Option<PathBuf> {
    let out = Command::new("sh")
        .arg("-c")
        .arg("command -v tshark")
        .output()
        .ok()?;
    out.status
        .success()
        .then(|| PathBuf::from(String::from_utf8_lossy(&out.stdout).trim()))
}

/// tshark's fields for every frame of a capture, with checksum validation on.
fn tshark_fields(path: &Path, fields: &[&str]) -> Option<Vec<Vec<String>>> {
    let Some(tshark) = tshark() else {
        eprintln!("WARNING: tshark is not installed: skipping the independent decoder check (CI installs it)");
        return None;
    };
    let mut cmd = Command::new(tshark);
    cmd.arg("-r").arg(path).args([
        "-o",
        "ip.check_checksum:TRUE",
        "-o",
        "tcp.check_checksum:TRUE",
        "-o",
        "udp.check_checksum:TRUE",
        "-T",
        "fields",
        "-E",
        "separator=|",
    ]);
    for f in fields {
        cmd.arg("-e").arg(f);
    }
    let out = cmd.output().unwrap();
    assert!(
        out.status.success(),
        "tshark: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    Some(
        String::from_utf8_lossy(&out.stdout)
            .lines()
            .map(|l| l.split('|').map(str::to_string).collect())
            .collect(),
    )
}

/// Frames with their arrival time in ms.
type Capture = Vec<(u64, Vec<u8>)>;

fn handshake(client: IpAddr, server: IpAddr) -> (Capture, Capture) {
    let lan = vec![
        (1000, tcp(true, client, server, 1000, 0, SYN, b"")),
        (1020, tcp(true, client, server, 1001, 5001, ACK, b"")),
        (
            1030,
            tcp(
                true,
                client,
                server,
                1001,
                5001,
                ACK | PSH,
                b"GET / HTTP/1.0\r\n\r\n",
            ),
        ),
    ];
    let wan = vec![
        (1010, tcp(false, client, server, 5000, 1001, SYN | ACK, b"")),
        (
            1040,
            tcp(
                false,
                client,
                server,
                5001,
                1019,
                ACK | PSH,
                b"HTTP/1.0 200 OK\r\n\r\n",
            ),
        ),
    ];
    (lan, wan)
}

#[test]
fn tcp_handshake_and_data_through_the_firewall() {
    let lab = Lab::new("tcp4", "");
    let (lan, wan) = handshake(v4("192.0.2.10"), v4("198.51.100.7"));
    let c = lab.replay(&lan, &wan, &[]);
    assert_eq!(c["states"]["created"], 1, "{c}");
    assert_eq!(c["forwarded"], 5, "{c}");
    assert_eq!(c["drops"]["match"], 0, "{c}");

    // Out of wan: the client's three segments, rewritten for the next hop.
    let out = lab.frames("wan");
    assert_eq!(out.len(), 3);
    for f in &out {
        let p = parse_frame(f).unwrap();
        assert_eq!(&f[0..6], &SERVER_MAC, "to the server's MAC");
        assert_eq!(&f[6..12], &mac(WAN_MAC).0, "from rampart's wan MAC");
        assert_eq!(p.ttl, 63, "TTL decremented");
    }
    // The replies passed by state, back to the client.
    assert_eq!(lab.frames("lan").len(), 2);

    if let Some(rows) = tshark_fields(
        &lab.out("wan"),
        &[
            "ip.ttl",
            "ip.checksum.status",
            "tcp.checksum.status",
            "tcp.flags.str",
        ],
    ) {
        assert_eq!(rows.len(), 3);
        for r in &rows {
            assert_eq!(r[0], "63", "{rows:?}");
            assert_eq!(r[1], "1", "IPv4 checksum good: {rows:?}");
            assert_eq!(r[2], "1", "TCP checksum good: {rows:?}");
        }
    }
    if let Some(rows) = tshark_fields(
        &lab.out("lan"),
        &["ip.src", "ip.checksum.status", "tcp.checksum.status"],
    ) {
        assert_eq!(rows.len(), 2);
        for r in &rows {
            assert_eq!(r[0], "198.51.100.7");
            assert_eq!(r[1], "1");
            assert_eq!(r[2], "1");
        }
    }
}

#[test]
fn unsolicited_inbound_syn_is_blocked_by_the_default() {
    let lab = Lab::new("unsolicited", "");
    let wan = vec![(
        1000,
        tcp(
            false,
            v4("192.0.2.10"),
            v4("198.51.100.7"),
            5000,
            0,
            SYN,
            b"",
        ),
    )];
    let c = lab.replay(&[], &wan, &[]);
    assert_eq!(c["drops"]["match"], 1, "{c}");
    assert_eq!(c["states"]["created"], 0);
    assert!(lab.frames("lan").is_empty());
}

#[test]
fn a_packet_outside_the_window_is_dropped_as_state_mismatch() {
    let lab = Lab::new("window", "");
    let (client, server) = (v4("192.0.2.10"), v4("198.51.100.7"));
    let (mut lan, wan) = handshake(client, server);
    // Data far beyond what the server's window allows: pf drops it, no fallback to rules.
    lan.push((
        1050,
        tcp(true, client, server, 1019 + 10_000_000, 5020, ACK, b"x"),
    ));
    let c = lab.replay(&lan, &wan, &[]);
    assert_eq!(c["drops"]["state-mismatch"], 1, "{c}");
    assert_eq!(lab.frames("wan").len(), 3);
}

fn udp(from_client: bool, ms: u64) -> (u64, Vec<u8>) {
    let (src, dst, sport, dport, src_mac, dst_mac) = if from_client {
        (
            v4("192.0.2.10"),
            v4("198.51.100.7"),
            5353,
            53,
            MacAddr(CLIENT_MAC),
            mac(LAN_MAC),
        )
    } else {
        (
            v4("198.51.100.7"),
            v4("192.0.2.10"),
            53,
            5353,
            MacAddr(SERVER_MAC),
            mac(WAN_MAC),
        )
    };
    (
        ms,
        UdpFrame {
            src_mac,
            dst_mac,
            src,
            dst,
            sport,
            dport,
            payload: b"query".to_vec(),
            ..UdpFrame::default()
        }
        .to_bytes(),
    )
}

#[test]
fn states_expire_after_the_configured_timeout() {
    let lab = Lab::new(
        "expiry",
        "\n[timeouts]\nudp.first = 5\nudp.single = 5\nudp.multiple = 10\n",
    );
    // pf's UDP progression: a query (udp.first), its answer (the client is now MULTIPLE,
    // the server SINGLE: udp.single), the client again (both MULTIPLE: udp.multiple = 10 s).
    // An answer 9.5 s later still passes and refreshes the state; one 10.5 s after that
    // finds it expired, and the default blocks it.
    let lan = vec![udp(true, 1000), udp(true, 3000)];
    let wan = vec![udp(false, 2000), udp(false, 12_500), udp(false, 23_000)];
    let c = lab.replay(&lan, &wan, &[]);
    assert_eq!(c["forwarded"], 4, "{c}");
    assert_eq!(c["drops"]["match"], 1, "{c}");
    assert_eq!(c["states"]["live"], 0, "{c}");
    assert_eq!(lab.frames("lan").len(), 2);

    // udp.single is what a one-way answer gets: 5 s here, so an answer 6 s later is blocked.
    let c = lab.replay(
        &[udp(true, 1000)],
        &[udp(false, 2000), udp(false, 8000)],
        &[],
    );
    assert_eq!(c["forwarded"], 2, "{c}");
    assert_eq!(c["drops"]["match"], 1, "{c}");
}

fn arp_for(target: &str) -> Vec<u8> {
    ArpFrame::request(
        MacAddr(CLIENT_MAC),
        "192.0.2.10".parse().unwrap(),
        target.parse().unwrap(),
    )
    .to_bytes()
}

#[test]
fn arp_for_a_vip_is_answered_only_when_master() {
    let lab = Lab::new("vip", "");
    let lan = vec![(1000, arp_for("192.0.2.254")), (1001, arp_for("192.0.2.1"))];
    // BACKUP (the default without CARP): only the interface's own address is answered.
    lab.replay(&lan, &[], &[]);
    let replies = lab.frames("lan");
    assert_eq!(replies.len(), 1);
    assert_eq!(&replies[0][6..12], &mac(LAN_MAC).0);

    // MASTER for vhid 7: the VIP is answered with the virtual MAC 00:00:5e:00:01:07.
    lab.replay(&lan, &[], &["--master", "7"]);
    let replies = lab.frames("lan");
    assert_eq!(replies.len(), 2);
    let vmac = [0x00, 0x00, 0x5e, 0x00, 0x01, 0x07];
    assert_eq!(
        &replies[0][6..12],
        &vmac,
        "Ethernet source is the virtual MAC"
    );
    assert_eq!(
        &replies[0][22..28],
        &vmac,
        "ARP sender hardware address is the virtual MAC"
    );
    assert_eq!(&replies[0][28..32], &[192, 0, 2, 254]);
    if let Some(rows) = tshark_fields(
        &lab.out("lan"),
        &["arp.opcode", "arp.src.hw_mac", "arp.src.proto_ipv4"],
    ) {
        assert_eq!(rows[0], ["2", "00:00:5e:00:01:07", "192.0.2.254"]);
    }
}

#[test]
fn traffic_to_a_backup_vip_mac_is_dropped() {
    let lab = Lab::new("vipmac", "");
    let mut f = tcp(true, v4("192.0.2.10"), v4("198.51.100.7"), 1, 0, SYN, b"");
    f[0..6].copy_from_slice(&[0x00, 0x00, 0x5e, 0x00, 0x01, 0x07]);
    let c = lab.replay(&[(1000, f.clone())], &[], &[]);
    assert_eq!(c["drops"]["carp-backup"], 1, "{c}");
    let c = lab.replay(&[(1000, f)], &[], &["--master", "7"]);
    assert_eq!(c["forwarded"], 1, "{c}");
}

#[test]
fn ipv6_works_like_ipv4() {
    let lab = Lab::new("tcp6", "");
    let (lan, wan) = handshake(v6("2001:db8:1::10"), v6("2001:db8:2::7"));
    let c = lab.replay(&lan, &wan, &[]);
    assert_eq!(c["states"]["created"], 1, "{c}");
    assert_eq!(c["forwarded"], 5, "{c}");
    for f in lab.frames("wan") {
        assert_eq!(parse_frame(&f).unwrap().ttl, 63, "hop limit decremented");
    }
    if let Some(rows) = tshark_fields(&lab.out("wan"), &["ipv6.hlim", "tcp.checksum.status"]) {
        assert_eq!(rows.len(), 3);
        for r in &rows {
            assert_eq!(r, &["63", "1"]);
        }
    }
    // An unsolicited inbound IPv6 SYN is blocked too.
    let c = lab.replay(
        &[],
        &[(
            1000,
            tcp(
                false,
                v6("2001:db8:1::10"),
                v6("2001:db8:2::7"),
                5000,
                0,
                SYN,
                b"",
            ),
        )],
        &[],
    );
    assert_eq!(c["drops"]["match"], 1, "{c}");
}

#[test]
fn neighbour_solicitation_for_own_and_vip_addresses() {
    let lab = Lab::new("nd", "");
    let ns = |target: &str| {
        NeighborFrame::solicitation(
            MacAddr(CLIENT_MAC),
            "2001:db8:1::10".parse().unwrap(),
            target.parse().unwrap(),
        )
        .to_bytes()
    };
    let lan = vec![(1000, ns("2001:db8:1::1")), (1001, ns("2001:db8:1::fe"))];
    lab.replay(&lan, &[], &[]);
    assert_eq!(
        lab.frames("lan").len(),
        1,
        "only the own address while BACKUP"
    );
    lab.replay(&lan, &[], &["--master", "7"]);
    let out = lab.frames("lan");
    assert_eq!(out.len(), 2);
    let p = parse_frame(&out[1]).unwrap();
    assert!(matches!(p.l4, L4::Icmpv6(i) if i.msg_type == 136));
    assert_eq!(&out[1][6..12], &[0x00, 0x00, 0x5e, 0x00, 0x01, 0x07]);
    if let Some(rows) = tshark_fields(
        &lab.out("lan"),
        &[
            "icmpv6.type",
            "icmpv6.checksum.status",
            "icmpv6.nd.na.target_address",
        ],
    ) {
        assert_eq!(rows[0], ["136", "1", "2001:db8:1::1"]);
        assert_eq!(rows[1], ["136", "1", "2001:db8:1::fe"]);
    }
}

#[test]
fn ping_to_the_firewall_is_answered_and_an_unknown_next_hop_is_resolved() {
    let lab = Lab::new("local", "");
    let echo = rampart_dataplane::wire::build::EchoFrame {
        src_mac: MacAddr(CLIENT_MAC),
        dst_mac: mac(LAN_MAC),
        src: v4("192.0.2.10"),
        dst: v4("192.0.2.1"),
        ident: 7,
        seq_no: 1,
        ..Default::default()
    }
    .to_bytes();
    // And a packet to a wan host whose MAC is unknown: rampart asks with ARP.
    let unknown = UdpFrame {
        src_mac: MacAddr(CLIENT_MAC),
        dst_mac: mac(LAN_MAC),
        src: v4("192.0.2.10"),
        dst: v4("198.51.100.99"),
        sport: 1,
        dport: 2,
        ..UdpFrame::default()
    }
    .to_bytes();
    let c = lab.replay(&[(1000, echo), (1001, unknown)], &[], &[]);
    assert_eq!(c["replies"], 1, "{c}");
    assert_eq!(c["drops"]["no-neighbor"], 1, "{c}");
    let lan = lab.frames("lan");
    assert_eq!(lan.len(), 1);
    let p = parse_frame(&lan[0]).unwrap();
    assert_eq!(p.src, v4("192.0.2.1"));
    assert!(matches!(p.l4, L4::Icmp(i) if i.msg_type == 0));
    let wan = lab.frames("wan");
    assert_eq!(wan.len(), 1, "one ARP request on wan");
    assert_eq!(&wan[0][0..6], &[0xff; 6]);
    assert_eq!(&wan[0][38..42], &[198, 51, 100, 99]);
    if let Some(rows) = tshark_fields(
        &lab.out("lan"),
        &["icmp.type", "icmp.checksum.status", "ip.checksum.status"],
    ) {
        assert_eq!(rows[0], ["0", "1", "1"]);
    }
}

#[test]
fn a_gratuitous_arp_for_our_own_vip_is_never_answered() {
    // The new MASTER's announcement, heard by the old MASTER before it steps down: answering
    // it would pull the virtual MAC back to the old MASTER's switch port (OpenBSD ignores
    // ARP from its own addresses).
    let lab = Lab::new("garp", "");
    let vmac: MacAddr = "00:00:5e:00:01:07".parse().unwrap();
    let garp = ArpFrame::gratuitous(vmac, "192.0.2.254".parse().unwrap()).to_bytes();
    // And a neighbour's gratuitous ARP: learned, not answered.
    let neighbour =
        ArpFrame::gratuitous(MacAddr(CLIENT_MAC), "192.0.2.77".parse().unwrap()).to_bytes();
    lab.replay(&[(1000, garp), (1001, neighbour)], &[], &["--master", "7"]);
    assert!(lab.frames("lan").is_empty(), "nothing answered");
}

#[test]
fn directed_broadcasts_are_neither_forwarded_nor_answered() {
    // 192.0.2.255 is lan's directed broadcast: a frame to it (sent to the broadcast MAC, as
    // hosts send it) is for every host on the link, so rampart drops it as local traffic
    // nobody here serves. A transit packet beside it is forwarded as usual.
    let lab = Lab::new("directed-broadcast", "");
    let to_broadcast = |dst: &str| {
        UdpFrame {
            src_mac: MacAddr(CLIENT_MAC),
            dst_mac: MacAddr([0xff; 6]),
            src: v4("192.0.2.10"),
            dst: v4(dst),
            sport: 137,
            dport: 137,
            ..UdpFrame::default()
        }
        .to_bytes()
    };
    let transit = UdpFrame {
        src_mac: MacAddr(CLIENT_MAC),
        dst_mac: mac(LAN_MAC),
        src: v4("192.0.2.10"),
        dst: v4("198.51.100.7"),
        sport: 1000,
        dport: 53,
        ..UdpFrame::default()
    }
    .to_bytes();
    let c = lab.replay(
        &[
            (1000, to_broadcast("192.0.2.255")),
            (1001, to_broadcast("255.255.255.255")),
            // Other multicast: not routed, and nothing here joined the group.
            (1002, to_broadcast("239.1.2.3")),
            (1003, transit),
        ],
        &[],
        &[],
    );
    assert_eq!(c["drops"]["local"], 3, "{c}");
    assert_eq!(c["forwarded"], 1, "{c}");
    assert!(lab.frames("lan").is_empty(), "nothing answers a broadcast");
    let wan = lab.frames("wan");
    assert_eq!(wan.len(), 1);
    assert_eq!(parse_frame(&wan[0]).unwrap().dst, v4("198.51.100.7"));
}
