//! What dom0 asks the hypervisor about other domains: our control ABI's
//! `CONTROL_OP_GETINFO` / `CONTROL_OP_LIST` ([`abi::control`], dom0 only:
//! `-EPERM` for others) and `HVMOP_get_param` of another domain.

use abi::control::{
    ControlHeader, DomainInfo, DomainRequest, ListRequest, ListResponse, CONTROL_OP_GETINFO,
    CONTROL_OP_LIST, HYPERVISOR_CONTROL_OP,
};
use abi::xen::domid::DomId;
use abi::xen::hvm;
use zerocopy::{FromZeros, IntoBytes};

use super::hypercall::{addr_of_struct, call, Xen};
use crate::error::{check, XenError};

impl Xen {
    /// `CONTROL_OP_GETINFO` of `domid`.
    pub fn domain_info(&self, domid: DomId) -> Result<DomainInfo, XenError> {
        let request = DomainRequest {
            header: ControlHeader::CURRENT,
            domid,
            pad: [0; 6],
        };
        let mut info = DomainInfo::default();
        let out = info.as_mut_bytes().as_mut_ptr() as u64;
        let args = [
            CONTROL_OP_GETINFO.into(),
            addr_of_struct(&request),
            out,
            0,
            0,
        ];
        // SAFETY: Xen reads `request` and writes one DomainInfo to `info`,
        // both live locals of the right size.
        check(unsafe { call(HYPERVISOR_CONTROL_OP, args) })?;
        Ok(info)
    }

    /// `CONTROL_OP_LIST` from `start_domid`: up to `LIST_BATCH_MAX`
    /// domains and the cursor for the next batch (`DOMID_INVALID`: done).
    pub fn domain_list(&self, start_domid: DomId) -> Result<ListResponse, XenError> {
        let request = ListRequest {
            header: ControlHeader::CURRENT,
            start_domid,
            pad: [0; 6],
        };
        let mut response = ListResponse::new_zeroed();
        let out = response.as_mut_bytes().as_mut_ptr() as u64;
        let args = [CONTROL_OP_LIST.into(), addr_of_struct(&request), out, 0, 0];
        // SAFETY: Xen reads `request` and writes one ListResponse to
        // `response`, both live locals of the right size.
        check(unsafe { call(HYPERVISOR_CONTROL_OP, args) })?;
        Ok(response)
    }

    /// `HVMOP_get_param` of domain `domid` (dom0 may read any domain's).
    pub fn hvm_get_param_of(&self, domid: DomId, index: u32) -> Result<u64, XenError> {
        let mut arg = hvm::XenHvmParam {
            domid,
            pad: 0,
            index,
            value: 0,
        };
        let argp = arg.as_mut_bytes().as_mut_ptr() as u64;
        // SAFETY: Xen reads and updates `arg`, a live local of the right size.
        check(unsafe {
            call(
                abi::xen::hypercall::HVM_OP,
                [hvm::HVMOP_GET_PARAM.into(), argp, 0, 0, 0],
            )
        })?;
        Ok(arg.value)
    }
}
