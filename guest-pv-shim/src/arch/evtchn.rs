//! Event channels: the `EVTCHNOP_*` and `SCHEDOP_poll` hypercalls
//! (`xen/include/public/event_channel.h`, `sched.h`), and [`Events`], the
//! client a kernel uses: per-port handlers called from the upcall,
//! "wait until one of these ports fires" ([`Events::wait_any`]), and
//! "sleep until anything fires or a deadline" ([`Events::block_until`],
//! dom0's event loop).
//!
//! Upcalls come on [`UPCALL_VECTOR`], registered as
//! `HVM_PARAM_CALLBACK_IRQ` type "vector" (applies to every vCPU, needs no
//! EOI; `HVMOP_set_evtchn_upcall_vector` is not used).
//!
//! Waiting (`Events::wait_any`), and the race between checking and
//! sleeping: with interrupts off, take a fired port if any; otherwise
//! `SCHEDOP_poll` on the ports with the deadline, still with interrupts
//! off; then open a one-instruction interrupt window for the upcall.
//! Xen's poll returns at once if one of the ports is already pending, and
//! a port's pending bit is only cleared by our upcall, which cannot run
//! while interrupts are off: an event arriving between the check and the
//! poll is therefore never slept through. (Linux PVH idles with `sti;
//! hlt` instead; `SCHEDOP_block` with interrupts off is racy on Xen HVM,
//! whose "events need delivery" test honours RFLAGS.IF.) If the
//! hypervisor lacks `SCHEDOP_poll` (-ENOSYS), the wait falls back to
//! `SCHEDOP_block` with a one-shot timer of at most [`BLOCK_SLICE_NS`], so
//! a missed wake-up costs at most that.

use abi::xen::domid::{DomId, DOMID_SELF};
use abi::xen::errno::Errno;
use abi::xen::event_channel::{self as ev, EvtchnBinding, EvtchnPort};
use abi::xen::hvm::{CallbackVia, HVM_PARAM_CALLBACK_IRQ};
use abi::xen::hypercall as nr;
use abi::xen::sched::{SchedPoll, SCHEDOP_POLL};
use core::sync::atomic::{AtomicU64, Ordering};

use zerocopy::{FromBytes, Immutable, IntoBytes};

use super::hypercall::{addr_of_struct, call, Xen};
use super::shared_info::{event_bitmaps, vcpu0_clock, vcpu0_events};
use super::upcall::{self, UPCALL_VECTOR};
use crate::error::{check, XenError};
use crate::events::{scan, Dispatcher, Handler, TableFull};
use crate::Clock;

/// Longest sleep of the `SCHEDOP_block` fallback before rechecking.
pub const BLOCK_SLICE_NS: u64 = 10_000_000;
/// Most ports one wait may name (Xen's `SCHEDOP_poll` limit is 128).
pub const MAX_WAIT_PORTS: usize = 128;

static DISPATCHER: Dispatcher = Dispatcher::new();

/// What `EVTCHNOP_status` reports for a port.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PortStatus {
    /// Its state and binding.
    pub binding: EvtchnBinding,
    /// The vCPU it notifies.
    pub vcpu: u32,
}

impl Xen {
    /// `EVTCHNOP_*` with `arg` read and updated by Xen.
    fn evtchn_op<T: IntoBytes + FromBytes + Immutable>(
        &self,
        cmd: u32,
        arg: &mut T,
    ) -> Result<(), XenError> {
        let argp = arg.as_mut_bytes().as_mut_ptr() as u64;
        // SAFETY: Xen reads and writes the sub-op struct `arg`, a live
        // exclusive borrow of exactly the struct's size.
        check(unsafe { call(nr::EVENT_CHANNEL_OP, [cmd.into(), argp, 0, 0, 0]) }).map(|_| ())
    }

    /// `EVTCHNOP_alloc_unbound`: a new port of ours that `remote` may bind.
    pub fn evtchn_alloc_unbound(&self, remote: DomId) -> Result<EvtchnPort, XenError> {
        let mut a = ev::EvtchnAllocUnbound {
            dom: DOMID_SELF,
            remote_dom: remote,
            port: 0,
        };
        self.evtchn_op(ev::EVTCHNOP_ALLOC_UNBOUND, &mut a)?;
        Ok(a.port)
    }

