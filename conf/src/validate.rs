//! Meaning checks: references resolve, names are unique, addresses, ports and flags are
//! well formed, and each rule can match something. Every problem is reported, not just the
//! first, each at the exact place it was written.

use std::collections::HashMap;
use std::net::IpAddr;
use std::ops::Range;
use std::path::Path;
use std::str::FromStr;

use ipnet::IpNet;
use toml::Spanned;

use crate::load::{Context, RawTable, Sections, Sourced};
use crate::model::*;
use crate::raw;

/// The longest interface name (IFNAMSIZ − 1).
const MAX_INTERFACE_NAME: usize = 15;
/// The longest table name (PF_TABLE_NAME_SIZE − 1).
const MAX_TABLE_NAME: usize = 31;
/// The longest label (PF_RULE_LABEL_SIZE − 1).
const MAX_LABEL: usize = 63;

pub(crate) fn validate(cx: &mut Context, path: &Path, s: Sections) -> Option<Config> {
    let timeouts_span = s.timeouts.as_ref().map(|t| (t.file, t.span.clone()));
    let mut v = Validator {
        cx,
        broken: s.broken.clone(),
        unparsed: s.unparsed_names.clone(),
        timeouts_span,
    };

    let appliance = v.appliance(s.appliance);
    let dpdk = v.dpdk(s.dpdk);
    let interfaces = v.interfaces(s.interfaces);
    let limits = v.limits(s.limits);
    let timeouts = v.timeouts(s.timeouts, &limits);
    let (start, end) = timeouts.adaptive(limits.states);
    if start >= end {
        let at = v.timeouts_span.clone();
        if let Some((file, span)) = at {
            v.err(file, span, format!("the adaptive window is empty: adaptive.start ({start}) must be below adaptive.end ({end}); unset values default to 60% and 120% of [limits] states ({})", limits.states));
        }
    }
    let tables = v.tables(s.tables, &limits);
    let routes = v.routes(s.routes, &interfaces);
    let neighbors = v.neighbors(s.neighbors, &interfaces);
    let carp = v.carp(s.carp, &interfaces);
    let pfsync = s.pfsync.and_then(|p| v.pfsync(p, &interfaces));
    let control = Control {
        socket: s
            .control
            .and_then(|c| c.value.socket)
            .map(|p| p.into_inner().into()),
    };
    let policy = s.policy.map(|p| PolicyOptions {
        default: match p.value.default {
            Some(raw::Action::Pass) => Action::Pass,
            Some(raw::Action::Block) | None => Action::Block,
        },
        block_policy: match p.value.block_policy {
            Some(raw::BlockPolicy::Return) => BlockPolicy::Return,
            Some(raw::BlockPolicy::Drop) | None => BlockPolicy::Drop,
        },
    });
    let block_policy = policy.map(|p| p.block_policy).unwrap_or_default();
    let mut rules = Vec::with_capacity(s.rules.len());
    for r in s.rules {
        if let Some(rule) = v.rule(r, &interfaces, &tables, block_policy) {
            rules.push(rule);
        }
    }

    Some(Config {
        path: path.to_path_buf(),
        policy_path: s.policy_path,
        appliance,
        dpdk,
        interfaces,
        routes,
        neighbors,
        carp,
        pfsync,
        control,
        limits,
        timeouts,
        tables,
        policy: policy.unwrap_or_default(),
        rules,
    })
}

struct Validator<'a> {
    cx: &'a mut Context,
    /// Sections that failed to parse: skip reference checks that would only echo that error.
    broken: Vec<String>,
    /// `(section, name)` of entries that failed to parse.
    unparsed: Vec<(String, String)>,
    /// Where `[timeouts]` was written, for checks across sections.
    timeouts_span: Option<(usize, Range<usize>)>,
}

fn origin(cx: &Context, file: usize, span: &Range<usize>) -> Origin {
    let (line, column) = cx.position(file, span);
    Origin {
        file: cx.path(file).to_path_buf(),
        line,
        column,
    }
}

