//! What pf does with a TCP segment or an ICMP error that finds a state but does not fit it
//! (protocols.md §4.2–4.4): the challenge ACK to a SYN on an established connection, the
//! RST for a handshake mismatch, the purge-and-drop of a SYN reusing a closed connection's
//! ports, and ICMP errors, which pass only by the state of the connection they quote, with
//! the quoted TCP sequence number inside its sender's window, and never create a state.

use std::net::{IpAddr, Ipv4Addr};
use std::path::Path;
use std::sync::Arc;

use crossbeam::queue::ArrayQueue;
use rampart_conf::MacAddr;
use rampart_dataplane::io::mem::MemPort;
use rampart_dataplane::state::StateTableConfig;
use rampart_dataplane::wire::build::{icmp_error, Link, TcpFrame};
use rampart_dataplane::wire::parse::{parse_frame, ParsedFrame, L4};
use rampart_dataplane::wire::TcpFlags;
use rampart_dataplane::worker::{DropReason, Shared, Worker};

const CLIENT: Ipv4Addr = Ipv4Addr::new(192, 0, 2, 10);
const SERVER: Ipv4Addr = Ipv4Addr::new(198, 51, 100, 7);
/// A router on the server's side, reporting a problem with a client's packet.
const ROUTER: Ipv4Addr = Ipv4Addr::new(198, 51, 100, 254);
const LAN_MAC: MacAddr = MacAddr([0x02, 0, 0, 0, 1, 1]);
const WAN_MAC: MacAddr = MacAddr([0x02, 0, 0, 0, 2, 1]);
const CLIENT_MAC: MacAddr = MacAddr([0x02, 0, 0, 0, 1, 0x10]);
const SERVER_MAC: MacAddr = MacAddr([0x02, 0, 0, 0, 2, 7]);
const LAN: usize = 0;
const WAN: usize = 1;
const CLIENT_ISN: u32 = 1000;
const SERVER_ISN: u32 = 5000;

/// TCP from the lan keeps state; nothing passes ICMP, so an ICMP error reaches the other
/// side only through the state of the connection it quotes.
const CONFIG: &str = r#"
[[interface]]
name = "lan"
device = "net_null0"
addresses = ["192.0.2.1/24"]
mac = "02:00:00:00:01:01"

[[interface]]
name = "wan"
device = "net_null1"
addresses = ["198.51.100.1/24"]
mac = "02:00:00:00:02:01"

[[neighbor]]
interface = "wan"
address = "198.51.100.7"
mac = "02:00:00:00:02:07"

[[neighbor]]
interface = "lan"
address = "192.0.2.10"
mac = "02:00:00:00:01:10"

[policy]
default = "block"

[[rule]]
action = "pass"
direction = "in"
on = "lan"
proto = "tcp"

[[rule]]
action = "pass"
direction = "out"
on = "wan"
"#;

struct Rig {
    shared: Shared,
    worker: Worker<MemPort>,
    now_ms: u64,
}

fn rig(config: &str) -> Rig {
    let config = rampart_conf::load_str(Path::new("t.toml"), config)
        .unwrap()
        .config;
    let shared = Shared::from_config(
        &config,
        &[LAN_MAC, WAN_MAC],
        StateTableConfig::from_config(&config, 16, 7, 1),
    );
    let ports = vec![MemPort::new(), MemPort::new()];
    let worker = Worker::new(0, ports, &shared, Arc::new(ArrayQueue::new(64)));
    Rig {
        shared,
        worker,
        now_ms: 10,
    }
}

fn segment(from_client: bool, flags: TcpFlags, seq: u32, ack: u32) -> TcpFrame {
    let (src_mac, dst_mac, src, dst, sport, dport) = if from_client {
        (CLIENT_MAC, LAN_MAC, CLIENT, SERVER, 40000, 80)
    } else {
        (SERVER_MAC, WAN_MAC, SERVER, CLIENT, 80, 40000)
    };
    TcpFrame {
        src_mac,
        dst_mac,
        src: src.into(),
        dst: dst.into(),
        sport,
        dport,
        seq,
        ack,
        flags,
        ..TcpFrame::default()
    }
}

/// What one poll sent, per port.
struct Sent {
    lan: Vec<Vec<u8>>,
    wan: Vec<Vec<u8>>,
}

