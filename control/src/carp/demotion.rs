//! The node-wide demotion counter: OpenBSD's `carp` interface-group demotion
//! (protocols.md §2.4), which every vhid advertises in header byte 4 as `min(total, 255)`.
//!
//! OpenBSD keeps one counter that `carp_group_demote_adj` moves up and down; a missed decrement
//! on some error path leaves a node demoted for good (§5.5, §5.7). Here every contribution is
//! booked under its [`DemotionReason`], so each source can only release what it added, and the
//! idempotent [`Demotion::set`] lets a source state its level instead of counting edges.

use std::collections::BTreeMap;
use std::fmt;

/// How much a down CARP interface demotes (OpenBSD's "carpdev" adjustment).
pub const LINK_DOWN_DEMOTION: u32 = 1;
/// How much a pfsync bulk update in progress demotes (OpenBSD's "pfsync start").
pub const PFSYNC_BULK_DEMOTION: u32 = 32;
/// How much pfsync demotes while its sync link is not known to be up ("pfsync up").
pub const PFSYNC_LINK_DEMOTION: u32 = 1;

/// Why the node is demoted. Ordered so that listings are stable.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum DemotionReason {
    /// The link of interface `n` (an index into the configuration's interfaces) is down. The
    /// engine books this itself from [`link_state`](super::CarpEngine::link_state).
    LinkDown(u16),
    /// A pfsync bulk update is in progress: the states are not all here yet.
    PfsyncBulk,
    /// pfsync is up but its sync link has not been seen up.
    PfsyncLink,
    /// The operator's `carpdemote`.
    Operator,
    /// Group `n` (its index in the configuration's `[[carp]]` list) failed to send
    /// 3 advertisements in a row (OpenBSD's "> snderrors"); released after as many successes.
    SendErrors(u16),
}

impl fmt::Display for DemotionReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            DemotionReason::LinkDown(iface) => write!(f, "link down on interface {iface}"),
            DemotionReason::PfsyncBulk => f.write_str("pfsync bulk update in progress"),
            DemotionReason::PfsyncLink => f.write_str("pfsync sync link not up"),
            DemotionReason::Operator => f.write_str("operator"),
            DemotionReason::SendErrors(group) => {
                write!(f, "advertisements of group {group} failing to send")
            }
        }
    }
}

/// The demotion ledger: one non-negative count per reason.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Demotion {
    reasons: BTreeMap<DemotionReason, u32>,
}

impl Demotion {
    /// The sum over every reason (saturating).
    pub fn total(&self) -> u32 {
        self.reasons
            .values()
            .fold(0u32, |sum, &count| sum.saturating_add(count))
    }

    /// What goes in header byte 4: `min(total, 255)`.
    pub fn advertised(&self) -> u8 {
        self.total().min(u32::from(u8::MAX)) as u8
    }

    /// The count booked under `reason`.
    pub fn get(&self, reason: DemotionReason) -> u32 {
        self.reasons.get(&reason).copied().unwrap_or(0)
    }

    /// Books exactly `value` under `reason` (0 releases it). Idempotent.
    pub fn set(&mut self, reason: DemotionReason, value: u32) {
        if value == 0 {
            self.reasons.remove(&reason);
        } else {
            self.reasons.insert(reason, value);
        }
    }

    /// Moves the count of `reason` by `delta`, flooring at 0 as `carp_group_demote_adj` does.
    pub fn adjust(&mut self, reason: DemotionReason, delta: i64) {
        let value = (i64::from(self.get(reason)) + delta).clamp(0, i64::from(u32::MAX));
        self.set(reason, value as u32);
    }

    /// Every reason with a non-zero count, in order.
    pub fn iter(&self) -> impl Iterator<Item = (DemotionReason, u32)> + '_ {
        self.reasons.iter().map(|(&reason, &count)| (reason, count))
    }
}
