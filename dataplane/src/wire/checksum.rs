//! The Internet checksum (RFC 1071) and its incremental update (RFC 1624).
//!
//! All partial sums here are **folded 16-bit one's-complement sums** (`u16`, not yet inverted),
//! so they combine with [`add`] / [`combine`] in any order. A checksum field holds the complement
//! of the sum over the covered bytes with the field itself zero: [`finish`]. A receiver verifies by
//! summing everything *including* the field and expecting `0xffff`.
//!
//! The dataplane rewrites headers (TTL decrement, NAT) without re-summing the packet: [`update_sum`]
//! and friends implement RFC 1624 eqn. 3, `HC' = ~(~HC + ~m + m')`, which — unlike the older
//! RFC 1141 formula — never turns a correct `0x0000` into `0xffff` (RFC 1624 §3).
//!
//! Nothing here allocates or panics.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

/// Adds two folded one's-complement sums (end-around carry).
#[inline]
pub fn add(a: u16, b: u16) -> u16 {
    let (sum, carry) = a.overflowing_add(b);
    sum + carry as u16
}

/// Adds any number of folded sums.
#[inline]
pub fn combine(sums: &[u16]) -> u16 {
    sums.iter().fold(0, |acc, &s| add(acc, s))
}

/// Folds a wide one's-complement accumulator to 16 bits.
///
/// Valid for any value, because 2^16 ≡ 1 (mod 0xffff): every carry out of bit 15 is added back.
#[inline]
pub fn fold(mut sum: u64) -> u16 {
    sum = (sum & 0xffff_ffff) + (sum >> 32);
    sum = (sum & 0xffff) + (sum >> 16);
    sum = (sum & 0xffff) + (sum >> 16);
    sum = (sum & 0xffff) + (sum >> 16);
    sum as u16
}

/// The folded one's-complement sum of `data` taken as big-endian 16-bit words; an odd final byte
/// is the high byte of a word whose low byte is zero (RFC 1071 §4.1).
///
/// Eight bytes at a time into a 64-bit accumulator with end-around carry: the sum of 64-bit words
/// modulo 2^64 − 1 is congruent to the 16-bit sum modulo 0xffff, since 0xffff divides 2^64 − 1.
#[inline]
pub fn sum(data: &[u8]) -> u16 {
    let mut acc: u64 = 0;
    let mut chunks = data.chunks_exact(8);
    for chunk in &mut chunks {
        let word = u64::from_be_bytes([
            chunk[0], chunk[1], chunk[2], chunk[3], chunk[4], chunk[5], chunk[6], chunk[7],
        ]);
        let (next, carry) = acc.overflowing_add(word);
        // After an overflow `next` ≤ 2^64 − 2, so adding the carry back cannot overflow.
        acc = next + carry as u64;
    }
    let rest = chunks.remainder();
    if !rest.is_empty() {
        // Zero-pad on the right: keeps the remaining bytes in their big-endian word positions.
        let mut last = [0u8; 8];
        last[..rest.len()].copy_from_slice(rest);
        let (next, carry) = acc.overflowing_add(u64::from_be_bytes(last));
        acc = next + carry as u64;
    }
    fold(acc)
}

/// The value to store in a checksum field, given the folded sum of everything it covers
/// (with the field zero).
#[inline]
pub fn finish(sum: u16) -> u16 {
    !sum
}

/// The Internet checksum of `data` (its checksum field, if any, must be zero).
#[inline]
pub fn checksum(data: &[u8]) -> u16 {
    finish(sum(data))
}

/// True when `data`, checksum field included, sums to 0xffff — i.e. the checksum is correct.
#[inline]
pub fn verify(data: &[u8]) -> bool {
    sum(data) == 0xffff
}

/// The folded sum of the IPv4 pseudo-header (RFC 793 §3.1): source, destination, zero, protocol,
/// upper-layer length.
#[inline]
pub fn pseudo_header_v4(src: Ipv4Addr, dst: Ipv4Addr, protocol: u8, length: u16) -> u16 {
    combine(&[
        sum(&src.octets()),
        sum(&dst.octets()),
        protocol as u16,
        length,
    ])
}