impl Validator<'_> {
    /// Whether a reference to `name` in `section` may be dangling only because that
    /// section failed to parse (and was reported already).
    fn maybe_unparsed(&self, section: &str, name: &str) -> bool {
        self.broken
            .iter()
            .any(|b| b == "*" || (b == section && section != "interface" && section != "tables"))
            || self.unparsed.iter().any(|(s, n)| s == section && n == name)
    }

    fn err(&mut self, file: usize, span: Range<usize>, msg: impl Into<String>) {
        self.cx.error(file, span, msg);
    }

    fn warn(&mut self, file: usize, span: Range<usize>, msg: impl Into<String>) {
        self.cx.warning(file, span, msg);
    }

    /// "FILE:LINE:COL" of a place, for "already defined at …" messages.
    fn at(&self, o: &Origin) -> String {
        format!("{}:{}:{}", o.file.display(), o.line, o.column)
    }

    /// An integer field within `lo..=hi`, or the default.
    fn bounded(
        &mut self,
        file: usize,
        v: Option<Spanned<u32>>,
        name: &str,
        lo: u32,
        hi: u32,
        default: u32,
    ) -> u32 {
        match v {
            None => default,
            Some(v) if (lo..=hi).contains(v.get_ref()) => *v.get_ref(),
            Some(v) => {
                self.err(
                    file,
                    v.span(),
                    format!("{name} must be between {lo} and {hi}, not {}", v.get_ref()),
                );
                default
            }
        }
    }

    fn appliance(&mut self, a: Option<Sourced<raw::Appliance>>) -> Appliance {
        let Some(a) = a else {
            return Appliance {
                name: "rampart".into(),
                host_id: None,
            };
        };
        let name = a
            .value
            .name
            .map(|n| n.into_inner())
            .unwrap_or_else(|| "rampart".into());
        let host_id = a.value.host_id.and_then(|h| {
            if *h.get_ref() == 0 {
                self.err(
                    a.file,
                    h.span(),
                    "host_id must be non-zero (0 means \"unset\" in pfsync)",
                );
                None
            } else {
                Some(*h.get_ref())
            }
        });
        Appliance { name, host_id }
    }

    fn dpdk(&mut self, d: Option<Sourced<raw::Dpdk>>) -> Dpdk {
        let mut out = Dpdk::default();
        let Some(Sourced { file, value: d, .. }) = d else {
            return out;
        };
        out.control_lcore = self.bounded(file, d.control_lcore, "control_lcore", 0, 1023, 0);
        if let Some(w) = d.worker_lcores {
            let span = w.span();
            let mut lcores = Vec::new();
            for l in w.into_inner() {
                let id = *l.get_ref();
                if id > 1023 {
                    self.err(
                        file,
                        l.span(),
                        format!("lcore {id} is out of range (0-1023)"),
                    );
                } else if id == out.control_lcore {
                    self.err(
                        file,
                        l.span(),
                        format!(
                            "lcore {id} is the control lcore; a worker needs a core of its own"
                        ),
                    );
                } else if lcores.contains(&id) {
                    self.err(file, l.span(), format!("lcore {id} is listed twice"));
                } else {
                    lcores.push(id);
                }
            }
            if lcores.is_empty() {
                self.err(file, span, "worker_lcores must list at least one lcore");
            }
            out.worker_lcores = lcores;
        } else if out.worker_lcores.contains(&out.control_lcore) {
            // The default worker lcore collides with a configured control lcore.
            out.worker_lcores = vec![if out.control_lcore == 0 { 1 } else { 0 }];
        }
        for arg in d.eal_args.unwrap_or_default() {
            let span = arg.span();
            let arg = arg.into_inner();
            if let Some(why) = eal_arg_conflict(&arg) {
                self.err(file, span, why);
            }
            out.eal_args.push(arg);
        }
        out.mbufs = self.bounded(file, d.mbufs, "mbufs", 1023, 16 << 20, out.mbufs);
        out.mbuf_cache = self.bounded(file, d.mbuf_cache, "mbuf_cache", 0, 512, out.mbuf_cache);
        for (field, value, slot) in [
            ("rx_descriptors", d.rx_descriptors, &mut out.rx_descriptors),
            ("tx_descriptors", d.tx_descriptors, &mut out.tx_descriptors),
        ] {
            if let Some(v) = value {
                let n = *v.get_ref();
                if !(64..=16384).contains(&n) || !n.is_power_of_two() {
                    self.cx.error(
                        file,
                        v.span(),
                        format!("{field} must be a power of two between 64 and 16384, not {n}"),
                    );
                } else {
                    *slot = n as u16;
                }
            }
        }
        out.poll = match d.poll {
            Some(raw::Poll::Busy) => PollMode::Busy,
            Some(raw::Poll::Adaptive) | None => PollMode::Adaptive,
        };
        out
    }

    fn interfaces(&mut self, list: Vec<Sourced<raw::Interface>>) -> Vec<Interface> {
        let mut out: Vec<Interface> = Vec::new();
        let mut addrs: HashMap<IpAddr, Origin> = HashMap::new();
        for Sourced {
            file,
            span,
            value: i,
        } in list
        {
            let o = origin(self.cx, file, &span);
            let name = i.name.get_ref().clone();
            if !valid_name(&name, MAX_INTERFACE_NAME) {
                self.err(
                    file,
                    i.name.span(),
                    format!("invalid interface name `{name}`: use 1-{MAX_INTERFACE_NAME} letters, digits, `_`, `-` or `.`, starting with a letter"),
                );
            }
            if let Some(prev) = out.iter().find(|p| p.name == name) {
                let at = self.at(&prev.origin);
                self.err(
                    file,
                    i.name.span(),
                    format!("interface `{name}` is already defined at {at}"),
                );
                continue;
            }
            let device = i.device.get_ref().trim().to_string();
            if device.is_empty() {
                self.err(file, i.device.span(), "device must name a PCI address (0000:03:00.0) or a DPDK vdev (net_af_xdp0,iface=veth0)");
            } else if let Some(prev) = out.iter().find(|p| p.device == device) {
                let at = self.at(&prev.origin);
                self.err(
                    file,
                    i.device.span(),
                    format!(
                        "device `{device}` is already used by interface `{}` at {at}",
                        prev.name
                    ),
                );
            }
            let mac = i.mac.and_then(|m| match MacAddr::from_str(m.get_ref()) {
                Ok(mac) if mac.is_multicast() => {
                    self.err(file, m.span(), format!("MAC {mac} is a multicast address; an interface needs a unicast MAC"));
                    None
                }
                Ok(mac) => Some(mac),
                Err(()) => {
                    self.err(file, m.span(), format!("invalid MAC address `{}`, expected six hex bytes like 02:00:5e:10:00:01", m.get_ref()));
                    None
                }
            });
            let mut addresses = Vec::new();
            for a in i.addresses {
                let text = a.get_ref().trim();
                if !text.contains('/') {
                    self.err(
                        file,
                        a.span(),
                        format!(
                            "interface address `{text}` needs its prefix length, e.g. `{text}/24`"
                        ),
                    );
                    continue;
                }
                match IpNet::from_str(text) {
                    Ok(net) if net.addr() == net.network() && net.prefix_len() < net.max_prefix_len() - 1 => {
                        self.err(file, a.span(), format!("`{text}` is a network, not an interface address: give the interface's own address with the prefix length"));
                    }
                    Ok(net) => {
                        if let Some(prev) = addrs.get(&net.addr()) {
                            let at = self.at(prev);
                            self.err(file, a.span(), format!("address {} is already assigned at {at}", net.addr()));
                        } else {
                            addrs.insert(net.addr(), origin(self.cx, file, &a.span()));
                            addresses.push(net);
                        }
                    }
                    Err(_) => self.err(file, a.span(), format!("invalid interface address `{text}`, expected e.g. 192.0.2.1/24 or 2001:db8::1/64")),
                }
            }
            let mtu = self.bounded(file, i.mtu, "mtu", 68, 9216, 1500) as u16;
            if mtu < 1280 && addresses.iter().any(|a| a.addr().is_ipv6()) {
                self.err(file, span.clone(), format!("mtu {mtu} is below IPv6's minimum of 1280, but the interface has IPv6 addresses"));
            }
            out.push(Interface {
                name,
                device,
                mac,
                addresses,
                mtu,
                origin: o,
            });
        }
        out
    }

    fn limits(&mut self, l: Option<Sourced<raw::Limits>>) -> Limits {
        let mut out = Limits::default();
        if let Some(Sourced { file, value: l, .. }) = l {
            out.states = self.bounded(file, l.states, "states", 1, u32::MAX, out.states);
            out.table_entries = self.bounded(
                file,
                l.table_entries,
                "table_entries",
                1,
                u32::MAX,
                out.table_entries,
            );
        }
        out
    }

    fn timeouts(&mut self, t: Option<Sourced<raw::Timeouts>>, _limits: &Limits) -> Timeouts {
        let mut out = Timeouts::default();
        let Some(Sourced { file, value: t, .. }) = t else {
            return out;
        };
        if let Some(tcp) = t.tcp {
            set(&mut out.tcp_first, tcp.first);
            set(&mut out.tcp_opening, tcp.opening);
            set(&mut out.tcp_established, tcp.established);
            set(&mut out.tcp_closing, tcp.closing);
            set(&mut out.tcp_finwait, tcp.finwait);
            set(&mut out.tcp_closed, tcp.closed);
        }
        if let Some(udp) = t.udp {
            set(&mut out.udp_first, udp.first);
            set(&mut out.udp_single, udp.single);
            set(&mut out.udp_multiple, udp.multiple);
        }
        if let Some(icmp) = t.icmp {
            set(&mut out.icmp_first, icmp.first);
            set(&mut out.icmp_error, icmp.error);
        }
        if let Some(other) = t.other {
            set(&mut out.other_first, other.first);
            set(&mut out.other_single, other.single);
            set(&mut out.other_multiple, other.multiple);
        }
        set(&mut out.frag, t.frag);
        out.interval = self.bounded(file, t.interval, "interval", 1, 3600, out.interval);
        if let Some(a) = t.adaptive {
            out.adaptive_start = a.start.as_ref().map(|s| *s.get_ref());
            out.adaptive_end = a.end.as_ref().map(|e| *e.get_ref());
            if let (Some(s), Some(e)) = (&a.start, &a.end) {
                if s.get_ref() >= e.get_ref() {
                    self.err(
                        file,
                        e.span(),
                        format!(
                            "adaptive.end ({}) must be greater than adaptive.start ({})",
                            e.get_ref(),
                            s.get_ref()
                        ),
                    );
                }
            }
        }
        out
    }

    fn tables(&mut self, list: Vec<Sourced<RawTable>>, limits: &Limits) -> Vec<Table> {
        let mut out: Vec<Table> = Vec::new();
        let mut total: u64 = 0;
        for Sourced {
            file,
            span,
            value: t,
        } in list
        {
            let o = origin(self.cx, file, &span);
            if !valid_table_name(&t.name) {
                self.err(
                    file,
                    span.clone(),
                    format!("invalid table name `{}`: use 1-{MAX_TABLE_NAME} letters, digits, `_`, `-` or `.`", t.name),
                );
            }
            if let Some(prev) = out.iter().find(|p| p.name == t.name) {
                let at = self.at(&prev.origin);
                self.err(
                    file,
                    span,
                    format!("table <{}> is already defined at {at}", t.name),
                );
                continue;
            }
            let mut entries = Vec::with_capacity(t.entries.len());
            for e in &t.entries {
                let (negated, body) = split_negation(&e.value);
                match parse_prefix(body) {
                    Ok((net, host_bits)) => {
                        if host_bits {
                            self.warn(
                                e.file,
                                e.span.clone(),
                                format!("`{body}` has host bits set; it means {net}"),
                            );
                        }
                        entries.push(TableEntry { negated, net });
                    }
                    Err(msg) => self.err(e.file, e.span.clone(), msg),
                }
            }
            total += entries.len() as u64;
            out.push(Table {
                name: t.name,
                entries,
                origin: o,
            });
        }
        if total > u64::from(limits.table_entries) {
            if let Some(t) = out.last() {
                let o = t.origin.clone();
                self.cx.diags.push(crate::Diagnostic {
                    severity: crate::Severity::Error,
                    file: o.file,
                    line: o.line,
                    column: o.column,
                    message: format!(
                        "tables hold {total} entries in all, more than [limits] table_entries = {}",
                        limits.table_entries
                    ),
                });
            }
        }
        out
    }

    fn interface_ref(
        &mut self,
        file: usize,
        name: &Spanned<String>,
        interfaces: &[Interface],
    ) -> Option<usize> {
        let found = interfaces.iter().position(|i| &i.name == name.get_ref());
        if found.is_none() && !self.maybe_unparsed("interface", name.get_ref()) {
            let names: Vec<&str> = interfaces.iter().map(|i| i.name.as_str()).collect();
            let known = if names.is_empty() {
                "no [[interface]] is defined".to_string()
            } else {
                format!("interfaces are: {}", names.join(", "))
            };
            self.err(
                file,
                name.span(),
                format!("unknown interface `{}`; {known}", name.get_ref()),
            );
        }
        found
    }

    fn ip(&mut self, file: usize, s: &Spanned<String>, what: &str) -> Option<IpAddr> {
        match IpAddr::from_str(s.get_ref().trim()) {
            Ok(a) => Some(a),
            Err(_) => {
                let hint = if s.get_ref().contains('/') {
                    " (without a prefix length)"
                } else {
                    ""
                };
                self.err(
                    file,
                    s.span(),
                    format!(
                        "invalid {what} `{}`, expected an IPv4 or IPv6 address{hint}",
                        s.get_ref()
                    ),
                );
                None
            }
        }
    }

    fn routes(&mut self, list: Vec<Sourced<raw::Route>>, interfaces: &[Interface]) -> Vec<Route> {
        let mut out: Vec<Route> = Vec::new();
        for Sourced {
            file,
            span,
            value: r,
        } in list
        {
            let o = origin(self.cx, file, &span);
            let destination = match IpNet::from_str(r.destination.get_ref().trim()) {
                Ok(n) if n.addr() != n.network() => {
                    self.err(
                        file,
                        r.destination.span(),
                        format!(
                            "`{}` has host bits set; the network is {}",
                            r.destination.get_ref(),
                            n.trunc()
                        ),
                    );
                    None
                }
                Ok(n) => Some(n),
                Err(_) => {
                    self.err(file, r.destination.span(), format!("invalid destination `{}`, expected a CIDR such as 0.0.0.0/0 or 2001:db8::/32", r.destination.get_ref()));
                    None
                }
            };
            let gateway = self.ip(file, &r.gateway, "gateway");
            let (Some(destination), Some(gateway)) = (destination, gateway) else {
                continue;
            };
            if destination.addr().is_ipv4() != gateway.is_ipv4() {
                self.err(
                    file,
                    r.gateway.span(),
                    format!("gateway {gateway} is not of the same address family as {destination}"),
                );
                continue;
            }
            let interface = match &r.interface {
                Some(name) => {
                    let Some(i) = self.interface_ref(file, name, interfaces) else {
                        continue;
                    };
                    if !interfaces[i].addresses.iter().any(|a| a.contains(&gateway))
                        && !is_link_local(&gateway)
                    {
                        self.warn(
                            file,
                            r.gateway.span(),
                            format!(
                                "gateway {gateway} is not on a network of interface `{}`",
                                interfaces[i].name
                            ),
                        );
                    }
                    interfaces[i].name.clone()
                }
                None => match interfaces
                    .iter()
                    .find(|i| i.addresses.iter().any(|a| a.contains(&gateway)))
                {
                    Some(i) => i.name.clone(),
                    None => {
                        if !self.broken.iter().any(|b| b == "*" || b == "interface") {
                            self.err(file, r.gateway.span(), format!("gateway {gateway} is not on a connected network; name the route's `interface`"));
                        }
                        continue;
                    }
                },
            };
            if interfaces
                .iter()
                .any(|i| i.addresses.iter().any(|a| a.addr() == gateway))
            {
                self.err(
                    file,
                    r.gateway.span(),
                    format!("gateway {gateway} is one of this appliance's own addresses"),
                );
                continue;
            }
            if let Some(prev) = out.iter().find(|p| p.destination == destination) {
                let at = self.at(&prev.origin);
                self.err(
                    file,
                    r.destination.span(),
                    format!("a route to {destination} is already defined at {at}"),
                );
                continue;
            }
            out.push(Route {
                destination,
                gateway,
                interface,
                origin: o,
            });
        }
        out
    }

    fn neighbors(
        &mut self,
        list: Vec<Sourced<raw::Neighbor>>,
        interfaces: &[Interface],
    ) -> Vec<Neighbor> {
        let mut out: Vec<Neighbor> = Vec::new();
        for Sourced {
            file,
            span,
            value: n,
        } in list
        {
            let o = origin(self.cx, file, &span);
            let iface = self.interface_ref(file, &n.interface, interfaces);
            let address = self.ip(file, &n.address, "neighbor address");
            let mac = match MacAddr::from_str(n.mac.get_ref()) {
                Ok(m) if m.is_multicast() => {
                    self.err(
                        file,
                        n.mac.span(),
                        format!("MAC {m} is a multicast address; a neighbor needs a unicast MAC"),
                    );
                    None
                }
                Ok(m) => Some(m),
                Err(()) => {
                    self.err(file, n.mac.span(), format!("invalid MAC address `{}`, expected six hex bytes like 02:00:5e:10:00:01", n.mac.get_ref()));
                    None
                }
            };
            let (Some(i), Some(address), Some(mac)) = (iface, address, mac) else {
                continue;
            };
            let interface = interfaces[i].name.clone();
            if let Some(prev) = out
                .iter()
                .find(|p| p.interface == interface && p.address == address)
            {
                let at = self.at(&prev.origin);
                self.err(
                    file,
                    n.address.span(),
                    format!("neighbor {address} on `{interface}` is already defined at {at}"),
                );
                continue;
            }
            if !interfaces[i].addresses.iter().any(|a| a.contains(&address))
                && !is_link_local(&address)
            {
                self.warn(
                    file,
                    n.address.span(),
                    format!("neighbor {address} is not on a network of interface `{interface}`"),
                );
            }
            out.push(Neighbor {
                interface,
                address,
                mac,
                origin: o,
            });
        }
        out
    }

    fn carp(&mut self, list: Vec<Sourced<raw::Carp>>, interfaces: &[Interface]) -> Vec<Carp> {
        let mut out: Vec<Carp> = Vec::new();
        for Sourced {
            file,
            span,
            value: c,
        } in list
        {
            let o = origin(self.cx, file, &span);
            let vhid = *c.vhid.get_ref();
            if !(1..=255).contains(&vhid) {
                self.err(
                    file,
                    c.vhid.span(),
                    format!("vhid must be between 1 and 255, not {vhid}"),
                );
                continue;
            }
            let vhid = vhid as u8;
            let Some(i) = self.interface_ref(file, &c.interface, interfaces) else {
                continue;
            };
            let interface = interfaces[i].name.clone();
            if let Some(prev) = out
                .iter()
                .find(|p| p.vhid == vhid && p.interface == interface)
            {
                let at = self.at(&prev.origin);
                self.err(
                    file,
                    c.vhid.span(),
                    format!("vhid {vhid} on `{interface}` is already defined at {at}"),
                );
                continue;
            }
            let mut addresses: Vec<IpAddr> = Vec::new();
            let list_span = c.addresses.span();
            let written = c.addresses.get_ref().len();
            for a in c.addresses.into_inner() {
                let Some(ip) = self.ip(file, &a, "virtual address") else {
                    continue;
                };
                if interfaces
                    .iter()
                    .any(|i| i.addresses.iter().any(|n| n.addr() == ip))
                {
                    self.err(file, a.span(), format!("{ip} is an interface's own address; a virtual address must be distinct"));
                } else if let Some(prev) = out.iter().find(|p| p.addresses.contains(&ip)) {
                    let at = self.at(&prev.origin);
                    self.err(
                        file,
                        a.span(),
                        format!(
                            "virtual address {ip} already belongs to vhid {} at {at}",
                            prev.vhid
                        ),
                    );
                } else if addresses.contains(&ip) {
                    self.err(
                        file,
                        a.span(),
                        format!("virtual address {ip} is listed twice"),
                    );
                } else {
                    addresses.push(ip);
                }
            }
            if written == 0 {
                self.err(
                    file,
                    list_span,
                    "a CARP group needs at least one virtual address",
                );
            }
            // advbase 0 gives sub-second intervals (OpenBSD allows it); with advskew 0 as
            // well, OpenBSD's carp_setrun advertises every 1/256 s (protocols.md §2.2).
            let advbase_span = c.advbase.as_ref().map(|a| a.span());
            let advbase = self.bounded(file, c.advbase, "advbase", 0, 254, 1) as u8;
            let advskew = self.bounded(file, c.advskew, "advskew", 0, 254, 0) as u8;
            if advbase == 0 && advskew == 0 {
                let at = advbase_span.unwrap_or(span.clone());
                self.warn(file, at, "advbase 0 with advskew 0 advertises every 1/256 s (256 advertisements a second), as OpenBSD does; a backup takes over after 3/256 s of silence");
            }
            let mut key = [0u8; 20];
            if let Some(p) = &c.passphrase {
                let bytes = p.get_ref().as_bytes();
                if bytes.contains(&0) {
                    self.err(file, p.span(), "the passphrase must not contain NUL bytes");
                }
                if bytes.len() > 19 {
                    self.warn(file, p.span(), "OpenBSD keys CARP with only the first 19 bytes of the passphrase; the rest is ignored, as on every peer");
                }
                let n = bytes.len().min(19);
                key[..n].copy_from_slice(&bytes[..n]);
            } else {
                self.warn(
                    file,
                    span.clone(),
                    "no passphrase: advertisements are authenticated with an all-zero key",
                );
            }
            let peer = c.peer.as_ref().and_then(|p| {
                let ip = self.ip(file, p, "CARP peer")?;
                if !ip.is_ipv4() || ip.is_multicast() {
                    self.err(
                        file,
                        p.span(),
                        format!("peer {ip} must be a unicast IPv4 address (OpenBSD's carppeer)"),
                    );
                    return None;
                }
                Some(ip)
            });
            if addresses.is_empty() {
                continue;
            }
            out.push(Carp {
                vhid,
                interface,
                addresses,
                advbase,
                advskew,
                key,
                preempt: c.preempt,
                peer,
                origin: o,
            });
        }
        out
    }

    fn pfsync(&mut self, p: Sourced<raw::Pfsync>, interfaces: &[Interface]) -> Option<Pfsync> {
        let Sourced {
            file,
            span,
            value: p,
        } = p;
        let o = origin(self.cx, file, &span);
        let i = self.interface_ref(file, &p.interface, interfaces);
        let errors_before = self.cx.diags.len();
        let peer = p.peer.as_ref().and_then(|s| {
            let ip = self.ip(file, s, "pfsync peer")?;
            if !ip.is_ipv4() || ip.is_multicast() {
                self.err(
                    file,
                    s.span(),
                    format!("peer {ip} must be a unicast IPv4 address (OpenBSD's syncpeer)"),
                );
                return None;
            }
            Some(ip)
        });
        let maxupd = self.bounded(file, p.maxupd, "maxupd", 0, 255, 128) as u8;
        let bulk_rate = self.bounded(
            file,
            p.bulk_rate,
            "bulk_rate",
            0,
            100_000_000,
            DEFAULT_BULK_RATE,
        );
        if let Some(iface) = i.and_then(|i| interfaces.get(i)) {
            if !iface.addresses.iter().any(|a| a.addr().is_ipv4()) {
                self.err(
                    file,
                    p.interface.span(),
                    format!(
                        "pfsync interface `{}` has no IPv4 address: pfsync is sent from one",
                        iface.name
                    ),
                );
            }
        }
        let key = p.key.as_ref().and_then(|k| {
            if k.get_ref().is_empty() {
                self.err(
                    file,
                    k.span(),
                    "key must not be empty (leave it out for plain pfsync)".to_string(),
                );
                return None;
            }
            Some(k.get_ref().as_bytes().to_vec())
        });
        if self.cx.diags.len() != errors_before {
            return None;
        }
        Some(Pfsync {
            interface: interfaces[i?].name.clone(),
            peer,
            defer: p.defer,
            maxupd,
            bulk_rate,
            key,
            split_states: p.split_states,
            origin: o,
        })
    }

    fn rule(
        &mut self,
        r: Sourced<raw::Rule>,
        interfaces: &[Interface],
        tables: &[Table],
        block_policy: BlockPolicy,
    ) -> Option<Rule> {
        let Sourced {
            file,
            span,
            value: r,
        } = r;
        let o = origin(self.cx, file, &span);
        let errors_before = self.cx.diags.len();
        let action = match r.action.get_ref() {
            raw::Action::Pass => Action::Pass,
            raw::Action::Block => Action::Block,
        };
        let on =
            r.on.as_ref()
                .and_then(|n| self.interface_ref(file, n, interfaces));
        let af = r.af.as_ref().map(|a| match a.get_ref() {
            raw::Af::Inet => AddressFamily::Inet,
            raw::Af::Inet6 => AddressFamily::Inet6,
        });

        // An empty list would silently widen the rule to "any": pf refuses `{}` too.
        for (name, empty_span) in [
            (
                "proto",
                r.proto
                    .as_ref()
                    .filter(|p| p.get_ref().is_empty())
                    .map(|p| p.span()),
            ),
            (
                "from",
                r.from
                    .as_ref()
                    .filter(|p| p.get_ref().is_empty())
                    .map(|p| p.span()),
            ),
            (
                "to",
                r.to.as_ref()
                    .filter(|p| p.get_ref().is_empty())
                    .map(|p| p.span()),
            ),
            (
                "from_port",
                r.from_port
                    .as_ref()
                    .filter(|p| p.get_ref().is_empty())
                    .map(|p| p.span()),
            ),
            (
                "to_port",
                r.to_port
                    .as_ref()
                    .filter(|p| p.get_ref().is_empty())
                    .map(|p| p.span()),
            ),
        ] {
            if let Some(sp) = empty_span {
                self.err(
                    file,
                    sp,
                    format!("`{name}` is an empty list; leave the key out to match any"),
                );
            }
        }

        // proto
        let mut protos: Vec<u8> = Vec::new();
        if let Some(p) = &r.proto {
            for (ispan, item) in p.get_ref().items(p.span()) {
                let number = match item {
                    raw::Proto::Number(0) => {
                        self.err(file, ispan.clone(), "protocol 0 cannot be used (pf: proto 0 cannot be used); leave `proto` out to match any protocol");
                        None
                    }
                    raw::Proto::Number(n) if (1..=255).contains(n) => Some(*n as u8),
                    raw::Proto::Number(n) => {
                        self.err(
                            file,
                            ispan.clone(),
                            format!("protocol number {n} is out of range (0-255)"),
                        );
                        None
                    }
                    raw::Proto::Name(name) => match protocol_by_name(name) {
                        Some(n) => Some(n),
                        None => {
                            self.err(file, ispan.clone(), format!("unknown protocol `{name}`, expected tcp, udp, icmp, icmp6, {} or a number 1-255", OTHER_PROTOCOL_NAMES));
                            None
                        }
                    },
                };
                if let Some(n) = number {
                    if af == Some(AddressFamily::Inet6) && n == proto::ICMP {
                        self.err(
                            file,
                            ispan.clone(),
                            "icmp is IPv4's; with af = \"inet6\" use proto icmp6",
                        );
                    } else if af == Some(AddressFamily::Inet) && n == proto::ICMP6 {
                        self.err(
                            file,
                            ispan.clone(),
                            "icmp6 is IPv6's; with af = \"inet\" use proto icmp",
                        );
                    }
                    if !protos.contains(&n) {
                        protos.push(n);
                    }
                }
            }
        }

        let from = self.addresses(file, r.from.as_ref(), af, tables, "from");
        let to = self.addresses(file, r.to.as_ref(), af, tables, "to");
        if let (Some(from_fams), Some(to_fams)) = (families(&from), families(&to)) {
            let both = [from_fams.0 && to_fams.0, from_fams.1 && to_fams.1];
            if !both[0] && !both[1] {
                self.err(file, span.clone(), "this rule can never match: its `from` and `to` addresses are of different address families");
            }
        }

        let from_port = self.ports(file, r.from_port.as_ref(), &protos, "from_port");
        let to_port = self.ports(file, r.to_port.as_ref(), &protos, "to_port");

        // flags
        let mut flags = None;
        if let Some(f) = &r.flags {
            if !protos.is_empty() && !protos.contains(&proto::TCP) && f.get_ref().trim() != "any" {
                self.err(file, f.span(), "flags apply only to TCP: give the rule proto = \"tcp\" (pf: flags only apply to tcp)");
            }
            match parse_flags(f.get_ref()) {
                Ok(parsed) => flags = parsed,
                Err(msg) => self.err(file, f.span(), msg),
            }
        }

        let keep_state = match (&r.keep_state, action) {
            (Some(k), Action::Block) => {
                if *k.get_ref() {
                    self.err(file, k.span(), "keep_state applies only to pass rules");
                }
                false
            }
            (Some(k), Action::Pass) => *k.get_ref(),
            (None, Action::Pass) => true,
            (None, Action::Block) => false,
        };
        // pfctl: stateful pass rules default to `flags S/SA` unless the rule says otherwise.
        if r.flags.is_none() && action == Action::Pass && keep_state {
            flags = Some(TcpFlagsMatch::SYN_ONLY);
        }
        let return_ = match &r.return_ {
            Some(ret) if action == Action::Pass => {
                if *ret.get_ref() {
                    self.err(file, ret.span(), "return applies only to block rules");
                }
                false
            }
            // An explicit `return = false` is pf's `block drop`: it overrides the block policy.
            Some(ret) => *ret.get_ref(),
            None => action == Action::Block && block_policy == BlockPolicy::Return,
        };
        let label = r.label.as_ref().map(|l| {
            if l.get_ref().len() > MAX_LABEL {
                self.err(
                    file,
                    l.span(),
                    format!("label is longer than {MAX_LABEL} bytes"),
                );
            }
            l.get_ref().clone()
        });

        if self.cx.diags[errors_before..]
            .iter()
            .any(|d| d.severity == crate::Severity::Error)
        {
            return None;
        }
        Some(Rule {
            action,
            direction: r.direction.map(|d| match d {
                raw::Direction::In => Direction::In,
                raw::Direction::Out => Direction::Out,
            }),
            quick: r.quick,
            on,
            af,
            proto: protos,
            from,
            from_port,
            to,
            to_port,
            flags,
            keep_state,
            log: r.log,
            label,
            return_,
            origin: o,
        })
    }

    fn addresses(
        &mut self,
        file: usize,
        field: Option<&Spanned<raw::OneOrMany<String>>>,
        af: Option<AddressFamily>,
        tables: &[Table],
        name: &str,
    ) -> Vec<AddrSpec> {
        let Some(field) = field else {
            return Vec::new();
        };
        let items = field.get_ref().items(field.span());
        let mut out = Vec::new();
        for (ispan, text) in &items {
            let (negated, body) = split_negation(text);
            let item = match body {
                "any" => AddrItem::Any,
                "self" => AddrItem::SelfAddrs,
                b if b.starts_with('<') => {
                    let Some(tname) = b.strip_prefix('<').and_then(|t| t.strip_suffix('>')) else {
                        self.err(
                            file,
                            ispan.clone(),
                            format!("`{b}` is not a table reference: write <name>"),
                        );
                        continue;
                    };
                    match tables.iter().position(|t| t.name == tname) {
                        Some(i) => AddrItem::Table(i),
                        None => {
                            if !self.maybe_unparsed("tables", tname) {
                                let known: Vec<String> =
                                    tables.iter().map(|t| format!("<{}>", t.name)).collect();
                                let known = if known.is_empty() {
                                    "no table is defined".to_string()
                                } else {
                                    format!("tables are: {}", known.join(", "))
                                };
                                self.err(
                                    file,
                                    ispan.clone(),
                                    format!("unknown table <{tname}>; {known}"),
                                );
                            }
                            continue;
                        }
                    }
                }
                b => match parse_prefix(b) {
                    Ok((net, host_bits)) => {
                        if host_bits {
                            self.warn(
                                file,
                                ispan.clone(),
                                format!("`{b}` has host bits set; it means {net}"),
                            );
                        }
                        let fam = AddressFamily::of(&net.addr());
                        if let Some(af) = af {
                            if af != fam {
                                self.err(
                                    file,
                                    ispan.clone(),
                                    format!(
                                        "{b} is an {} address but the rule says af = \"{}\"",
                                        if fam == AddressFamily::Inet {
                                            "IPv4"
                                        } else {
                                            "IPv6"
                                        },
                                        af.as_str()
                                    ),
                                );
                                continue;
                            }
                        }
                        AddrItem::Net(net)
                    }
                    Err(msg) => {
                        self.err(file, ispan.clone(), msg);
                        continue;
                    }
                },
            };
            if negated && item == AddrItem::Any {
                self.warn(file, ispan.clone(), "`!any` matches no address");
            }
            out.push(AddrSpec { negated, item });
        }
        if items.len() > 1 && out.iter().any(|a| a.negated) {
            self.warn(
                file,
                field.span(),
                format!("in a `{name}` list each item matches on its own (pf expands lists into one rule per item), so a negated item matches nearly every address; to exclude addresses, use a table with a negated entry"),
            );
        }
        out
    }

    fn ports(
        &mut self,
        file: usize,
        field: Option<&Spanned<raw::OneOrMany<raw::Port>>>,
        protos: &[u8],
        name: &str,
    ) -> Vec<PortRange> {
        let Some(field) = field else {
            return Vec::new();
        };
        if protos.is_empty() || protos.iter().any(|p| *p != proto::TCP && *p != proto::UDP) {
            self.err(file, field.span(), format!("{name} applies only to tcp and udp: give the rule proto = \"tcp\" or \"udp\" (pf: port only applies to tcp/udp)"));
            return Vec::new();
        }
        let mut out = Vec::new();
        for (ispan, p) in field.get_ref().items(field.span()) {
            let parsed = match p {
                raw::Port::Number(n) => {
                    port_number(&n.to_string()).map(|n| PortRange { lo: n, hi: n })
                }
                raw::Port::Text(t) => match t.split_once(':') {
                    Some((lo, hi)) => match (port_number(lo.trim()), port_number(hi.trim())) {
                        (Ok(lo), Ok(hi)) if lo <= hi => Ok(PortRange { lo, hi }),
                        (Ok(lo), Ok(hi)) => Err(format!(
                            "port range {lo}:{hi} is out of order: write lo:hi, inclusive"
                        )),
                        (Err(e), _) | (_, Err(e)) => Err(e),
                    },
                    None => port_number(t.trim()).map(|n| PortRange { lo: n, hi: n }),
                },
            };
            match parsed {
                Ok(r) => out.push(r),
                Err(msg) => self.err(file, ispan, msg),
            }
        }
        out
    }
}

