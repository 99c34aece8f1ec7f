//! `console_io(cmd, count, buf)`, `xen/include/public/xen.h`.
//!
//! - `CONSOLEIO_write`, any domain: the `count` bytes at `buf` go to the
//!   hypervisor console line by line, tagged with the domain (Xen's debug
//!   builds allow domUs this too; release builds refuse them). Returns 0.
//!   `count` is 32 bits, as in Xen. Like Xen's `guest_console_write`,
//!   a write longer than [`CONSOLE_WRITE_MAX`] is done in pieces through a
//!   hypercall continuation; each piece is checked before any of it is
//!   printed, and the first unreadable piece ends the call with `-EFAULT`
//!   (earlier pieces stay printed, as in Xen). Bytes other than printable
//!   ASCII, tab and newline print as `?` (`\r` and NUL are dropped), so a guest
//!   cannot send escape sequences to the operator's terminal. A domU's
//!   output is bounded: lines beyond a burst of
//!   [`DOMU_CONSOLE_BURST_BYTES`], refilled at
//!   [`DOMU_CONSOLE_BYTES_PER_MS`] (`domain::xen_state`), are dropped and counted, and the next
//!   line printed is preceded by `console_io: dN: M lines suppressed`.
//!   Xen release builds print no domU output at all (`XENLOG_G_DEBUG`
//!   is below `guest_loglvl`'s default); dom0's is never limited.
//! - `CONSOLEIO_read`, dom0 only (`-EPERM`): up to `count` bytes of
//!   console input, at most [`CONSOLE_READ_MAX`] per call; returns how
//!   many. The destination is checked before input is taken.
//! - Other commands: `-ENOSYS`.

use abi::xen::console_io::{CONSOLEIO_READ, CONSOLEIO_WRITE};
use abi::xen::errno::Errno;

use super::args::RawArgs;
use super::table::Request;
use super::table::{Dom0, Dom0Request};
use super::{fault, Ctx, HypercallEnv, HypercallOutcome};
#[cfg(doc)]
use crate::domain::xen_state::{DOMU_CONSOLE_BURST_BYTES, DOMU_CONSOLE_BYTES_PER_MS};
use crate::domain::Domain;
use crate::guest_mem::GuestVirt;
use crate::mm::{FramePool, PhysMem};
use crate::paging::guest_walk::AccessKind;

/// Most bytes one `CONSOLEIO_write` piece prints before the hypercall is
/// continued (a page: what Linux's hvc console writes at once).
pub const CONSOLE_WRITE_MAX: u32 = 4096;
/// Most bytes one `CONSOLEIO_read` returns.
pub const CONSOLE_READ_MAX: usize = 256;
/// Bytes copied from the guest at a time.
const CHUNK: usize = 256;

pub(crate) fn decode(a: &RawArgs) -> Request {
    let (count, buf) = (a.u32(1), a.arg[2]);
    match a.u32(0) {
        CONSOLEIO_WRITE => Request::ConsoleWrite { count, buf },
        CONSOLEIO_READ => Request::Dom0Only(Dom0Request::ConsoleRead { count, buf }),
        _ => Request::NoSys,
    }
}

/// What a guest byte prints as, if anything.
fn printable(b: u8) -> Option<u8> {
    match b {
        b'\r' | b'\0' => None,
        b'\t' | b' '..=b'~' => Some(b),
        _ => Some(b'?'),
    }
}

pub(crate) fn write<P: FramePool, M: PhysMem, E: HypercallEnv>(
    ctx: &mut Ctx<'_, P, M, E>,
    count: u32,
    buf: u64,
) -> Result<HypercallOutcome, Errno> {
    let piece = count.min(CONSOLE_WRITE_MAX);
    print_piece(ctx, piece as usize, buf)?;
    if piece == count {
        return Ok(HypercallOutcome::Return(0));
    }
    let rest = ctx
        .args
        .continue_with(1, u64::from(count - piece))
        .with_arg(2, buf.wrapping_add(u64::from(piece)));
    Ok(HypercallOutcome::Continue(rest))
}

/// Prints `len` (at most [`CONSOLE_WRITE_MAX`]) bytes at `buf`, after
/// checking that all of them are readable.
fn print_piece<P: FramePool, M: PhysMem, E: HypercallEnv>(
    ctx: &mut Ctx<'_, P, M, E>,
    len: usize,
    buf: u64,
) -> Result<(), Errno> {
    ctx.guest(|g| g.check(buf, len, AccessKind::Read))?
        .map_err(fault)?;
    let mut line = core::mem::take(&mut ctx.domain_mut()?.xen_mut().console_line);
    let mut done = 0;
    let mut result = Ok(());
    while done < len {
        let n = CHUNK.min(len - done);
        let mut chunk = [0u8; CHUNK];
        let chunk = chunk.get_mut(..n).ok_or(Errno::EINVAL)?;
        // Checked above; only a racing page-table change fails here.
        if let Err(e) = ctx.guest(|g| g.copy_from_guest(buf + done as u64, chunk))? {
            result = Err(fault(e));
            break;
        }
        let now_ms = ctx.env.clock().system_time_ns(ctx.env.tsc()) / 1_000_000;
        let domain = ctx.domains.get_mut(ctx.caller.domid).ok_or(Errno::ESRCH)?;
        for &b in &*chunk {
            if b == b'\n' || line.is_full() {
                if within_budget(domain, now_ms, line.len()) {
                    ctx.env.console_write(domain.domid(), domain.name(), &line);
                }
                line.clear();
            }
            if b != b'\n' {
                // Room was made above.
                let _ = printable(b).map(|p| line.push(p));
            }
        }
        done += n;
    }
    ctx.domain_mut()?.xen_mut().console_line = line;
    result
}

/// Whether a line of `len` bytes fits `domain`'s output budget (always,
/// for dom0); reports the lines suppressed before it.
fn within_budget(domain: &mut Domain, now_ms: u64, len: usize) -> bool {
    if domain.hardware().is_some() {
        return true;
    }
    let cost = len as u64 + 1;
    match domain.xen_mut().console_limit.take(now_ms, cost) {
        None => false,
        Some(0) => true,
        Some(missed) => {
            log::info!("console_io: d{}: {missed} lines suppressed", domain.domid());
            true
        }
    }
}

pub(crate) fn read<P: FramePool, M: PhysMem, E: HypercallEnv>(
    ctx: &mut Ctx<'_, P, M, E>,
    _: Dom0,
    count: u32,
    buf: u64,
) -> Result<i64, Errno> {
    let want = CONSOLE_READ_MAX.min(count as usize);
    let domain = ctx.domains.get(ctx.caller.domid).ok_or(Errno::ESRCH)?;
    let (mem, env) = (&mut *ctx.mem, &mut *ctx.env);
    let mut guest = GuestVirt::new(domain.p2m(), mem, ctx.caller.paging, false);
    guest.check(buf, want, AccessKind::Write).map_err(fault)?;
    let mut input = [0u8; CONSOLE_READ_MAX];
    let n = env
        .console_read(input.get_mut(..want).ok_or(Errno::EINVAL)?)
        .min(want);
    guest
        .copy_to_guest(buf, input.get(..n).ok_or(Errno::EINVAL)?)
        .map_err(fault)?;
    i64::try_from(n).map_err(|_| Errno::EOVERFLOW)
}
