//! pfsync wired end to end in memory: a worker's state events → the control core's engine →
//! pfsync frames on the sync interface → the peer's control core → the peer's state table.
//! Two appliances (worker over in-memory ports + `ControlPlane`) with one virtual clock;
//! frames cross between them as bytes, exactly as they leave the control core.

use std::net::{IpAddr, Ipv4Addr};
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use crossbeam::queue::ArrayQueue;
use rampart_conf::MacAddr;
use rampart_control::runtime::{ControlPlane, Outgoing};
use rampart_dataplane::io::mem::MemPort;
use rampart_dataplane::state::{StateKey, StateTableConfig};
use rampart_dataplane::wire::build::TcpFrame;
use rampart_dataplane::wire::parse::parse_frame;
use rampart_dataplane::wire::TcpFlags;
use rampart_dataplane::worker::{Shared, ToControl, Worker};
use serde_json::Value;

const LAN: u16 = 0;
const WAN: u16 = 1;
const SYNC: u16 = 2;
const CLIENT: Ipv4Addr = Ipv4Addr::new(192, 0, 2, 10);
const SERVER: Ipv4Addr = Ipv4Addr::new(198, 51, 100, 7);
const CLIENT_MAC: MacAddr = MacAddr([0x02, 0, 0, 0, 0, 0x10]);
const SERVER_MAC: MacAddr = MacAddr([0x02, 0, 0, 0, 0, 0x07]);

/// `outbound_state`: whether the outbound pass keeps state, as pass rules do by default.
/// pf defers only a packet whose outbound pass creates a state (protocols.md §3.6).
fn config(
    node: char,
    host_id: u32,
    pfsync_extra: &str,
    outbound_state: bool,
) -> rampart_conf::Config {
    let last = if node == 'a' { 2 } else { 3 };
    // `peer = ...` for a unicast peer; `open` passes pfsync on every interface, so that
    // pfsync's own interface check is what stands.
    let sync_rule_on = if pfsync_extra == "open" {
        ""
    } else {
        "on = \"sync\""
    };
    let pfsync_extra = if pfsync_extra == "open" {
        ""
    } else {
        pfsync_extra
    };
    let text = format!(
        r#"
[appliance]
name = "fw-{node}"
host_id = {host_id}

[[interface]]
name = "lan"
device = "net_null0"
addresses = ["192.0.2.{last}/24"]
mac = "02:00:00:00:0{last}:01"

[[interface]]
name = "wan"
device = "net_null1"
addresses = ["198.51.100.{last}/24"]
mac = "02:00:00:00:0{last}:02"

[[interface]]
name = "sync"
device = "net_null2"
addresses = ["198.18.0.{last}/24"]
mac = "02:00:00:00:0{last}:03"

[[neighbor]]
interface = "wan"
address = "{SERVER}"
mac = "{SERVER_MAC}"

[[neighbor]]
interface = "lan"
address = "{CLIENT}"
mac = "{CLIENT_MAC}"

[pfsync]
interface = "sync"
{pfsync_extra}

[policy]
default = "block"

[[rule]]
action = "pass"
quick = true
{sync_rule_on}
proto = "pfsync"
keep_state = false

[[rule]]
action = "pass"
direction = "in"
on = "lan"
from = "192.0.2.0/24"

[[rule]]
action = "pass"
direction = "out"
keep_state = {outbound_state}
"#
    );
    rampart_conf::load_str(Path::new("fw.toml"), &text)
        .unwrap_or_else(|d| panic!("config: {d:?}"))
        .config
}

struct Node {
    shared: Shared,
    worker: Worker<MemPort>,
    control: Arc<ArrayQueue<ToControl<Vec<u8>>>>,
    plane: ControlPlane,
    lan_mac: MacAddr,
}

impl Node {
    fn new(node: char, host_id: u32, pfsync_extra: &str) -> Node {
        Node::with_policy(node, host_id, pfsync_extra, true)
    }

    /// A node whose outbound pass keeps no state: only the inbound pass on lan does.
    fn inbound_state_only(node: char, host_id: u32, pfsync_extra: &str) -> Node {
        Node::with_policy(node, host_id, pfsync_extra, false)
    }

