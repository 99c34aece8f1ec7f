//! INIT and STARTUP IPIs between the vCPUs of one domain, as Xen's
//! `vlapic_init_sipi_action`.

use super::*;
use crate::domain::table::DomainTable;
use crate::domain::vcpu::{VcpuEntryState, VcpuRunState};
use crate::domain::{DomainConfig, DomainState, ShutdownReason};
use crate::paging::sim::machine;
use crate::vlapic::regs::*;

/// A running domain with `vcpus` vCPUs, vCPU 0 started.
fn domain(vcpus: u32) -> (DomainTable, abi::xen::domid::DomId) {
    let (mut pool, mut mem) = machine(64);
    let mut t = DomainTable::new();
    let cfg = DomainConfig {
        name: "smp",
        max_pages: 16,
        vcpus,
    };
    let id = t.create_domu(&cfg, &mut pool, &mut mem).unwrap();
    let d = t.get_mut(id).unwrap();
    d.vcpu_mut(0).unwrap().start(VcpuEntryState::pvh(0x1000, 0));
    d.vcpu_take_new_context(0);
    d.unpause().unwrap();
    (t, id)
}

/// INIT (assert, as Linux sends it: level-triggered) to xAPIC id `dest`.
fn init(dest: u32) -> Ipi {
    Ipi {
        icr: DM_INIT | INT_LEVELTRIG | INT_ASSERT,
        dest,
    }
}

fn sipi(dest: u32, vector: u8) -> Ipi {
    Ipi {
        icr: DM_STARTUP | u32::from(vector),
        dest,
    }
}

#[test]
fn init_sipi_sipi_starts_the_vcpu_once_in_real_mode() {
    let (mut t, id) = domain(2);
    let d = t.get_mut(id).unwrap();
    // vCPU 1 has APIC id 2, as Xen numbers them.
    assert_eq!(
        deliver_ipi(d, 0, init(2)),
        IpiOutcome::InitReset(0),
        "never started: nothing to reset"
    );
    assert_eq!(deliver_ipi(d, 0, sipi(2, 0x08)), IpiOutcome::Started(1));
    let entry = d.vcpu_take_new_context(1).unwrap();
    assert_eq!(
        (entry.cs.selector, entry.cs.base, entry.rip),
        (0x0800, 0x8000, 0)
    );
    assert_eq!(entry.cr0 & 1, 0, "real mode");
    assert!(d.vcpu_may_run(1));
    assert_eq!(
        deliver_ipi(d, 0, sipi(2, 0x09)),
        IpiOutcome::Started(0),
        "second SIPI ignored"
    );
    assert_eq!(d.vcpu_take_new_context(1), None);
    assert_eq!(d.state(), DomainState::Running);
}

#[test]
fn init_resets_a_running_vcpu_and_its_apic() {
    let (mut t, id) = domain(2);
    let d = t.get_mut(id).unwrap();
    deliver_ipi(d, 0, sipi(2, 0x08));
    d.vcpu_take_new_context(1);
    let apic = d.vcpu_mut(1).unwrap().vlapic_mut().unwrap();
    apic.mmio_write(SPIV, 4, 0x1ff, 0);
    apic.set_irq(0x40, false);
    assert!(apic.irr_pending());
    d.vcpu_mut(1).unwrap().set_timer(100);
    assert_eq!(deliver_ipi(d, 0, init(2)), IpiOutcome::InitReset(1));
    let v1 = d.vcpu(1).unwrap();
    assert_eq!(v1.run_state(), VcpuRunState::Down);
    assert!(!v1.is_initialised());
    assert_eq!(v1.timer_deadline_ns(), None);
    let apic = v1.vlapic().unwrap();
    assert!(
        !apic.irr_pending() && !apic.enabled(),
        "APIC back to its INIT state"
    );
    assert_eq!(
        d.vcpu_up(1),
        Err(abi::xen::errno::Errno::EINVAL),
        "waits for SIPI, not VCPUOP_up"
    );
    assert_eq!(d.state(), DomainState::Running);
    // A second INIT finds it reset already.
    assert_eq!(deliver_ipi(d, 0, init(2)), IpiOutcome::InitReset(0));
    assert_eq!(deliver_ipi(d, 0, sipi(2, 0x10)), IpiOutcome::Started(1));
    assert_eq!(d.vcpu_take_new_context(1).map(|e| e.cs.base), Some(0x10000));
}