    /// `EVTCHNOP_bind_interdomain`: connects a new local port to `remote`'s
    /// unbound `remote_port` (which must name us).
    pub fn evtchn_bind_interdomain(
        &self,
        remote: DomId,
        remote_port: EvtchnPort,
    ) -> Result<EvtchnPort, XenError> {
        let mut a = ev::EvtchnBindInterdomain {
            remote_dom: remote,
            pad0: 0,
            remote_port,
            local_port: 0,
        };
        self.evtchn_op(ev::EVTCHNOP_BIND_INTERDOMAIN, &mut a)?;
        Ok(a.local_port)
    }

    /// `EVTCHNOP_bind_virq`: a port for `virq` on `vcpu`.
    pub fn evtchn_bind_virq(&self, virq: u32, vcpu: u32) -> Result<EvtchnPort, XenError> {
        let mut a = ev::EvtchnBindVirq {
            virq,
            vcpu,
            port: 0,
        };
        self.evtchn_op(ev::EVTCHNOP_BIND_VIRQ, &mut a)?;
        Ok(a.port)
    }

    /// `EVTCHNOP_bind_ipi`: a port whose sends notify our `vcpu`.
    pub fn evtchn_bind_ipi(&self, vcpu: u32) -> Result<EvtchnPort, XenError> {
        let mut a = ev::EvtchnBindIpi { vcpu, port: 0 };
        self.evtchn_op(ev::EVTCHNOP_BIND_IPI, &mut a)?;
        Ok(a.port)
    }

    /// `EVTCHNOP_send`: makes the remote end of `port` pending.
    pub fn evtchn_send(&self, port: EvtchnPort) -> Result<(), XenError> {
        self.evtchn_op(ev::EVTCHNOP_SEND, &mut ev::EvtchnSend { port })
    }

    /// `EVTCHNOP_close`: frees `port` (an interdomain peer becomes unbound).
    pub fn evtchn_close(&self, port: EvtchnPort) -> Result<(), XenError> {
        self.evtchn_op(ev::EVTCHNOP_CLOSE, &mut ev::EvtchnClose { port })?;
        DISPATCHER.clear_fired(port);
        Ok(())
    }

    /// `EVTCHNOP_unmask`: clears the mask bit; Xen re-raises a pending event.
    pub fn evtchn_unmask(&self, port: EvtchnPort) -> Result<(), XenError> {
        self.evtchn_op(ev::EVTCHNOP_UNMASK, &mut ev::EvtchnUnmask { port })
    }

    /// `EVTCHNOP_status` of `port` in `dom` (`DOMID_SELF`, or any for dom0).
    pub fn evtchn_status(&self, dom: DomId, port: EvtchnPort) -> Result<PortStatus, XenError> {
        let mut a = ev::EvtchnStatus {
            dom,
            port,
            ..Default::default()
        };
        self.evtchn_op(ev::EVTCHNOP_STATUS, &mut a)?;
        let binding = a.binding().ok_or(XenError(Errno::EINVAL.to_return()))?;
        Ok(PortStatus {
            binding,
            vcpu: a.vcpu,
        })
    }

    /// `SCHEDOP_poll`: sleeps until one of `ports` is pending, an event
    /// arrives, or system time `deadline_ns` (0: no deadline).
    pub fn sched_poll(&self, ports: &[EvtchnPort], deadline_ns: u64) -> Result<(), XenError> {
        let nr_ports = u32::try_from(ports.len().min(MAX_WAIT_PORTS)).unwrap_or(0);
        let arg = SchedPoll {
            ports: ports.as_ptr() as u64,
            nr_ports,
            pad0: 0,
            timeout: deadline_ns,
        };
        // SAFETY: Xen reads `arg` and `nr_ports` ports of the live slice.
        check(unsafe {
            call(
                nr::SCHED_OP,
                [SCHEDOP_POLL.into(), addr_of_struct(&arg), 0, 0, 0],
            )
        })
        .map(|_| ())
    }
}

/// The event-channel client: upcalls on, per-port handlers, waits.
#[derive(Clone, Copy)]
pub struct Events {
    xen: Xen,
    clock: Clock,
}

