//! Assembling a packet from the tx requests a frontend queued, and
//! refusing the malformed ones (Linux netback's `xenvif_count_requests`
//! and `xenvif_tx_build_gops` checks). Portable: fed one copied-out
//! request at a time, it says what to copy or why the packet is dropped;
//! it never touches guest memory.
//!
//! A packet is one request, or a chain whose requests but the last carry
//! `NETTXF_more_data`; the first request's `size` is the whole packet's,
//! each later one its own slot's (the first slot holds the rest). Every
//! request of a packet, kept or dropped, is answered with its `id`.

use abi::xen::grant_table::GrantRef;
use abi::xen::netif::{
    NetifTxRequest, NETTXF_CSUM_BLANK, NETTXF_EXTRA_INFO, NETTXF_MORE_DATA, VLAN_ETH_FRAME_MAX,
    XEN_NETIF_NR_SLOTS_MIN,
};
use abi::xen::PAGE_SIZE;

/// Smallest frame accepted: an Ethernet header (`ETH_HLEN`).
pub const ETH_HLEN: usize = 14;
/// Largest frame accepted from a vif: 1500 bytes of payload, the header
/// and one 802.1Q tag (no `feature-sg`, no GSO).
pub const TX_FRAME_MAX: usize = VLAN_ETH_FRAME_MAX;
/// Most requests one packet may use (`XEN_NETIF_NR_SLOTS_MIN`, which
/// every backend must accept; Linux's `fatal_skb_slots` default).
pub const TX_SLOTS_MAX: usize = XEN_NETIF_NR_SLOTS_MIN;

/// One slot of a packet: `len` bytes at `offset` of the frontend's page `gref`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct TxSlot {
    /// The frontend's grant of the page.
    pub gref: GrantRef,
    /// Byte offset in the page.
    pub offset: u16,
    /// Bytes in this slot.
    pub len: u16,
}

/// Why a packet was dropped (each is counted per vif).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TxDrop {
    /// The packet is larger than [`TX_FRAME_MAX`].
    Oversize {
        /// The size its first request announced.
        size: usize,
    },
    /// The packet is smaller than an Ethernet header.
    Runt {
        /// The size its first request announced.
        size: usize,
    },
    /// A slot's `offset + size` runs past its page.
    CrossesPage {
        /// The slot's offset.
        offset: u16,
        /// The slot's size.
        size: u16,
    },
    /// The chain is longer than [`TX_SLOTS_MAX`] requests.
    TooManySlots,
    /// The later slots hold more than the first request announced.
    SizeMismatch {
        /// The size the first request announced.
        announced: usize,
        /// The sizes of the later slots, summed.
        rest: usize,
    },
    /// `NETTXF_extra_info`: GSO and the other extras are not offered.
    ExtraInfo,
    /// A grant copy of the packet failed (bad grant or offset); the
    /// `GNTST_*` status.
    BadGrant(i16),
    /// `NETTXF_csum_blank` on a packet whose checksum cannot be filled
    /// (see [`super::csum`]).
    Checksum(super::csum::CsumError),
}

impl TxDrop {
    /// Index of the reason in [`TxDrop::NAMES`] (for per-reason counters).
    pub fn index(&self) -> usize {
        match self {
            TxDrop::Oversize { .. } => 0,
            TxDrop::Runt { .. } => 1,
            TxDrop::CrossesPage { .. } => 2,
            TxDrop::TooManySlots => 3,
            TxDrop::SizeMismatch { .. } => 4,
            TxDrop::ExtraInfo => 5,
            TxDrop::BadGrant(_) => 6,
            TxDrop::Checksum(_) => 7,
        }
    }

    /// Counter names, by [`TxDrop::index`].
    pub const NAMES: [&'static str; 8] = [
        "oversize",
        "runt",
        "crosses-page",
        "too-many-slots",
        "size-mismatch",
        "extra-info",
        "bad-grant",
        "csum",
    ];
}