#[test]
fn init_deassert_does_nothing() {
    let (mut t, id) = domain(2);
    let d = t.get_mut(id).unwrap();
    deliver_ipi(d, 0, sipi(2, 0x08));
    let deassert = Ipi {
        icr: DM_INIT | INT_LEVELTRIG,
        dest: 2,
    };
    assert_eq!(deliver_ipi(d, 0, deassert), IpiOutcome::InitReset(0));
    assert!(d.vcpu_may_run(1));
}

#[test]
fn targets_outside_the_domain_reach_nobody() {
    let (mut t, id) = domain(2);
    let d = t.get_mut(id).unwrap();
    for dest in [4, 6, 0x10, 0xfe, 1, 3] {
        assert_eq!(
            deliver_ipi(d, 0, init(dest)),
            IpiOutcome::InitReset(0),
            "INIT to {dest:#x}"
        );
        assert_eq!(
            deliver_ipi(d, 0, sipi(dest, 0x08)),
            IpiOutcome::Started(0),
            "SIPI to {dest:#x}"
        );
    }
    assert_eq!(d.vcpu(1).unwrap().run_state(), VcpuRunState::Down);
    assert!(d.vcpu_may_run(0));
    // Logical mode with an APIC that has no logical id set: nobody.
    let logical = Ipi {
        icr: DM_STARTUP | DEST_LOGICAL | 0x08,
        dest: 0xff,
    };
    assert_eq!(deliver_ipi(d, 0, logical), IpiOutcome::Started(0));
}

#[test]
fn all_but_self_starts_every_other_vcpu() {
    let (mut t, id) = domain(4);
    let d = t.get_mut(id).unwrap();
    let all_but = Ipi {
        icr: DM_STARTUP | DEST_ALLBUT | 0x08,
        dest: 0,
    };
    assert_eq!(deliver_ipi(d, 0, all_but), IpiOutcome::Started(3));
    assert!((1..4).all(|v| d.vcpu_may_run(v)));
    assert_eq!(d.vcpu_take_new_context(0), None, "the sender runs on");
}

#[test]
fn self_init_waits_for_sipi_and_the_domain_goes_on() {
    let (mut t, id) = domain(2);
    let d = t.get_mut(id).unwrap();
    deliver_ipi(d, 0, sipi(2, 0x08));
    let to_self = Ipi {
        icr: DM_INIT | DEST_SELF,
        dest: 0,
    };
    assert_eq!(deliver_ipi(d, 1, to_self), IpiOutcome::InitReset(1));
    assert!(!d.vcpu_may_run(1), "the sender stops");
    assert!(d.vcpu_may_run(0));
    assert_eq!(d.state(), DomainState::Running);
    // vCPU 0 restarts it.
    assert_eq!(deliver_ipi(d, 0, sipi(2, 0x20)), IpiOutcome::Started(1));
}

#[test]
fn init_of_every_vcpu_powers_the_domain_off() {
    let (mut t, id) = domain(2);
    let d = t.get_mut(id).unwrap();
    deliver_ipi(d, 0, sipi(2, 0x08));
    let all = Ipi {
        icr: DM_INIT | DEST_ALLINC,
        dest: 0,
    };
    assert_eq!(deliver_ipi(d, 0, all), IpiOutcome::InitReset(2));
    assert_eq!(d.state(), DomainState::Shutdown(ShutdownReason::Poweroff));
    assert!(!d.vcpu_may_run(0) && !d.vcpu_may_run(1));
}

