//! Guest-physical reads through the boot identity map (GVA = GPA below
//! [`IDENTITY_MAP_END`]), used to read the start info at entry.

use crate::start_info::PhysMemory;

/// End of the identity map `entry.S` builds: 4 GiB of 2 MiB pages.
pub const IDENTITY_MAP_END: u64 = 4 << 30;

/// The identity-mapped guest-physical memory.
pub struct IdentityMap;

impl IdentityMap {
    /// Whether `gpa..gpa + len` is non-null and inside the identity map.
    pub fn covers(gpa: u64, len: u64) -> bool {
        gpa != 0
            && gpa
                .checked_add(len)
                .is_some_and(|end| end <= IDENTITY_MAP_END)
    }
}

impl PhysMemory for IdentityMap {
    fn read(&self, gpa: u64, buf: &mut [u8]) -> bool {
        if !Self::covers(gpa, buf.len() as u64) {
            return false;
        }
        for (i, byte) in buf.iter_mut().enumerate() {
            // SAFETY: the address is non-null and below IDENTITY_MAP_END,
            // so it is mapped (to itself) by the boot page tables; reading
            // it has no side effect on RAM, and no Rust reference aliases
            // a write here (only the domain builder wrote it, before entry).
            *byte = unsafe { core::ptr::read_volatile((gpa + i as u64) as *const u8) };
        }
        true
    }
}
