//! pf's per-peer protocol tracking: TCP sequence windows (`pf_tcp_track_full`, Guido van
//! Rooij's algorithm), and the single/multiple progression of UDP and other protocols.
//!
//! Pure functions over two [`Peer`]s and one segment: no time, no I/O. The caller picks
//! which peer sent the packet (`src`) and which receives it (`dst`).

use super::Timeout;

/// pf's TCP peer states (`netinet/tcp_fsm.h`), which pfsync carries as numbers.
pub mod tcps {
    pub const CLOSED: u8 = 0;
    pub const LISTEN: u8 = 1;
    pub const SYN_SENT: u8 = 2;
    pub const SYN_RECEIVED: u8 = 3;
    pub const ESTABLISHED: u8 = 4;
    pub const CLOSE_WAIT: u8 = 5;
    pub const FIN_WAIT_1: u8 = 6;
    pub const CLOSING: u8 = 7;
    pub const LAST_ACK: u8 = 8;
    pub const FIN_WAIT_2: u8 = 9;
    pub const TIME_WAIT: u8 = 10;

    /// pfctl's names, indexed by state.
    pub const NAMES: [&str; 11] = [
        "CLOSED",
        "LISTEN",
        "SYN_SENT",
        "SYN_RCVD",
        "ESTABLISHED",
        "CLOSE_WAIT",
        "FIN_WAIT_1",
        "CLOSING",
        "LAST_ACK",
        "FIN_WAIT_2",
        "TIME_WAIT",
    ];
}

/// pf's UDP / other-protocol peer states (`PFUDPS_*`, `PFOTHERS_*`).
pub mod single {
    pub const NO_TRAFFIC: u8 = 0;
    pub const SINGLE: u8 = 1;
    pub const MULTIPLE: u8 = 2;
    pub const NAMES: [&str; 3] = ["NO_TRAFFIC", "SINGLE", "MULTIPLE"];
}

/// `PF_WSCALE_FLAG`: the peer sent a window-scale option.
pub const WSCALE_FLAG: u8 = 0x80;
/// `PF_WSCALE_MASK`: the shift itself.
pub const WSCALE_MASK: u8 = 0x0f;
/// RFC 7323's largest shift (`TCP_MAX_WINSHIFT`).
const MAX_WINSHIFT: u8 = 14;
/// `TCP_MAXWIN`.
const MAXWIN: u32 = 65535;
/// pf's MAXACKWINDOW: how far an ACK may stray (one window plus a fudge factor).
const MAXACKWINDOW: i64 = 0xffff + 1500;

/// One end of a connection as pf tracks it (`struct pf_state_peer`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Peer {
    /// Highest sequence number sent (0 = nothing seen yet from this end).
    pub seqlo: u32,
    /// Highest sequence number the other end will accept (its window's right edge).
    pub seqhi: u32,
    /// Largest (unscaled) window advertised.
    pub max_win: u16,
    /// `WSCALE_FLAG | shift` when the peer sent window scaling.
    pub wscale: u8,
    /// A `tcps` value for TCP, a `single` value otherwise.
    pub state: u8,
}

/// The TCP fields pf's tracking needs from one segment.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Segment {
    pub seq: u32,
    pub ack: u32,
    pub window: u16,
    pub flags: u8,
    /// TCP payload length (`pd->p_len`).
    pub payload_len: u32,
    /// The window-scale option's shift, if the segment carried one.
    pub wscale: Option<u8>,
}

const FIN: u8 = 0x01;
const SYN: u8 = 0x02;
const RST: u8 = 0x04;
const ACK: u8 = 0x10;

/// Serial-number comparisons (RFC 1982), as pf's SEQ_GEQ / SEQ_GT / SEQ_LEQ.
#[inline]
fn seq_geq(a: u32, b: u32) -> bool {
    (a.wrapping_sub(b) as i32) >= 0
}
#[inline]
fn seq_gt(a: u32, b: u32) -> bool {
    (a.wrapping_sub(b) as i32) > 0
}
#[inline]
fn seq_leq(a: u32, b: u32) -> bool {
    (a.wrapping_sub(b) as i32) <= 0
}

