//! The forwarding table: longest-prefix match over connected and static routes.
//!
//! Routes come from the configuration only: a **connected route** for the prefix of every
//! interface address (the destination is on the link, so the address to resolve is the
//! destination itself) and every static `[[route]]` (resolve the gateway, on the named
//! interface). Where a connected and a static route have the same prefix, the connected
//! one wins, as in a kernel where the interface route cannot be shadowed by a static route
//! to the same prefix.
//!
//! # Design
//!
//! Per address family, one `ahash` map per prefix length that has routes, keyed by the
//! masked destination, with the lengths kept longest first. A lookup masks the address
//! and probes the maps in that order; the first hit is the longest match. That is
//! O(L) hash probes, where L is the number of *distinct* prefix lengths present (at most
//! 33 for IPv4 and 129 for IPv6, in practice a handful: the connected /24s and /64s, a few
//! static prefixes, the default route), independent of the number of routes, and each
//! probe hashes one integer. A trie would be O(prefix bits) pointer chases, which is
//! slower for the few-lengths tables an appliance has; binary search on lengths
//! (Waldvogel) would need marker entries and pays off only with many distinct lengths.
//!
//! The table is immutable once built. Workers share it by `Arc` (inside a
//! [`Published`](crate::shared::Published) version when a reload replaces it), so a lookup
//! takes no lock, touches no atomic, and does not allocate.

use std::hash::Hash;
use std::net::IpAddr;
use std::ops::BitAnd;

use ahash::AHashMap;
use ipnet::IpNet;
use rampart_conf::Config;

/// Where to send a packet: out of `iface`, to the link-layer address of `via`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct NextHop {
    /// The outgoing interface's index.
    pub iface: u16,
    /// The address to resolve (ARP/ND): the gateway of a static route, or the destination
    /// itself for a connected route.
    pub via: IpAddr,
    /// Whether the destination is on the link (a connected route).
    pub connected: bool,
}

/// An address family's destination as an integer, so one LPM serves both families.
trait RouteKey: Copy + Eq + Hash + BitAnd<Output = Self> {
    const WIDTH: u8;
    /// The netmask of a `len`-bit prefix.
    fn mask(len: u8) -> Self;
}

impl RouteKey for u32 {
    const WIDTH: u8 = 32;
    fn mask(len: u8) -> u32 {
        // `checked_shl` because shifting by the full width (len 0) is an overflow.
        u32::MAX
            .checked_shl(u32::from(Self::WIDTH - len))
            .unwrap_or(0)
    }
}

impl RouteKey for u128 {
    const WIDTH: u8 = 128;
    fn mask(len: u8) -> u128 {
        u128::MAX
            .checked_shl(u32::from(Self::WIDTH - len))
            .unwrap_or(0)
    }
}

/// The routes of one prefix length.
#[derive(Debug, Clone)]
struct Level<K> {
    len: u8,
    mask: K,
    /// Masked destination → next hop (`via` of connected routes is filled in per lookup).
    routes: AHashMap<K, NextHop>,
}

/// Longest-prefix match for one family: the levels, longest prefix first.
#[derive(Debug, Clone)]
struct Lpm<K> {
    levels: Vec<Level<K>>,
}

impl<K: RouteKey> Lpm<K> {
    fn new() -> Self {
        Lpm { levels: Vec::new() }
    }

    /// Adds a route unless one for the same prefix is already there: the builder inserts
    /// in precedence order, so the first insert wins.
    fn insert(&mut self, network: K, len: u8, hop: NextHop) {
        let position = match self.levels.binary_search_by(|l| len.cmp(&l.len)) {
            Ok(i) => i,
            Err(i) => {
                self.levels.insert(
                    i,
                    Level {
                        len,
                        mask: K::mask(len),
                        routes: AHashMap::new(),
                    },
                );
                i
            }
        };
        let level = &mut self.levels[position];
        level.routes.entry(network & level.mask).or_insert(hop);
    }

    #[inline]
    fn lookup(&self, addr: K) -> Option<NextHop> {
        self.levels
            .iter()
            .find_map(|level| level.routes.get(&(addr & level.mask)).copied())
    }

    fn len(&self) -> usize {
        self.levels.iter().map(|l| l.routes.len()).sum()
    }
}

/// The routing table of both families. See the [module documentation](self).
#[derive(Debug, Clone)]
pub struct RouteTable {
    v4: Lpm<u32>,
    v6: Lpm<u128>,
}

impl Default for RouteTable {
    fn default() -> Self {
        RouteTable {
            v4: Lpm::new(),
            v6: Lpm::new(),
        }
    }
}

