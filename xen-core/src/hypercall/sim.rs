//! A simulated machine for driving the hypercall door off the hardware:
//! two domains (dom0 and a domU "guest") with [`RAM_PAGES`] pages of RAM
//! at GFN 0 each, paging off (a pointer is its GPA below 4 GiB), over
//! [`crate::paging::sim`]'s frames. The host tests use it, and so do the
//! fuzz targets and the toolstack contract tests (feature `sim`), so that
//! all of them exercise the same [`handle_hypercall`] the run loop calls.

use alloc::string::String;
use alloc::vec;
use alloc::vec::Vec;

use abi::convert::usize_from_u64;
use abi::xen::domid::DomId;
use abi::xen::errno::Errno;
use zerocopy::{FromBytes, Immutable, IntoBytes};

use super::{handle_hypercall, Caller, HostFacts, HypercallEnv, HypercallOutcome, HypercallRegs};
use crate::domain::table::DomainTable;
use crate::domain::vcpu::VcpuEntryState;
use crate::domain::{Domain, DomainConfig, Privileges};
use crate::guest_mem::GuestPhys;
use crate::mm::{Gfn, PAGE_SIZE};
use crate::paging::guest_walk::GuestPaging;
use crate::paging::sim::{machine, SimPhys, SimPool};
use crate::time::{Clock, WallClock};
use crate::vmexit::Gpr;

/// dom0's domid.
pub const DOM0: DomId = 0;
/// The domU's domid.
pub const DOMU: DomId = 1;
/// Pages of RAM each domain has at GFN 0.
pub const RAM_PAGES: u64 = 32;
/// A GPA with no frame behind it.
pub const UNMAPPED: u64 = RAM_PAGES << 12;
/// One page per test structure.
pub const BUF: u64 = 0x4000;
/// A second structure page.
pub const BUF2: u64 = 0x8000;
/// 1 GHz: TSC ticks are ns; "now" is 1 ms.
pub const NOW: u64 = 1_000_000;
/// Frames of the simulated machine.
pub const TOTAL_FRAMES: u64 = 256;
/// CR4 bits the simulated guests' CPUID offers: VME through OSXMMEXCPT,
/// as QEMU's default CPU model.
pub const GUEST_CR4_VALID: u64 = 0x7ff;
/// pCPUs online in the simulated machine: more than the one that runs
/// domains (`nr_pcpus` 1), as on xen-core with idle APs.
pub const SIM_ONLINE_PCPUS: u32 = 4;
/// Most times [`World::finish`] calls a continued hypercall again.
const MAX_CONTINUATIONS: usize = 100_000;

/// What lies outside portable code, recorded: console lines written,
/// console input offered, a fixed TSC.
pub struct SimEnv {
    /// The hypervisor clock (1 GHz TSC).
    pub clock: Clock,
    /// The TSC the hypercalls read.
    pub tsc: u64,
    /// Console lines printed: domid, domain name, line.
    pub lines: Vec<(DomId, String, String)>,
    /// Console input `CONSOLEIO_read` takes from.
    pub input: Vec<u8>,
    /// Frames of the machine, for `CONTROL_OP_PHYSINFO`.
    pub total_frames: u64,
}

impl HypercallEnv for SimEnv {
    fn clock(&self) -> &Clock {
        &self.clock
    }
    fn tsc(&self) -> u64 {
        self.tsc
    }
    fn console_write(&mut self, domid: DomId, name: &str, line: &[u8]) {
        // The door promises printable ASCII: anything else fails here.
        let line = String::from_utf8(line.to_vec()).expect("console line is not ASCII");
        self.lines.push((domid, name.into(), line));
    }
    fn console_read(&mut self, buf: &mut [u8]) -> usize {
        let n = buf
            .iter_mut()
            .zip(&self.input)
            .map(|(b, &i)| *b = i)
            .count();
        self.input.drain(..n);
        n
    }
    fn host(&self) -> HostFacts {
        HostFacts {
            nr_pcpus: 1,
            total_frames: self.total_frames,
            guest_cr4_valid: GUEST_CR4_VALID,
        }
    }
    fn online_pcpus(&self) -> u32 {
        SIM_ONLINE_PCPUS
    }
    fn read_log(&self, offset: u64, buf: &mut [u8]) -> (usize, u64) {
        let log = b"xen-core: test log\n";
        let n = crate::logger::copy_log(log, &[], offset, buf);
        (n, log.len() as u64)
    }
}

