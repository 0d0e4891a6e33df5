//! The state events a worker reports to pfsync: an insert per new state, updates coalesced
//! (at once when a TCP peer state moves or after a quiet second, else every
//! `SYNC_UPDATE_BATCH` packets), a deletion when a SYN reuses a closed connection's ports,
//! and none of it without a sync queue.

use std::net::Ipv4Addr;
use std::path::Path;
use std::sync::Arc;

use crossbeam::queue::ArrayQueue;
use rampart_conf::MacAddr;
use rampart_dataplane::io::mem::MemPort;
use rampart_dataplane::state::StateTableConfig;
use rampart_dataplane::wire::build::TcpFrame;
use rampart_dataplane::wire::TcpFlags;
use rampart_dataplane::worker::{Shared, StateEvent, SyncQueue, Worker, SYNC_UPDATE_BATCH};

const CLIENT: Ipv4Addr = Ipv4Addr::new(192, 0, 2, 10);
const SERVER: Ipv4Addr = Ipv4Addr::new(198, 51, 100, 7);
const LAN_MAC: MacAddr = MacAddr([0x02, 0, 0, 0, 1, 1]);
const WAN_MAC: MacAddr = MacAddr([0x02, 0, 0, 0, 2, 1]);

const CONFIG: &str = r#"
[appliance]
host_id = 7

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

[[rule]]
action = "pass"
"#;

struct Rig {
    worker: Worker<MemPort>,
    events: Arc<SyncQueue>,
}

fn rig(sync: bool) -> Rig {
    let config = rampart_conf::load_str(Path::new("t.toml"), CONFIG)
        .unwrap()
        .config;
    let shared = Shared::from_config(
        &config,
        &[LAN_MAC, WAN_MAC],
        StateTableConfig::from_config(&config, 16, 7, 1),
    );
    let ports = vec![MemPort::new(), MemPort::new()];
    let mut worker = Worker::new(0, ports, &shared, Arc::new(ArrayQueue::new(64)));
    let events = Arc::new(ArrayQueue::new(4096));
    if sync {
        worker.set_sync_queue(events.clone());
    }
    Rig { worker, events }
}

impl Rig {
    fn client(&mut self, flags: TcpFlags, seq: u32, ack: u32, now_ms: u64) {
        let f = TcpFrame {
            src_mac: MacAddr([0x02, 0, 0, 0, 1, 0x10]),
            dst_mac: LAN_MAC,
            src: CLIENT.into(),
            dst: SERVER.into(),
            sport: 40000,
            dport: 80,
            seq,
            ack,
            flags,
            ..TcpFrame::default()
        };
        self.worker.ports_mut()[0].inject(&f.to_bytes());
        self.worker.poll(now_ms);
    }

    fn server(&mut self, flags: TcpFlags, seq: u32, ack: u32, now_ms: u64) {
        let f = TcpFrame {
            src_mac: MacAddr([0x02, 0, 0, 0, 2, 7]),
            dst_mac: WAN_MAC,
            src: SERVER.into(),
            dst: CLIENT.into(),
            sport: 80,
            dport: 40000,
            seq,
            ack,
            flags,
            ..TcpFrame::default()
        };
        self.worker.ports_mut()[1].inject(&f.to_bytes());
        self.worker.poll(now_ms);
    }

    fn take(&self) -> Vec<StateEvent> {
        std::iter::from_fn(|| self.events.pop()).collect()
    }
}

fn updates(events: &[StateEvent]) -> Vec<u32> {
    events
        .iter()
        .filter_map(|e| match e {
            StateEvent::Updated { updates, .. } => Some(*updates),
            _ => None,
        })
        .collect()
}

#[test]
fn a_connection_reports_its_insert_and_coalesced_updates() {
    let mut r = rig(true);
    r.client(TcpFlags::SYN, 1000, 0, 10);
    let events = r.take();
    let [StateEvent::Inserted { key, id, creator }] = events[..] else {
        panic!("one insert expected: {events:?}");
    };
    assert_eq!(creator, 7);
    assert_eq!(key.proto(), 6);
    // The handshake moves the peers' TCP states: each packet reports at once.
    r.server(TcpFlags::SYN | TcpFlags::ACK, 5000, 1001, 11);
    r.client(TcpFlags::ACK, 1001, 5001, 12);
    let events = r.take();
    assert_eq!(updates(&events), vec![1, 1], "{events:?}");
    assert!(events
        .iter()
        .all(|e| matches!(e, StateEvent::Updated { id: i, .. } if *i == id)));
    // Established, packets close together: one report per batch.
    let batch = SYNC_UPDATE_BATCH as usize;
    for i in 0..(3 * batch) {
        r.client(TcpFlags::ACK, 1001, 5001, 13 + i as u64);
    }
    let reported = updates(&r.take());
    assert!(
        (2..=3).contains(&reported.len()) && reported.iter().all(|&n| n == batch as u32),
        "{reported:?}"
    );
    // After a quiet second, the next packet reports at once.
    r.client(TcpFlags::ACK, 1001, 5001, 5000);
    assert_eq!(updates(&r.take()), vec![1]);
    // A FIN moves the client's state: reported at once.
    r.client(TcpFlags::FIN | TcpFlags::ACK, 1001, 5001, 5001);
    assert_eq!(updates(&r.take()), vec![1]);
}

#[test]
fn a_syn_reusing_a_closed_connection_reports_the_deletion() {
    let mut r = rig(true);
    r.client(TcpFlags::SYN, 1000, 0, 10);
    r.server(TcpFlags::SYN | TcpFlags::ACK, 5000, 1001, 11);
    r.client(TcpFlags::ACK, 1001, 5001, 12);
    r.client(TcpFlags::RST, 1001, 0, 13);
    let first = r.take();
    let StateEvent::Inserted { id, .. } = first[0] else {
        panic!("{first:?}");
    };
    // A new SYN on the same ports: pf purges the closed state (and drops this SYN).
    r.client(TcpFlags::SYN, 90_000, 0, 2000);
    let events = r.take();
    assert!(
        events.contains(&StateEvent::Deleted { id, creator: 7 }),
        "{events:?}"
    );
}

#[test]
fn without_a_sync_queue_nothing_is_reported() {
    let mut r = rig(false);
    r.client(TcpFlags::SYN, 1000, 0, 10);
    r.server(TcpFlags::SYN | TcpFlags::ACK, 5000, 1001, 11);
    assert!(r.take().is_empty());
    assert_eq!(r.worker.stats().sync_events.get(), 0);
}
