//! Our control hypercall ([`abi::control`]), dom0 only: the door serves
//! it only with the caller's [`Privileged`] token (`-EPERM` for domUs).
//!
//! `control(op, request, response)`: the request starts with a
//! `ControlHeader` (`-EACCES` for another major or a newer minor;
//! `-EINVAL` for non-zero reserved fields, here and in the request).
//! - `CONTROL_OP_GETINFO`: `DomainRequest` → `DomainInfo` (`-ESRCH`).
//! - `CONTROL_OP_LIST`: `ListRequest` → `ListResponse`: up to
//!   `LIST_BATCH_MAX` domains with domid ≥ `start_domid`, ascending;
//!   `next_domid` is the next one, or `DOMID_INVALID` when done.
//! - Other ops: `-ENOSYS` until their issue.
//!
//! `DOMAIN_FLAG_RUNNING` marks the caller's domain only: with one pCPU the
//! caller's vCPU is the one running. A name longer than the ABI's 32 bytes
//! is cut at a character boundary.

use abi::control::{
    DomainInfo, DomainRequest, ListRequest, ListResponse, CONTROL_OP_GETINFO, CONTROL_OP_LIST,
    DOMAIN_FLAG_BLOCKED, DOMAIN_FLAG_DYING, DOMAIN_FLAG_PAUSED, DOMAIN_FLAG_PRIVILEGED,
    DOMAIN_FLAG_RUNNING, DOMAIN_FLAG_SHUTDOWN, DOMAIN_NAME_MAX, LIST_BATCH_MAX,
};
use abi::xen::domid::{DomId, DOMID_INVALID};
use abi::xen::errno::Errno;
use abi::xen::sched::SHUTDOWN_CRASH;
use heapless::Vec;
use zerocopy::{FromZeros, Immutable, IntoBytes};

use super::args::RawArgs;
use super::table::Request;
use super::{fault, Caller};
use crate::domain::table::{DomainTable, MAX_DOMAINS};
use crate::domain::vcpu::VcpuRunState;
use crate::domain::{Domain, DomainState, Privileged};
use crate::guest_mem::GuestVirt;
use crate::mm::PhysMem;

/// A control operation with its request and response addresses.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum ControlOp {
    GetInfo { request: u64, response: u64 },
    List { request: u64, response: u64 },
}

pub(crate) fn decode(a: &RawArgs) -> Request {
    let (request, response) = (a.arg[1], a.arg[2]);
    Request::Control(match a.u32(0) {
        CONTROL_OP_GETINFO => ControlOp::GetInfo { request, response },
        CONTROL_OP_LIST => ControlOp::List { request, response },
        _ => return Request::NoSys,
    })
}

/// Serves `op`; only the privileged domain holds the token it needs.
pub(crate) fn handle<M: PhysMem>(
    _: &Privileged,
    domains: &DomainTable,
    mem: &mut M,
    caller: &Caller,
    op: ControlOp,
) -> Result<i64, Errno> {
    let me = domains.get(caller.domid).ok_or(Errno::ESRCH)?;
    let mut guest = GuestVirt::new(me.p2m(), mem, caller.paging, false);
    match op {
        ControlOp::GetInfo { request, response } => {
            let req: DomainRequest = guest.read_struct(request).map_err(fault)?;
            req.header.check()?;
            zero(&req.pad)?;
            let domain = domains.get(req.domid).ok_or(Errno::ESRCH)?;
            reply(&mut guest, response, &info(domain, caller.domid))
        }
        ControlOp::List { request, response } => {
            let req: ListRequest = guest.read_struct(request).map_err(fault)?;
            req.header.check()?;
            zero(&req.pad)?;
            reply(
                &mut guest,
                response,
                &list(domains, req.start_domid, caller.domid),
            )
        }
    }
}

fn zero(pad: &[u8]) -> Result<(), Errno> {
    if pad.iter().all(|b| *b == 0) {
        Ok(())
    } else {
        Err(Errno::EINVAL)
    }
}

fn reply<M: PhysMem, T: IntoBytes + Immutable>(
    guest: &mut GuestVirt<'_, M>,
    at: u64,
    value: &T,
) -> Result<i64, Errno> {
    guest.write_struct(at, value).map_err(fault)?;
    Ok(0)
}

/// The domains with domid ≥ `start`, by domid, in batches.
fn list(domains: &DomainTable, start: DomId, caller: DomId) -> ListResponse {
    let mut ids: Vec<DomId, MAX_DOMAINS> = Vec::new();
    for d in domains.iter().filter(|d| d.domid() >= start) {
        // At most MAX_DOMAINS domains exist.
        let _ = ids.push(d.domid());
    }
    ids.sort_unstable();
    let mut response = ListResponse::new_zeroed();
    let batch = ids.len().min(LIST_BATCH_MAX);
    for (slot, id) in response.domains.iter_mut().zip(&ids[..batch]) {
        if let Some(d) = domains.get(*id) {
            *slot = info(d, caller);
        }
    }
    response.nr_entries = batch as u32;
    response.next_domid = ids.get(batch).copied().unwrap_or(DOMID_INVALID);
    response
}

/// The control ABI's view of `d`.
fn info(d: &Domain, caller: DomId) -> DomainInfo {
    let up = || {
        d.vcpus()
            .iter()
            .filter(|v| v.run_state() != VcpuRunState::Down)
    };
    let all_blocked = up().count() > 0 && up().all(|v| v.run_state() == VcpuRunState::Blocked);
    let (mut flags, shutdown_reason) = match d.state() {
        DomainState::Running => (0, 0),
        DomainState::Paused => (DOMAIN_FLAG_PAUSED, 0),
        DomainState::Shutdown(r) => (DOMAIN_FLAG_SHUTDOWN, r.to_xen()),
        DomainState::Crashed(_) => (DOMAIN_FLAG_SHUTDOWN, SHUTDOWN_CRASH),
        DomainState::Dying => (DOMAIN_FLAG_DYING, 0),
    };
    if all_blocked {
        flags |= DOMAIN_FLAG_BLOCKED;
    }
    if d.domid() == caller {
        flags |= DOMAIN_FLAG_RUNNING;
    }
    if d.privilege().is_some() {
        flags |= DOMAIN_FLAG_PRIVILEGED;
    }
    DomainInfo {
        domid: d.domid(),
        flags,
        shutdown_reason,
        nr_vcpus: d.vcpus().len() as u32,
        memory_kib: d.tot_pages().saturating_mul(4),
        max_memory_kib: d.max_pages().saturating_mul(4),
        cpu_time_ns: d.cpu_time_ns(),
        name: name_field(d.name()),
        ..DomainInfo::default()
    }
}

/// `name` NUL-padded, cut at a character boundary to fit.
fn name_field(name: &str) -> [u8; DOMAIN_NAME_MAX] {
    let mut end = name.len().min(DOMAIN_NAME_MAX);
    while !name.is_char_boundary(end) {
        end -= 1;
    }
    let mut field = [0u8; DOMAIN_NAME_MAX];
    field[..end].copy_from_slice(&name.as_bytes()[..end]);
    field
}
