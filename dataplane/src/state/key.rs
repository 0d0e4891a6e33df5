//! State keys: one canonical key per connection, whichever direction a packet travels.

use std::net::IpAddr;

/// The identity of a connection: address family, protocol and the two (address, port)
/// endpoints in a canonical order (the smaller endpoint first), so a packet and its reply
/// build the same key and find the state with one lookup.
///
/// Laid out as five `u64` words so hashing and comparison are a handful of instructions.
/// IPv4 addresses occupy the low 32 bits of the first word of their slot. For ICMP query
/// states both ports hold the ICMP identifier.
#[derive(Clone, Copy, Eq, Default)]
#[repr(C)]
pub struct StateKey {
    /// addr[0] (two words), addr[1] (two words), then port0 | port1 << 16 | proto << 32 | af << 40.
    words: [u64; 5],
}

impl PartialEq for StateKey {
    /// Five word compares, no call to `memcmp`: this runs on every lookup.
    #[inline]
    fn eq(&self, other: &StateKey) -> bool {
        let (a, b) = (&self.words, &other.words);
        ((a[0] ^ b[0]) | (a[1] ^ b[1]) | (a[2] ^ b[2]) | (a[3] ^ b[3]) | (a[4] ^ b[4])) == 0
    }
}

impl std::hash::Hash for StateKey {
    /// Consistent with `eq`: the same five words.
    fn hash<H: std::hash::Hasher>(&self, state: &mut H) {
        self.words.hash(state);
    }
}

impl std::fmt::Debug for StateKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let (a, b) = self.endpoints();
        write!(f, "StateKey(proto {} {:?} <-> {:?})", self.proto(), a, b)
    }
}

fn addr_words(a: IpAddr) -> [u64; 2] {
    match a {
        IpAddr::V4(v4) => [u32::from(v4) as u64, 0],
        IpAddr::V6(v6) => {
            let b = u128::from(v6);
            [(b >> 64) as u64, b as u64]
        }
    }
}

impl StateKey {
    /// Builds the canonical key for a packet from `src:sport` to `dst:dport`, and says
    /// whether the packet's source is endpoint 0 of the key.
    #[inline]
    pub fn new(proto: u8, src: IpAddr, sport: u16, dst: IpAddr, dport: u16) -> (StateKey, bool) {
        let s = addr_words(src);
        let d = addr_words(dst);
        let src_first = (s, sport) <= (d, dport);
        let (a, ap, b, bp) = if src_first {
            (s, sport, d, dport)
        } else {
            (d, dport, s, sport)
        };
        let af: u64 = if src.is_ipv4() { 4 } else { 6 };
        let tail = ap as u64 | (bp as u64) << 16 | (proto as u64) << 32 | af << 40;
        (
            StateKey {
                words: [a[0], a[1], b[0], b[1], tail],
            },
            src_first,
        )
    }

    pub fn proto(&self) -> u8 {
        (self.words[4] >> 32) as u8
    }

    pub fn is_ipv4(&self) -> bool {
        (self.words[4] >> 40) as u8 == 4
    }

    fn addr(&self, i: usize) -> IpAddr {
        let (hi, lo) = (self.words[2 * i], self.words[2 * i + 1]);
        if self.is_ipv4() {
            IpAddr::from(std::net::Ipv4Addr::from(hi as u32))
        } else {
            IpAddr::from(std::net::Ipv6Addr::from((hi as u128) << 64 | lo as u128))
        }
    }

    fn port(&self, i: usize) -> u16 {
        (self.words[4] >> (16 * i)) as u16
    }

    /// The two endpoints, in key order.
    pub fn endpoints(&self) -> ((IpAddr, u16), (IpAddr, u16)) {
        ((self.addr(0), self.port(0)), (self.addr(1), self.port(1)))
    }

    /// The raw words, for hashing.
    #[inline]
    pub fn words(&self) -> &[u64; 5] {
        &self.words
    }
}

