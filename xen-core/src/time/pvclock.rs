//! Publishing time to a domain: each vCPU's `vcpu_time_info` (in its
//! shared-info slot and in its registered `vcpu_info`, if any) and the
//! wall clock in shared info, with Xen's odd/even version protocol
//! (`xen/include/public/xen.h`, `struct vcpu_time_info`, `wc_version`).

use core::mem::offset_of;

use abi::xen::shared_info::{SharedInfo, VcpuInfo, VcpuTimeInfo};
use zerocopy::IntoBytes;

use super::Clock;
use crate::domain::shared::{all_vcpu_infos, seqlock_write, Place};
use crate::domain::Domain;
use crate::guest_mem::GuestFault;
use crate::mm::PhysMem;

/// Bytes of `vcpu_time_info` after `version` and its padding.
const TIME_BODY: usize = offset_of!(VcpuTimeInfo, tsc_timestamp);

/// Writes `info` as vCPU `vcpu_id`'s pvclock wherever its `vcpu_info` is
/// kept. A registered area the guest has since unmapped is skipped, and
/// reported as the error once every other copy is written.
pub fn publish_vcpu_time<M: PhysMem>(
    domain: &Domain,
    mem: &mut M,
    vcpu_id: u32,
    info: &VcpuTimeInfo,
) -> Result<(), GuestFault> {
    let mut result = Ok(());
    for place in all_vcpu_infos(domain, vcpu_id) {
        let time = place.at(offset_of!(VcpuInfo, time));
        let body = &info.as_bytes()[TIME_BODY..];
        if let Err(e) = seqlock_write(domain, mem, time, TIME_BODY, body) {
            result = Err(e);
        }
    }
    result
}

/// Brings vCPU `vcpu_id`'s pvclock up to date at `tsc`: the run loop calls
/// this whenever the vCPU is scheduled in, so the guest's 64-bit
/// extrapolation starts from a recent timestamp.
pub fn update_vcpu_time<M: PhysMem>(
    domain: &Domain,
    mem: &mut M,
    vcpu_id: u32,
    clock: &Clock,
    tsc: u64,
) -> Result<(), GuestFault> {
    publish_vcpu_time(domain, mem, vcpu_id, &clock.vcpu_time_info(tsc))
}

/// Writes the wall clock at system time 0 (`wc_sec`, `wc_nsec`,
/// `wc_sec_hi`) into shared info under `wc_version`. Once per domain,
/// at creation, is enough: the boot wall clock never changes.
pub fn publish_wallclock<M: PhysMem>(domain: &Domain, mem: &mut M, clock: &Clock) {
    let wc = clock.boot_wallclock();
    let mut body = [0u8; 12];
    body[0..4].copy_from_slice(&((wc.sec & 0xffff_ffff) as u32).to_le_bytes());
    body[4..8].copy_from_slice(&wc.nsec.to_le_bytes());
    body[8..12].copy_from_slice(&((wc.sec >> 32) as u32).to_le_bytes());
    let version = Place::SharedInfo(offset_of!(SharedInfo, wc_version));
    let fields = offset_of!(SharedInfo, wc_sec) - offset_of!(SharedInfo, wc_version);
    // wc_sec, wc_nsec and wc_sec_hi follow each other, after wc_version.
    const _: () = assert!(offset_of!(SharedInfo, wc_sec_hi) == offset_of!(SharedInfo, wc_sec) + 8);
    const _: () = assert!(offset_of!(SharedInfo, wc_sec) > offset_of!(SharedInfo, wc_version));
    // The hypervisor's own frame: the offsets are in range, it cannot fail.
    let _ = seqlock_write(domain, mem, version, fields, &body);
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::table::DomainTable;
    use crate::domain::xen_state::VcpuInfoArea;
    use crate::domain::DomainConfig;
    use crate::mm::Gfn;
    use crate::paging::sim::machine;
    use crate::time::WallClock;
    use core::mem::size_of;
    use zerocopy::FromBytes;

    fn shared_info(d: &Domain, mem: &impl PhysMem) -> SharedInfo {
        let bytes = &mem.frame(d.shared_info_mfn())[..size_of::<SharedInfo>()];
        SharedInfo::read_from_bytes(bytes).unwrap()
    }

    #[test]
    fn time_goes_to_the_slot_and_the_registered_area() {
        let (mut pool, mut mem) = machine(64);
        let mut t = DomainTable::new();
        let cfg = DomainConfig {
            name: "u",
            max_pages: 8,
            vcpus: 2,
        };
        let id = t.create_domu(&cfg, &mut pool, &mut mem).unwrap();
        let d = t.get_mut(id).unwrap();
        d.populate(&mut pool, &mut mem, Gfn(0), 2).unwrap();
        d.xen_mut().vcpu_info[1] = Some(VcpuInfoArea {
            gfn: Gfn(1),
            offset: 0x40,
        });
        let wc = WallClock {
            sec: 0x1_2345_6789,
            nsec: 42,
        };
        let clock = Clock::new(1_000_000_000, 0, wc).unwrap();
        update_vcpu_time(d, &mut mem, 1, &clock, 5_000).unwrap();
        update_vcpu_time(d, &mut mem, 1, &clock, 7_000).unwrap();
        publish_wallclock(d, &mut mem, &clock);
        let si = shared_info(d, &mem);
        let t1 = si.vcpu_info[1].time;
        assert_eq!(
            (t1.version, t1.tsc_timestamp, t1.system_time),
            (4, 7_000, 7_000)
        );
        assert_eq!(t1.tsc_to_system_mul, clock.scale().mul_frac);
        assert_eq!(si.vcpu_info[0].time.version, 0, "other vCPU untouched");
        assert_eq!(
            (si.wc_version, si.wc_sec, si.wc_sec_hi, si.wc_nsec),
            (2, 0x2345_6789, 1, 42)
        );
        let mut area = [0u8; 64];
        Place::Guest(crate::mm::Gpa(0x1040))
            .read(d, &mut mem, &mut area)
            .unwrap();
        let registered = VcpuInfo::read_from_bytes(&area).unwrap();
        assert_eq!(registered.time, t1);
        // The guest moved the page away: the slot is still updated.
        d.xen_mut().vcpu_info[1] = Some(VcpuInfoArea {
            gfn: Gfn(9),
            offset: 0,
        });
        assert_eq!(
            update_vcpu_time(d, &mut mem, 1, &clock, 9_000),
            Err(GuestFault::NotInP2m)
        );
        assert_eq!(shared_info(d, &mem).vcpu_info[1].time.system_time, 9_000);
    }

    #[test]
    fn odd_version_from_the_guest_is_made_even() {
        let (mut pool, mut mem) = machine(16);
        let mut t = DomainTable::new();
        let cfg = DomainConfig {
            name: "u",
            max_pages: 8,
            vcpus: 1,
        };
        let id = t.create_domu(&cfg, &mut pool, &mut mem).unwrap();
        let d = t.get(id).unwrap();
        mem.frame_mut(d.shared_info_mfn())[32] = 7; // vcpu_info[0].time.version
        let clock = Clock::new(3, 0, WallClock::default()).unwrap();
        update_vcpu_time(d, &mut mem, 0, &clock, 1).unwrap();
        assert_eq!(shared_info(d, &mem).vcpu_info[0].time.version, 10);
    }
}
