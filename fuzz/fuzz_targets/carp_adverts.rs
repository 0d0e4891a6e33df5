//! CARP from an untrusted LAN: arbitrary frames and CARP payloads into the engine of a node
//! with an IPv4, an IPv6 and a unicast group, while time passes and links flap. A peer
//! engine with the same passphrases supplies genuine advertisements, which the input can
//! deliver, replay long after, or corrupt one byte of: a forged or replayed advert must be
//! counted and ignored, never taken for the master's.
//!
//! Checks: no panic; every advertisement the node sends parses back as CARP (protocol 112,
//! TTL or hop limit 255, a configured vhid, the whole header); the transitions it reports
//! are the states it then shows; a group never reports the state it is already in.
//!
//! Input: records `[op, a, b, len, bytes…]`, replayed against a fresh pair of engines.
#![no_main]

use std::net::IpAddr;
use std::path::Path;
use std::sync::OnceLock;
use std::time::Duration;

use libfuzzer_sys::fuzz_target;
use rampart_conf::Config;
use rampart_control::carp::{Action, CarpEngine, DemotionReason, State};
use rampart_dataplane::iface::InterfaceTable;
use rampart_dataplane::wire::parse::parse_frame;

/// `advskew` is filled in per node: the peer (10) is preferred over the node under test (100).
const CONFIG: &str = r#"
[[interface]]
name = "lan"
device = "net_null0"
mac = "02:00:00:00:01:01"
addresses = ["192.0.2.1/24", "2001:db8:1::1/64"]

[[interface]]
name = "wan"
device = "net_null1"
mac = "02:00:00:00:02:01"
addresses = ["198.51.100.1/24"]

[[carp]]
vhid = 1
interface = "lan"
addresses = ["192.0.2.254"]
passphrase = "fuzz-one"
advskew = ADVSKEW
preempt = true

[[carp]]
vhid = 2
interface = "lan"
addresses = ["2001:db8:1::fe"]
passphrase = "fuzz-two"
advbase = 0
advskew = ADVSKEW

[[carp]]
vhid = 3
interface = "wan"
addresses = ["198.51.100.254"]
passphrase = "fuzz-three"
advskew = ADVSKEW
peer = "198.51.100.2"
"#;

const VHIDS: [u8; 3] = [1, 2, 3];
/// CARP's header: version/type, vhid, advskew, demotion, … counter, 20-byte HMAC.
const CARP_HEADER_LEN: usize = 36;

fn config(advskew: u8) -> Config {
    let text = CONFIG.replace("ADVSKEW", &advskew.to_string());
    rampart_conf::load_str(Path::new("fuzz.toml"), &text)
        .expect("valid")
        .config
}

fn configs() -> &'static (Config, Config) {
    static CONFIGS: OnceLock<(Config, Config)> = OnceLock::new();
    CONFIGS.get_or_init(|| (config(100), config(10)))
}

fn engine(config: &Config, cookie: u64) -> CarpEngine {
    let macs: Vec<_> = config.interfaces.iter().map(|i| i.mac.unwrap()).collect();
    let interfaces = InterfaceTable::new(config, &macs);
    CarpEngine::from_config(config, &interfaces, || cookie).expect("engine")
}