impl Events {
    /// Maps shared info, installs the upcall gate and registers its vector
    /// with `HVM_PARAM_CALLBACK_IRQ`. Interrupts stay as they are (off in
    /// the shim): upcalls run inside [`Events::wait_any`] and
    /// [`Events::poll_handlers`], or whenever the kernel enables them.
    pub fn init(xen: &Xen) -> Result<Events, XenError> {
        xen.map_shared_info()?;
        upcall::install_gate();
        xen.hvm_set_param(
            HVM_PARAM_CALLBACK_IRQ,
            CallbackVia::Vector(UPCALL_VECTOR).encode(),
        )?;
        Ok(Events {
            xen: *xen,
            clock: vcpu0_clock(),
        })
    }

    /// The hypercall interface.
    pub fn xen(&self) -> &Xen {
        &self.xen
    }

    /// vCPU 0's system time in ns (`None` if the pvclock never read consistently).
    pub fn now(&self) -> Option<u64> {
        self.clock.system_time_ns()
    }

    /// Calls `handler` (in the upcall, interrupts off) for each event on
    /// `port`; `None` removes it. Events are recorded for waiters either way.
    pub fn set_handler(&self, port: EvtchnPort, handler: Option<Handler>) -> Result<(), TableFull> {
        upcall::without_interrupts(|| DISPATCHER.set_handler(port, handler))
    }

    /// Sets `port`'s mask bit: its events stay pending, no upcall.
    pub fn mask(&self, port: EvtchnPort) -> Result<(), XenError> {
        event_bitmaps()
            .mask(port)
            .map_err(|_| XenError(Errno::EINVAL.to_return()))
    }

    /// Runs the upcall for whatever is pending now (a window with
    /// interrupts on), without sleeping.
    pub fn poll_handlers(&self) {
        let was = upcall::disable();
        upcall::window();
        upcall::restore(was);
    }

    /// Takes a fired event of one of `ports` without sleeping.
    pub fn take(&self, ports: &[EvtchnPort]) -> Option<EvtchnPort> {
        self.poll_handlers();
        DISPATCHER
            .take_fired(ports)
            .or_else(|| take_masked_pending(ports))
    }

    /// Sleeps until one of `ports` fires (returned, its fired mark taken)
    /// or system time reaches `deadline_ns` (`Ok(None)`); handlers of any
    /// port run meanwhile. See the module doc for the race it avoids.
    pub fn wait_any(
        &self,
        ports: &[EvtchnPort],
        deadline_ns: Option<u64>,
    ) -> Result<Option<EvtchnPort>, XenError> {
        let was = upcall::disable();
        let result = self.wait_loop(ports, deadline_ns);
        upcall::restore(was);
        result
    }

    fn wait_loop(
        &self,
        ports: &[EvtchnPort],
        deadline_ns: Option<u64>,
    ) -> Result<Option<EvtchnPort>, XenError> {
        loop {
            upcall::window();
            if let Some(port) = DISPATCHER
                .take_fired(ports)
                .or_else(|| take_masked_pending(ports))
            {
                return Ok(Some(port));
            }
            let now = self.now().ok_or(XenError(Errno::EAGAIN.to_return()))?;
            if deadline_ns.is_some_and(|d| now >= d) {
                return Ok(None);
            }
            match self.xen.sched_poll(ports, deadline_ns.unwrap_or(0)) {
                // No poll, or one refusing an empty port list (a pure sleep).
                Err(e)
                    if e.errno() == Some(Errno::ENOSYS)
                        || (ports.is_empty() && e.errno() == Some(Errno::EINVAL)) =>
                {
                    let slice_end = now + BLOCK_SLICE_NS;
                    self.xen
                        .set_timer_op(deadline_ns.map_or(slice_end, |d| d.min(slice_end)))?;
                    self.xen.sched_block()?;
                }
                other => other?,
            }
        }
    }
}

/// Why [`Events::block_until`] returned.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Wake {
    /// Some port fired: its handler ran and its fired mark is set (take
    /// it with [`Events::take`]).
    Event,
    /// The deadline passed first.
    Deadline,
}

/// The deadline of the one-shot timer [`Events::block_until`] armed
/// (0: none), so that an unchanged deadline costs no hypercall.
static ARMED_NS: AtomicU64 = AtomicU64::new(0);