impl core::fmt::Display for TxDrop {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match *self {
            TxDrop::Oversize { size } => write!(f, "frame of {size} bytes > {TX_FRAME_MAX}"),
            TxDrop::Runt { size } => write!(f, "frame of {size} bytes < {ETH_HLEN}"),
            TxDrop::CrossesPage { offset, size } => {
                write!(f, "slot at offset {offset} size {size} crosses its page")
            }
            TxDrop::TooManySlots => write!(f, "more than {TX_SLOTS_MAX} slots"),
            TxDrop::SizeMismatch { announced, rest } => write!(
                f,
                "later slots hold {rest} bytes, more than the {announced} announced"
            ),
            TxDrop::ExtraInfo => write!(f, "extra info (GSO) not offered"),
            TxDrop::BadGrant(status) => write!(f, "grant copy failed (GNTST {status})"),
            TxDrop::Checksum(e) => write!(f, "csum_blank: {e}"),
        }
    }
}

/// A complete, well-formed packet: its slots in order, and the ids to answer.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TxPacket {
    slots: [TxSlot; TX_SLOTS_MAX],
    ids: [u16; TX_SLOTS_MAX],
    count: usize,
    /// The packet's size in bytes (sum of the slots).
    pub size: usize,
    /// `NETTXF_csum_blank` on its first request: netback fills the
    /// TCP/UDP checksum before the packet goes on.
    pub csum_blank: bool,
}

impl TxPacket {
    /// The slots, first to last (the first's `len` already reduced to its share).
    pub fn slots(&self) -> &[TxSlot] {
        &self.slots[..self.count]
    }

    /// The request ids, one per slot.
    pub fn ids(&self) -> &[u16] {
        &self.ids[..self.count]
    }
}

/// What one request completed.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum TxStep {
    /// The packet goes on in the next request.
    More,
    /// A well-formed packet: copy it, then answer its ids `NETIF_RSP_OKAY`.
    Packet(TxPacket),
    /// A packet dropped: answer `ids` (its requests seen so far, this
    /// one included) with `NETIF_RSP_ERROR`. `last` is false when the
    /// chain goes on: its later requests are answered as they come.
    Drop {
        /// Why.
        why: TxDrop,
        /// Ids of requests to answer now.
        ids: TxIds,
        /// Whether this request ended the chain.
        last: bool,
    },
    /// A later request of a chain already dropped: answer `id` with
    /// `NETIF_RSP_ERROR`, nothing else to count.
    Discard {
        /// Its id.
        id: u16,
        /// Whether it ended the chain.
        last: bool,
    },
}

/// Ids to answer at once (at most [`TX_SLOTS_MAX`] + 1).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TxIds {
    ids: [u16; TX_SLOTS_MAX + 1],
    count: usize,
}

impl TxIds {
    /// The ids.
    pub fn as_slice(&self) -> &[u16] {
        &self.ids[..self.count]
    }
}

/// The assembler's state between requests.
// One per vif, the slots kept inline: boxing them would allocate per packet.
#[allow(clippy::large_enum_variant)]
#[derive(Clone, Debug, Default)]
enum State {
    /// Waiting for a packet's first request.
    #[default]
    Idle,
    /// A chain under way: what the first request announced, and the slots so far.
    Building {
        announced: usize,
        csum_blank: bool,
        slots: [TxSlot; TX_SLOTS_MAX],
        ids: [u16; TX_SLOTS_MAX],
        count: usize,
        rest: usize,
    },
    /// The rest of a dropped chain, answered as it comes.
    Discarding,
}

/// Builds packets from one vif's tx requests, in ring order.
#[derive(Clone, Debug, Default)]
pub struct TxAssembler {
    state: State,
}

