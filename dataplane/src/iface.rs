//! The appliance's interfaces as the packet path sees them: index, MAC, addresses, MTU.
//!
//! Everything else in the dataplane names an interface by its `u16` index — its position in
//! `config.interfaces` — so per-packet code never touches a name. The table is built once
//! from the validated configuration and the MAC each port actually uses, and is immutable
//! afterwards: workers share it (by `Arc`, or inside a [`Published`](crate::shared::Published)
//! version on reload) and read it with no lock and no atomic at all.
//!
//! Per-packet queries are an index into a `Vec` ([`InterfaceTable::mac`]) or one probe of an
//! `ahash` map built at construction ([`InterfaceTable::is_local`]); the questions about one
//! interface's prefixes ([`InterfaceTable::on_link`], [`InterfaceTable::is_directed_broadcast`],
//! [`InterfaceTable::source_for`]) scan its few addresses. None of them allocates.
//!
//! Each interface also has an IPv6 link-local address derived from its MAC (modified
//! EUI-64, RFC 4291 appendix A), which Neighbor Discovery uses whether or not the interface
//! has configured IPv6 addresses.

use std::net::{IpAddr, Ipv6Addr};

use ahash::AHashMap;
use ipnet::IpNet;
use rampart_conf::{AddressFamily, Config, MacAddr};

/// One interface of the appliance, as configured and as the port is actually set up.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InterfaceInfo {
    name: String,
    mac: MacAddr,
    addresses: Vec<IpNet>,
    mtu: u16,
    link_local: Ipv6Addr,
}

impl InterfaceInfo {
    /// The name rules and routes use (`on = "lan"`).
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The MAC the port sends from (the configured one, or the device's own).
    pub fn mac(&self) -> MacAddr {
        self.mac
    }

    /// The configured addresses with their connected prefix lengths, in configuration order.
    pub fn addresses(&self) -> &[IpNet] {
        &self.addresses
    }

    pub fn mtu(&self) -> u16 {
        self.mtu
    }

    /// The EUI-64 link-local address derived from [`mac`](Self::mac).
    pub fn ipv6_link_local(&self) -> Ipv6Addr {
        self.link_local
    }
}

/// Every interface of the appliance, indexed by position in `config.interfaces`.
#[derive(Debug, Clone)]
pub struct InterfaceTable {
    interfaces: Vec<InterfaceInfo>,
    /// Each own address (configured and derived link-local) → the interface that holds it.
    local: AHashMap<IpAddr, u16>,
}

impl InterfaceTable {
    /// Builds the table. `macs[i]` is the MAC interface `i` actually uses: the configured
    /// `mac` when there is one, otherwise the device's own (only the caller, which has
    /// opened the devices, knows the latter).
    ///
    /// If two interfaces claim the same address (a misconfiguration validation should have
    /// caught), [`is_local`](Self::is_local) answers with the first.
    ///
    /// # Panics
    ///
    /// If `macs` does not have one entry per configured interface, or if there are more
    /// interfaces than a `u16` index can name — both are programming errors.
    pub fn new(config: &Config, macs: &[MacAddr]) -> InterfaceTable {
        assert_eq!(
            macs.len(),
            config.interfaces.len(),
            "InterfaceTable::new needs one MAC per configured interface"
        );
        assert!(
            config.interfaces.len() <= usize::from(u16::MAX),
            "too many interfaces"
        );

        let interfaces: Vec<InterfaceInfo> = config
            .interfaces
            .iter()
            .zip(macs)
            .map(|(iface, &mac)| InterfaceInfo {
                name: iface.name.clone(),
                mac,
                addresses: iface.addresses.clone(),
                mtu: iface.mtu,
                link_local: eui64_link_local(mac),
            })
            .collect();

        let mut local = AHashMap::new();
        // Configured addresses first, so a link-local that happens to equal a configured
        // address on another interface does not take it over.
        for (index, iface) in interfaces.iter().enumerate() {
            for net in &iface.addresses {
                local.entry(net.addr()).or_insert(index as u16);
            }
        }
        for (index, iface) in interfaces.iter().enumerate() {
            local
                .entry(IpAddr::V6(iface.link_local))
                .or_insert(index as u16);
        }

        InterfaceTable { interfaces, local }
    }