    fn with_policy(node: char, host_id: u32, pfsync_extra: &str, outbound_state: bool) -> Node {
        let config = config(node, host_id, pfsync_extra, outbound_state);
        let macs: Vec<MacAddr> = config.interfaces.iter().map(|i| i.mac.unwrap()).collect();
        let shared = Shared::from_config(
            &config,
            &macs,
            StateTableConfig::from_config(&config, 16, host_id, u64::from(host_id) << 32),
        );
        let control = Arc::new(ArrayQueue::new(4096));
        let ports = config.interfaces.iter().map(|_| MemPort::new()).collect();
        let mut worker = Worker::new(0, ports, &shared, control.clone());
        let mut plane = ControlPlane::new(&config, shared.clone(), || 7).unwrap();
        plane.disable_carp();
        worker.set_sync_queue(plane.sync_queue().expect("pfsync is configured"));
        worker.set_defer(plane.sync().is_some_and(|s| s.defer()));
        Node {
            shared,
            worker,
            control,
            plane,
            lan_mac: macs[0],
        }
    }

    /// One loop of the appliance at `now`: the worker's poll, the control core's messages
    /// and timers, a slice of any bulk. Returns the frames the control core sent.
    fn step(&mut self, now: Duration) -> Outgoing {
        self.worker.poll(now.as_millis() as u64);
        let mut out = Outgoing::new();
        while let Some(msg) = self.control.pop() {
            self.plane.handle(msg, now, &mut out);
        }
        self.plane.tick(now, &mut out);
        self.plane.send_bulk(now, 64, &mut out);
        out
    }

    fn receive_sync(&mut self, frames: &[(u16, Vec<u8>)]) {
        for (iface, f) in frames {
            if *iface == SYNC {
                self.worker.ports_mut()[SYNC as usize].inject(f);
            }
        }
    }

    fn tcp(&mut self, flags: TcpFlags, seq: u32, ack: u32, sport: u16) {
        let f = TcpFrame {
            src_mac: CLIENT_MAC,
            dst_mac: self.lan_mac,
            src: CLIENT.into(),
            dst: SERVER.into(),
            sport,
            dport: 80,
            seq,
            ack,
            flags,
            ..TcpFrame::default()
        };
        self.worker.ports_mut()[LAN as usize].inject(&f.to_bytes());
    }

    fn reply(&mut self, flags: TcpFlags, seq: u32, ack: u32, sport: u16) {
        let f = TcpFrame {
            src_mac: SERVER_MAC,
            dst_mac: self.shared.interfaces.mac(WAN),
            src: SERVER.into(),
            dst: CLIENT.into(),
            sport: 80,
            dport: sport,
            seq,
            ack,
            flags,
            ..TcpFrame::default()
        };
        self.worker.ports_mut()[WAN as usize].inject(&f.to_bytes());
    }

    fn state(&self, sport: u16) -> Option<rampart_dataplane::state::State> {
        let (key, _) = StateKey::new(
            rampart_conf::proto::TCP,
            IpAddr::V4(CLIENT),
            sport,
            IpAddr::V4(SERVER),
            80,
        );
        let hash = self.shared.states.hash(&key);
        let mut shard = self.shared.states.lock(hash);
        let idx = shard.find(&key, hash, 0)?;
        Some(shard.get(idx).clone())
    }

    fn pfsync(&mut self, now: Duration) -> Value {
        let mut out = Outgoing::new();
        self.plane.command("pfsync", now, &mut out).unwrap()
    }
}

fn handshake(node: &mut Node, sport: u16, now: Duration) {
    node.tcp(TcpFlags::SYN, 1000, 0, sport);
    node.step(now);
    node.reply(TcpFlags::SYN | TcpFlags::ACK, 5000, 1001, sport);
    node.step(now);
    node.tcp(TcpFlags::ACK, 1001, 5001, sport);
    node.step(now);
}

fn sync_frames(out: &Outgoing) -> Vec<(u16, Vec<u8>)> {
    out.iter().filter(|(i, _)| *i == SYNC).cloned().collect()
}

