//! Tests of the pfsync codec and engine. The engine runs on a virtual clock: two nodes, each
//! with a real `StateTable`, exchange frames over a simulated link.

mod engine;
mod wire;

use std::collections::BTreeMap;
use std::net::{IpAddr, Ipv4Addr};
use std::time::Duration;

use rampart_conf::Timeouts;
use rampart_dataplane::state::tcp::{tcps, Peer};
use rampart_dataplane::state::{
    State, StateKey, StateTable, StateTableConfig, Timeout, TimeoutTable, COVER_IN, COVER_OUT,
    STATE_INITIATOR_IS_1,
};

use super::{
    apply_change, Action, BulkEvent, Datagram, PfsyncConfig, PfsyncEngine, StateId, StateStore,
};

/// A small deterministic PRNG (xorshift64*), so the "random" tests replay.
pub(super) struct Rng(u64);

impl Rng {
    pub fn new(seed: u64) -> Rng {
        Rng(seed | 1)
    }

    pub fn next_u64(&mut self) -> u64 {
        let mut x = self.0;
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        self.0 = x;
        x.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }

    pub fn below(&mut self, n: u64) -> u64 {
        self.next_u64() % n.max(1)
    }

    pub fn byte(&mut self) -> u8 {
        self.next_u64() as u8
    }

    pub fn bytes<const N: usize>(&mut self) -> [u8; N] {
        let mut out = [0u8; N];
        for b in &mut out {
            *b = self.byte();
        }
        out
    }
}

pub(super) fn hex(text: &str) -> Vec<u8> {
    text.split_whitespace()
        .map(|b| u8::from_str_radix(b, 16).unwrap())
        .collect()
}

/// The clock tests start at (states' `last_ms` and `created_s` are on it).
pub(super) const T0: Duration = Duration::from_secs(1000);

pub(super) fn ms(now: Duration) -> u64 {
    now.as_millis() as u64
}

pub(super) fn table(host_id: u32, limit: usize) -> StateTable {
    StateTable::new(StateTableConfig {
        limit,
        shards: 4,
        timeouts: TimeoutTable::new(&Timeouts::default(), limit as u32),
        creator: host_id,
        first_id: u64::from(host_id) << 32 | 1,
    })
}

/// An established TCP connection from 10.x.y.z to 198.51.100.7:443, not yet in a table.
pub(super) fn tcp_state(i: u32, now: Duration) -> State {
    let client = IpAddr::V4(Ipv4Addr::from(0x0a00_0000 + i));
    let server: IpAddr = "198.51.100.7".parse().unwrap();
    let (key, client_first) = StateKey::new(6, client, 20000 + (i % 40000) as u16, server, 443);
    State {
        key,
        peers: [
            Peer {
                seqlo: 1_000 + i,
                seqhi: 70_000 + i,
                max_win: 512,
                wscale: 0x87,
                state: tcps::ESTABLISHED,
            },
            Peer {
                seqlo: 500_000 + i,
                seqhi: 600_000 + i,
                max_win: 1024,
                wscale: 0x82,
                state: tcps::ESTABLISHED,
            },
        ],
        last_ms: ms(now),
        packets: [3, 2],
        bytes: [300, 200],
        id: 0,
        created_s: (ms(now) / 1000) as u32 - 5,
        creator: 0,
        rule: 2,
        iface: 0,
        timeout: Timeout::TcpEstablished,
        covers: COVER_IN | COVER_OUT,
        flags: if client_first {
            0
        } else {
            STATE_INITIATOR_IS_1
        },
    }
}

/// A UDP flow from 2001:db8::x to 2001:db8:1::53 port 53.
pub(super) fn udp_state(i: u32, now: Duration) -> State {
    let client = IpAddr::V6(format!("2001:db8::{:x}", i + 1).parse().unwrap());
    let server: IpAddr = "2001:db8:1::53".parse().unwrap();
    let (key, client_first) = StateKey::new(17, client, 30000, server, 53);
    State {
        key,
        peers: [
            Peer {
                state: 2,
                ..Peer::default()
            },
            Peer {
                state: 1,
                ..Peer::default()
            },
        ],
        last_ms: ms(now),
        packets: [1, 1],
        bytes: [80, 120],
        id: 0,
        created_s: (ms(now) / 1000) as u32,
        creator: 0,
        rule: 0,
        iface: 0,
        timeout: Timeout::UdpMultiple,
        covers: COVER_OUT,
        flags: outbound_flags(client_first),
    }
}

pub(super) fn outbound_flags(client_first: bool) -> u8 {
    let mut flags = rampart_dataplane::state::STATE_OUTBOUND;
    if !client_first {
        flags |= STATE_INITIATOR_IS_1;
    }
    flags
}

/// One firewall: its table and its pfsync engine, with what CARP would have been told.
pub(super) struct Node {
    pub engine: PfsyncEngine,
    pub table: StateTable,
    pub bulk_events: Vec<BulkEvent>,
    pub apply_errors: usize,
    /// States whose held packet the engine released (INS_ACK received).
    pub released: Vec<StateId>,
}

impl Node {
    pub fn new(host_id: u32, addr: Ipv4Addr, configure: impl FnOnce(&mut PfsyncConfig)) -> Node {
        let mut config = PfsyncConfig::new(host_id);
        config.own_addresses = vec![addr];
        configure(&mut config);
        Node {
            engine: PfsyncEngine::new(config),
            table: table(host_id, 100_000),
            bulk_events: Vec::new(),
            apply_errors: 0,
            released: Vec::new(),
        }
    }