impl Events {
    /// dom0's wait (any guest may use it): sleeps in `SCHEDOP_block`
    /// until any event is pending on any port (a device interrupt's pirq
    /// port, a console ring, a VIRQ, ...) or system time reaches
    /// `deadline_ns` (`VCPUOP_set_singleshot_timer`; `None`: no timer).
    /// Handlers run in the upcall before it returns; the caller then
    /// looks at every source it serves ([`Events::take`] per port), so
    /// one wait serves any set of devices. Returns at once if something
    /// fired since the last wait.
    ///
    /// No wake-up is lost: upcalls are off from the check to the block,
    /// and xen-core's `SCHEDOP_block` returns at once while
    /// `evtchn_upcall_pending` is set (an event that arrived meanwhile).
    pub fn block_until(&self, deadline_ns: Option<u64>) -> Result<Wake, XenError> {
        let was = upcall::disable();
        let result = self.block_loop(deadline_ns);
        upcall::restore(was);
        result
    }

    fn block_loop(&self, deadline_ns: Option<u64>) -> Result<Wake, XenError> {
        loop {
            upcall::window();
            if DISPATCHER.take_any() {
                return Ok(Wake::Event);
            }
            let now = self.now().ok_or(XenError(Errno::EAGAIN.to_return()))?;
            if deadline_ns.is_some_and(|d| now >= d) {
                return Ok(Wake::Deadline);
            }
            self.arm_timer(deadline_ns)?;
            self.xen.sched_block()?;
        }
    }

    /// Arms vCPU 0's one-shot timer for `deadline_ns`, or stops it.
    fn arm_timer(&self, deadline_ns: Option<u64>) -> Result<(), XenError> {
        let want = deadline_ns.unwrap_or(0);
        if ARMED_NS.swap(want, Ordering::Relaxed) == want {
            return Ok(());
        }
        match deadline_ns {
            Some(d) => self.xen.vcpu_set_singleshot_timer(0, d, 0),
            None => self.xen.vcpu_stop_singleshot_timer(0),
        }
    }
}

/// Highest remote port [`Events::bind_first_offered`] tries.
pub const MAX_PROBED_PORT: EvtchnPort = 16;
/// Pause between two rounds of [`Events::bind_first_offered`].
const PROBE_RETRY_NS: u64 = 1_000_000;

impl Events {
    /// Binds the lowest port of `remote` that it offers us: tries
    /// `EVTCHNOP_bind_interdomain` on its ports 1..=[`MAX_PROBED_PORT`]
    /// (Xen refuses, `-EINVAL`, every port not unbound for us, so only an
    /// offered one binds), retrying until system time `deadline_ns`.
    /// Without a store to publish port numbers, peers agree this way.
    /// Returns `(remote_port, local_port)` with the bind-time event taken;
    /// the last error at the deadline.
    pub fn bind_first_offered(
        &self,
        remote: DomId,
        deadline_ns: u64,
    ) -> Result<(EvtchnPort, EvtchnPort), XenError> {
        loop {
            let mut last = XenError(Errno::EINVAL.to_return());
            for remote_port in 1..=MAX_PROBED_PORT {
                match self.xen.evtchn_bind_interdomain(remote, remote_port) {
                    Ok(local) => {
                        // Xen marks a freshly bound interdomain port
                        // pending; take that event, so that waiters see
                        // only the peer's notifications.
                        self.wait_any(&[local], self.now())?;
                        return Ok((remote_port, local));
                    }
                    Err(e) => last = e,
                }
            }
            let now = self.now().ok_or(last)?;
            if now >= deadline_ns {
                return Err(last);
            }
            self.wait_any(&[], Some(now + PROBE_RETRY_NS))?;
        }
    }
}

/// A masked port gets no upcall: a waiter takes its pending bit itself.
fn take_masked_pending(ports: &[EvtchnPort]) -> Option<EvtchnPort> {
    let bitmaps = event_bitmaps();
    ports.iter().copied().find(|&p| {
        bitmaps.is_masked(p).unwrap_or(false) && bitmaps.test_and_clear_pending(p).unwrap_or(false)
    })
}

/// The upcall: Xen's 2-level scan of vCPU 0, each port to the dispatcher.
pub(super) fn upcall() {
    scan(event_bitmaps(), vcpu0_events(), |port| {
        DISPATCHER.dispatch(port)
    });
}
