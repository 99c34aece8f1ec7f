//! Events injected into a guest: the EVENTINJ / EXITINTINFO format, the
//! V_IRQ fields of the VMCB's int_ctl, and the virtual NMI mask SVM
//! does not keep ([`NmiMask`]).
//!
//! Source: AMD64 APM vol. 2, §15.20 (event injection: bits 7:0 vector,
//! 10:8 type, 11 EV error code valid, 31 V valid, 63:32 error code) and
//! §15.21.4 (virtual interrupts: int_ctl V_IRQ bit 8, V_INTR_PRIO bits
//! 19:16, V_IGN_TPR bit 20, V_INTR_MASKING bit 24; int_vector bits 7:0),
//! §15.20 and §15.9 (an injected NMI does not mask later ones; IRET is
//! intercepted to see the handler end).

/// Exception vectors xen-core injects.
pub mod vector {
    /// Non-maskable interrupt.
    pub const NMI: u8 = 2;
    /// Invalid opcode.
    pub const UD: u8 = 6;
    /// General protection.
    pub const GP: u8 = 13;
}

/// Event type field (bits 10:8).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum EventType {
    /// External or virtual interrupt (INTR).
    Interrupt = 0,
    /// Non-maskable interrupt.
    Nmi = 2,
    /// Exception (fault or trap).
    Exception = 3,
    /// Software interrupt (INTn).
    SoftwareInterrupt = 4,
}

/// One event for the guest to take at the next VMRUN.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Event {
    /// Interrupt or exception vector.
    pub vector: u8,
    /// What kind of event.
    pub kind: EventType,
    /// Error code pushed on the guest stack, if the event has one.
    pub error_code: Option<u32>,
}

const VALID: u64 = 1 << 31;
const ERROR_CODE_VALID: u64 = 1 << 11;

impl Event {
    /// The exception `vector`, with an error code when the vector has one.
    pub fn exception(vector: u8, error_code: Option<u32>) -> Event {
        Event {
            vector,
            kind: EventType::Exception,
            error_code,
        }
    }

    /// #GP(0): what a CPU raises for a refused privileged access.
    pub fn general_protection() -> Event {
        Event::exception(vector::GP, Some(0))
    }

    /// #UD: what a CPU raises for an instruction it does not have.
    pub fn invalid_opcode() -> Event {
        Event::exception(vector::UD, None)
    }

    /// An NMI (Xen's `svm_inject_nmi`: type NMI, vector 2).
    pub fn nmi() -> Event {
        Event {
            vector: vector::NMI,
            kind: EventType::Nmi,
            error_code: None,
        }
    }

    /// The 64-bit EVENTINJ value for this event (valid bit set).
    pub fn encode(self) -> u64 {
        let mut raw = VALID | ((self.kind as u64) << 8) | u64::from(self.vector);
        if let Some(code) = self.error_code {
            raw |= ERROR_CODE_VALID | (u64::from(code) << 32);
        }
        raw
    }

    /// Decodes EXITINTINFO: the event the guest was taking when the exit
    /// happened, which must be injected again or it is lost. `None` when
    /// the valid bit is clear (QEMU may leave stale low bits) or the type
    /// is reserved.
    pub fn decode_exit_int_info(raw: u64) -> Option<Event> {
        if raw & VALID == 0 {
            return None;
        }
        let kind = match (raw >> 8) & 7 {
            0 => EventType::Interrupt,
            2 => EventType::Nmi,
            3 => EventType::Exception,
            4 => EventType::SoftwareInterrupt,
            _ => return None,
        };
        let error_code = (raw & ERROR_CODE_VALID != 0).then_some((raw >> 32) as u32);
        Some(Event {
            vector: (raw & 0xff) as u8,
            kind,
            error_code,
        })
    }
}

/// int_ctl bit 8: a virtual interrupt is pending.
pub const V_IRQ: u32 = 1 << 8;
/// int_ctl bits 19:16: the pending virtual interrupt's priority.
pub const V_INTR_PRIO_SHIFT: u32 = 16;
/// int_ctl bit 20: the pending virtual interrupt ignores V_TPR.
pub const V_IGN_TPR: u32 = 1 << 20;
/// int_ctl bit 24: guest RFLAGS.IF/TPR mask only virtual interrupts;
/// physical ones stay under host control (xen-core always sets it).
pub const V_INTR_MASKING: u32 = 1 << 24;

