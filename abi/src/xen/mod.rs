//! The subset of Xen's public guest ABI (`xen/include/public/`) that
//! xen-core implements for x86_64 PVH guests. Numbers, layouts, flags and
//! error codes are Xen's; `docs/abi.md` lists where behaviour differs.

pub mod start_info;