    pub fn len(&self) -> usize {
        self.interfaces.len()
    }

    pub fn is_empty(&self) -> bool {
        self.interfaces.is_empty()
    }

    /// The interface at `iface`, if there is one.
    #[inline]
    pub fn get(&self, iface: u16) -> Option<&InterfaceInfo> {
        self.interfaces.get(usize::from(iface))
    }

    /// All interfaces, in index order.
    pub fn iter(&self) -> impl ExactSizeIterator<Item = &InterfaceInfo> + '_ {
        self.interfaces.iter()
    }

    /// The index of the interface called `name` (control side: names never reach workers).
    pub fn index_of(&self, name: &str) -> Option<u16> {
        self.interfaces
            .iter()
            .position(|i| i.name == name)
            .map(|i| i as u16)
    }

    /// The MAC interface `iface` sends from.
    ///
    /// # Panics
    ///
    /// If `iface` is not a valid index: indices come from this configuration, so a bad one
    /// is a bug, not a packet to drop.
    #[inline]
    pub fn mac(&self, iface: u16) -> MacAddr {
        self.interfaces[usize::from(iface)].mac
    }

    /// The MTU of interface `iface`. Panics on an invalid index, as [`mac`](Self::mac).
    #[inline]
    pub fn mtu(&self, iface: u16) -> u16 {
        self.interfaces[usize::from(iface)].mtu
    }

    /// The EUI-64 link-local address of interface `iface`, for Neighbor Discovery. Panics
    /// on an invalid index, as [`mac`](Self::mac).
    #[inline]
    pub fn ipv6_link_local(&self, iface: u16) -> Ipv6Addr {
        self.interfaces[usize::from(iface)].link_local
    }

    /// Whether `addr` is one of the appliance's own interface addresses (configured, or an
    /// interface's derived IPv6 link-local), and which interface holds it. CARP VIPs are not
    /// interface addresses: see [`VipTable`](crate::vip::VipTable).
    ///
    /// Link-local addresses are only unique per link; when two interfaces derive the same
    /// one (identical MACs), the first is named. Code that cares about the receiving
    /// interface compares with [`ipv6_link_local`](Self::ipv6_link_local) directly.
    #[inline]
    pub fn is_local(&self, addr: IpAddr) -> Option<u16> {
        self.local.get(&addr).copied()
    }

    /// Whether `addr` is on interface `iface`'s link: inside one of its connected prefixes,
    /// or an IPv6 link-local address (fe80::/10 is on every link). The receive path uses it
    /// to learn neighbours only from senders that can really be on the link. `false` for
    /// an invalid index.
    #[inline]
    pub fn on_link(&self, iface: u16, addr: IpAddr) -> bool {
        if let IpAddr::V6(a) = addr {
            if a.is_unicast_link_local() {
                return self.get(iface).is_some();
            }
        }
        self.get(iface)
            .is_some_and(|info| info.addresses.iter().any(|net| net.contains(&addr)))
    }

    /// Whether `addr` is the directed broadcast address of one of interface `iface`'s IPv4
    /// prefixes (10.0.0.255 for 10.0.0.2/24): traffic to it is for every host on the link,
    /// so it must be neither forwarded nor answered with an error. /31 and /32 prefixes
    /// have no broadcast address (RFC 3021). `false` for IPv6 and invalid indices.
    #[inline]
    pub fn is_directed_broadcast(&self, iface: u16, addr: IpAddr) -> bool {
        let IpAddr::V4(a) = addr else { return false };
        self.get(iface).is_some_and(|info| {
            info.addresses.iter().any(|net| match net {
                IpNet::V4(n) => n.prefix_len() <= 30 && n.broadcast() == a,
                IpNet::V6(_) => false,
            })
        })
    }