/// `pf_get_wscale`: the flag plus the shift (capped at 14), only on SYNs.
fn get_wscale(seg: &Segment) -> u8 {
    match seg.wscale {
        Some(shift) if seg.flags & SYN != 0 => WSCALE_FLAG | shift.min(MAX_WINSHIFT),
        _ => 0,
    }
}

/// Initialises the peers of a new TCP state from its first packet (`pf_create_state`).
pub fn tcp_new(seg: &Segment) -> ([Peer; 2], Timeout) {
    let mut src = Peer {
        seqlo: seg.seq,
        ..Peer::default()
    };
    src.seqhi = seg.seq.wrapping_add(seg.payload_len).wrapping_add(1);
    if seg.flags & SYN != 0 {
        src.seqhi = src.seqhi.wrapping_add(1);
        src.wscale = get_wscale(seg);
    }
    src.max_win = seg.window.max(1);
    if src.wscale & WSCALE_MASK != 0 {
        // Remove the scale factor from the initial window.
        let shift = src.wscale & WSCALE_MASK;
        let win = src.max_win as u32 + (1u32 << shift);
        src.max_win = ((win - 1) >> shift) as u16;
    }
    if seg.flags & FIN != 0 {
        src.seqhi = src.seqhi.wrapping_add(1);
    }
    src.state = tcps::SYN_SENT;
    let dst = Peer {
        seqhi: 1,
        max_win: 1,
        state: tcps::CLOSED,
        ..Peer::default()
    };
    ([src, dst], Timeout::TcpFirst)
}

/// What tracking decided about a packet of an existing TCP state.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TcpVerdict {
    /// In the window: pass, refresh the expiry with this timeout class.
    Pass(Timeout),
    /// pf's loose path (shotgun SYNs, state picked up mid-stream, post-close junk): pass
    /// without refreshing the expiry.
    PassLoose,
    /// Outside the window: drop as "state-mismatch" (pf's PFRES_BADSTATE).
    Mismatch,
    /// Both ends in SYN_SENT and the packet doesn't fit: pf answers with a RST and resets
    /// the sender's tracking; the packet is dropped as "state-mismatch".
    MismatchResetHandshake,
}

