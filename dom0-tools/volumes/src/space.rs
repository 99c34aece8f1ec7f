//! Free space between partitions: first fit for a new volume, and the
//! largest volume that would fit (for "disk full" errors).

use alloc::vec::Vec;

use crate::ALIGN_SECTORS;

/// The gaps between the `used` inclusive LBA ranges (any order) within
/// `first..=last`, each as the aligned start and the whole-MiB sectors
/// a volume there could have.
fn gaps(used: &[(u64, u64)], first: u64, last: u64) -> impl Iterator<Item = (u64, u64)> {
    let mut sorted: Vec<(u64, u64)> = used.to_vec();
    sorted.sort_unstable();
    let mut cursor = first;
    let mut spans = Vec::with_capacity(sorted.len() + 1);
    for (start, end) in sorted {
        if start > cursor {
            spans.push((cursor, start - 1));
        }
        cursor = cursor.max(end.saturating_add(1));
    }
    if cursor <= last {
        spans.push((cursor, last));
    }
    spans.into_iter().filter_map(move |(start, end)| {
        let end = end.min(last);
        let aligned = start.checked_next_multiple_of(ALIGN_SECTORS)?;
        let room = end.checked_add(1)?.checked_sub(aligned)?;
        let whole = room - room % ALIGN_SECTORS;
        (whole > 0).then_some((aligned, whole))
    })
}

/// Where a volume of `sectors` (a multiple of [`ALIGN_SECTORS`]) goes:
/// the first aligned gap that holds it.
pub(crate) fn first_fit(used: &[(u64, u64)], first: u64, last: u64, sectors: u64) -> Option<u64> {
    gaps(used, first, last)
        .find(|&(_, room)| room >= sectors)
        .map(|(start, _)| start)
}

/// The largest volume (sectors) that would fit now.
pub(crate) fn largest_free(used: &[(u64, u64)], first: u64, last: u64) -> u64 {
    gaps(used, first, last)
        .map(|(_, room)| room)
        .max()
        .unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;
    const A: u64 = ALIGN_SECTORS;

    #[test]
    fn fits_in_the_first_aligned_gap() {
        // Usable 34..=10*A-34; one volume at A..2A-1.
        let used = [(A, 2 * A - 1)];
        let last = 10 * A - 34;
        assert_eq!(first_fit(&used, 34, last, A), Some(2 * A));
        // The space before A is under 1 MiB once aligned: not a gap.
        assert_eq!(largest_free(&used, 34, last), 7 * A);
        assert_eq!(first_fit(&used, 34, last, 8 * A), None);
        assert_eq!(first_fit(&[], 34, last, 8 * A), Some(A));
    }

    #[test]
    fn a_hole_between_volumes_is_reused() {
        let used = [(A, 2 * A - 1), (4 * A, 5 * A - 1)];
        assert_eq!(first_fit(&used, 34, 100 * A, 2 * A), Some(2 * A));
        assert_eq!(first_fit(&used, 34, 100 * A, 3 * A), Some(5 * A));
    }
}