/// Checks what the node under test asked for, and keeps its view of each group's state.
fn check(actions: &[Action], engine: &CarpEngine, reported: &mut [Option<State>; 3]) {
    for action in actions {
        let (group, state) = match action {
            Action::SendAdvert { frame, .. } => {
                let parsed = parse_frame(frame).expect("an advertisement we send parses");
                assert_eq!(parsed.protocol, 112, "CARP is IP protocol 112");
                assert_eq!(parsed.ttl, 255, "CARP is sent with TTL / hop limit 255");
                let carp = parsed.l4_bytes(frame);
                assert!(carp.len() >= CARP_HEADER_LEN, "a whole CARP header");
                assert!(VHIDS.contains(&carp[1]), "a configured vhid");
                continue;
            }
            Action::BecomeMaster { group, .. } => (group, State::Master),
            Action::BecomeBackup { group, .. } => (group, State::Backup),
            Action::BecomeInit { group, .. } => (group, State::Init),
            Action::SendGratuitous { frames, .. } => {
                for f in frames {
                    assert!(f.len() >= 14, "a whole Ethernet header");
                }
                continue;
            }
            Action::Warn { .. } => continue,
        };
        let slot = &mut reported[group.index()];
        assert_ne!(
            *slot,
            Some(state),
            "group {} reported {state:?} twice",
            group.0
        );
        *slot = Some(state);
    }
    for (i, slot) in reported.iter().enumerate() {
        if let Some(state) = slot {
            let group = rampart_control::carp::GroupId(i as u16);
            assert_eq!(engine.state(group), Some(*state), "group {i}");
        }
    }
}

fn ip(b: u8) -> (IpAddr, IpAddr) {
    let v4 = |s: &str| s.parse::<IpAddr>().unwrap();
    match b % 4 {
        0 => (v4("192.0.2.2"), v4("224.0.0.18")),
        1 => (v4("fe80::2"), v4("ff02::12")),
        2 => (v4("198.51.100.2"), v4("198.51.100.1")),
        _ => (v4("203.0.113.9"), v4("224.0.0.18")),
    }
}

fuzz_target!(|data: &[u8]| {
    let (mine, theirs) = configs();
    let mut node = engine(mine, 0x6e6f_6465);
    let mut peer = engine(theirs, 0x7065_6572);
    let mut reported = [None; 3];
    let mut now = Duration::from_secs(1);
    // The peer's genuine advertisements, oldest first (bounded).
    let mut heard: Vec<(u16, Vec<u8>)> = Vec::new();
    let mut rest = data;
    let mut steps = 0;
    while rest.len() >= 4 && steps < 256 {
        steps += 1;
        let (op, a, b) = (rest[0], rest[1], rest[2]);
        let len = usize::from(rest[3]).min(rest.len() - 4);
        let bytes = &rest[4..4 + len];
        rest = &rest[4 + len..];
        let actions = match op % 7 {
            // Time passes: both engines run their timers; the peer's adverts are kept.
            0 => {
                now += Duration::from_millis(u64::from(a) * 20 + u64::from(b));
                for action in peer.poll(now) {
                    if let Action::SendAdvert { iface, frame, .. } = action {
                        if heard.len() == 64 {
                            heard.remove(0);
                        }
                        heard.push((iface, frame));
                    }
                }
                node.poll(now)
            }
            // Any frame at all.
            1 => node.handle_frame(u16::from(a & 1), bytes, now),
            // Any CARP payload, from a plausible or an implausible sender, any TTL.
            2 => {
                let (src, dst) = ip(a);
                node.handle_advert(u16::from(b & 1), src, dst, b.wrapping_add(1), bytes, now)
            }
            // A genuine advertisement, now or replayed long after it was sent.
            3 if !heard.is_empty() => {
                let (iface, frame) = &heard[usize::from(a) % heard.len()];
                node.handle_frame(*iface, frame, now)
            }
            // A genuine advertisement with one byte changed: a forgery.
            4 if !heard.is_empty() => {
                let (iface, frame) = &heard[usize::from(a) % heard.len()];
                let mut forged = frame.clone();
                let at = usize::from(b) % forged.len();
                forged[at] ^= bytes.first().copied().unwrap_or(1).max(1);
                node.handle_frame(*iface, &forged, now)
            }
            5 => node.link_state(u16::from(a & 1), b & 1 == 1, now),
            6 => match a % 3 {
                0 => node.demote(DemotionReason::Operator, i64::from(b as i8), now),
                1 => node.set_pfsync_bulk_in_progress(b & 1 == 1, now),
                _ => node.set_operator_demotion(u32::from(b), now),
            },
            _ => Vec::new(),
        };
        check(&actions, &node, &mut reported);
    }
    let actions = node.shutdown(now);
    check(&actions, &node, &mut reported);
});