/// int_ctl and int_vector values that make `vector` pending as a virtual
/// interrupt (Xen's event-channel upcall). The priority is the vector's
/// top nibble, as a local APIC would rank it.
pub fn virtual_interrupt(vector: u8) -> (u32, u32) {
    let priority = u32::from(vector >> 4);
    (
        V_IRQ | (priority << V_INTR_PRIO_SHIFT) | V_INTR_MASKING,
        u32::from(vector),
    )
}

/// int_ctl and int_vector values for a dummy virtual interrupt that
/// ignores TPR: with VINTR intercepted, the guest exits as soon as it
/// could take an interrupt, before taking this one (Xen's
/// `svm_enable_intr_window`).
pub fn interrupt_window() -> (u32, u32) {
    (V_IRQ | V_IGN_TPR | V_INTR_MASKING, 0)
}

/// What a vCPU's entry does with an NMI that waits (Xen's
/// `svm_intr_assist` for `hvm_intsrc_nmi`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum NmiEntry {
    /// Inject it ([`Event::nmi`]) and mask NMIs until the guest's IRET
    /// (`svm_inject_nmi`). Nothing else is offered with it.
    Inject,
    /// An interrupt shadow, or an event being injected, holds it: exit
    /// at the next interrupt window ([`interrupt_window`], VINTR
    /// intercepted) and decide again (`svm_enable_intr_window`).
    Window,
    /// NMIs are masked (the last one's handler has not returned): it
    /// waits for the IRET exit, and nothing else is offered meanwhile
    /// (Xen returns from `svm_intr_assist` with no window).
    Masked,
}

/// A vCPU's virtual NMI mask, which SVM does not keep: set when an NMI
/// is injected, cleared when the guest's IRET (intercepted while it is
/// set) ends the handler. Xen keeps it as `GENERAL1_INTERCEPT_IRET` in
/// the VMCB; the NMI that waits is the vCPU's latch
/// ([`crate::domain::vcpu::Vcpu::raise_nmi`]), so while one is in
/// service one more can wait and the rest merge into it.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct NmiMask {
    masked: bool,
}

impl NmiMask {
    /// At a VM entry: what to do with an NMI if one waits (`pending`);
    /// `shadow`: the guest is in an interrupt shadow; `event_pending`:
    /// EVENTINJ already holds an event. [`NmiEntry::Inject`] masks NMIs:
    /// the caller injects it and clears the latch.
    pub fn entry(&mut self, pending: bool, shadow: bool, event_pending: bool) -> Option<NmiEntry> {
        if !pending {
            return None;
        }
        Some(if self.masked {
            NmiEntry::Masked
        } else if shadow || event_pending {
            NmiEntry::Window
        } else {
            self.masked = true;
            NmiEntry::Inject
        })
    }

    /// Whether NMIs are masked: IRET must be intercepted.
    pub fn masked(&self) -> bool {
        self.masked
    }