    /// A worker creates `state`: in the table (which stamps id and creator), then the event.
    pub fn create(&mut self, state: State, now: Duration) -> State {
        let hash = self.table.hash(&state.key);
        let stored = {
            let mut shard = self.table.lock(hash);
            let idx = shard.insert(hash, state).unwrap();
            shard.get(idx).clone()
        };
        self.engine.state_inserted(&stored, now);
        stored
    }

    /// A worker updates the state with `key`.
    pub fn update(&mut self, key: &StateKey, now: Duration, f: impl FnOnce(&mut State)) -> State {
        let hash = self.table.hash(key);
        let updated = {
            let mut shard = self.table.lock(hash);
            let idx = shard.find(key, hash, ms(now)).expect("state to update");
            let state = shard.get_mut(idx);
            f(state);
            state.clone()
        };
        self.engine.state_updated(&updated, now);
        updated
    }

    /// A worker removes the state with `key`.
    pub fn delete(&mut self, key: &StateKey, now: Duration) {
        let hash = self.table.hash(key);
        let id = {
            let mut shard = self.table.lock(hash);
            let idx = shard.find(key, hash, ms(now)).expect("state to delete");
            let s = shard.get(idx);
            let id = StateId::new(s.id, s.creator);
            shard.remove(idx, hash);
            id
        };
        self.engine.state_deleted(id, now);
    }

    pub fn get(&self, key: &StateKey) -> Option<State> {
        StateStore::find(&self.table, key)
    }

    /// Carries out `actions`: applies changes, records bulk events, returns the frames.
    pub fn run(&mut self, actions: Vec<Action>, now: Duration) -> Vec<Datagram> {
        let mut sends = Vec::new();
        for action in actions {
            match action {
                Action::Send(d) => sends.push(d),
                Action::Apply(change) => {
                    if let Err(e) = apply_change(&self.table, &change, ms(now)) {
                        self.apply_errors += 1;
                        self.engine.apply_failed(&change, e);
                    }
                }
                Action::Bulk(event) => self.bulk_events.push(event),
                Action::Release(id) => self.released.push(id),
            }
        }
        sends
    }

    pub fn poll(&mut self, now: Duration) -> Vec<Datagram> {
        let actions = self.engine.poll(now, &self.table);
        self.run(actions, now)
    }

    /// A frame from `from` arrives: handled, applied, then polled (replies leave).
    pub fn receive(&mut self, from: Ipv4Addr, datagram: &Datagram, now: Duration) -> Vec<Datagram> {
        let actions = self
            .engine
            .handle_payload(from, &datagram.payload, now, &self.table);
        let mut sends = self.run(actions, now);
        sends.extend(self.poll(now));
        sends
    }

    /// Every state by identity.
    pub fn states(&self) -> BTreeMap<StateId, State> {
        let mut out = BTreeMap::new();
        self.table.for_each(|s| {
            out.insert(StateId::new(s.id, s.creator), s.clone());
        });
        out
    }
}

/// Two nodes on one link, with the frames each sent.
pub(super) struct Pair {
    pub a: Node,
    pub b: Node,
    /// Frames A → B and B → A, as sent (delivered or not).
    pub a_sent: Vec<Datagram>,
    pub b_sent: Vec<Datagram>,
}

pub(super) const ADDR_A: Ipv4Addr = Ipv4Addr::new(10, 255, 0, 1);
pub(super) const ADDR_B: Ipv4Addr = Ipv4Addr::new(10, 255, 0, 2);

impl Pair {
    pub fn new() -> Pair {
        Pair::with(|_| {})
    }

    pub fn with(configure: impl Fn(&mut PfsyncConfig)) -> Pair {
        Pair {
            a: Node::new(0xa, ADDR_A, &configure),
            b: Node::new(0xb, ADDR_B, &configure),
            a_sent: Vec::new(),
            b_sent: Vec::new(),
        }
    }

    /// Polls both nodes at `now` and delivers frames both ways until the link is quiet.
    pub fn settle(&mut self, now: Duration) {
        let mut to_b = self.a.poll(now);
        let mut to_a = self.b.poll(now);
        for _ in 0..1000 {
            if to_a.is_empty() && to_b.is_empty() {
                return;
            }
            let mut next_to_a = Vec::new();
            let mut next_to_b = Vec::new();
            for d in to_b.drain(..) {
                self.a_sent.push(d.clone());
                next_to_a.extend(self.b.receive(ADDR_A, &d, now));
            }
            for d in to_a.drain(..) {
                self.b_sent.push(d.clone());
                next_to_b.extend(self.a.receive(ADDR_B, &d, now));
            }
            to_a = next_to_a;
            to_b = next_to_b;
        }
        panic!("the link never went quiet");
    }
}

/// The fields two nodes must agree on for one state (not `last_ms`, which is rebuilt from
/// whole seconds, and not the counters, which UPD_C does not carry).
pub(super) fn synced_view(s: &State) -> impl PartialEq + std::fmt::Debug {
    (
        s.key, s.peers, s.id, s.creator, s.timeout, s.flags, s.covers, s.rule,
    )
}