#[test]
fn a_connection_on_one_node_reaches_the_peer_by_live_sync() {
    let mut a = Node::new('a', 0x0a, "");
    let mut b = Node::new('b', 0x0b, "");
    let t = Duration::from_secs(10);
    handshake(&mut a, 40000, t);
    let on_a = a.state(40000).expect("fw-a created the state");
    assert_eq!(on_a.creator, 0x0a);
    assert!(b.state(40000).is_none());
    // Nothing leaves before the 1 s flush ...
    let out = a.step(t + Duration::from_millis(500));
    assert!(sync_frames(&out).is_empty(), "{out:?}");
    // ... then one frame to 224.0.0.240 with TTL 255 from the sync address.
    let out = a.step(t + Duration::from_millis(1001));
    let frames = sync_frames(&out);
    assert_eq!(frames.len(), 1, "{out:?}");
    let f = parse_frame(&frames[0].1).unwrap();
    assert_eq!(f.dst, IpAddr::V4(Ipv4Addr::new(224, 0, 0, 240)));
    assert_eq!(f.src, IpAddr::V4(Ipv4Addr::new(198, 18, 0, 2)));
    assert_eq!(f.ttl, 255);
    assert_eq!(f.protocol, 240);
    assert_eq!(&frames[0].1[0..6], &[0x01, 0x00, 0x5e, 0x00, 0x00, 0xf0]);

    b.receive_sync(&frames);
    b.step(t + Duration::from_millis(1002));
    let on_b = b.state(40000).expect("fw-b learned the state");
    assert_eq!(
        (on_b.id, on_b.creator),
        (on_a.id, 0x0a),
        "the peer's identity is kept"
    );
    assert_eq!(on_b.peers, on_a.peers, "TCP windows and states as on fw-a");
    let status = b.pfsync(t);
    assert_eq!(status["states_received"], 1, "{status}");
    assert_eq!(status["errors"]["bad_interface"], 0, "{status}");

    // The connection goes on through fw-b after a takeover: its packets match the state.
    b.tcp(TcpFlags::ACK | TcpFlags::PSH, 1001, 5001, 40000);
    b.step(t + Duration::from_secs(2));
    let wan_tx = b.worker.ports_mut()[WAN as usize].take_tx();
    assert_eq!(wan_tx.len(), 1, "fw-b forwards the established connection");
}

#[test]
fn pfsync_on_another_interface_is_dropped_and_counted() {
    let mut a = Node::new('a', 0x0a, "");
    let mut b = Node::new('b', 0x0b, "open");
    let t = Duration::from_secs(10);
    handshake(&mut a, 40001, t);
    let frames = sync_frames(&a.step(t + Duration::from_millis(1001)));
    assert_eq!(frames.len(), 1);
    // The same frame arriving on the LAN (an attacker there, say): the rules pass it, but
    // pfsync listens only on its interface.
    b.worker.ports_mut()[LAN as usize].inject(&frames[0].1);
    b.step(t + Duration::from_millis(1002));
    assert!(
        b.state(40001).is_none(),
        "a state was installed from the LAN"
    );
    let status = b.pfsync(t);
    assert_eq!(status["states_received"], 0, "{status}");
    assert_eq!(status["errors"]["bad_interface"], 1, "{status}");
    // On the sync interface, the same frame is taken.
    b.receive_sync(&frames);
    b.step(t + Duration::from_millis(1003));
    assert!(b.state(40001).is_some());
}

#[test]
fn updates_and_deletions_follow_the_state() {
    let mut a = Node::new('a', 0x0a, "");
    let mut b = Node::new('b', 0x0b, "");
    let mut t = Duration::from_secs(10);
    handshake(&mut a, 40002, t);
    t += Duration::from_millis(1001);
    let frames = sync_frames(&a.step(t));
    b.receive_sync(&frames);
    b.step(t);
    assert!(b.state(40002).is_some());
    // Data in both directions, then a FIN: the peer state moves, so the update is reported
    // by the worker at once and sent within the flush delay.
    let seq = 1001;
    for _ in 0..10 {
        a.tcp(TcpFlags::ACK, seq, 5001, 40002);
        a.step(t);
    }
    a.tcp(TcpFlags::FIN | TcpFlags::ACK, seq, 5001, 40002);
    a.step(t);
    let on_a = a.state(40002).unwrap();
    assert_ne!(
        on_a.peers[0].state,
        b.state(40002).unwrap().peers[0].state,
        "the FIN moved fw-a's state"
    );
    t += Duration::from_millis(1001);
    let frames = sync_frames(&a.step(t));
    assert!(!frames.is_empty(), "the update was not sent");
    b.receive_sync(&frames);
    b.step(t);
    assert_eq!(
        b.state(40002).unwrap().peers,
        on_a.peers,
        "fw-b follows the FIN"
    );
    let status = b.pfsync(t);
    assert!(
        status["received"]["UPD_C"].as_u64().unwrap_or(0) >= 1,
        "{status}"
    );
}