impl Rig {
    fn send(&mut self, port: usize, frame: &[u8]) -> Sent {
        self.worker.ports_mut()[port].inject(frame);
        self.now_ms += 1;
        self.worker.poll(self.now_ms);
        Sent {
            lan: self.worker.ports_mut()[LAN].take_tx(),
            wan: self.worker.ports_mut()[WAN].take_tx(),
        }
    }

    fn tcp(&mut self, from_client: bool, flags: TcpFlags, seq: u32, ack: u32) -> Sent {
        let port = if from_client { LAN } else { WAN };
        self.send(port, &segment(from_client, flags, seq, ack).to_bytes())
    }

    /// The three-way handshake, each segment forwarded.
    fn establish(&mut self) {
        let s = self.tcp(true, TcpFlags::SYN, CLIENT_ISN, 0);
        assert_eq!(s.wan.len(), 1, "the SYN is forwarded");
        let s = self.tcp(
            false,
            TcpFlags::SYN | TcpFlags::ACK,
            SERVER_ISN,
            CLIENT_ISN + 1,
        );
        assert_eq!(s.lan.len(), 1, "the SYN|ACK is forwarded");
        let s = self.tcp(true, TcpFlags::ACK, CLIENT_ISN + 1, SERVER_ISN + 1);
        assert_eq!(s.wan.len(), 1, "the ACK is forwarded");
    }

    fn drops(&self, reason: DropReason) -> u64 {
        self.worker.stats().drops[reason as usize].get()
    }

    fn states(&self) -> usize {
        self.shared.states.len()
    }
}

fn tcp_of(frame: &[u8]) -> (ParsedFrame, u32, u32, u8) {
    let f = parse_frame(frame).expect("a frame rampart sent parses");
    let L4::Tcp(t) = f.l4 else {
        panic!("not TCP: {f:?}")
    };
    (f, t.seq, t.ack, t.flags.bits())
}

#[test]
fn a_syn_on_an_established_connection_gets_a_challenge_ack() {
    let mut r = rig(CONFIG);
    r.establish();
    // The client rebooted and reuses its ports: a fresh SYN with another ISN.
    let s = r.tcp(true, TcpFlags::SYN, 777_777, 0);
    assert!(s.wan.is_empty(), "the SYN must not reach the server");
    assert_eq!(s.lan.len(), 1, "a challenge ACK goes back to the client");
    let (f, seq, ack, flags) = tcp_of(&s.lan[0]);
    // From the server's side of the connection, at the sequence numbers it is at.
    assert_eq!(f.src, IpAddr::V4(SERVER));
    assert_eq!(f.dst, IpAddr::V4(CLIENT));
    assert_eq!(&s.lan[0][0..6], &CLIENT_MAC.0, "to the client's MAC");
    assert_eq!(&s.lan[0][6..12], &LAN_MAC.0, "from the lan port");
    let L4::Tcp(t) = f.l4 else { unreachable!() };
    assert_eq!((t.src_port, t.dst_port), (80, 40000));
    assert_eq!(flags, 0x10, "a bare ACK");
    assert_eq!(seq, SERVER_ISN + 1, "the server's seqlo");
    // The client's seqlo: its SYN's sequence number, which pure ACKs do not advance.
    assert_eq!(ack, CLIENT_ISN, "the client's seqlo");
    assert_eq!(r.drops(DropReason::StateMismatch), 1);
    assert_eq!(r.states(), 1, "the state stays");
    // The connection itself goes on.
    let s = r.tcp(true, TcpFlags::ACK, CLIENT_ISN + 1, SERVER_ISN + 1);
    assert_eq!(s.wan.len(), 1);
}

#[test]
fn a_syn_reusing_a_closed_connection_purges_it_and_is_dropped() {
    let mut r = rig(CONFIG);
    r.establish();
    let s = r.tcp(true, TcpFlags::RST, CLIENT_ISN + 1, 0);
    assert_eq!(s.wan.len(), 1, "the RST is forwarded");
    let s = r.tcp(true, TcpFlags::SYN, 90_000, 0);
    assert!(
        s.wan.is_empty() && s.lan.is_empty(),
        "purged and dropped, not forwarded"
    );
    assert_eq!(r.states(), 0, "the closed state is gone");
    // Its retransmission creates a fresh state.
    let s = r.tcp(true, TcpFlags::SYN, 90_000, 0);
    assert_eq!(s.wan.len(), 1);
    assert_eq!(r.states(), 1);
}