    /// A source address of `family` on interface `iface`: its first configured address of
    /// that family, or for IPv6 its link-local when none is configured (every IPv6
    /// interface has one). `None` for an invalid index or an IPv4-less interface.
    #[inline]
    pub fn addr_on(&self, iface: u16, family: AddressFamily) -> Option<IpAddr> {
        let info = self.get(iface)?;
        info.addresses
            .iter()
            .map(IpNet::addr)
            .find(|a| AddressFamily::of(a) == family)
            .or(match family {
                AddressFamily::Inet => None,
                AddressFamily::Inet6 => Some(IpAddr::V6(info.link_local)),
            })
    }

    /// The source address to use when sending to `target` out of interface `iface` (ARP
    /// requests, Neighbor Solicitations, ICMP errors): the address whose prefix contains
    /// `target` (the most specific if several do), so the peer sees a source on its own
    /// subnet; for an IPv6 link-local target, the link-local; otherwise
    /// [`addr_on`](Self::addr_on) for `target`'s family.
    #[inline]
    pub fn source_for(&self, iface: u16, target: IpAddr) -> Option<IpAddr> {
        let info = self.get(iface)?;
        if let IpAddr::V6(t) = target {
            if t.is_unicast_link_local() {
                return Some(IpAddr::V6(info.link_local));
            }
        }
        let mut best: Option<&IpNet> = None;
        for net in &info.addresses {
            if net.contains(&target) && best.is_none_or(|b| net.prefix_len() > b.prefix_len()) {
                best = Some(net);
            }
        }
        match best {
            Some(net) => Some(net.addr()),
            None => self.addr_on(iface, AddressFamily::of(&target)),
        }
    }
}

/// The IPv6 link-local address (fe80::/64) with the modified EUI-64 interface identifier of
/// `mac` (RFC 4291 appendix A): the MAC split by ff:fe, with the universal/local bit
/// inverted.
pub const fn eui64_link_local(mac: MacAddr) -> Ipv6Addr {
    let m = mac.0;
    Ipv6Addr::new(
        0xfe80,
        0,
        0,
        0,
        u16::from_be_bytes([m[0] ^ 0x02, m[1]]),
        u16::from_be_bytes([m[2], 0xff]),
        u16::from_be_bytes([0xfe, m[3]]),
        u16::from_be_bytes([m[4], m[5]]),
    )
}

/// Configurations for the tests of this module and of the routing, neighbour and VIP
/// tables (they all build from the same [`Config`], which has no `Default`).
#[cfg(test)]
pub(crate) mod fixtures {
    use std::net::IpAddr;

    use rampart_conf::{
        Carp, Config, Control, Dpdk, Interface, Limits, Neighbor, Origin, PolicyOptions, Route,
        Timeouts,
    };

    pub fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    /// An interface called `name` with the given `addr/len` addresses.
    pub fn interface(name: &str, addresses: &[&str]) -> Interface {
        Interface {
            name: name.into(),
            device: format!("net_null_{name}"),
            mac: None,
            addresses: addresses.iter().map(|a| a.parse().unwrap()).collect(),
            mtu: 1500,
            origin: Origin::default(),
        }
    }

    pub fn route(destination: &str, gateway: &str, interface: &str) -> Route {
        Route {
            destination: destination.parse().unwrap(),
            gateway: ip(gateway),
            interface: interface.into(),
            origin: Origin::default(),
        }
    }

    pub fn neighbor(interface: &str, address: &str, mac: &str) -> Neighbor {
        Neighbor {
            interface: interface.into(),
            address: ip(address),
            mac: mac.parse().unwrap(),
            origin: Origin::default(),
        }
    }

    pub fn carp(vhid: u8, interface: &str, addresses: &[&str]) -> Carp {
        Carp {
            vhid,
            interface: interface.into(),
            addresses: addresses.iter().map(|a| ip(a)).collect(),
            advbase: 1,
            advskew: 0,
            key: [0; 20],
            preempt: false,
            peer: None,
            origin: Origin::default(),
        }
    }