/// The domain table, the frames and the environment of one simulated
/// machine.
pub struct World {
    /// The domains.
    pub t: DomainTable,
    /// The free frames.
    pub pool: SimPool,
    /// The frames' contents.
    pub mem: SimPhys,
    /// What lies outside portable code.
    pub env: SimEnv,
}

/// The value a hypercall returns for `errno`.
pub fn e(errno: Errno) -> i64 {
    errno.to_return()
}

impl Default for World {
    fn default() -> Self {
        Self::new()
    }
}

impl World {
    /// dom0 and the domU, both running vCPU 0 of 2, each with
    /// [`RAM_PAGES`] pages (limit 64), on a machine of [`TOTAL_FRAMES`].
    pub fn new() -> Self {
        Self::with_frames(TOTAL_FRAMES)
    }

    /// As [`World::new`], on a machine of `total_frames` frames (room
    /// for domains the toolstack builds).
    pub fn with_frames(total_frames: u64) -> Self {
        Self::build(total_frames, Privileges::NONE)
    }

    /// As [`World::with_frames`], with the domU a control domain (Xen's
    /// control domain that is not the hardware domain).
    pub fn with_control_domu(total_frames: u64) -> Self {
        Self::build(total_frames, Privileges::CONTROL)
    }

    fn build(total_frames: u64, domu: Privileges) -> Self {
        let (mut pool, mut mem) = machine(total_frames);
        let mut t = DomainTable::new();
        for name in ["dom0", "guest"] {
            let cfg = DomainConfig {
                name,
                max_pages: 64,
                vcpus: 2,
            };
            let id = if name == "dom0" {
                t.create_dom0(&cfg, &mut pool, &mut mem)
            } else {
                t.create_domu_with(&cfg, domu, &mut pool, &mut mem)
            }
            .unwrap();
            let d = t.get_mut(id).unwrap();
            d.populate(&mut pool, &mut mem, Gfn(0), RAM_PAGES).unwrap();
            d.vcpu_mut(0).unwrap().start(VcpuEntryState::default());
            d.unpause().unwrap();
        }
        let wc = WallClock {
            sec: 1_700_000_000,
            nsec: 250,
        };
        let env = SimEnv {
            clock: Clock::new(1_000_000_000, 0, wc).unwrap(),
            tsc: NOW,
            lines: Vec::new(),
            input: Vec::new(),
            total_frames,
        };
        Self { t, pool, mem, env }
    }

    /// One trip through the door from vCPU 0 of `domid`, paging off.
    pub fn call(&mut self, domid: DomId, regs: HypercallRegs) -> HypercallOutcome {
        let caller = Caller {
            domid,
            vcpu_id: 0,
            paging: GuestPaging::default(),
        };
        handle_hypercall(
            &mut self.t,
            &mut self.pool,
            &mut self.mem,
            &mut self.env,
            &caller,
            &regs,
        )
    }

    /// A 64-bit caller: RAX, RDI, RSI, RDX, R10, R8.
    pub fn call64(&mut self, domid: DomId, nr: u64, a: [u64; 5]) -> HypercallOutcome {
        let regs = HypercallRegs {
            rax: nr,
            rdi: a[0],
            rsi: a[1],
            rdx: a[2],
            r10: a[3],
            r8: a[4],
            long_mode: true,
            ..HypercallRegs::default()
        };
        self.call(domid, regs)
    }

    /// A 32-bit caller: EAX, EBX, ECX, EDX, ESI, EDI, with junk in the
    /// upper halves that must be ignored.
    pub fn call32(&mut self, domid: DomId, nr: u32, a: [u32; 5]) -> HypercallOutcome {
        let junk = |v: u32| 0xdead_beef_0000_0000 | u64::from(v);
        let regs = HypercallRegs {
            rax: junk(nr),
            rbx: junk(a[0]),
            rcx: junk(a[1]),
            rdx: junk(a[2]),
            rsi: junk(a[3]),
            rdi: junk(a[4]),
            r8: u64::MAX,
            r10: u64::MAX,
            long_mode: false,
            cpl: 0,
        };
        self.call(domid, regs)
    }