#[test]
fn a_handshake_mismatch_is_answered_with_a_rst() {
    let mut r = rig(CONFIG);
    // Both ends send a SYN (a simultaneous open): both are SYN_SENT.
    r.tcp(true, TcpFlags::SYN, CLIENT_ISN, 0);
    let s = r.tcp(false, TcpFlags::SYN, SERVER_ISN, 0);
    assert_eq!(s.lan.len(), 1, "the server's SYN is tracked and forwarded");
    // Data from the server far outside what the client's end allows (a segment without
    // data is not checked against the window).
    let mut mismatch = segment(false, TcpFlags::ACK, SERVER_ISN + 3_000_000, 4242);
    mismatch.payload = b"out of the window".to_vec();
    let s = r.send(WAN, &mismatch.to_bytes());
    assert!(s.lan.is_empty(), "the mismatching segment is dropped");
    assert_eq!(s.wan.len(), 1, "and answered with a RST");
    let (f, seq, ack, flags) = tcp_of(&s.wan[0]);
    assert_eq!(f.src, IpAddr::V4(CLIENT), "from the segment's destination");
    assert_eq!(f.dst, IpAddr::V4(SERVER));
    assert_eq!(&s.wan[0][0..6], &SERVER_MAC.0);
    assert_eq!(flags, 0x04, "RST only");
    assert_eq!((seq, ack), (4242, 0), "seq = the segment's ack");
    assert_eq!(r.drops(DropReason::StateMismatch), 1);
    // pf reset the server's side: its next segment starts it afresh.
    r.shared
        .states
        .for_each(|st| assert_eq!((st.peers[1].seqlo, st.peers[1].seqhi), (0, 1)));
    let s = r.tcp(false, TcpFlags::SYN, SERVER_ISN, 0);
    assert_eq!(s.lan.len(), 1, "the server's retransmitted SYN passes");
    // A RST that does not fit is dropped without an answer.
    let mut rst = segment(false, TcpFlags::RST, SERVER_ISN + 3_000_000, 0);
    rst.payload = b"out of the window".to_vec();
    let s = r.send(WAN, &rst.to_bytes());
    assert!(s.lan.is_empty() && s.wan.is_empty());
    assert_eq!(r.drops(DropReason::StateMismatch), 2);
}

/// An ICMP error from `ROUTER` to the client quoting a client→server segment with `seq`.
fn unreachable_quoting(seq: u32, to: Ipv4Addr) -> Vec<u8> {
    let quoted = segment(true, TcpFlags::ACK, seq, SERVER_ISN + 1)
        .ip_frame()
        .ip_packet();
    icmp_error(
        Link {
            src_mac: SERVER_MAC,
            dst_mac: WAN_MAC,
            ..Link::default()
        },
        ROUTER,
        to,
        3,
        4,
        &quoted,
    )
}

#[test]
fn icmp_errors_pass_only_in_the_window_of_the_connection_they_quote() {
    let mut r = rig(CONFIG);
    r.establish();
    // Fragmentation needed for a segment the client did send: passed by the state.
    let s = r.send(WAN, &unreachable_quoting(CLIENT_ISN + 1, CLIENT));
    assert_eq!(s.lan.len(), 1, "a genuine error reaches the client");
    // The SYN|ACK, the ACK and the error matched the state.
    assert_eq!(r.worker.stats().state_hits.get(), 3);
    // One quoting a sequence number the client never sent: a forgery, dropped by the
    // state (no rule passes ICMP, but the state decides first).
    let s = r.send(WAN, &unreachable_quoting(2_000_000_000, CLIENT));
    assert!(s.lan.is_empty(), "an out-of-window quote is dropped");
    assert_eq!(r.drops(DropReason::StateMismatch), 1);
    // One addressed to someone other than the quoted packet's sender: no state's error;
    // the rules decide, and nothing passes ICMP in on wan.
    let s = r.send(
        WAN,
        &unreachable_quoting(CLIENT_ISN + 1, Ipv4Addr::new(192, 0, 2, 11)),
    );
    assert!(s.lan.is_empty());
    assert_eq!(r.drops(DropReason::Match), 1);
    assert_eq!(r.states(), 1);
}

