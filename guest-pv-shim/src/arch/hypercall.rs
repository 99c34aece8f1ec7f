//! Hypercalls the way Xen guests make them: find Xen through CPUID, give
//! it a page to fill with call stubs (the MSR of CPUID leaf base+2), then
//! `call hypercall_page + nr * 32`. x86_64 ABI: RAX = number, arguments in
//! RDI, RSI, RDX, R10, R8, result in RAX (negative errno on failure).
//! Pointers passed are GVAs; the boot identity map makes them equal GPAs.

use core::arch::asm;
use core::cell::UnsafeCell;
use core::sync::atomic::{AtomicBool, Ordering};

use abi::convert::usize_from_u64;
use abi::xen::{console_io, domid, hvm, hypercall as nr, memory, sched, vcpu, version};
use zerocopy::IntoBytes;

use crate::cpuid::XenCpuid;
use crate::error::{check, XenError};

/// Size of one stub in the hypercall page (Xen fills `nr * 32`).
const STUB_SIZE: u64 = 32;
/// Stubs in the one-page hypercall page.
const PAGE_STUBS: u64 = abi::xen::PAGE_SIZE as u64 / STUB_SIZE;

/// A page-aligned frame of this image, handed to the hypervisor.
#[repr(C, align(4096))]
pub(super) struct Frame(UnsafeCell<[u8; abi::xen::PAGE_SIZE]>);

// SAFETY: Rust code never forms references to a Frame's contents; the
// hypervisor writes it and the shim only reads it with volatile reads.
unsafe impl Sync for Frame {}

impl Frame {
    pub(super) const fn new() -> Self {
        Frame(UnsafeCell::new([0; abi::xen::PAGE_SIZE]))
    }

    /// GPA (= GVA under the identity map) of the frame.
    pub(super) fn gpa(&self) -> u64 {
        self.0.get() as u64
    }
}

static HYPERCALL_PAGE: Frame = Frame::new();
static PAGE_INSTALLED: AtomicBool = AtomicBool::new(false);

/// Why Xen could not be used.
#[derive(Clone, Copy, Debug)]
pub enum DiscoveryError {
    /// No "XenVMMXenVMM" CPUID signature: not running under Xen.
    NotXen,
    /// Xen did not fill the hypercall page after the MSR write.
    PageNotFilled,
}

/// Proof that Xen was found and the hypercall page installed; the typed
/// hypercalls are its methods.
#[derive(Clone, Copy)]
pub struct Xen {
    cpuid: XenCpuid,
}

/// A `SCHEDOP_shutdown` reason: Xen's `SHUTDOWN_*`, defined once in `abi`.
pub use abi::xen::sched::ShutdownReason;

impl Xen {
    /// Finds Xen's CPUID leaves and installs the hypercall page.
    pub(super) fn discover() -> Result<Xen, DiscoveryError> {
        let cpuid = crate::cpuid::find_xen(super::cpu::cpuid).ok_or(DiscoveryError::NotXen)?;
        let gpa = HYPERCALL_PAGE.gpa();
        // SAFETY: the MSR is the one Xen's CPUID leaf base+2 names for the
        // hypercall page; the value is the GPA of a page-aligned frame of
        // this image (page index 0 in bits 11:0) that nothing else uses.
        unsafe {
            asm!("wrmsr", in("ecx") cpuid.hypercall_msr, in("eax") (gpa & 0xffff_ffff) as u32,
                 in("edx") (gpa >> 32) as u32, options(nostack));
        }
        // SAFETY: the frame is ours and mapped; a volatile read of its first
        // byte sees what the hypervisor wrote (a stub starts with MOV, 0xb8).
        let first = unsafe { core::ptr::read_volatile(gpa as *const u8) };
        if first == 0 {
            return Err(DiscoveryError::PageNotFilled);
        }
        PAGE_INSTALLED.store(true, Ordering::Release);
        Ok(Xen { cpuid })
    }

    /// What CPUID told about Xen.
    pub fn cpuid(&self) -> &XenCpuid {
        &self.cpuid
    }

    /// GPA of the hypercall page the shim installed.
    pub fn hypercall_page_gpa(&self) -> u64 {
        HYPERCALL_PAGE.gpa()
    }

    /// `XENVER_version`: `(major, minor)`.
    pub fn version(&self) -> Result<(u16, u16), XenError> {
        // SAFETY: XENVER_version takes no buffer.
        let word = check(unsafe {
            call(
                nr::XEN_VERSION,
                [version::XENVER_VERSION.into(), 0, 0, 0, 0],
            )
        })?;
        Ok((((word >> 16) & 0xffff) as u16, (word & 0xffff) as u16))
    }

