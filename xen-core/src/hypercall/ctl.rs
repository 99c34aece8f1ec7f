//! `sysctl` (35), `domctl` (36) and `platform_op` (7),
//! `xen/include/public/sysctl.h`, `domctl.h` and `platform.h`: Xen's
//! hypercalls for the privileged domain. xen-core serves no sub-op of
//! any (dom0's toolstack uses the control ABI, docs/abi.md says why) but
//! answers in Xen's order (`do_sysctl`, `do_domctl`, `do_platform_op`),
//! which guests probe with:
//! 1. the header cannot be read: `-EFAULT`;
//! 2. another interface version: `-EACCES`;
//! 3. a caller other than the privileged domain: `-EPERM` (Xen's XSM
//!    default policy);
//! 4. the privileged domain: `-ENOSYS` (no sub-op served).

use abi::xen::ctl::{
    XenCtlHeader, XENPF_INTERFACE_VERSION, XEN_DOMCTL_INTERFACE_VERSION,
    XEN_SYSCTL_INTERFACE_VERSION,
};
use abi::xen::errno::Errno;
use abi::xen::hypercall as nr;

use super::args::RawArgs;
use super::table::Request;
use super::{Ctx, HypercallEnv};
use crate::mm::{FramePool, PhysMem};

/// Which of the three hypercalls.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Ctl {
    Sysctl,
    Domctl,
    Platform,
}

impl Ctl {
    fn interface_version(self) -> u32 {
        match self {
            Ctl::Sysctl => XEN_SYSCTL_INTERFACE_VERSION,
            Ctl::Domctl => XEN_DOMCTL_INTERFACE_VERSION,
            Ctl::Platform => XENPF_INTERFACE_VERSION,
        }
    }
}

pub(crate) fn decode(a: &RawArgs) -> Request {
    let which = match a.nr {
        nr::SYSCTL => Ctl::Sysctl,
        nr::PLATFORM_OP => Ctl::Platform,
        _ => Ctl::Domctl,
    };
    Request::Ctl {
        which,
        arg: a.arg[0],
    }
}

/// Xen's answer to a `sysctl`, `domctl` or `platform_op` at guest
/// address `arg`.
pub(crate) fn handle<P: FramePool, M: PhysMem, E: HypercallEnv>(
    ctx: &mut Ctx<'_, P, M, E>,
    which: Ctl,
    arg: u64,
) -> Errno {
    let header: XenCtlHeader = match ctx.read(arg) {
        Ok(header) => header,
        Err(errno) => return errno,
    };
    if header.interface_version != which.interface_version() {
        return Errno::EACCES;
    }
    match ctx.domain() {
        Ok(domain) if domain.privilege().is_some() => Errno::ENOSYS,
        Ok(_) => Errno::EPERM,
        Err(errno) => errno,
    }
}