impl RouteTable {
    /// Builds the table from the interfaces' connected prefixes and the static routes.
    ///
    /// Precedence for one prefix: connected before static, then configuration order (the
    /// first interface or route listed for a prefix is kept). Routes naming an interface
    /// the configuration does not have are skipped (validation rejects them).
    pub fn from_config(config: &Config) -> RouteTable {
        let mut table = RouteTable::default();
        for (index, iface) in config.interfaces.iter().enumerate() {
            for net in &iface.addresses {
                let trunc = net.trunc();
                table.insert(
                    trunc,
                    NextHop {
                        iface: index as u16,
                        via: trunc.network(),
                        connected: true,
                    },
                );
            }
        }
        for route in &config.routes {
            let Some(index) = config.interface_index(&route.interface) else {
                debug_assert!(false, "route via unknown interface {}", route.interface);
                continue;
            };
            table.insert(
                route.destination.trunc(),
                NextHop {
                    iface: index as u16,
                    via: route.gateway,
                    connected: false,
                },
            );
        }
        table
    }

    fn insert(&mut self, net: IpNet, hop: NextHop) {
        match net {
            IpNet::V4(n) => self.v4.insert(u32::from(n.network()), n.prefix_len(), hop),
            IpNet::V6(n) => self.v6.insert(u128::from(n.network()), n.prefix_len(), hop),
        }
    }

    /// The next hop for `dst`: the route with the longest prefix containing it, or `None`
    /// when no route does (no default route). For a connected route `via` is `dst`.
    #[inline]
    pub fn lookup(&self, dst: IpAddr) -> Option<NextHop> {
        let mut hop = match dst {
            IpAddr::V4(a) => self.v4.lookup(u32::from(a)),
            IpAddr::V6(a) => self.v6.lookup(u128::from(a)),
        }?;
        if hop.connected {
            hop.via = dst;
        }
        Some(hop)
    }