/// `pf_tcp_track_full` without modulation or scrub: checks one segment from `src` to
/// `dst` against the windows and updates both peers.
pub fn tcp_track(src: &mut Peer, dst: &mut Peer, seg: &Segment) -> TcpVerdict {
    let mut win = seg.window as u32;
    let (mut sws, mut dws) = if src.wscale != 0 && dst.wscale != 0 && seg.flags & SYN == 0 {
        (src.wscale & WSCALE_MASK, dst.wscale & WSCALE_MASK)
    } else {
        (0, 0)
    };

    let orig_seq = seg.seq;
    let mut seq = seg.seq;
    let mut ack = seg.ack;
    let mut end;
    let mut data_end;
    if src.seqlo == 0 {
        // First packet from this end: set its state.
        end = seq.wrapping_add(seg.payload_len);
        if seg.flags & SYN != 0 {
            end = end.wrapping_add(1);
            if dst.wscale & WSCALE_FLAG != 0 {
                src.wscale = get_wscale(seg);
                if src.wscale & WSCALE_FLAG != 0 {
                    // Remove the scale factor from the initial window.
                    sws = src.wscale & WSCALE_MASK;
                    win = (win + (1 << sws) - 1) >> sws;
                    dws = dst.wscale & WSCALE_MASK;
                } else {
                    // Fix up the other window; in case of a retransmitted SYN|ACK.
                    dst.max_win =
                        MAXWIN.min((dst.max_win as u32) << (dst.wscale & WSCALE_MASK)) as u16;
                    dst.wscale = 0;
                }
            }
        }
        data_end = end;
        if seg.flags & FIN != 0 {
            end = end.wrapping_add(1);
        }
        src.seqlo = seq;
        if src.state < tcps::SYN_SENT {
            src.state = tcps::SYN_SENT;
        }
        // Slide the window (seqhi may have been set when the state was picked up late).
        let reach = end.wrapping_add((dst.max_win as u32).wrapping_shl(dws as u32).max(1));
        if src.seqhi == 1 || seq_geq(reach, src.seqhi) {
            src.seqhi = reach;
        }
        if win > src.max_win as u32 {
            src.max_win = win.min(u16::MAX as u32) as u16;
        }
    } else {
        end = seq.wrapping_add(seg.payload_len);
        if seg.flags & SYN != 0 {
            end = end.wrapping_add(1);
        }
        data_end = end;
        if seg.flags & FIN != 0 {
            end = end.wrapping_add(1);
        }
    }

    if seg.flags & ACK == 0 {
        // Let it pass through the ack skew check.
        ack = dst.seqlo;
    } else if (ack == 0 && seg.flags & (ACK | RST) == (ACK | RST)) || dst.state < tcps::SYN_SENT {
        // Broken stacks do not set ack; many set it in a FIN|ACK after a SYN timeout.
        ack = dst.seqlo;
    }

    if seq == end {
        // Ease sequencing restrictions on packets without data.
        seq = src.seqlo;
        end = seq;
        data_end = seq;
    }

    let ackskew = dst.seqlo.wrapping_sub(ack) as i32 as i64;
    let dst_window = (dst.max_win as u32).wrapping_shl(dws as u32);

    let rst_ok = seg.flags & RST == 0
        || orig_seq == src.seqlo
        || orig_seq == src.seqlo.wrapping_add(1)
        || orig_seq.wrapping_add(1) == src.seqlo
        || (seq_geq(orig_seq, src.seqlo.wrapping_sub(dst_window))
            && seq_leq(orig_seq, src.seqlo.wrapping_add(1))
            && ackskew == 0
            && seg.flags & (ACK | RST) == (ACK | RST));

    if seq_geq(src.seqhi, data_end)
        && seq_geq(seq, src.seqlo.wrapping_sub(dst_window))
        && ackskew >= -MAXACKWINDOW
        && ackskew <= (MAXACKWINDOW << sws)
        && rst_ok
    {
        update_windows(src, dst, win, end, ack, sws);
        if seg.flags & SYN != 0 && src.state < tcps::SYN_SENT {
            src.state = tcps::SYN_SENT;
        }
        if seg.flags & FIN != 0 && src.state < tcps::CLOSING {
            src.state = tcps::CLOSING;
        }
        if seg.flags & ACK != 0 {
            if dst.state == tcps::SYN_SENT {
                dst.state = tcps::ESTABLISHED;
            } else if dst.state == tcps::CLOSING {
                dst.state = tcps::FIN_WAIT_2;
            }
        }
        if seg.flags & RST != 0 {
            src.state = tcps::TIME_WAIT;
            dst.state = tcps::TIME_WAIT;
        }
        TcpVerdict::Pass(tcp_timeout(src.state, dst.state))
    } else if (dst.state < tcps::SYN_SENT
        || dst.state >= tcps::FIN_WAIT_2
        || src.state >= tcps::FIN_WAIT_2)
        && seq_geq(src.seqhi.wrapping_add(MAXACKWINDOW as u32), data_end)
        && seq_geq(seq, src.seqlo.wrapping_sub(MAXACKWINDOW as u32))
    {
        // The loose path: update windows and FIN/RST states, but don't refresh the expiry,
        // so a flood can't keep a dead state alive.
        update_windows(src, dst, win, end, ack, sws);
        if seg.flags & FIN != 0 && src.state < tcps::CLOSING {
            src.state = tcps::CLOSING;
        }
        if seg.flags & RST != 0 {
            src.state = tcps::TIME_WAIT;
            dst.state = tcps::TIME_WAIT;
        }
        TcpVerdict::PassLoose
    } else if dst.state == tcps::SYN_SENT && src.state == tcps::SYN_SENT {
        src.seqlo = 0;
        src.seqhi = 1;
        src.max_win = 1;
        TcpVerdict::MismatchResetHandshake
    } else {
        TcpVerdict::Mismatch
    }
}

fn update_windows(src: &mut Peer, dst: &mut Peer, win: u32, end: u32, ack: u32, sws: u8) {
    if (src.max_win as u32) < win {
        src.max_win = win.min(u16::MAX as u32) as u16;
    }
    if seq_gt(end, src.seqlo) {
        src.seqlo = end;
    }
    let scaled = win.wrapping_shl(sws as u32);
    if seq_geq(ack.wrapping_add(scaled), dst.seqhi) {
        dst.seqhi = ack.wrapping_add(scaled.max(1));
    }
}

