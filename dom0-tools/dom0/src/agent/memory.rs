//! `mem-set` and `mem-max` (protocol 2.6), as xl does them through
//! libxl (`tools/libs/light/libxl_mem.c`): the rules are
//! [`mgmt::memory`]'s; the target goes to `memory/target` in the
//! domain's store home, where its balloon driver watches it, and the
//! maximum to the hypervisor (`CONTROL_OP_SET_MAX_MEM`) and
//! `memory/static-max`.

use alloc::format;
use alloc::string::String;

use abi::control::DomainInfo;
use abi::xen::errno::Errno;
use guest_pv_shim::balloon::{parse_kib, MEMORY_STATIC_MAX, MEMORY_TARGET};
use mgmt::memory::{check_max, check_target};
use mgmt::{DomainOperation, DomainRef, MgmtError, Reply};
use toolstack::Hypervisor;

use super::domains::{check_operable, find, hypervisor_error};
use super::session::Ctx;
use crate::store::tree::{dom_path, Node};

/// `MemSet`: a new `memory/target`, and the hypervisor's maximum set to
/// it (xl's enforcing `libxl_set_memory_target`: a guest that ignores
/// the target cannot take more).
pub fn set_target(
    ctx: &mut Ctx<'_, impl Hypervisor>,
    domain: &DomainRef,
    target_kib: u64,
) -> Result<Reply, MgmtError> {
    let info = operable(ctx, domain)?;
    let domid = info.domid;
    let static_max = read_kib(ctx, &info, MEMORY_STATIC_MAX).unwrap_or(info.max_memory_kib);
    check_target(domid, target_kib, static_max)?;
    set_max_mem(ctx, domain, &info, target_kib)?;
    write_kib(ctx, &info, MEMORY_TARGET, target_kib)?;
    Ok(Reply::Done)
}

/// `MemMax`: the hypervisor's maximum and `memory/static-max`.
pub fn set_max(
    ctx: &mut Ctx<'_, impl Hypervisor>,
    domain: &DomainRef,
    max_kib: u64,
) -> Result<Reply, MgmtError> {
    let info = operable(ctx, domain)?;
    let target = read_kib(ctx, &info, MEMORY_TARGET).unwrap_or(info.memory_kib);
    check_max(info.domid, max_kib, target)?;
    set_max_mem(ctx, domain, &info, max_kib)?;
    write_kib(ctx, &info, MEMORY_STATIC_MAX, max_kib)?;
    Ok(Reply::Done)
}

fn operable(
    ctx: &mut Ctx<'_, impl Hypervisor>,
    domain: &DomainRef,
) -> Result<DomainInfo, MgmtError> {
    let info = find(ctx.hv, domain)?;
    check_operable(&info, DomainOperation::SetMemory)?;
    Ok(info)
}

fn set_max_mem(
    ctx: &mut Ctx<'_, impl Hypervisor>,
    domain: &DomainRef,
    info: &DomainInfo,
    kib: u64,
) -> Result<(), MgmtError> {
    ctx.hv.set_max_mem(info.domid, kib).map_err(|e| match e {
        Errno::ESRCH => MgmtError::UnknownDomain(domain.clone()),
        e => hypervisor_error("set_max_mem", e),
    })
}

/// `key` under the domain's home in KiB; `None` if absent or not a
/// number (libxl then takes the hypervisor's figure, as it does for dom0).
fn read_kib(ctx: &Ctx<'_, impl Hypervisor>, info: &DomainInfo, key: &str) -> Option<u64> {
    let path = format!("{}/{key}", dom_path(info.domid));
    ctx.store.read(&path).and_then(parse_kib)
}

/// Writes `key` and lets the domain's watches fire.
fn write_kib(
    ctx: &mut Ctx<'_, impl Hypervisor>,
    info: &DomainInfo,
    key: &str,
    kib: u64,
) -> Result<(), MgmtError> {
    let node = Node {
        path: format!("{}/{key}", dom_path(info.domid)),
        value: format!("{kib}"),
        perms: None,
    };
    ctx.store
        .write_nodes(&[node])
        .map_err(|e: String| MgmtError::Hypervisor {
            operation: format!("the store write of {key} ({e})"),
            errno: -Errno::EIO.value(),
        })?;
    ctx.store.serve(ctx.backend.events(), &ctx.backend.grants());
    Ok(())
}
