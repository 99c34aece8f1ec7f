//! The uplink benchmark's baseline: dom0 itself sending bulk TCP to the
//! host through its uplink NIC, before the vswitch takes the NIC, so
//! that a guest's rate through netfront, netback, the switch and the
//! same NIC (`netbench host=`) can be given as a share of it. dom0's
//! command line `uplink-bench=BYTES` runs it at boot, before the agent
//! starts: the same smoltcp (0.14) TCP as the guest's (32 KiB send
//! buffer, 1 KiB writes, the default MSS of a 1500-byte MTU), to the same
//! host sink ([`UPLINK_HOST_SERVICE`], relayed to the host by QEMU), timed
//! the same way: from the connection established until the sink has
//! acknowledged the last byte and the FIN. It prints
//!
//! `dom0: uplink-bench: <N> bytes in <ns> ns (<KiB/s> KiB/s)` and
//! `pathlen: net-uplink-dom0-per-KiB <TSC per KiB>`
//!
//! (under `-icount shift=0` the TSC counts instructions). A connection
//! the host refuses (no sink listening yet: QEMU's relay closes it) is
//! tried again, [`ATTEMPTS`] times at most.

use alloc::vec;

use abi::machine::{UPLINK_HOST_SERVICE, UPLINK_NET, UPLINK_PREFIX_LEN};
use guest_pv_shim::arch::cpu::rdtsc;
use guest_pv_shim::{println, Events};
use mgmt_net::smoltcp::iface::{Config, Interface, SocketSet, SocketStorage};
use mgmt_net::smoltcp::socket::tcp;
use mgmt_net::smoltcp::time::Instant;
use mgmt_net::smoltcp::wire::{
    EthernetAddress, HardwareAddress, IpAddress, IpCidr, Ipv4Address, Ipv4Cidr,
};

use crate::agent::tcp::NicDevice;
use crate::devices::Nic;

/// dom0's address on the uplink during the benchmark (below the guests',
/// `abi::machine::UPLINK_GUEST_FIRST`).
const ADDRESS_HOST_PART: u8 = 15;
/// Connections tried at most.
pub const ATTEMPTS: u16 = 5;
/// One attempt's limit, ns of system time.
const ATTEMPT_NS: u64 = 60_000_000_000;
/// Wait after a refused attempt, ns.
const RETRY_NS: u64 = 1_000_000_000;
/// The longest sleep between passes when smoltcp has no timer, ns.
const MAX_SLEEP_NS: u64 = 100_000_000;
/// How often a NIC without an interrupt is looked at, ns.
const POLL_NS: u64 = 1_000_000;
/// The send buffer and write size (netbench's).
const SEND_BUFFER: usize = 32 * 1024;
const WRITE: usize = 1024;

/// Runs the baseline per `spec` (a byte count); gives the NIC back.
pub fn run(nic: Nic, events: &Events, spec: &str) -> Nic {
    let Some(bytes) = spec.parse::<u64>().ok().filter(|b| *b >= WRITE as u64) else {
        println!("dom0: uplink-bench: bad byte count {spec:?} (at least {WRITE})");
        return nic;
    };
    let mut device = NicDevice::new(nic);
    for attempt in 1..=ATTEMPTS {
        match send(&mut device, events, bytes, attempt) {
            Ok((ns, tsc)) => {
                println!(
                    "dom0: uplink-bench: {bytes} bytes in {ns} ns ({} KiB/s)",
                    bytes * 1_000_000_000 / 1024 / ns.max(1)
                );
                println!("pathlen: net-uplink-dom0-per-KiB {}", tsc / (bytes / 1024));
                break;
            }
            Err(e) => {
                println!("dom0: uplink-bench: attempt {attempt}: {e}");
                let until = now(events).saturating_add(RETRY_NS);
                while now(events) < until {
                    let _ = events.block_until(Some(until));
                }
            }
        }
    }
    device.into_nic()
}

fn now(events: &Events) -> u64 {
    events.now().unwrap_or(0)
}

