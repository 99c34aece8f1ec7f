use super::regs::*;
use super::timer::MIN_PERIOD_NS;
use super::*;
use proptest::prelude::*;

const HZ: u64 = 2_000_000_000;

fn at(ns: u64) -> Now {
    Now {
        ns,
        guest_tsc: ns * 2,
        tsc_hz: HZ,
    }
}

/// An APIC software-enabled through SPIV, as a guest's first step.
fn enabled(vcpu: u32) -> Vlapic {
    let mut v = Vlapic::new(vcpu);
    v.mmio_write(SPIV, 4, SPIV_ENABLED | 0xff, 0);
    v
}

fn x2apic(vcpu: u32) -> Vlapic {
    let mut v = enabled(vcpu);
    v.write_apic_base(DEFAULT_PHYS_BASE | BASE_ENABLE | BASE_EXTD, true)
        .unwrap();
    v
}

fn msr(reg: u32) -> u32 {
    MSR_X2APIC_FIRST + (reg >> 4)
}

#[test]
fn reset_state_matches_xen() {
    let v = Vlapic::new(1);
    assert_eq!(v.apic_base(), DEFAULT_PHYS_BASE | BASE_ENABLE);
    assert_eq!(Vlapic::new(0).apic_base() & BASE_BSP, BASE_BSP);
    assert_eq!(v.mmio_read(ID, 4, 0), 2 << 24);
    assert_eq!(v.mmio_read(LVR, 4, 0), 0x0005_0014);
    assert_eq!(v.mmio_read(SPIV, 4, 0), 0xff);
    assert_eq!(v.mmio_read(DFR, 4, 0), u32::MAX);
    for (reg, _) in LVT_BITS {
        assert_eq!(v.mmio_read(reg, 4, 0), LVT_MASKED);
    }
    assert!(!v.enabled());
    assert_eq!(v.mmio_base(), Some(DEFAULT_PHYS_BASE));
}

#[test]
fn apic_base_reserved_bits_and_window_are_gp() {
    let mut v = Vlapic::new(0);
    let base = DEFAULT_PHYS_BASE | BASE_ENABLE;
    assert_eq!(
        v.write_apic_base(base | 1, true),
        Err(ApicFault::ReservedBits)
    );
    assert_eq!(
        v.write_apic_base(base | 1 << 9, true),
        Err(ApicFault::ReservedBits)
    );
    assert_eq!(
        v.write_apic_base(base | 1 << 52, true),
        Err(ApicFault::ReservedBits)
    );
    assert_eq!(
        v.write_apic_base(base | BASE_EXTD, false),
        Err(ApicFault::ReservedBits),
        "EXTD is reserved without x2APIC in CPUID"
    );
    assert_eq!(
        v.write_apic_base(0xfec0_0000 | BASE_ENABLE, true),
        Err(ApicFault::MovedWindow)
    );
    // Disabled → x2APIC directly is an invalid transition.
    v.write_apic_base(DEFAULT_PHYS_BASE, true).unwrap();
    assert_eq!(v.mmio_base(), None);
    assert_eq!(
        v.write_apic_base(base | BASE_EXTD, true),
        Err(ApicFault::InvalidTransition)
    );
    v.write_apic_base(base, true).unwrap();
    v.write_apic_base(base | BASE_EXTD, true).unwrap();
    assert!(v.x2apic_mode());
    // x2APIC → xAPIC without disabling first is refused.
    assert_eq!(
        v.write_apic_base(base, true),
        Err(ApicFault::InvalidTransition)
    );
    // BSP is read-only.
    assert_eq!(v.apic_base() & BASE_BSP, BASE_BSP);
}

#[test]
fn x2apic_id_ldr_and_icr_as_one_msr() {
    let mut v = x2apic(3);
    assert_eq!(v.x2apic_read(msr(ID), 0), Ok(6));
    assert_eq!(v.x2apic_read(msr(LDR), 0), Ok(1 << 6));
    v.x2apic_write(msr(ICR), (7u64 << 32) | 0x4030, 0).unwrap();
    assert_eq!(v.x2apic_read(msr(ICR), 0), Ok((7u64 << 32) | 0x4030));
}

