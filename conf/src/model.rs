//! The validated appliance configuration.
//!
//! Everything here has been checked: names are unique, references resolve, addresses and
//! ports are well formed. The dataplane and control plane consume these types and never see
//! raw TOML. Each rule and table remembers where it was written ([`Origin`]), so tools such
//! as `rampart trace` can point an operator back at the line that decided a packet.

use std::net::IpAddr;
use std::path::PathBuf;

use ipnet::IpNet;

/// Where a configuration item was written: file and 1-based line/column.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Origin {
    pub file: PathBuf,
    pub line: usize,
    pub column: usize,
}

/// A whole appliance: one TOML file (and optionally its policy file).
#[derive(Debug, Clone)]
pub struct Config {
    /// The main configuration file.
    pub path: PathBuf,
    /// The separate policy file, when `policy_file` names one.
    pub policy_path: Option<PathBuf>,
    pub appliance: Appliance,
    pub dpdk: Dpdk,
    pub interfaces: Vec<Interface>,
    pub routes: Vec<Route>,
    pub neighbors: Vec<Neighbor>,
    pub carp: Vec<Carp>,
    pub pfsync: Option<Pfsync>,
    pub control: Control,
    pub limits: Limits,
    pub timeouts: Timeouts,
    pub tables: Vec<Table>,
    pub policy: PolicyOptions,
    pub rules: Vec<Rule>,
}

impl Config {
    /// The index of the interface called `name`, in configuration order.
    pub fn interface_index(&self, name: &str) -> Option<usize> {
        self.interfaces.iter().position(|i| i.name == name)
    }

    /// The table called `name`.
    pub fn table(&self, name: &str) -> Option<&Table> {
        self.tables.iter().find(|t| t.name == name)
    }

    /// Every virtual IP of every CARP group.
    pub fn vips(&self) -> impl Iterator<Item = IpAddr> + '_ {
        self.carp.iter().flat_map(|c| c.addresses.iter().copied())
    }

    /// The appliance's own addresses (`self` in a rule): interface addresses and CARP VIPs.
    pub fn own_addresses(&self) -> Vec<IpAddr> {
        let mut own: Vec<IpAddr> = self
            .interfaces
            .iter()
            .flat_map(|i| i.addresses.iter().map(|a| a.addr()))
            .chain(self.vips())
            .collect();
        own.sort();
        own.dedup();
        own
    }
}

/// `[appliance]`: who this node is.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Appliance {
    pub name: String,
    /// pf's hostid: the pfsync creator id of the states this node creates. `None` means
    /// "derive one at start-up".
    pub host_id: Option<u32>,
}

/// How workers poll their queues.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum PollMode {
    /// Spin on every queue: for dedicated cores and benchmarks.
    Busy,
    /// Back off with short sleeps after runs of empty polls, so cores can be shared.
    #[default]
    Adaptive,
}

/// `[dpdk]`: EAL and memory settings.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Dpdk {
    /// The lcore (CPU) the control thread runs on: DPDK's main lcore.
    pub control_lcore: u32,
    /// One worker per lcore listed here.
    pub worker_lcores: Vec<u32>,
    /// Extra EAL arguments, passed through verbatim (e.g. `--no-pci`, `--in-memory`).
    pub eal_args: Vec<String>,
    /// Mbufs in the packet pool.
    pub mbufs: u32,
    /// Per-lcore mbuf cache size.
    pub mbuf_cache: u32,
    /// RX descriptors per queue.
    pub rx_descriptors: u16,
    /// TX descriptors per queue.
    pub tx_descriptors: u16,
    pub poll: PollMode,
}

impl Default for Dpdk {
    fn default() -> Self {
        Dpdk {
            control_lcore: 0,
            worker_lcores: vec![1],
            eal_args: Vec::new(),
            mbufs: 16383,
            mbuf_cache: 256,
            rx_descriptors: 1024,
            tx_descriptors: 1024,
            poll: PollMode::Adaptive,
        }
    }
}

/// A 48-bit Ethernet address.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Default)]
pub struct MacAddr(pub [u8; 6]);