fn set(slot: &mut u32, v: Option<u32>) {
    if let Some(v) = v {
        *slot = v;
    }
}

fn port_number(s: &str) -> Result<u16, String> {
    match s.parse::<i64>() {
        Ok(n) if (0..=65535).contains(&n) => Ok(n as u16),
        Ok(n) => Err(format!("port {n} is out of range (0-65535)")),
        Err(_) => Err(format!(
            "invalid port `{s}`, expected a number 0-65535 or a range lo:hi"
        )),
    }
}

/// The address families a list of items can match: (IPv4, IPv6); `None` = any.
fn families(specs: &[AddrSpec]) -> Option<(bool, bool)> {
    if specs.is_empty() {
        return None;
    }
    let mut v4 = false;
    let mut v6 = false;
    for s in specs {
        match &s.item {
            AddrItem::Net(n) if n.addr().is_ipv4() => v4 = true,
            AddrItem::Net(_) => v6 = true,
            _ => return None,
        }
    }
    Some((v4, v6))
}

fn split_negation(s: &str) -> (bool, &str) {
    let s = s.trim();
    match s.strip_prefix('!') {
        Some(rest) => (true, rest.trim_start()),
        None => (false, s),
    }
}

/// An address (a host prefix) or a CIDR; the flag says host bits were set and masked.
fn parse_prefix(s: &str) -> Result<(IpNet, bool), String> {
    if s.contains('/') {
        match IpNet::from_str(s) {
            Ok(n) => Ok((n.trunc(), n.addr() != n.network())),
            Err(_) => Err(format!(
                "invalid CIDR `{s}`, expected e.g. 192.0.2.0/24 or 2001:db8::/32"
            )),
        }
    } else {
        match IpAddr::from_str(s) {
            Ok(a) => Ok((IpNet::from(a), false)),
            Err(_) if s.is_empty() => Err("empty address".to_string()),
            Err(_) => Err(format!("invalid address `{s}`, expected an address, a CIDR, \"any\", \"self\" or \"<table>\"")),
        }
    }
}