#[test]
fn a_node_that_starts_gets_the_whole_table_by_bulk_update() {
    let mut a = Node::new('a', 0x0a, "");
    let mut t = Duration::from_secs(10);
    for sport in 41000..41300 {
        handshake(&mut a, sport, t);
    }
    t += Duration::from_millis(1001);
    a.step(t); // fw-a's own INS messages go nowhere: fw-b is not up yet
    let n = a.shared.states.len();
    assert_eq!(n, 300);

    // fw-b starts: asks for a bulk, and its CARP demotion would hold until the BUS END.
    let mut b = Node::new('b', 0x0b, "");
    let mut out = Outgoing::new();
    b.plane.start(t, &mut out);
    let status = b.pfsync(t);
    assert_eq!(status["bulk"]["in_progress"], true, "{status}");
    let mut to_a = sync_frames(&out);
    for _ in 0..50 {
        if to_a.is_empty() {
            break;
        }
        a.receive_sync(&to_a);
        let from_a = sync_frames(&a.step(t));
        b.receive_sync(&from_a);
        to_a = sync_frames(&b.step(t));
        t += Duration::from_millis(1);
    }
    // Let the last frames land.
    for _ in 0..5 {
        let from_a = sync_frames(&a.step(t));
        b.receive_sync(&from_a);
        b.step(t);
    }
    assert_eq!(b.shared.states.len(), n, "every state arrived");
    let status = b.pfsync(t);
    assert_eq!(status["bulk"]["in_progress"], false, "{status}");
    assert_eq!(status["bulk"]["status"], "done", "{status}");
    for sport in [41000, 41150, 41299] {
        assert_eq!(
            b.state(sport).unwrap().peers,
            a.state(sport).unwrap().peers,
            "state {sport}"
        );
    }
    let status_a = a.pfsync(t);
    assert_eq!(status_a["bulk"]["states_sent"], 300, "{status_a}");
}