    /// `XENVER_extraversion`: the NUL-padded version suffix.
    pub fn extraversion(&self) -> Result<version::XenExtraversion, XenError> {
        let mut extra: version::XenExtraversion = [0; version::XEN_EXTRAVERSION_LEN];
        let buf = extra.as_mut_ptr() as u64;
        // SAFETY: Xen writes XEN_EXTRAVERSION_LEN bytes to `buf`, a live
        // local array of that size.
        check(unsafe {
            call(
                nr::XEN_VERSION,
                [version::XENVER_EXTRAVERSION.into(), buf, 0, 0, 0],
            )
        })?;
        Ok(extra)
    }

    /// `CONSOLEIO_write` of `bytes` to the hypervisor console.
    pub fn console_write(&self, bytes: &[u8]) -> Result<(), XenError> {
        self.console_write_gva(bytes.as_ptr() as u64, bytes.len() as u64)
    }

    /// `CONSOLEIO_write` of `len` bytes at any GVA, valid or not (for
    /// checks of the hypervisor's validation). Xen only reads the buffer.
    pub fn console_write_gva(&self, gva: u64, len: u64) -> Result<(), XenError> {
        let cmd = console_io::CONSOLEIO_WRITE.into();
        // SAFETY: CONSOLEIO_write only reads guest memory; whatever the
        // address, no memory of this program is written.
        check(unsafe { call(nr::CONSOLE_IO, [cmd, len, gva, 0, 0]) }).map(|_| ())
    }

    /// `CONSOLEIO_read` into `buf` (dom0 only): bytes read.
    pub fn console_read(&self, buf: &mut [u8]) -> Result<usize, XenError> {
        let (cmd, len, gva) = (
            console_io::CONSOLEIO_READ.into(),
            buf.len() as u64,
            buf.as_mut_ptr() as u64,
        );
        // SAFETY: Xen writes at most `len` bytes to `buf`, a live mutable slice.
        check(unsafe { call(nr::CONSOLE_IO, [cmd, len, gva, 0, 0]) }).map(usize_from_u64)
    }

    /// `SCHEDOP_yield`: let other vCPUs run; this one stays runnable.
    pub fn sched_yield(&self) -> Result<(), XenError> {
        // SAFETY: SCHEDOP_yield takes no buffer.
        check(unsafe { call(nr::SCHED_OP, [sched::SCHEDOP_YIELD.into(), 0, 0, 0, 0]) }).map(|_| ())
    }

    /// `SCHEDOP_block`: sleep until an event (e.g. a timer) is pending.
    pub fn sched_block(&self) -> Result<(), XenError> {
        // SAFETY: SCHEDOP_block takes no buffer.
        check(unsafe { call(nr::SCHED_OP, [sched::SCHEDOP_BLOCK.into(), 0, 0, 0, 0]) }).map(|_| ())
    }

    /// `SCHEDOP_shutdown`: stop this domain. Should the hypervisor return,
    /// the vCPU halts for good.
    pub fn shutdown(&self, reason: ShutdownReason) -> ! {
        shutdown_raw(reason);
        loop {
            super::cpu::halt();
        }
    }

    /// `SCHEDOP_remote_shutdown` (dom0 only, `-EPERM` otherwise): shuts
    /// `domid` down with Xen `SHUTDOWN_*` code `reason` (`-ESRCH`: no such
    /// domain, `-EINVAL`: bad reason).
    pub fn remote_shutdown(&self, domid: domid::DomId, reason: u32) -> Result<(), XenError> {
        let arg = sched::SchedRemoteShutdown {
            domain_id: domid,
            pad0: 0,
            reason,
        };
        let cmd = sched::SCHEDOP_REMOTE_SHUTDOWN.into();
        // SAFETY: Xen reads `arg`, a live local.
        check(unsafe { call(nr::SCHED_OP, [cmd, addr_of_struct(&arg), 0, 0, 0]) }).map(|_| ())
    }

    /// `set_timer_op`: one-shot timer at absolute system time `deadline_ns`.
    pub fn set_timer_op(&self, deadline_ns: u64) -> Result<(), XenError> {
        // SAFETY: set_timer_op takes no pointer.
        check(unsafe { call(nr::SET_TIMER_OP, [deadline_ns, 0, 0, 0, 0]) }).map(|_| ())
    }

    /// `VCPUOP_set_singleshot_timer` on `vcpu` at system time `deadline_ns`.
    pub fn vcpu_set_singleshot_timer(
        &self,
        vcpu: u32,
        deadline_ns: u64,
        flags: u32,
    ) -> Result<(), XenError> {
        let arg = vcpu::VcpuSetSingleshotTimer {
            timeout_abs_ns: deadline_ns,
            flags,
            pad0: 0,
        };
        let cmd = vcpu::VCPUOP_SET_SINGLESHOT_TIMER.into();
        // SAFETY: Xen reads the struct at the address of the live local `arg`.
        check(unsafe { call(nr::VCPU_OP, [cmd, vcpu.into(), addr_of_struct(&arg), 0, 0]) })
            .map(|_| ())
    }

