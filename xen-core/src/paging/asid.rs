//! Address-space identifiers (ASIDs): the tag a pCPU's TLB puts on a
//! guest's translations (AMD APM vol. 2, §15.16 "TLB Control"), handed out
//! per pCPU as Xen's `xen/arch/x86/hvm/asid.c` does.
//!
//! Each pCPU gives ASIDs `1..=max` (0 is the host's) in order, one per
//! vCPU that runs there, within a *generation*. When they run out, the
//! generation moves on and the next ASID handed out is 1 again: the TLB
//! is flushed once (`TLB_CONTROL` flush-all), which makes every ASID of the
//! old generation free. A vCPU keeps (pCPU, ASID, generation) and runs
//! under its ASID, with no flush, for as long as that generation lasts on
//! that pCPU; it takes a new one when the generation is stale or it moved
//! to another pCPU (Xen's `svm_do_resume` flushes a vCPU that moves).
//!
//! A vCPU whose translations must go (its domain's p2m lost an entry, the
//! guest changed CR0.PG or asked for a flush) drops its ASID
//! ([`VcpuAsid::flush`], Xen's `hvm_asid_flush_vcpu`): its next entry
//! takes a fresh ASID, under which the TLB holds nothing, and the old
//! ASID's entries stay unused until the generation's flush-all.
//!
//! Only the VMCB writes are arch code (`arch::x86_64::svm::vcpu`).

/// A vCPU's ASID and the generation of its pCPU it was handed out in.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct VcpuAsid {
    pcpu: usize,
    asid: u32,
    /// 0: none (generations start at 1).
    generation: u64,
}

impl VcpuAsid {
    /// No ASID yet: the first entry takes one.
    pub const NONE: VcpuAsid = VcpuAsid {
        pcpu: 0,
        asid: 0,
        generation: 0,
    };

    /// Drops the ASID, so that none of the vCPU's translations in any TLB
    /// are used again (Xen's `hvm_asid_flush_vcpu`).
    pub fn flush(&mut self) {
        self.generation = 0;
    }
}

/// What the next VMRUN of a vCPU is told.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct AsidEntry {
    /// VMCB `guest_asid`.
    pub asid: u32,
    /// Flush every ASID's translations (`TLB_CONTROL` 1): a new
    /// generation began.
    pub flush_all: bool,
}

/// One pCPU's ASIDs (Xen's `struct hvm_asid_data`).
#[derive(Debug)]
pub struct AsidAllocator {
    pcpu: usize,
    next: u32,
    max: u32,
    generation: u64,
    /// Too few ASIDs (or the generation counter wrapped): every vCPU
    /// runs under ASID 1 and flushes at every entry.
    disabled: bool,
}

impl AsidAllocator {
    /// The allocator of pCPU `pcpu`, which has `nasids` ASIDs (CPUID
    /// Fn8000_000A EBX, counting the host's ASID 0).
    pub const fn new(pcpu: usize, nasids: u32) -> Self {
        Self {
            pcpu,
            next: 1,
            max: nasids.saturating_sub(1),
            generation: 1,
            disabled: nasids < 2,
        }
    }

    /// The ASID `vcpu` enters guest mode with on this pCPU, and whether
    /// the TLB must be flushed first (Xen's `hvm_asid_handle_vmenter`).
    pub fn enter(&mut self, vcpu: &mut VcpuAsid) -> AsidEntry {
        if self.disabled {
            return Self::without_asids(vcpu);
        }
        if vcpu.pcpu == self.pcpu && vcpu.generation == self.generation {
            return AsidEntry {
                asid: vcpu.asid,
                flush_all: false,
            };
        }
        if self.next > self.max {
            let Some(next_generation) = self.generation.checked_add(1) else {
                self.disabled = true;
                return Self::without_asids(vcpu);
            };
            self.generation = next_generation;
            self.next = 1;
        }
        *vcpu = VcpuAsid {
            pcpu: self.pcpu,
            asid: self.next,
            generation: self.generation,
        };
        self.next += 1;
        // ASID 1 starts a generation: whatever an older one left in the
        // TLB goes, once.
        AsidEntry {
            asid: vcpu.asid,
            flush_all: vcpu.asid == 1,
        }
    }

