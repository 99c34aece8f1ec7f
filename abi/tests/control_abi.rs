//! Layout snapshot of the control ABI.
//!
//! Writes the size, alignment and every field's offset and size of every
//! control type, and the value of every control constant, and compares
//! them with `control_abi.snapshot`. The file also records, per published
//! version, a digest of its layout, so a layout can only change together
//! with CONTROL_ABI_MAJOR/MINOR. Regenerate after bumping the version:
//! `UPDATE_ABI_SNAPSHOT=1 cargo test -p abi --test control_abi`.

use core::fmt::Write;
use core::mem::{align_of, offset_of, size_of, size_of_val};
use std::path::PathBuf;

use abi::control::*;
use zerocopy::FromZeros;

/// Appends a type's layout; fails if the listed fields do not cover it.
macro_rules! layout {
    ($out:ident, $t:ident { $($f:ident),* $(,)? }) => {{
        let v = <$t as FromZeros>::new_zeroed();
        writeln!($out, "type {} size={} align={}", stringify!($t), size_of::<$t>(), align_of::<$t>()).unwrap();
        let mut covered = 0;
        $(
            writeln!($out, "  {}.{} offset={} size={}", stringify!($t), stringify!($f), offset_of!($t, $f), size_of_val(&v.$f)).unwrap();
            covered += size_of_val(&v.$f);
        )*
        assert_eq!(covered, size_of::<$t>(), "{}: list every field in the snapshot test", stringify!($t));
    }};
}

/// Appends constants' values.
macro_rules! consts {
    ($out:ident, $($c:ident),* $(,)?) => {
        $( writeln!($out, "const {} = {:#x}", stringify!($c), $c).unwrap(); )*
    };
}

