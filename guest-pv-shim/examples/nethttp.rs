//! `nethttp` (issue 13): a small HTTP/1.0 server on vif 0, port 80
//! (`port=N` to change). `GET /` answers `200 OK` with a one-line page
//! naming the domain (its store `name`) and its address; any other
//! request gets `404` (or `400` if it is not a request line). Command
//! line `ip=A.B.C.D/LEN` (`gw=`). Prints `nethttp: vif up: ...`,
//! `nethttp: serving http on <ip>:<port>` and per request `nethttp:
//! <peer> GET / 200`. Runs until the machine is powered off.
#![cfg_attr(target_os = "none", no_std, no_main)]
#![forbid(unsafe_code)]

guest_pv_shim::guest_kernel!(kernel::main);

#[cfg(target_os = "none")]
#[path = "netcommon/mod.rs"]
mod netcommon;

#[cfg(target_os = "none")]
mod kernel {
    use core::fmt::Write;

    use guest_pv_shim::xenbus::path::PathBuf;
    use guest_pv_shim::xenbus::Tx;
    use guest_pv_shim::{println, Boot};
    use smoltcp::iface::SocketHandle;
    use smoltcp::socket::tcp;

    use crate::netcommon::{arg, stack, static_buf, tcp_socket};

    /// Longest request head read, bytes; a longer one is answered 400.
    const REQUEST_MAX: usize = 1024;

    struct Conn {
        handle: SocketHandle,
        head: [u8; REQUEST_MAX],
        len: usize,
        answered: bool,
    }

    pub fn main(boot: Boot) -> ! {
        let Boot { xen, start_info } = boot;
        let (mut stack, mut rest) = stack(&xen, &start_info, "nethttp");
        let port = u16::try_from(arg(&start_info, "port", 80)).unwrap_or(80);
        let name = match rest.xs.read_str(Tx::NONE, "name") {
            Ok(n) => PathBuf::format(format_args!("{n}")).ok(),
            Err(_) => None,
        };
        let name = name.as_ref().map_or("?", |n| n.as_str());
        let mut page = PathBuf::format(format_args!(
            "hello from {name} at {} over netfront\n",
            rest.ip.cidr.address()
        ))
        .ok();
        let page = page.as_mut().map_or("hello\n", |p| p.as_str());
        // One `static_buf!` per buffer: each expansion is one static, and a
        // second lock of the same one (a closure run twice) never returns.
        let conn = |handle| Conn {
            handle,
            head: [0; REQUEST_MAX],
            len: 0,
            answered: false,
        };
        let first = tcp_socket(&mut stack, static_buf!(2048), static_buf!(2048));
        let second = tcp_socket(&mut stack, static_buf!(2048), static_buf!(2048));
        let mut conns = [conn(first), conn(second)];
        println!("nethttp: serving http on {}:{port}", rest.ip.cidr.address());
        loop {
            stack.poll_wait(1_000_000_000);
            for conn in &mut conns {
                let socket = stack.sockets.get_mut::<tcp::Socket>(conn.handle);
                serve(conn, socket, port, page);
            }
        }
    }

    fn serve(conn: &mut Conn, socket: &mut tcp::Socket, port: u16, page: &str) {
        if !socket.is_open() {
            let _ = socket.listen(port);
            conn.len = 0;
            conn.answered = false;
            return;
        }
        // Listening, or a handshake under way: no request yet.
        let waiting = !socket.is_active() || socket.state() == tcp::State::SynReceived;
        if conn.answered || waiting {
            return;
        }
        if socket.can_recv() {
            let n = socket.recv_slice(&mut conn.head[conn.len..]).unwrap_or(0);
            conn.len += n;
        }
        let head = &conn.head[..conn.len];
        let complete = head.windows(4).any(|w| w == b"\r\n\r\n");
        if !complete && conn.len < REQUEST_MAX && socket.may_recv() {
            return;
        }
        let line = head.split(|b| *b == b'\r').next().unwrap_or_default();
        let (status, body) = if line.starts_with(b"GET / ") {
            ("200 OK", page)
        } else if line.starts_with(b"GET ") {
            ("404 Not Found", "not found\n")
        } else {
            ("400 Bad Request", "bad request\n")
        };
        let mut reply = ReplyBuf::default();
        let _ = write!(
            reply,
            "HTTP/1.0 {status}\r\nContent-Type: text/plain\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
            body.len()
        );
        let _ = socket.send_slice(reply.as_bytes());
        socket.close();
        conn.answered = true;
        let peer = socket.remote_endpoint();
        let method = core::str::from_utf8(line).unwrap_or("?");
        let method = method.rsplit_once(' ').map_or(method, |(m, _)| m);
        if let Some(peer) = peer {
            println!("nethttp: {peer} {method} {}", &status[..3]);
        }
    }

    /// A reply, formatted into a fixed buffer (cut at its end).
    struct ReplyBuf {
        buf: [u8; 512],
        len: usize,
    }

    impl Default for ReplyBuf {
        fn default() -> Self {
            ReplyBuf {
                buf: [0; 512],
                len: 0,
            }
        }
    }

    impl ReplyBuf {
        fn as_bytes(&self) -> &[u8] {
            &self.buf[..self.len]
        }
    }

    impl Write for ReplyBuf {
        fn write_str(&mut self, s: &str) -> core::fmt::Result {
            let n = s.len().min(self.buf.len() - self.len);
            self.buf[self.len..self.len + n].copy_from_slice(&s.as_bytes()[..n]);
            self.len += n;
            Ok(())
        }
    }
}