    fn without_asids(vcpu: &mut VcpuAsid) -> AsidEntry {
        vcpu.flush();
        AsidEntry {
            asid: 1,
            flush_all: true,
        }
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;
    use std::vec::Vec;

    use proptest::prelude::*;

    use super::*;

    /// QEMU's SVM offers 16 ASIDs.
    const QEMU_ASIDS: u32 = 16;

    #[test]
    fn a_vcpu_keeps_its_asid_and_switches_do_not_flush() {
        let mut pcpu = AsidAllocator::new(0, QEMU_ASIDS);
        let (mut a, mut b) = (VcpuAsid::NONE, VcpuAsid::NONE);
        let first = pcpu.enter(&mut a);
        assert_eq!(
            first,
            AsidEntry {
                asid: 1,
                flush_all: true
            }
        );
        assert_eq!(
            pcpu.enter(&mut b),
            AsidEntry {
                asid: 2,
                flush_all: false
            }
        );
        for _ in 0..3 {
            assert_eq!(
                pcpu.enter(&mut a),
                AsidEntry {
                    asid: 1,
                    flush_all: false
                }
            );
            assert_eq!(
                pcpu.enter(&mut b),
                AsidEntry {
                    asid: 2,
                    flush_all: false
                }
            );
        }
        // A flush takes a new ASID, still without flushing the others.
        b.flush();
        assert_eq!(
            pcpu.enter(&mut b),
            AsidEntry {
                asid: 3,
                flush_all: false
            }
        );
        assert_eq!(
            pcpu.enter(&mut a),
            AsidEntry {
                asid: 1,
                flush_all: false
            }
        );
    }

    #[test]
    fn running_out_starts_a_generation_with_one_flush() {
        let mut pcpu = AsidAllocator::new(0, 4);
        let mut v = [VcpuAsid::NONE; 4];
        let asids: Vec<AsidEntry> = v.iter_mut().map(|v| pcpu.enter(v)).collect();
        assert_eq!(
            asids.iter().map(|e| e.asid).collect::<Vec<_>>(),
            [1, 2, 3, 1]
        );
        assert_eq!(asids.iter().filter(|e| e.flush_all).count(), 2);
        // vCPU 0's ASID 1 is of the old generation: it takes 2.
        assert_eq!(
            pcpu.enter(&mut v[0]),
            AsidEntry {
                asid: 2,
                flush_all: false
            }
        );
        assert_eq!(
            pcpu.enter(&mut v[3]),
            AsidEntry {
                asid: 1,
                flush_all: false
            }
        );
    }

    #[test]
    fn a_vcpu_that_moves_takes_an_asid_of_its_new_pcpu() {
        let (mut p0, mut p1) = (AsidAllocator::new(0, 8), AsidAllocator::new(1, 8));
        let (mut a, mut b) = (VcpuAsid::NONE, VcpuAsid::NONE);
        p0.enter(&mut a);
        p1.enter(&mut b);
        p1.enter(&mut b);
        // Same ASID and generation numbers on p1, but another TLB.
        assert_eq!(
            p1.enter(&mut a),
            AsidEntry {
                asid: 2,
                flush_all: false
            }
        );
        assert_eq!(
            p0.enter(&mut a),
            AsidEntry {
                asid: 2,
                flush_all: false
            }
        );
    }

    #[test]
    fn without_asids_every_entry_flushes() {
        let mut pcpu = AsidAllocator::new(0, 1);
        let mut v = VcpuAsid::NONE;
        for _ in 0..2 {
            assert_eq!(
                pcpu.enter(&mut v),
                AsidEntry {
                    asid: 1,
                    flush_all: true
                }
            );
        }
    }

    /// What the vCPUs do: (vCPU, pCPU, flush before entering).
    fn ops() -> impl Strategy<Value = Vec<(usize, usize, bool)>> {
        prop::collection::vec((0..20usize, 0..2usize, prop::bool::weighted(0.1)), 1..400)
    }

    proptest! {
        /// A model TLB per pCPU: which vCPU (and which of its flush
        /// epochs) each ASID holds translations of, cleared by a flush-all.
        /// A vCPU never enters under an ASID holding another vCPU's
        /// translations or its own from before a flush, and two vCPUs
        /// of one pCPU never hold the same ASID in one generation.
        #[test]
        fn no_vcpu_sees_translations_not_its_own(ops in ops(), asids in 2..20u32) {
            let mut pcpus = [AsidAllocator::new(0, asids), AsidAllocator::new(1, asids)];
            let mut tlbs = [BTreeMap::new(), BTreeMap::new()];
            let mut vcpus = [VcpuAsid::NONE; 20];
            let mut epochs = [0u32; 20];
            for (v, p, flush) in ops {
                if flush {
                    vcpus[v].flush();
                    epochs[v] += 1;
                }
                let entry = pcpus[p].enter(&mut vcpus[v]);
                prop_assert!((1..asids).contains(&entry.asid));
                if entry.flush_all {
                    tlbs[p].clear();
                }
                let held = tlbs[p].insert(entry.asid, (v, epochs[v]));
                prop_assert!(held.is_none_or(|h| h == (v, epochs[v])), "{:?}", held);
                let live = vcpus
                    .iter()
                    .filter(|o| o.pcpu == p && o.generation == pcpus[p].generation);
                let mut seen: Vec<u32> = live.map(|o| o.asid).collect();
                let n = seen.len();
                seen.sort_unstable();
                seen.dedup();
                prop_assert_eq!(seen.len(), n);
            }
        }
    }
}
