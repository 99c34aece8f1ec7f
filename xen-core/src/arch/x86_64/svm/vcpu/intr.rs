//! Offering a vCPU its virtual interrupt at each VMRUN (APM vol. 2,
//! §15.21.4): the event-channel upcall vector first (Xen's callback
//! vector comes before the local APIC in `hvm_vcpu_has_pending_irq`),
//! else the local APIC's highest deliverable vector. The guest's TPR
//! rides in V_TPR, so its CR8 writes need no exit; they are copied back
//! into the APIC after each run (as Xen's SVM code does).

use super::SvmVcpu;
use crate::vmexit::event::V_IRQ;
use crate::vmexit::VcpuEnv;

/// int_ctl bits 3:0: the guest's task priority (CR8).
const V_TPR_MASK: u32 = 0xf;

/// Which source's vector is in V_IRQ.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Offered {
    /// The event-channel upcall: level-triggered, taken once per run.
    Upcall,
    /// The local APIC's vector: moved to ISR once taken.
    Apic(u8),
}

impl SvmVcpu {
    /// Sets V_IRQ and V_TPR for the next VMRUN; `upcall` is the upcall
    /// vector if the guest has not taken it in this run yet.
    pub(super) fn offer_interrupt(&mut self, upcall: Option<u8>, env: &mut impl VcpuEnv) {
        let apic = env.vlapic_in_use();
        let tpr = apic.as_ref().map_or(0, |a| a.tpr());
        let apic_vector = apic.and_then(|a| a.pending_vector());
        self.offered = match (upcall, apic_vector) {
            (Some(v), _) => {
                self.set_virtual_interrupt(v);
                Some(Offered::Upcall)
            }
            (None, Some(v)) => {
                self.set_virtual_interrupt(v);
                Some(Offered::Apic(v))
            }
            (None, None) => {
                self.clear_virtual_interrupt();
                None
            }
        };
        let control = &mut self.vmcb_mut().control;
        control.int_ctl = (control.int_ctl & !V_TPR_MASK) | ((tpr >> 4) & V_TPR_MASK);
    }

    /// After a VMRUN: acknowledges an APIC vector the guest took (IRR to
    /// ISR), copies V_TPR back into the APIC. Returns the source whose
    /// vector the guest took, if any.
    pub(super) fn interrupt_taken(&mut self, env: &mut impl VcpuEnv) -> Option<Offered> {
        let int_ctl = self.vmcb().control.int_ctl;
        let taken = self.offered.take().filter(|_| int_ctl & V_IRQ == 0);
        let v_tpr = (int_ctl & V_TPR_MASK) as u8;
        // A CR8 write is a use of the APIC.
        let apic = if v_tpr != 0 {
            env.vlapic()
        } else {
            env.vlapic_in_use()
        };
        if let Some(apic) = apic {
            if let Some(Offered::Apic(vector)) = taken {
                apic.ack(vector);
            }
            if u32::from(v_tpr) != apic.tpr() >> 4 {
                apic.set_cr8(v_tpr);
            }
        }
        taken
    }
}