    /// A 64-bit call, continued to its end: the value it returns.
    pub fn ret(&mut self, domid: DomId, nr: u64, a: [u64; 5]) -> i64 {
        let out = self.call64(domid, nr, a);
        self.finish(domid, out, true)
    }

    /// A 32-bit call, continued to its end: the value it returns.
    pub fn ret32(&mut self, domid: DomId, nr: u32, a: [u32; 5]) -> i64 {
        let out = self.call32(domid, nr, a);
        self.finish(domid, out, false)
    }

    /// Calls again as the guest would while the hypervisor continues the
    /// hypercall; the final return value. Panics on any other outcome.
    pub fn finish(&mut self, domid: DomId, out: HypercallOutcome, long_mode: bool) -> i64 {
        match self.follow(domid, out, long_mode).0 {
            HypercallOutcome::Return(v) => v,
            other => panic!("expected a return value, got {other:?}"),
        }
    }

    /// Calls again as the guest would while the hypercall continues (it
    /// re-executes the VMMCALL with the registers the hypervisor set):
    /// the first outcome that is not a continuation, and the number of
    /// calls it took (the one that gave `out` included).
    pub fn follow(
        &mut self,
        domid: DomId,
        mut out: HypercallOutcome,
        long_mode: bool,
    ) -> (HypercallOutcome, usize) {
        for calls in 1..=MAX_CONTINUATIONS {
            match out {
                HypercallOutcome::Continue(c) => {
                    out = self.call(domid, continued(&c, long_mode));
                }
                other => return (other, calls),
            }
        }
        panic!("the hypercall never finished")
    }

    /// `domid`'s guest physical memory.
    pub fn phys(&mut self, domid: DomId) -> GuestPhys<'_, SimPhys> {
        GuestPhys::new(self.t.get(domid).unwrap().p2m(), &mut self.mem)
    }

    /// Writes `v` at `gpa` of `domid`.
    pub fn put<T: IntoBytes + Immutable + ?Sized>(&mut self, domid: DomId, gpa: u64, v: &T) {
        self.phys(domid).write(gpa, v.as_bytes()).unwrap();
    }

    /// Reads a `T` at `gpa` of `domid`.
    pub fn get<T: FromBytes + IntoBytes>(&mut self, domid: DomId, gpa: u64) -> T {
        let mut v = T::new_zeroed();
        self.phys(domid).read(gpa, v.as_mut_bytes()).unwrap();
        v
    }

    /// `len` bytes at `gpa` of `domid`.
    pub fn bytes(&mut self, domid: DomId, gpa: u64, len: usize) -> Vec<u8> {
        let mut b = vec![0; len];
        self.phys(domid).read(gpa, &mut b).unwrap();
        b
    }

    /// All of a domain's RAM, to check that nothing changed.
    pub fn ram(&mut self, domid: DomId) -> Vec<u8> {
        self.bytes(domid, 0, usize_from_u64(RAM_PAGES) * PAGE_SIZE)
    }

    /// The domain `domid`.
    pub fn domain(&self, domid: DomId) -> &Domain {
        self.t.get(domid).unwrap()
    }
}

/// The registers a guest calls with again after `c`.
pub fn continued(c: &super::Continuation, long_mode: bool) -> HypercallRegs {
    let mut regs = HypercallRegs {
        long_mode,
        ..HypercallRegs::default()
    };
    for (reg, value) in c.registers() {
        *match reg {
            Gpr::Rax => &mut regs.rax,
            Gpr::Rbx => &mut regs.rbx,
            Gpr::Rcx => &mut regs.rcx,
            Gpr::Rdx => &mut regs.rdx,
            Gpr::Rsi => &mut regs.rsi,
            Gpr::Rdi => &mut regs.rdi,
            Gpr::R8 => &mut regs.r8,
            Gpr::R10 => &mut regs.r10,
            other => panic!("continuation sets {other:?}"),
        } = value;
    }
    regs
}
