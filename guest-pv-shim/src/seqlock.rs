//! Version-guarded reads of fields the hypervisor rewrites under the
//! guest's feet: `vcpu_time_info` (`version`) and the shared-info wall
//! clock (`wc_version`), `xen/include/public/xen.h`.

use core::sync::atomic::{compiler_fence, Ordering};

/// How often a read is retried before giving up: the hypervisor holds the
/// version odd only while it rewrites the fields.
pub const MAX_READ_RETRIES: u32 = 1000;

/// Reads `fields()` until `version()` was even and unchanged around it
/// (the hypervisor makes it odd while updating, and bumps it after).
/// `None` after [`MAX_READ_RETRIES`] torn reads.
pub fn read_consistent<T>(
    mut version: impl FnMut() -> u32,
    mut fields: impl FnMut() -> T,
) -> Option<T> {
    for _ in 0..MAX_READ_RETRIES {
        let before = version();
        compiler_fence(Ordering::Acquire);
        let value = fields();
        compiler_fence(Ordering::Acquire);
        if before.is_multiple_of(2) && version() == before {
            return Some(value);
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::cell::Cell;

    #[test]
    fn stable_version_reads_once() {
        let reads = Cell::new(0);
        let got = read_consistent(
            || 4,
            || {
                reads.set(reads.get() + 1);
                42
            },
        );
        assert_eq!((got, reads.get()), (Some(42), 1));
    }

    #[test]
    fn retries_while_odd_or_changed() {
        // Reads: 5 (odd: updating), 6 then 8 (changed under us), 8 and 8.
        let versions = [5, 6, 8, 8, 8];
        let at = Cell::new(0);
        let version = || {
            let v = versions[at.get()];
            at.set(at.get() + 1);
            v
        };
        let data = Cell::new(0);
        let got = read_consistent(version, || {
            data.set(data.get() + 1);
            data.get()
        });
        assert_eq!(got, Some(3));
    }

    #[test]
    fn gives_up_on_a_stuck_update() {
        assert_eq!(read_consistent(|| 7, || ()), None);
        let v = Cell::new(0u32);
        let racing = || {
            v.set(v.get() + 2);
            v.get()
        };
        assert_eq!(read_consistent(racing, || ()), None);
    }
}
