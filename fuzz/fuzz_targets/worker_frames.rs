//! The whole worker pipeline on arbitrary frames: never panics, and every frame is either
//! transmitted, dropped with a counted reason, or handed to the control core, which then
//! handles it as `rampart run` does (ARP and ND for neighbour resolution, CARP, ICMP for
//! its own addresses) without panicking or sending a runt.
//!
//! Input: records of `[port, len_hi, len_lo, frame bytes…]`, delivered one per poll with an
//! advancing clock, to a firewall with a CARP VIP (MASTER), static neighbours and rules.
#![no_main]

use std::path::Path;
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use crossbeam::queue::ArrayQueue;
use libfuzzer_sys::fuzz_target;
use rampart_conf::Config;
use rampart_control::runtime::ControlPlane;
use rampart_dataplane::io::mem::MemPort;
use rampart_dataplane::state::StateTableConfig;
use rampart_dataplane::worker::{Shared, ToControl, Worker};

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
addresses = ["198.51.100.1/24", "2001:db8:2::1/64"]

[[route]]
destination = "0.0.0.0/0"
gateway = "198.51.100.254"

[[neighbor]]
interface = "wan"
address = "198.51.100.254"
mac = "02:00:00:00:02:fe"

[[carp]]
vhid = 1
interface = "lan"
addresses = ["192.0.2.254", "2001:db8:1::fe"]
passphrase = "fuzz"

[limits]
states = 1000

[[rule]]
action = "pass"
direction = "in"
on = "lan"

[[rule]]
action = "pass"
direction = "out"

[[rule]]
action = "block"
return = true
proto = "tcp"
to_port = 113

[[rule]]
action = "block"
return = true
proto = "udp"
to_port = 7
"#;

fn config() -> &'static Config {
    static CONFIG_CELL: OnceLock<Config> = OnceLock::new();
    CONFIG_CELL.get_or_init(|| {
        rampart_conf::load_str(Path::new("fuzz.toml"), CONFIG)
            .expect("valid")
            .config
    })
}

fuzz_target!(|data: &[u8]| {
    let config = config();
    let macs: Vec<_> = config.interfaces.iter().map(|i| i.mac.unwrap()).collect();
    let mut states = StateTableConfig::from_config(config, 4, 1, 1);
    states.limit = 1000;
    let shared = Shared::from_config(config, &macs, states);
    shared.vips.set_master(0, true);
    let control = Arc::new(ArrayQueue::new(16));
    let mut worker = Worker::new(
        0,
        vec![MemPort::new(), MemPort::new()],
        &shared,
        control.clone(),
    );
    let mut plane =
        ControlPlane::new(config, shared.clone(), || 0x6675_7a7a).expect("control plane");
    let mut sent = Vec::new();
    let stats = worker.stats();
    let mut rest = data;
    let mut now_ms = 1_000;
    let mut delivered = 0u64;
    while rest.len() >= 3 {
        let port = (rest[0] & 1) as usize;
        let len = (usize::from(rest[1]) << 8 | usize::from(rest[2])).min(rest.len() - 3);
        let frame = &rest[3..3 + len];
        rest = &rest[3 + len..];
        worker.ports_mut()[port].inject(frame);
        worker.poll(now_ms);
        delivered += 1;
        now_ms += 250;
        let now = Duration::from_millis(now_ms);
        while let Some(msg) = control.pop() {
            if let ToControl::Frame { buf, .. } = &msg {
                assert!(!buf.is_empty());
            }
            plane.handle(msg, now, &mut sent);
        }
        plane.tick(now, &mut sent);
        for (iface, frame) in sent.drain(..) {
            assert!(
                usize::from(iface) < config.interfaces.len(),
                "sent on an interface that exists"
            );
            assert!(frame.len() >= 14, "the control core sent a runt frame");
        }
        for p in worker.ports_mut() {
            for f in p.take_tx() {
                assert!(f.len() >= 14, "transmitted a runt frame");
            }
        }
    }
    // Every delivered frame was accounted for.
    let rx: u64 = stats.ports.iter().map(|p| p.rx_packets.get()).sum();
    assert_eq!(rx, delivered);
});