impl TxAssembler {
    /// Takes the next request (copied out of the ring once).
    pub fn push(&mut self, req: &NetifTxRequest) -> TxStep {
        let more = req.flags & NETTXF_MORE_DATA != 0;
        match core::mem::take(&mut self.state) {
            State::Discarding => {
                if more {
                    self.state = State::Discarding;
                }
                TxStep::Discard {
                    id: req.id,
                    last: !more,
                }
            }
            State::Idle => self.first(req, more),
            State::Building {
                announced,
                csum_blank,
                mut slots,
                mut ids,
                count,
                rest,
            } => {
                let mut answer = TxIds {
                    ids: [0; TX_SLOTS_MAX + 1],
                    count: count + 1,
                };
                answer.ids[..count].copy_from_slice(&ids[..count]);
                answer.ids[count] = req.id;
                let rest = rest + usize::from(req.size);
                let why = if count == TX_SLOTS_MAX {
                    Some(TxDrop::TooManySlots)
                } else if let Some(why) = slot_error(req) {
                    Some(why)
                } else if rest > announced {
                    Some(TxDrop::SizeMismatch { announced, rest })
                } else {
                    None
                };
                if let Some(why) = why {
                    return self.dropped(why, answer, more);
                }
                slots[count] = slot_of(req);
                ids[count] = req.id;
                let count = count + 1;
                if more {
                    self.state = State::Building {
                        announced,
                        csum_blank,
                        slots,
                        ids,
                        count,
                        rest,
                    };
                    return TxStep::More;
                }
                finish(
                    Announced {
                        size: announced,
                        csum_blank,
                    },
                    slots,
                    ids,
                    count,
                    rest,
                )
            }
        }
    }

    fn first(&mut self, req: &NetifTxRequest, more: bool) -> TxStep {
        let size = usize::from(req.size);
        let csum_blank = req.flags & NETTXF_CSUM_BLANK != 0;
        let why = if req.flags & NETTXF_EXTRA_INFO != 0 {
            Some(TxDrop::ExtraInfo)
        } else if size > TX_FRAME_MAX {
            Some(TxDrop::Oversize { size })
        } else if size < ETH_HLEN {
            Some(TxDrop::Runt { size })
        } else if !more {
            slot_error(req)
        } else {
            // The first slot's own length is known only at the end.
            None
        };
        let mut answer = TxIds {
            ids: [0; TX_SLOTS_MAX + 1],
            count: 1,
        };
        answer.ids[0] = req.id;
        if let Some(why) = why {
            return self.dropped(why, answer, more);
        }
        let mut slots = [TxSlot::default(); TX_SLOTS_MAX];
        let mut ids = [0; TX_SLOTS_MAX];
        slots[0] = slot_of(req);
        ids[0] = req.id;
        if more {
            self.state = State::Building {
                announced: size,
                csum_blank,
                slots,
                ids,
                count: 1,
                rest: 0,
            };
            return TxStep::More;
        }
        finish(Announced { size, csum_blank }, slots, ids, 1, 0)
    }

    fn dropped(&mut self, why: TxDrop, ids: TxIds, more: bool) -> TxStep {
        if more {
            self.state = State::Discarding;
        }
        TxStep::Drop {
            why,
            ids,
            last: !more,
        }
    }
}

/// What a packet's first request said of the whole packet.
struct Announced {
    size: usize,
    csum_blank: bool,
}

/// The complete chain: the first slot holds what the others do not.
fn finish(
    Announced {
        size: announced,
        csum_blank,
    }: Announced,
    mut slots: [TxSlot; TX_SLOTS_MAX],
    ids: [u16; TX_SLOTS_MAX],
    count: usize,
    rest: usize,
) -> TxStep {
    let first_len = announced - rest;
    slots[0].len = u16::try_from(first_len).unwrap_or(u16::MAX);
    let first = NetifTxRequest {
        gref: slots[0].gref,
        offset: slots[0].offset,
        size: slots[0].len,
        ..Default::default()
    };
    if let Some(why) = slot_error(&first) {
        let mut answer = TxIds {
            ids: [0; TX_SLOTS_MAX + 1],
            count,
        };
        answer.ids[..count].copy_from_slice(&ids[..count]);
        return TxStep::Drop {
            why,
            ids: answer,
            last: true,
        };
    }
    TxStep::Packet(TxPacket {
        slots,
        ids,
        count,
        size: announced,
        csum_blank,
    })
}

fn slot_of(req: &NetifTxRequest) -> TxSlot {
    TxSlot {
        gref: req.gref,
        offset: req.offset,
        len: req.size,
    }
}

/// A slot must stay inside its page (Linux: "Cross page boundary").
fn slot_error(req: &NetifTxRequest) -> Option<TxDrop> {
    (usize::from(req.offset) + usize::from(req.size) > PAGE_SIZE).then_some(TxDrop::CrossesPage {
        offset: req.offset,
        size: req.size,
    })
}

#[cfg(test)]
mod tests;
