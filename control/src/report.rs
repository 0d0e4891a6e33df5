//! What the management socket reports, as JSON: pfctl's views of a running appliance.
//!
//! Counters are per worker (written without atomics' read-modify-write by one core each)
//! and summed here, on read.

use std::time::Duration;

use rampart_conf::Config;
use rampart_dataplane::state::{State, StateTable, STATE_OUTBOUND};
use rampart_dataplane::worker::{DropReason, WorkerStats};
use serde_json::{json, Value};

/// A port's counters as the device reports them (DPDK's `rte_eth_stats`), when available.
#[derive(Clone, Copy, Debug, Default)]
pub struct DeviceStats {
    pub ipackets: u64,
    pub opackets: u64,
    pub ibytes: u64,
    pub obytes: u64,
    /// Received by the NIC but dropped for lack of RX descriptors: the worker was too slow.
    pub imissed: u64,
    pub ierrors: u64,
    pub oerrors: u64,
    pub rx_nombuf: u64,
}

/// Everything a report reads.
pub struct ReportContext<'a> {
    pub config: &'a Config,
    pub states: &'a StateTable,
    pub workers: &'a [std::sync::Arc<WorkerStats>],
    pub uptime: Duration,
    /// Per interface, when the backend has device counters.
    pub devices: Vec<Option<DeviceStats>>,
    /// Frames the control core handled, and neighbours it knows.
    pub control: Value,
    /// The current monotonic time in ms (the clock states use).
    pub now_ms: u64,
}

fn sum(workers: &[std::sync::Arc<WorkerStats>], f: impl Fn(&WorkerStats) -> u64) -> u64 {
    workers.iter().map(|w| f(w)).sum()
}

/// `pfctl -s info`: state-table totals, drops by reason, per-port counters.
pub fn info(cx: &ReportContext) -> Value {
    let w = cx.workers;
    let st = cx.states.stats();
    // pfctl's Counters: packets dropped by each reason, except `match`, which pf counts for
    // every packet the rules decided (REASON_SET(PFRES_MATCH) after the rule loop, pass or
    // block): the rule evaluations. The drops by rules are `packets.blocked`.
    let evaluations = sum(w, |s| s.rule_evaluations.get());
    let counters: serde_json::Map<String, Value> = DropReason::ALL
        .iter()
        .map(|r| {
            let n = match r {
                DropReason::Match => evaluations,
                _ => sum(w, |s| s.dropped(*r)),
            };
            (r.name().to_string(), json!(n))
        })
        .collect();
    let ports: Vec<Value> = cx
        .config
        .interfaces
        .iter()
        .enumerate()
        .map(|(i, iface)| {
            let mut p = json!({
                "name": iface.name,
                "device": iface.device,
                "rx_packets": sum(w, |s| s.ports[i].rx_packets.get()),
                "rx_bytes": sum(w, |s| s.ports[i].rx_bytes.get()),
                "tx_packets": sum(w, |s| s.ports[i].tx_packets.get()),
                "tx_bytes": sum(w, |s| s.ports[i].tx_bytes.get()),
                "tx_dropped": sum(w, |s| s.ports[i].tx_dropped.get()),
            });
            if let Some(Some(d)) = cx.devices.get(i) {
                p["missed"] = json!(d.imissed);
                p["rx_errors"] = json!(d.ierrors);
                p["tx_errors"] = json!(d.oerrors);
                p["rx_nombuf"] = json!(d.rx_nombuf);
                p["device_rx_packets"] = json!(d.ipackets);
                p["device_tx_packets"] = json!(d.opackets);
            }
            p
        })
        .collect();
    json!({
        "status": {
            "uptime_s": cx.uptime.as_secs(),
            "host_id": format!("{:#010x}", cx.states.creator()),
            "name": cx.config.appliance.name,
            "workers": w.len(),
        },
        "state_table": {
            "current": st.current,
            "limit": cx.states.limit(),
            "searches": sum(w, |s| s.state_searches.get()),
            "inserts": st.inserts,
            "removals": st.removals,
            "refused": st.refused,
        },
        "counters": counters,
        "packets": {
            "passed": sum(w, |s| s.passed.get()),
            "blocked": sum(w, |s| s.dropped(DropReason::Match)),
            "forwarded": sum(w, |s| s.forwarded.get()),
            "answered": sum(w, |s| s.replies.get()),
            "to_control": sum(w, |s| s.to_control.get()),
            "sync_events": sum(w, |s| s.sync_events.get()),
            "sync_events_lost": sum(w, |s| s.sync_events_lost.get()),
            "rule_evaluations": evaluations,
        },
        "ports": ports,
        "pollers": pollers(cx),
        "control": cx.control,
    })
}