/// `S/SA`, `/SA`, `any`; pf's letters F S R P A U E W.
fn parse_flags(s: &str) -> Result<Option<TcpFlagsMatch>, String> {
    let s = s.trim();
    if s == "any" {
        return Ok(None);
    }
    let Some((set, mask)) = s.split_once('/') else {
        return Err(format!(
            "invalid flags `{s}`, expected set/mask such as S/SA, or \"any\""
        ));
    };
    let bits = |part: &str| -> Result<u8, String> {
        let mut b = 0u8;
        for c in part.chars() {
            match tcp_flags::LETTERS.iter().find(|(l, _)| *l == c) {
                Some((_, bit)) => b |= bit,
                None => {
                    return Err(format!(
                        "unknown TCP flag `{c}` in `{s}`; flags are F S R P A U E W"
                    ))
                }
            }
        }
        Ok(b)
    };
    let set = bits(set)?;
    let mask = bits(mask)?;
    if mask == 0 {
        return Err(format!(
            "flags `{s}` have an empty mask; write e.g. S/SA, or \"any\""
        ));
    }
    if set & !mask != 0 {
        return Err(format!(
            "flags `{s}` can never match: every flag that must be set must also be in the mask"
        ));
    }
    Ok(Some(TcpFlagsMatch { set, mask }))
}