    /// A configuration with only the given interfaces; tests fill in the rest.
    pub fn config(interfaces: Vec<Interface>) -> Config {
        Config {
            path: "test.toml".into(),
            policy_path: None,
            appliance: Default::default(),
            dpdk: Dpdk::default(),
            interfaces,
            routes: vec![],
            neighbors: vec![],
            carp: vec![],
            pfsync: None,
            control: Control::default(),
            limits: Limits::default(),
            timeouts: Timeouts::default(),
            tables: vec![],
            policy: PolicyOptions::default(),
            rules: vec![],
        }
    }

    /// `wan` (0), `lan` (1) and `dmz` (2), dual-stack except `lan`.
    pub fn three_interfaces() -> Config {
        config(vec![
            interface("wan", &["203.0.113.2/24", "2001:db8:ffff::2/64"]),
            interface("lan", &["10.0.0.2/16", "10.1.0.2/24"]),
            interface("dmz", &["172.16.0.1/24", "fd00::1/64", "fd00:1::1/48"]),
        ])
    }
}

#[cfg(test)]
mod tests {
    use super::fixtures::*;
    use super::*;

    fn macs() -> Vec<MacAddr> {
        vec![
            MacAddr([0x52, 0x54, 0x00, 0x00, 0x00, 0x01]),
            MacAddr([0x52, 0x54, 0x00, 0x00, 0x00, 0x02]),
            MacAddr([0x00, 0x1b, 0x21, 0xaa, 0xbb, 0xcc]),
        ]
    }

    fn table() -> InterfaceTable {
        InterfaceTable::new(&three_interfaces(), &macs())
    }

    #[test]
    fn indices_names_macs_and_mtus_follow_the_configuration() {
        let t = table();
        assert_eq!(t.len(), 3);
        assert_eq!(t.index_of("lan"), Some(1));
        assert_eq!(t.index_of("nope"), None);
        assert_eq!(t.get(2).unwrap().name(), "dmz");
        assert!(t.get(3).is_none());
        assert_eq!(t.mac(0), macs()[0]);
        assert_eq!(t.mac(2), macs()[2]);
        assert_eq!(t.mtu(1), 1500);
        assert_eq!(t.get(1).unwrap().addresses().len(), 2);
    }

    #[test]
    #[should_panic(expected = "one MAC per configured interface")]
    fn a_missing_mac_is_a_programming_error() {
        InterfaceTable::new(&three_interfaces(), &macs()[..2]);
    }

    #[test]
    fn eui64_flips_the_universal_local_bit_and_inserts_fffe() {
        // RFC 4291 appendix A's shape, checked against what Linux derives for this MAC.
        let mac = MacAddr([0x00, 0x1b, 0x21, 0xaa, 0xbb, 0xcc]);
        assert_eq!(
            eui64_link_local(mac),
            "fe80::21b:21ff:feaa:bbcc".parse::<Ipv6Addr>().unwrap()
        );
        let local_mac = MacAddr([0x52, 0x54, 0x00, 0x12, 0x34, 0x56]);
        assert_eq!(
            eui64_link_local(local_mac),
            "fe80::5054:ff:fe12:3456".parse::<Ipv6Addr>().unwrap()
        );
        assert_eq!(table().ipv6_link_local(2), eui64_link_local(mac));
    }

    #[test]
    fn own_addresses_are_local_and_name_their_interface() {
        let t = table();
        assert_eq!(t.is_local(ip("203.0.113.2")), Some(0));
        assert_eq!(t.is_local(ip("2001:db8:ffff::2")), Some(0));
        assert_eq!(t.is_local(ip("10.1.0.2")), Some(1));
        assert_eq!(t.is_local(ip("fd00:1::1")), Some(2));
        assert_eq!(t.is_local(IpAddr::V6(t.ipv6_link_local(1))), Some(1));
        // Other hosts on the connected prefixes, and the prefixes' network addresses.
        assert_eq!(t.is_local(ip("203.0.113.1")), None);
        assert_eq!(t.is_local(ip("10.0.0.0")), None);
        assert_eq!(t.is_local(ip("fd00::2")), None);
    }

