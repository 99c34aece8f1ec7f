//! create_domain and list_domains against the in-memory [`fake::Fake`].

// Fixture constants and test data are chosen to fit; a wrong one fails the test.
#[allow(clippy::cast_possible_truncation)]
mod fake;

use abi::control::MAX_VCPUS_SUPPORTED;
use abi::xen::domid::DomId;
use abi::xen::errno::Errno;
use abi::xen::hvm::{
    HVM_PARAM_CONSOLE_EVTCHN, HVM_PARAM_CONSOLE_PFN, HVM_PARAM_STORE_EVTCHN, HVM_PARAM_STORE_PFN,
};
use abi::xen::start_info::{
    HvmMemmapEntry, HvmStartInfo, HVM_START_MAGIC_VALUE, XEN_HVM_MEMMAP_TYPE_RAM,
    XEN_HVM_MEMMAP_TYPE_RESERVED,
};
use proptest::prelude::*;
use pvh_builder::test_images::{elf, kernel, kernel_code, load, xen_note, KERNEL_GPA};
use pvh_builder::{BuildError, PvhEntry};
use zerocopy::FromBytes;

use self::fake::{Call, Fake};
use crate::{
    create_domain, list_domains, pvh_vcpu_context, CreateError, DomainSpec, Op, SchedSpec,
};

const EM_X86_64: u16 = 62;
/// Plenty for the domains below.
const FREE_KIB: u64 = 64 << 10;

fn image() -> Vec<u8> {
    kernel(true, EM_X86_64, &KERNEL_GPA.to_le_bytes())
}

fn spec<'a>(name: &'a str, image: &'a [u8]) -> DomainSpec<'a> {
    DomainSpec {
        name,
        memory_mib: 4,
        vcpus: 2,
        cmdline: "console=hvc0 ticks=3",
        image,
        sched: SchedSpec::default(),
    }
}

/// [`spec`] with xl.cfg's `cpus = "0"`, `weight = 512`, `cap = 50`.
fn scheduled<'a>(name: &'a str, image: &'a [u8]) -> DomainSpec<'a> {
    DomainSpec {
        sched: SchedSpec {
            affinity: Some(1),
            weight: Some(512),
            cap: Some(50),
        },
        ..spec(name, image)
    }
}

/// The fake holds nothing: no domain, no mapping, all memory free.
fn assert_clean(hv: &Fake) {
    assert!(hv.domains.is_empty(), "a domain is left");
    assert!(hv.mappings.is_empty(), "a mapping is left");
    assert_eq!(hv.free_kib, FREE_KIB, "memory is not back");
}

fn start_info(hv: &Fake, domid: DomId, gpa: u32) -> HvmStartInfo {
    let bytes = hv.read(domid, gpa.into(), 56).unwrap();
    HvmStartInfo::read_from_bytes(&bytes).unwrap()
}