/// pf's choice of timeout class from the two peers' states.
pub fn tcp_timeout(src: u8, dst: u8) -> Timeout {
    if src >= tcps::FIN_WAIT_2 && dst >= tcps::FIN_WAIT_2 {
        Timeout::TcpClosed
    } else if src >= tcps::CLOSING && dst >= tcps::CLOSING {
        Timeout::TcpFinWait
    } else if src < tcps::ESTABLISHED || dst < tcps::ESTABLISHED {
        Timeout::TcpOpening
    } else if src >= tcps::CLOSING || dst >= tcps::CLOSING {
        Timeout::TcpClosing
    } else {
        Timeout::TcpEstablished
    }
}

/// Whether the TCP sequence number quoted by an ICMP error could have been sent by
/// `sender` (pf_test_state_icmp): inside `[seqlo − receiver's window, seqhi]`. A forged
/// error for a live connection (a blind reset by ICMP) fails this.
pub fn quoted_seq_in_window(sender: &Peer, receiver: &Peer, seq: u32) -> bool {
    let dws = if sender.wscale != 0 && receiver.wscale != 0 {
        receiver.wscale & WSCALE_MASK
    } else {
        0
    };
    let window = (receiver.max_win as u32).wrapping_shl(dws as u32);
    seq_geq(sender.seqhi, seq) && seq_geq(seq, sender.seqlo.wrapping_sub(window))
}

/// What a SYN arriving on an existing state means (`pf_test_state`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SynOnState {
    /// Not a bare SYN, or the state is still opening: track it normally.
    Track,
    /// Both ends are closed: the old state is purged and the packet dropped, so the
    /// retransmitted SYN creates a fresh state (port reuse).
    Reuse,
    /// Both ends established: pf sends a challenge ACK and drops the SYN.
    ChallengeAck,
}

pub fn syn_on_state(flags: u8, src: &Peer, dst: &Peer) -> SynOnState {
    if flags & (SYN | ACK) != SYN {
        SynOnState::Track
    } else if dst.state >= tcps::FIN_WAIT_2 && src.state >= tcps::FIN_WAIT_2 {
        SynOnState::Reuse
    } else if dst.state >= tcps::ESTABLISHED && src.state >= tcps::ESTABLISHED {
        SynOnState::ChallengeAck
    } else {
        SynOnState::Track
    }
}

