//! The balloon driver (Linux's `drivers/xen/balloon.c` and
//! `xen-balloon.c`): the toolstack writes the memory the domain should
//! use to `memory/target` (KiB) in the domain's store home; the driver
//! watches it and moves the domain's reservation towards it, giving
//! frames back with `XENMEM_decrease_reservation` and taking them again
//! with `XENMEM_populate_physmap`.
//!
//! The frames it may give are a region of GFNs the kernel lends it and
//! never touches ([`Balloon::new`]): Linux takes pages from its page
//! allocator, a shim kernel has none. The balloon takes them from the top
//! of the region down and gives them back bottom up, so the GFNs out are
//! always `end - out..end`.
//!
//! As in Linux, the target is relative for an HVM/PVH guest: on the first
//! target seen, the driver notes `static-max - current` (the frames the
//! toolstack counts that the guest does not see as its own: rings,
//! frames under shared pages) and subtracts it from every target.
//!
//! Work is bounded: one [`Balloon::step`] makes one hypercall of at most
//! [`BALLOON_BATCH`] frames (Linux's one page of `frame_list`) and says
//! what it did, so the caller reports progress and handles events
//! between steps. A populate the hypervisor cuts short (the domain at its
//! maximum, the host out of memory) is retried later, as Linux's
//! `BP_EAGAIN`; a decrease it cuts short is an error (Linux `BUG`s).

use core::fmt;
use core::ops::Range;

use abi::convert::usize_from_u64;

use crate::error::XenError;
use crate::xenbus::wire::XsError;
use crate::xenbus::{Client, Transport, Tx, XenbusError};

/// The key the toolstack writes the target to, KiB (relative to the
/// domain's home, as Linux's `xenbus_scanf(XBT_NIL, "memory", "target")`).
pub const MEMORY_TARGET: &str = "memory/target";
/// The most memory the domain may have, KiB (libxl's `static-max`).
pub const MEMORY_STATIC_MAX: &str = "memory/static-max";

/// Frames per step: Linux's `frame_list`, one page of `xen_pfn_t`.
pub const BALLOON_BATCH: usize = 512;
/// KiB per 4 KiB frame.
const FRAME_KIB: u64 = 4;

/// The `memory_op` reservation sub-ops for this domain (the hypervisor in
/// a guest, a model under host tests).
pub trait Reservation {
    /// `XENMEM_current_reservation`: frames the domain holds.
    fn current_pages(&mut self) -> Result<u64, XenError>;
    /// `XENMEM_decrease_reservation` (order 0) of `gfns`: the number done.
    fn decrease(&mut self, gfns: &[u64]) -> Result<u64, XenError>;
    /// `XENMEM_populate_physmap` (order 0) at `gfns`: the number done.
    fn populate(&mut self, gfns: &[u64]) -> Result<u64, XenError>;
}

/// What one [`Balloon::step`] did.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Step {
    /// The reservation is at the target (or no target was seen yet).
    AtTarget,
    /// Gave back this many frames.
    Decreased(u64),
    /// Took this many frames back.
    Increased(u64),
    /// The target is below what the region lets the balloon give: it
    /// holds every frame of it.
    Full,
    /// The target is above what the domain held when the balloon
    /// started and every frame is back: nothing more to take.
    Empty,
    /// The hypervisor populated only this many of the frames asked
    /// (the domain at its maximum, or the host out of memory); try again
    /// later.
    Retry(u64),
}

/// A decrease the hypervisor cut short: this GFN was refused.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum BalloonError {
    /// The hypercall failed.
    Hypercall(XenError),
    /// `XENMEM_decrease_reservation` stopped at this GFN of the region.
    Refused(u64),
}

impl fmt::Display for BalloonError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Hypercall(e) => write!(f, "memory_op failed: {e}"),
            Self::Refused(gfn) => write!(f, "decrease_reservation refused gfn {gfn:#x}"),
        }
    }
}

impl From<XenError> for BalloonError {
    fn from(e: XenError) -> Self {
        Self::Hypercall(e)
    }
}

/// The balloon: its region, the frames out, the target.
#[derive(Clone, Debug)]
pub struct Balloon {
    region: Range<u64>,
    /// GFNs `region.end - out..region.end` are given back.
    out: u64,
    /// Frames the domain holds, as the driver counts them (Linux's
    /// `balloon_stats.current_pages`).
    current: u64,
    /// Frames wanted; `None` before the first target.
    target: Option<u64>,
    /// `static-max - current` at the first target, frames.
    target_diff: Option<i64>,
}

