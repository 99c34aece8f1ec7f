//! What the hypervisor-side fuzz targets share: the simulated machine of
//! xen-core's host tests (`xen_core::hypercall::sim::World`, feature
//! `sim`) driven as the run loop drives it. A hypercall is made only by a
//! vCPU that may run, is continued as a guest would continue it, and time
//! moves only in explicit ticks that fire timers and poll timeouts.
//!
//! The oracle is everything that panics: xen-core's own assertions, the
//! simulated frame pool (double free, frame out of range), a console line
//! that is not printable ASCII, and integer overflow (fuzz builds keep
//! debug assertions).

use arbitrary::Arbitrary;
use xen_core::hypercall::sim::{continued, World, DOM0, DOMU, RAM_PAGES};
use xen_core::hypercall::{HypercallOutcome, HypercallRegs};
use zerocopy::{Immutable, IntoBytes};

pub use abi::xen::domid::DomId;
pub use xen_core::hypercall::sim::{BUF, BUF2};

/// Most times one hypercall is continued (the door bounds each piece; a
/// guest that keeps calling is the guest's business).
const MAX_CONTINUATIONS: usize = 64;
/// Longest store a step makes into guest memory.
pub const MAX_STORE: usize = 256;
/// Page past the domains' RAM where targets map extra frames (grant
/// frames, shared info, foreign frames).
pub const EXTRA_GFN: u64 = RAM_PAGES + 8;

/// Which domain acts.
#[derive(Arbitrary, Clone, Copy, Debug)]
pub enum Who {
    /// dom0 (privileged).
    Dom0,
    /// The boot-time domU.
    DomU,
    /// Any domid: domains dom0 created, reserved ids, nonsense.
    Other(u16),
}

impl Who {
    /// The domid.
    pub fn domid(self) -> DomId {
        match self {
            Who::Dom0 => DOM0,
            Who::DomU => DOMU,
            Who::Other(id) => id,
        }
    }
}

/// A hypercall argument: small numbers (sub-ops, counts, ports, refs),
/// addresses in or around the caller's RAM, or anything.
#[derive(Arbitrary, Clone, Copy, Debug)]
pub enum Arg {
    /// 0..=255.
    Small(u8),
    /// A GPA in 8-byte steps over the first 512 KiB (RAM, then holes).
    Gpa(u16),
    /// Any value.
    Raw(u64),
}

impl Arg {
    /// The register value.
    pub fn value(self) -> u64 {
        match self {
            Arg::Small(v) => v.into(),
            Arg::Gpa(v) => u64::from(v) << 3,
            Arg::Raw(v) => v,
        }
    }
}

/// The machine under test.
pub struct Door {
    /// The simulated machine.
    pub w: World,
}

impl Default for Door {
    fn default() -> Self {
        Self::new()
    }
}

/// Steps one fuzz input may take at most: enough to build and tear down
/// any state the targets reach, short enough to keep executions fast.
pub const MAX_STEPS: usize = 64;

impl Door {
    /// Runs up to [`MAX_STEPS`] of `steps` on a fresh door, checking the
    /// frame accounting after each.
    pub fn run<S>(steps: Vec<S>, mut step: impl FnMut(&mut Door, S)) {
        let mut door = Door::new();
        for s in steps.into_iter().take(MAX_STEPS) {
            step(&mut door, s);
            door.check();
        }
    }

    /// dom0 and one domU, both running.
    pub fn new() -> Self {
        Self { w: World::new() }
    }

    /// Whether vCPU 0 of `domid` could be running now (else the run loop
    /// would not let it make a hypercall).
    fn may_call(&self, domid: DomId) -> bool {
        self.w.t.get(domid).is_some_and(|d| d.vcpu_may_run(0))
    }

    /// A hypercall from vCPU 0 of `domid` with `regs`, continued as the
    /// guest would; its return value, or `None` if the vCPU cannot run or
    /// the call ended otherwise (block, yield, shutdown, ...).
    pub fn call(&mut self, domid: DomId, regs: HypercallRegs) -> Option<i64> {
        if !self.may_call(domid) {
            return None;
        }
        let long_mode = regs.long_mode;
        let mut out = self.w.call(domid, regs);
        for _ in 0..MAX_CONTINUATIONS {
            match out {
                HypercallOutcome::Return(v) => return Some(v),
                HypercallOutcome::Continue(c) if self.may_call(domid) => {
                    out = self.w.call(domid, continued(&c, long_mode));
                }
                _ => return None,
            }
        }
        None
    }

    /// A 64-bit hypercall.
    pub fn call64(&mut self, domid: DomId, nr: u64, args: [u64; 5]) -> Option<i64> {
        let regs = HypercallRegs {
            rax: nr,
            rdi: args[0],
            rsi: args[1],
            rdx: args[2],
            r10: args[3],
            r8: args[4],
            long_mode: true,
            ..HypercallRegs::default()
        };
        self.call(domid, regs)
    }

    /// A 64-bit hypercall `nr` with sub-op `cmd`, `arg` at [`BUF`] of the
    /// caller, `count` as the third argument.
    pub fn op<T: IntoBytes + Immutable + ?Sized>(
        &mut self,
        domid: DomId,
        nr: u64,
        cmd: u32,
        arg: &T,
        count: u64,
    ) -> Option<i64> {
        self.store(domid, BUF, arg.as_bytes());
        self.call64(domid, nr, [cmd.into(), BUF, count, 0, 0])
    }

    /// dom0 destroys the domU (continued to its end).
    pub fn destroy_domu(&mut self) -> Option<i64> {
        use abi::control::{DomainRequest, CONTROL_OP_DESTROY, HYPERVISOR_CONTROL_OP};
        let arg = DomainRequest::new(Who::DomU.domid());
        self.op(
            Who::Dom0.domid(),
            HYPERVISOR_CONTROL_OP,
            CONTROL_OP_DESTROY,
            &arg,
            0,
        )
    }

    /// A guest store into its own memory through its p2m (RAM, mapped
    /// grant frames, shared info, foreign frames); a store to a hole or a
    /// read-only page does nothing, as the NPT would refuse it.
    pub fn store(&mut self, domid: DomId, gpa: u64, bytes: &[u8]) {
        if self.w.t.get(domid).is_some() {
            let _ = self.w.phys(domid).write(gpa, bytes);
        }
    }

    /// Time moves on by `ns`: due one-shot timers fire (raising
    /// VIRQ_TIMER, as the run loop does) and due polls time out.
    pub fn tick(&mut self, ns: u32) {
        use abi::xen::event_channel::VIRQ_TIMER;
        self.w.env.tsc = self.w.env.tsc.saturating_add(ns.into());
        let now = self.w.env.tsc;
        let mem = &mut self.w.mem;
        xen_core::sched::fire_timers(&mut self.w.t, now, |d, vcpu| {
            xen_core::event::raise_virq(d, mem, VIRQ_TIMER, vcpu);
        });
        xen_core::event::expire_polls(&mut self.w.t, now);
    }

    /// Checks what must hold between any two hypercalls: every frame is
    /// either free or held by exactly the domains that account for it
    /// (the pool itself catches double frees).
    pub fn check(&self) {
        let held: u64 = self
            .w
            .t
            .iter()
            .map(|d| d.tot_pages() + d.p2m().table_frames() + 1)
            .sum();
        let free = xen_core::mm::FramePool::free_frames(&self.w.pool);
        assert!(
            free + held <= xen_core::hypercall::sim::TOTAL_FRAMES,
            "{free} free + {held} held frames exceed the machine"
        );
    }
}
