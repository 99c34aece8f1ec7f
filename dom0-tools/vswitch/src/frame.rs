//! Reading a frame's Ethernet and 802.1Q headers (with `etherparse`) and
//! writing it back out tagged or untagged.

use alloc::vec::Vec;

use etherparse::{EtherType, Ethernet2Header, Ethernet2HeaderSlice, SingleVlanHeaderSlice};

use crate::config::Mac;
use crate::counters::DropReason;

/// Longest untagged frame a port takes, bytes: a 1500-byte payload and
/// the 14-byte Ethernet header (no FCS: virtio and netif carry none).
pub const MAX_FRAME_LEN: usize = 1514;
/// An 802.1Q tag's length, bytes.
pub const VLAN_TAG_LEN: usize = 4;

/// What the switch reads of a frame.
#[derive(Clone, Copy, Debug)]
pub struct Ingress<'a> {
    /// Destination MAC.
    pub dst: Mac,
    /// Source MAC.
    pub src: Mac,
    /// The 802.1Q tag control information (PCP, DEI, VID), if tagged.
    pub tci: Option<[u8; 2]>,
    /// From the inner EtherType on: what follows the addresses and tag.
    pub rest: &'a [u8],
}

impl Ingress<'_> {
    /// The VLAN id of a tagged frame.
    pub fn vid(&self) -> Option<u16> {
        self.tci.map(|t| u16::from_be_bytes(t) & 0x0fff)
    }

    /// The frame without its tag, into `buf`.
    pub fn write_untagged(&self, buf: &mut Vec<u8>) {
        buf.clear();
        buf.extend_from_slice(&self.dst);
        buf.extend_from_slice(&self.src);
        buf.extend_from_slice(self.rest);
    }

    /// The frame tagged with `vid` into `buf` (keeping an arriving tag's
    /// priority bits).
    pub fn write_tagged(&self, vid: u16, buf: &mut Vec<u8>) {
        let high = self.tci.map_or(0, |t| t[0] & 0xf0);
        let tci = [high | ((vid >> 8) as u8 & 0x0f), (vid & 0xff) as u8];
        buf.clear();
        buf.extend_from_slice(&self.dst);
        buf.extend_from_slice(&self.src);
        buf.extend_from_slice(&EtherType::VLAN_TAGGED_FRAME.0.to_be_bytes());
        buf.extend_from_slice(&tci);
        buf.extend_from_slice(self.rest);
    }
}

/// Reads `frame`'s headers; a frame too short for them, or longer than
/// [`MAX_FRAME_LEN`] (plus a tag if tagged), is refused.
pub fn parse(frame: &[u8]) -> Result<Ingress<'_>, DropReason> {
    let eth = Ethernet2HeaderSlice::from_slice(frame).map_err(|_| DropReason::Malformed)?;
    let after = frame
        .get(Ethernet2Header::LEN..)
        .ok_or(DropReason::Malformed)?;
    let (tci, rest, limit) = if eth.ether_type() == EtherType::VLAN_TAGGED_FRAME {
        let tag = SingleVlanHeaderSlice::from_slice(after).map_err(|_| DropReason::Malformed)?;
        let raw = tag.slice();
        // The tag's first two bytes are the TCI; its EtherType is the
        // inner one, which `rest` starts with.
        let tci = [raw[0], raw[1]];
        (Some(tci), &after[2..], MAX_FRAME_LEN + VLAN_TAG_LEN)
    } else {
        (None, &frame[Ethernet2Header::LEN - 2..], MAX_FRAME_LEN)
    };
    if frame.len() > limit {
        return Err(DropReason::Oversize);
    }
    Ok(Ingress {
        dst: eth.destination(),
        src: eth.source(),
        tci,
        rest,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use alloc::vec;

    const DST: Mac = [0xff; 6];
    const SRC: Mac = [0x00, 0x16, 0x3e, 0, 0, 1];

    fn untagged(payload: &[u8]) -> Vec<u8> {
        let mut f = vec![];
        f.extend_from_slice(&DST);
        f.extend_from_slice(&SRC);
        f.extend_from_slice(&[0x08, 0x06]);
        f.extend_from_slice(payload);
        f
    }

    #[test]
    fn tags_are_added_and_removed() {
        let frame = untagged(b"arp!");
        let ingress = parse(&frame).unwrap();
        assert_eq!((ingress.dst, ingress.src, ingress.tci), (DST, SRC, None));
        let mut tagged = vec![];
        ingress.write_tagged(0x123, &mut tagged);
        assert_eq!(tagged[12..16], [0x81, 0x00, 0x01, 0x23]);
        assert_eq!(tagged[16..], frame[12..]);
        let back = parse(&tagged).unwrap();
        assert_eq!(back.vid(), Some(0x123));
        let mut plain = vec![];
        back.write_untagged(&mut plain);
        assert_eq!(plain, frame);
    }

    #[test]
    fn priority_bits_survive_retagging() {
        let mut tagged = vec![];
        parse(&untagged(b"x")).unwrap().write_tagged(5, &mut tagged);
        tagged[14] |= 0xa0; // PCP 5
        let mut again = vec![];
        parse(&tagged).unwrap().write_tagged(5, &mut again);
        assert_eq!(again, tagged);
    }

    #[test]
    fn short_and_long_frames_are_refused() {
        assert_eq!(parse(&[0; 13]).unwrap_err(), DropReason::Malformed);
        let mut cut = untagged(b"");
        cut[12..14].copy_from_slice(&[0x81, 0x00]);
        cut.push(0);
        assert_eq!(parse(&cut).unwrap_err(), DropReason::Malformed);
        assert!(parse(&untagged(&[0; 1500])).is_ok());
        assert_eq!(
            parse(&untagged(&[0; 1501])).unwrap_err(),
            DropReason::Oversize
        );
        let mut tagged = vec![];
        parse(&untagged(&[0; 1500]))
            .unwrap()
            .write_tagged(7, &mut tagged);
        assert!(parse(&tagged).is_ok());
        tagged.push(0);
        assert_eq!(parse(&tagged).unwrap_err(), DropReason::Oversize);
    }
}
