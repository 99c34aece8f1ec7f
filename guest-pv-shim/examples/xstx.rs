//! `xstx` (issue 11): two guests' transactions on one key conflict; one
//! gets `EAGAIN` and its retry commits. Command line `role=a peer=<B's
//! domid>` or `role=b peer=<A's domid>`. The interleaving is fixed by
//! store keys, not time:
//!
//! 1. A creates `data/counter` = 0 and the barrier nodes `data/go`,
//!    `data/committed`, `data/done` under its home, grants B read/write
//!    on each, and sets `data/ready`.
//! 2. B waits for `ready`, starts its transaction, reads the counter in
//!    it, then writes `go` (outside it) and waits for `committed`.
//! 3. A, woken by `go`, increments the counter in its own transaction,
//!    commits and sets `committed`.
//! 4. B writes its increment and commits: `EAGAIN`, since A changed a
//!    node B's transaction read. [`Client::transaction`] runs B's closure
//!    again; that run commits.
//!
//! A prints `xstx: a: committed counter=1 eagain=0`, then waits for B's
//! `done` and prints `xstx: a: done`. B prints `xstx: b: attempt <n>
//! read counter=<v>` per run of its closure, then `xstx: b: committed
//! counter=2 after <n> attempts eagain=<e>` and `xstx: b: done`.
#![cfg_attr(target_os = "none", no_std, no_main)]
#![forbid(unsafe_code)]

guest_pv_shim::guest_kernel!(kernel::main);

#[cfg(target_os = "none")]
mod kernel {
    use guest_pv_shim::arch::xenbus_front::{self, StoreRing};
    use guest_pv_shim::xenbus::path::PathBuf;
    use guest_pv_shim::xenbus::{Client, Tx, XenbusError};
    use guest_pv_shim::{println, Boot, ShutdownReason};

    /// A's nodes B may read and write; `ready` is set to 1 last.
    const SHARED: [&str; 5] = ["counter", "go", "committed", "done", "ready"];

    /// The counter's value as a number.
    fn counter(xs: &mut Client<StoreRing>, tx: Tx, path: &str) -> Result<u32, XenbusError> {
        let value = xs.read_str(tx, path)?;
        value.parse().map_err(|_| XenbusError::Protocol)
    }

    fn write_counter(
        xs: &mut Client<StoreRing>,
        tx: Tx,
        path: &str,
        n: u32,
    ) -> Result<(), XenbusError> {
        let value = PathBuf::format(format_args!("{n}"))?;
        xs.write(tx, path, value.as_str().as_bytes())
    }

    fn role_a(xs: &mut Client<StoreRing>, b: u16) -> Result<(), XenbusError> {
        let grant = PathBuf::format(format_args!("b{b}"))?;
        let owner = PathBuf::format(format_args!("n{}", xs.read_str(Tx::NONE, "domid")?))?;
        for node in SHARED {
            let path = PathBuf::format(format_args!("data/{node}"))?;
            let initial: &[u8] = if node == "counter" { b"0" } else { b"" };
            xs.write(Tx::NONE, path.as_str(), initial)?;
            xs.set_perms(Tx::NONE, path.as_str(), &[owner.as_str(), grant.as_str()])?;
        }
        // Only now, with every node B uses readable by it.
        xs.write(Tx::NONE, "data/ready", b"1")?;
        xs.wait_until("data/go", |v| v == Some(b"started"))?;
        let value = xs.transaction(|xs, tx| {
            let n = counter(xs, tx, "data/counter")? + 1;
            write_counter(xs, tx, "data/counter", n)?;
            Ok(n)
        })?;
        println!(
            "xstx: a: committed counter={value} eagain={}",
            xs.transaction_eagains()
        );
        xs.write(Tx::NONE, "data/committed", b"1")?;
        xs.wait_until("data/done", |v| v == Some(b"1"))?;
        println!("xstx: a: done");
        Ok(())
    }

    fn role_b(xs: &mut Client<StoreRing>, a: u16) -> Result<(), XenbusError> {
        let node = |name: &str| PathBuf::format(format_args!("/local/domain/{a}/data/{name}"));
        let (ready, go, committed) = (node("ready")?, node("go")?, node("committed")?);
        let (counter_path, done) = (node("counter")?, node("done")?);
        xs.wait_until(ready.as_str(), |v| v == Some(b"1"))?;
        let mut attempts = 0;
        let value = xs.transaction(|xs, tx| {
            attempts += 1;
            let n = counter(xs, tx, counter_path.as_str())?;
            println!("xstx: b: attempt {attempts} read counter={n}");
            if attempts == 1 {
                // Let A commit between our read and our commit.
                xs.write(Tx::NONE, go.as_str(), b"started")?;
                xs.wait_until(committed.as_str(), |v| v == Some(b"1"))?;
            }
            write_counter(xs, tx, counter_path.as_str(), n + 1)?;
            Ok(n + 1)
        })?;
        println!(
            "xstx: b: committed counter={value} after {attempts} attempts eagain={}",
            xs.transaction_eagains()
        );
        xs.write(Tx::NONE, done.as_str(), b"1")?;
        println!("xstx: b: done");
        Ok(())
    }

    pub fn main(boot: Boot) -> ! {
        let Boot { xen, start_info } = boot;
        let mut xs = match xenbus_front::init(&xen) {
            Ok(xs) => xs,
            Err(e) => {
                println!("xstx: no store: {e:?}");
                xen.shutdown(ShutdownReason::Crash)
            }
        };
        let peer = start_info.cmdline_arg("peer").and_then(|p| p.parse().ok());
        let result = match (start_info.cmdline_arg("role"), peer) {
            (Some("a"), Some(peer)) => role_a(&mut xs, peer),
            (Some("b"), Some(peer)) => role_b(&mut xs, peer),
            _ => {
                println!("xstx: usage: role=a|b peer=DOMID");
                xen.shutdown(ShutdownReason::Crash)
            }
        };
        match result {
            Ok(()) => xen.shutdown(ShutdownReason::Poweroff),
            Err(e) => {
                println!("xstx: failed: {e}");
                xen.shutdown(ShutdownReason::Crash)
            }
        }
    }
}