    #[test]
    fn on_link_means_inside_a_connected_prefix() {
        let t = table();
        assert!(t.on_link(1, ip("10.0.200.1")), "inside lan's /16");
        assert!(t.on_link(1, ip("10.1.0.200")), "inside lan's /24");
        assert!(
            t.on_link(1, ip("10.0.0.2")),
            "our own address is on the link too"
        );
        assert!(!t.on_link(1, ip("10.2.0.1")));
        assert!(!t.on_link(0, ip("10.0.0.1")), "lan's prefix, wan's link");
        assert!(t.on_link(2, ip("fd00::99")));
        assert!(!t.on_link(2, ip("fd01::1")));
        assert!(
            t.on_link(1, ip("fe80::1234")),
            "link-local is on every link"
        );
        assert!(!t.on_link(9, ip("10.0.0.1")));
        assert!(!t.on_link(9, ip("fe80::1")));
    }

    #[test]
    fn directed_broadcasts_are_per_interface_and_ipv4_only() {
        let t = table();
        assert!(t.is_directed_broadcast(1, ip("10.0.255.255")), "lan /16");
        assert!(t.is_directed_broadcast(1, ip("10.1.0.255")), "lan /24");
        assert!(t.is_directed_broadcast(0, ip("203.0.113.255")));
        assert!(
            !t.is_directed_broadcast(0, ip("10.0.255.255")),
            "another link's broadcast"
        );
        assert!(!t.is_directed_broadcast(1, ip("10.1.0.254")));
        assert!(!t.is_directed_broadcast(2, ip("fd00::ffff:ffff:ffff:ffff")));
        assert!(!t.is_directed_broadcast(9, ip("10.0.255.255")));

        let p2p = config(vec![interface("p2p", &["192.0.2.0/31", "198.51.100.7/32"])]);
        let t = InterfaceTable::new(&p2p, &[MacAddr::default()]);
        assert!(
            !t.is_directed_broadcast(0, ip("192.0.2.1")),
            "a /31 has no broadcast"
        );
        assert!(!t.is_directed_broadcast(0, ip("198.51.100.7")));
    }

    #[test]
    fn addr_on_picks_the_first_address_of_the_family() {
        let t = table();
        assert_eq!(t.addr_on(0, AddressFamily::Inet), Some(ip("203.0.113.2")));
        assert_eq!(
            t.addr_on(0, AddressFamily::Inet6),
            Some(ip("2001:db8:ffff::2"))
        );
        assert_eq!(t.addr_on(1, AddressFamily::Inet), Some(ip("10.0.0.2")));
        // lan has no IPv6 address: its link-local still serves.
        assert_eq!(
            t.addr_on(1, AddressFamily::Inet6),
            Some(IpAddr::V6(t.ipv6_link_local(1)))
        );
        assert_eq!(t.addr_on(9, AddressFamily::Inet), None);

        let v6_only = config(vec![interface("v6", &["2001:db8::1/64"])]);
        let t = InterfaceTable::new(&v6_only, &[MacAddr::default()]);
        assert_eq!(t.addr_on(0, AddressFamily::Inet), None);
    }

    #[test]
    fn source_for_prefers_the_address_on_the_targets_subnet() {
        let t = table();
        assert_eq!(
            t.source_for(1, ip("10.1.0.77")),
            Some(ip("10.1.0.2")),
            "the /24, not the /16"
        );
        assert_eq!(t.source_for(1, ip("10.0.9.9")), Some(ip("10.0.0.2")));
        assert_eq!(
            t.source_for(1, ip("192.0.2.1")),
            Some(ip("10.0.0.2")),
            "off-link: first"
        );
        assert_eq!(t.source_for(2, ip("fd00:1:0:5::9")), Some(ip("fd00:1::1")));
        assert_eq!(t.source_for(2, ip("fd00::9")), Some(ip("fd00::1")));
        assert_eq!(t.source_for(2, ip("2001:db8::1")), Some(ip("fd00::1")));
        assert_eq!(
            t.source_for(2, ip("fe80::1")),
            Some(IpAddr::V6(t.ipv6_link_local(2)))
        );
        assert_eq!(t.source_for(9, ip("10.0.0.1")), None);
    }
}