const OTHER_PROTOCOL_NAMES: &str =
    "ipv6-icmp, ipv6, gre, esp, ah, ospf, pim, carp, vrrp, sctp, pfsync";

fn protocol_by_name(name: &str) -> Option<u8> {
    Some(match name {
        "icmp" => proto::ICMP,
        "tcp" => proto::TCP,
        "udp" => proto::UDP,
        "icmp6" | "ipv6-icmp" => proto::ICMP6,
        "ipv6" => 41,
        "gre" => 47,
        "esp" => 50,
        "ah" => 51,
        "ospf" => 89,
        "pim" => 103,
        "carp" | "vrrp" => proto::CARP,
        "sctp" => 132,
        "pfsync" => proto::PFSYNC,
        _ => return None,
    })
}

fn valid_name(s: &str, max: usize) -> bool {
    !s.is_empty()
        && s.len() <= max
        && s.starts_with(|c: char| c.is_ascii_alphabetic())
        && s.chars()
            .all(|c| c.is_ascii_alphanumeric() || "_-.".contains(c))
}

fn valid_table_name(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= MAX_TABLE_NAME
        && s.chars()
            .all(|c| c.is_ascii_alphanumeric() || "_-.".contains(c))
}

fn is_link_local(a: &IpAddr) -> bool {
    match a {
        IpAddr::V4(v4) => v4.is_link_local(),
        IpAddr::V6(v6) => (v6.segments()[0] & 0xffc0) == 0xfe80,
    }
}

/// Why an `[dpdk] eal_args` entry cannot be given there: rampart derives the lcore list and
/// the main lcore from `control_lcore` and `worker_lcores`, and EAL refuses a second lcore
/// list.
fn eal_arg_conflict(arg: &str) -> Option<String> {
    let name = arg.split('=').next().unwrap_or(arg);
    // `-l 0,1`, `-l0,1`, `-c 0x3`, `-c0x3` (long options start with `--`).
    let lcore_list = !name.starts_with("--") && (name.starts_with("-l") || name.starts_with("-c"));
    if lcore_list {
        return Some(format!(
            "`{arg}`: rampart gives EAL the lcore list from control_lcore and worker_lcores; \
             to place lcores on particular CPUs, give --lcores instead (e.g. \"--lcores=0@0,1@1,2@1\")"
        ));
    }
    if matches!(name, "--main-lcore" | "--master-lcore") {
        return Some(format!(
            "`{arg}`: rampart sets the main lcore from control_lcore"
        ));
    }
    None
}
