//! The dom0 kernel: the first domain xen-core builds, privileged, with
//! GPA = HPA. It prints what it received and the Xen it sees, serves the
//! other domains' PV consoles (`console_backend`), and ticks like the
//! `ticker` example so interleaving shows.
//!
//! Command line:
//! - `ticks=N`: N ticks (default 5, or 0 with `console-backend`), one per
//!   10 ms; consoles are served between ticks. Then power off (which ends
//!   the whole machine), after a last drain of every console.
//! - `console-backend`: after the ticks, serve consoles until every other
//!   domain has shut down (`VIRQ_DOM_EXC`, and the domain list rescanned
//!   every 100 ms), then power off.
//! - `mgmt`: after the ticks, serve the management channel on COM2
//!   (`agent`; consoles are served too) until a client asks dom0 to power
//!   off, then power off.
//! - `boot-vifs=NAME:VLAN,...` (with `mgmt`): a vif for each boot-time
//!   domU named, an access port of that VLAN (see `netback::boot`).
//! - `com2-gsi=N` (added by xen-core): the GSI of COM2's interrupt, which
//!   the agent binds as a pirq so that it sleeps until bytes arrive.
//! - `pci-ecam=BASE:FIRST-LAST` (added by xen-core from the MCFG): where
//!   dom0 finds its PCI devices (`devices`): the disk and the NICs, taken
//!   over at boot in every mode once events work; with `mgmt` the agent
//!   owns them afterwards (the disk holds the volumes).
//! - `disk-bench=FIRST_LBA:SECTORS`: once the disk is up, time dom0's own
//!   sequential reads and writes of that region (the block benchmark's
//!   baseline, `blkback::baseline`; the contents are kept).
//!
//! Without event channels or grant tables the backend reports why
//! (`dom0: console: backend unavailable: ...`) and dom0 ticks as the
//! ticker does (yield / one-shot timer + block); with `console-backend`
//! it then powers off with SHUTDOWN_crash.
#![cfg_attr(target_os = "none", no_std, no_main)]
// `unsafe` only in `devices::hal` (DMA memory and ECAM for virtio-drivers).
#![deny(unsafe_code)]

guest_pv_shim::guest_kernel!(kernel::main);

#[cfg(any(test, target_os = "none"))]
extern crate alloc;

#[cfg(target_os = "none")]
mod agent;
#[cfg(any(test, target_os = "none"))]
mod blkback;
#[cfg(target_os = "none")]
mod console_backend;
#[cfg(any(test, target_os = "none"))]
mod devices;
#[cfg(target_os = "none")]
mod hv;
#[cfg(any(test, target_os = "none"))]
mod netback;
#[cfg(any(test, target_os = "none"))]
mod store;
#[cfg(target_os = "none")]
mod switch;
#[cfg(target_os = "none")]
mod volumes;

#[cfg(target_os = "none")]
mod kernel {
    use guest_pv_shim::console::nul_padded_str;
    use guest_pv_shim::{println, ticker, Boot, Clock, ShutdownReason, Xen};

    use abi::bundle::MGMT_KEY_MODULE;
    use guest_pv_shim::arch::phys::IdentityMap;
    use guest_pv_shim::start_info::PhysMemory;
    use guest_pv_shim::StartInfo;
    use mgmt::auth::{Key, KEY_LEN};

    use crate::agent::tcp::TcpServer;
    use crate::console_backend::Backend;
    use crate::devices::{Disk, Nic};
    use crate::hv::XenHypervisor;
    use crate::netback::NetBackends;
    use crate::switch::Vswitch;
    use crate::volumes::Volumes;
    use crate::{agent, devices};

    pub fn main(boot: Boot) -> ! {
        #[cfg(feature = "bench-trace")]
        guest_pv_shim::println!("bench: dom0-main {}", guest_pv_shim::arch::cpu::rdtsc());
        let Boot { xen, start_info } = boot;
        println!("dom0: start info: {start_info}");
        for e in start_info.memmap() {
            println!("dom0: memmap {:#x}+{:#x} type {}", e.addr, e.size, e.kind);
        }
        for (i, m) in start_info.modules().iter().enumerate() {
            println!(
                "dom0: module {i}: paddr={:#x} size={} cmdline=\"{}\"",
                m.paddr,
                m.size,
                m.cmdline()
            );
        }
        match xen.version().and_then(|v| Ok((v, xen.extraversion()?))) {
            Ok(((major, minor), extra)) => {
                println!("dom0: Xen {major}.{minor}{}", nul_padded_str(&extra))
            }
            Err(e) => println!("dom0: xen_version failed: {e}"),
        }
        let mgmt = start_info.cmdline_arg("mgmt").is_some();
        let serve = mgmt || start_info.cmdline_arg("console-backend").is_some();
        let ticks = start_info
            .cmdline_arg("ticks")
            .and_then(|n| n.parse().ok())
            .unwrap_or(if serve { 0 } else { ticker::DEFAULT_TICKS });
        let Some(clock) = clock(&xen) else {
            xen.shutdown(ShutdownReason::Crash)
        };
        let com2_gsi = start_info
            .cmdline_arg("com2-gsi")
            .and_then(|n| n.parse().ok());
        let reason = match Backend::start(&xen, start_info.ram_end()) {
            Ok(mut backend) => {
                // The drivers' DMA memory comes from the heap.
                agent::heap::init();
                let mut devices = devices::start(backend.events(), &start_info);
                if let (Some(spec), Some(disk)) =
                    (start_info.cmdline_arg("disk-bench"), devices.disk.as_mut())
                {
                    crate::blkback::baseline::run(disk, backend.events(), spec);
                }
                if let Some(spec) = start_info.cmdline_arg("uplink-bench") {
                    devices.uplink_nic = match devices.uplink_nic.take() {
                        Some(nic) => {
                            Some(crate::switch::baseline::run(nic, backend.events(), spec))
                        }
                        None => {
                            println!("dom0: uplink-bench: no uplink NIC");
                            None
                        }
                    };
                }
                let setup = mgmt.then(|| MgmtSetup {
                    com2_gsi,
                    key: mgmt_key(&start_info),
                    nic: devices.mgmt_nic,
                    disk: devices.disk,
                    uplink: devices.uplink_nic,
                    boot_vifs: start_info.cmdline_arg("boot-vifs").unwrap_or("").into(),
                });
                with_backend(&clock, &mut backend, ticks, serve, setup)
            }
            Err(e) => {
                println!("dom0: console: backend unavailable: {e}");
                match ticker::run(&xen, &clock, "dom0: ", ticks) {
                    Ok(true) if !serve => ShutdownReason::Poweroff,
                    _ => ShutdownReason::Crash,
                }
            }
        };
        xen.shutdown(reason)
    }