fn current_layout() -> String {
    let mut out = String::new();
    consts!(
        out,
        CONTROL_ABI_MAJOR,
        CONTROL_ABI_MINOR,
        CONTROL_INTERFACE_VERSION,
        HYPERVISOR_CONTROL_OP,
        CONTROL_OP_GETINFO,
        CONTROL_OP_LIST,
        CONTROL_OP_CREATE,
        CONTROL_OP_DESTROY,
        CONTROL_OP_PAUSE,
        CONTROL_OP_UNPAUSE,
        CONTROL_OP_POPULATE_MEMORY,
        CONTROL_OP_MAP_FOREIGN,
        CONTROL_OP_UNMAP_FOREIGN,
        CONTROL_OP_SET_VCPU_CONTEXT,
        CONTROL_OP_GET_STATS,
        CONTROL_OP_PHYSINFO,
        CONTROL_OP_READCONSOLE,
        CONTROL_OP_SET_MAX_MEM,
        CONTROL_OP_GET_VCPU_STATS,
        CONTROL_OP_SCHED_CREDIT,
        CONTROL_OP_SET_VCPU_AFFINITY,
        VCPU_STATE_DOWN,
        VCPU_STATE_RUNNABLE,
        VCPU_STATE_BLOCKED,
        VCPU_STATE_RUNNING,
        VCPU_STATE_PAUSED,
        SCHED_PRI_OVER,
        SCHED_PRI_UNDER,
        SCHED_PRI_BOOST,
        VCPU_FLAG_PARKED,
        PCPU_NONE,
        SCHED_WEIGHT_UNCHANGED,
        SCHED_CAP_UNCHANGED,
        READCONSOLE_MAX,
        DOMAIN_NAME_MAX,
        MAX_VCPUS_PER_DOMAIN,
        MAX_VCPUS_SUPPORTED,
        PAUSE_COUNT_MAX,
        LIST_BATCH_MAX,
        CREATE_FLAGS_VALID,
        POPULATE_MAX_FRAMES,
        MAP_MAX_FRAMES,
        STATS_EXIT_CODES_MAX,
        STATS_HYPERCALL_SLOTS,
        DOMAIN_FLAG_DYING,
        DOMAIN_FLAG_SHUTDOWN,
        DOMAIN_FLAG_PAUSED,
        DOMAIN_FLAG_BLOCKED,
        DOMAIN_FLAG_RUNNING,
        DOMAIN_FLAG_PRIVILEGED,
        SHUTDOWN_POWEROFF,
        SHUTDOWN_REBOOT,
        SHUTDOWN_SUSPEND,
        SHUTDOWN_CRASH,
        SHUTDOWN_WATCHDOG,
        SHUTDOWN_SOFT_RESET,
    );
    layout!(
        out,
        ControlHeader {
            interface_version,
            pad
        }
    );
    layout!(out, DomainRequest { header, domid, pad });
    layout!(
        out,
        DomainInfo {
            domid,
            pad0,
            flags,
            shutdown_reason,
            nr_vcpus,
            memory_kib,
            max_memory_kib,
            cpu_time_ns,
            name
        }
    );
    layout!(
        out,
        ListRequest {
            header,
            start_domid,
            pad
        }
    );
    layout!(
        out,
        ListResponse {
            nr_entries,
            next_domid,
            pad,
            domains
        }
    );
    layout!(
        out,
        CreateRequest {
            header,
            name,
            max_memory_kib,
            max_vcpus,
            flags
        }
    );
    layout!(out, CreateResponse { domid, pad });
    layout!(
        out,
        PopulateRequest {
            header,
            domid,
            pad,
            first_gfn,
            nr_frames
        }
    );
    layout!(out, PopulateResponse { nr_done });
    layout!(
        out,
        VcpuStats {
            vcpu_id,
            state,
            pcpu,
            priority,
            credit,
            flags,
            affinity,
            cpu_time_ns,
            exits,
            hypercalls,
            events,
            wakes,
            runs
        }
    );
    layout!(
        out,
        VcpuStatsResponse {
            system_time_ns,
            weight,
            cap,
            nr_vcpus,
            vcpus
        }
    );
    layout!(
        out,
        SchedCreditRequest {
            header,
            domid,
            weight,
            cap,
            pad
        }
    );
    layout!(out, SchedCreditInfo { weight, cap, pad });
    layout!(
        out,
        VcpuAffinityRequest {
            header,
            domid,
            pad,
            vcpu_id,
            affinity
        }
    );
    layout!(out, VcpuAffinityResponse { effective });
    layout!(
        out,
        SetMaxMemRequest {
            header,
            domid,
            pad,
            max_memkb
        }
    );
    layout!(
        out,
        MapRequest {
            header,
            domid,
            pad,
            nr_frames,
            first_gfn,
            caller_gfn
        }
    );
    layout!(
        out,
        UnmapRequest {
            header,
            nr_frames,
            pad,
            caller_gfn
        }
    );
    layout!(
        out,
        VcpuHvmX86_32 {
            eax,
            ecx,
            edx,
            ebx,
            esp,
            ebp,
            esi,
            edi,
            eip,
            eflags,
            cr0,
            cr3,
            cr4,
            pad1,
            efer,
            cs_base,
            ds_base,
            ss_base,
            es_base,
            tr_base,
            cs_limit,
            ds_limit,
            ss_limit,
            es_limit,
            tr_limit,
            cs_ar,
            ds_ar,
            ss_ar,
            es_ar,
            tr_ar,
            pad2,
        }
    );
    layout!(
        out,
        SetVcpuContextRequest {
            header,
            domid,
            pad,
            vcpu,
            regs
        }
    );
    layout!(out, ExitCounter { exit_code, count });
    layout!(
        out,
        DomainStats {
            cpu_time_ns,
            nr_vcpus,
            nr_exit_codes,
            exits,
            hypercalls
        }
    );
    layout!(
        out,
        Physinfo {
            nr_pcpus,
            nr_domains,
            total_memory_kib,
            free_memory_kib,
            tsc_khz
        }
    );
    layout!(
        out,
        ReadConsoleRequest {
            header,
            buffer,
            size,
            pad,
            offset
        }
    );
    layout!(out, ReadConsoleResponse { count, pad, total });
    out
}