impl MacAddr {
    /// CARP's virtual MAC for `vhid`: 00:00:5e:00:01:vhid.
    pub const fn carp_virtual(vhid: u8) -> MacAddr {
        MacAddr([0x00, 0x00, 0x5e, 0x00, 0x01, vhid])
    }

    pub fn is_multicast(&self) -> bool {
        self.0[0] & 1 == 1
    }
}

impl std::fmt::Display for MacAddr {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let m = self.0;
        write!(
            f,
            "{:02x}:{:02x}:{:02x}:{:02x}:{:02x}:{:02x}",
            m[0], m[1], m[2], m[3], m[4], m[5]
        )
    }
}

impl std::str::FromStr for MacAddr {
    type Err = ();

    /// Parses `aa:bb:cc:dd:ee:ff` (or with `-` separators).
    fn from_str(s: &str) -> Result<Self, ()> {
        let mut out = [0u8; 6];
        let mut parts = s.split([':', '-']);
        for byte in &mut out {
            let part = parts.next().ok_or(())?;
            if part.is_empty() || part.len() > 2 || !part.bytes().all(|b| b.is_ascii_hexdigit()) {
                return Err(());
            }
            *byte = u8::from_str_radix(part, 16).map_err(|_| ())?;
        }
        if parts.next().is_some() {
            return Err(());
        }
        Ok(MacAddr(out))
    }
}

/// `[[interface]]`: a port of the appliance.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Interface {
    /// The name rules and routes use (`on = "lan"`).
    pub name: String,
    /// A PCI address (`0000:03:00.0`) or a DPDK vdev string (`net_af_xdp0,iface=veth0`).
    pub device: String,
    /// The MAC to use; `None` means "the device's own".
    pub mac: Option<MacAddr>,
    /// The interface's own addresses, with their connected prefix length.
    pub addresses: Vec<IpNet>,
    pub mtu: u16,
    pub origin: Origin,
}

/// `[[route]]`: a static route.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Route {
    pub destination: IpNet,
    pub gateway: IpAddr,
    /// The interface the gateway is reached on (given, or found from connected prefixes).
    pub interface: String,
    pub origin: Origin,
}

/// `[[neighbor]]`: a static ARP/ND entry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Neighbor {
    pub interface: String,
    pub address: IpAddr,
    pub mac: MacAddr,
    pub origin: Origin,
}

/// `[[carp]]`: one virtual host (vhid) on one interface.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Carp {
    pub vhid: u8,
    pub interface: String,
    /// The virtual addresses this vhid carries (both peers must list the same set).
    pub addresses: Vec<IpAddr>,
    /// Advertisement base interval, seconds (0..=254; 0 gives sub-second intervals).
    pub advbase: u8,
    /// Advertisement skew, 1/256 s (0..=254).
    pub advskew: u8,
    /// The HMAC key exactly as OpenBSD builds it: the passphrase's first 19 bytes,
    /// zero-padded to 20.
    pub key: [u8; 20],
    pub preempt: bool,
    /// A unicast IPv4 peer instead of 224.0.0.18 (OpenBSD's `carppeer`).
    pub peer: Option<IpAddr>,
    pub origin: Origin,
}

/// Default of `[pfsync] bulk_rate`: 1M states in 1.3 s, well within what a receiver here
/// installs per second (docs/ha.md).
pub const DEFAULT_BULK_RATE: u32 = 750_000;

/// `[pfsync]`: state synchronisation.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Pfsync {
    /// The sync interface (a dedicated link is recommended).
    pub interface: String,
    /// A unicast peer instead of 224.0.0.240 (OpenBSD's `syncpeer`).
    pub peer: Option<IpAddr>,
    pub defer: bool,
    /// Updates to one TCP state before it is sent at once (OpenBSD default 128).
    pub maxupd: u8,
    /// The most states per second a bulk update sends (0: as fast as the link takes them).
    pub bulk_rate: u32,
    /// rampart's authenticated mode: an HMAC-SHA1 trailer keyed by this secret on every
    /// pfsync packet, and packets without a valid one refused (not understood by OpenBSD).
    pub key: Option<Vec<u8>>,
    /// Send a forwarded connection as the two states pf keeps for it (in on the ingress
    /// interface, out on the egress one) instead of rampart's one record: what an OpenBSD
    /// peer needs to pass the connection at both filter points after a failover.
    pub split_states: bool,
    pub origin: Origin,
}

