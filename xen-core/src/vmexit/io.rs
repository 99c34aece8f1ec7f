//! Port I/O: decoding an IOIO exit and the per-domain port policy.
//!
//! Source: AMD64 APM vol. 2, §15.10.1 (I/O permissions map: one bit per
//! port, an access of N bytes checks N consecutive bits) and §15.10.2
//! (IOIO EXITINFO1 layout; EXITINFO2 = RIP of the next instruction).

/// A guest port access that caused an IOIO exit.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct IoAccess {
    /// First port accessed.
    pub port: u16,
    /// Access size in bytes: 1, 2 or 4.
    pub size: u8,
    /// `true` for IN/INS, `false` for OUT/OUTS.
    pub is_in: bool,
    /// INS/OUTS (string form).
    pub string: bool,
    /// REP prefix present.
    pub rep: bool,
    /// RIP of the instruction after the access (EXITINFO2).
    pub next_rip: u64,
}

impl IoAccess {
    /// Decodes EXITINFO1/EXITINFO2 of an IOIO exit: bit 0 TYPE (1 = IN),
    /// bit 2 STR, bit 3 REP, bits 4..6 SZ8/SZ16/SZ32, bits 31:16 port.
    pub fn decode(exit_info1: u64, exit_info2: u64) -> IoAccess {
        let size = if exit_info1 & (1 << 6) != 0 {
            4
        } else if exit_info1 & (1 << 5) != 0 {
            2
        } else {
            1
        };
        IoAccess {
            port: ((exit_info1 >> 16) & 0xffff) as u16,
            size,
            is_in: exit_info1 & 1 != 0,
            string: exit_info1 & (1 << 2) != 0,
            rep: exit_info1 & (1 << 3) != 0,
            next_rip: exit_info2,
        }
    }
}

/// A half-open range of I/O ports `[first, first + count)`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PortRange {
    /// First port.
    pub first: u16,
    /// Number of ports.
    pub count: u16,
}

impl PortRange {
    /// Whether every byte of a `size`-byte access at `port` lies in range.
    pub fn covers(&self, port: u16, size: u8) -> bool {
        let start = u32::from(self.first);
        let end = start + u32::from(self.count);
        let first = u32::from(port);
        first >= start && first + u32::from(size) <= end
    }
}

/// COM2 (0x2f8..0x2ff), the management channel, passed through to dom0.
pub const COM2: PortRange = PortRange {
    first: 0x2f8,
    count: 8,
};

/// The ports a domain may use directly, without a VM exit.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum IoPortPolicy {
    /// No port: every access exits and is the domain's error.
    None,
    /// dom0: [`COM2`] passed through; every other access exits.
    Dom0,
}

impl IoPortPolicy {
    /// The passed-through port ranges (these have clear IOPM bits).
    pub const fn passthrough(self) -> &'static [PortRange] {
        match self {
            IoPortPolicy::None => &[],
            IoPortPolicy::Dom0 => &[COM2],
        }
    }

    /// Whether an access is passed through. An IOIO exit for an access
    /// this allows means the IOPM and the policy disagree (a bug).
    pub fn allows(self, port: u16, size: u8) -> bool {
        self.passthrough().iter().any(|r| r.covers(port, size))
    }
}

/// Ports below this are the PC's legacy devices xen-core keeps or
/// mediates (PIC, PIT, RTC, COM1, QEMU's debug exit, the PCI configuration
/// ports 0xCF8-0xCFF): an I/O BAR there is never passed through.
pub const LEGACY_PORTS_END: u32 = 0x1000;

/// Clears the bits of `range` in `map`: its ports no longer exit (dom0's
/// I/O BARs, added at boot to [`IoPortPolicy::Dom0`]'s map).
pub fn allow_ports(map: &mut [u8; IOPM_BYTES], range: PortRange) {
    let first = usize::from(range.first);
    for port in first..first + usize::from(range.count) {
        map[port / 8] &= !(1 << (port % 8));
    }
}

/// Size of an SVM I/O permission map in bytes: one bit per port plus a
/// spill-over page for multi-byte accesses at the top of the port space.
pub const IOPM_BYTES: usize = 3 * 4096;

