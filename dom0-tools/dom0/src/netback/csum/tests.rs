use super::*;
use proptest::prelude::*;

const SRC: [u8; 4] = [10, 0, 0, 3];
const DST: [u8; 4] = [10, 0, 2, 100];

/// An Ethernet frame (optionally tagged) holding an IPv4 packet with
/// `options` words of IP options, protocol `proto`, `l4` as its segment,
/// then `pad` bytes of Ethernet padding.
fn frame(tag: Option<u16>, options: usize, proto: u8, l4: &[u8], pad: usize) -> Vec<u8> {
    let mut f = vec![0x02, 0, 0, 0, 0, 1, 0x00, 0x16, 0x3e, 0, 0, 3];
    if let Some(vid) = tag {
        f.extend_from_slice(&[0x81, 0x00]);
        f.extend_from_slice(&vid.to_be_bytes());
    }
    f.extend_from_slice(&[0x08, 0x00]);
    let ihl = 5 + options;
    let total = u16::try_from(ihl * 4 + l4.len()).unwrap();
    let mut ip = vec![0x40 | u8::try_from(ihl).unwrap(), 0];
    ip.extend_from_slice(&total.to_be_bytes());
    ip.extend_from_slice(&[0x12, 0x34, 0x40, 0x00, 64, proto, 0, 0]);
    ip.extend_from_slice(&SRC);
    ip.extend_from_slice(&DST);
    ip.extend(std::iter::repeat_n(1u8, options * 4)); // NOPs
    f.extend_from_slice(&ip);
    f.extend_from_slice(l4);
    f.extend(std::iter::repeat_n(0xeeu8, pad));
    f
}

fn tcp_segment(payload: &[u8], csum: u16) -> Vec<u8> {
    let mut t = vec![
        0xc0, 0x09, 0x1f, 0x40, 0, 0, 0, 1, 0, 0, 0, 0, 0x50, 0x18, 0x40, 0x00,
    ];
    t.extend_from_slice(&csum.to_be_bytes());
    t.extend_from_slice(&[0, 0]);
    t.extend_from_slice(payload);
    t
}

fn udp_segment(payload: &[u8], csum: u16) -> Vec<u8> {
    let len = u16::try_from(8 + payload.len()).unwrap();
    let mut u = vec![0x30, 0x39, 0x00, 0x35];
    u.extend_from_slice(&len.to_be_bytes());
    u.extend_from_slice(&csum.to_be_bytes());
    u.extend_from_slice(payload);
    u
}

/// RFC 1071 ones'-complement sum of 16-bit words (written here, not
/// smoltcp's, so the test checks the result independently).
fn ones_sum(words: &[u8], mut acc: u32) -> u32 {
    for pair in words.chunks(2) {
        let hi = u32::from(pair[0]) << 8;
        acc += hi | pair.get(1).map_or(0, |b| u32::from(*b));
    }
    acc
}

/// Whether the segment at `l4` (of `len` bytes) carries a correct
/// checksum: pseudo-header and segment sum to 0xffff.
fn checksum_ok(f: &[u8], l4: usize, len: usize, proto: u8) -> bool {
    let mut pseudo = Vec::new();
    pseudo.extend_from_slice(&SRC);
    pseudo.extend_from_slice(&DST);
    pseudo.extend_from_slice(&[0, proto]);
    pseudo.extend_from_slice(&u16::try_from(len).unwrap().to_be_bytes());
    let mut acc = ones_sum(&f[l4..l4 + len], ones_sum(&pseudo, 0));
    while acc > 0xffff {
        acc = (acc & 0xffff) + (acc >> 16);
    }
    acc == 0xffff
}

fn csum_at(f: &[u8], at: usize) -> u16 {
    u16::from_be_bytes([f[at], f[at + 1]])
}

#[test]
fn a_blank_tcp_checksum_is_filled_and_padding_is_not_covered() {
    let seg = tcp_segment(b"hello", 0);
    let mut f = frame(None, 0, 6, &seg, 9);
    fill(&mut f).unwrap();
    assert!(checksum_ok(&f, 34, seg.len(), 6));
    assert_ne!(csum_at(&f, 34 + 16), 0);
    assert!(f.ends_with(&[0xee; 9]));
}

#[test]
fn a_field_seeded_with_the_pseudo_header_sum_gives_the_same_checksum() {
    let seg = tcp_segment(b"partial", 0);
    let mut zero = frame(None, 0, 6, &seg, 0);
    fill(&mut zero).unwrap();
    let mut seeded = frame(None, 0, 6, &tcp_segment(b"partial", 0x1234), 0);
    fill(&mut seeded).unwrap();
    assert_eq!(zero, seeded);
}

#[test]
fn tagged_frames_and_ip_options_are_followed() {
    let seg = tcp_segment(b"odd", 0);
    let mut f = frame(Some(10), 2, 6, &seg, 0);
    fill(&mut f).unwrap();
    assert!(checksum_ok(&f, 18 + 28, seg.len(), 6));
}

#[test]
fn a_blank_udp_checksum_is_filled() {
    let seg = udp_segment(b"query", 0);
    let mut f = frame(None, 0, 17, &seg, 0);
    fill(&mut f).unwrap();
    assert!(checksum_ok(&f, 34, seg.len(), 17));
    assert_ne!(csum_at(&f, 34 + 6), 0);
}

#[test]
fn what_cannot_be_filled_is_refused() {
    let seg = tcp_segment(b"x", 0);
    let mut v6 = frame(None, 0, 6, &seg, 0);
    v6[12..14].copy_from_slice(&[0x86, 0xdd]);
    assert_eq!(fill(&mut v6), Err(CsumError::NotIpv4(0x86dd)));
    let mut icmp = frame(None, 0, 1, &seg, 0);
    assert_eq!(fill(&mut icmp), Err(CsumError::Protocol(1)));
    let mut fragment = frame(None, 0, 6, &seg, 0);
    fragment[20] = 0x20; // more fragments
    assert_eq!(fill(&mut fragment), Err(CsumError::Fragment));
    let mut long = frame(None, 0, 6, &seg, 0);
    long[16..18].copy_from_slice(&1000u16.to_be_bytes());
    assert_eq!(fill(&mut long), Err(CsumError::Truncated));
    let mut runt = frame(None, 0, 6, &seg, 0);
    runt.truncate(13);
    assert_eq!(fill(&mut runt), Err(CsumError::Truncated));
    let mut short_tcp = frame(None, 0, 6, &seg[..10], 0);
    assert_eq!(fill(&mut short_tcp), Err(CsumError::Truncated));
}

proptest! {
    #[test]
    fn any_filled_segment_verifies_and_only_the_checksum_changes(
        payload in proptest::collection::vec(any::<u8>(), 0..1400),
        seed in any::<u16>(),
        udp in any::<bool>(),
        tag in proptest::option::of(1u16..4095),
        options in 0usize..10,
        pad in 0usize..40,
    ) {
        let (proto, seg, at) = if udp {
            (17, udp_segment(&payload, seed), 6)
        } else {
            (6, tcp_segment(&payload, seed), 16)
        };
        let mut f = frame(tag, options, proto, &seg, pad);
        let before = f.clone();
        fill(&mut f).unwrap();
        let l4 = 14 + tag.map_or(0, |_| 4) + 20 + options * 4;
        prop_assert!(checksum_ok(&f, l4, seg.len(), proto));
        let changed: Vec<usize> = (0..f.len()).filter(|&i| f[i] != before[i]).collect();
        prop_assert!(changed.iter().all(|&i| i == l4 + at || i == l4 + at + 1));
    }
}