/// `[control]`: the management side.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Control {
    /// The Unix management socket `rampart ctl` talks to; `None` opens none.
    pub socket: Option<PathBuf>,
}

/// `[limits]`: pf's `set limit`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    pub states: u32,
    pub table_entries: u32,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            states: 100_000,
            table_entries: 200_000,
        }
    }
}

/// `[timeouts]`: pf's `set timeout`, in seconds, with pf's defaults.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Timeouts {
    pub tcp_first: u32,
    pub tcp_opening: u32,
    pub tcp_established: u32,
    pub tcp_closing: u32,
    pub tcp_finwait: u32,
    pub tcp_closed: u32,
    pub udp_first: u32,
    pub udp_single: u32,
    pub udp_multiple: u32,
    pub icmp_first: u32,
    pub icmp_error: u32,
    pub other_first: u32,
    pub other_single: u32,
    pub other_multiple: u32,
    pub frag: u32,
    pub interval: u32,
    /// State count where timeouts start to shrink; `None` = 60% of `[limits] states`.
    pub adaptive_start: Option<u32>,
    /// State count where timeouts reach zero; `None` = 120% of `[limits] states`.
    pub adaptive_end: Option<u32>,
}

impl Default for Timeouts {
    fn default() -> Self {
        Timeouts {
            tcp_first: 120,
            tcp_opening: 30,
            tcp_established: 86400,
            tcp_closing: 900,
            tcp_finwait: 45,
            tcp_closed: 90,
            udp_first: 60,
            udp_single: 30,
            udp_multiple: 60,
            icmp_first: 20,
            icmp_error: 10,
            other_first: 60,
            other_single: 30,
            other_multiple: 60,
            frag: 60,
            interval: 10,
            adaptive_start: None,
            adaptive_end: None,
        }
    }
}

impl Timeouts {
    /// The adaptive window `(start, end)` for a state limit, with pf's defaults
    /// (60% and 120% of the limit) where not configured.
    pub fn adaptive(&self, state_limit: u32) -> (u32, u32) {
        let start = self
            .adaptive_start
            .unwrap_or((state_limit as u64 * 6 / 10) as u32);
        let end = self
            .adaptive_end
            .unwrap_or((state_limit as u64 * 12 / 10).min(u32::MAX as u64) as u32);
        (start, end)
    }
}

/// One entry of a table: a prefix, possibly negated (`!192.0.2.5`).
///
/// pf's tables use longest-prefix match: the most specific entry that contains an
/// address decides, and a negated entry decides "not in the table".
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TableEntry {
    pub negated: bool,
    pub net: IpNet,
}

/// `[tables]`: a named address set.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Table {
    pub name: String,
    pub entries: Vec<TableEntry>,
    pub origin: Origin,
}

/// What a rule (or the default) does with a packet.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Action {
    Pass,
    Block,
}

impl Action {
    pub fn as_str(self) -> &'static str {
        match self {
            Action::Pass => "pass",
            Action::Block => "block",
        }
    }
}

/// How block rules without an explicit `return` behave (pf's `set block-policy`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum BlockPolicy {
    #[default]
    Drop,
    Return,
}

/// `[policy]`: options of the whole ruleset.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PolicyOptions {
    /// The verdict for a packet no rule matches. rampart defaults to `Block`; pf passes.
    pub default: Action,
    pub block_policy: BlockPolicy,
}

impl Default for PolicyOptions {
    fn default() -> Self {
        PolicyOptions {
            default: Action::Block,
            block_policy: BlockPolicy::Drop,
        }
    }
}

/// Packet direction relative to an interface.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Direction {
    In,
    Out,
}

impl Direction {
    pub fn as_str(self) -> &'static str {
        match self {
            Direction::In => "in",
            Direction::Out => "out",
        }
    }
}

/// Address family.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum AddressFamily {
    Inet,
    Inet6,
}

