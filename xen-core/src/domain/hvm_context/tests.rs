use super::*;

/// Every CR4 bit offered.
const ALL_CR4: u64 = u64::MAX;

fn good_32() -> VcpuHvmX86_32 {
    VcpuHvmX86_32 {
        esp: 0x9000,
        ..VcpuHvmX86_32::pvh_entry(0x10_0000, 0x8000)
    }
}

fn good_64() -> VcpuHvmX86_64 {
    VcpuHvmX86_64 {
        rip: 0xffff_8000_0010_0000,
        rsp: 0x20_0000,
        rdi: 1,
        rflags: 0x2,
        cr0: cr0::PG | cr0::PE | cr0::ET,
        cr3: 0x30_0000,
        cr4: cr4::PAE,
        efer: efer::LME | efer::NXE,
        ..Default::default()
    }
}

fn check_32(r: VcpuHvmX86_32) -> Result<VcpuEntryState, Errno> {
    entry_state(&VcpuHvmContext::x86_32(&r), ALL_CR4)
}

fn check_64(r: VcpuHvmX86_64) -> Result<VcpuEntryState, Errno> {
    entry_state(&VcpuHvmContext::x86_64(&r), ALL_CR4)
}

#[test]
fn a_32_bit_context_starts_as_given() {
    let e = check_32(good_32()).unwrap();
    assert_eq!((e.rip, e.gprs.rbx, e.gprs.rsp), (0x10_0000, 0x8000, 0x9000));
    assert_eq!(
        (e.cs.attrib, e.ds.attrib, e.tr.attrib),
        (0xc9b, 0xc93, 0x8b)
    );
    assert_eq!((e.rflags, e.cr0, e.efer), (2, 0x11, 0));
}

#[test]
fn a_64_bit_context_gets_xens_segments_and_lma() {
    let e = check_64(good_64()).unwrap();
    assert_eq!(
        (e.rip, e.gprs.rsp, e.gprs.rdi),
        (good_64().rip, 0x20_0000, 1)
    );
    assert_eq!(
        (e.cr3, e.efer),
        (0x30_0000, efer::LME | efer::LMA | efer::NXE)
    );
    assert_eq!(
        (e.cs.attrib, e.ss.attrib, e.tr.attrib),
        (0xa9b, 0xc93, 0x8b)
    );
    assert_eq!((e.tr.limit, e.cs.limit), (0x67, u32::MAX));
}

#[test]
fn present_segments_get_accessed_and_tr_busy() {
    let e = check_32(VcpuHvmX86_32 {
        cs_ar: 0xc9a,
        ds_ar: 0,
        tr_ar: 0x89,
        ..good_32()
    })
    .unwrap();
    assert_eq!((e.cs.attrib, e.ds.attrib, e.tr.attrib), (0xc9b, 0, 0x8b));
}

#[test]
fn rflags_keeps_architectural_bits_only() {
    let e = check_64(VcpuHvmX86_64 {
        rflags: u64::MAX,
        ..good_64()
    })
    .unwrap();
    assert_eq!(e.rflags, RFLAGS_ALL | RFLAGS_MBS);
}

#[test]
fn bad_header_is_einval() {
    let mut c = VcpuHvmContext::x86_64(&good_64());
    c.pad = 1;
    assert_eq!(entry_state(&c, ALL_CR4), Err(Errno::EINVAL));
    c.pad = 0;
    c.mode = 2;
    assert_eq!(entry_state(&c, ALL_CR4), Err(Errno::EINVAL));
}