impl Balloon {
    /// A balloon that may give back the GFNs of `region` (all populated
    /// now, none used by the kernel) of a domain holding `current_pages`.
    pub fn new(region: Range<u64>, current_pages: u64) -> Self {
        Self {
            region,
            out: 0,
            current: current_pages,
            target: None,
            target_diff: None,
        }
    }

    /// A new `memory/target` (KiB), as Linux's `watch_target`; on the
    /// first, `static_max_kib` (`memory/static-max`, or the current
    /// reservation if absent) fixes the difference between what the
    /// toolstack counts and what the domain holds.
    pub fn set_target_kib(&mut self, target_kib: u64, static_max_kib: Option<u64>) {
        let current = self.current.cast_signed();
        let diff = *self.target_diff.get_or_insert_with(|| {
            static_max_kib.map_or(0, |kib| (kib / FRAME_KIB).cast_signed() - current)
        });
        let target = (target_kib / FRAME_KIB).cast_signed().saturating_sub(diff);
        self.target = Some(target.max(0).cast_unsigned());
    }

    /// Reads [`MEMORY_TARGET`] (and, the first time, [`MEMORY_STATIC_MAX`])
    /// and makes it the target, as Linux's `watch_target` on each watch
    /// event; the target read, KiB. `None`: the key is absent or not a
    /// number (the target stays).
    pub fn read_target<T: Transport>(
        &mut self,
        xs: &mut Client<T>,
    ) -> Result<Option<u64>, XenbusError> {
        let Some(target) = read_kib(xs, MEMORY_TARGET)? else {
            return Ok(None);
        };
        let static_max = match self.target_diff {
            Some(_) => None,
            None => read_kib(xs, MEMORY_STATIC_MAX)?,
        };
        self.set_target_kib(target, static_max);
        Ok(Some(target))
    }

    /// Frames the domain holds, as the driver counts them.
    pub fn current_pages(&self) -> u64 {
        self.current
    }

    /// Frames wanted, once a target was seen.
    pub fn target_pages(&self) -> Option<u64> {
        self.target
    }

    /// Frames given back.
    pub fn ballooned_out(&self) -> u64 {
        self.out
    }

    /// One bounded move towards the target.
    pub fn step(&mut self, xen: &mut impl Reservation) -> Result<Step, BalloonError> {
        let Some(target) = self.target else {
            return Ok(Step::AtTarget);
        };
        let mut gfns = [0u64; BALLOON_BATCH];
        let batch = BALLOON_BATCH as u64;
        let low = self.region.end - self.out;
        if target < self.current {
            let room = low.saturating_sub(self.region.start);
            let n = (self.current - target).min(batch).min(room);
            if n == 0 {
                return Ok(Step::Full);
            }
            // Highest first: a cut-short call leaves `out` contiguous.
            let list = &mut gfns[..usize_from_u64(n)];
            for (gfn, below) in list.iter_mut().zip(1..) {
                *gfn = low - below;
            }
            let done = xen.decrease(list)?.min(n);
            self.out += done;
            self.current -= done;
            if done < n {
                return Err(BalloonError::Refused(low - 1 - done));
            }
            Ok(Step::Decreased(done))
        } else if target > self.current {
            let n = (target - self.current).min(batch).min(self.out);
            if n == 0 {
                return Ok(Step::Empty);
            }
            let list = &mut gfns[..usize_from_u64(n)];
            for (gfn, above) in list.iter_mut().zip(0..) {
                *gfn = low + above;
            }
            let done = xen.populate(list)?.min(n);
            self.out -= done;
            self.current += done;
            Ok(if done < n {
                Step::Retry(done)
            } else {
                Step::Increased(done)
            })
        } else {
            Ok(Step::AtTarget)
        }
    }
}

/// `path`'s value in KiB; `None` if absent or not a number.
fn read_kib<T: Transport>(xs: &mut Client<T>, path: &str) -> Result<Option<u64>, XenbusError> {
    match xs.read(Tx::NONE, path) {
        Ok(value) => Ok(parse_kib(value)),
        Err(XenbusError::Store(XsError::Enoent)) => Ok(None),
        Err(e) => Err(e),
    }
}

/// A store value in KiB (`memory/target`, `memory/static-max`): decimal
/// digits, as libxl writes them; `None` for anything else.
pub fn parse_kib(value: &[u8]) -> Option<u64> {
    if value.is_empty() || !value.iter().all(u8::is_ascii_digit) {
        return None;
    }
    core::str::from_utf8(value).ok()?.parse().ok()
}

#[cfg(test)]
mod tests;