/// The I/O permission map for `policy`: a set bit makes an access exit,
/// so every port exits except the passed-through ones.
pub const fn iopm_bits(policy: IoPortPolicy) -> [u8; IOPM_BYTES] {
    let mut map = [0xff; IOPM_BYTES];
    let ranges = policy.passthrough();
    let mut i = 0;
    while i < ranges.len() {
        let mut port = ranges[i].first as usize;
        while port < ranges[i].first as usize + ranges[i].count as usize {
            map[port / 8] &= !(1 << (port % 8));
            port += 1;
        }
        i += 1;
    }
    map
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn decodes_in_and_out() {
        // OUT dx, al to 0x2f8: SZ8, TYPE=0.
        let out = IoAccess::decode((0x2f8 << 16) | (1 << 4), 0x1234);
        assert_eq!(
            out,
            IoAccess {
                port: 0x2f8,
                size: 1,
                is_in: false,
                string: false,
                rep: false,
                next_rip: 0x1234
            }
        );
        // REP INSD from 0x60.
        let ins = IoAccess::decode((0x60 << 16) | (1 << 6) | (1 << 3) | (1 << 2) | 1, 0);
        assert_eq!(
            (ins.port, ins.size, ins.is_in, ins.string, ins.rep),
            (0x60, 4, true, true, true)
        );
        let word = IoAccess::decode((0xcf8 << 16) | (1 << 5), 0);
        assert_eq!(word.size, 2);
    }

    #[test]
    fn dom0_owns_exactly_com2() {
        assert!(IoPortPolicy::Dom0.allows(0x2f8, 1));
        assert!(IoPortPolicy::Dom0.allows(0x2ff, 1));
        assert!(IoPortPolicy::Dom0.allows(0x2fc, 4));
        assert!(
            !IoPortPolicy::Dom0.allows(0x2fd, 4),
            "access runs past COM2"
        );
        assert!(
            !IoPortPolicy::Dom0.allows(0x2f7, 2),
            "access starts before COM2"
        );
        assert!(
            !IoPortPolicy::Dom0.allows(0x3f8, 1),
            "COM1 is the hypervisor's"
        );
        assert!(!IoPortPolicy::None.allows(0x2f8, 1));
    }

    /// What the CPU does with the map: an access exits if any of its
    /// bytes' bits is set.
    fn exits(map: &[u8; IOPM_BYTES], port: u16, size: u8) -> bool {
        (0..usize::from(size)).any(|i| {
            let bit = usize::from(port) + i;
            map[bit / 8] & (1 << (bit % 8)) != 0
        })
    }

    #[test]
    fn iopm_matches_the_policy_for_every_port_and_size() {
        for policy in [IoPortPolicy::None, IoPortPolicy::Dom0] {
            let map = iopm_bits(policy);
            for port in 0..=u16::MAX {
                for size in [1, 2, 4] {
                    assert_eq!(
                        exits(&map, port, size),
                        !policy.allows(port, size),
                        "{policy:?} {port:#x}/{size}"
                    );
                }
            }
        }
    }

    #[test]
    fn allowed_ports_stop_exiting_and_nothing_else_changes() {
        let mut map = iopm_bits(IoPortPolicy::Dom0);
        let bar = PortRange {
            first: 0xc0c0,
            count: 0x20,
        };
        allow_ports(&mut map, bar);
        for port in 0..=u16::MAX {
            let passed = bar.covers(port, 1) || COM2.covers(port, 1);
            assert_eq!(exits(&map, port, 1), !passed, "{port:#x}");
        }
        // The top port: the count ends exactly at the port space's end.
        allow_ports(
            &mut map,
            PortRange {
                first: 0xfff0,
                count: 0x10,
            },
        );
        assert!(!exits(&map, 0xffff, 1));
    }

    #[test]
    fn ranges_at_the_top_of_the_port_space_do_not_overflow() {
        let top = PortRange {
            first: 0xfffc,
            count: 4,
        };
        assert!(top.covers(0xfffc, 4));
        assert!(!top.covers(0xffff, 2));
    }
}
