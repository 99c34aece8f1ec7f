//! Probes of memory and ports nobody gives this domain (unclaimed MMIO
//! such as the HPET or the IO-APIC, holes above RAM, ports such as COM1),
//! for guests that check what the hypervisor answers. Xen's answer is its
//! null handler: reads return all ones, writes are dropped; an access it
//! cannot emulate gets #GP. Each probe returns the exception instead of
//! crashing (see `trap`).

use abi::xen::{domid, hypercall as nr, memory, PAGE_SHIFT};

use super::hypercall::{addr_of_struct, call, Xen};
use super::phys::IdentityMap;
use super::trap::{Exception, ProbeResult};
use crate::error::{check, XenError};

extern "C" {
    fn shim_probe_read8(gpa: u64, rax_before: u64) -> ProbeResult;
    fn shim_probe_read16(gpa: u64, rax_before: u64) -> ProbeResult;
    fn shim_probe_read32(gpa: u64, rax_before: u64) -> ProbeResult;
    fn shim_probe_read64(gpa: u64, rax_before: u64) -> ProbeResult;
    fn shim_probe_movsx8(gpa: u64) -> ProbeResult;
    fn shim_probe_write32(gpa: u64, value: u32) -> ProbeResult;
    fn shim_probe_add32(gpa: u64, value: u32) -> ProbeResult;
    fn shim_probe_inw(port: u16, rax_before: u64) -> ProbeResult;
    fn shim_probe_inl(port: u16, rax_before: u64) -> ProbeResult;
    fn shim_probe_outb(port: u16, value: u8) -> ProbeResult;
    fn shim_probe_write(gpa: u64, value: u64) -> ProbeResult;
}

/// Pages at the top of RAM a RAM-hole probe may use: the shim's image,
/// stack and boot data sit at the bottom (from 1 MiB), never up there.
const TOP_PAGES: u64 = 16;
/// Bytes in a page.
const PAGE_BYTES: u64 = 1 << PAGE_SHIFT;

/// Why [`write_ram_hole`] did not try.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RamHoleError {
    /// `gpa` is not a page among the top [`TOP_PAGES`] of RAM.
    NotTopOfRam,
    /// A hypercall moving the shared-info page failed.
    Xen(XenError),
}

/// Makes the RAM page at `gpa` (page-aligned, among the top 16 pages
/// below `ram_end`) a hole in this domain's p2m, then writes to it. The
/// hole: `XENMEM_add_to_physmap` maps the shared-info page there (the
/// RAM frame is given back, as in Xen), then maps it back at the shim's
/// own frame, which leaves the GFN unmapped. As in Xen, the write goes
/// to the null handler and is dropped.
pub fn write_ram_hole(
    xen: &Xen,
    gpa: u64,
    ram_end: u64,
) -> Result<Result<(), Exception>, RamHoleError> {
    let top = ram_end.saturating_sub(TOP_PAGES * PAGE_BYTES);
    if !gpa.is_multiple_of(PAGE_BYTES)
        || gpa < top
        || gpa >= ram_end
        || !IdentityMap::covers(gpa, 8)
    {
        return Err(RamHoleError::NotTopOfRam);
    }
    let arg = memory::XenAddToPhysmap {
        domid: domid::DOMID_SELF,
        size: 0,
        space: memory::XENMAPSPACE_SHARED_INFO,
        idx: 0,
        gpfn: gpa >> PAGE_SHIFT,
    };
    let cmd = memory::XENMEM_ADD_TO_PHYSMAP.into();
    // SAFETY: Xen reads `arg`; the page it remaps is at the top of RAM,
    // where no object of this program lives.
    check(unsafe { call(nr::MEMORY_OP, [cmd, addr_of_struct(&arg), 0, 0, 0]) })
        .map_err(RamHoleError::Xen)?;
    xen.map_shared_info().map_err(RamHoleError::Xen)?;
    // SAFETY: as above: no object of this program lives there; a fault
    // resumes at the fixup.
    Ok(unsafe { shim_probe_write(gpa, 0x5a5a_5a5a) }
        .into_result()
        .map(|_| ()))
}

