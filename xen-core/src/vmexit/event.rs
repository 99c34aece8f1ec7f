//! Events injected into a guest: the EVENTINJ / EXITINTINFO format and the
//! V_IRQ fields of the VMCB's int_ctl.
//!
//! Source: AMD64 APM vol. 2, §15.20 (event injection: bits 7:0 vector,
//! 10:8 type, 11 EV error code valid, 31 V valid, 63:32 error code) and
//! §15.21.4 (virtual interrupts: int_ctl V_IRQ bit 8, V_INTR_PRIO bits
//! 19:16, V_INTR_MASKING bit 24; int_vector bits 7:0).

/// Exception vectors xen-core injects.
pub mod vector {
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
    }
}