#[test]
fn x2apic_destinations_name_full_ids() {
    let (mut t, id) = domain(2);
    let d = t.get_mut(id).unwrap();
    let apic = d.vcpu_mut(1).unwrap().vlapic_mut().unwrap();
    apic.write_apic_base(DEFAULT_PHYS_BASE | BASE_ENABLE | BASE_EXTD, true)
        .unwrap();
    assert_eq!(
        deliver_ipi(d, 0, sipi(0x102, 0x08)),
        IpiOutcome::Started(0),
        "id 0x102 is nobody"
    );
    assert_eq!(deliver_ipi(d, 0, sipi(2, 0x08)), IpiOutcome::Started(1));
}

/// NMI to xAPIC id `dest`, as Linux's `__prepare_ICR` builds it for
/// `NMI_VECTOR`: delivery mode NMI, vector field 0.
fn nmi(dest: u32) -> Ipi {
    Ipi { icr: DM_NMI, dest }
}

#[test]
fn nmi_latches_once_and_wakes_a_blocked_vcpu() {
    let (mut t, id) = domain(2);
    let d = t.get_mut(id).unwrap();
    deliver_ipi(d, 0, sipi(2, 0x08));
    d.vcpu_mut(1).unwrap().block();
    assert!(!d.vcpu_may_run(1));
    assert_eq!(deliver_ipi(d, 0, nmi(2)), IpiOutcome::Nmi(1));
    let v = d.vcpu_mut(1).unwrap();
    assert!(v.nmi_pending() && d.vcpu_may_run(1), "latched and woken");
    // A second one while the first waits merges into it.
    let v = d.vcpu_mut(1).unwrap();
    assert!(!v.raise_nmi());
    v.ack_nmi();
    assert!(!v.nmi_pending());
    assert!(v.raise_nmi(), "free again once injected");
    assert!(!d.vcpu(0).unwrap().nmi_pending(), "the sender has none");
}

#[test]
fn nmi_brings_a_halted_vcpu_back_but_not_one_waiting_for_sipi() {
    let (mut t, id) = domain(3);
    let d = t.get_mut(id).unwrap();
    deliver_ipi(d, 0, sipi(2, 0x08));
    // HLT with interrupts off (Linux's stop_this_cpu): down, initialised.
    d.vcpu_mut(1).unwrap().down();
    let all_but = Ipi {
        icr: DM_NMI | DEST_ALLBUT,
        dest: 0,
    };
    assert_eq!(deliver_ipi(d, 0, all_but), IpiOutcome::Nmi(2));
    assert!(d.vcpu_may_run(1), "Xen clears _VPF_down");
    assert!(!d.vcpu_may_run(2), "never initialised: stays down");
    assert!(d.vcpu(2).unwrap().nmi_pending(), "but latched, as Xen");
    assert_eq!(deliver_ipi(d, 0, nmi(6)), IpiOutcome::Nmi(0), "nobody");
}

#[test]
fn nmi_to_self_and_logical_destinations() {
    let (mut t, id) = domain(2);
    let d = t.get_mut(id).unwrap();
    let to_self = Ipi {
        icr: DM_NMI | DEST_SELF | 0x55,
        dest: 0,
    };
    assert_eq!(deliver_ipi(d, 0, to_self), IpiOutcome::Nmi(1));
    assert!(d.vcpu(0).unwrap().nmi_pending());
    assert!(!d.vcpu(1).unwrap().nmi_pending());
}

proptest::proptest! {
    /// No ICR value panics delivery, and only delivery mode NMI latches
    /// an NMI.
    #[test]
    fn any_icr_delivers_without_panic(icr: u32, dest: u32, source in 0u32..2) {
        let (mut t, id) = domain(2);
        let d = t.get_mut(id).unwrap();
        let outcome = deliver_ipi(d, source, Ipi { icr, dest });
        let latched = (0..2).any(|v| d.vcpu(v).is_some_and(|c| c.nmi_pending()));
        proptest::prop_assert_eq!(latched, matches!(outcome, IpiOutcome::Nmi(n) if n > 0));
        proptest::prop_assert_eq!(icr & DM_MASK == DM_NMI, matches!(outcome, IpiOutcome::Nmi(_)));
    }
}