    /// `VCPUOP_stop_singleshot_timer` on `vcpu`.
    pub fn vcpu_stop_singleshot_timer(&self, vcpu: u32) -> Result<(), XenError> {
        let cmd = vcpu::VCPUOP_STOP_SINGLESHOT_TIMER.into();
        // SAFETY: the sub-op takes no buffer.
        check(unsafe { call(nr::VCPU_OP, [cmd, vcpu.into(), 0, 0, 0]) }).map(|_| ())
    }

    /// `VCPUOP_register_vcpu_info`: move `vcpu`'s vcpu_info to `gfn`:`offset`.
    /// Only for the shim's own frames (see `shared_info.rs`).
    pub(super) fn vcpu_register_vcpu_info(
        &self,
        vcpu: u32,
        frame: &'static Frame,
        offset: u32,
    ) -> Result<(), XenError> {
        let arg = vcpu::VcpuRegisterVcpuInfo {
            mfn: frame.gpa() >> abi::xen::PAGE_SHIFT,
            offset,
            rsvd: 0,
        };
        let cmd = vcpu::VCPUOP_REGISTER_VCPU_INFO.into();
        // SAFETY: Xen reads `arg`; it then writes vcpu_info into `frame`, a
        // static frame Rust only reads with volatile reads.
        check(unsafe { call(nr::VCPU_OP, [cmd, vcpu.into(), addr_of_struct(&arg), 0, 0]) })
            .map(|_| ())
    }

    /// `XENMEM_add_to_physmap` of the shared-info page at `frame`'s GFN.
    pub(super) fn add_shared_info_to_physmap(&self, frame: &'static Frame) -> Result<(), XenError> {
        self.add_to_physmap(memory::XENMAPSPACE_SHARED_INFO, 0, frame)
    }

    /// `XENMEM_add_to_physmap` of page `idx` of `space` at `frame`'s GFN.
    pub(super) fn add_to_physmap(
        &self,
        space: u32,
        idx: u64,
        frame: &'static Frame,
    ) -> Result<(), XenError> {
        let arg = memory::XenAddToPhysmap {
            domid: domid::DOMID_SELF,
            size: 0,
            space,
            idx,
            gpfn: frame.gpa() >> abi::xen::PAGE_SHIFT,
        };
        // SAFETY: Xen reads `arg`; the GFN it remaps is a static frame Rust
        // only reaches through volatile reads or atomics.
        check(unsafe {
            call(
                nr::MEMORY_OP,
                [
                    memory::XENMEM_ADD_TO_PHYSMAP.into(),
                    addr_of_struct(&arg),
                    0,
                    0,
                    0,
                ],
            )
        })
        .map(|_| ())
    }

    /// `XENMEM_memory_map`: this domain's E820 map into `buf`; entries written.
    pub fn memory_map(&self, buf: &mut [memory::E820Entry]) -> Result<usize, XenError> {
        let nr_entries = u32::try_from(buf.len()).unwrap_or(u32::MAX);
        let mut arg = memory::XenMemoryMap {
            nr_entries,
            pad0: 0,
            buffer: buf.as_mut_ptr() as u64,
        };
        let argp = arg.as_mut_bytes().as_mut_ptr() as u64;
        // SAFETY: Xen updates `arg` (live local) and writes at most
        // `nr_entries` entries into `buf`, a live mutable slice that long.
        check(unsafe {
            call(
                nr::MEMORY_OP,
                [memory::XENMEM_MEMORY_MAP.into(), argp, 0, 0, 0],
            )
        })?;
        Ok((arg.nr_entries as usize).min(buf.len()))
    }

    /// `XENMEM_set_memory_map`: the E820 map `domid` gets from
    /// `XENMEM_memory_map` (dom0 only).
    pub fn set_memory_map_of(
        &self,
        domid: domid::DomId,
        map: &[memory::E820Entry],
    ) -> Result<(), XenError> {
        let arg = memory::XenForeignMemoryMap {
            domid,
            pad0: [0; 6],
            map: memory::XenMemoryMap {
                nr_entries: u32::try_from(map.len()).unwrap_or(u32::MAX),
                pad0: 0,
                buffer: map.as_ptr() as u64,
            },
        };
        let argp = addr_of_struct(&arg);
        // SAFETY: Xen reads `arg` and `map`, live for the call, and
        // writes nothing.
        check(unsafe {
            call(
                nr::MEMORY_OP,
                [memory::XENMEM_SET_MEMORY_MAP.into(), argp, 0, 0, 0],
            )
        })
        .map(|_| ())
    }

