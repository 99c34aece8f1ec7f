//! The PV console ring page, `xen/include/public/io/console.h`.
//!
//! The guest writes output bytes to `out` and advances `out_prod`; the
//! backend consumes them and advances `out_cons`. Input flows the other
//! way through `in`. Indices are free-running u32 and wrap; a byte's slot
//! is `index & (size - 1)`. The page's GFN and port are the HVM params
//! `HVM_PARAM_CONSOLE_PFN` / `HVM_PARAM_CONSOLE_EVTCHN`.

use zerocopy::{FromBytes, Immutable, IntoBytes, KnownLayout};

/// `XENCONS_RING_IDX`.
pub type XenconsRingIdx = u32;

/// Size of the input ring (backend to guest) in bytes.
pub const XENCONS_IN_SIZE: usize = 1024;
/// Size of the output ring (guest to backend) in bytes.
pub const XENCONS_OUT_SIZE: usize = 2048;

/// `MASK_XENCONS_IDX(idx, ring)` for a ring of `size` (a power of two) bytes.
pub const fn mask_xencons_idx(idx: XenconsRingIdx, size: usize) -> usize {
    idx as usize & (size - 1)
}

/// `struct xencons_interface`, 3088 bytes, at the start of the console page.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq, FromBytes, IntoBytes, Immutable, KnownLayout)]
pub struct XenconsInterface {
    /// Input ring: bytes for the guest to read.
    pub r#in: [u8; XENCONS_IN_SIZE],
    /// Output ring: bytes the guest wrote.
    pub out: [u8; XENCONS_OUT_SIZE],
    /// Input consumer index (guest).
    pub in_cons: XenconsRingIdx,
    /// Input producer index (backend).
    pub in_prod: XenconsRingIdx,
    /// Output consumer index (backend).
    pub out_cons: XenconsRingIdx,
    /// Output producer index (guest).
    pub out_prod: XenconsRingIdx,
}

#[cfg(test)]
mod tests {
    use super::*;
    use core::mem::{offset_of, size_of};

    #[test]
    fn layout_matches_console_h() {
        assert_eq!(size_of::<XenconsInterface>(), 3088);
        assert_eq!(offset_of!(XenconsInterface, out), 1024);
        assert_eq!(offset_of!(XenconsInterface, in_cons), 3072);
        assert_eq!(offset_of!(XenconsInterface, in_prod), 3076);
        assert_eq!(offset_of!(XenconsInterface, out_cons), 3080);
        assert_eq!(offset_of!(XenconsInterface, out_prod), 3084);
        assert_eq!(mask_xencons_idx(2050, XENCONS_OUT_SIZE), 2);
    }
}
