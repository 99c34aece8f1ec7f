//! The management protocol over TCP on the management NIC: the NIC as a
//! `smoltcp` device, and the agent's requests served through
//! [`mgmt_net::MgmtNet`] (authenticated connections, one session each;
//! the rules are in `mgmt-net`).
//!
//! The NIC's INTx reaches dom0 as an event (`devices` bound its GSI to a
//! port: [`Nic::irq`]). When it fired, a pass acknowledges it
//! ([`Nic::ack_interrupt`]: the virtio ISR read lowers the line, then the
//! EOI), then lets smoltcp drain every received frame. Between
//! events the agent sleeps until smoltcp's next timer
//! (`Interface::poll_delay`: retransmissions, keep-alives) or one of the
//! connections' own (authentication timeout, partial-frame flush).
//! Without the interrupt the agent looks every [`POLL_NS`].

use core::fmt;

use guest_pv_shim::println;
use mgmt::auth::Key;
use mgmt::{MgmtError, Reply, Request, ServerMessage, SessionId};
use mgmt_net::smoltcp::phy::{self, Device, DeviceCapabilities, Medium};
use mgmt_net::smoltcp::time::Instant;
use mgmt_net::{MgmtNet, NetConfig, Service};
use toolstack::Hypervisor;

use super::session::{Ctx, Session};
use crate::devices::{Nic, MAX_FRAME_BYTES};

/// How often the agent looks at the NIC when its interrupt could not be
/// bound, ns.
pub const POLL_NS: u64 = 5_000_000;

/// The management NIC as a `smoltcp` device: whole Ethernet frames.
pub struct NicDevice {
    nic: Nic,
    /// Frames the device failed to receive or send (dropped; TCP resends).
    errors: u64,
}

/// A received frame, copied out of the device's buffer.
pub struct RxToken {
    frame: [u8; MAX_FRAME_BYTES],
    len: usize,
}

/// Room for one frame to send.
pub struct TxToken<'a> {
    device: &'a mut NicDevice,
}

impl phy::RxToken for RxToken {
    fn consume<R, F: FnOnce(&[u8]) -> R>(self, f: F) -> R {
        f(&self.frame[..self.len])
    }
}

impl phy::TxToken for TxToken<'_> {
    fn consume<R, F: FnOnce(&mut [u8]) -> R>(self, len: usize, f: F) -> R {
        // smoltcp keeps to the MTU below, so `len` fits.
        let mut frame = [0u8; MAX_FRAME_BYTES];
        let len = len.min(MAX_FRAME_BYTES);
        let r = f(&mut frame[..len]);
        if self.device.nic.transmit(&frame[..len]).is_err() {
            self.device.errors += 1;
        }
        r
    }
}

impl NicDevice {
    /// `nic` as a `smoltcp` device (also dom0's uplink benchmark's,
    /// `crate::switch::baseline`, before the vswitch takes the NIC).
    pub fn new(nic: Nic) -> Self {
        NicDevice { nic, errors: 0 }
    }

    /// The NIC.
    pub fn nic(&mut self) -> &mut Nic {
        &mut self.nic
    }

    /// The NIC back.
    pub fn into_nic(self) -> Nic {
        self.nic
    }
}

impl Device for NicDevice {
    type RxToken<'a> = RxToken;
    type TxToken<'a> = TxToken<'a>;

    fn receive(&mut self, _: Instant) -> Option<(RxToken, TxToken<'_>)> {
        let mut frame = [0u8; MAX_FRAME_BYTES];
        match self.nic.receive(&mut frame) {
            Ok(Some(len)) => Some((RxToken { frame, len }, TxToken { device: self })),
            Ok(None) => None,
            Err(_) => {
                self.errors += 1;
                None
            }
        }
    }

    fn transmit(&mut self, _: Instant) -> Option<TxToken<'_>> {
        self.nic.can_transmit().then_some(TxToken { device: self })
    }

    fn capabilities(&self) -> DeviceCapabilities {
        let mut caps = DeviceCapabilities::default();
        caps.medium = Medium::Ethernet;
        caps.max_transmission_unit = MAX_FRAME_BYTES;
        caps
    }
}