    /// `HVMOP_get_param` of this domain; an unset parameter reads as 0.
    pub fn hvm_get_param(&self, index: u32) -> Result<u64, XenError> {
        self.hvm_get_param_of(domid::DOMID_SELF, index)
    }

    /// `HVMOP_set_param` of this domain.
    pub fn hvm_set_param(&self, index: u32, value: u64) -> Result<(), XenError> {
        let arg = hvm::XenHvmParam {
            domid: domid::DOMID_SELF,
            pad: 0,
            index,
            value,
        };
        // SAFETY: Xen reads `arg`, a live local.
        check(unsafe {
            call(
                nr::HVM_OP,
                [hvm::HVMOP_SET_PARAM.into(), addr_of_struct(&arg), 0, 0, 0],
            )
        })
        .map(|_| ())
    }

    /// Hypercall `number` with all arguments 0, through the hypercall page
    /// if it has a stub for it, else through a bare VMMCALL (for checks of
    /// the hypervisor's dispatch: expect -ENOSYS for unknown numbers).
    /// Zero arguments name no buffer, so nothing of this program is written.
    pub fn hypercall_without_args(&self, number: u64) -> Result<u64, XenError> {
        if number < PAGE_STUBS {
            // SAFETY: as the doc says: no argument names memory.
            check(unsafe { call(number, [0; 5]) })
        } else {
            // SAFETY: as above.
            check(unsafe { vmmcall(number, [0; 5]) })
        }
    }
}

/// `SCHEDOP_shutdown` without a [`Xen`] handle (crash paths); returns only
/// if the page is not installed or the hypervisor refused.
pub(super) fn shutdown_raw(reason: ShutdownReason) {
    let arg = sched::SchedShutdown {
        reason: reason.code(),
    };
    // SAFETY: Xen reads `arg`, a live local.
    let _ = unsafe {
        call(
            nr::SCHED_OP,
            [
                sched::SCHEDOP_SHUTDOWN.into(),
                addr_of_struct(&arg),
                0,
                0,
                0,
            ],
        )
    };
}

/// `CONSOLEIO_write` without a [`Xen`] handle (for `print!`); false if
/// the hypercall page is not installed.
pub(super) fn console_write_raw(bytes: &[u8]) -> bool {
    if !PAGE_INSTALLED.load(Ordering::Acquire) {
        return false;
    }
    let args = [
        console_io::CONSOLEIO_WRITE.into(),
        bytes.len() as u64,
        bytes.as_ptr() as u64,
        0,
        0,
    ];
    // SAFETY: CONSOLEIO_write only reads `bytes`, a live slice.
    let _ = unsafe { call(nr::CONSOLE_IO, args) };
    true
}

/// Whether the hypercall page is installed (Xen found).
pub(super) fn installed() -> bool {
    PAGE_INSTALLED.load(Ordering::Acquire)
}

pub(super) fn addr_of_struct<T>(value: &T) -> u64 {
    value as *const T as u64
}

/// Calls hypercall `number` through its stub in the hypercall page;
/// -ENOSYS without calling if the page is not installed or has no stub.
///
/// # Safety
/// Every argument that names guest memory must be valid for what the
/// hypercall does with it (Xen may write through such pointers).
pub(super) unsafe fn call(number: u64, args: [u64; 5]) -> i64 {
    if !PAGE_INSTALLED.load(Ordering::Acquire) || number >= PAGE_STUBS {
        return abi::xen::errno::Errno::ENOSYS.to_return();
    }
    let stub = HYPERCALL_PAGE.gpa() + number * STUB_SIZE;
    let ret: i64;
    // SAFETY: the stub is Xen's `mov $number, %eax; vmmcall; ret`; it uses
    // the stack for the return address only. Xen may clobber the argument
    // registers (debug builds do), which are declared clobbered; the
    // caller vouches for the pointers.
    unsafe {
        asm!("call rax",
             inlateout("rax") stub => ret,
             inlateout("rdi") args[0] => _, inlateout("rsi") args[1] => _,
             inlateout("rdx") args[2] => _, inlateout("r10") args[3] => _,
             inlateout("r8") args[4] => _,
             clobber_abi("C"));
    }
    ret
}

/// Hypercall `number` through a bare VMMCALL (AMD SVM), bypassing the page.
///
/// # Safety
/// As for [`call`].
unsafe fn vmmcall(number: u64, args: [u64; 5]) -> i64 {
    let ret: i64;
    // SAFETY: VMMCALL exits to the hypervisor (Xen was found, so it is
    // there to take it); registers as for `call`.
    unsafe {
        asm!("vmmcall",
             inlateout("rax") number => ret,
             inlateout("rdi") args[0] => _, inlateout("rsi") args[1] => _,
             inlateout("rdx") args[2] => _, inlateout("r10") args[3] => _,
             inlateout("r8") args[4] => _,
             clobber_abi("C"));
    }
    ret
}