#[test]
fn an_icmp_error_never_creates_a_state() {
    // Everything passes and keeps state, ICMP included.
    let config = CONFIG.replace(
        "[policy]\ndefault = \"block\"",
        "[policy]\ndefault = \"block\"\n\n[[rule]]\naction = \"pass\"",
    );
    let mut r = rig(&config);
    let quoted = segment(true, TcpFlags::ACK, CLIENT_ISN, SERVER_ISN)
        .ip_frame()
        .ip_packet();
    let error = icmp_error(
        Link {
            src_mac: SERVER_MAC,
            dst_mac: WAN_MAC,
            ..Link::default()
        },
        ROUTER,
        CLIENT,
        3,
        1,
        &quoted,
    );
    let s = r.send(WAN, &error);
    assert_eq!(s.lan.len(), 1, "passed by the rules");
    assert_eq!(r.states(), 0, "an ICMP error keeps no state");
    // A query, by contrast, does.
    let echo = rampart_dataplane::wire::build::EchoFrame {
        src_mac: SERVER_MAC,
        dst_mac: WAN_MAC,
        src: SERVER.into(),
        dst: CLIENT.into(),
        ..Default::default()
    }
    .to_bytes();
    let s = r.send(WAN, &echo);
    assert_eq!(s.lan.len(), 1);
    assert_eq!(r.states(), 1);
}

#[test]
fn an_echo_state_passes_its_replies_but_not_requests_the_other_way() {
    // pf keys an ICMP query by (identifier, virtual type), placed by direction: the echo
    // reply maps back to its request, a request from the other side is another query.
    let config = CONFIG.replace("on = \"lan\"\nproto = \"tcp\"\n", "on = \"lan\"\n");
    let mut r = rig(&config);
    let echo = |from_client: bool, reply: bool| {
        let (src_mac, dst_mac, src, dst) = if from_client {
            (CLIENT_MAC, LAN_MAC, CLIENT, SERVER)
        } else {
            (SERVER_MAC, WAN_MAC, SERVER, CLIENT)
        };
        rampart_dataplane::wire::build::EchoFrame {
            src_mac,
            dst_mac,
            src: src.into(),
            dst: dst.into(),
            reply,
            ident: 0x4242,
            ..Default::default()
        }
        .to_bytes()
    };
    let s = r.send(LAN, &echo(true, false));
    assert_eq!(s.wan.len(), 1, "the client's echo request passes in on lan");
    assert_eq!(r.states(), 1);
    let s = r.send(WAN, &echo(false, true));
    assert_eq!(s.lan.len(), 1, "its reply passes by the state");
    let s = r.send(WAN, &echo(false, false));
    assert!(
        s.lan.is_empty(),
        "the server's own request with the same identifier is not the client's query"
    );
    assert_eq!(r.drops(DropReason::Match), 1, "the rules blocked it");
}

#[test]
fn a_point_passed_without_state_is_filtered_for_every_packet() {
    // pf keeps a state per filter point that kept state. Here only `in` on lan does, so
    // `out` on wan is evaluated for each packet: its rule passes SYNs only.
    let config = CONFIG.replace(
        "direction = \"out\"\non = \"wan\"\n",
        "direction = \"out\"\non = \"wan\"\nproto = \"tcp\"\nflags = \"S/SA\"\nkeep_state = false\n",
    );
    assert_ne!(config, CONFIG);
    let mut r = rig(&config);
    let s = r.tcp(true, TcpFlags::SYN, CLIENT_ISN, 0);
    assert_eq!(s.wan.len(), 1, "the SYN passes both points");
    let s = r.tcp(
        false,
        TcpFlags::SYN | TcpFlags::ACK,
        SERVER_ISN,
        CLIENT_ISN + 1,
    );
    assert!(
        s.lan.is_empty(),
        "the reply comes in on wan, where no state was kept: no rule passes it"
    );
    let s = r.tcp(true, TcpFlags::ACK, CLIENT_ISN + 1, SERVER_ISN + 1);
    assert!(
        s.wan.is_empty(),
        "the client's ACK passes in by state but out on wan only by a rule, which wants S/SA"
    );
    assert_eq!(r.drops(DropReason::Match), 2);
    assert_eq!(r.states(), 1);
}