impl AddressFamily {
    pub fn of(addr: &IpAddr) -> AddressFamily {
        match addr {
            IpAddr::V4(_) => AddressFamily::Inet,
            IpAddr::V6(_) => AddressFamily::Inet6,
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            AddressFamily::Inet => "inet",
            AddressFamily::Inet6 => "inet6",
        }
    }
}

/// IP protocol numbers rampart names.
pub mod proto {
    pub const ICMP: u8 = 1;
    pub const TCP: u8 = 6;
    pub const UDP: u8 = 17;
    pub const ICMP6: u8 = 58;
    pub const CARP: u8 = 112;
    pub const PFSYNC: u8 = 240;

    /// pf's name for a protocol number, if it has a common one.
    pub fn name(p: u8) -> Option<&'static str> {
        Some(match p {
            ICMP => "icmp",
            TCP => "tcp",
            UDP => "udp",
            ICMP6 => "icmp6",
            CARP => "carp",
            PFSYNC => "pfsync",
            _ => return None,
        })
    }
}

/// One address item of a rule's `from`/`to`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AddrItem {
    /// `any`
    Any,
    /// An address (a host prefix) or a CIDR.
    Net(IpNet),
    /// `<name>`: a table, by its index in [`Config::tables`].
    Table(usize),
    /// `self`: the appliance's own addresses (interface addresses and CARP VIPs).
    SelfAddrs,
}

/// A possibly negated address item (`!10.0.0.0/8`, `!<bogons>`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AddrSpec {
    pub negated: bool,
    pub item: AddrItem,
}

/// An inclusive port range; a single port is `lo == hi`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct PortRange {
    pub lo: u16,
    pub hi: u16,
}

impl PortRange {
    pub fn contains(&self, port: u16) -> bool {
        self.lo <= port && port <= self.hi
    }
}

/// TCP flag bits, as on the wire.
pub mod tcp_flags {
    pub const FIN: u8 = 0x01;
    pub const SYN: u8 = 0x02;
    pub const RST: u8 = 0x04;
    pub const PSH: u8 = 0x08;
    pub const ACK: u8 = 0x10;
    pub const URG: u8 = 0x20;
    pub const ECE: u8 = 0x40;
    pub const CWR: u8 = 0x80;

    /// pf's letters, in pf's order: F S R P A U E W.
    pub const LETTERS: [(char, u8); 8] = [
        ('F', FIN),
        ('S', SYN),
        ('R', RST),
        ('P', PSH),
        ('A', ACK),
        ('U', URG),
        ('E', ECE),
        ('W', CWR),
    ];

    /// Formats a flag set in pf's letters (`SA`).
    pub fn letters(bits: u8) -> String {
        LETTERS
            .iter()
            .filter(|(_, b)| bits & b != 0)
            .map(|(c, _)| *c)
            .collect()
    }
}

/// `flags S/SA`: the packet's flags, masked with `mask`, must equal `set`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct TcpFlagsMatch {
    pub set: u8,
    pub mask: u8,
}

impl TcpFlagsMatch {
    /// pfctl's default for stateful pass rules: `flags S/SA`.
    pub const SYN_ONLY: TcpFlagsMatch = TcpFlagsMatch {
        set: tcp_flags::SYN,
        mask: tcp_flags::SYN | tcp_flags::ACK,
    };

    pub fn matches(&self, flags: u8) -> bool {
        flags & self.mask == self.set
    }
}

impl std::fmt::Display for TcpFlagsMatch {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{}/{}",
            tcp_flags::letters(self.set),
            tcp_flags::letters(self.mask)
        )
    }
}

