//! Per-pCPU data and the descriptor tables each pCPU loads: GDT, TSS (with
//! the IST stacks for double fault, NMI and machine check) and the IDT.

use spin::Once;
use x86_64::instructions::segmentation::{Segment, CS, DS, ES, SS};
use x86_64::instructions::tables::load_tss;
use x86_64::registers::control::{Cr0, Cr0Flags, Cr4, Cr4Flags};
use x86_64::structures::gdt::{Descriptor, GlobalDescriptorTable, SegmentSelector};
use x86_64::structures::tss::TaskStateSegment;
use x86_64::VirtAddr;

use super::exceptions;

/// pCPUs xen-core supports: one per set of stacks.
pub const MAX_PCPUS: usize = crate::mm::stacks::STACK_PCPUS;
/// IST slot (0-based index into the TSS table) for double faults.
pub const IST_DOUBLE_FAULT: u16 = 0;
/// IST slot for NMIs.
pub const IST_NMI: u16 = 1;
/// IST slot for machine checks.
pub const IST_MACHINE_CHECK: u16 = 2;
const IST_SLOTS: usize = crate::mm::stacks::IST_SLOTS;
const _: () = assert!(MAX_PCPUS <= crate::mm::stacks::STACK_PCPUS);
// Sets of pCPUs are u64 bit masks: the machine lock's halted waiters,
// `after_section`'s kicks and shootdowns, the scheduler's `CpuMask`.
const _: () = assert!(MAX_PCPUS <= u64::BITS as usize);
// Every pCPU has a run queue.
const _: () = assert!(MAX_PCPUS <= crate::sched::MAX_SCHED_PCPUS as usize);

/// What belongs to one pCPU. SVM adds its host save area and the vCPU it
/// runs here.
pub struct PerCpu {
    /// Index of this pCPU (0 = the boot pCPU).
    pub index: usize,
    tss: TaskStateSegment,
}

struct Gdt {
    table: GlobalDescriptorTable,
    code: SegmentSelector,
    data: SegmentSelector,
    tss: SegmentSelector,
}

static PERCPU: [Once<PerCpu>; MAX_PCPUS] = [const { Once::new() }; MAX_PCPUS];
static GDT: [Once<Gdt>; MAX_PCPUS] = [const { Once::new() }; MAX_PCPUS];

/// Sets up and loads the boot pCPU's GDT, TSS and IDT.
pub fn init_boot_cpu() {
    init_this_cpu(0);
}

/// Sets up and loads this pCPU's GDT, TSS (its own IST stacks) and the
/// IDT; `index` is the pCPU whose stacks it runs on.
pub fn init_this_cpu(index: usize) {
    if index >= MAX_PCPUS || super::stacks::current_pcpu() != index {
        super::fatal::fatal(format_args!("cpu: pCPU {index} is not on its own stack"));
    }
    let percpu = PERCPU[index].call_once(|| PerCpu {
        index,
        tss: tss_for(index),
    });
    let gdt = GDT[index].call_once(|| {
        let mut table = GlobalDescriptorTable::new();
        let code = table.append(Descriptor::kernel_code_segment());
        let data = table.append(Descriptor::kernel_data_segment());
        let tss = table.append(Descriptor::tss_segment(&percpu.tss));
        Gdt {
            table,
            code,
            data,
            tss,
        }
    });
    gdt.table.load();
    // SAFETY: the selectors index the GDT just loaded, which lives in a
    // static; code is a 64-bit ring-0 segment, data a writable one, and the
    // TSS descriptor points at this pCPU's TSS (also static, never moved).
    unsafe {
        CS::set_reg(gdt.code);
        SS::set_reg(gdt.data);
        DS::set_reg(gdt.data);
        ES::set_reg(gdt.data);
        load_tss(gdt.tss);
    }
    exceptions::load_idt();
    enable_fxsave();
}

/// Lets xen-core switch the guests' x87/SSE state: FXSAVE/FXRSTOR cover
/// the XMM registers only with CR4.OSFXSR, and need CR0.EM and CR0.TS
/// clear (APM vol. 2, §11.4.4). xen-core itself runs no FPU/SSE code.
fn enable_fxsave() {
    // SAFETY: these bits only change how x87/SSE instructions behave,
    // and xen-core executes none but the guest-state switch.
    unsafe {
        Cr0::update(|f| {
            f.remove(Cr0Flags::EMULATE_COPROCESSOR | Cr0Flags::TASK_SWITCHED);
            f.insert(Cr0Flags::MONITOR_COPROCESSOR | Cr0Flags::NUMERIC_ERROR);
        });
        Cr4::update(|f| f.insert(Cr4Flags::OSFXSR | Cr4Flags::OSXMMEXCPT_ENABLE));
    }
}

/// This pCPU's data, found from the stack it runs on
/// ([`super::stacks::current_pcpu`]; not GS base: VMLOAD replaces it with
/// the guest's).
pub fn this_cpu() -> &'static PerCpu {
    match PERCPU[super::stacks::current_pcpu()].get() {
        Some(percpu) => percpu,
        None => super::fatal::fatal(format_args!("per-CPU data used before init_this_cpu")),
    }
}

fn tss_for(cpu: usize) -> TaskStateSegment {
    let mut tss = TaskStateSegment::new();
    // The TSS is packed: build the table, then store it whole.
    let mut table = tss.interrupt_stack_table;
    for (slot, entry) in table[..IST_SLOTS].iter_mut().enumerate() {
        // The stack grows down from its top, towards its guard page.
        *entry = VirtAddr::new(super::stacks::ist_top(cpu, slot));
    }
    tss.interrupt_stack_table = table;
    tss
}