    /// What the management agent needs.
    struct MgmtSetup {
        /// COM2's GSI (xen-core's `com2-gsi=N`), if known.
        com2_gsi: Option<u32>,
        /// The key from the boot bundle's dom0 module.
        key: Option<Key>,
        /// The management NIC.
        nic: Option<Nic>,
        /// dom0's disk (the volumes live on it).
        disk: Option<Disk>,
        /// The uplink NIC, the vswitch's way out.
        uplink: Option<Nic>,
        /// `boot-vifs=`: vifs for the boot-time domUs (see `netback::boot`).
        boot_vifs: alloc::string::String,
    }

    /// The management key: the dom0 module [`MGMT_KEY_MODULE`] holds its
    /// [`KEY_LEN`] bytes (`cargo xtask up` puts it in the bundle).
    fn mgmt_key(start_info: &StartInfo) -> Option<Key> {
        let module = start_info
            .modules()
            .iter()
            .find(|m| m.cmdline() == MGMT_KEY_MODULE)?;
        let mut bytes = [0u8; KEY_LEN];
        let read = module.size == KEY_LEN as u64 && IdentityMap.read(module.paddr, &mut bytes);
        if !read {
            println!(
                "dom0: mgmt: the {MGMT_KEY_MODULE} module is not {KEY_LEN} bytes in RAM: ignored"
            );
            return None;
        }
        Key::from_bytes(&bytes).ok()
    }

    /// The TCP server, if the key and the NIC are there (else why not).
    fn tcp_server(backend: &Backend, setup: MgmtSetup) -> Option<TcpServer> {
        match setup {
            MgmtSetup {
                key: Some(key),
                nic: Some(nic),
                ..
            } => Some(TcpServer::start(nic, key, backend.now().unwrap_or(0))),
            MgmtSetup { key: None, .. } => {
                println!("dom0: mgmt: no management key in the boot bundle: no TCP, COM2 only");
                None
            }
            MgmtSetup { nic: None, .. } => {
                println!("dom0: mgmt: no management NIC: no TCP, COM2 only");
                None
            }
        }
    }

    /// Ticks while serving consoles, then serves the management channel
    /// (with `mgmt`) or (with `serve`) consoles until the domUs are down;
    /// releases every console.
    fn with_backend(
        clock: &Clock,
        backend: &mut Backend,
        ticks: u32,
        serve: bool,
        mgmt: Option<MgmtSetup>,
    ) -> ShutdownReason {
        let ticked = ticker::run_with(
            clock,
            "dom0: ",
            ticks,
            |_| "console-backend",
            |_, now| backend.serve_until(now + ticker::TICK_TIMER_NS),
        );
        let served = if let Some(mut setup) = mgmt {
            agent::heap::init();
            let mut hv = XenHypervisor::new(*backend.xen());
            let com2_gsi = setup.com2_gsi;
            // Before the TCP server says it serves: a blank disk's table
            // is written first, and a client must not wait on it.
            let volumes = Volumes::open(setup.disk.take(), backend.now().unwrap_or(0));
            let boot_vifs = core::mem::take(&mut setup.boot_vifs);
            let mut vswitch = Vswitch::new(setup.uplink.take());
            let tcp = tcp_server(backend, setup);
            let mut store = crate::store::StoreService::new();
            let mut netback = NetBackends::with_boot_vifs(boot_vifs);
            let served = agent::serve(
                backend,
                &mut hv,
                &mut store,
                (&mut vswitch, &mut netback),
                com2_gsi,
                tcp,
                volumes,
            );
            backend.release_all();
            served
        } else if serve {
            backend.serve_until_domus_down()
        } else {
            backend.release_all();
            Ok(())
        };
        match (ticked, served) {
            (Ok(true), Ok(())) => ShutdownReason::Poweroff,
            (_, Err(e)) => {
                println!("dom0: console: serving failed: {e}");
                ShutdownReason::Crash
            }
            _ => ShutdownReason::Crash,
        }
    }

    /// vCPU 0's clock, from a vcpu_info area dom0 registers (shared info
    /// must be mapped too: it holds the wall clock and the event bitmaps).
    fn clock(xen: &Xen) -> Option<Clock> {
        if let Err(e) = xen.map_shared_info() {
            println!("dom0: map shared info failed: {e}");
            return None;
        }
        match xen.register_vcpu_info(0)? {
            Ok(clock) => Some(clock),
            Err(e) => {
                println!("dom0: register_vcpu_info failed: {e}");
                None
            }
        }
    }
}
