//! The benchmark's appliance and its traffic: established TCP connections from clients on
//! `lan` (198.18.0.0/15) to one server on `wan` (203.0.113.7:443).
//!
//! Kept identical to `dataplane/benches/worker.rs` (addresses, sequence numbers, rules,
//! limits), so a DPDK figure and an in-memory figure measure the same per-packet work.

use std::net::{IpAddr, Ipv4Addr};
use std::path::Path;

use anyhow::{anyhow, Result};
use rampart_conf::Config;
use rampart_dataplane::state::tcp::{tcps, Peer};
use rampart_dataplane::state::{
    State, StateKey, StateTable, Timeout, COVER_IN, COVER_OUT, STATE_INITIATOR_IS_1,
};
use rampart_dataplane::wire::build::TcpFrame;
use rampart_dataplane::wire::TcpFlags;

pub const LAN_MAC: &str = "02:00:00:00:01:01";
pub const WAN_MAC: &str = "02:00:00:00:02:01";
/// The clients' side of the link (the generator's "MAC").
pub const CLIENT_MAC: &str = "02:00:00:00:01:10";
pub const SERVER: Ipv4Addr = Ipv4Addr::new(203, 0, 113, 7);
pub const CLIENT_SEQ: u32 = 1_000_000;
pub const SERVER_SEQ: u32 = 5_000_000;
/// ACK|PSH: a data segment of an established connection.
pub const ACK_PSH: u8 = 0x18;

/// Rules that never match the benchmark's traffic, ahead of the two that pass it: the same
/// ten as the in-memory `established/N` case (an established packet evaluates none of them).
pub const FILLER_RULES: usize = 10;

/// Where the appliance's two interfaces are and how its lcores poll.
pub struct Topology<'a> {
    pub lan_device: &'a str,
    pub wan_device: &'a str,
    pub control_lcore: u32,
    pub worker_lcore: u32,
    pub eal_args: &'a [&'a str],
    pub mbufs: u32,
    pub mbuf_cache: u32,
}

/// The appliance's configuration: `lan` and `wan`, the server as a static neighbour on
/// `wan`, a state limit of `limit` (which sizes the state index, as on an appliance),
/// adaptive timeouts out of reach, and `filler_rules` non-matching rules before
/// `pass in on lan` and `pass out on wan`.
pub fn config_text(topology: &Topology<'_>, filler_rules: usize, limit: u32) -> String {
    let eal_args = topology
        .eal_args
        .iter()
        .map(|a| format!("{a:?}"))
        .collect::<Vec<_>>()
        .join(", ");
    let mut s = format!(
        r#"
[dpdk]
control_lcore = {control}
worker_lcores = [{worker}]
eal_args = [{eal_args}]
mbufs = {mbufs}
mbuf_cache = {cache}
poll = "busy"

[[interface]]
name = "lan"
device = "{lan}"
mac = "{LAN_MAC}"
addresses = ["198.18.0.1/15"]

[[interface]]
name = "wan"
device = "{wan}"
mac = "{WAN_MAC}"
addresses = ["203.0.113.1/24"]

[[neighbor]]
interface = "wan"
address = "{SERVER}"
mac = "02:00:00:00:02:07"

[limits]
states = {limit}

# Adaptive timeouts off for the benchmark: beyond any fill reached here.
[timeouts]
adaptive.start = {start}
adaptive.end = {end}
"#,
        control = topology.control_lcore,
        worker = topology.worker_lcore,
        mbufs = topology.mbufs,
        cache = topology.mbuf_cache,
        lan = topology.lan_device,
        wan = topology.wan_device,
        start = limit as u64 * 2,
        end = limit as u64 * 3,
    );
    for i in 0..filler_rules {
        if i % 2 == 0 {
            s.push_str(&format!(
                "[[rule]]\naction = \"block\"\nfrom = \"192.0.2.{}\"\n",
                i % 250
            ));
        } else {
            s.push_str(&format!(
                "[[rule]]\naction = \"block\"\nproto = \"tcp\"\nto_port = {}\n",
                1000 + i
            ));
        }
    }
    s.push_str("[[rule]]\naction = \"pass\"\ndirection = \"in\"\non = \"lan\"\n");
    s.push_str("[[rule]]\naction = \"pass\"\ndirection = \"out\"\non = \"wan\"\n");
    s
}

/// Loads [`config_text`] through the appliance's own loader (so it is validated as a
/// `rampart run` configuration would be).
pub fn load_config(text: &str) -> Result<Config> {
    rampart_conf::load_str(Path::new("rampart-bench.toml"), text)
        .map(|loaded| loaded.config)
        .map_err(|diags| {
            let lines: Vec<String> = diags.iter().map(ToString::to_string).collect();
            anyhow!(
                "the benchmark configuration is invalid:\n{}",
                lines.join("\n")
            )
        })
}

/// Client `i`: a source address in 198.18.0.0/15 and a port, towards the server.
pub fn client(i: u32) -> (IpAddr, u16) {
    let addr = Ipv4Addr::from(0xc612_0000 + (i % 100_000) + 2);
    (IpAddr::V4(addr), 1024 + (i / 100_000) as u16)
}