/// Each worker's poll loop: how busy it is (VPP's `show runtime` in brief). A worker whose
/// receive bursts come back full is saturated; one that naps has room to spare.
fn pollers(cx: &ReportContext) -> Vec<Value> {
    cx.workers
        .iter()
        .enumerate()
        .map(|(i, s)| {
            let busy = s.busy_polls.get();
            let frames = s.polled_frames.get();
            json!({
                "worker": i,
                "lcore": cx.config.dpdk.worker_lcores.get(i),
                "polls": s.polls.get(),
                "busy_polls": busy,
                "frames": frames,
                "full_bursts": s.full_bursts.get(),
                "frames_per_busy_poll": if busy == 0 {
                    0.0
                } else {
                    (frames as f64 / busy as f64 * 10.0).round() / 10.0
                },
                "naps": s.naps.get(),
                "nap_ms": s.nap_us.get() / 1000,
            })
        })
        .collect()
}

fn endpoint(addr: std::net::IpAddr, port: u16, with_port: bool) -> String {
    match (addr, with_port) {
        (std::net::IpAddr::V6(a), true) => format!("[{a}]:{port}"),
        (a, true) => format!("{a}:{port}"),
        (a, false) => a.to_string(),
    }
}

fn state_json(cx: &ReportContext, s: &State) -> Value {
    let ((a0, p0), (a1, p1)) = s.key.endpoints();
    let proto = s.key.proto();
    let ports = proto == 6 || proto == 17;
    let icmp = proto == 1 || proto == 58;
    let ((src, sport), (dst, dport)) = if s.initiator() == 0 {
        ((a0, p0), (a1, p1))
    } else {
        ((a1, p1), (a0, p0))
    };
    let (src_state, dst_state) = s.state_names();
    // pfctl's print_state shows an inbound state as `dst <- src`, each host's state in the
    // order its address is printed: the responder's first.
    let outbound = s.flags & STATE_OUTBOUND != 0;
    let (left_state, right_state) = if outbound {
        (src_state, dst_state)
    } else {
        (dst_state, src_state)
    };
    let expires = cx.states.expires_at(s);
    json!({
        "id": format!("{:016x}", s.id),
        "creator": format!("{:08x}", s.creator),
        // Learned from the pfsync peer (pfctl shows the creator id; this says it plainly).
        "synced": s.creator != cx.states.creator(),
        // A state learned from the peer is floating ("all", as pfctl shows it): where the
        // peer created it says nothing about this node's interfaces.
        "iface": if s.creator != cx.states.creator() {
            Some("all")
        } else {
            cx.config.interfaces.get(s.iface as usize).map(|i| i.name.as_str())
        },
        "proto": rampart_conf::proto::name(proto).map(str::to_string).unwrap_or_else(|| proto.to_string()),
        "direction": if outbound { "out" } else { "in" },
        // ICMP query states carry pf's identifier and virtual type in the port slots, and
        // pfctl prints them as ports where they are not 0.
        "src": endpoint(src, sport, ports || (icmp && sport != 0)),
        "dst": endpoint(dst, dport, ports || (icmp && dport != 0)),
        "state": format!("{left_state}:{right_state}"),
        "age_s": cx.now_ms.saturating_sub(u64::from(s.created_s) * 1000) / 1000,
        "expires_in_s": expires.saturating_sub(cx.now_ms) / 1000,
        "packets": s.packets,
        "bytes": s.bytes,
        "rule": (s.rule != u32::MAX).then_some(s.rule + 1),
        "timeout": s.timeout.name(),
    })
}

