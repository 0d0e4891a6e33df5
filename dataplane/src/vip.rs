//! CARP virtual IPs, their virtual MACs, and whether this node is MASTER for each group.
//!
//! # Design
//!
//! The structure — which groups exist, on which interface, with which addresses — comes
//! from `[[carp]]` and is immutable: a reload builds a new table (and the CARP engine carries
//! its states over). What changes at run time is only *who is MASTER*, so each group's
//! ownership is an [`AtomicBool`] the CARP engine on the control core sets and workers read.
//! The table is shared by `Arc`; a worker's per-packet questions ("is this address a VIP?",
//! "is this destination MAC a virtual MAC here?", "am I MASTER for it?") are an `ahash`
//! probe and one atomic load — a plain load on x86 and ARM — with no lock. The flags are
//! written only on CARP transitions, so their cache lines stay shared in every worker.
//!
//! The flags use Release stores and Acquire loads: a worker that sees "MASTER" also sees
//! whatever the control core wrote before flipping it. A transition is picked up by the
//! next packet that asks; a packet already past the check finishes with the old answer,
//! which is the same one-packet race a kernel CARP implementation has.
//!
//! Groups are numbered by their position in `config.carp` (`u16`, as interfaces are). Two
//! groups on the same interface must have different vhids (CARP demands it); the same vhid
//! on different interfaces is allowed, so a group is found by (interface, vhid).

use std::net::IpAddr;
use std::sync::atomic::{AtomicBool, Ordering};

use ahash::AHashMap;
use rampart_conf::{Config, MacAddr};

/// The first five bytes of every CARP (VRRP IPv4) virtual MAC: 00:00:5e:00:01:vhid.
const CARP_MAC_PREFIX: [u8; 5] = [0x00, 0x00, 0x5e, 0x00, 0x01];

/// A virtual address's group, as the packet path needs it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct VipRef {
    /// The group's index in `config.carp`.
    pub group: u16,
    pub vhid: u8,
    /// The interface the group lives on.
    pub iface: u16,
    /// The group's virtual MAC, 00:00:5e:00:01:vhid: the source of what we send for a VIP
    /// and the answer to ARP / Neighbor Solicitations for it.
    pub mac: MacAddr,
}

/// One `[[carp]]` group and whether this node is MASTER for it.
#[derive(Debug)]
pub struct VipGroup {
    vhid: u8,
    iface: u16,
    addresses: Vec<IpAddr>,
    mac: MacAddr,
    master: AtomicBool,
}

impl VipGroup {
    pub fn vhid(&self) -> u8 {
        self.vhid
    }

    /// The interface index the group lives on.
    pub fn iface(&self) -> u16 {
        self.iface
    }

    /// The virtual addresses, in configuration order.
    pub fn addresses(&self) -> &[IpAddr] {
        &self.addresses
    }

    /// The virtual MAC, 00:00:5e:00:01:vhid.
    pub fn mac(&self) -> MacAddr {
        self.mac
    }

    /// Whether this node is MASTER for the group.
    #[inline]
    pub fn is_master(&self) -> bool {
        self.master.load(Ordering::Acquire)
    }
}

/// All CARP groups of the appliance. See the [module documentation](self).
#[derive(Debug, Default)]
pub struct VipTable {
    groups: Vec<VipGroup>,
    /// Each virtual address → its group.
    by_addr: AHashMap<IpAddr, VipRef>,
    /// (interface, vhid) → group index.
    by_vhid: AHashMap<(u16, u8), u16>,
}