#[test]
fn x2apic_reserved_and_read_only_msrs_are_gp() {
    let mut v = x2apic(0);
    let gp = |r: Result<Option<Ipi>, ApicFault>| r.is_err();
    assert!(gp(v.x2apic_write(msr(TASKPRI), 0x100, 0)));
    assert!(gp(v.x2apic_write(msr(ID), 0, 0)), "ID is read-only");
    assert!(gp(v.x2apic_write(msr(LVR), 0, 0)));
    assert!(gp(v.x2apic_write(msr(PROCPRI), 0, 0)));
    assert!(gp(v.x2apic_write(msr(LDR), 0, 0)));
    assert!(gp(v.x2apic_write(msr(EOI), 1, 0)), "EOI takes 0 only");
    assert!(gp(v.x2apic_write(msr(SELF_IPI), 0x100, 0)));
    assert!(gp(v.x2apic_write(msr(LVTT), 1 << 19, 0)));
    assert!(gp(v.x2apic_write(msr(TDCR), 4, 0)));
    assert!(gp(v.x2apic_write(msr(ICR), 1 << 12, 0)), "delivery status");
    assert!(gp(v.x2apic_write(0x8ff, 0, 0)));
    assert!(v.x2apic_read(msr(EOI), 0).is_err(), "EOI is write-only");
    assert!(v.x2apic_read(msr(SELF_IPI), 0).is_err());
    assert!(v.x2apic_read(msr(DFR), 0).is_err(), "no DFR in x2APIC mode");
    assert!(v.x2apic_read(msr(ICR2), 0).is_err());
    assert_eq!(v.x2apic_read(msr(ISR + 0x70), 0), Ok(0));
    // Not in x2APIC mode: every x2APIC MSR is #GP.
    let xapic = enabled(0);
    assert!(xapic.x2apic_read(msr(ID), 0).is_err());
}

#[test]
fn self_ipi_is_an_icr_to_self() {
    let mut v = x2apic(0);
    let ipi = v.x2apic_write(msr(SELF_IPI), 0x41, 0).unwrap().unwrap();
    assert_eq!(ipi.vector(), 0x41);
    assert!(v.matches(&ipi, true));
    assert!(!Vlapic::new(1).matches(&ipi, false));
}

#[test]
fn illegal_fixed_vector_sets_esr_not_ipi() {
    let mut v = enabled(0);
    assert_eq!(v.mmio_write(ICR, 4, DEST_SELF | 5, 0), None);
    v.mmio_write(ESR, 4, 0, 0);
    assert_eq!(v.mmio_read(ESR, 4, 0), ESR_SENDILL);
    v.mmio_write(ESR, 4, 0, 0);
    assert_eq!(v.mmio_read(ESR, 4, 0), 0, "ESR write latches and clears");
}

#[test]
fn xapic_destinations() {
    let v = enabled(2); // APIC id 4
    let ipi = |icr, dest| Ipi { icr, dest };
    assert!(v.matches(&ipi(0x30, 4), false));
    assert!(!v.matches(&ipi(0x30, 5), false));
    assert!(v.matches(&ipi(0x30, 0xff), false), "broadcast");
    assert!(v.matches(&ipi(DEST_ALLBUT | 0x30, 0), false));
    assert!(!v.matches(&ipi(DEST_ALLBUT | 0x30, 0), true));
    let mut l = enabled(2);
    l.mmio_write(LDR, 4, 0x0200_0000, 0);
    assert!(l.matches(&ipi(DEST_LOGICAL | 0x30, 0x02), false));
    assert!(!l.matches(&ipi(DEST_LOGICAL | 0x30, 0x01), false));
}

#[test]
fn mmio_partial_and_out_of_range_accesses() {
    let mut v = enabled(0);
    v.mmio_write(TASKPRI + 1, 1, 0x55, 0);
    assert_eq!(
        v.mmio_read(TASKPRI, 4, 0),
        0,
        "bits above TPR's 8 are dropped"
    );
    v.mmio_write(TASKPRI, 1, 0x5a, 0);
    assert_eq!(v.mmio_read(TASKPRI, 2, 0), 0x5a);
    assert_eq!(v.mmio_read(TASKPRI + 2, 4, 0), 0, "crosses the register");
    assert_eq!(v.mmio_read(0xff0, 4, 0), 0);
    assert_eq!(v.mmio_read(LVR + 2, 1, 0), 0x05);
}

#[test]
fn sw_disable_masks_lvts() {
    let mut v = enabled(0);
    v.mmio_write(LVTT, 4, 0x30, 0);
    assert_eq!(v.mmio_read(LVTT, 4, 0), 0x30);
    v.mmio_write(SPIV, 4, 0xff, 0);
    assert_eq!(v.mmio_read(LVTT, 4, 0), LVT_MASKED | 0x30);
    v.mmio_write(LVTT, 4, 0x30, 0);
    assert_eq!(v.mmio_read(LVTT, 4, 0), LVT_MASKED | 0x30, "stays masked");
}