/// A segment of connection `i` from the client, as it arrives on `lan` (60 bytes: Ethernet,
/// IPv4, TCP and 6 bytes of data; a 64-byte frame on the wire with its FCS).
pub fn segment(i: u32, flags: u8) -> Vec<u8> {
    let (src, sport) = client(i);
    TcpFrame {
        src_mac: CLIENT_MAC.parse().expect("a MAC"),
        dst_mac: LAN_MAC.parse().expect("a MAC"),
        src,
        dst: IpAddr::V4(SERVER),
        sport,
        dport: 443,
        seq: CLIENT_SEQ + 1,
        ack: SERVER_SEQ + 1,
        flags: TcpFlags(flags),
        window: 65535,
        payload: vec![0u8; 6],
        ..TcpFrame::default()
    }
    .to_bytes()
}

/// Inserts connections `0..n` as established, straight into the table: creating them is
/// not what the forwarding benchmark measures. Every segment [`segment`] builds for them
/// passes pf's window check, again and again (same sequence numbers, inside the window).
pub fn fill(states: &StateTable, n: u32) -> Result<()> {
    let peer = |seq: u32| Peer {
        seqlo: seq + 1,
        seqhi: seq + 1 + (1 << 24),
        max_win: 65535,
        wscale: 0,
        state: tcps::ESTABLISHED,
    };
    for i in 0..n {
        let (src, sport) = client(i);
        let (key, src_first) = StateKey::new(6, src, sport, IpAddr::V4(SERVER), 443);
        let st = State {
            key,
            id: 0,
            created_s: 0,
            last_ms: 0,
            packets: [0; 2],
            bytes: [0; 2],
            peers: [peer(CLIENT_SEQ), peer(SERVER_SEQ)],
            creator: 0,
            rule: 0,
            iface: 0,
            timeout: Timeout::TcpEstablished,
            covers: COVER_IN | COVER_OUT,
            flags: if src_first { 0 } else { STATE_INITIATOR_IS_1 },
        };
        let h = states.hash(&key);
        states
            .lock(h)
            .insert(h, st)
            .map_err(|e| anyhow!("inserting state {i} of {n}: {e:?}"))?;
    }
    Ok(())
}

/// Frame templates for `flows` connections drawn at random (with repeats) among `states`,
/// in the order the generator sends them: one flat buffer of equal-length frames, so the
/// generator walks it sequentially (prefetcher-friendly) while the worker sees the flows in
/// random order.
pub struct Templates {
    bytes: Vec<u8>,
    frame_len: usize,
}

impl Templates {
    pub fn new(states: u32, flows: u32) -> Templates {
        Templates::among(0..states, flows)
    }

    /// `flows` connections drawn at random among connections `range` only (a worker's
    /// share of the table, as RSS would give it).
    pub fn among(range: std::ops::Range<u32>, flows: u32) -> Templates {
        // The worker benchmark's xorshift and seed: the same flows in the same order.
        let mut rng = 0x2545_f491_4f6c_dd1du64;
        let frame_len = segment(0, ACK_PSH).len();
        let mut bytes = Vec::with_capacity(frame_len * flows as usize);
        let n = u64::from(range.end.saturating_sub(range.start)).max(1);
        for _ in 0..flows {
            rng ^= rng << 13;
            rng ^= rng >> 7;
            rng ^= rng << 17;
            let frame = segment(range.start + (rng % n) as u32, ACK_PSH);
            // Every client's segment has the same layout (IPv4, no options).
            assert_eq!(frame.len(), frame_len);
            bytes.extend_from_slice(&frame);
        }
        Templates { bytes, frame_len }
    }

    pub fn len(&self) -> usize {
        self.bytes.len() / self.frame_len
    }

    pub fn is_empty(&self) -> bool {
        self.bytes.is_empty()
    }

    pub fn frame_len(&self) -> usize {
        self.frame_len
    }

    #[inline]
    pub fn get(&self, i: usize) -> &[u8] {
        &self.bytes[i * self.frame_len..(i + 1) * self.frame_len]
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rampart_dataplane::wire::parse::parse_frame;

    const TOPOLOGY: Topology<'static> = Topology {
        lan_device: "net_ring0",
        wan_device: "net_null0,no-rx=1",
        control_lcore: 0,
        worker_lcore: 1,
        eal_args: &["--no-pci", "--in-memory"],
        mbufs: 16383,
        mbuf_cache: 256,
    };

    #[test]
    fn the_configuration_loads_as_an_appliance_configuration() {
        let config = load_config(&config_text(&TOPOLOGY, FILLER_RULES, 1100)).unwrap();
        assert_eq!(config.interfaces.len(), 2);
        assert_eq!(config.interfaces[1].device, "net_null0,no-rx=1");
        assert_eq!(config.dpdk.poll, rampart_conf::PollMode::Busy);
        assert_eq!(config.rules.len(), FILLER_RULES + 2);
    }

    #[test]
    fn templates_are_parseable_segments_of_filled_connections() {
        let t = Templates::new(1000, 64);
        assert_eq!(t.len(), 64);
        assert_eq!(t.frame_len(), 60);
        for i in 0..t.len() {
            let f = parse_frame(t.get(i)).expect("a valid frame");
            let (IpAddr::V4(src), IpAddr::V4(dst)) = (f.src, f.dst) else {
                panic!("IPv4 expected");
            };
            assert_eq!(dst, SERVER);
            let index = u32::from(src) - 0xc612_0002;
            assert!(index < 1000, "client {index} has a state");
        }
    }
}