const HEADER: &str = "\
# Control ABI layout snapshot, checked by abi/tests/control_abi.rs.
# Change it only together with CONTROL_ABI_MAJOR/MINOR (abi/src/control/mod.rs),
# by running: UPDATE_ABI_SNAPSHOT=1 cargo test -p abi --test control_abi
# 'published' lines record a digest of each version's layout; never edit them.
";

fn version() -> String {
    format!("{CONTROL_ABI_MAJOR}.{CONTROL_ABI_MINOR}")
}

/// FNV-1a, 64 bits: a stable digest without extra dependencies.
fn digest(text: &str) -> String {
    let hash = text.bytes().fold(0xcbf2_9ce4_8422_2325_u64, |h, b| {
        (h ^ u64::from(b)).wrapping_mul(0x100_0000_01b3)
    });
    format!("{hash:016x}")
}

struct Snapshot {
    /// File line number (1-based) of the first layout line.
    layout_start: usize,
    /// (version, digest) of every published version, oldest first.
    published: Vec<(String, String)>,
    /// The version the layout below belongs to.
    version: String,
    /// The layout lines.
    layout: String,
}

fn parse(text: &str) -> Snapshot {
    let mut snap = Snapshot {
        layout_start: 0,
        published: Vec::new(),
        version: String::new(),
        layout: String::new(),
    };
    for (number, line) in (1..).zip(text.lines()) {
        if line.starts_with('#') {
            continue;
        }
        if let Some(rest) = line.strip_prefix("published ") {
            let (v, d) = rest
                .split_once(' ')
                .expect("published line: 'published VERSION DIGEST'");
            snap.published.push((v.to_string(), d.to_string()));
        } else if let Some(v) = line.strip_prefix("version ") {
            snap.version = v.to_string();
        } else {
            if snap.layout.is_empty() {
                snap.layout_start = number;
            }
            snap.layout.push_str(line);
            snap.layout.push('\n');
        }
    }
    snap
}

fn render(snap: &Snapshot) -> String {
    let mut out = String::from(HEADER);
    for (v, d) in &snap.published {
        writeln!(out, "published {v} {d}").unwrap();
    }
    writeln!(out, "version {}", snap.version).unwrap();
    out + &snap.layout
}

/// Lines only in `old` (-) and only in `new` (+), each with its line number.
/// Layout lines only in the snapshot (-, with their line in the file) and
/// only in the code (+). Lines are unique (each names its type), so set
/// difference is exact.
fn changed_lines(snap: &Snapshot, current: &str) -> String {
    let old: Vec<&str> = snap.layout.lines().collect();
    let new: Vec<&str> = current.lines().collect();
    let mut out = String::new();
    for (i, l) in old.iter().enumerate().filter(|(_, l)| !new.contains(l)) {
        writeln!(out, "  - (snapshot line {}) {l}", snap.layout_start + i).unwrap();
    }
    for l in new.iter().filter(|l| !old.contains(l)) {
        writeln!(out, "  + (current line) {l}").unwrap();
    }
    out
}

