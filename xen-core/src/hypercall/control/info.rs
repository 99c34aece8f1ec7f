//! Read-only control ops.
//!
//! - `GETINFO`: `DomainRequest` → `DomainInfo`.
//! - `LIST`: `ListRequest` → `ListResponse`: up to `LIST_BATCH_MAX`
//!   domains with domid ≥ `start_domid`, ascending; `next_domid` is the
//!   next one, or `DOMID_INVALID` when done.
//! - `GET_STATS`: `DomainRequest` → `DomainStats`: CPU time, VM exits by
//!   code (most frequent first; the hypervisor counts at most
//!   `STATS_EXIT_CODES_MAX` distinct codes), hypercalls by number.
//! - `READCONSOLE`: `ReadConsoleRequest` → `ReadConsoleResponse`: the
//!   hypervisor's log ring (what it printed on COM1), for `dmesg`.
//! - `PHYSINFO`: `ControlHeader` → `Physinfo`: pCPUs and total memory from
//!   the environment, free memory from the frame pool, the domain count,
//!   the TSC rate.
//!
//! `DOMAIN_FLAG_RUNNING` marks the caller's domain and every domain with
//! a vCPU loaded on a pCPU now (`Vcpu::loaded_on`). A name longer than the ABI's 32 bytes
//! is cut at a character boundary.

use abi::control::{
    ControlHeader, DomainInfo, DomainRequest, DomainStats, ExitCounter, ListRequest, ListResponse,
    Physinfo, ReadConsoleRequest, ReadConsoleResponse, DOMAIN_FLAG_BLOCKED, DOMAIN_FLAG_DYING,
    DOMAIN_FLAG_PAUSED, DOMAIN_FLAG_PRIVILEGED, DOMAIN_FLAG_RUNNING, DOMAIN_FLAG_SHUTDOWN,
    DOMAIN_NAME_MAX, LIST_BATCH_MAX, READCONSOLE_MAX, STATS_EXIT_CODES_MAX,
};
use abi::xen::domid::{DomId, DOMID_INVALID};
use abi::xen::errno::Errno;
use abi::xen::sched::SHUTDOWN_CRASH;
use heapless::Vec;
use zerocopy::{FromZeros, Immutable, IntoBytes};

use super::{zero, Dom0, FRAME_KIB};
use crate::domain::table::DomainTable;
use crate::domain::vcpu::VcpuRunState;
use crate::domain::{Domain, DomainState};
use crate::hypercall::{Ctx, HypercallEnv};
use crate::mm::{FramePool, PhysMem};

/// Reads and checks a `DomainRequest`; returns the domid it names.
pub(super) fn domain_request<P: FramePool, M: PhysMem, E: HypercallEnv>(
    ctx: &mut Ctx<'_, P, M, E>,
    request: u64,
) -> Result<DomId, Errno> {
    let req: DomainRequest = ctx.read(request)?;
    req.header.check()?;
    zero(&req.pad)?;
    ctx.domains.get(req.domid).ok_or(Errno::ESRCH)?;
    Ok(req.domid)
}

/// Answers a `DomainRequest` at `request` with `make(domain, caller)`
/// written at `response`.
fn answer_for_domain<P: FramePool, M: PhysMem, E: HypercallEnv, T: IntoBytes + Immutable>(
    ctx: &mut Ctx<'_, P, M, E>,
    request: u64,
    response: u64,
    make: impl FnOnce(&Domain, DomId) -> T,
) -> Result<i64, Errno> {
    let domid = domain_request(ctx, request)?;
    let domain = ctx.domains.get(domid).ok_or(Errno::ESRCH)?;
    let answer = make(domain, ctx.caller.domid);
    ctx.write(response, &answer)?;
    Ok(0)
}

pub(super) fn getinfo<P: FramePool, M: PhysMem, E: HypercallEnv>(
    ctx: &mut Ctx<'_, P, M, E>,
    _: Dom0,
    request: u64,
    response: u64,
) -> Result<i64, Errno> {
    answer_for_domain(ctx, request, response, info)
}

pub(super) fn list<P: FramePool, M: PhysMem, E: HypercallEnv>(
    ctx: &mut Ctx<'_, P, M, E>,
    _: Dom0,
    request: u64,
    response: u64,
) -> Result<i64, Errno> {
    let req: ListRequest = ctx.read(request)?;
    req.header.check()?;
    zero(&req.pad)?;
    let list = batch(ctx.domains, req.start_domid, ctx.caller.domid);
    ctx.write(response, &list)?;
    Ok(0)
}

pub(super) fn get_stats<P: FramePool, M: PhysMem, E: HypercallEnv>(
    ctx: &mut Ctx<'_, P, M, E>,
    _: Dom0,
    request: u64,
    response: u64,
) -> Result<i64, Errno> {
    answer_for_domain(ctx, request, response, |domain, _| stats(domain))
}

pub(super) fn physinfo<P: FramePool, M: PhysMem, E: HypercallEnv>(
    ctx: &mut Ctx<'_, P, M, E>,
    _: Dom0,
    request: u64,
    response: u64,
) -> Result<i64, Errno> {
    let header: ControlHeader = ctx.read(request)?;
    header.check()?;
    let host = ctx.env.host();
    let info = Physinfo {
        nr_pcpus: ctx.env.online_pcpus(),
        nr_domains: u32::try_from(ctx.domains.len()).map_err(|_| Errno::EOVERFLOW)?,
        total_memory_kib: host.total_frames.saturating_mul(FRAME_KIB),
        free_memory_kib: ctx.pool.free_frames().saturating_mul(FRAME_KIB),
        tsc_khz: ctx.env.clock().tsc_hz() / 1000,
    };
    ctx.write(response, &info)?;
    Ok(0)
}

