use abi::xen::vcpu::VcpuHvmX86_64;

use super::*;
use crate::domain::table::DomainTable;
use crate::domain::vcpu::VcpuEntryState;
use crate::domain::{DomainConfig, DomainState};
use crate::paging::sim::machine;
use crate::vmexit::cr::{cr0, cr4};
use crate::vmexit::msr::efer;

const CR4_VALID: u64 = 0x7ff;

/// A running domain with `vcpus` vCPUs, vCPU 0 up.
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
    d.unpause().unwrap();
    (t, id)
}

fn ctx_64() -> VcpuHvmContext {
    VcpuHvmContext::x86_64(&VcpuHvmX86_64 {
        rip: 0x2000,
        rsp: 0x8000,
        cr0: cr0::PG | cr0::PE,
        cr3: 0x10_0000,
        cr4: cr4::PAE,
        efer: efer::LME,
        ..Default::default()
    })
}

#[test]
fn initialise_up_down_as_xen() {
    let (mut t, id) = domain(2);
    let d = t.get_mut(id).unwrap();
    assert_eq!(d.vcpu_is_up(1), Ok(false));
    assert_eq!(d.vcpu_up(1), Err(Errno::EINVAL), "not initialised");
    assert_eq!(d.vcpu_initialise(1, &ctx_64(), CR4_VALID), Ok(()));
    assert_eq!(d.vcpu_take_new_context(1).map(|e| e.gprs.rsp), Some(0x8000));
    assert_eq!(d.vcpu_is_up(1), Ok(false), "initialise leaves it down");
    assert_eq!(
        d.vcpu_initialise(1, &ctx_64(), CR4_VALID),
        Err(Errno::EEXIST)
    );
    assert_eq!(d.vcpu_up(1), Ok(()));
    assert!(d.vcpu_may_run(1));
    assert_eq!(d.vcpu_down(1), Ok(VcpuDown::Down));
    assert_eq!(d.vcpu_is_up(1), Ok(false));
    assert_eq!(d.state(), DomainState::Running);
}

#[test]
fn eexist_comes_before_the_context_check() {
    let (mut t, id) = domain(2);
    let d = t.get_mut(id).unwrap();
    let mut bad = ctx_64();
    bad.mode = 9;
    assert_eq!(d.vcpu_initialise(1, &bad, CR4_VALID), Err(Errno::EINVAL));
    assert!(
        !d.vcpu(1).unwrap().is_initialised(),
        "a bad context changes nothing"
    );
    assert_eq!(d.vcpu_initialise(0, &bad, CR4_VALID), Err(Errno::EEXIST));
}

#[test]
fn ids_beyond_nr_vcpus_are_enoent() {
    let (mut t, id) = domain(2);
    let d = t.get_mut(id).unwrap();
    for v in [2, 7, 8, u32::MAX] {
        assert_eq!(
            d.vcpu_initialise(v, &ctx_64(), CR4_VALID),
            Err(Errno::ENOENT)
        );
        assert_eq!(d.vcpu_up(v), Err(Errno::ENOENT));
        assert_eq!(d.vcpu_down(v), Err(Errno::ENOENT));
        assert_eq!(d.vcpu_is_up(v), Err(Errno::ENOENT));
        assert_eq!(d.vcpu_init(v), Err(Errno::ENOENT));
        assert_eq!(d.vcpu_sipi(v, 0x10), Err(Errno::ENOENT));
    }
}

#[test]
fn the_last_vcpu_down_powers_the_domain_off() {
    let (mut t, id) = domain(2);
    let d = t.get_mut(id).unwrap();
    assert_eq!(d.vcpu_down(0), Ok(VcpuDown::DomainPoweredOff));
    assert_eq!(d.state(), DomainState::Shutdown(ShutdownReason::Poweroff));
}

#[test]
fn init_then_sipi_restarts_in_real_mode() {
    let (mut t, id) = domain(2);
    let d = t.get_mut(id).unwrap();
    assert_eq!(d.vcpu_sipi(0, 0x10), Ok(false), "vCPU 0 runs: ignored");
    d.vcpu_take_new_context(0);
    // A never-started vCPU takes a SIPI directly, as on hardware.
    assert_eq!(d.vcpu_sipi(1, 0x20), Ok(true));
    assert_eq!(d.vcpu_init(0), Ok(Some(VcpuDown::Down)));
    assert_eq!(d.vcpu_init(0), Ok(None), "reset already");
    assert_eq!(d.vcpu_is_up(0), Ok(false));
    assert_eq!(d.state(), DomainState::Running, "vCPU 1 is still up");
    assert_eq!(d.vcpu_sipi(0, 0x10), Ok(true));
    assert_eq!(d.vcpu_take_new_context(0).map(|e| e.cs.base), Some(0x10000));
    assert!(d.vcpu_may_run(0));
}

#[test]
fn init_of_the_last_vcpu_up_powers_off_as_xen() {
    let (mut t, id) = domain(2);
    let d = t.get_mut(id).unwrap();
    assert_eq!(d.vcpu_init(0), Ok(Some(VcpuDown::DomainPoweredOff)));
    assert_eq!(d.state(), DomainState::Shutdown(ShutdownReason::Poweroff));
}