#[test]
fn lvt_reserved_bits_are_dropped_on_mmio() {
    let mut v = enabled(0);
    v.mmio_write(LVTERR, 4, u32::MAX, 0);
    assert_eq!(v.mmio_read(LVTERR, 4, 0), LVT_MASK);
    v.mmio_write(LVT0, 4, u32::MAX, 0);
    assert_eq!(v.mmio_read(LVT0, 4, 0), LINT_MASK);
}

#[test]
fn one_shot_timer_fires_once_and_counts_down() {
    let mut v = enabled(0);
    v.mmio_write(TDCR, 4, 0xb, 0); // divide by 1
    v.mmio_write(LVTT, 4, 0x30, 0);
    v.mmio_write(TMICT, 4, 1000, 100);
    assert_eq!(v.timer_deadline_ns(), Some(1100));
    assert_eq!(v.mmio_read(TMCCT, 4, 600), 500);
    assert!(!v.expire_timer(1099));
    assert!(v.expire_timer(1100));
    assert_eq!(v.pending_vector(), Some(0x30));
    assert_eq!(v.timer_deadline_ns(), None);
    assert_eq!(v.mmio_read(TMCCT, 4, 5000), 0);
}

#[test]
fn divisor_scales_the_count() {
    let mut v = enabled(0);
    v.mmio_write(TDCR, 4, 0x3, 0); // divide by 16
    v.mmio_write(LVTT, 4, 0x30, 0);
    v.mmio_write(TMICT, 4, 1000, 0);
    assert_eq!(v.timer_deadline_ns(), Some(16_000));
    v.mmio_write(TDCR, 4, 0x0, 8_000); // divide by 2: 8000 ns left → 1000
    assert_eq!(v.timer_deadline_ns(), Some(9_000));
}

#[test]
fn periodic_timer_rearms_with_floor() {
    let mut v = enabled(0);
    v.mmio_write(TDCR, 4, 0xb, 0);
    v.mmio_write(LVTT, 4, TIMER_PERIODIC | 0x31, 0);
    v.mmio_write(TMICT, 4, 10, 0);
    assert_eq!(v.timer_deadline_ns(), Some(10));
    assert!(v.expire_timer(10));
    assert_eq!(v.timer_deadline_ns(), Some(10 + MIN_PERIOD_NS));
    // Held up for 3.5 periods: one interrupt, next on the period grid.
    assert!(v.expire_timer(10 + 3 * MIN_PERIOD_NS + MIN_PERIOD_NS / 2));
    assert_eq!(v.timer_deadline_ns(), Some(10 + 4 * MIN_PERIOD_NS));
}

#[test]
fn masked_timer_counts_but_does_not_interrupt() {
    let mut v = enabled(0);
    v.mmio_write(LVTT, 4, LVT_MASKED | 0x30, 0);
    v.mmio_write(TMICT, 4, 10, 0);
    assert!(!v.expire_timer(1_000));
    assert_eq!(v.pending_vector(), None);
}

#[test]
fn tsc_deadline_mode() {
    let mut v = enabled(0);
    v.set_tsc_deadline(5_000, at(0));
    assert_eq!(v.timer_deadline_ns(), None, "ignored outside TDT mode");
    v.mmio_write(LVTT, 4, TIMER_TSC_DEADLINE | 0x32, 0);
    assert_eq!(v.mmio_read(TMICT, 4, 0), 0);
    v.mmio_write(TMICT, 4, 100, 0);
    assert_eq!(v.timer_deadline_ns(), None, "TMICT is ignored in TDT mode");
    // guest TSC = 2 * ns at 2 GHz: TSC 5000 is 2500 ns away from ns 0.
    v.set_tsc_deadline(5_000, at(0));
    assert_eq!(v.tsc_deadline(), 5_000);
    assert_eq!(v.timer_deadline_ns(), Some(2_500));
    assert!(v.expire_timer(2_500));
    assert_eq!(v.tsc_deadline(), 0, "reads 0 once fired");
    assert_eq!(v.pending_vector(), Some(0x32));
    // A deadline in the past fires at once; 0 disarms.
    v.set_tsc_deadline(1, at(100));
    assert_eq!(v.timer_deadline_ns(), Some(100));
    v.set_tsc_deadline(0, at(100));
    assert_eq!(v.timer_deadline_ns(), None);
    // Leaving TDT mode disarms.
    v.set_tsc_deadline(1_000_000, at(0));
    v.mmio_write(LVTT, 4, 0x32, 10);
    assert_eq!(v.timer_deadline_ns(), None);
}

