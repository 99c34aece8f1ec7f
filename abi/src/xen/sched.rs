//! `HYPERVISOR_sched_op`, `xen/include/public/sched.h`.
//!
//! `sched_op(cmd, arg)`: arg = guest virtual address of the sub-op struct.

use zerocopy::{FromBytes, Immutable, IntoBytes, KnownLayout};

use super::domid::DomId;

/// `SCHEDOP_yield`: give up the pCPU; stay runnable. arg unused.
pub const SCHEDOP_YIELD: u32 = 0;
/// `SCHEDOP_block`: block until an event is pending; clears the vCPU's
/// `evtchn_upcall_mask`. arg unused.
pub const SCHEDOP_BLOCK: u32 = 1;
/// `SCHEDOP_shutdown`: stop the calling domain; arg -> [`SchedShutdown`].
pub const SCHEDOP_SHUTDOWN: u32 = 2;
/// `SCHEDOP_poll`: block until one of some ports is pending or a timeout;
/// arg -> [`SchedPoll`].
pub const SCHEDOP_POLL: u32 = 3;
/// `SCHEDOP_remote_shutdown`: shut another domain down (privileged);
/// arg -> [`SchedRemoteShutdown`].
pub const SCHEDOP_REMOTE_SHUTDOWN: u32 = 4;
/// `SCHEDOP_shutdown_code`: record a shutdown reason without stopping.
pub const SCHEDOP_SHUTDOWN_CODE: u32 = 5;
/// `SCHEDOP_watchdog`.
pub const SCHEDOP_WATCHDOG: u32 = 6;
/// `SCHEDOP_pin_override`.
pub const SCHEDOP_PIN_OVERRIDE: u32 = 7;

/// `SHUTDOWN_poweroff`: the domain exited normally.
pub const SHUTDOWN_POWEROFF: u32 = 0;
/// `SHUTDOWN_reboot`: clean up, kill, then restart.
pub const SHUTDOWN_REBOOT: u32 = 1;
/// `SHUTDOWN_suspend`: clean up, save suspend info, kill.
pub const SHUTDOWN_SUSPEND: u32 = 2;
/// `SHUTDOWN_crash`: the domain crashed.
pub const SHUTDOWN_CRASH: u32 = 3;
/// `SHUTDOWN_watchdog`: restart because the watchdog expired.
pub const SHUTDOWN_WATCHDOG: u32 = 4;
/// `SHUTDOWN_soft_reset`: reset the domain's state, keep its memory.
pub const SHUTDOWN_SOFT_RESET: u32 = 5;
/// `SHUTDOWN_MAX`: largest valid reason; larger ones fail with `-EINVAL`.
pub const SHUTDOWN_MAX: u32 = 5;

/// `struct sched_shutdown`, 4 bytes.
#[repr(C)]
#[derive(
    Clone, Copy, Debug, Default, PartialEq, Eq, FromBytes, IntoBytes, Immutable, KnownLayout,
)]
pub struct SchedShutdown {
    /// One of the `SHUTDOWN_*` reasons.
    pub reason: u32,
}

/// `struct sched_poll`, 24 bytes.
#[repr(C)]
#[derive(
    Clone, Copy, Debug, Default, PartialEq, Eq, FromBytes, IntoBytes, Immutable, KnownLayout,
)]
pub struct SchedPoll {
    /// Guest virtual address of an array of `nr_ports` event-channel ports (u32).
    pub ports: u64,
    /// Number of ports in the array.
    pub nr_ports: u32,
    /// Implicit C padding; zero.
    pub pad0: u32,
    /// Absolute system time (ns) to give up at; 0 waits forever.
    pub timeout: u64,
}

/// `struct sched_remote_shutdown`, 8 bytes.
#[repr(C)]
#[derive(
    Clone, Copy, Debug, Default, PartialEq, Eq, FromBytes, IntoBytes, Immutable, KnownLayout,
)]
pub struct SchedRemoteShutdown {
    /// The domain to shut down.
    pub domain_id: DomId,
    /// Implicit C padding; zero.
    pub pad0: u16,
    /// One of the `SHUTDOWN_*` reasons.
    pub reason: u32,
}

/// Why a domain shut down: Xen's `SHUTDOWN_*` codes as a type, the one
/// definition the hypervisor, the toolstack, the management protocol and
/// guests share.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize))]
pub enum ShutdownReason {
    /// `SHUTDOWN_poweroff`: the domain exited normally.
    Poweroff,
    /// `SHUTDOWN_reboot`.
    Reboot,
    /// `SHUTDOWN_suspend`.
    Suspend,
    /// `SHUTDOWN_crash`.
    Crash,
    /// `SHUTDOWN_watchdog`.
    Watchdog,
    /// `SHUTDOWN_soft_reset`.
    SoftReset,
}

impl ShutdownReason {
    /// The reason for Xen code `code`; `None` above [`SHUTDOWN_MAX`]
    /// (Xen's `-EINVAL`).
    pub const fn from_code(code: u32) -> Option<Self> {
        Some(match code {
            SHUTDOWN_POWEROFF => Self::Poweroff,
            SHUTDOWN_REBOOT => Self::Reboot,
            SHUTDOWN_SUSPEND => Self::Suspend,
            SHUTDOWN_CRASH => Self::Crash,
            SHUTDOWN_WATCHDOG => Self::Watchdog,
            SHUTDOWN_SOFT_RESET => Self::SoftReset,
            _ => return None,
        })
    }

    /// Xen's `SHUTDOWN_*` code.
    pub const fn code(self) -> u32 {
        match self {
            Self::Poweroff => SHUTDOWN_POWEROFF,
            Self::Reboot => SHUTDOWN_REBOOT,
            Self::Suspend => SHUTDOWN_SUSPEND,
            Self::Crash => SHUTDOWN_CRASH,
            Self::Watchdog => SHUTDOWN_WATCHDOG,
            Self::SoftReset => SHUTDOWN_SOFT_RESET,
        }
    }

    /// The name `xl` prints: `poweroff`, `reboot`, `suspend`, `crash`,
    /// `watchdog`, `soft_reset`.
    pub const fn name(self) -> &'static str {
        match self {
            Self::Poweroff => "poweroff",
            Self::Reboot => "reboot",
            Self::Suspend => "suspend",
            Self::Crash => "crash",
            Self::Watchdog => "watchdog",
            Self::SoftReset => "soft_reset",
        }
    }
}

impl core::fmt::Display for ShutdownReason {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.write_str(self.name())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use core::mem::{offset_of, size_of};

    #[test]
    fn shutdown_reasons_are_xens_codes() {
        for code in 0..=SHUTDOWN_MAX {
            let reason = ShutdownReason::from_code(code).unwrap();
            assert_eq!(reason.code(), code);
        }
        assert_eq!(ShutdownReason::from_code(SHUTDOWN_MAX + 1), None);
        assert_eq!(ShutdownReason::from_code(u32::MAX), None);
        assert_eq!(ShutdownReason::from_code(3), Some(ShutdownReason::Crash));
        assert_eq!(ShutdownReason::SoftReset.to_string(), "soft_reset");
    }

    #[test]
    fn layouts_match_sched_h() {
        assert_eq!(size_of::<SchedShutdown>(), 4);
        assert_eq!(size_of::<SchedPoll>(), 24);
        assert_eq!(offset_of!(SchedPoll, nr_ports), 8);
        assert_eq!(offset_of!(SchedPoll, timeout), 16);
        assert_eq!(size_of::<SchedRemoteShutdown>(), 8);
        assert_eq!(offset_of!(SchedRemoteShutdown, reason), 4);
    }
}