#[test]
fn creates_a_running_domain_with_kernel_boot_info_and_console() {
    let mut hv = Fake::new(FREE_KIB);
    let image = image();
    let s = spec("guest-1", &image);
    let domid = create_domain(&mut hv, &s).unwrap();

    let d = &hv.domains[&domid];
    assert_eq!((d.name.as_str(), d.vcpus), ("guest-1", 2));
    assert_eq!(d.pause_count, 0, "unpaused");
    assert_eq!(
        d.frames.len(),
        4 * 256 + 2,
        "RAM, the console and store rings"
    );
    assert_eq!(hv.free_kib, FREE_KIB - (4 * 1024 + 8));
    assert!(hv.mappings.is_empty(), "nothing stays mapped");

    let code = kernel_code();
    assert_eq!(hv.read(domid, KERNEL_GPA, code.len()).unwrap(), code);
    let bss = hv.read(domid, KERNEL_GPA + code.len() as u64, 0x3000 - code.len());
    assert!(bss.unwrap().iter().all(|&b| b == 0));

    let regs = d.vcpu0.expect("vCPU 0 has its context");
    assert_eq!(regs.eip as u64, KERNEL_GPA);
    let si = start_info(&hv, domid, regs.ebx);
    assert_eq!(si.magic, HVM_START_MAGIC_VALUE);
    let map_bytes = hv
        .read(domid, si.memmap_paddr, 2 * 24)
        .expect("memory map in RAM");
    let map = <[HvmMemmapEntry; 2]>::read_from_bytes(&map_bytes).unwrap();
    assert_eq!(si.memmap_entries, 2);
    assert_eq!(
        (map[0].addr, map[0].size, map[0].kind),
        (0, 4 << 20, XEN_HVM_MEMMAP_TYPE_RAM)
    );
    assert_eq!(
        (map[1].addr, map[1].size, map[1].kind),
        (4 << 20, 2 * 4096, XEN_HVM_MEMMAP_TYPE_RESERVED)
    );
    let cmdline = hv
        .read(domid, si.cmdline_paddr, s.cmdline.len() + 1)
        .unwrap();
    assert_eq!(&cmdline[..s.cmdline.len()], s.cmdline.as_bytes());
    assert_eq!(cmdline[s.cmdline.len()], 0);

    let port = d.params[&HVM_PARAM_CONSOLE_EVTCHN];
    assert_eq!(d.params[&HVM_PARAM_CONSOLE_PFN], 4 * 256);
    let e820: Vec<(u64, u64, u32)> = d
        .memory_map
        .iter()
        .map(|e| (e.addr, e.size, e.kind))
        .collect();
    assert_eq!(
        e820,
        [(0, 4 << 20, 1), (4 << 20, 2 * 4096, 2)],
        "RAM, then the reserved console and store pages, stored for XENMEM_memory_map"
    );
    assert_eq!(d.ports, [0, 0], "two ports, unbound for dom0");
    assert_eq!(port, 1);
    assert_eq!(d.params[&HVM_PARAM_STORE_PFN], 4 * 256 + 1);
    assert_eq!(d.params[&HVM_PARAM_STORE_EVTCHN], 2);
}

#[test]
fn vcpu0_gets_the_pvh_entry_state_xen_core_accepts() {
    // The register set xen-core's SET_VCPU_CONTEXT tests accept
    // (`xen-core/src/hypercall/control/tests.rs`, `pvh_regs`).
    let r = pvh_vcpu_context(PvhEntry {
        entry: 0x10_0000,
        start_info_gpa: 0x5000,
    });
    assert_eq!(
        (r.eip, r.ebx, r.eflags, r.cr0),
        (0x10_0000, 0x5000, 2, 0x11)
    );
    assert_eq!(
        (r.cs_ar, r.ds_ar, r.ss_ar, r.es_ar),
        (0xc9b, 0xc93, 0xc93, 0xc93)
    );
    assert_eq!((r.tr_ar, r.tr_limit), (0x8b, 0x67));
    for limit in [r.cs_limit, r.ds_limit, r.ss_limit, r.es_limit] {
        assert_eq!(limit, u32::MAX);
    }
    let others = [
        r.eax, r.ecx, r.edx, r.esp, r.ebp, r.esi, r.edi, r.cr3, r.cr4,
    ];
    assert!(others.iter().all(|v| *v == 0));
    assert_eq!(r.efer, 0);
}

#[test]
fn a_kernel_spanning_windows_is_loaded_in_bounded_maps() {
    // 3 MiB of code from 1 MiB: crosses the 2 MiB window boundary.
    let code: Vec<u8> = (0..3u32 << 20).map(|i| (i % 253) as u8).collect();
    let segs = [
        xen_note(18, &KERNEL_GPA.to_le_bytes()),
        load(KERNEL_GPA, &code, code.len() as u64),
    ];
    let image = elf(true, EM_X86_64, &segs);
    let mut hv = Fake::new(FREE_KIB);
    let s = DomainSpec {
        memory_mib: 8,
        ..spec("big", &image)
    };
    let domid = create_domain(&mut hv, &s).unwrap();
    assert_eq!(hv.read(domid, KERNEL_GPA, code.len()).unwrap(), code);
    let maps = hv.calls.iter().filter(|c| **c == Call::MapForeign).count();
    let unmaps = hv
        .calls
        .iter()
        .filter(|c| **c == Call::UnmapForeign)
        .count();
    assert!(maps >= 2, "more than one window: {maps}");
    assert_eq!(maps, unmaps);
}

