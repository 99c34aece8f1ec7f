//! `xen_version(cmd, arg)`, `xen/include/public/version.h` and
//! `features.h`. Every sub-op here is open to every domain, as in Xen.
//!
//! - `XENVER_version`: returns `4 << 16 | 19`.
//! - `XENVER_extraversion`: 16 bytes, [`EXTRAVERSION`].
//! - `XENVER_compile_info`: [`XenCompileInfo`] naming rustc and xen-core.
//! - `XENVER_capabilities`: 1024 bytes, [`CAPABILITIES`].
//! - `XENVER_get_features`: submap 0 holds only what xen-core does:
//!   `auto_translated_physmap` (a PVH guest sees GFNs), `hvm_safe_pvclock`
//!   (the pvclock is kept current) and, for dom0, `dom0`. Not
//!   `hvm_callback_vector`: no event upcall is delivered yet (docs/abi.md
//!   promises it; it comes with event channels). Other submaps: `-EINVAL`.
//! - `XENVER_pagesize`: returns 4096.
//! - `XENVER_changeset`: 64 bytes, [`CHANGESET`] (Xen's text for a build
//!   without revision information).
//! - `XENVER_platform_parameters`: `virt_start` 0, as Xen answers every
//!   guest that is not PV (`XenPlatformParameters`, or the 4-byte
//!   `CompatPlatformParameters` for a 32-bit caller).
//! - `XENVER_guest_handle`: the caller's 16-byte domain handle. Our
//!   control ABI's `CREATE` carries no handle, so every domain has the
//!   all-zero one, as a Xen domain created without one (dom0) has.
//! - `XENVER_commandline` and `XENVER_build_id`: Xen's XSM policy denies
//!   them to a domU: the command line reads [`DENIED`] (Xen's
//!   `xen_deny()`, NUL included), the build id is `-EPERM`. dom0: no
//!   build id (as a Xen built without one: after `-EFAULT` for an
//!   unreadable `xen_build_id` and `-EINVAL` for its `len` 0,
//!   `-ENODATA`); the command line is not served (`-ENOSYS`).
//! - Anything else (the `xen_varbuf` sub-ops of 4.20): `-ENOSYS`.

use abi::convert::u32_const;
use abi::xen::errno::Errno;
use abi::xen::version::{
    self as v, version_word, CompatPlatformParameters, XenCompileInfo, XenFeatureInfo,
    XenPlatformParameters, XEN_CAPABILITIES_INFO_LEN, XEN_CHANGESET_INFO_LEN,
    XEN_DOMAIN_HANDLE_LEN, XEN_EXTRAVERSION_LEN, XEN_VERSION_MAJOR, XEN_VERSION_MINOR,
};

use super::args::RawArgs;
use super::table::Request;
use super::{Ctx, HypercallEnv};
use crate::mm::{FramePool, PhysMem, PAGE_SIZE};

/// `XENVER_extraversion`: the version suffix guests print after "4.19".
pub const EXTRAVERSION: &str = ".0-xen-core";
/// `XENVER_capabilities`: the guest ABIs xen-core runs (HVM-container
/// PVH guests, 64- and 32-bit), in Xen's notation.
pub const CAPABILITIES: &str = "hvm-3.0-x86_64 hvm-3.0-x86_32 hvm-3.0-x86_32p";

/// `XENVER_changeset`: Xen's `XEN_CHANGESET` for a build made outside a
/// revision-controlled tree.
pub const CHANGESET: &str = "unavailable";

/// What a domU reads for the hypervisor's command line (Xen's
/// `xen_deny()`).
pub const DENIED: &[u8] = b"<denied>\0";

/// A `xen_version` sub-op.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum VersionOp {
    Version,
    Extraversion { buf: u64 },
    CompileInfo { buf: u64 },
    Capabilities { buf: u64 },
    Changeset { buf: u64 },
    PlatformParameters { buf: u64 },
    GetFeatures { info: u64 },
    Pagesize,
    GuestHandle { buf: u64 },
    Commandline { buf: u64 },
    BuildId { buf: u64 },
}