#[test]
fn bad_32_bit_fields_are_einval() {
    let g = good_32();
    let bad = [
        ("pad1", VcpuHvmX86_32 { pad1: 1, ..g }),
        (
            "pad2",
            VcpuHvmX86_32 {
                pad2: [0, 1, 0],
                ..g
            },
        ),
        ("ar bits 12-15", VcpuHvmX86_32 { ds_ar: 0x1c93, ..g }),
        ("null CS", VcpuHvmX86_32 { cs_ar: 0, ..g }),
        ("null SS", VcpuHvmX86_32 { ss_ar: 0, ..g }),
        ("null TR", VcpuHvmX86_32 { tr_ar: 0, ..g }),
        ("TR not a TSS", VcpuHvmX86_32 { tr_ar: 0x93, ..g }),
        ("TR 16-bit TSS", VcpuHvmX86_32 { tr_ar: 0x83, ..g }),
        ("CS system", VcpuHvmX86_32 { cs_ar: 0xc8b, ..g }),
        ("CS not present", VcpuHvmX86_32 { cs_ar: 0xc1b, ..g }),
        ("CS data", VcpuHvmX86_32 { cs_ar: 0xc93, ..g }),
        ("SS code", VcpuHvmX86_32 { ss_ar: 0xc9b, ..g }),
        ("SS read-only", VcpuHvmX86_32 { ss_ar: 0xc91, ..g }),
        ("DS execute-only", VcpuHvmX86_32 { ds_ar: 0xc99, ..g }),
        (
            "EIP past CS limit",
            VcpuHvmX86_32 {
                cs_ar: 0x49b,
                cs_limit: 0xffff,
                eip: 0x1_0000,
                ..g
            },
        ),
        ("SS.DPL != CS.DPL", VcpuHvmX86_32 { ss_ar: 0xcf3, ..g }),
        ("DS.DPL > CS.DPL", VcpuHvmX86_32 { ds_ar: 0xcf3, ..g }),
        ("ES.DPL > CS.DPL", VcpuHvmX86_32 { es_ar: 0xcb3, ..g }),
        (
            "LMA without LME",
            VcpuHvmX86_32 {
                efer: efer::LMA,
                ..g
            },
        ),
        (
            "CR0.NW without CD",
            VcpuHvmX86_32 {
                cr0: 0x2000_0011,
                ..g
            },
        ),
        (
            "CR0.PG without PE",
            VcpuHvmX86_32 {
                cr0: 0x8000_0010,
                ..g
            },
        ),
        (
            "EFER.SVME",
            VcpuHvmX86_32 {
                efer: efer::SVME,
                ..g
            },
        ),
        ("EFER unknown bit", VcpuHvmX86_32 { efer: 1 << 20, ..g }),
        (
            "LME+PG without PAE",
            VcpuHvmX86_32 {
                cr0: 0x8000_0011,
                efer: efer::LME,
                ..g
            },
        ),
    ];
    for (what, r) in bad {
        assert_eq!(check_32(r).err(), Some(Errno::EINVAL), "{what}");
    }
}

#[test]
fn g_scales_the_cs_limit_for_the_eip_check() {
    let g = good_32();
    let r = VcpuHvmX86_32 {
        cs_ar: 0x49b,
        cs_limit: 0xf,
        eip: 0xffff,
        ..g
    };
    assert_eq!(check_32(r).err(), Some(Errno::EINVAL), "G clear: bytes");
    let r = VcpuHvmX86_32 {
        cs_limit: 0xf,
        cs_ar: 0x89b,
        eip: 0xffff,
        ..g
    };
    assert!(check_32(r).is_ok(), "G set: pages");
}

#[test]
fn bad_64_bit_fields_are_einval() {
    let g = good_64();
    let bad = [
        (
            "non-canonical RIP",
            VcpuHvmX86_64 {
                rip: 0x0000_8000_0000_0000,
                ..g
            },
        ),
        ("CR0.PG clear", VcpuHvmX86_64 { cr0: 0x11, ..g }),
        ("CR4.PAE clear", VcpuHvmX86_64 { cr4: 0, ..g }),
        ("EFER.LME clear", VcpuHvmX86_64 { efer: 0, ..g }),
        (
            "CR0 upper bits",
            VcpuHvmX86_64 {
                cr0: g.cr0 | 1 << 32,
                ..g
            },
        ),
        ("CR0.PG without PE", VcpuHvmX86_64 { cr0: cr0::PG, ..g }),
        ("CR3 bits 63:52", VcpuHvmX86_64 { cr3: 1 << 60, ..g }),
        (
            "EFER.FFXSE",
            VcpuHvmX86_64 {
                efer: g.efer | 1 << 14,
                ..g
            },
        ),
    ];
    for (what, r) in bad {
        assert_eq!(check_64(r).err(), Some(Errno::EINVAL), "{what}");
    }
}

#[test]
fn cr4_bits_the_guest_lacks_are_einval() {
    let r = VcpuHvmX86_64 {
        cr4: cr4::PAE | cr4::SMAP,
        ..good_64()
    };
    let ctx = VcpuHvmContext::x86_64(&r);
    assert_eq!(entry_state(&ctx, cr4::PAE), Err(Errno::EINVAL));
    assert!(entry_state(&ctx, cr4::PAE | cr4::SMAP).is_ok());
}