/// `READCONSOLE`: up to [`READCONSOLE_MAX`] bytes of the hypervisor's log
/// ring from `offset` into the caller's `buffer` (all or nothing:
/// `-EFAULT`); `-EINVAL` for a non-zero pad.
pub(super) fn readconsole<P: FramePool, M: PhysMem, E: HypercallEnv>(
    ctx: &mut Ctx<'_, P, M, E>,
    _: Dom0,
    request: u64,
    response: u64,
) -> Result<i64, Errno> {
    let req: ReadConsoleRequest = ctx.read(request)?;
    req.header.check()?;
    zero(req.pad.as_bytes())?;
    let mut buf = [0u8; READCONSOLE_MAX as usize];
    let want = req.size.min(READCONSOLE_MAX) as usize;
    let (count, total) = ctx
        .env
        .read_log(req.offset, buf.get_mut(..want).ok_or(Errno::EINVAL)?);
    ctx.write_bytes(req.buffer, buf.get(..count).ok_or(Errno::EINVAL)?)?;
    let reply = ReadConsoleResponse {
        count: u32::try_from(count).map_err(|_| Errno::EOVERFLOW)?,
        pad: 0,
        total,
    };
    ctx.write(response, &reply)?;
    Ok(0)
}

/// The domains with domid ≥ `start`, by domid, in batches.
fn batch(domains: &DomainTable, start: DomId, caller: DomId) -> ListResponse {
    let ids = lowest_domids(domains, start);
    let mut response = ListResponse::new_zeroed();
    let mut n = 0;
    for (slot, id) in response.domains.iter_mut().zip(&ids).take(LIST_BATCH_MAX) {
        if let Some(d) = domains.get(*id) {
            *slot = info(d, caller);
        }
        response.nr_entries += 1;
        n += 1;
    }
    response.next_domid = ids.get(n).copied().unwrap_or(DOMID_INVALID);
    response
}

/// The lowest `LIST_BATCH_MAX + 1` domids ≥ `start`, ascending (one more
/// than a batch holds, to name the next batch's first): one walk over the
/// domains, no allocation.
fn lowest_domids(domains: &DomainTable, start: DomId) -> Vec<DomId, { LIST_BATCH_MAX + 1 }> {
    let mut ids: Vec<DomId, { LIST_BATCH_MAX + 1 }> = Vec::new();
    for id in domains.iter().map(Domain::domid).filter(|id| *id >= start) {
        if ids.is_full() {
            if ids.last().is_some_and(|last| id > *last) {
                continue;
            }
            ids.pop();
        }
        let at = ids.partition_point(|x| *x < id);
        // Room was made above.
        let _ = ids.insert(at, id);
    }
    ids
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
        DomainState::Shutdown(r) => (DOMAIN_FLAG_SHUTDOWN, r.code()),
        DomainState::Crashed(_) => (DOMAIN_FLAG_SHUTDOWN, SHUTDOWN_CRASH),
        DomainState::Dying => (DOMAIN_FLAG_DYING, 0),
    };
    if all_blocked {
        flags |= DOMAIN_FLAG_BLOCKED;
    }
    if d.domid() == caller || d.any_vcpu_loaded() {
        flags |= DOMAIN_FLAG_RUNNING;
    }
    if d.privilege().is_some() {
        flags |= DOMAIN_FLAG_PRIVILEGED;
    }
    DomainInfo {
        domid: d.domid(),
        flags,
        shutdown_reason,
        nr_vcpus: d.nr_vcpus(),
        memory_kib: d.tot_pages().saturating_mul(FRAME_KIB),
        max_memory_kib: d.max_pages().saturating_mul(FRAME_KIB),
        cpu_time_ns: d.cpu_time_ns(),
        name: name_field(d.name()),
        ..DomainInfo::default()
    }
}

/// `d`'s counters in the ABI's layout.
fn stats(d: &Domain) -> DomainStats {
    let mut stats = DomainStats::new_zeroed();
    stats.cpu_time_ns = d.cpu_time_ns();
    stats.nr_vcpus = d.nr_vcpus();
    let mut exits: Vec<(usize, u64, u64), STATS_EXIT_CODES_MAX> = Vec::new();
    for (i, (code, count)) in d.exits().iter().enumerate().take(STATS_EXIT_CODES_MAX) {
        // Cannot fail: `take` bounds the count.
        let _ = exits.push((i, code, count));
    }
    // Most frequent first; equal counts in order of first occurrence.
    exits.sort_unstable_by(|a, b| b.2.cmp(&a.2).then(a.0.cmp(&b.0)));
    for (slot, &(_, exit_code, count)) in stats.exits.iter_mut().zip(&exits) {
        *slot = ExitCounter { exit_code, count };
        stats.nr_exit_codes += 1;
    }
    for (nr, count) in d.hypercalls().iter() {
        if let Some(slot) = usize::try_from(nr)
            .ok()
            .and_then(|i| stats.hypercalls.get_mut(i))
        {
            *slot = count;
        }
    }
    stats
}

/// `name` NUL-padded, cut at a character boundary to fit.
fn name_field(name: &str) -> [u8; DOMAIN_NAME_MAX] {
    let mut end = name.len().min(DOMAIN_NAME_MAX);
    while !name.is_char_boundary(end) {
        end -= 1;
    }
    let mut field = [0u8; DOMAIN_NAME_MAX];
    for (f, &b) in field.iter_mut().zip(name.as_bytes()).take(end) {
        *f = b;
    }
    field
}