/// The folded sum of the IPv6 pseudo-header (RFC 8200 §8.1): source, destination, 32-bit
/// upper-layer length, three zero bytes, next header.
#[inline]
pub fn pseudo_header_v6(src: &Ipv6Addr, dst: &Ipv6Addr, next_header: u8, length: u32) -> u16 {
    combine(&[
        sum(&src.octets()),
        sum(&dst.octets()),
        (length >> 16) as u16,
        length as u16,
        next_header as u16,
    ])
}

/// The pseudo-header sum for either family. The one's-complement sums of the two layouts have the
/// same shape (addresses + protocol + length), so a mixed pair is summed the same way: harmless,
/// and meaningless, rather than a panic.
#[inline]
pub fn pseudo_header(src: &IpAddr, dst: &IpAddr, protocol: u8, length: u32) -> u16 {
    combine(&[
        addr_sum(src),
        addr_sum(dst),
        (length >> 16) as u16,
        length as u16,
        protocol as u16,
    ])
}

#[inline]
fn addr_sum(addr: &IpAddr) -> u16 {
    match addr {
        IpAddr::V4(a) => sum(&a.octets()),
        IpAddr::V6(a) => sum(&a.octets()),
    }
}

/// RFC 1624 eqn. 3 on folded sums: the checksum after the bytes summing to `old_sum` were replaced
/// by bytes summing to `new_sum` (at the same even-aligned position).
#[inline]
pub fn update_sum(checksum: u16, old_sum: u16, new_sum: u16) -> u16 {
    !add(add(!checksum, !old_sum), new_sum)
}

/// Incremental update for one 16-bit word (at an even offset) changing from `old` to `new`.
#[inline]
pub fn update_u16(checksum: u16, old: u16, new: u16) -> u16 {
    update_sum(checksum, old, new)
}

/// Incremental update for a 32-bit field at an even offset (TCP sequence numbers, a whole IPv4
/// address as a u32).
#[inline]
pub fn update_u32(checksum: u16, old: u32, new: u32) -> u16 {
    update_sum(
        checksum,
        add((old >> 16) as u16, old as u16),
        add((new >> 16) as u16, new as u16),
    )
}

/// Incremental update for a byte string at an even offset (an address, a MAC in an ND option…).
/// `old` and `new` should have the same length; if not, each is summed as is.
#[inline]
pub fn update_bytes(checksum: u16, old: &[u8], new: &[u8]) -> u16 {
    update_sum(checksum, sum(old), sum(new))
}

/// Incremental update for an IPv4 address change (header checksum, or an L4 checksum through the
/// pseudo-header).
#[inline]
pub fn update_ipv4_addr(checksum: u16, old: Ipv4Addr, new: Ipv4Addr) -> u16 {
    update_bytes(checksum, &old.octets(), &new.octets())
}