/// Every call of a successful create, failed in turn, leaves nothing.
#[test]
fn a_failure_at_any_step_leaves_nothing_behind() {
    let image = image();
    for s in [spec("g", &image), scheduled("g", &image)] {
        fail_each_call(&s);
    }
}

fn fail_each_call(s: &DomainSpec) {
    let mut ok = Fake::new(FREE_KIB);
    create_domain(&mut ok, s).unwrap();
    for at in 0..ok.calls.len() {
        let mut hv = Fake::new(FREE_KIB);
        hv.fail_at = vec![(at, Errno::EIO)];
        let err = create_domain(&mut hv, s).unwrap_err();
        assert_clean(&hv);
        let failed = ok.calls[at];
        match err {
            CreateError::Hypervisor { op, errno } => {
                assert_eq!(errno, Errno::EIO, "call {at} ({failed:?})");
                assert_eq!(op, op_of(&ok.calls[..at], failed), "call {at}");
            }
            e => panic!("call {at} ({failed:?}): {e:?}"),
        }
        let destroyed = hv.calls.contains(&Call::Destroy);
        assert_eq!(destroyed, at > 1, "destroyed iff created (call {at})");
    }
}

/// The step `call` belongs to, given the calls before it (the console's
/// port and params come before the store's).
fn op_of(before: &[Call], call: Call) -> Op {
    let store = before.contains(&Call::AllocUnbound)
        && (call == Call::AllocUnbound
            || before.iter().filter(|c| **c == Call::AllocUnbound).count() > 1);
    match call {
        Call::AllocUnbound if store => Op::StoreEvtchn,
        Call::SetParam if store => Op::StoreParams,
        Call::Physinfo => Op::Physinfo,
        Call::Create => Op::Create,
        Call::Populate => Op::Populate,
        Call::MapForeign => Op::MapForeign,
        Call::WriteForeign | Call::ZeroForeign => Op::WriteForeign,
        Call::UnmapForeign => Op::UnmapForeign,
        Call::AllocUnbound => Op::ConsoleEvtchn,
        Call::SetParam => Op::ConsoleParams,
        Call::SetMemoryMap => Op::MemoryMap,
        Call::SetVcpuContext => Op::SetVcpuContext,
        Call::SchedCredit => Op::SchedCredit,
        Call::VcpuAffinity => Op::VcpuAffinity,
        Call::Unpause => Op::Unpause,
        c => panic!("create_domain does not call {c:?}"),
    }
}

#[test]
fn the_configured_scheduling_is_set_before_the_first_unpause() {
    let image = image();
    let mut hv = Fake::new(FREE_KIB);
    let domid = create_domain(&mut hv, &scheduled("g", &image)).unwrap();
    let d = &hv.domains[&domid];
    assert_eq!(d.sched, (512, 50));
    assert_eq!(d.affinity.iter().collect::<Vec<_>>(), [(&0, &1), (&1, &1)]);
    let at = |call| hv.calls.iter().position(|c| *c == call).unwrap();
    assert!(at(Call::SchedCredit) < at(Call::Unpause));
    assert!(at(Call::VcpuAffinity) < at(Call::Unpause));
    // Nothing named, nothing set: the hypervisor's defaults stay.
    let mut hv = Fake::new(FREE_KIB);
    create_domain(&mut hv, &spec("g", &image)).unwrap();
    assert!(!hv.calls.contains(&Call::SchedCredit));
    assert!(!hv.calls.contains(&Call::VcpuAffinity));
}

#[test]
fn a_failed_cleanup_is_reported_with_its_cause() {
    let image = image();
    let mut hv = Fake::new(FREE_KIB);
    // Calls: physinfo, create, populate, map (fails), destroy (fails).
    hv.fail_at = vec![(3, Errno::ENOMEM), (4, Errno::EBUSY)];
    let err = create_domain(&mut hv, &spec("g", &image)).unwrap_err();
    assert_eq!(hv.calls[3..], [Call::MapForeign, Call::Destroy]);
    let domid = *hv.domains.keys().next().unwrap();
    assert_eq!(
        err,
        CreateError::NotCleanedUp {
            domid,
            destroy: Errno::EBUSY,
            cause: Box::new(CreateError::Hypervisor {
                op: Op::MapForeign,
                errno: Errno::ENOMEM
            }),
        }
    );
}

