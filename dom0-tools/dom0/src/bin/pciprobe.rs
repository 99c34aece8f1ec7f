//! `pciprobe` (issue 10): a test kernel booted as dom0 (a binary of the
//! dom0 package so that it links at dom0's GPA, 16 MiB), reads PCI configuration space
//! through ECAM as xen-core mediates it, and reports what it saw:
//! - vendor:device of 0000:00:00.0 (the host bridge);
//! - the first virtio-net function on bus 0 and its Interrupt Line (the
//!   GSI xen-core wrote there);
//! - sizing its BAR1 (write all ones, read the mask, write it back);
//! - an attempt to move BAR1 onto dom0's own RAM (xen-core refuses it:
//!   the BAR reads back unchanged);
//! - a read through the BAR mapping: the MSI-X table's first vector
//!   control word, which a device resets to "masked" (1).
//!
//! Each check prints `pciprobe: <check>: got <result> (expected
//! <result>)`; the last line is `pciprobe: done: <n> checks, <m>
//! unexpected`, then it powers off (crashes if any was unexpected).
//!
//! The ECAM base is q35's (0xb0000000, as xen-core's `platform: ECAM`
//! boot line reports): dom0 gets no ACPI tables of its own yet.
#![cfg_attr(target_os = "none", no_std, no_main)]
#![forbid(unsafe_code)]

guest_pv_shim::guest_kernel!(kernel::main);

#[cfg(target_os = "none")]
mod kernel {
    use core::fmt::Debug;

    use guest_pv_shim::arch::probe::{self, Load};
    use guest_pv_shim::{println, Boot, ShutdownReason};

    /// Nothing here allocates, but the dom0 package's libraries link
    /// `alloc`, which needs an allocator: an empty heap.
    #[global_allocator]
    static NO_HEAP: linked_list_allocator::LockedHeap = linked_list_allocator::LockedHeap::empty();

    /// QEMU q35's ECAM (MCFG) base.
    const ECAM: u64 = 0xb000_0000;
    /// virtio's PCI vendor ID; virtio-net's transitional and modern IDs.
    const VIRTIO_VENDOR: u32 = 0x1af4;
    const VIRTIO_NET: [u32; 2] = [0x1000, 0x1041];
    /// BAR1's register; the capabilities pointer; MSI-X's capability ID.
    const BAR1: u64 = 0x14;
    const CAP_POINTER: u64 = 0x34;
    const CAP_MSIX: u32 = 0x11;
    /// Where the probe tries to move BAR1: dom0's own RAM (16 MiB).
    const MOVE_TO: u32 = 0x0100_0000;

    struct Checks {
        ram_end: u64,
        checks: u32,
        unexpected: u32,
    }

    impl Checks {
        fn check<T: Debug + PartialEq>(&mut self, name: &str, got: T, expected: T) {
            self.checks += 1;
            self.unexpected += u32::from(got != expected);
            println!("pciprobe: {name}: got {got:x?} (expected {expected:x?})");
        }

        fn read32(&self, gpa: u64) -> u32 {
            match probe::read(gpa, self.ram_end, Load::Dword, 0) {
                Ok(Ok(value)) => (value & 0xffff_ffff) as u32,
                _ => 0xdead_dead,
            }
        }

        fn write32(&self, gpa: u64, value: u32) {
            let _ = probe::write(gpa, self.ram_end, value, false);
        }

        /// Configuration register `offset` of 0000:00:`device`.0.
        fn config(&self, device: u64, offset: u64) -> u32 {
            self.read32(ECAM + (device << 15) + offset)
        }
    }

    pub fn main(boot: Boot) -> ! {
        let Boot { xen, start_info } = boot;
        let mut c = Checks {
            ram_end: start_info.memmap_end(),
            checks: 0,
            unexpected: 0,
        };
        let host = c.config(0, 0);
        println!(
            "pciprobe: 0000:00:00.0 {:04x}:{:04x}",
            host & 0xffff,
            host >> 16
        );
        c.check("host-bridge-vendor", host & 0xffff, 0x8086);
        let net = (0..32).find(|&d| {
            let id = c.config(d, 0);
            id & 0xffff == VIRTIO_VENDOR && VIRTIO_NET.contains(&(id >> 16))
        });
        c.check("virtio-net-found", net.is_some(), true);
        if let Some(dev) = net {
            probe_net(&mut c, dev);
        }
        println!(
            "pciprobe: done: {} checks, {} unexpected",
            c.checks, c.unexpected
        );
        if c.unexpected == 0 {
            xen.shutdown(ShutdownReason::Poweroff)
        } else {
            xen.shutdown(ShutdownReason::Crash)
        }
    }

    fn probe_net(c: &mut Checks, dev: u64) {
        let line = c.config(dev, 0x3c) & 0xff;
        println!("pciprobe: 0000:00:{dev:02x}.0 virtio-net interrupt line {line}");
        c.check("virtio-net-has-gsi", line != 0xff, true);
        let bar = ECAM + (dev << 15) + BAR1;
        let original = c.read32(bar);
        c.write32(bar, u32::MAX);
        let mask = c.read32(bar);
        c.write32(bar, original);
        println!(
            "pciprobe: BAR1 sized: {:#x} bytes at {original:#x}",
            (!(mask & !0xf)).wrapping_add(1)
        );
        c.check("bar1-restored", c.read32(bar), original);
        c.write32(bar, MOVE_TO);
        let after = c.read32(bar);
        println!("pciprobe: BAR1 move to {MOVE_TO:#x}: now {after:#x}");
        c.check("bar1-move-refused", after, original);
        if let Some(table) = msix_table(c, dev) {
            let base = u64::from(original & !0xf);
            c.check("msix-entry0-masked-via-bar", c.read32(base + table + 12), 1);
        }
    }

    /// Offset of the MSI-X table in BAR1, if the function's MSI-X
    /// capability puts it there (bounded walk of the capability list).
    fn msix_table(c: &Checks, dev: u64) -> Option<u64> {
        let mut at = c.config(dev, CAP_POINTER) & 0xfc;
        for _ in 0..48 {
            if at == 0 {
                return None;
            }
            let header = c.config(dev, u64::from(at));
            if header & 0xff == CAP_MSIX {
                let table = c.config(dev, u64::from(at) + 4);
                return (table & 0x7 == 1).then_some(u64::from(table & !0x7));
            }
            at = (header >> 8) & 0xfc;
        }
        None
    }
}