fn instant(ns: u64) -> Instant {
    Instant::from_micros(i64::try_from(ns / 1000).unwrap_or(i64::MAX))
}

/// One connection: sends `bytes`, closes; `(ns, TSC)` from established
/// to the FIN acknowledged.
fn send(
    device: &mut NicDevice,
    events: &Events,
    bytes: u64,
    attempt: u16,
) -> Result<(u64, u64), &'static str> {
    let mac = device.nic().mac();
    let mut config = Config::new(HardwareAddress::Ethernet(EthernetAddress(mac)));
    config.random_seed = rdtsc();
    let mut iface = Interface::new(config, device, instant(now(events)));
    let [a, b, c, _] = UPLINK_NET;
    iface.update_ip_addrs(|addrs| {
        let cidr = Ipv4Cidr::new(
            Ipv4Address::new(a, b, c, ADDRESS_HOST_PART),
            UPLINK_PREFIX_LEN,
        );
        let _ = addrs.push(IpCidr::Ipv4(cidr));
    });
    let mut storage = [SocketStorage::EMPTY];
    let mut sockets = SocketSet::new(&mut storage[..]);
    let socket = tcp::Socket::new(
        tcp::SocketBuffer::new(vec![0; WRITE]),
        tcp::SocketBuffer::new(vec![0; SEND_BUFFER]),
    );
    let h = sockets.add(socket);
    let ([w, x, y, z], port) = UPLINK_HOST_SERVICE;
    let remote = (IpAddress::v4(w, x, y, z), port);
    sockets
        .get_mut::<tcp::Socket>(h)
        .connect(iface.context(), remote, 49_000 + attempt)
        .map_err(|_| "connect refused by smoltcp")?;
    let deadline = now(events).saturating_add(ATTEMPT_NS);
    let chunk = [0x5au8; WRITE];
    let (mut sent, mut start) = (0u64, None);
    loop {
        let t = now(events);
        if t > deadline {
            return Err("timed out");
        }
        ack_nic(device, events);
        iface.poll(instant(t), device, &mut sockets);
        let s = sockets.get_mut::<tcp::Socket>(h);
        match s.state() {
            tcp::State::SynSent | tcp::State::SynReceived => {}
            tcp::State::Established if start.is_none() => start = Some((t, rdtsc())),
            tcp::State::Closed | tcp::State::CloseWait if sent < bytes => {
                return Err("the host closed the connection (no sink?)")
            }
            _ => {}
        }
        if start.is_some() {
            while sent < bytes && s.can_send() {
                let n = WRITE.min(usize::try_from(bytes - sent).unwrap_or(WRITE));
                sent += s.send_slice(&chunk[..n]).unwrap_or(0) as u64;
            }
            if sent == bytes && s.send_queue() == 0 {
                s.close();
            }
            let done = matches!(
                s.state(),
                tcp::State::Closed | tcp::State::TimeWait | tcp::State::FinWait2
            );
            if let (true, Some((t0, c0))) = (sent == bytes && done, start) {
                return Ok((now(events) - t0, rdtsc() - c0));
            }
        }
        let sleep = iface
            .poll_delay(instant(t), &sockets)
            .map_or(MAX_SLEEP_NS, |d| d.total_micros().saturating_mul(1000))
            .min(if device.nic().irq().is_some() {
                MAX_SLEEP_NS
            } else {
                POLL_NS
            });
        if sleep > 0 {
            let _ = events.block_until(Some(t.saturating_add(sleep)));
        }
    }
}

/// Acknowledges the NIC's interrupt if it fired (received frames wait in
/// its ring until the next poll takes them).
fn ack_nic(device: &mut NicDevice, events: &Events) {
    let nic = device.nic();
    if let Some(irq) = nic.irq() {
        if events.take(&[irq.port]).is_some() {
            if let Err(e) = nic.ack_interrupt(events.xen()) {
                println!("dom0: uplink-bench: NIC interrupt EOI failed: {e}");
            }
        }
    }
}