#[test]
fn bad_images_are_refused_before_anything_is_created() {
    let good = image();
    let no_note = elf(true, EM_X86_64, &[load(KERNEL_GPA, &[0x90; 16], 16)]);
    let high = elf(
        true,
        EM_X86_64,
        &[
            xen_note(18, &(8u64 << 20).to_le_bytes()),
            load(8 << 20, &[0x90; 16], 16),
        ],
    );
    let cases: [(&[u8], &str, BuildError); 4] = [
        (b"not an ELF at all", "", BuildError::NotElf),
        (&no_note, "", BuildError::NoPvhNote),
        (
            &high,
            "",
            BuildError::SegmentOutsideRam {
                gpa: 8 << 20,
                memsz: 16,
            },
        ),
        (&good, "nul\0inside", BuildError::BadCmdline),
    ];
    for (image, cmdline, want) in cases {
        let mut hv = Fake::new(FREE_KIB);
        let s = DomainSpec {
            cmdline,
            ..spec("g", image)
        };
        assert_eq!(create_domain(&mut hv, &s), Err(CreateError::Image(want)));
        assert!(hv.calls.is_empty(), "{want:?}: no hypercall at all");
    }
}

#[test]
fn too_little_free_memory_is_refused_before_create() {
    let image = image();
    let mut hv = Fake::new(4 << 10);
    let err = create_domain(&mut hv, &spec("g", &image)).unwrap_err();
    match err {
        CreateError::NotEnoughMemory {
            needed_kib,
            free_kib,
        } => {
            assert_eq!(free_kib, 4 << 10);
            // What a 4 MiB domain took from xen-core under QEMU: 1025
            // frames of memory (now 1026 with the store ring), 3 NPT
            // leaf pages, 5 more.
            assert_eq!(needed_kib, 1034 * 4);
        }
        e => panic!("{e:?}"),
    }
    assert_eq!(hv.calls, [Call::Physinfo]);
    assert!(hv.domains.is_empty());
    let msg = err.to_string();
    assert!(msg.contains("not enough free memory") && msg.contains("4096 KiB"));
}

#[test]
fn bad_parameters_are_refused_without_a_hypercall() {
    let image = image();
    let long = "x".repeat(33);
    let cases = [
        (spec("", &image), CreateError::BadName),
        (spec(&long, &image), CreateError::BadName),
        (spec("a\0b", &image), CreateError::BadName),
        (
            DomainSpec {
                vcpus: 0,
                ..spec("g", &image)
            },
            CreateError::BadVcpus(0),
        ),
        (
            DomainSpec {
                vcpus: MAX_VCPUS_SUPPORTED + 1,
                ..spec("g", &image)
            },
            CreateError::BadVcpus(MAX_VCPUS_SUPPORTED + 1),
        ),
        (
            DomainSpec {
                memory_mib: 0,
                ..spec("g", &image)
            },
            CreateError::NoMemory,
        ),
    ];
    for (s, want) in cases {
        let mut hv = Fake::new(FREE_KIB);
        assert_eq!(create_domain(&mut hv, &s), Err(want));
        assert!(hv.calls.is_empty());
    }
}

#[test]
fn duplicate_names_and_a_full_table_are_named() {
    let image = image();
    let mut hv = Fake::new(FREE_KIB);
    hv.max_domains = 2;
    create_domain(&mut hv, &spec("a", &image)).unwrap();
    let before = hv.free_kib;
    assert_eq!(
        create_domain(&mut hv, &spec("a", &image)),
        Err(CreateError::DuplicateName)
    );
    create_domain(&mut hv, &spec("b", &image)).unwrap();
    assert_eq!(
        create_domain(&mut hv, &spec("c", &image)),
        Err(CreateError::TooManyDomains)
    );
    assert_eq!(hv.domains.len(), 2);
    assert_eq!(hv.free_kib, before - (4 * 1024 + 8));
}