    /// The guest's IRET exited (Xen's `VMEXIT_IRET`): NMIs are unmasked
    /// before the IRET has run, so the caller also sets the interrupt
    /// shadow, which keeps the next NMI out ([`NmiEntry::Window`]) until
    /// the IRET has retired.
    pub fn iret(&mut self) {
        self.masked = false;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn gp_encodes_with_error_code() {
        assert_eq!(Event::general_protection().encode(), 0x0000_0000_8000_0b0d);
        assert_eq!(
            Event::exception(14, Some(0x2)).encode(),
            0x0000_0002_8000_0b0e
        );
    }

    #[test]
    fn ud_encodes_without_error_code() {
        assert_eq!(Event::invalid_opcode().encode(), 0x8000_0306);
    }

    #[test]
    fn exit_int_info_round_trips_and_ignores_stale_bits() {
        for event in [
            Event::general_protection(),
            Event::invalid_opcode(),
            Event {
                vector: 0x20,
                kind: EventType::Interrupt,
                error_code: None,
            },
            Event {
                vector: 2,
                kind: EventType::Nmi,
                error_code: None,
            },
        ] {
            assert_eq!(Event::decode_exit_int_info(event.encode()), Some(event));
        }
        assert_eq!(Event::decode_exit_int_info(0x0b0d), None);
        assert_eq!(Event::decode_exit_int_info(0x8000_0500), None);
    }

    #[test]
    fn virtual_interrupt_sets_masking_and_priority() {
        assert_eq!(virtual_interrupt(0xf3), (0x010f_0100, 0xf3));
        assert_eq!(interrupt_window(), (0x0110_0100, 0));
    }

    #[test]
    fn nmi_encodes_as_type_nmi_vector_2() {
        assert_eq!(Event::nmi().encode(), 0x8000_0202);
    }

    #[test]
    fn nmi_waits_for_shadow_events_and_the_last_handler() {
        let mut m = NmiMask::default();
        assert_eq!(m.entry(false, false, false), None);
        assert_eq!(m.entry(true, true, false), Some(NmiEntry::Window));
        assert_eq!(m.entry(true, false, true), Some(NmiEntry::Window));
        assert!(!m.masked());
        assert_eq!(m.entry(true, false, false), Some(NmiEntry::Inject));
        assert!(m.masked());
        // A shadow or an event does not matter while masked: the IRET
        // intercept ends it, not a window (Xen: no VINTR loop).
        assert_eq!(m.entry(true, true, true), Some(NmiEntry::Masked));
        m.iret();
        assert_eq!(m.entry(true, true, false), Some(NmiEntry::Window));
        assert_eq!(m.entry(true, false, false), Some(NmiEntry::Inject));
    }

    /// One step of the model: an NMI sent, a VM entry (with or without
    /// an interrupt shadow or a pending event), or the handler's IRET.
    #[derive(Clone, Copy, Debug)]
    enum Step {
        Send,
        Entry { shadow: bool, event: bool },
        Iret,
    }

    fn step() -> impl proptest::strategy::Strategy<Value = Step> {
        use proptest::prelude::*;
        prop_oneof![
            Just(Step::Send),
            (any::<bool>(), any::<bool>())
                .prop_map(|(shadow, event)| Step::Entry { shadow, event }),
            Just(Step::Iret),
        ]
    }

    proptest::proptest! {
        /// Against a model of the guest: never a second NMI while one's
        /// handler runs; every NMI sent is delivered or merged into one
        /// that waits (at most one waits); once the handler returned and
        /// an entry has neither shadow nor event, a waiting NMI goes in.
        #[test]
        fn nmis_are_delivered_one_at_a_time(steps in proptest::collection::vec(step(), 0..64)) {
            let mut mask = NmiMask::default();
            let (mut pending, mut in_handler) = (false, false);
            let (mut sent, mut merged, mut delivered) = (0u32, 0u32, 0u32);
            for s in steps {
                match s {
                    Step::Send => {
                        sent += 1;
                        if core::mem::replace(&mut pending, true) {
                            merged += 1;
                        }
                    }
                    Step::Entry { shadow, event } => {
                        if mask.entry(pending, shadow, event) == Some(NmiEntry::Inject) {
                            proptest::prop_assert!(!in_handler, "nested NMI");
                            proptest::prop_assert!(!shadow && !event);
                            pending = false;
                            in_handler = true;
                            delivered += 1;
                        }
                    }
                    // Only a handler's IRET exits (the intercept is set
                    // while masked).
                    Step::Iret if mask.masked() => {
                        mask.iret();
                        in_handler = false;
                    }
                    Step::Iret => {}
                }
                proptest::prop_assert_eq!(mask.masked(), in_handler);
            }
            proptest::prop_assert_eq!(sent, merged + delivered + u32::from(pending));
            if mask.masked() {
                mask.iret();
            }
            let last = mask.entry(pending, false, false);
            proptest::prop_assert_eq!(last.is_some(), pending);
            proptest::prop_assert!(last.is_none() || last == Some(NmiEntry::Inject));
        }
    }
}