/// The address is below the end of RAM or outside the identity map: a
/// probe there could hit this program's own memory.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct NotBeyondRam;

/// How a read probe loads.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Load {
    /// `mov (gpa), %al` with RAX = `rax_before`.
    Byte,
    /// `mov (gpa), %ax`.
    Word,
    /// `mov (gpa), %eax` (zero-extends).
    Dword,
    /// `mov (gpa), %rax`.
    Qword,
    /// `movsbq (gpa), %rax`.
    SignExtendByte,
}

impl Load {
    fn bytes(self) -> u64 {
        match self {
            Load::Byte | Load::SignExtendByte => 1,
            Load::Word => 2,
            Load::Dword => 4,
            Load::Qword => 8,
        }
    }
}

/// Checks that `[gpa, gpa + len)` lies at or above `ram_end` and inside
/// the identity map, so that no Rust object lives there.
fn beyond_ram(gpa: u64, len: u64, ram_end: u64) -> Result<(), NotBeyondRam> {
    if gpa >= ram_end && IdentityMap::covers(gpa, len) {
        Ok(())
    } else {
        Err(NotBeyondRam)
    }
}

/// Loads from `gpa` (at or above `ram_end`) as `load` says, RAX holding
/// `rax_before` first; returns RAX after the load.
pub fn read(
    gpa: u64,
    ram_end: u64,
    load: Load,
    rax_before: u64,
) -> Result<Result<u64, Exception>, NotBeyondRam> {
    beyond_ram(gpa, load.bytes(), ram_end)?;
    // SAFETY: the address is identity-mapped and beyond all RAM the start
    // info reports, so it holds no object of this program; a load changes
    // only RAX; a fault resumes at the fixup.
    let result = unsafe {
        match load {
            Load::Byte => shim_probe_read8(gpa, rax_before),
            Load::Word => shim_probe_read16(gpa, rax_before),
            Load::Dword => shim_probe_read32(gpa, rax_before),
            Load::Qword => shim_probe_read64(gpa, rax_before),
            Load::SignExtendByte => shim_probe_movsx8(gpa),
        }
    };
    Ok(result.into_result())
}

/// Stores `value` at `gpa` (at or above `ram_end`), with a plain MOV or,
/// if `read_modify_write`, an ADD (which Xen would emulate and xen-core
/// does not).
pub fn write(
    gpa: u64,
    ram_end: u64,
    value: u32,
    read_modify_write: bool,
) -> Result<Result<(), Exception>, NotBeyondRam> {
    beyond_ram(gpa, 4, ram_end)?;
    // SAFETY: as in `read`: no object of this program lives there.
    let result = unsafe {
        if read_modify_write {
            shim_probe_add32(gpa, value)
        } else {
            shim_probe_write32(gpa, value)
        }
    };
    Ok(result.into_result().map(|_| ()))
}

/// IN of `size` bytes (2 or 4; 1 is `trap::probe_inb`) from `port`, RAX
/// holding `rax_before` first; returns RAX after it.
pub fn port_in(port: u16, size: u8, rax_before: u64) -> Result<u64, Exception> {
    // SAFETY: a port read touches no memory; a fault resumes at the fixup.
    let result = unsafe {
        if size == 2 {
            shim_probe_inw(port, rax_before)
        } else {
            shim_probe_inl(port, rax_before)
        }
    };
    result.into_result()
}

/// OUT of one byte to `port`.
pub fn port_out(port: u16, value: u8) -> Result<(), Exception> {
    // SAFETY: a port write touches no memory of this program; a fault
    // resumes at the fixup.
    unsafe { shim_probe_outb(port, value) }
        .into_result()
        .map(|_| ())
}
