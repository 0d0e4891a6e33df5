//! Neighbour resolution on the control core: workers report next hops they cannot reach
//! (`ToControl::Resolve`) and neighbours they heard (`ToControl::Learn`); this module sends
//! ARP requests / neighbour solicitations, with retries bounded by a [`ResolveQueue`], and
//! publishes what was learned to the workers' [`NeighborTable`].
//!
//! Sans-IO: it returns the frames to send; the caller transmits them on the control core's
//! own TX queue (or, in `rampart replay`, writes them to the interface's capture).

use std::net::IpAddr;

use rampart_conf::MacAddr;
use rampart_dataplane::iface::InterfaceTable;
use rampart_dataplane::neighbor::{NeighborTable, ResolveQueue};
use rampart_dataplane::shared::Published;
use rampart_dataplane::wire::build::{ArpFrame, NeighborFrame};

/// How long a learned neighbour stays without being heard again.
pub const LEARNED_MAX_AGE_MS: u64 = 20 * 60 * 1000;

/// The control core's ARP / ND resolver.
#[derive(Default)]
pub struct NeighborResolver {
    queue: ResolveQueue,
}

impl NeighborResolver {
    pub fn new() -> NeighborResolver {
        NeighborResolver::default()
    }

    /// A worker needs `ip` on `iface`: the solicitation to send now, if one is due.
    pub fn resolve(
        &mut self,
        ifaces: &InterfaceTable,
        iface: u16,
        ip: IpAddr,
        now_ms: u64,
    ) -> Option<Vec<u8>> {
        if self.queue.request(iface, ip, now_ms) {
            solicitation(ifaces, iface, ip)
        } else {
            None
        }
    }

    /// A worker heard `ip` at `mac` on `iface`: publish it (unless nothing changed and the
    /// entry is fresh) and stop asking for it.
    pub fn learned(
        &mut self,
        table: &Published<NeighborTable>,
        iface: u16,
        ip: IpAddr,
        mac: MacAddr,
        now_ms: u64,
    ) {
        self.queue.resolved(iface, ip);
        let current = table.load();
        if let Some(n) = current.get(iface, ip) {
            if n.mac == mac && !is_stale(n, now_ms) {
                return;
            }
        }
        table.publish(current.with_learned(iface, ip, mac, now_ms));
    }

    /// Retries that are due, and expiry of neighbours not heard for a long time.
    pub fn tick(
        &mut self,
        ifaces: &InterfaceTable,
        table: &Published<NeighborTable>,
        now_ms: u64,
    ) -> Vec<(u16, Vec<u8>)> {
        if let Some(t) = table.load().expire_learned(now_ms, LEARNED_MAX_AGE_MS) {
            table.publish(t);
        }
        self.queue
            .due(now_ms)
            .into_iter()
            .filter_map(|(iface, ip)| solicitation(ifaces, iface, ip).map(|f| (iface, f)))
            .collect()
    }
}

/// Refresh a learned entry at most once a minute when it is heard again unchanged.
fn is_stale(n: &rampart_dataplane::neighbor::Neighbor, now_ms: u64) -> bool {
    match n.kind {
        rampart_dataplane::neighbor::NeighborKind::Static => false,
        rampart_dataplane::neighbor::NeighborKind::Learned { updated_ms } => {
            now_ms.saturating_sub(updated_ms) > 60_000
        }
    }
}

/// An ARP request or a neighbour solicitation for `ip`, from `iface`'s address on that link.
pub fn solicitation(ifaces: &InterfaceTable, iface: u16, ip: IpAddr) -> Option<Vec<u8>> {
    let mac = ifaces.mac(iface);
    match ip {
        IpAddr::V4(target) => {
            let IpAddr::V4(src) = ifaces.source_for(iface, ip)? else {
                return None;
            };
            Some(ArpFrame::request(mac, src, target).to_bytes())
        }
        IpAddr::V6(target) => {
            let src = match ifaces.source_for(iface, ip) {
                Some(IpAddr::V6(a)) => a,
                _ => ifaces.ipv6_link_local(iface),
            };
            Some(NeighborFrame::solicitation(mac, src, target).to_bytes())
        }
    }
}