/// UDP and other protocols: the sender becomes SINGLE; a reply makes the receiver MULTIPLE.
pub fn single_track(src: &mut Peer, dst: &mut Peer, udp: bool) -> Timeout {
    if src.state < single::SINGLE {
        src.state = single::SINGLE;
    }
    if dst.state == single::SINGLE {
        dst.state = single::MULTIPLE;
    }
    let both = src.state == single::MULTIPLE && dst.state == single::MULTIPLE;
    match (udp, both) {
        (true, true) => Timeout::UdpMultiple,
        (true, false) => Timeout::UdpSingle,
        (false, true) => Timeout::OtherMultiple,
        (false, false) => Timeout::OtherSingle,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn seg(seq: u32, ack: u32, flags: u8, len: u32, window: u16) -> Segment {
        Segment {
            seq,
            ack,
            window,
            flags,
            payload_len: len,
            wscale: None,
        }
    }

    /// A client (src) and server (dst) through a full handshake, data and close.
    fn handshake() -> [Peer; 2] {
        let ([mut c, mut s], t) = tcp_new(&seg(1000, 0, SYN, 0, 64240));
        assert_eq!(t, Timeout::TcpFirst);
        assert_eq!((c.state, s.state), (tcps::SYN_SENT, tcps::CLOSED));
        assert_eq!(
            tcp_track(&mut s, &mut c, &seg(5000, 1001, SYN | ACK, 0, 65160)),
            TcpVerdict::Pass(Timeout::TcpOpening)
        );
        assert_eq!((c.state, s.state), (tcps::ESTABLISHED, tcps::SYN_SENT));
        assert_eq!(
            tcp_track(&mut c, &mut s, &seg(1001, 5001, ACK, 0, 502)),
            TcpVerdict::Pass(Timeout::TcpEstablished)
        );
        assert_eq!((c.state, s.state), (tcps::ESTABLISHED, tcps::ESTABLISHED));
        [c, s]
    }

    #[test]
    fn handshake_data_and_close_follow_pf() {
        let [mut c, mut s] = handshake();
        assert_eq!(
            tcp_track(&mut c, &mut s, &seg(1001, 5001, ACK | 0x08, 100, 502)),
            TcpVerdict::Pass(Timeout::TcpEstablished)
        );
        assert_eq!(
            tcp_track(&mut s, &mut c, &seg(5001, 1101, ACK, 1000, 509)),
            TcpVerdict::Pass(Timeout::TcpEstablished)
        );
        // Client closes.
        assert_eq!(
            tcp_track(&mut c, &mut s, &seg(1101, 6001, FIN | ACK, 0, 502)),
            TcpVerdict::Pass(Timeout::TcpClosing)
        );
        assert_eq!(c.state, tcps::CLOSING);
        // Server acks the FIN and closes too.
        assert_eq!(
            tcp_track(&mut s, &mut c, &seg(6001, 1102, FIN | ACK, 0, 509)),
            TcpVerdict::Pass(Timeout::TcpFinWait)
        );
        assert_eq!((c.state, s.state), (tcps::FIN_WAIT_2, tcps::CLOSING));
        assert_eq!(
            tcp_track(&mut c, &mut s, &seg(1102, 6002, ACK, 0, 502)),
            TcpVerdict::Pass(Timeout::TcpClosed)
        );
        assert_eq!((c.state, s.state), (tcps::FIN_WAIT_2, tcps::FIN_WAIT_2));
    }

    #[test]
    fn data_beyond_the_window_is_a_mismatch() {
        let [mut c, mut s] = handshake();
        // The server advertised 65160 bytes; data far beyond that is outside the window.
        let v = tcp_track(&mut c, &mut s, &seg(1001 + 200_000, 5001, ACK, 100, 502));
        assert_eq!(v, TcpVerdict::Mismatch);
        // An ACK for data never sent is a mismatch too.
        let v = tcp_track(&mut c, &mut s, &seg(1001, 5001 + 300_000, ACK, 0, 502));
        assert_eq!(v, TcpVerdict::Mismatch);
        // The connection still works afterwards.
        assert_eq!(
            tcp_track(&mut c, &mut s, &seg(1001, 5001, ACK, 10, 502)),
            TcpVerdict::Pass(Timeout::TcpEstablished)
        );
    }

    #[test]
    fn retransmits_within_one_window_back_pass() {
        let [mut c, mut s] = handshake();
        for _ in 0..2 {
            assert_eq!(
                tcp_track(&mut c, &mut s, &seg(1001, 5001, ACK, 1000, 502)),
                TcpVerdict::Pass(Timeout::TcpEstablished)
            );
        }
    }

    #[test]
    fn rst_must_be_near_the_sequence() {
        let [mut c, mut s] = handshake();
        // A blind RST far from seqlo is rejected.
        assert_eq!(
            tcp_track(&mut s, &mut c, &seg(5001 + 30_000, 0, RST, 0, 0)),
            TcpVerdict::Mismatch
        );
        assert_eq!(s.state, tcps::ESTABLISHED);
        // An exact RST closes both ends.
        assert_eq!(
            tcp_track(&mut s, &mut c, &seg(5001, 0, RST, 0, 0)),
            TcpVerdict::Pass(Timeout::TcpClosed)
        );
        assert_eq!((c.state, s.state), (tcps::TIME_WAIT, tcps::TIME_WAIT));
    }

    #[test]
    fn window_scaling_applies_after_the_handshake() {
        let mut syn = seg(1000, 0, SYN, 0, 64240);
        syn.wscale = Some(7);
        let ([mut c, mut s], _) = tcp_new(&syn);
        assert_eq!(c.wscale, WSCALE_FLAG | 7);
        let mut synack = seg(5000, 1001, SYN | ACK, 0, 65160);
        synack.wscale = Some(7);
        assert!(matches!(
            tcp_track(&mut s, &mut c, &synack),
            TcpVerdict::Pass(_)
        ));
        assert_eq!(s.wscale, WSCALE_FLAG | 7);
        assert!(matches!(
            tcp_track(&mut c, &mut s, &seg(1001, 5001, ACK, 0, 502)),
            TcpVerdict::Pass(_)
        ));
        // The server's window is 509 << 7 = 65152 bytes: data 60 000 bytes ahead fits only
        // because of the scale factor.
        assert!(matches!(
            tcp_track(&mut s, &mut c, &seg(5001, 1001, ACK, 0, 509)),
            TcpVerdict::Pass(_)
        ));
        assert!(matches!(
            tcp_track(&mut c, &mut s, &seg(1001, 5001, ACK, 1000, 502)),
            TcpVerdict::Pass(_)
        ));
        let far = seg(1001 + 60_000, 5001, ACK, 1000, 502);
        assert!(matches!(
            tcp_track(&mut c, &mut s, &far),
            TcpVerdict::Pass(_)
        ));
    }

    #[test]
    fn sequence_numbers_wrap() {
        let ([mut c, mut s], _) = tcp_new(&seg(u32::MAX - 10, 0, SYN, 0, 65535));
        assert!(matches!(
            tcp_track(&mut s, &mut c, &seg(7, u32::MAX - 9, SYN | ACK, 0, 65535)),
            TcpVerdict::Pass(_)
        ));
        assert!(matches!(
            tcp_track(&mut c, &mut s, &seg(u32::MAX - 9, 8, ACK, 100, 65535)),
            TcpVerdict::Pass(_)
        ));
        assert!(matches!(
            tcp_track(
                &mut c,
                &mut s,
                &seg((u32::MAX - 9).wrapping_add(100), 8, ACK, 100, 65535)
            ),
            TcpVerdict::Pass(_)
        ));
        assert_eq!(c.seqlo, (u32::MAX - 9).wrapping_add(200));
    }

    #[test]
    fn shotgun_syns_take_the_loose_path() {
        let ([mut c, mut s], _) = tcp_new(&seg(1000, 0, SYN, 0, 64240));
        // The client retransmits its SYN before the server answered: dst < SYN_SENT.
        assert_eq!(
            tcp_track(&mut c, &mut s, &seg(1000, 0, SYN, 0, 64240)),
            TcpVerdict::Pass(Timeout::TcpOpening)
        );
        assert_eq!(syn_on_state(SYN, &c, &s), SynOnState::Track);
    }

    #[test]
    fn syn_on_closed_or_established_states() {
        let [mut c, mut s] = handshake();
        assert_eq!(syn_on_state(SYN, &c, &s), SynOnState::ChallengeAck);
        assert_eq!(syn_on_state(SYN | ACK, &c, &s), SynOnState::Track);
        c.state = tcps::TIME_WAIT;
        s.state = tcps::FIN_WAIT_2;
        assert_eq!(syn_on_state(SYN, &c, &s), SynOnState::Reuse);
        let _ = tcp_track(&mut c, &mut s, &seg(1, 1, ACK, 0, 1));
    }

    #[test]
    fn udp_becomes_multiple_on_reply() {
        let mut a = Peer {
            state: single::SINGLE,
            ..Peer::default()
        };
        let mut b = Peer::default();
        assert_eq!(single_track(&mut a, &mut b, true), Timeout::UdpSingle);
        // The reply makes the initiator MULTIPLE; the responder is SINGLE until it is
        // answered in turn.
        assert_eq!(single_track(&mut b, &mut a, true), Timeout::UdpSingle);
        assert_eq!((a.state, b.state), (single::MULTIPLE, single::SINGLE));
        assert_eq!(single_track(&mut a, &mut b, true), Timeout::UdpMultiple);
        assert_eq!((a.state, b.state), (single::MULTIPLE, single::MULTIPLE));
        let mut x = Peer::default();
        let mut y = Peer::default();
        assert_eq!(single_track(&mut x, &mut y, false), Timeout::OtherSingle);
    }
}
