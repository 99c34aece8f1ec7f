//! `netbench` (issue 13): guest↔guest TCP over two vifs and the vswitch,
//! against `netecho`. Command line `ip=A.B.C.D/LEN`, `peer=A.B.C.D`
//! (netecho's address), `bytes=N` (default 1 MiB, sent to the discard
//! port 9) and `small=M` (default 500 round trips of 64 bytes on the
//! echo port 7). Prints, with system time and the TSC (instructions
//! under `-icount shift=0`):
//! - `netbench: tcp: <N> bytes in <ns> ns (<KiB/s> KiB/s)` and
//!   `pathlen: net-tcp-per-KiB <tsc per KiB>`;
//! - `netbench: small: <M> round trips, <P> frames in <ns> ns (<F>
//!   frames/s)` and `pathlen: net-rtt-64B <tsc per round trip>`;
//!
//! then `pathlen: done` and `netbench: done`; poweroff.
#![cfg_attr(target_os = "none", no_std, no_main)]
#![forbid(unsafe_code)]

guest_pv_shim::guest_kernel!(kernel::main);

#[cfg(target_os = "none")]
#[path = "netcommon/mod.rs"]
mod netcommon;

#[cfg(target_os = "none")]
mod kernel {
    use guest_pv_shim::arch::cpu::rdtsc;
    use guest_pv_shim::net::NetStack;
    use guest_pv_shim::{println, Boot, ShutdownReason};
    use smoltcp::iface::SocketHandle;
    use smoltcp::socket::tcp;
    use smoltcp::wire::{IpAddress, Ipv4Address};

    use crate::netcommon::{arg, stack, static_buf, tcp_socket, tcp_socket_nodelay};

    const SMALL: usize = 64;

    pub fn main(boot: Boot) -> ! {
        let Boot { xen, start_info } = boot;
        let (mut stack, _) = stack(&xen, &start_info, "netbench");
        let Some(peer) = start_info
            .cmdline_arg("peer")
            .and_then(|p| p.parse::<Ipv4Address>().ok())
        else {
            println!("netbench: need peer=A.B.C.D");
            xen.shutdown(ShutdownReason::Crash)
        };
        let bytes = arg(&start_info, "bytes", 1 << 20);
        let small = arg(&start_info, "small", 500);
        let bulk = tcp_socket(&mut stack, static_buf!(1024), static_buf!(32768));
        let ping = tcp_socket_nodelay(&mut stack, static_buf!(1024), static_buf!(1024));
        let ok =
            throughput(&mut stack, bulk, peer, bytes) && round_trips(&mut stack, ping, peer, small);
        println!("pathlen: done");
        println!("netbench: {}", if ok { "done" } else { "failed" });
        xen.shutdown(if ok {
            ShutdownReason::Poweroff
        } else {
            ShutdownReason::Crash
        })
    }

    fn connect(
        stack: &mut NetStack<'static>,
        h: SocketHandle,
        peer: Ipv4Address,
        port: u16,
    ) -> bool {
        let cx = stack.iface.context();
        let s = stack.sockets.get_mut::<tcp::Socket>(h);
        if s.connect(cx, (IpAddress::Ipv4(peer), port), 49200 + port)
            .is_err()
        {
            return false;
        }
        let deadline = stack.dev.front().now() + 30_000_000_000;
        loop {
            stack.poll_wait(100_000_000);
            let s = stack.sockets.get_mut::<tcp::Socket>(h);
            if s.may_send() {
                return true;
            }
            if !s.is_open() || stack.dev.front().now() > deadline {
                println!("netbench: no connection to {peer}:{port}");
                return false;
            }
        }
    }

    fn throughput(
        stack: &mut NetStack<'static>,
        h: SocketHandle,
        peer: Ipv4Address,
        bytes: u64,
    ) -> bool {
        if !connect(stack, h, peer, 9) {
            return false;
        }
        let chunk = [0x5au8; 1024];
        let (t0, c0) = (stack.dev.front().now(), rdtsc());
        let mut sent = 0u64;
        loop {
            let s = stack.sockets.get_mut::<tcp::Socket>(h);
            while sent < bytes && s.can_send() {
                let n = chunk
                    .len()
                    .min(usize::try_from(bytes - sent).unwrap_or(usize::MAX));
                sent += s.send_slice(&chunk[..n]).unwrap_or(0) as u64;
            }
            if sent == bytes && s.send_queue() == 0 {
                s.close();
            }
            if !s.is_open() || matches!(s.state(), tcp::State::TimeWait | tcp::State::FinWait2) {
                break;
            }
            stack.poll_wait(100_000_000);
        }
        let (ns, tsc) = (stack.dev.front().now() - t0, rdtsc() - c0);
        let kib = (bytes / 1024).max(1);
        println!(
            "netbench: tcp: {bytes} bytes in {ns} ns ({} KiB/s)",
            bytes * 1_000_000_000 / 1024 / ns.max(1)
        );
        println!("pathlen: net-tcp-per-KiB {}", tsc / kib);
        true
    }

    fn round_trips(
        stack: &mut NetStack<'static>,
        h: SocketHandle,
        peer: Ipv4Address,
        rounds: u64,
    ) -> bool {
        if !connect(stack, h, peer, 7) {
            return false;
        }
        let msg = [0xa5u8; SMALL];
        let mut back = [0u8; SMALL];
        let frames = |stack: &mut NetStack<'static>| {
            let s = stack.dev.front().stats();
            s.tx_packets + s.rx_packets
        };
        let (t0, c0, f0) = (stack.dev.front().now(), rdtsc(), frames(stack));
        for _ in 0..rounds {
            let (mut sent, mut got) = (0, 0);
            while got < SMALL {
                let s = stack.sockets.get_mut::<tcp::Socket>(h);
                if !s.is_open() {
                    println!("netbench: echo connection closed");
                    return false;
                }
                if sent < SMALL && s.can_send() {
                    sent += s.send_slice(&msg[sent..]).unwrap_or(0);
                }
                if s.can_recv() {
                    got += s.recv_slice(&mut back[got..]).unwrap_or(0);
                }
                if got < SMALL {
                    stack.poll_wait(100_000_000);
                }
            }
        }
        let (ns, tsc, n) = (
            stack.dev.front().now() - t0,
            rdtsc() - c0,
            frames(stack) - f0,
        );
        println!(
            "netbench: small: {rounds} round trips, {n} frames in {ns} ns ({} frames/s)",
            n * 1_000_000_000 / ns.max(1)
        );
        println!("pathlen: net-rtt-64B {}", tsc / rounds.max(1));
        stack.sockets.get_mut::<tcp::Socket>(h).close();
        for _ in 0..10 {
            stack.poll_wait(10_000_000);
        }
        true
    }
}
