//! `netbench` (issue 13): guest↔guest TCP over two vifs and the vswitch,
//! against `netecho`, and guest→host TCP through the uplink. Command line
//! `ip=A.B.C.D/LEN`, `peer=A.B.C.D` (netecho's address), `bytes=N`
//! (default 1 MiB, sent to the discard port 9), `small=M` (default 500
//! round trips of 64 bytes on the echo port 7), `pkts=P` (default 2000
//! 64-byte segments to port 9) and optionally `host=A.B.C.D:PORT` (a
//! sink on the host: `abi::machine::UPLINK_HOST_SERVICE`, the guest on
//! the uplink's VLAN). Prints, with system time and the TSC
//! (instructions under `-icount shift=0`):
//! - `netbench: tcp: <N> bytes in <ns> ns (<KiB/s> KiB/s)` and
//!   `pathlen: net-tcp-per-KiB <tsc per KiB>`;
//! - `netbench: small: <M> round trips, <P> frames in <ns> ns (<F>
//!   frames/s)` and `pathlen: net-rtt-64B <tsc per round trip>`;
//! - `netbench: pkt: <P> writes of 64 bytes, <S> segments, <F> frames in
//!   <ns> ns (<R> frames/s)` and `pathlen: net-pkt-64B <tsc per frame>`:
//!   one way, no Nagle, each 64-byte write sent as its own segment when
//!   a tx buffer is free; every frame either way (segments and netecho's
//!   ACKs) crosses netback and the switch, so each counts as a packet;
//! - with `host=`: `netbench: host: <N> bytes in <ns> ns (<KiB/s> KiB/s)`
//!   and `pathlen: net-host-per-KiB <tsc per KiB>` (the same bulk TCP as
//!   `tcp`, to the host's sink; dom0's `uplink-bench=` is its yardstick);
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

    use guest_pv_shim::net::parse_endpoint;

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
        let pkts = arg(&start_info, "pkts", 2000);
        let host = start_info.cmdline_arg("host").map(parse_endpoint);
        let bulk = tcp_socket(&mut stack, static_buf!(1024), static_buf!(32768));
        let ping = tcp_socket_nodelay(&mut stack, static_buf!(1024), static_buf!(1024));
        let pkt = tcp_socket_nodelay(&mut stack, static_buf!(1024), static_buf!(4096));
        let sink = tcp_socket(&mut stack, static_buf!(1024), static_buf!(32768));
        let ok = throughput(&mut stack, bulk, (peer, 9), bytes, "tcp")
            && round_trips(&mut stack, ping, peer, small)
            && packets(&mut stack, pkt, peer, pkts)
            && match host {
                None => true,
                Some(Some(endpoint)) => throughput(&mut stack, sink, endpoint, bytes, "host"),
                Some(None) => {
                    println!("netbench: host= is not A.B.C.D:PORT");
                    false
                }
            };
        println!("pathlen: done");
        println!("netbench: {}", if ok { "done" } else { "failed" });
        xen.shutdown(if ok {
            ShutdownReason::Poweroff
        } else {
            ShutdownReason::Crash
        })
    }

    /// The local port of a connection to `port`: one per phase, so a
    /// phase's connection never meets an earlier one's in TIME-WAIT.
    fn local_port(port: u16, phase: &str) -> u16 {
        match phase {
            "pkt" => 49300 + port,
            "host" => 49400,
            _ => 49200 + port,
        }
    }

    fn connect(
        stack: &mut NetStack<'static>,
        h: SocketHandle,
        (peer, port): (Ipv4Address, u16),
        phase: &str,
    ) -> bool {
        let cx = stack.iface.context();
        let s = stack.sockets.get_mut::<tcp::Socket>(h);
        if s.connect(cx, (IpAddress::Ipv4(peer), port), local_port(port, phase))
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

    /// Bulk TCP to `to`: `bytes` in 1 KiB writes, then the FIN.
    fn throughput(
        stack: &mut NetStack<'static>,
        h: SocketHandle,
        to: (Ipv4Address, u16),
        bytes: u64,
        phase: &str,
    ) -> bool {
        if !connect(stack, h, to, phase) {
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
            "netbench: {phase}: {bytes} bytes in {ns} ns ({} KiB/s)",
            bytes * 1_000_000_000 / 1024 / ns.max(1)
        );
        println!("pathlen: net-{phase}-per-KiB {}", tsc / kib);
        true
    }

    fn round_trips(
        stack: &mut NetStack<'static>,
        h: SocketHandle,
        peer: Ipv4Address,
        rounds: u64,
    ) -> bool {
        if !connect(stack, h, (peer, 7), "small") {
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

    /// `count` writes of 64 bytes to the discard port, one way, each
    /// sent as its own segment (written only while a tx buffer is free,
    /// and sent by the poll that follows), until all are acknowledged.
    fn packets(
        stack: &mut NetStack<'static>,
        h: SocketHandle,
        peer: Ipv4Address,
        count: u64,
    ) -> bool {
        if !connect(stack, h, (peer, 9), "pkt") {
            return false;
        }
        let msg = [0x3cu8; SMALL];
        let counts = |stack: &mut NetStack<'static>| {
            let s = stack.dev.front().stats();
            (s.tx_packets, s.tx_packets + s.rx_packets)
        };
        let (t0, c0, (seg0, f0)) = (stack.dev.front().now(), rdtsc(), counts(stack));
        let mut written = 0;
        loop {
            let s = stack.sockets.get_mut::<tcp::Socket>(h);
            if !s.is_open() {
                println!("netbench: pkt connection closed");
                return false;
            }
            if written == count && s.send_queue() == 0 {
                break;
            }
            // The poll after each write sends it while a tx buffer is
            // free, so writes do not pile up into larger segments.
            if written < count && s.can_send() && stack.dev.front().can_send() {
                written += s.send_slice(&msg).unwrap_or(0) as u64 / SMALL as u64;
                stack.poll();
                continue;
            }
            stack.poll_wait(100_000_000);
        }
        let (ns, tsc, (seg1, f1)) = (stack.dev.front().now() - t0, rdtsc() - c0, counts(stack));
        let frames = (f1 - f0).max(1);
        println!(
            "netbench: pkt: {count} writes of {SMALL} bytes, {} segments, {frames} frames in {ns} ns ({} frames/s)",
            seg1 - seg0,
            frames * 1_000_000_000 / ns.max(1)
        );
        println!("pathlen: net-pkt-64B {}", tsc / frames);
        stack.sockets.get_mut::<tcp::Socket>(h).close();
        true
    }
}
