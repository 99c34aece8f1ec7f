//! The rules of `mem-set` and `mem-max` (protocol 2.6), as libxl's
//! `libxl_set_memory_target` and `libxl_domain_setmaxmem`
//! (`tools/libs/light/libxl_mem.c`) apply them to a domain's
//! `memory/target` and `memory/static-max` (KiB). The agent checks them
//! before it changes anything.

use crate::{DomId, MgmtError};

/// The least memory `mem-set` and `mem-max` give a domain, KiB: the
/// smallest a config may ask for (1 MiB). libxl has a floor for dom0
/// only (`LIBXL_MIN_DOM0_MEM`); dom0 here does not balloon at all.
pub const MEM_FLOOR_KIB: u64 = 1024;

/// A new target for `domid` whose `memory/static-max` is
/// `static_max_kib`: at most that, at least [`MEM_FLOOR_KIB`].
pub fn check_target(domid: DomId, target_kib: u64, static_max_kib: u64) -> Result<(), MgmtError> {
    check_floor(domid, target_kib)?;
    if target_kib > static_max_kib {
        return Err(MgmtError::MemoryAboveMax {
            domid,
            target_kib,
            max_kib: static_max_kib,
        });
    }
    Ok(())
}

/// A new maximum for `domid` whose `memory/target` is `target_kib`: at
/// least that (libxl: "memory_static_max must be greater than or equal
/// to memory_dynamic_max"), and at least [`MEM_FLOOR_KIB`].
pub fn check_max(domid: DomId, max_kib: u64, target_kib: u64) -> Result<(), MgmtError> {
    check_floor(domid, max_kib)?;
    if max_kib < target_kib {
        return Err(MgmtError::MaxBelowTarget {
            domid,
            max_kib,
            target_kib,
        });
    }
    Ok(())
}

fn check_floor(domid: DomId, kib: u64) -> Result<(), MgmtError> {
    if kib < MEM_FLOOR_KIB {
        return Err(MgmtError::MemoryBelowFloor {
            domid,
            kib,
            floor_kib: MEM_FLOOR_KIB,
        });
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use alloc::string::ToString;

    use super::*;

    #[test]
    fn a_target_lies_between_the_floor_and_static_max() {
        assert_eq!(check_target(3, 12 << 10, 16392), Ok(()));
        assert_eq!(check_target(3, 16392, 16392), Ok(()));
        assert_eq!(check_target(3, MEM_FLOOR_KIB, 16392), Ok(()));
        let above = check_target(3, 32 << 10, 16 << 10).unwrap_err();
        assert_eq!(
            above.to_string(),
            "cannot set the memory of domain 3 to 32 MiB: its maximum is 16 MiB (raise it first \
             with `dom0ctl mem-max 3 SIZE`)"
        );
        let low = check_target(3, 512, 16 << 10).unwrap_err();
        assert_eq!(
            low.to_string(),
            "cannot give domain 3 0.5 MiB: the least a domain may have is 1 MiB"
        );
    }

    #[test]
    fn a_maximum_is_at_least_the_target() {
        assert_eq!(check_max(3, 16 << 10, 16 << 10), Ok(()));
        assert_eq!(check_max(3, 1 << 20, 16 << 10), Ok(()));
        let below = check_max(3, 8 << 10, 12 << 10).unwrap_err();
        assert_eq!(
            below.to_string(),
            "cannot set the maximum memory of domain 3 to 8 MiB: its target is 12 MiB (lower it \
             first with `dom0ctl mem-set 3 SIZE`)"
        );
        assert!(matches!(
            check_max(3, 0, 0),
            Err(MgmtError::MemoryBelowFloor { kib: 0, .. })
        ));
    }
}