#[test]
fn messages_name_the_reason() {
    let cases = [
        (
            CreateError::Image(BuildError::NoPvhNote),
            "bad kernel image: no XEN_ELFNOTE_PHYS32_ENTRY note",
        ),
        (
            CreateError::Hypervisor {
                op: Op::Populate,
                errno: Errno::ENOMEM,
            },
            "hypervisor error giving the domain its memory: -ENOMEM",
        ),
        (CreateError::DuplicateName, "a domain with this name exists"),
        (CreateError::TooManyDomains, "too many domains"),
        (CreateError::BadVcpus(0), "invalid vCPU count 0"),
        (
            CreateError::NotCleanedUp {
                domid: 7,
                destroy: Errno::EBUSY,
                cause: Box::new(CreateError::Hypervisor {
                    op: Op::Unpause,
                    errno: Errno::EINVAL,
                }),
            },
            "unpausing the domain: -EINVAL; destroying the half-built domain 7 failed too (-EBUSY)",
        ),
    ];
    for (e, want) in cases {
        assert!(e.to_string().contains(want), "{e} / {want}");
    }
}

#[test]
fn list_follows_the_cursor_over_batches() {
    let image = image();
    let mut hv = Fake::new(FREE_KIB << 4);
    hv.max_domains = 40;
    for i in 0..37 {
        let name = format!("d{i}");
        let s = DomainSpec {
            memory_mib: 2,
            ..spec(&name, &image)
        };
        create_domain(&mut hv, &s).unwrap();
    }
    let all = list_domains(&mut hv).unwrap();
    assert_eq!(all.len(), 37);
    assert!(all.windows(2).all(|w| w[0].domid < w[1].domid));
    assert_eq!(
        hv.calls.iter().filter(|c| **c == Call::DomainList).count(),
        3
    );
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(48))]

    /// Whatever the size, command line and failing call: either the
    /// domain runs with all its memory, or nothing is left.
    #[test]
    fn create_is_all_or_nothing(
        memory_mib in 1u32..12,
        cmdline in "[a-z=0-9 ]{0,64}",
        fail_at in proptest::option::of(0usize..40),
    ) {
        let image = image();
        let mut hv = Fake::new(FREE_KIB);
        hv.fail_at = fail_at.into_iter().map(|at| (at, Errno::EIO)).collect();
        let s = DomainSpec { memory_mib, cmdline: &cmdline, ..spec("p", &image) };
        match create_domain(&mut hv, &s) {
            Ok(domid) => {
                let d = &hv.domains[&domid];
                prop_assert_eq!(d.frames.len() as u64, u64::from(memory_mib) * 256 + 2);
                prop_assert_eq!(d.pause_count, 0);
                prop_assert!(d.vcpu0.is_some());
                prop_assert!(hv.mappings.is_empty());
                let maps = hv.calls.iter().filter(|c| **c == Call::MapForeign).count();
                prop_assert!(maps >= 1);
            }
            Err(_) => {
                prop_assert!(hv.domains.is_empty());
                prop_assert!(hv.mappings.is_empty());
                prop_assert_eq!(hv.free_kib, FREE_KIB);
            }
        }
    }
}

/// The streamed create ([`crate::StreamedDomain`]).
mod streamed {
    use super::*;
    use crate::build_domain;
    use crate::{StreamSpec, StreamedDomain};