/// `pfctl -s states`: every state (the list is capped so a huge table can't swamp a client).
pub fn states(cx: &ReportContext, max: usize) -> Value {
    let mut list = Vec::new();
    let mut total = 0usize;
    cx.states.for_each(|s| {
        total += 1;
        if list.len() < max {
            list.push(state_json(cx, s));
        }
    });
    json!({ "total": total, "shown": list.len(), "states": list })
}

/// `pfctl -vs rules`: each rule with its counters, summed over workers.
pub fn rules(cx: &ReportContext) -> Value {
    let w = cx.workers;
    let evaluations = sum(w, |s| s.rule_evaluations.get());
    // pfctl's "States" is the rule's current states (`states_cur`): one walk of the table.
    let mut current = vec![0u64; cx.config.rules.len()];
    cx.states.for_each(|s| {
        if let Some(n) = current.get_mut(s.rule as usize) {
            *n += 1;
        }
    });
    let list: Vec<Value> = cx
        .config
        .rules
        .iter()
        .enumerate()
        .map(|(i, r)| {
            let rule = |f: &dyn Fn(&rampart_dataplane::worker::RuleStats) -> u64| -> u64 {
                w.iter().filter_map(|s| s.rules.get(i)).map(f).sum()
            };
            json!({
                "rule": i + 1,
                "text": r.to_pf_string(cx.config),
                "label": r.label,
                "file": r.origin.file.display().to_string(),
                "line": r.origin.line,
                // The compiled classifier evaluates every rule at once for each packet
                // that reaches the rules, so each rule's evaluations are that count.
                "evaluations": evaluations,
                "packets": rule(&|s| s.packets.get()),
                "bytes": rule(&|s| s.bytes.get()),
                "states": current[i],
                "states_created": rule(&|s| s.states.get()),
            })
        })
        .collect();
    json!({ "rules": list, "default": cx.config.policy.default.as_str() })
}

#[cfg(test)]
mod tests {
    use std::net::IpAddr;
    use std::path::Path;

    use rampart_dataplane::state::tcp::{single, tcps, Peer};
    use rampart_dataplane::state::{StateKey, StateTableConfig, Timeout, COVER_IN, COVER_OUT};

    use super::*;

    fn state(proto: u8, sport: u16, dport: u16, peers: [u8; 2], outbound: bool) -> State {
        let client: IpAddr = "192.0.2.10".parse().unwrap();
        let server: IpAddr = "198.51.100.7".parse().unwrap();
        let (key, client_first) = StateKey::new(proto, client, sport, server, dport);
        let peer = |state| Peer {
            state,
            ..Peer::default()
        };
        State {
            key,
            peers: [peer(peers[0]), peer(peers[1])],
            last_ms: 0,
            packets: [1, 1],
            bytes: [60, 60],
            id: 0,
            created_s: 0,
            creator: 0,
            rule: 0,
            iface: 0,
            timeout: Timeout::UdpSingle,
            covers: COVER_IN | COVER_OUT,
            flags: if client_first {
                0
            } else {
                rampart_dataplane::state::STATE_INITIATOR_IS_1
            } | if outbound { STATE_OUTBOUND } else { 0 },
        }
    }

    /// A one-interface appliance with `rules` (TOML) after it, and its empty state table.
    fn appliance(rules: &str) -> (Config, StateTable) {
        let text = format!(
            "[[interface]]\nname = \"lan\"\ndevice = \"net_null0\"\naddresses = [\"192.0.2.1/24\"]\n{rules}"
        );
        let config = rampart_conf::load_str(Path::new("fw.toml"), &text)
            .unwrap()
            .config;
        let states = StateTable::new(StateTableConfig::from_config(&config, 4, 1, 1));
        (config, states)
    }