impl VipTable {
    /// Builds the table from `config.carp`, every group starting as not MASTER (CARP's
    /// INIT/BACKUP: a node claims nothing until the CARP engine says so). Groups naming an
    /// unknown interface are skipped, and of an address listed in two groups the first
    /// group keeps it (validation rejects both); the group indices still follow
    /// `config.carp`.
    ///
    /// # Panics
    ///
    /// If there are more groups than a `u16` index can name.
    pub fn from_config(config: &Config) -> VipTable {
        assert!(
            config.carp.len() <= usize::from(u16::MAX),
            "too many CARP groups"
        );
        let mut table = VipTable::default();
        for (index, carp) in config.carp.iter().enumerate() {
            let group = index as u16;
            let iface = config.interface_index(&carp.interface).map(|i| i as u16);
            debug_assert!(
                iface.is_some(),
                "carp vhid {} on unknown interface",
                carp.vhid
            );
            let mac = MacAddr::carp_virtual(carp.vhid);
            table.groups.push(VipGroup {
                vhid: carp.vhid,
                // An unreachable placeholder, so that group indices still match `config.carp`.
                iface: iface.unwrap_or(u16::MAX),
                addresses: carp.addresses.clone(),
                mac,
                master: AtomicBool::new(false),
            });
            let Some(iface) = iface else { continue };
            table.by_vhid.entry((iface, carp.vhid)).or_insert(group);
            let vip = VipRef {
                group,
                vhid: carp.vhid,
                iface,
                mac,
            };
            for &addr in &carp.addresses {
                table.by_addr.entry(addr).or_insert(vip);
            }
        }
        table
    }

    /// Every group, indexed by group number.
    pub fn groups(&self) -> &[VipGroup] {
        &self.groups
    }

    /// Group `group`, if there is one.
    #[inline]
    pub fn group(&self, group: u16) -> Option<&VipGroup> {
        self.groups.get(usize::from(group))
    }

    pub fn len(&self) -> usize {
        self.groups.len()
    }

    pub fn is_empty(&self) -> bool {
        self.groups.is_empty()
    }

    /// Records whether this node is MASTER for `group` (the CARP engine's decision).
    ///
    /// # Panics
    ///
    /// If `group` is not a valid index.
    pub fn set_master(&self, group: u16, master: bool) {
        self.groups[usize::from(group)]
            .master
            .store(master, Ordering::Release);
    }

    /// Whether this node is MASTER for `group`; `false` for an unknown group, which owns
    /// nothing.
    #[inline]
    pub fn is_master(&self, group: u16) -> bool {
        self.group(group).is_some_and(VipGroup::is_master)
    }

    /// The group carrying the virtual address `addr`, whether or not this node is MASTER
    /// for it (a backup must recognise its VIPs to stay silent for them).
    #[inline]
    pub fn lookup_addr(&self, addr: IpAddr) -> Option<VipRef> {
        self.by_addr.get(&addr).copied()
    }

    /// The group whose virtual MAC `mac` is on interface `iface`, whether or not this node
    /// is MASTER for it: the receive path drops frames to a virtual MAC it does not own.
    /// Frames to any other MAC answer `None` after a five-byte compare, without hashing.
    #[inline]
    pub fn lookup_mac(&self, iface: u16, mac: MacAddr) -> Option<u16> {
        let [a, b, c, d, e, vhid] = mac.0;
        if [a, b, c, d, e] != CARP_MAC_PREFIX {
            return None;
        }
        self.group_by_vhid(iface, vhid)
    }