/// One `[[rule]]`, in pf's words.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rule {
    pub action: Action,
    /// `None` matches both directions.
    pub direction: Option<Direction>,
    pub quick: bool,
    /// The interface, by index in [`Config::interfaces`]; `None` matches any interface.
    pub on: Option<usize>,
    /// `None` matches both families.
    pub af: Option<AddressFamily>,
    /// Protocols (OR-ed); empty matches any protocol.
    pub proto: Vec<u8>,
    /// Source items, OR-ed as pf expands lists; empty matches any source.
    pub from: Vec<AddrSpec>,
    /// Source port ranges (OR-ed); empty matches any port.
    pub from_port: Vec<PortRange>,
    pub to: Vec<AddrSpec>,
    pub to_port: Vec<PortRange>,
    /// TCP flags test, applied to TCP packets only. Stateful pass rules get
    /// `S/SA` unless the rule says otherwise (`flags = "any"` clears it).
    pub flags: Option<TcpFlagsMatch>,
    /// Create state on pass (pass rules default to true; always false on block).
    pub keep_state: bool,
    pub log: bool,
    pub label: Option<String>,
    /// Block rules: answer with TCP RST / ICMP unreachable instead of dropping silently.
    /// Already resolved against `[policy] block_policy` (an explicit `return = false` is
    /// pf's `block drop`).
    pub return_: bool,
    pub origin: Origin,
}

impl Rule {
    /// The rule in pfctl's canonical one-line form (`pfctl -sr`).
    pub fn to_pf_string(&self, config: &Config) -> String {
        use std::fmt::Write;
        let mut s = String::new();
        s.push_str(self.action.as_str());
        if self.action == Action::Block && self.return_ {
            s.push_str(" return");
        }
        if let Some(d) = self.direction {
            let _ = write!(s, " {}", d.as_str());
        }
        if self.log {
            s.push_str(" log");
        }
        if self.quick {
            s.push_str(" quick");
        }
        if let Some(i) = self.on {
            let _ = write!(s, " on {}", config.interfaces[i].name);
        }
        if let Some(af) = self.af {
            let _ = write!(s, " {}", af.as_str());
        }
        if !self.proto.is_empty() {
            let names: Vec<String> = self
                .proto
                .iter()
                .map(|p| {
                    proto::name(*p)
                        .map(str::to_string)
                        .unwrap_or_else(|| p.to_string())
                })
                .collect();
            let _ = write!(s, " proto {}", braced(&names));
        }
        let addr = |specs: &[AddrSpec]| -> String {
            if specs.is_empty() {
                return "any".to_string();
            }
            let items: Vec<String> = specs
                .iter()
                .map(|a| {
                    let body = match &a.item {
                        AddrItem::Any => "any".to_string(),
                        AddrItem::Net(n) if n.prefix_len() == n.max_prefix_len() => {
                            n.addr().to_string()
                        }
                        AddrItem::Net(n) => n.to_string(),
                        AddrItem::Table(t) => format!("<{}>", config.tables[*t].name),
                        AddrItem::SelfAddrs => "self".to_string(),
                    };
                    if a.negated {
                        format!("! {body}")
                    } else {
                        body
                    }
                })
                .collect();
            braced(&items)
        };
        let port = |ports: &[PortRange]| -> String {
            let items: Vec<String> = ports
                .iter()
                .map(|p| {
                    if p.lo == p.hi {
                        format!("= {}", p.lo)
                    } else {
                        format!("{}:{}", p.lo, p.hi)
                    }
                })
                .collect();
            braced(&items)
        };
        if self.from.is_empty()
            && self.to.is_empty()
            && self.from_port.is_empty()
            && self.to_port.is_empty()
        {
            s.push_str(" all");
        } else {
            let _ = write!(s, " from {}", addr(&self.from));
            if !self.from_port.is_empty() {
                let _ = write!(s, " port {}", port(&self.from_port));
            }
            let _ = write!(s, " to {}", addr(&self.to));
            if !self.to_port.is_empty() {
                let _ = write!(s, " port {}", port(&self.to_port));
            }
        }
        // pfctl shows flags only where they can apply: TCP, or any protocol.
        if let Some(f) = self
            .flags
            .filter(|_| self.proto.is_empty() || self.proto.contains(&proto::TCP))
        {
            let _ = write!(s, " flags {f}");
        }
        if self.action == Action::Pass {
            s.push_str(if self.keep_state {
                " keep state"
            } else {
                " no state"
            });
        }
        if let Some(l) = &self.label {
            let _ = write!(s, " label \"{l}\"");
        }
        s
    }
}

fn braced(items: &[String]) -> String {
    if items.len() == 1 {
        items[0].clone()
    } else {
        format!("{{ {} }}", items.join(", "))
    }
}
