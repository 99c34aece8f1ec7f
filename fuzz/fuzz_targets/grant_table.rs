//! Grant tables through the door: both domains map their grant frames,
//! write any entries (flags, grantee, frame), and map, unmap, copy,
//! query and set up each other's grants in any order, with dom0 able to
//! destroy the domU in the middle.
#![no_main]

use abi::xen::grant_table::{
    GnttabCopy, GnttabCopyPtr, GnttabMapGrantRef, GnttabQuerySize, GnttabSetupTable,
    GnttabUnmapGrantRef, GrantEntryV1, GNTTABOP_COPY, GNTTABOP_MAP_GRANT_REF, GNTTABOP_QUERY_SIZE,
    GNTTABOP_SETUP_TABLE, GNTTABOP_UNMAP_GRANT_REF,
};
use abi::xen::hypercall::{GRANT_TABLE_OP, MEMORY_OP};
use abi::xen::memory::{XenAddToPhysmap, XENMAPSPACE_GRANT_TABLE, XENMEM_ADD_TO_PHYSMAP};
use arbitrary::Arbitrary;
use libfuzzer_sys::fuzz_target;
use xen_core_fuzz::{Arg, Door, Who, BUF2, EXTRA_GFN};

/// A GFN of the caller past its RAM, for grant frames and mappings.
fn slot_gpa(slot: u8) -> u64 {
    (EXTRA_GFN + u64::from(slot % 16)) << 12
}

#[derive(Arbitrary, Debug)]
struct CopyEnd {
    /// A grant reference (with `GNTCOPY_*_gref`) or a GFN.
    u: u16,
    who: Who,
    offset: u16,
}

impl CopyEnd {
    fn ptr(&self) -> GnttabCopyPtr {
        GnttabCopyPtr {
            u: self.u.into(),
            domid: self.who.domid(),
            offset: self.offset,
            pad0: 0,
        }
    }
}

#[derive(Arbitrary, Debug)]
enum Step {
    /// `XENMEM_add_to_physmap(XENMAPSPACE_grant_table)`: grant frame
    /// `idx` (the status bit included) at a slot.
    MapTableFrame { who: Who, idx: u32, slot: u8 },
    /// The granting guest writes an entry of a mapped grant frame.
    Entry {
        who: Who,
        slot: u8,
        r#ref: u16,
        flags: u16,
        grantee: Who,
        frame: u16,
    },
    /// `GNTTABOP_map_grant_ref` of `dom`'s `ref` at a slot of the caller.
    Map {
        who: Who,
        dom: Who,
        r#ref: u16,
        flags: u8,
        slot: u8,
    },
    /// `GNTTABOP_unmap_grant_ref` of `handle` at a slot.
    Unmap { who: Who, handle: u8, slot: u8 },
    /// `GNTTABOP_copy`.
    Copy {
        who: Who,
        source: CopyEnd,
        dest: CopyEnd,
        len: u16,
        flags: u8,
    },
    /// `GNTTABOP_setup_table`.
    Setup { who: Who, dom: Who, nr_frames: u8 },
    /// `GNTTABOP_query_size`.
    Query { who: Who, dom: Who },
    /// Any grant_table_op with the argument bytes given and any count.
    Raw {
        who: Who,
        cmd: u8,
        count: Arg,
        bytes: Vec<u8>,
    },
    /// dom0 destroys the domU (mappings of its grants may be live).
    DestroyDomU,
}

fn step(door: &mut Door, s: Step) {
    match s {
        Step::MapTableFrame { who, idx, slot } => {
            let arg = XenAddToPhysmap {
                domid: abi::xen::domid::DOMID_SELF,
                size: 0,
                space: XENMAPSPACE_GRANT_TABLE,
                idx: idx.into(),
                gpfn: slot_gpa(slot) >> 12,
            };
            door.op(who.domid(), MEMORY_OP, XENMEM_ADD_TO_PHYSMAP, &arg, 0);
        }
        Step::Entry {
            who,
            slot,
            r#ref,
            flags,
            grantee,
            frame,
        } => {
            let entry = GrantEntryV1 {
                flags,
                domid: grantee.domid(),
                frame: frame.into(),
            };
            let gpa = slot_gpa(slot) + u64::from(r#ref % 512) * 8;
            door.store(who.domid(), gpa, zerocopy::IntoBytes::as_bytes(&entry));
        }
        Step::Map {
            who,
            dom,
            r#ref,
            flags,
            slot,
        } => {
            let arg = GnttabMapGrantRef {
                host_addr: slot_gpa(slot),
                flags: flags.into(),
                r#ref: r#ref.into(),
                dom: dom.domid(),
                status: 0,
                handle: 0,
                dev_bus_addr: 0,
            };
            door.op(who.domid(), GRANT_TABLE_OP, GNTTABOP_MAP_GRANT_REF, &arg, 1);
        }
        Step::Unmap { who, handle, slot } => {
            let arg = GnttabUnmapGrantRef {
                host_addr: slot_gpa(slot),
                dev_bus_addr: 0,
                handle: handle.into(),
                status: 0,
                pad0: 0,
            };
            door.op(
                who.domid(),
                GRANT_TABLE_OP,
                GNTTABOP_UNMAP_GRANT_REF,
                &arg,
                1,
            );
        }
        Step::Copy {
            who,
            source,
            dest,
            len,
            flags,
        } => {
            let arg = GnttabCopy {
                source: source.ptr(),
                dest: dest.ptr(),
                len,
                flags: flags.into(),
                status: 0,
                pad0: 0,
            };
            door.op(who.domid(), GRANT_TABLE_OP, GNTTABOP_COPY, &arg, 1);
        }
        Step::Setup {
            who,
            dom,
            nr_frames,
        } => {
            let arg = GnttabSetupTable {
                dom: dom.domid(),
                pad0: 0,
                nr_frames: nr_frames.into(),
                status: 0,
                pad1: [0; 6],
                frame_list: BUF2,
            };
            door.op(who.domid(), GRANT_TABLE_OP, GNTTABOP_SETUP_TABLE, &arg, 1);
        }
        Step::Query { who, dom } => {
            let arg = GnttabQuerySize {
                dom: dom.domid(),
                pad0: 0,
                nr_frames: 0,
                max_nr_frames: 0,
                status: 0,
                pad1: 0,
            };
            door.op(who.domid(), GRANT_TABLE_OP, GNTTABOP_QUERY_SIZE, &arg, 1);
        }
        Step::Raw {
            who,
            cmd,
            count,
            bytes,
        } => {
            let n = bytes.len().min(xen_core_fuzz::MAX_STORE);
            door.op(
                who.domid(),
                GRANT_TABLE_OP,
                cmd.into(),
                &bytes[..n],
                count.value(),
            );
        }
        Step::DestroyDomU => {
            door.destroy_domu();
        }
    }
}

fuzz_target!(|steps: Vec<Step>| Door::run(steps, step));