    /// The group with `vhid` on interface `iface` (received CARP advertisements name their
    /// group this way).
    #[inline]
    pub fn group_by_vhid(&self, iface: u16, vhid: u8) -> Option<u16> {
        self.by_vhid.get(&(iface, vhid)).copied()
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use super::*;
    use crate::iface::fixtures::*;

    /// wan (0), lan (1), dmz (2); groups: 0 = vhid 1 on lan (IPv4), 1 = vhid 2 on wan
    /// (IPv4 + IPv6), 2 = vhid 1 on dmz (IPv6 only: the same vhid on another link).
    fn table() -> VipTable {
        let mut config = three_interfaces();
        config.carp = vec![
            carp(1, "lan", &["10.0.0.1", "10.1.0.1"]),
            carp(2, "wan", &["203.0.113.1", "2001:db8:ffff::1"]),
            carp(1, "dmz", &["fd00::100"]),
        ];
        VipTable::from_config(&config)
    }

    #[test]
    fn groups_follow_the_configuration() {
        let t = table();
        assert_eq!(t.len(), 3);
        let g = &t.groups()[1];
        assert_eq!(
            (g.vhid(), g.iface(), g.mac()),
            (2, 0, MacAddr::carp_virtual(2))
        );
        assert_eq!(g.addresses(), &[ip("203.0.113.1"), ip("2001:db8:ffff::1")]);
        assert!(
            t.groups().iter().all(|g| !g.is_master()),
            "nothing owned before CARP says so"
        );
        assert!(t.group(3).is_none());
        assert!(!t.is_master(3));
    }

    #[test]
    fn addresses_map_to_their_group() {
        let t = table();
        let lan = VipRef {
            group: 0,
            vhid: 1,
            iface: 1,
            mac: MacAddr::carp_virtual(1),
        };
        assert_eq!(t.lookup_addr(ip("10.0.0.1")), Some(lan));
        assert_eq!(t.lookup_addr(ip("10.1.0.1")), Some(lan));
        let wan = VipRef {
            group: 1,
            vhid: 2,
            iface: 0,
            mac: MacAddr::carp_virtual(2),
        };
        assert_eq!(t.lookup_addr(ip("203.0.113.1")), Some(wan));
        assert_eq!(t.lookup_addr(ip("2001:db8:ffff::1")), Some(wan));
        assert_eq!(
            t.lookup_addr(ip("fd00::100")).map(|v| (v.group, v.iface)),
            Some((2, 2))
        );
        assert_eq!(
            t.lookup_addr(ip("10.0.0.2")),
            None,
            "an interface address is no VIP"
        );
        assert_eq!(t.lookup_addr(ip("fd00::101")), None);
    }

    #[test]
    fn virtual_macs_are_recognised_per_interface() {
        let t = table();
        assert_eq!(t.lookup_mac(1, MacAddr::carp_virtual(1)), Some(0));
        assert_eq!(
            t.lookup_mac(2, MacAddr::carp_virtual(1)),
            Some(2),
            "same vhid, other link"
        );
        assert_eq!(t.lookup_mac(0, MacAddr::carp_virtual(2)), Some(1));
        assert_eq!(
            t.lookup_mac(0, MacAddr::carp_virtual(1)),
            None,
            "no vhid 1 on wan"
        );
        assert_eq!(t.lookup_mac(1, MacAddr::carp_virtual(2)), None);
        assert_eq!(
            t.lookup_mac(1, MacAddr([0x00, 0x00, 0x5e, 0x00, 0x02, 1])),
            None,
            "VRRPv6 MAC"
        );
        assert_eq!(t.lookup_mac(1, MacAddr([0x52, 0x54, 0, 0, 0, 1])), None);
        assert_eq!(t.group_by_vhid(2, 1), Some(2));
        assert_eq!(t.group_by_vhid(2, 2), None);
    }

    #[test]
    fn master_flags_are_per_group() {
        let t = table();
        t.set_master(1, true);
        assert!(t.is_master(1));
        assert!(!t.is_master(0) && !t.is_master(2));
        t.set_master(1, false);
        t.set_master(2, true);
        assert!(!t.is_master(1));
        assert!(t.groups()[2].is_master());
    }

    #[test]
    fn master_flips_are_seen_through_a_shared_arc() {
        let t = Arc::new(table());
        let worker_view = Arc::clone(&t);
        let control = std::thread::spawn(move || {
            t.set_master(0, true);
            t.set_master(2, true);
        });
        control.join().unwrap();
        assert!(worker_view.is_master(0));
        assert!(!worker_view.is_master(1));
        assert!(worker_view.is_master(2));

        // And the other way: a worker thread observes the control thread's flips as they
        // happen (Release/Acquire), without any lock.
        let reader = Arc::clone(&worker_view);
        let observer = std::thread::spawn(move || {
            while reader.is_master(0) {
                std::hint::spin_loop();
            }
            reader.is_master(1)
        });
        worker_view.set_master(1, true);
        worker_view.set_master(0, false);
        assert!(
            observer.join().unwrap(),
            "group 1 became MASTER before group 0 stepped down"
        );
    }

    #[test]
    fn an_empty_configuration_has_no_vips() {
        let t = VipTable::from_config(&three_interfaces());
        assert!(t.is_empty());
        assert_eq!(t.lookup_addr(ip("10.0.0.1")), None);
        assert_eq!(t.lookup_mac(1, MacAddr::carp_virtual(1)), None);
    }
}
