//! `xsisolate` (issue 11): a domU reads its own subtree and cannot reach
//! its peer's. Command line `peer=N`. Prints
//! `xsisolate: own domid=<d>`, `xsisolate: own name=<name>`, `xsisolate: wrote data/secret`,
//! then for the peer's home (`/local/domain/N`) one line per operation
//! with the store's answer: `xsisolate: peer read .../name: EACCES`,
//! `xsisolate: peer directory ...: EACCES`, `xsisolate: peer write
//! .../data/intruder: EACCES`, `xsisolate: peer rm .../data: EACCES`;
//! then `xsisolate: done` and poweroff. Without a store: crash.
#![cfg_attr(target_os = "none", no_std, no_main)]
#![forbid(unsafe_code)]

guest_pv_shim::guest_kernel!(kernel::main);

#[cfg(target_os = "none")]
mod kernel {
    use guest_pv_shim::arch::xenbus_front::{self, StoreRing};
    use guest_pv_shim::xenbus::path::PathBuf;
    use guest_pv_shim::xenbus::{Client, Tx, XenbusError};
    use guest_pv_shim::{println, Boot, ShutdownReason};

    fn outcome(result: Result<(), XenbusError>) -> &'static str {
        match result {
            Ok(()) => "allowed",
            Err(XenbusError::Store(e)) => e.as_str(),
            Err(_) => "failed",
        }
    }

    fn peer_ops(xs: &mut Client<StoreRing>, peer: u16) -> Result<(), XenbusError> {
        let home = PathBuf::format(format_args!("/local/domain/{peer}"))?;
        let home = home.as_str();
        let name = PathBuf::format(format_args!("{home}/name"))?;
        let read = xs.read(Tx::NONE, name.as_str()).map(|_| ());
        println!("xsisolate: peer read {}: {}", name.as_str(), outcome(read));
        let dir = xs.directory(Tx::NONE, home).map(|_| ());
        println!("xsisolate: peer directory {home}: {}", outcome(dir));
        let intruder = PathBuf::format(format_args!("{home}/data/intruder"))?;
        let wrote = xs.write(Tx::NONE, intruder.as_str(), b"x");
        println!(
            "xsisolate: peer write {}: {}",
            intruder.as_str(),
            outcome(wrote)
        );
        let data = PathBuf::format(format_args!("{home}/data"))?;
        let removed = xs.rm(Tx::NONE, data.as_str());
        println!("xsisolate: peer rm {}: {}", data.as_str(), outcome(removed));
        Ok(())
    }

    pub fn main(boot: Boot) -> ! {
        let Boot { xen, start_info } = boot;
        let mut xs = match xenbus_front::init(&xen) {
            Ok(xs) => xs,
            Err(e) => {
                println!("xsisolate: no store: {e:?}");
                xen.shutdown(ShutdownReason::Crash)
            }
        };
        let Some(peer) = start_info.cmdline_arg("peer").and_then(|p| p.parse().ok()) else {
            println!("xsisolate: usage: peer=DOMID");
            xen.shutdown(ShutdownReason::Crash)
        };
        match xs.read_str(Tx::NONE, "domid") {
            Ok(domid) => println!("xsisolate: own domid={domid}"),
            Err(e) => println!("xsisolate: reading own domid failed: {e}"),
        }
        match xs.read_str(Tx::NONE, "name") {
            Ok(name) => println!("xsisolate: own name={name}"),
            Err(e) => println!("xsisolate: reading own name failed: {e}"),
        }
        match xs.write(Tx::NONE, "data/secret", b"mine") {
            Ok(()) => println!("xsisolate: wrote data/secret"),
            Err(e) => println!("xsisolate: writing data/secret failed: {e}"),
        }
        if let Err(e) = peer_ops(&mut xs, peer) {
            println!("xsisolate: {e}");
        }
        println!("xsisolate: done");
        xen.shutdown(ShutdownReason::Poweroff)
    }
}
