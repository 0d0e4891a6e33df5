//! pfsync from an untrusted sync link: arbitrary bytes as the payload of IP protocol 240, and
//! as whole Ethernet frames, into the engine with a real state table. Never panics; whatever
//! the engine asks to change is applied (as the control core does), and the replies it then
//! sends parse back as pfsync.
//!
//! Input: the first byte picks payload (even) or whole frame (odd); the rest is the data. The
//! engine keeps its state across inputs, so sequences (a bulk, updates of imported states)
//! are reached too.
#![no_main]

use std::net::Ipv4Addr;
use std::sync::{Mutex, OnceLock};
use std::time::Duration;

use libfuzzer_sys::fuzz_target;
use rampart_control::pfsync::{apply_change, wire, Action, PfsyncConfig, PfsyncEngine};
use rampart_conf::Timeouts;
use rampart_dataplane::state::{StateTable, StateTableConfig, TimeoutTable};

struct Node {
    engine: PfsyncEngine,
    table: StateTable,
    now: Duration,
}

fn node() -> &'static Mutex<Node> {
    static NODE: OnceLock<Mutex<Node>> = OnceLock::new();
    NODE.get_or_init(|| {
        let mut config = PfsyncConfig::new(0x0a);
        config.own_addresses = vec![Ipv4Addr::new(198, 18, 0, 1)];
        // Twins too: the peer's requests, updates and deletions of them, and bulks with them.
        config.split_states = true;
        Mutex::new(Node {
            engine: PfsyncEngine::new(config),
            table: StateTable::new(StateTableConfig {
                limit: 4096,
                shards: 16,
                timeouts: TimeoutTable::new(&Timeouts::default(), 4096),
                creator: 0x0a,
                first_id: 1,
            }),
            now: Duration::from_secs(100),
        })
    })
}

fn carry_out(node: &mut Node, actions: Vec<Action>) {
    let now_ms = node.now.as_millis() as u64;
    for action in actions {
        match action {
            Action::Apply(change) => {
                if let Err(e) = apply_change(&node.table, &change, now_ms) {
                    node.engine.apply_failed(&change, e);
                }
            }
            Action::Send(d) => {
                // What we send must be pfsync we can read back.
                assert!(wire::parse(&d.payload).is_ok(), "unreadable reply");
            }
            Action::Bulk(_) | Action::Release(_) => {}
        }
    }
}

fuzz_target!(|data: &[u8]| {
    let Some((&mode, rest)) = data.split_first() else {
        return;
    };
    let mut guard = node().lock().unwrap_or_else(|e| e.into_inner());
    let node = &mut *guard;
    node.now += Duration::from_millis(u64::from(mode >> 1) * 10);
    let actions = if mode & 1 == 0 {
        node.engine
            .handle_payload(Ipv4Addr::new(198, 18, 0, 2), rest, node.now, &node.table)
    } else {
        node.engine.handle_frame(0, rest, node.now, &node.table)
    };
    carry_out(node, actions);
    let actions = node.engine.poll(node.now, &node.table);
    carry_out(node, actions);
    if node.engine.bulk_sending() {
        let actions = node.engine.bulk_next(node.now, 4, &node.table);
        carry_out(node, actions);
    }
});