#[test]
fn hw_disable_stops_the_timer_and_reenable_resets() {
    let mut v = enabled(0);
    v.mmio_write(LVTT, 4, 0x30, 0);
    v.mmio_write(TMICT, 4, 10, 0);
    v.set_irq(0x40, false);
    v.write_apic_base(DEFAULT_PHYS_BASE, true).unwrap();
    assert_eq!(v.timer_deadline_ns(), None);
    assert_eq!(v.pending_vector(), None);
    v.write_apic_base(DEFAULT_PHYS_BASE | BASE_ENABLE, true)
        .unwrap();
    assert!(!v.irr_pending(), "re-enabling resets");
}

#[test]
fn tpr_and_isr_gate_delivery() {
    let mut v = enabled(0);
    v.set_irq(0x45, false);
    v.mmio_write(TASKPRI, 4, 0x50, 0);
    assert_eq!(v.pending_vector(), None);
    v.set_cr8(0x3);
    assert_eq!(v.tpr(), 0x30);
    assert_eq!(v.pending_vector(), Some(0x45));
    v.ack(0x45);
    v.set_irq(0x46, false);
    assert_eq!(v.pending_vector(), None, "same class as in-service");
    assert_eq!(v.ppr(), 0x40);
    v.mmio_write(EOI, 4, 0, 0);
    assert_eq!(v.pending_vector(), Some(0x46));
}

#[test]
fn eoi_without_isr_is_harmless() {
    let mut v = enabled(0);
    v.eoi();
    assert_eq!(v.ppr(), 0);
}

#[test]
fn illegal_received_vector_sets_recvill() {
    let mut v = enabled(0);
    v.set_irq(3, false);
    assert!(!v.irr_pending());
    v.mmio_write(ESR, 4, 0, 0);
    assert_eq!(v.mmio_read(ESR, 4, 0), ESR_RECVILL);
}

/// A reference model: the set of requested vectors and a stack of
/// in-service ones, as the SDM describes delivery.
#[derive(Default)]
struct Model {
    irr: std::collections::BTreeSet<u8>,
    isr: std::collections::BTreeSet<u8>,
}

impl Model {
    fn pending(&self, tpr: u8) -> Option<u8> {
        let irr = *self.irr.iter().next_back()?;
        let isr = self.isr.iter().next_back().copied().unwrap_or(0);
        let ppr = if tpr & 0xf0 >= isr & 0xf0 {
            tpr
        } else {
            isr & 0xf0
        };
        (irr & 0xf0 > ppr & 0xf0).then_some(irr)
    }
}

#[derive(Clone, Debug)]
enum Op {
    Raise(u8),
    Deliver,
    Eoi,
    Tpr(u8),
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        (16u8..=255).prop_map(Op::Raise),
        Just(Op::Deliver),
        Just(Op::Eoi),
        any::<u8>().prop_map(Op::Tpr),
    ]
}

proptest! {
    /// IRR/ISR/PPR follow the architectural rules: the highest requested
    /// vector above PPR's class is delivered, EOI retires the highest
    /// in-service one, and nothing is lost or duplicated.
    #[test]
    fn delivery_order_matches_the_model(ops in proptest::collection::vec(op(), 0..64)) {
        let mut v = enabled(0);
        let mut m = Model::default();
        let mut tpr = 0u8;
        for op in ops {
            match op {
                Op::Raise(vec) => { v.set_irq(vec, false); m.irr.insert(vec); }
                Op::Deliver => {
                    let got = v.pending_vector();
                    prop_assert_eq!(got, m.pending(tpr));
                    if let Some(vec) = got {
                        v.ack(vec);
                        m.irr.remove(&vec);
                        m.isr.insert(vec);
                    }
                }
                Op::Eoi => {
                    v.mmio_write(EOI, 4, 0, 0);
                    let top = m.isr.iter().next_back().copied();
                    if let Some(top) = top { m.isr.remove(&top); }
                }
                Op::Tpr(t) => { v.mmio_write(TASKPRI, 4, t.into(), 0); tpr = t; }
            }
            prop_assert_eq!(v.pending_vector(), m.pending(tpr));
        }
    }

    /// No MMIO write of any value at any offset panics, and x2APIC MSRs
    /// never leak into xAPIC mode.
    #[test]
    fn hostile_writes_never_panic(offset in 0u32..0x1000, len in prop_oneof![Just(1u8), Just(2), Just(4)],
                                  value: u32, msr_index in 0x800u32..=0x8ff, wide: u64) {
        let mut v = enabled(0);
        let _ = v.mmio_write(offset, len, value, 1);
        let _ = v.mmio_read(offset, len, 2);
        prop_assert!(v.x2apic_read(msr_index, 3).is_err());
        let mut x = x2apic(0);
        let _ = x.x2apic_write(msr_index, wide, 4);
        let _ = x.x2apic_read(msr_index, 5);
        let _ = x.timer_deadline_ns();
    }
}