    fn context<'a>(
        config: &'a Config,
        states: &'a StateTable,
        workers: &'a [std::sync::Arc<WorkerStats>],
    ) -> ReportContext<'a> {
        ReportContext {
            config,
            states,
            workers,
            uptime: Duration::ZERO,
            devices: Vec::new(),
            control: Value::Null,
            now_ms: 0,
        }
    }

    #[test]
    fn match_counts_every_packet_the_rules_decided_as_pf_does() {
        let (config, states) = appliance("");
        let worker = std::sync::Arc::new(WorkerStats::new(1, 0));
        worker.rule_evaluations.add(10);
        worker.count_drop(DropReason::Match);
        worker.count_drop(DropReason::Match);
        worker.count_drop(DropReason::Short);
        let workers = [worker];
        let cx = context(&config, &states, &workers);
        let v = info(&cx);
        assert_eq!(v["counters"]["match"], 10, "{v}");
        assert_eq!(v["counters"]["short"], 1);
        assert_eq!(v["packets"]["blocked"], 2);
    }

    #[test]
    fn a_rules_states_are_the_ones_it_has_now() {
        let (config, states) = appliance(
            "\n[[rule]]\naction = \"pass\"\n\n[[rule]]\naction = \"pass\"\nproto = \"udp\"\n",
        );
        for (port, rule) in [(1000, 1), (1001, 1), (1002, u32::MAX)] {
            let mut st = state(17, port, 53, [single::SINGLE, 0], false);
            st.rule = rule;
            let hash = states.hash(&st.key);
            states.lock(hash).insert(hash, st).unwrap();
        }
        let cx = context(&config, &states, &[]);
        let v = rules(&cx);
        assert_eq!(v["rules"][0]["states"], 0, "{v}");
        assert_eq!(v["rules"][1]["states"], 2, "{v}");
        // A synced state (no local rule) is nobody's.
        assert_eq!(
            v["rules"][1]["states_created"], 0,
            "no worker counted any here"
        );
    }

    #[test]
    fn states_show_each_hosts_state_in_the_order_pfctl_prints_the_hosts() {
        let (config, states) = appliance("");
        let cx = context(&config, &states, &[]);
        // A DNS query let in and answered once: the client (initiator) MULTIPLE, the server
        // SINGLE. pfctl: `all udp 198.51.100.7:53 <- 192.0.2.10:59363  SINGLE:MULTIPLE`.
        let dns = state(17, 59363, 53, [single::MULTIPLE, single::SINGLE], false);
        let v = state_json(&cx, &dns);
        assert_eq!(v["direction"], "in");
        assert_eq!(v["src"], "192.0.2.10:59363");
        assert_eq!(v["dst"], "198.51.100.7:53");
        assert_eq!(v["state"], "SINGLE:MULTIPLE", "{v}");
        // An outbound state prints `src -> dst`: the initiator's state first.
        let syn = state(6, 40000, 443, [tcps::SYN_SENT, tcps::CLOSED], true);
        let v = state_json(&cx, &syn);
        assert_eq!(v["direction"], "out");
        assert_eq!(v["state"], "SYN_SENT:CLOSED", "{v}");
        // And an inbound one the responder's first.
        let syn_in = state(6, 40000, 443, [tcps::SYN_SENT, tcps::CLOSED], false);
        assert_eq!(state_json(&cx, &syn_in)["state"], "CLOSED:SYN_SENT");
        // An echo: pfctl shows `198.51.100.7:8 <- 192.0.2.10:16962  0:0`.
        let (id, echo_type) = rampart_dataplane::state::key::icmp_ports(false, 8, Some(16962));
        let echo = state(1, id, echo_type, [0, 0], false);
        let v = state_json(&cx, &echo);
        assert_eq!(v["src"], "192.0.2.10:16962");
        assert_eq!(v["dst"], "198.51.100.7:8");
        assert_eq!(v["state"], "0:0");
    }
}