/// The TCP server on the management NIC.
pub struct TcpServer {
    net: MgmtNet<Session>,
    device: NicDevice,
    /// The NIC's interrupt is bound to a port (else the agent polls).
    interrupts: bool,
}

impl TcpServer {
    /// Listens on `nic` ([`NetConfig::qemu_user`]) for clients holding
    /// `key`.
    pub fn start(nic: Nic, key: Key, now_ns: u64) -> TcpServer {
        let config = NetConfig::qemu_user(nic.mac());
        let interrupts = nic.irq().is_some();
        if !interrupts {
            println!(
                "dom0: mgmt: tcp: the NIC's interrupt is not bound: polling every {POLL_NS} ns"
            );
        }
        let mut device = NicDevice::new(nic);
        let net = MgmtNet::new(&config, key, &mut device, now_ns, now_ns ^ tsc());
        let [a, b, c, d] = config.address;
        println!(
            "dom0: mgmt: serving the management protocol on tcp {a}.{b}.{c}.{d}:{} (authenticated)",
            config.port
        );
        TcpServer {
            net,
            device,
            interrupts,
        }
    }

    /// One pass: acknowledges the NIC's interrupt if it fired, serves
    /// every connection with what requests act on (`ctx`). Returns when
    /// the next pass is due without an event (system time, ns; `None`: not
    /// before the NIC's next event).
    pub fn poll(
        &mut self,
        now_ns: u64,
        ctx: Ctx<'_, impl Hypervisor>,
        power_off: &mut bool,
    ) -> Option<u64> {
        if let Some(irq) = self.device.nic.irq() {
            let events = ctx.backend.events();
            if events.take(&[irq.port]).is_some() {
                if let Err(e) = self.device.nic.ack_interrupt(events.xen()) {
                    println!("dom0: mgmt: tcp: NIC interrupt EOI failed: {e}");
                }
            }
        }
        let mut service = Agent { ctx, power_off };
        let delay = self.net.poll(now_ns, &mut self.device, &mut service, tsc());
        let delay = if self.interrupts {
            delay
        } else {
            Some(delay.map_or(POLL_NS, |d| d.min(POLL_NS)))
        };
        delay.map(|d| now_ns.saturating_add(d))
    }
}

/// The TSC: unpredictable enough low bits to vary challenge nonces and
/// TCP sequence numbers between boots (`mgmt::auth::NonceSource` says
/// why a counter is what makes nonces unique).
fn tsc() -> u64 {
    // RDTSC is unprivileged and has no side effect.
    guest_pv_shim::arch::cpu::rdtsc()
}

/// The agent's requests, as `mgmt-net` asks for them.
struct Agent<'a, 'b, H> {
    ctx: Ctx<'a, H>,
    power_off: &'b mut bool,
}

impl<H: Hypervisor> Service for Agent<'_, '_, H> {
    type Session = Session;

    fn handle(&mut self, session: &mut Session, request: Request) -> Result<Reply, MgmtError> {
        let result = session.dispatch(request, &mut self.ctx);
        if session.power_off_requested() {
            *self.power_off = true;
        }
        result
    }

    fn events(
        &mut self,
        id: SessionId,
        session: &mut Session,
        send: &mut dyn FnMut(&ServerMessage),
    ) {
        session.console_events(id, self.ctx.backend, &mut *send);
        session.store_events(id, self.ctx.store, send);
    }

    fn ended(&mut self, id: SessionId, session: Session) {
        super::log_end(id, session, self.ctx.store, self.ctx.hv);
    }

    fn next_session_seed(&mut self) -> u32 {
        // Any 32 bits of the clock's ~ms count, as on COM2.
        let now = self.ctx.backend.now().unwrap_or(1);
        u32::try_from((now >> 20) & 0xffff_ffff).unwrap_or(1)
    }

    fn log(&mut self, line: fmt::Arguments<'_>) {
        println!("dom0: mgmt: tcp: {line}");
    }
}
