//! What the network example guests share: bringing vif 0 up with the
//! address from the command line, static storage for smoltcp, and TCP
//! helpers. Included by each `net*` example with `#[path]`.
#![allow(dead_code)] // each example uses its part

use guest_pv_shim::net::{self, NetStack, Up};
use guest_pv_shim::{println, ShutdownReason, StartInfo, Xen};
use smoltcp::iface::{SocketHandle, SocketStorage};
use smoltcp::socket::tcp;

/// A `&'static mut [u8; N]` of its own at each use (a static taken once).
macro_rules! static_buf {
    ($n:expr) => {{
        static BUF: spin::Mutex<[u8; $n]> = spin::Mutex::new([0; $n]);
        let buf: &'static mut [u8; $n] = spin::MutexGuard::leak(BUF.lock());
        &mut buf[..]
    }};
}
pub(crate) use static_buf;

/// Sockets a guest may have.
pub const SOCKETS: usize = 4;

/// Brings vif 0 up (or crashes with the reason) and builds the stack;
/// says `<name>: vif up: mac .., ip ..`.
pub fn stack(xen: &Xen, start_info: &StartInfo, name: &str) -> (NetStack<'static>, Rest) {
    let up = match net::up(xen, start_info) {
        Ok(up) => up,
        Err(e) => {
            println!("{name}: network setup failed: {e}");
            xen.shutdown(ShutdownReason::Crash)
        }
    };
    let Up { front, ip, xs } = up;
    let m = front.mac();
    println!(
        "{name}: vif up: mac {:02x}:{:02x}:{:02x}:{:02x}:{:02x}:{:02x}, ip {}",
        m[0], m[1], m[2], m[3], m[4], m[5], ip.cidr
    );
    static STORAGE: spin::Mutex<[SocketStorage<'static>; SOCKETS]> =
        spin::Mutex::new([SocketStorage::EMPTY; SOCKETS]);
    let storage: &'static mut [SocketStorage<'static>; SOCKETS] =
        spin::MutexGuard::leak(STORAGE.lock());
    (NetStack::new(front, &ip, &mut storage[..]), Rest { ip, xs })
}

/// What [`stack`] hands back besides the stack.
pub struct Rest {
    /// The address.
    pub ip: net::IpConfig,
    /// The store client.
    pub xs: guest_pv_shim::xenbus::Client<guest_pv_shim::arch::xenbus_front::StoreRing>,
}

/// A TCP socket over the two buffers.
pub fn tcp_socket(
    stack: &mut NetStack<'static>,
    rx: &'static mut [u8],
    tx: &'static mut [u8],
) -> SocketHandle {
    let socket = tcp::Socket::new(tcp::SocketBuffer::new(rx), tcp::SocketBuffer::new(tx));
    stack.sockets.add(socket)
}

/// A TCP socket for request/response traffic: segments go out at once
/// (no Nagle, as `TCP_NODELAY`) and ACKs are not delayed (as
/// `TCP_QUICKACK`), so a round trip does not wait for smoltcp's 10 ms
/// ACK delay.
pub fn tcp_socket_nodelay(
    stack: &mut NetStack<'static>,
    rx: &'static mut [u8],
    tx: &'static mut [u8],
) -> SocketHandle {
    let mut socket = tcp::Socket::new(tcp::SocketBuffer::new(rx), tcp::SocketBuffer::new(tx));
    socket.set_nagle_enabled(false);
    socket.set_ack_delay(None);
    stack.sockets.add(socket)
}

/// A `u64` command-line value, or `default`.
pub fn arg(start_info: &StartInfo, key: &str, default: u64) -> u64 {
    start_info
        .cmdline_arg(key)
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}
