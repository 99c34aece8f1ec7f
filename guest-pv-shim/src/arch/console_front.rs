//! The PV console frontend (`xen/include/public/io/console.h`): when the
//! domain builder gave this domain a console page and event channel
//! (`HVM_PARAM_CONSOLE_PFN`, `HVM_PARAM_CONSOLE_EVTCHN`, both non-zero),
//! `print!` appends to the page's `out` ring and notifies the channel;
//! otherwise it uses `CONSOLEIO_write`. The command line `console=xen`
//! keeps `CONSOLEIO_write` (like Linux's `earlyprintk=xen`).
//!
//! A full ring: notify, then `SCHEDOP_poll` the console port (interrupts
//! stay off but for a one-instruction window when a kernel installed the
//! upcall) until the backend frees space. If it frees none for [`CONSOLE_STALL_NS`] (no backend is
//! serving consoles, or it died), the frontend takes back the output the
//! backend never read, prints it and all later output with
//! `CONSOLEIO_write`, so nothing is lost.

use core::sync::atomic::{AtomicBool, Ordering};

use abi::xen::errno::Errno;
use abi::xen::event_channel::EvtchnPort;
use abi::xen::hvm::{HVM_PARAM_CONSOLE_EVTCHN, HVM_PARAM_CONSOLE_PFN};

use super::hypercall::{self, Xen};
use super::phys::IdentityMap;
use super::shared_info::{event_bitmaps, vcpu0_clock, vcpu0_events};
use super::shared_page::view_at;
use super::upcall;
use crate::pvconsole::XenconsShared;
use crate::StartInfo;

/// How long a full ring may stay full before the frontend gives up on
/// the backend (system time, ns).
pub const CONSOLE_STALL_NS: u64 = 2_000_000_000;

struct Front {
    xen: Xen,
    ring: &'static XenconsShared,
    port: EvtchnPort,
}

static FRONT: spin::Once<Front> = spin::Once::new();
/// Set once the frontend gave up on the backend.
static FELL_BACK: AtomicBool = AtomicBool::new(false);

/// Finds the PV console at boot (before the kernel's main).
pub(super) fn init(xen: &Xen, start_info: &StartInfo) {
    if start_info.cmdline_arg("console") == Some("xen") {
        return;
    }
    let (Ok(pfn), Ok(port)) = (
        xen.hvm_get_param(HVM_PARAM_CONSOLE_PFN),
        xen.hvm_get_param(HVM_PARAM_CONSOLE_EVTCHN),
    ) else {
        return;
    };
    let gpa = pfn.checked_shl(abi::xen::PAGE_SHIFT).unwrap_or(0);
    let Ok(port) = EvtchnPort::try_from(port) else {
        return;
    };
    if pfn == 0 || port == 0 || !IdentityMap::covers(gpa, abi::xen::PAGE_SIZE as u64) {
        return;
    }
    // The wait below clears the port's pending bit in shared info.
    if xen.map_shared_info().is_err() {
        return;
    }
    FRONT.call_once(|| Front {
        xen: *xen,
        // SAFETY: the builder's console page: page-aligned (a PFN),
        // identity-mapped (checked), ours for the domain's life; viewed
        // only as atomics.
        ring: unsafe { view_at(gpa) },
        port,
    });
}

/// Whether output goes to the PV console ring.
pub fn active() -> bool {
    FRONT.get().is_some() && !FELL_BACK.load(Ordering::Acquire)
}

/// Writes `bytes` to the ring; false if there is no PV console (the
/// caller uses `CONSOLEIO_write`).
pub(super) fn write(bytes: &[u8]) -> bool {
    let Some(front) = FRONT.get() else {
        return false;
    };
    if FELL_BACK.load(Ordering::Acquire) {
        return false;
    }
    let was = upcall::disable();
    front.write_all(bytes);
    upcall::restore(was);
    true
}

impl Front {
    fn write_all(&self, mut bytes: &[u8]) {
        let mut deadline = None;
        while !bytes.is_empty() {
            let Ok(n) = self.ring.write_output(bytes) else {
                return self.fall_back(bytes);
            };
            if n > 0 {
                bytes = &bytes[n..];
                deadline = None;
                let _ = self.xen.evtchn_send(self.port);
                continue;
            }
            let now = vcpu0_clock().system_time_ns().unwrap_or(u64::MAX);
            let until = *deadline.get_or_insert(now.saturating_add(CONSOLE_STALL_NS));
            if now >= until {
                return self.fall_back(bytes);
            }
            self.wait_for_space(until);
        }
    }

    /// Sleeps until the backend notifies (or `until`). The pending bit is
    /// cleared before the ring is checked again, so a notification after
    /// the check makes the poll return at once.
    fn wait_for_space(&self, until: u64) {
        let _ = event_bitmaps().test_and_clear_pending(self.port);
        take_upcall();
        if self
            .ring
            .output_pending()
            .is_ok_and(|used| used < abi::xen::console::XENCONS_OUT_SIZE)
        {
            return;
        }
        if let Err(e) = self.xen.sched_poll(&[self.port], until) {
            if e.errno() == Some(Errno::ENOSYS) {
                let _ = self.xen.sched_yield();
            }
        }
    }

    /// Gives up on the backend: reclaims what it never read and prints
    /// that and `rest` (and all later output) with `CONSOLEIO_write`.
    fn fall_back(&self, rest: &[u8]) {
        FELL_BACK.store(true, Ordering::Release);
        let _ = hypercall::console_write_raw(
            b"shim: PV console backend not responding; using console_io\n",
        );
        let mut unread = [0u8; abi::xen::console::XENCONS_OUT_SIZE];
        let n = self.ring.read_output(&mut unread).unwrap_or(0);
        let _ = hypercall::console_write_raw(&unread[..n]);
        let _ = hypercall::console_write_raw(rest);
    }
}

/// Lets the pending upcall be taken, so that `SCHEDOP_poll` sleeps (a
/// hypervisor may return from it at once while `evtchn_upcall_pending` is
/// set): through the upcall handler if a kernel installed one, else by
/// clearing the flag and selector, which nothing else reads then.
fn take_upcall() {
    if upcall::installed() {
        upcall::window();
    } else {
        let vcpu = vcpu0_events();
        vcpu.upcall_pending.store(0, Ordering::SeqCst);
        vcpu.pending_sel.store(0, Ordering::SeqCst);
    }
}

/// Reads console input the backend put in the `in` ring (0 if none, or
/// no PV console); the backend is notified of the freed space.
pub fn read_input(buf: &mut [u8]) -> usize {
    let Some(front) = FRONT.get() else {
        return 0;
    };
    let n = front.ring.read_input(buf).unwrap_or(0);
    if n > 0 {
        let _ = front.xen.evtchn_send(front.port);
    }
    n
}
