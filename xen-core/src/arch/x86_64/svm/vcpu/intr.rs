//! Offering a vCPU its virtual interrupt at each VMRUN (APM vol. 2,
//! §15.21.4): an NMI that waits first (Xen's `hvm_vcpu_has_pending_irq`
//! puts `nmi_pending` before everything), then the event-channel upcall
//! vector (Xen's callback vector comes before the local APIC), else the
//! local APIC's highest deliverable vector. The guest's TPR rides in
//! V_TPR, so its CR8 writes need no exit; they are copied back into the
//! APIC after each run (as Xen's SVM code does).
//!
//! An NMI goes in through EVENTINJ, and later ones are held back until
//! the guest's IRET ends its handler (`NmiMask`, Xen's
//! `svm_inject_nmi` and `VMEXIT_IRET`); one held by an interrupt shadow
//! or a pending event waits for an interrupt window (a dummy V_IRQ with
//! VINTR intercepted, Xen's `svm_enable_intr_window`).

use super::super::vmcb::misc1;
use super::SvmVcpu;
use crate::vmexit::event::{self, Event, NmiEntry, V_IRQ};
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
        let nmi = self.offer_nmi(env);
        let apic = env.vlapic_in_use();
        let tpr = apic.as_ref().map_or(0, |a| a.tpr());
        let apic_vector = apic.and_then(|a| a.pending_vector());
        self.offered = match (upcall, apic_vector) {
            // Nothing maskable goes with an NMI (Xen acks one source per
            // entry); the NMI's own exits bring the rest.
            _ if nmi.is_some() => None,
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

    /// Injects a waiting NMI if NMIs are unmasked and nothing holds it,
    /// or asks for the exit that will let it in; sets the IRET and VINTR
    /// intercepts to match. What it did, if an NMI waits.
    fn offer_nmi(&mut self, env: &mut impl VcpuEnv) -> Option<NmiEntry> {
        let control = &self.vmcb().control;
        let shadow = control.interrupt_shadow & 1 != 0;
        let event_pending = Event::decode_exit_int_info(control.event_inj).is_some();
        let nmi = self.nmi.entry(env.nmi_pending(), shadow, event_pending);
        match nmi {
            Some(NmiEntry::Inject) => {
                env.ack_nmi();
                self.inject(Event::nmi());
                self.clear_virtual_interrupt();
            }
            Some(NmiEntry::Window) => {
                let (int_ctl, int_vector) = event::interrupt_window();
                let control = &mut self.vmcb_mut().control;
                control.int_ctl = int_ctl;
                control.int_vector = int_vector;
            }
            Some(NmiEntry::Masked) => self.clear_virtual_interrupt(),
            None => {}
        }
        let mut intercepts = self.vmcb().control.intercept_misc1 & !(misc1::IRET | misc1::VINTR);
        if self.nmi.masked() {
            intercepts |= misc1::IRET;
        }
        if nmi == Some(NmiEntry::Window) {
            intercepts |= misc1::VINTR;
        }
        self.vmcb_mut().control.intercept_misc1 = intercepts;
        nmi
    }

    /// The guest's IRET exited while an NMI was in service (Xen's
    /// `VMEXIT_IRET`): NMIs are unmasked, and the interrupt shadow keeps
    /// the next one out until the IRET, which runs on resume, retired.
    pub(super) fn nmi_iret(&mut self) {
        self.nmi.iret();
        self.vmcb_mut().control.interrupt_shadow |= 1;
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
