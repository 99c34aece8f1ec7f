//! `netclient` (issue 13): connects out over vif 0, sends a message and
//! prints the reply. Command line `ip=A.B.C.D/LEN` (`gw=`),
//! `peer=A.B.C.D:PORT`, `msg=TEXT` (default `hello`), `timeout_ms=N`
//! (default 10000: how long to try to connect; a refused attempt is
//! tried again 200 ms later, the server may not listen yet) and `after_release=1`
//! (then wait for a domain to be released, `@releaseDomain`, and do it
//! once more), `csum_offload=1` (TCP checksums left blank for netback to
//! fill, `NETTXF_csum_blank`, as Linux's netfront sends them). Prints `netclient: vif up: ...`, then `netclient: reply:
//! <text>` (or `netclient: no connection to <peer> within <N> ms`, or
//! `netclient: connection to <peer> failed`), `netclient: after release:
//! reply: <text>`, `netclient: done: <R> replies`; poweroff.
#![cfg_attr(target_os = "none", no_std, no_main)]
#![forbid(unsafe_code)]

guest_pv_shim::guest_kernel!(kernel::main);

#[cfg(target_os = "none")]
#[path = "netcommon/mod.rs"]
mod netcommon;

#[cfg(target_os = "none")]
mod kernel {
    use guest_pv_shim::net::{parse_endpoint, NetStack};
    use guest_pv_shim::xenbus::{Client, WatchEvent};
    use guest_pv_shim::{println, Boot, ShutdownReason};
    use smoltcp::iface::SocketHandle;
    use smoltcp::socket::tcp;
    use smoltcp::wire::{IpAddress, Ipv4Address};

    use crate::netcommon::{arg, stack, static_buf, tcp_socket};

    const MSG_MAX: usize = 256;

    // Returned once per exchange; boxing needs an allocator.
    #[allow(clippy::large_enum_variant)]
    enum Outcome {
        Reply([u8; MSG_MAX], usize),
        NoConnection,
        Failed,
        Refused,
    }

    pub fn main(boot: Boot) -> ! {
        let Boot { xen, start_info } = boot;
        let (mut stack, mut rest) = stack(&xen, &start_info, "netclient");
        let Some(peer) = start_info.cmdline_arg("peer").and_then(parse_endpoint) else {
            println!("netclient: need peer=A.B.C.D:PORT");
            xen.shutdown(ShutdownReason::Crash)
        };
        let msg = start_info.cmdline_arg("msg").unwrap_or("hello").as_bytes();
        let msg = &msg[..msg.len().min(MSG_MAX)];
        let timeout_ns = arg(&start_info, "timeout_ms", 10_000) * 1_000_000;
        if arg(&start_info, "csum_offload", 0) == 1 {
            stack.set_csum_offload(true);
        }
        let handle = tcp_socket(&mut stack, static_buf!(4096), static_buf!(4096));
        let mut replies = 0;
        if report(
            "",
            exchange(&mut stack, handle, peer, msg, timeout_ns, 49152),
            peer,
        ) {
            replies += 1;
            if arg(&start_info, "after_release", 0) == 1 {
                wait_for_release(&mut rest.xs);
                let second = tcp_socket(&mut stack, static_buf!(4096), static_buf!(4096));
                let again = exchange(&mut stack, second, peer, msg, timeout_ns, 50152);
                if report("after release: ", again, peer) {
                    replies += 1;
                }
            }
        }
        println!("netclient: done: {replies} replies");
        xen.shutdown(ShutdownReason::Poweroff)
    }

    fn report(what: &str, outcome: Outcome, (addr, port): (Ipv4Address, u16)) -> bool {
        match outcome {
            Outcome::Reply(buf, n) => {
                let text = core::str::from_utf8(&buf[..n]).unwrap_or("<not utf-8>");
                println!("netclient: {what}reply: {text}");
                true
            }
            Outcome::NoConnection | Outcome::Refused => {
                println!("netclient: {what}no connection to {addr}:{port} within the timeout");
                false
            }
            Outcome::Failed => {
                println!("netclient: {what}connection to {addr}:{port} failed");
                false
            }
        }
    }

    fn on_release(
        _: &mut Client<guest_pv_shim::arch::xenbus_front::StoreRing>,
        _: &WatchEvent<'_>,
    ) {
    }

    /// Sleeps until `@releaseDomain` fires after its registration.
    fn wait_for_release(xs: &mut Client<guest_pv_shim::arch::xenbus_front::StoreRing>) {
        if xs.watch("@releaseDomain", on_release).is_err() {
            return;
        }
        // The first event is the registration's own.
        let mut events = 0;
        while events < 2 {
            match xs.wait_for_events() {
                Ok(n) => events += n,
                Err(_) => return,
            }
        }
    }

    /// Connects (again every 200 ms while refused, until the timeout),
    /// sends `msg` and reads as much back.
    fn exchange(
        stack: &mut NetStack<'static>,
        handle: SocketHandle,
        peer: (Ipv4Address, u16),
        msg: &[u8],
        timeout_ns: u64,
        local_port: u16,
    ) -> Outcome {
        let start = stack.dev.front().now();
        for attempt in 0..100 {
            let left = timeout_ns.saturating_sub(stack.dev.front().now() - start);
            match attempt_once(stack, handle, peer, msg, left, local_port + attempt) {
                Outcome::Refused if left > 0 => {
                    let until = stack.dev.front().now() + 200_000_000;
                    loop {
                        let now = stack.dev.front().now();
                        if now >= until {
                            break;
                        }
                        stack.poll_wait(until - now);
                    }
                }
                Outcome::Refused => return Outcome::NoConnection,
                other => return other,
            }
        }
        Outcome::NoConnection
    }

    fn attempt_once(
        stack: &mut NetStack<'static>,
        handle: SocketHandle,
        (addr, port): (Ipv4Address, u16),
        msg: &[u8],
        timeout_ns: u64,
        local_port: u16,
    ) -> Outcome {
        let start = stack.dev.front().now();
        let cx = stack.iface.context();
        let socket = stack.sockets.get_mut::<tcp::Socket>(handle);
        if socket
            .connect(cx, (IpAddress::Ipv4(addr), port), local_port)
            .is_err()
        {
            return Outcome::Failed;
        }
        let mut sent = 0;
        let mut reply = [0u8; MSG_MAX];
        let mut got = 0;
        loop {
            stack.poll_wait(100_000_000);
            let now = stack.dev.front().now();
            let socket = stack.sockets.get_mut::<tcp::Socket>(handle);
            if !socket.is_open() {
                return if sent == 0 {
                    Outcome::Refused
                } else {
                    Outcome::Failed
                };
            }
            if !socket.may_send() && sent == 0 {
                if now.saturating_sub(start) > timeout_ns {
                    socket.abort();
                    stack.poll();
                    return Outcome::NoConnection;
                }
                continue;
            }
            if sent < msg.len() && socket.can_send() {
                sent += socket.send_slice(&msg[sent..]).unwrap_or(0);
            }
            if socket.can_recv() {
                got += socket.recv_slice(&mut reply[got..]).unwrap_or(0);
            }
            if got >= msg.len() || (!socket.may_recv() && sent == msg.len()) {
                socket.close();
                // Lets the FIN go out before the caller goes on.
                for _ in 0..10 {
                    stack.poll_wait(10_000_000);
                }
                return Outcome::Reply(reply, got);
            }
        }
    }
}