    /// The number of routes (connected and static, after dropping shadowed duplicates).
    pub fn len(&self) -> usize {
        self.v4.len() + self.v6.len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Every route, for tools: IPv4 before IPv6, then by network address, then shorter
    /// prefixes first (the order of `netstat -rn`). A connected route's `via` is the
    /// prefix's network address (it resolves each destination itself).
    pub fn routes(&self) -> Vec<(IpNet, NextHop)> {
        let mut out = Vec::with_capacity(self.len());
        for level in &self.v4.levels {
            for (&network, &hop) in &level.routes {
                let net = ipnet::Ipv4Net::new(network.into(), level.len).expect("len <= 32");
                out.push((IpNet::V4(net), hop));
            }
        }
        for level in &self.v6.levels {
            for (&network, &hop) in &level.routes {
                let net = ipnet::Ipv6Net::new(network.into(), level.len).expect("len <= 128");
                out.push((IpNet::V6(net), hop));
            }
        }
        out.sort_by_key(|(net, _)| (net.addr(), net.prefix_len()));
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::iface::fixtures::*;

    fn connected(iface: u16, dst: &str) -> Option<NextHop> {
        Some(NextHop {
            iface,
            via: ip(dst),
            connected: true,
        })
    }

    fn gateway(iface: u16, via: &str) -> Option<NextHop> {
        Some(NextHop {
            iface,
            via: ip(via),
            connected: false,
        })
    }

    /// wan (0): 203.0.113.2/24, 2001:db8:ffff::2/64; lan (1): 10.0.0.2/16, 10.1.0.2/24;
    /// dmz (2): 172.16.0.1/24, fd00::1/64, fd00:1::1/48 — plus static routes.
    fn table() -> RouteTable {
        let mut config = three_interfaces();
        config.routes = vec![
            route("0.0.0.0/0", "203.0.113.1", "wan"),
            route("::/0", "fe80::1", "wan"),
            route("10.0.0.0/8", "10.0.0.254", "lan"),
            route("10.2.0.0/16", "10.1.0.1", "lan"),
            route("10.2.3.0/24", "172.16.0.9", "dmz"),
            route("192.0.2.77/32", "172.16.0.10", "dmz"),
            route("2001:db8:100::/48", "fd00::99", "dmz"),
            route("2001:db8:100::5/128", "fd00::98", "dmz"),
            // Same prefix as lan's connected 10.1.0.0/24: the connected route must win.
            route("10.1.0.0/24", "10.0.0.253", "lan"),
            // Same prefix as dmz's connected fd00::/64.
            route("fd00::/64", "2001:db8:ffff::1", "wan"),
        ];
        RouteTable::from_config(&config)
    }

    #[test]
    fn longest_match_wins() {
        let t = table();
        assert_eq!(
            t.lookup(ip("10.2.3.4")),
            gateway(2, "172.16.0.9"),
            "/24 over /16 and /8"
        );
        assert_eq!(
            t.lookup(ip("10.2.4.4")),
            gateway(1, "10.1.0.1"),
            "/16 over /8"
        );
        assert_eq!(
            t.lookup(ip("10.3.0.1")),
            gateway(1, "10.0.0.254"),
            "/8 over default"
        );
        assert_eq!(
            t.lookup(ip("10.0.7.7")),
            connected(1, "10.0.7.7"),
            "connected /16 over /8"
        );
        assert_eq!(
            t.lookup(ip("10.1.0.9")),
            connected(1, "10.1.0.9"),
            "connected /24"
        );
    }

    #[test]
    fn default_route_catches_the_rest() {
        let t = table();
        assert_eq!(t.lookup(ip("8.8.8.8")), gateway(0, "203.0.113.1"));
        assert_eq!(t.lookup(ip("255.255.255.254")), gateway(0, "203.0.113.1"));
        assert_eq!(t.lookup(ip("2606:4700::1111")), gateway(0, "fe80::1"));
    }

    #[test]
    fn connected_routes_resolve_the_destination_itself() {
        let t = table();
        assert_eq!(t.lookup(ip("203.0.113.77")), connected(0, "203.0.113.77"));
        assert_eq!(t.lookup(ip("172.16.0.200")), connected(2, "172.16.0.200"));
        assert_eq!(
            t.lookup(ip("2001:db8:ffff::42")),
            connected(0, "2001:db8:ffff::42")
        );
    }

    #[test]
    fn connected_beats_static_of_the_same_prefix() {
        let t = table();
        assert_eq!(t.lookup(ip("10.1.0.1")), connected(1, "10.1.0.1"));
        assert_eq!(t.lookup(ip("fd00::77")), connected(2, "fd00::77"));
    }

    #[test]
    fn ipv6_longest_match() {
        let t = table();
        assert_eq!(
            t.lookup(ip("2001:db8:100:1::1")),
            gateway(2, "fd00::99"),
            "/48"
        );
        assert_eq!(
            t.lookup(ip("fd00:1:0:9::1")),
            connected(2, "fd00:1:0:9::1"),
            "connected /48"
        );
        assert_eq!(
            t.lookup(ip("fd00:2::1")),
            gateway(0, "fe80::1"),
            "outside both: default"
        );
    }

    #[test]
    fn host_routes() {
        let t = table();
        assert_eq!(t.lookup(ip("192.0.2.77")), gateway(2, "172.16.0.10"), "/32");
        assert_eq!(
            t.lookup(ip("192.0.2.78")),
            gateway(0, "203.0.113.1"),
            "its neighbour"
        );
        assert_eq!(
            t.lookup(ip("2001:db8:100::5")),
            gateway(2, "fd00::98"),
            "/128"
        );
        assert_eq!(
            t.lookup(ip("2001:db8:100::6")),
            gateway(2, "fd00::99"),
            "its neighbour"
        );
    }

    #[test]
    fn no_route_is_none() {
        // Only connected routes, no default.
        let t = RouteTable::from_config(&three_interfaces());
        assert_eq!(t.lookup(ip("8.8.8.8")), None);
        assert_eq!(t.lookup(ip("2001:db8::1")), None);
        assert_eq!(t.lookup(ip("10.0.255.255")), connected(1, "10.0.255.255"));
        // An empty table (no interfaces at all).
        let empty = RouteTable::default();
        assert!(empty.is_empty());
        assert_eq!(empty.lookup(ip("10.0.0.1")), None);
        assert_eq!(empty.lookup(ip("::1")), None);
    }

    #[test]
    fn host_bits_in_configured_prefixes_are_ignored() {
        let mut config = config(vec![interface("lan", &["10.0.0.2/24"])]);
        config.routes = vec![route("192.168.1.99/24", "10.0.0.1", "lan")];
        let t = RouteTable::from_config(&config);
        assert_eq!(t.lookup(ip("192.168.1.5")), gateway(0, "10.0.0.1"));
    }

    #[test]
    fn routes_lists_every_route_in_order() {
        let t = table();
        let routes = t.routes();
        // 7 connected prefixes + 10 static, minus the 2 shadowed by connected ones.
        assert_eq!(routes.len(), 15);
        assert_eq!(t.len(), 15);
        assert_eq!(routes[0].0, "0.0.0.0/0".parse::<IpNet>().unwrap());
        assert_eq!(
            routes[1],
            (
                "10.0.0.0/8".parse().unwrap(),
                gateway(1, "10.0.0.254").unwrap()
            )
        );
        assert_eq!(
            routes[2],
            (
                "10.0.0.0/16".parse().unwrap(),
                connected(1, "10.0.0.0").unwrap()
            )
        );
        assert_eq!(
            routes.last().unwrap().0,
            "fd00:1::/48".parse::<IpNet>().unwrap()
        );
        let lan_24: Vec<_> = routes
            .iter()
            .filter(|(n, _)| n.to_string() == "10.1.0.0/24")
            .collect();
        assert_eq!(lan_24.len(), 1);
        assert!(lan_24[0].1.connected);
    }

    #[test]
    fn masks() {
        assert_eq!(<u32 as RouteKey>::mask(0), 0);
        assert_eq!(<u32 as RouteKey>::mask(8), 0xff00_0000);
        assert_eq!(<u32 as RouteKey>::mask(32), u32::MAX);
        assert_eq!(<u128 as RouteKey>::mask(0), 0);
        assert_eq!(<u128 as RouteKey>::mask(64), u128::MAX << 64);
        assert_eq!(<u128 as RouteKey>::mask(128), u128::MAX);
    }
}
