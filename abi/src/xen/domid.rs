//! Domain identifiers, `xen/include/public/xen.h` (`domid_t`, `DOMID_*`).

/// `domid_t`: a domain identifier.
pub type DomId = u16;

/// `DOMID_FIRST_RESERVED`: ids at or above this never name a real domain.
pub const DOMID_FIRST_RESERVED: DomId = 0x7ff0;
/// `DOMID_SELF`: the calling domain.
pub const DOMID_SELF: DomId = 0x7ff0;
/// `DOMID_IO`: I/O memory pseudo-domain.
pub const DOMID_IO: DomId = 0x7ff1;
/// `DOMID_XEN`: the hypervisor's own pages.
pub const DOMID_XEN: DomId = 0x7ff2;
/// `DOMID_COW`: copy-on-write shared pages.
pub const DOMID_COW: DomId = 0x7ff3;
/// `DOMID_INVALID`: no domain.
pub const DOMID_INVALID: DomId = 0x7ff4;
/// `DOMID_IDLE`: the idle domain.
pub const DOMID_IDLE: DomId = 0x7fff;
/// `DOMID_MASK`: mask of the bits a domid uses.
pub const DOMID_MASK: DomId = 0x7fff;

/// Whether `domid` can name an ordinary domain (below [`DOMID_FIRST_RESERVED`]).
pub const fn is_ordinary(domid: DomId) -> bool {
    domid < DOMID_FIRST_RESERVED
}
