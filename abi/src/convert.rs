//! Integer conversions the cast lints cannot prove lossless but that are.
//!
//! Every crate of this project runs on x86_64 (bare metal or the x86_64
//! host), where `usize` is 64 bits wide; this module exists only there
//! (`target_pointer_width = "64"`), so code that relies on it does not
//! build for a narrower target instead of truncating silently. Values from
//! guests or clients that may not fit use `try_from` and an error instead.

/// `value` as a `usize`: lossless, `usize` is 64 bits wide here.
#[inline]
pub const fn usize_from_u64(value: u64) -> usize {
    #[allow(clippy::cast_possible_truncation)] // the module requires 64-bit usize
    let value = value as usize;
    value
}

/// The constant `N` as a `u32`, for sizes and counts known at compile
/// time (`u32_const::<{ PAGE_SIZE / size_of::<T>() }>()`): a value that
/// does not fit is a compile error, so this cannot fail at run time.
#[inline]
pub const fn u32_const<const N: usize>() -> u32 {
    const { assert!(N <= u32::MAX as usize, "the constant does not fit in u32") };
    #[allow(clippy::cast_possible_truncation)] // N fits: asserted at compile time
    let value = N as u32;
    value
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn conversions_keep_every_bit() {
        assert_eq!(usize_from_u64(u64::MAX), usize::MAX);
        assert_eq!(usize_from_u64(0x1234_5678_9abc_def0), 0x1234_5678_9abc_def0);
        assert_eq!(u32_const::<{ u32::MAX as usize }>(), u32::MAX);
        assert_eq!(u32_const::<{ 4096 / 64 }>(), 64);
    }
}