/// Incremental update for an IPv6 address change (an L4 checksum through the pseudo-header).
#[inline]
pub fn update_ipv6_addr(checksum: u16, old: &Ipv6Addr, new: &Ipv6Addr) -> u16 {
    update_bytes(checksum, &old.octets(), &new.octets())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::wire::testutil::{hex, XorShift};

    /// The obvious 16-bit-at-a-time RFC 1071 loop: the reference the fast path is checked against.
    fn reference_sum(data: &[u8]) -> u16 {
        let mut acc: u32 = 0;
        let mut i = 0;
        while i + 1 < data.len() {
            acc += u16::from_be_bytes([data[i], data[i + 1]]) as u32;
            i += 2;
        }
        if i < data.len() {
            acc += (data[i] as u32) << 8;
        }
        while acc > 0xffff {
            acc = (acc & 0xffff) + (acc >> 16);
        }
        acc as u16
    }

    #[test]
    fn rfc1071_example() {
        // RFC 1071 §3: 00 01 f2 03 f4 f5 f6 f7 sums to 0xddf2.
        let data = hex("00 01 f2 03 f4 f5 f6 f7");
        assert_eq!(sum(&data), 0xddf2);
        assert_eq!(checksum(&data), !0xddf2);
    }

    #[test]
    fn known_ipv4_header() {
        let header = hex("45 00 00 73 00 00 40 00 40 11 b8 61 c0 a8 00 01 c0 a8 00 c7");
        assert!(verify(&header));
        let mut zeroed = header.clone();
        zeroed[10] = 0;
        zeroed[11] = 0;
        assert_eq!(checksum(&zeroed), 0xb861);
    }

    #[test]
    fn fast_sum_matches_reference_on_random_data() {
        let mut rng = XorShift::new(0x5eed_0001);
        let mut buf = vec![0u8; 2048];
        for _ in 0..2000 {
            let len = rng.below(buf.len());
            rng.fill(&mut buf[..len]);
            assert_eq!(sum(&buf[..len]), reference_sum(&buf[..len]), "len {len}");
        }
        // Long runs of 0xff stress the carries.
        let ones = vec![0xffu8; 1501];
        assert_eq!(sum(&ones), reference_sum(&ones));
        assert_eq!(sum(&[]), 0);
    }

    #[test]
    fn pseudo_headers_match_explicit_layouts() {
        let src4 = Ipv4Addr::new(192, 168, 0, 1);
        let dst4 = Ipv4Addr::new(10, 1, 2, 3);
        let mut layout = Vec::new();
        layout.extend_from_slice(&src4.octets());
        layout.extend_from_slice(&dst4.octets());
        layout.extend_from_slice(&[0, 6, 0x05, 0xdc]);
        assert_eq!(pseudo_header_v4(src4, dst4, 6, 1500), sum(&layout));
        assert_eq!(
            pseudo_header(&src4.into(), &dst4.into(), 6, 1500),
            sum(&layout)
        );

        let src6: Ipv6Addr = "2001:db8::1".parse().unwrap();
        let dst6: Ipv6Addr = "fe80::1234:5678".parse().unwrap();
        let mut layout = Vec::new();
        layout.extend_from_slice(&src6.octets());
        layout.extend_from_slice(&dst6.octets());
        layout.extend_from_slice(&70000u32.to_be_bytes());
        layout.extend_from_slice(&[0, 0, 0, 17]);
        assert_eq!(pseudo_header_v6(&src6, &dst6, 17, 70000), sum(&layout));
        assert_eq!(
            pseudo_header(&src6.into(), &dst6.into(), 17, 70000),
            sum(&layout)
        );
    }

    /// Writes the header checksum (bytes 10..12) of a 20-byte IPv4-like header from scratch.
    fn recompute(header: &mut [u8]) -> u16 {
        header[10] = 0;
        header[11] = 0;
        let c = checksum(header);
        header[10..12].copy_from_slice(&c.to_be_bytes());
        c
    }

    fn random_header(rng: &mut XorShift) -> Vec<u8> {
        let mut header = vec![0u8; 20];
        rng.fill(&mut header);
        header[0] = 0x45; // a real header never sums to zero; neither does this
        recompute(&mut header);
        header
    }

    #[test]
    fn incremental_u16_matches_recomputation() {
        let mut rng = XorShift::new(0x1624);
        for _ in 0..20_000 {
            let mut header = random_header(&mut rng);
            let old_check = u16::from_be_bytes([header[10], header[11]]);
            // any word but the checksum itself (word 5)
            let word = [0, 1, 2, 3, 4, 6, 7, 8, 9][rng.below(9)];
            let at = word * 2;
            let old = u16::from_be_bytes([header[at], header[at + 1]]);
            let new = rng.next_u16();
            header[at..at + 2].copy_from_slice(&new.to_be_bytes());
            let incremental = update_u16(old_check, old, new);
            assert_eq!(incremental, recompute(&mut header));
        }
    }

    #[test]
    fn incremental_u32_and_addresses_match_recomputation() {
        let mut rng = XorShift::new(0xadd7);
        for _ in 0..20_000 {
            let mut header = random_header(&mut rng);
            let old_check = u16::from_be_bytes([header[10], header[11]]);
            // source (12..16) or destination (16..20) address
            let at = if rng.next_u8() & 1 == 0 { 12 } else { 16 };
            let old = Ipv4Addr::from(crate::wire::read_array::<4>(&header, at));
            let new = Ipv4Addr::from(rng.next_u32());
            header[at..at + 4].copy_from_slice(&new.octets());
            let via_addr = update_ipv4_addr(old_check, old, new);
            let via_u32 = update_u32(old_check, old.into(), new.into());
            let full = recompute(&mut header);
            assert_eq!(via_addr, full);
            assert_eq!(via_u32, full);
        }
    }

    #[test]
    fn incremental_ipv6_address_matches_recomputation() {
        // 16-byte rewrites over a 40-byte "pseudo header + segment" buffer with the checksum at 36.
        let mut rng = XorShift::new(0x6666);
        for _ in 0..5_000 {
            let mut buf = vec![0u8; 40];
            rng.fill(&mut buf);
            buf[0] |= 1;
            buf[36] = 0;
            buf[37] = 0;
            let old_check = checksum(&buf);
            let old = Ipv6Addr::from(crate::wire::read_array::<16>(&buf, 8));
            let mut new_octets = [0u8; 16];
            rng.fill(&mut new_octets);
            let new = Ipv6Addr::from(new_octets);
            buf[8..24].copy_from_slice(&new_octets);
            assert_eq!(update_ipv6_addr(old_check, &old, &new), checksum(&buf));
        }
    }

    #[test]
    fn ttl_decrement_matches_recomputation_for_every_ttl() {
        let mut rng = XorShift::new(0x77);
        for _ in 0..200 {
            let mut header = random_header(&mut rng);
            for ttl in (1..=255u8).rev() {
                header[8] = ttl;
                let check = recompute(&mut header);
                let old_word = u16::from_be_bytes([header[8], header[9]]);
                header[8] = ttl - 1;
                let new_word = u16::from_be_bytes([header[8], header[9]]);
                assert_eq!(
                    update_u16(check, old_word, new_word),
                    recompute(&mut header)
                );
            }
        }
    }

    #[test]
    fn rfc1624_section3_example() {
        // RFC 1624 §3: HC = 0xdd2f, m = 0x5555 → m' = 0x3285 gives HC' = 0x0000 (RFC 1141's
        // formula would give 0xffff).
        assert_eq!(update_u16(0xdd2f, 0x5555, 0x3285), 0x0000);
    }

    #[test]
    fn update_yields_zero_checksum_where_recomputation_does() {
        // Build a header whose checksum becomes exactly 0x0000 after a TTL decrement, by choosing
        // the identification word: the edge case RFC 1624 §3 is about.
        let mut header = hex("45 00 00 54 00 00 40 00 40 01 00 00 c0 a8 00 01 c0 a8 00 c7");
        header[8] = 63; // the TTL after the decrement
        let rest = sum(&header);
        header[4..6].copy_from_slice(&(!rest).to_be_bytes()); // now the sum is 0xffff
        assert_eq!(checksum(&header), 0x0000);
        header[8] = 64;
        let before = recompute(&mut header);
        assert_ne!(before, 0);
        let after = update_u16(
            before,
            u16::from_be_bytes([64, 1]),
            u16::from_be_bytes([63, 1]),
        );
        assert_eq!(after, 0x0000);
        header[8] = 63;
        assert_eq!(recompute(&mut header), 0x0000);

        // And back again: starting from a stored 0x0000 the update must be exact too.
        let back = update_u16(
            0x0000,
            u16::from_be_bytes([63, 1]),
            u16::from_be_bytes([64, 1]),
        );
        assert_eq!(back, before);
    }

    #[test]
    fn update_with_no_change_is_identity() {
        for check in [0x0000u16, 0x0001, 0x8000, 0xfffe] {
            for m in [0x0000u16, 0x1234, 0xffff] {
                assert_eq!(update_u16(check, m, m), check);
            }
        }
    }
}