    fn stream_spec<'a>(name: &'a str, kernel: &[u8], ramdisk: &[u8]) -> StreamSpec<'a> {
        StreamSpec {
            name,
            memory_mib: 4,
            vcpus: 2,
            cmdline: "console=hvc0 ticks=3",
            kernel_len: kernel.len() as u64,
            ramdisk_len: ramdisk.len() as u64,
            sched: crate::SchedSpec::default(),
        }
    }

    /// Streams `kernel` then `ramdisk` in 1000-byte pieces.
    fn create(
        hv: &mut Fake,
        name: &str,
        kernel: &[u8],
        ramdisk: &[u8],
    ) -> Result<DomId, CreateError> {
        let mut d = StreamedDomain::begin(hv, &stream_spec(name, kernel, ramdisk))?;
        let all: Vec<u8> = kernel.iter().chain(ramdisk).copied().collect();
        for piece in all.chunks(1000) {
            d = d.push(hv, piece)?;
            assert!(
                hv.mappings.is_empty(),
                "nothing stays mapped between pieces"
            );
        }
        d.finish(hv)
    }

    #[test]
    fn a_streamed_domain_gets_the_kernel_and_its_ramdisk_as_module() {
        let mut hv = Fake::new(FREE_KIB);
        let image = image();
        let ramdisk: Vec<u8> = (0..10_000u32).map(|i| (i % 249) as u8).collect();
        let domid = create(&mut hv, "streamed", &image, &ramdisk).unwrap();
        let d = &hv.domains[&domid];
        assert_eq!(d.pause_count, 1, "left paused for its devices");
        let code = kernel_code();
        assert_eq!(hv.read(domid, KERNEL_GPA, code.len()).unwrap(), code);
        let regs = d.vcpu0.expect("vCPU 0 has its context");
        assert_eq!(regs.eip as u64, KERNEL_GPA);
        let si = start_info(&hv, domid, regs.ebx);
        assert_eq!(si.nr_modules, 1);
        let entry = hv.read(domid, si.modlist_paddr, 16).unwrap();
        let paddr = u64::from_le_bytes(entry[..8].try_into().unwrap());
        let size = u64::from_le_bytes(entry[8..].try_into().unwrap());
        assert_eq!(size, ramdisk.len() as u64);
        assert_eq!(hv.read(domid, paddr, ramdisk.len()).unwrap(), ramdisk);
        assert_eq!(
            d.params[&HVM_PARAM_CONSOLE_PFN],
            4 * 256,
            "the console as the buffered create sets it"
        );
        assert_eq!(d.params[&HVM_PARAM_STORE_PFN], 4 * 256 + 1);

        // The same kernel without a ramdisk: the memory the buffered
        // build writes.
        let streamed = create(&mut hv, "plain", &image, &[]).unwrap();
        let buffered = build_domain(&mut hv, &spec("buffered", &image)).unwrap();
        assert_eq!(hv.read(streamed, 0, 4 << 20), hv.read(buffered, 0, 4 << 20));
    }

    #[test]
    fn a_bad_stream_destroys_the_half_built_domain() {
        let image = image();
        let mut hv = Fake::new(FREE_KIB);
        // The file is shorter than its segments say.
        let mut short = stream_spec("short", &image, &[]);
        short.kernel_len -= 1;
        let d = StreamedDomain::begin(&mut hv, &short).unwrap();
        assert!(
            !hv.domains.is_empty(),
            "the domain exists while the kernel arrives"
        );
        assert_eq!(
            d.push(&mut hv, &image[..image.len() - 1]).unwrap_err(),
            CreateError::Image(BuildError::SegmentTruncated)
        );
        assert_clean(&hv);
        // A ramdisk that does not fit in the domain's memory.
        let big = stream_spec("big", &image, &[0; 8 << 20]);
        let d = StreamedDomain::begin(&mut hv, &big).unwrap();
        assert_eq!(
            d.push(&mut hv, &image).unwrap_err(),
            CreateError::Image(BuildError::NoRoomForBootInfo)
        );
        assert_clean(&hv);
        // Finished early.
        let d = StreamedDomain::begin(&mut hv, &stream_spec("early", &image, &[1])).unwrap();
        let d = d.push(&mut hv, &image).unwrap();
        assert_eq!(
            d.finish(&mut hv).unwrap_err(),
            CreateError::Image(BuildError::StreamIncomplete)
        );
        assert_clean(&hv);
        // Given up by its client.
        let d = StreamedDomain::begin(&mut hv, &stream_spec("gone", &image, &[])).unwrap();
        d.abort(&mut hv).unwrap();
        assert_clean(&hv);
        // More memory than is free: nothing is created.
        let mut huge = stream_spec("huge", &image, &[]);
        huge.memory_mib = 1024;
        assert!(matches!(
            StreamedDomain::begin(&mut hv, &huge),
            Err(CreateError::NotEnoughMemory { .. })
        ));
        assert_clean(&hv);
    }
}

#[test]
fn a_configs_sched_fields_are_the_specs() {
    use mgmt::sched::{CpuSet, SchedConfig};
    let config = SchedConfig {
        cpus: CpuSet::parse("1,3"),
        weight: Some(512),
        cap: Some(50),
    };
    let spec = SchedSpec {
        affinity: Some(0b1010),
        weight: Some(512),
        cap: Some(50),
    };
    assert_eq!(SchedSpec::from(&config), spec);
    assert_eq!(
        SchedSpec::from(&SchedConfig::default()),
        SchedSpec::default()
    );
}