/// Why `snap` does not match the code, or `None` if it does.
fn mismatch(snap: &Snapshot, layout: &str) -> Option<String> {
    let version = version();
    if snap.version != version {
        return Some(format!(
            "the snapshot records control ABI {} but CONTROL_ABI_MAJOR/MINOR say {version}: the snapshot file and \
             the version must be changed together (regenerate with UPDATE_ABI_SNAPSHOT=1)",
            snap.version
        ));
    }
    if snap.layout != layout {
        return Some(format!(
            "the control ABI layout differs from abi/tests/control_abi.snapshot:\n{}\
             Change the snapshot file AND CONTROL_ABI_MAJOR (incompatible change) or CONTROL_ABI_MINOR \
             (addition) together: bump the version, then run UPDATE_ABI_SNAPSHOT=1 cargo test -p abi --test control_abi",
            changed_lines(snap, layout)
        ));
    }
    match snap.published.iter().find(|(v, _)| *v == version) {
        Some((_, d)) if *d == digest(layout) => None,
        Some(_) => Some(format!(
            "control ABI {version} was published with a different layout: the file was changed without bumping \
             CONTROL_ABI_MAJOR/MINOR; bump the version and regenerate"
        )),
        None => Some(format!("the snapshot has no 'published {version}' line; regenerate with UPDATE_ABI_SNAPSHOT=1")),
    }
}

/// The snapshot for `layout`, or why it may not be written: a published
/// version's layout never changes.
fn updated(old: Option<Snapshot>, layout: &str) -> Result<Snapshot, String> {
    let version = version();
    let mut published = old.map(|s| s.published).unwrap_or_default();
    match published.iter().find(|(v, _)| *v == version) {
        Some((_, d)) if *d != digest(layout) => {
            return Err(format!(
            "refusing to update: control ABI {version} is already published with another layout; \
                 bump CONTROL_ABI_MAJOR or CONTROL_ABI_MINOR first"
        ))
        }
        Some(_) => {}
        None => published.push((version.clone(), digest(layout))),
    }
    Ok(Snapshot {
        layout_start: 0,
        published,
        version,
        layout: layout.to_string(),
    })
}

fn snapshot_path() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/control_abi.snapshot")
}

#[test]
fn control_abi_matches_snapshot() {
    let layout = current_layout();
    let path = snapshot_path();
    let existing = std::fs::read_to_string(&path).ok().map(|t| parse(&t));
    if std::env::var_os("UPDATE_ABI_SNAPSHOT").is_some() {
        let snap = updated(existing, &layout).unwrap_or_else(|e| panic!("{e}"));
        std::fs::write(&path, render(&snap)).expect("write the snapshot");
        return;
    }
    let snap = existing.unwrap_or_else(|| {
        panic!(
            "{} is missing; create it with UPDATE_ABI_SNAPSHOT=1",
            path.display()
        )
    });
    if let Some(why) = mismatch(&snap, &layout) {
        panic!("{why}");
    }
}

#[test]
fn snapshot_rules_catch_every_kind_of_drift() {
    let layout = current_layout();
    let good = updated(None, &layout).unwrap();
    assert_eq!(mismatch(&good, &layout), None);
    assert_eq!(
        mismatch(&parse(&render(&good)), &layout),
        None,
        "render/parse round trip"
    );

    // A field moved: the message names the changed lines and the rule.
    let moved = layout.replace(
        "MapRequest.nr_frames offset=12",
        "MapRequest.nr_frames offset=14",
    );
    assert_ne!(moved, layout);
    let why = mismatch(&good, &moved).unwrap();
    assert!(
        why.contains("- (snapshot line") && why.contains("MapRequest.nr_frames offset=12"),
        "{why}"
    );
    assert!(
        why.contains("+ (current line") && why.contains("MapRequest.nr_frames offset=14"),
        "{why}"
    );
    assert!(why.contains("AND CONTROL_ABI_MAJOR"), "{why}");

    // The file regenerated without a version bump: refused, and a
    // hand-edited layout under the old version fails the digest check.
    assert!(updated(Some(parse(&render(&good))), &moved).is_err());
    let hand_edited = Snapshot {
        layout: moved.clone(),
        ..parse(&render(&good))
    };
    assert!(mismatch(&hand_edited, &moved)
        .unwrap()
        .contains("published with a different layout"));

    // The file records another version than the constants.
    let other = Snapshot {
        version: "0.9".into(),
        ..parse(&render(&good))
    };
    assert!(mismatch(&other, &layout)
        .unwrap()
        .contains("must be changed together"));
}