pub(crate) fn decode(a: &RawArgs) -> Request {
    let buf = a.arg[1];
    Request::XenVersion(match a.u32(0) {
        v::XENVER_VERSION => VersionOp::Version,
        v::XENVER_EXTRAVERSION => VersionOp::Extraversion { buf },
        v::XENVER_COMPILE_INFO => VersionOp::CompileInfo { buf },
        v::XENVER_CAPABILITIES => VersionOp::Capabilities { buf },
        v::XENVER_CHANGESET => VersionOp::Changeset { buf },
        v::XENVER_PLATFORM_PARAMETERS => VersionOp::PlatformParameters { buf },
        v::XENVER_GET_FEATURES => VersionOp::GetFeatures { info: buf },
        v::XENVER_PAGESIZE => VersionOp::Pagesize,
        v::XENVER_GUEST_HANDLE => VersionOp::GuestHandle { buf },
        v::XENVER_COMMANDLINE => VersionOp::Commandline { buf },
        v::XENVER_BUILD_ID => VersionOp::BuildId { buf },
        _ => return Request::NoSys,
    })
}

/// `s` in a NUL-padded field of `N` bytes (cut to leave one NUL).
fn padded<const N: usize>(s: &str) -> [u8; N] {
    let mut field = [0u8; N];
    for (f, &b) in field.iter_mut().zip(s.as_bytes()).take(N - 1) {
        *f = b;
    }
    field
}

pub(crate) fn handle<P: FramePool, M: PhysMem, E: HypercallEnv>(
    ctx: &mut Ctx<'_, P, M, E>,
    op: VersionOp,
) -> Result<i64, Errno> {
    match op {
        VersionOp::Version => Ok(version_word(XEN_VERSION_MAJOR, XEN_VERSION_MINOR).into()),
        VersionOp::Pagesize => Ok(u32_const::<PAGE_SIZE>().into()),
        VersionOp::Extraversion { buf } => {
            ctx.write(buf, &padded::<XEN_EXTRAVERSION_LEN>(EXTRAVERSION))?;
            Ok(0)
        }
        VersionOp::Capabilities { buf } => {
            ctx.write(buf, &padded::<XEN_CAPABILITIES_INFO_LEN>(CAPABILITIES))?;
            Ok(0)
        }
        VersionOp::Changeset { buf } => {
            ctx.write(buf, &padded::<XEN_CHANGESET_INFO_LEN>(CHANGESET))?;
            Ok(0)
        }
        VersionOp::PlatformParameters { buf } => {
            if ctx.compat {
                ctx.write(buf, &CompatPlatformParameters::default())?;
            } else {
                ctx.write(buf, &XenPlatformParameters::default())?;
            }
            Ok(0)
        }
        VersionOp::GuestHandle { buf } => {
            ctx.write(buf, &[0u8; XEN_DOMAIN_HANDLE_LEN])?;
            Ok(0)
        }
        VersionOp::CompileInfo { buf } => {
            let info = XenCompileInfo {
                compiler: padded("rustc"),
                compile_by: padded("xen-core"),
                compile_domain: padded(""),
                compile_date: padded(""),
            };
            ctx.write(buf, &info)?;
            Ok(0)
        }
        VersionOp::Commandline { buf } => {
            if ctx.domain()?.privilege().is_some() {
                return Err(Errno::ENOSYS);
            }
            ctx.write_bytes(buf, DENIED)?;
            Ok(0)
        }
        VersionOp::BuildId { buf } => {
            if ctx.domain()?.privilege().is_none() {
                return Err(Errno::EPERM);
            }
            // A null handle asks for the size only.
            if buf != 0 {
                // `xen_build_id_t` starts with its buffer's length, u32.
                let len: u32 = ctx.read(buf)?;
                if len == 0 {
                    return Err(Errno::EINVAL);
                }
            }
            Err(Errno::ENODATA)
        }
        VersionOp::GetFeatures { info } => {
            let mut fi: XenFeatureInfo = ctx.read(info)?;
            if fi.submap_idx >= v::XENFEAT_NR_SUBMAPS {
                return Err(Errno::EINVAL);
            }
            fi.submap = features(ctx.domain()?.hardware().is_some());
            ctx.write(info, &fi)?;
            Ok(0)
        }
    }
}

/// Submap 0 of the features a domain sees.
fn features(hardware_domain: bool) -> u32 {
    let mut bits = 1 << v::XENFEAT_AUTO_TRANSLATED_PHYSMAP
        | 1 << v::XENFEAT_HVM_SAFE_PVCLOCK
        | 1 << v::XENFEAT_HVM_CALLBACK_VECTOR;
    if hardware_domain {
        bits |= 1 << v::XENFEAT_DOM0;
    }
    bits
}