#[test]
fn unicast_peer_frames_go_to_the_peers_mac() {
    let mut a = Node::new('a', 0x0a, r#"peer = "198.18.0.3""#);
    let t = Duration::from_secs(10);
    // The peer's MAC is unknown: the control core resolves it (ARP on the sync interface).
    let mut out = Outgoing::new();
    a.plane.start(t, &mut out);
    let arp: Vec<_> = out
        .iter()
        .filter(|(i, f)| *i == SYNC && f[12..14] == [0x08, 0x06])
        .collect();
    assert_eq!(arp.len(), 1, "{out:?}");
    // Once learned, pfsync goes to it by unicast.
    let peer_mac = MacAddr([0x02, 0, 0, 0, 0x03, 0x03]);
    let learned = a.control.push(ToControl::Learn {
        iface: SYNC,
        ip: IpAddr::V4(Ipv4Addr::new(198, 18, 0, 3)),
        mac: peer_mac,
    });
    assert!(learned.is_ok());
    a.step(t);
    handshake(&mut a, 40003, t);
    let frames = sync_frames(&a.step(t + Duration::from_millis(1001)));
    let pfsync: Vec<_> = frames
        .iter()
        .filter(|(_, f)| parse_frame(f).is_ok_and(|p| p.protocol == 240))
        .collect();
    assert!(!pfsync.is_empty(), "{frames:?}");
    for (_, f) in pfsync {
        assert_eq!(&f[0..6], &peer_mac.0);
        let p = parse_frame(f).unwrap();
        assert_eq!(p.dst, IpAddr::V4(Ipv4Addr::new(198, 18, 0, 3)));
    }
}

fn pfsync_frames(out: &Outgoing) -> Vec<(u16, Vec<u8>)> {
    out.iter()
        .filter(|(i, f)| *i == SYNC && parse_frame(f).is_ok_and(|p| p.protocol == 240))
        .cloned()
        .collect()
}

#[test]
fn defer_holds_the_first_packet_until_the_peer_acks() {
    let mut a = Node::new('a', 0x0a, "defer = true");
    let mut b = Node::new('b', 0x0b, "");
    let t = Duration::from_secs(10);
    a.tcp(TcpFlags::SYN, 1000, 0, 40010);
    let out = a.step(t);
    // Held: nothing on wan, and the INS leaves at once (not after the 1 s flush).
    assert!(!out.iter().any(|(i, _)| *i == WAN), "{out:?}");
    assert!(a.worker.ports_mut()[WAN as usize].take_tx().is_empty());
    let ins = pfsync_frames(&out);
    assert_eq!(ins.len(), 1, "{out:?}");
    assert_eq!(a.pfsync(t)["deferred"]["held_now"], 1);
    // fw-b installs the state and acknowledges it.
    b.receive_sync(&ins);
    let t1 = t + Duration::from_micros(300);
    let acks = pfsync_frames(&b.step(t1));
    assert_eq!(acks.len(), 1, "fw-b sent no INS_ACK");
    assert!(b.state(40010).is_some());
    assert_eq!(b.pfsync(t1)["received"]["INS"], 1);
    // The ack releases the SYN, forwarded as it would have been.
    a.receive_sync(&acks);
    let out = a.step(t1);
    let released: Vec<_> = out.iter().filter(|(i, _)| *i == WAN).collect();
    assert_eq!(released.len(), 1, "{out:?}");
    let f = parse_frame(&released[0].1).unwrap();
    assert_eq!(f.dst, IpAddr::V4(SERVER));
    assert_eq!(f.ttl, 63, "TTL decremented once");
    assert_eq!(&released[0].1[0..6], &SERVER_MAC.0);
    let status = a.pfsync(t1);
    assert_eq!(status["deferred"]["acked"], 1, "{status}");
    assert_eq!(status["deferred"]["held_now"], 0, "{status}");
    assert_eq!(status["received"]["INS_ACK"], 1, "{status}");
    // Later packets of the state are not held.
    a.reply(TcpFlags::SYN | TcpFlags::ACK, 5000, 1001, 40010);
    a.step(t1);
    assert_eq!(a.worker.ports_mut()[LAN as usize].take_tx().len(), 1);
    // The state was announced once: the worker's insert event did not queue a second INS.
    a.step(t + Duration::from_secs(3));
    let status = a.pfsync(t + Duration::from_secs(3));
    assert_eq!(status["sent"]["INS"], 1, "{status}");
}

#[test]
fn defer_holds_only_packets_whose_outbound_pass_creates_a_state() {
    // pf calls pfsync_defer for PF_OUT only: here only `pass in on lan` keeps state (the
    // outbound pass is stateless), so the SYN is forwarded at once and its INS asks for no
    // ack.
    let mut a = Node::inbound_state_only('a', 0x0a, "defer = true");
    let t = Duration::from_secs(10);
    a.tcp(TcpFlags::SYN, 1000, 0, 40012);
    let out = a.step(t);
    assert!(!out.iter().any(|(i, _)| *i == WAN), "{out:?}");
    assert_eq!(
        a.worker.ports_mut()[WAN as usize].take_tx().len(),
        1,
        "forwarded by the worker, not held"
    );
    assert!(a.state(40012).is_some());
    let status = a.pfsync(t);
    assert_eq!(status["deferred"]["held_now"], 0, "{status}");
    assert_eq!(status["deferred"]["held"], 0, "{status}");
}

#[test]
fn defer_releases_after_20_ms_without_an_ack() {
    let mut a = Node::new('a', 0x0a, "defer = true");
    let t = Duration::from_secs(10);
    a.tcp(TcpFlags::SYN, 1000, 0, 40011);
    let out = a.step(t);
    assert!(!out.iter().any(|(i, _)| *i == WAN));
    let out = a.step(t + Duration::from_millis(19));
    assert!(!out.iter().any(|(i, _)| *i == WAN), "released early");
    let out = a.step(t + Duration::from_millis(20));
    assert_eq!(out.iter().filter(|(i, _)| *i == WAN).count(), 1, "{out:?}");
    let status = a.pfsync(t);
    assert_eq!(status["deferred"]["timed_out"], 1, "{status}");
    assert_eq!(status["deferred"]["acked"], 0, "{status}");
}

#[test]
fn a_keyed_pair_syncs_and_refuses_a_sender_without_the_key() {
    let keyed = r#"key = "correct horse battery staple""#;
    let mut a = Node::new('a', 0x0a, keyed);
    let mut b = Node::new('b', 0x0b, keyed);
    let mut plain = Node::new('a', 0x0c, "");
    let t = Duration::from_secs(10);
    handshake(&mut a, 40020, t);
    handshake(&mut plain, 40021, t);
    let from_a = sync_frames(&a.step(t + Duration::from_millis(1001)));
    let from_plain = sync_frames(&plain.step(t + Duration::from_millis(1001)));
    assert_eq!((from_a.len(), from_plain.len()), (1, 1));
    assert!(
        from_a[0].1.len() >= from_plain[0].1.len() + 20,
        "the trailer"
    );
    b.receive_sync(&from_a);
    b.receive_sync(&from_plain);
    b.step(t + Duration::from_millis(1002));
    assert!(b.state(40020).is_some(), "the keyed peer's state was taken");
    assert!(
        b.state(40021).is_none(),
        "the unkeyed sender's state was refused"
    );
    let status = b.pfsync(t);
    assert_eq!(status["authenticated"], true, "{status}");
    assert_eq!(status["errors"]["bad_auth"], 1, "{status}");
}
