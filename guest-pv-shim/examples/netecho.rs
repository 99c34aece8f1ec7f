//! `netecho` (issue 13): a TCP echo server (port 7) and discard server
//! (port 9) on vif 0, as inetd's. Command line `ip=A.B.C.D/LEN` (and
//! `gw=`). Prints `netecho: vif up: ...`, `netecho: listening on
//! <ip>:7 and :9`, then per connection `netecho: echo: <peer> closed
//! after <n> bytes` or `netecho: discard: <peer> sent <n> bytes`. Runs
//! until the machine is powered off.
#![cfg_attr(target_os = "none", no_std, no_main)]
#![forbid(unsafe_code)]

guest_pv_shim::guest_kernel!(kernel::main);

#[cfg(target_os = "none")]
#[path = "netcommon/mod.rs"]
mod netcommon;

#[cfg(target_os = "none")]
mod kernel {
    use guest_pv_shim::{println, Boot};
    use smoltcp::iface::SocketHandle;
    use smoltcp::socket::tcp;

    use crate::netcommon::{stack, static_buf, tcp_socket, tcp_socket_nodelay};

    /// What a listening socket does with what it receives.
    #[derive(Clone, Copy, PartialEq)]
    enum Service {
        Echo,
        Discard,
    }

    struct Server {
        handle: SocketHandle,
        service: Service,
        port: u16,
        bytes: u64,
        connected: bool,
    }

    pub fn main(boot: Boot) -> ! {
        let Boot { xen, start_info } = boot;
        let (mut stack, rest) = stack(&xen, &start_info, "netecho");
        let mut servers = [
            (Service::Echo, 7, static_buf!(16384), static_buf!(16384)),
            (Service::Echo, 7, static_buf!(4096), static_buf!(4096)),
            (Service::Discard, 9, static_buf!(65535), static_buf!(1024)),
        ]
        .map(|(service, port, rx, tx)| Server {
            handle: match service {
                Service::Echo => tcp_socket_nodelay(&mut stack, rx, tx),
                Service::Discard => tcp_socket(&mut stack, rx, tx),
            },
            service,
            port,
            bytes: 0,
            connected: false,
        });
        println!("netecho: listening on {}:7 and :9", rest.ip.cidr.address());
        let mut buf = [0u8; 2048];
        loop {
            stack.poll_wait(1_000_000_000);
            for server in &mut servers {
                let socket = stack.sockets.get_mut::<tcp::Socket>(server.handle);
                serve(server, socket, &mut buf);
            }
        }
    }

    fn serve(server: &mut Server, socket: &mut tcp::Socket, buf: &mut [u8]) {
        if !socket.is_open() {
            // Listening again after the last connection; cannot fail on an
            // unused port number.
            let _ = socket.listen(server.port);
            return;
        }
        // Established (not merely SYN-received): data may come.
        if socket.may_recv() && !server.connected {
            server.connected = true;
            server.bytes = 0;
        }
        while socket.can_recv() {
            let room = match server.service {
                Service::Echo => socket.send_capacity() - socket.send_queue(),
                Service::Discard => buf.len(),
            };
            if room == 0 {
                break;
            }
            let cap = room.min(buf.len());
            let n = socket.recv_slice(&mut buf[..cap]).unwrap_or(0);
            if n == 0 {
                break;
            }
            server.bytes += n as u64;
            if server.service == Service::Echo {
                let _ = socket.send_slice(&buf[..n]);
            }
        }
        if server.connected && !socket.may_recv() && socket.send_queue() == 0 {
            let peer = socket.remote_endpoint();
            match (server.service, peer) {
                (Service::Echo, Some(p)) => {
                    println!("netecho: echo: {p} closed after {} bytes", server.bytes)
                }
                (Service::Discard, Some(p)) => {
                    println!("netecho: discard: {p} sent {} bytes", server.bytes)
                }
                _ => {}
            }
            socket.close();
            server.connected = false;
        }
    }
}
