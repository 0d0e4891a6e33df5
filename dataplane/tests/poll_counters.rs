//! A worker counts its polls, the polls that found work, the frames they found and the
//! receive bursts that came back full, which `rampart ctl info` shows as each worker's load.

use std::net::Ipv4Addr;
use std::path::Path;
use std::sync::Arc;

use crossbeam::queue::ArrayQueue;
use rampart_conf::MacAddr;
use rampart_dataplane::io::mem::MemPort;
use rampart_dataplane::io::BURST;
use rampart_dataplane::state::StateTableConfig;
use rampart_dataplane::wire::build::UdpFrame;
use rampart_dataplane::worker::{Shared, Worker};

const LAN_MAC: MacAddr = MacAddr([0x02, 0, 0, 0, 1, 1]);
const WAN_MAC: MacAddr = MacAddr([0x02, 0, 0, 0, 2, 1]);

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

[[rule]]
action = "pass"
"#;

#[test]
fn polls_busy_polls_and_frames_are_counted() {
    let config = rampart_conf::load_str(Path::new("t.toml"), CONFIG)
        .unwrap()
        .config;
    let shared = Shared::from_config(
        &config,
        &[LAN_MAC, WAN_MAC],
        StateTableConfig::from_config(&config, 16, 1, 1),
    );
    let ports = vec![MemPort::new(), MemPort::new()];
    let mut worker = Worker::new(0, ports, &shared, Arc::new(ArrayQueue::new(64)));
    let stats = worker.stats();
    let frame = |sport: u16| {
        UdpFrame {
            src_mac: MacAddr([0x02, 0, 0, 0, 1, 0x10]),
            dst_mac: LAN_MAC,
            src: Ipv4Addr::new(192, 0, 2, 10).into(),
            dst: Ipv4Addr::new(198, 51, 100, 7).into(),
            sport,
            dport: 53,
            ..UdpFrame::default()
        }
        .to_bytes()
    };
    // Three empty polls, a poll with 5 frames, one with a full burst and 3 left over, then
    // the poll that takes those 3.
    for _ in 0..3 {
        assert_eq!(worker.poll(0), 0);
    }
    for i in 0..5 {
        worker.ports_mut()[0].inject(&frame(1000 + i));
    }
    assert_eq!(worker.poll(1), 5);
    for i in 0..BURST as u16 + 3 {
        worker.ports_mut()[0].inject(&frame(2000 + i));
    }
    assert_eq!(worker.poll(2), BURST);
    assert_eq!(worker.poll(3), 3);
    assert_eq!(stats.polls.get(), 6);
    assert_eq!(stats.busy_polls.get(), 3);
    assert_eq!(stats.polled_frames.get(), 5 + BURST as u64 + 3);
    assert_eq!(stats.full_bursts.get(), 1, "one burst came back full");
    assert_eq!(stats.forwarded.get(), 5 + BURST as u64 + 3);
    // The worker loop, not `poll`, naps.
    assert_eq!(stats.naps.get(), 0);
}