/// The ports pf puts in an ICMP state key (`pf_icmp_mapping`), as `(source, destination)`
/// of the packet: a query is keyed by its identifier and its "virtual type", the request's
/// type, which the reply maps back to. The request puts the identifier on its source side
/// and the type on its destination side, the reply the other way round, so a request and its
/// reply build the same key, and a request the other way (or another query type with the
/// same identifier) does not. Other types key on their own type with identifier 0.
pub fn icmp_ports(ipv6: bool, msg_type: u8, ident: Option<u16>) -> (u16, u16) {
    // (virtual type, whether this message is the request)
    let query = if ipv6 {
        match msg_type {
            128 => Some((128, true)),  // echo request
            129 => Some((128, false)), // echo reply
            _ => None,
        }
    } else {
        match msg_type {
            8 => Some((8, true)),    // echo
            0 => Some((8, false)),   // echo reply
            13 => Some((13, true)),  // timestamp
            14 => Some((13, false)), // timestamp reply
            15 => Some((15, true)),  // information request
            16 => Some((15, false)), // information reply
            17 => Some((17, true)),  // address mask request
            18 => Some((17, false)), // address mask reply
            _ => None,
        }
    };
    match query {
        Some((vtype, true)) => (ident.unwrap_or(0), vtype),
        Some((vtype, false)) => (vtype, ident.unwrap_or(0)),
        None => (0, u16::from(msg_type)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_icmp_query_and_its_reply_share_a_key_and_a_request_the_other_way_does_not() {
        let a: IpAddr = "192.0.2.10".parse().unwrap();
        let b: IpAddr = "198.51.100.7".parse().unwrap();
        let key = |src, dst, msg_type| {
            let (sp, dp) = icmp_ports(false, msg_type, Some(0x4242));
            StateKey::new(1, src, sp, dst, dp).0
        };
        assert_eq!(key(a, b, 8), key(b, a, 0), "echo and its reply");
        assert_ne!(
            key(a, b, 8),
            key(b, a, 8),
            "B's request to A is another query"
        );
        assert_ne!(
            key(a, b, 8),
            key(a, b, 13),
            "a timestamp request is another query"
        );
        assert_eq!(key(a, b, 13), key(b, a, 14));
        assert_eq!(icmp_ports(true, 128, Some(7)), (7, 128));
        assert_eq!(icmp_ports(true, 129, Some(7)), (128, 7));
        assert_eq!(icmp_ports(false, 9, None), (0, 9));
    }

    #[test]
    fn both_directions_build_the_same_key() {
        let c: IpAddr = "192.0.2.10".parse().unwrap();
        let s: IpAddr = "198.51.100.7".parse().unwrap();
        let (k1, c_first) = StateKey::new(6, c, 40000, s, 80);
        let (k2, s_first) = StateKey::new(6, s, 80, c, 40000);
        assert_eq!(k1, k2);
        assert_ne!(c_first, s_first);
        assert_eq!(k1.proto(), 6);
        let (a, b) = k1.endpoints();
        assert_eq!(a, (c, 40000));
        assert_eq!(b, (s, 80));
    }

    #[test]
    fn ports_and_protocols_distinguish_keys() {
        let c: IpAddr = "2001:db8::1".parse().unwrap();
        let s: IpAddr = "2001:db8::2".parse().unwrap();
        assert_ne!(
            StateKey::new(6, c, 1, s, 2).0,
            StateKey::new(17, c, 1, s, 2).0
        );
        assert_ne!(
            StateKey::new(6, c, 1, s, 2).0,
            StateKey::new(6, c, 1, s, 3).0
        );
        // Same address, ports decide the order.
        let (k1, f1) = StateKey::new(17, c, 9, c, 5);
        let (k2, f2) = StateKey::new(17, c, 5, c, 9);
        assert_eq!(k1, k2);
        assert_ne!(f1, f2);
        assert!(!k1.is_ipv4());
        assert_eq!(k1.endpoints().0 .0, c);
    }
}
