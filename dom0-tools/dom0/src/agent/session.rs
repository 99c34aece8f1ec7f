//! One client's conversation: the handshake, the chunked upload, the
//! attached console, and what each request does.
//!
//! COM2 carries no connect or disconnect signal (QEMU's socket backend
//! hands the line to whichever client connects), so a client is known by
//! its `Hello`: a `Hello` starts a new session, dropping the previous
//! one's upload and console stream. Until then every request is
//! answered with `HandshakeRequired`.

use alloc::string::String;
use alloc::vec::Vec;

use abi::control::{CONTROL_ABI_MAJOR, CONTROL_ABI_MINOR, SHUTDOWN_POWEROFF, SHUTDOWN_REBOOT};
use abi::xen::domid::DomId;
use guest_pv_shim::console::nul_padded_str;
use guest_pv_shim::println;
use mgmt::{
    answer_hello, ConsoleEnd, ControlAbiVersion, DomainConfig, DomainOperation, DomainRef, Event,
    HostInfo, MgmtError, Reply, Request, ServerMessage, ShutdownKind, ShutdownReason, Upload,
    UploadError, MAX_CONSOLE_DATA, MAX_CONSOLE_HISTORY,
};
use toolstack::{create_domain, DomainSpec, Hypervisor};

use super::domains::{self, check_operable, find, hypervisor_error, is_dom0};
use crate::console_backend::{self, Backend};

/// What a request needs to act on.
pub struct Ctx<'a, H> {
    /// The control operations (the toolstack's view of the hypervisor).
    pub hv: &'a mut H,
    /// The console backend (history, input, rescans).
    pub backend: &'a mut Backend,
}

/// A console stream: new output of `domid` from position `next` on.
struct Stream {
    domid: DomId,
    next: u64,
}

/// The state of the current client.
#[derive(Default)]
pub struct Session {
    handshake_done: bool,
    upload: Option<Upload>,
    stream: Option<Stream>,
    /// Set by `Shutdown` of dom0 with power-off: the agent stops after
    /// the reply.
    power_off: bool,
}

impl Session {
    /// Whether dom0 was asked to power off.
    pub fn power_off_requested(&self) -> bool {
        self.power_off
    }

    /// The reply to request `id`.
    pub fn handle(
        &mut self,
        id: u32,
        request: Request,
        ctx: &mut Ctx<'_, impl Hypervisor>,
    ) -> ServerMessage {
        ServerMessage::Reply {
            id,
            result: self.dispatch(request, ctx),
        }
    }

    fn dispatch(
        &mut self,
        request: Request,
        ctx: &mut Ctx<'_, impl Hypervisor>,
    ) -> Result<Reply, MgmtError> {
        match request {
            Request::Hello { version } => {
                let reply = answer_hello(version)?;
                *self = Session {
                    handshake_done: true,
                    ..Session::default()
                };
                Ok(reply)
            }
            _ if !self.handshake_done => Err(MgmtError::HandshakeRequired),
            Request::Info => info(ctx),
            Request::List => Ok(Reply::List(
                domains::list(ctx.hv)?
                    .iter()
                    .map(domains::summary)
                    .collect(),
            )),
            Request::DomainInfo { domain } => {
                Ok(Reply::Domain(domains::summary(&find(ctx.hv, &domain)?)))
            }
            Request::CreateBegin {
                config,
                image_len,
                image_crc32,
            } => {
                self.upload = None;
                precheck(ctx.hv, &config)?;
                self.upload = Some(Upload::begin(config, image_len, image_crc32)?);
                Ok(Reply::UploadReady)
            }
            Request::ImageChunk { offset, data } => {
                let upload = self.upload.as_mut().ok_or(UploadError::NotStarted)?;
                match upload.add_chunk(offset, &data) {
                    Ok(received) => Ok(Reply::ChunkAccepted { received }),
                    Err(e) => {
                        self.upload = None;
                        Err(e.into())
                    }
                }
            }
            Request::CreateCommit => {
                let upload = self.upload.take().ok_or(UploadError::NotStarted)?;
                let (config, image) = upload.finish()?;
                let domid = create(ctx, &config, &image)?;
                Ok(Reply::Created { domid })
            }
            Request::CreateAbort => {
                self.upload = None;
                Ok(Reply::Done)
            }
            Request::Destroy { domain } => {
                let info = find(ctx.hv, &domain)?;
                if is_dom0(&info) {
                    return Err(MgmtError::Dom0Protected(DomainOperation::Destroy));
                }
                // The backend lets go of the ring before the memory goes.
                ctx.backend.forget(info.domid);
                ctx.hv
                    .destroy(info.domid)
                    .map_err(|e| hypervisor_error("destroy", e))?;
                println!(
                    "dom0: mgmt: destroyed d{} ({})",
                    info.domid,
                    domains::name_of(&info)
                );
                Ok(Reply::Done)
            }
            Request::Pause { domain } => {
                let info = find(ctx.hv, &domain)?;
                check_operable(&info, DomainOperation::Pause)?;
                ctx.hv
                    .pause(info.domid)
                    .map_err(|e| hypervisor_error("pause", e))?;
                Ok(Reply::Done)
            }
            Request::Unpause { domain } => {
                let info = find(ctx.hv, &domain)?;
                check_operable(&info, DomainOperation::Unpause)?;
                ctx.hv
                    .unpause(info.domid)
                    .map_err(|e| hypervisor_error("unpause", e))?;
                Ok(Reply::Done)
            }
            Request::Shutdown { domain, kind } => self.shutdown(ctx, &domain, kind),
            Request::ConsoleAttach { domain, follow } => self.attach(ctx, &domain, follow),
            Request::ConsoleInput { data } => {
                let stream = self.stream.as_ref().ok_or(MgmtError::ConsoleNotAttached)?;
                console_input(ctx, stream.domid, &data)
            }
            Request::ConsoleDetach => {
                self.stream.take().ok_or(MgmtError::ConsoleNotAttached)?;
                Ok(Reply::Done)
            }
            Request::Dmesg => dmesg(ctx.backend),
        }
    }

    /// `Shutdown`: a domU is shut down with `SCHEDOP_remote_shutdown`;
    /// dom0 with power-off ends the machine once the reply is out.
    fn shutdown(
        &mut self,
        ctx: &mut Ctx<'_, impl Hypervisor>,
        domain: &DomainRef,
        kind: ShutdownKind,
    ) -> Result<Reply, MgmtError> {
        let info = find(ctx.hv, domain)?;
        if is_dom0(&info) {
            return match kind {
                ShutdownKind::Poweroff => {
                    self.power_off = true;
                    Ok(Reply::Done)
                }
                ShutdownKind::Reboot => Err(MgmtError::Unsupported(
                    "rebooting dom0 (xen-core stops when dom0 shuts down; power it off instead)"
                        .into(),
                )),
            };
        }
        check_operable(&info, DomainOperation::Shutdown)?;
        let reason = match kind {
            ShutdownKind::Poweroff => SHUTDOWN_POWEROFF,
            ShutdownKind::Reboot => SHUTDOWN_REBOOT,
        };
        // Without a store there is no `control/shutdown` key to ask the
        // guest through: the hypervisor shuts it down, as Xen's
        // domain_shutdown does for a guest without PV drivers.
        ctx.backend
            .xen()
            .remote_shutdown(info.domid, reason)
            .map_err(|e| MgmtError::Hypervisor {
                operation: "remote shutdown".into(),
                errno: e.0 as i32,
            })?;
        ctx.backend.rescan_soon();
        Ok(Reply::Done)
    }

    /// `ConsoleAttach`: the kept history now, and with `follow` a stream
    /// of what comes after it.
    fn attach(
        &mut self,
        ctx: &mut Ctx<'_, impl Hypervisor>,
        domain: &DomainRef,
        follow: bool,
    ) -> Result<Reply, MgmtError> {
        let info = find(ctx.hv, domain)?;
        if is_dom0(&info) {
            return Err(MgmtError::Unsupported(
                "the console of dom0: it writes to the hypervisor's log (COM1)".into(),
            ));
        }
        if ctx.backend.history(info.domid).is_none() {
            // Created a moment ago (`create -c`): attach it now.
            ctx.backend.rescan();
        }
        let (name, (older, newer), next) = ctx.backend.history(info.domid).ok_or_else(|| {
            MgmtError::Unsupported(alloc::format!(
                "attaching to domain {}: it has no PV console",
                info.domid
            ))
        })?;
        let mut history = Vec::with_capacity(older.len() + newer.len());
        history.extend_from_slice(older);
        history.extend_from_slice(newer);
        let keep_from = history.len().saturating_sub(MAX_CONSOLE_HISTORY);
        history.drain(..keep_from);
        let name = String::from(name);
        self.stream = follow.then_some(Stream {
            domid: info.domid,
            next,
        });
        Ok(Reply::ConsoleAttached {
            domid: info.domid,
            name,
            history,
        })
    }

    /// The attached console's new output as events, then
    /// `ConsoleClosed` if its domain shut down or is gone.
    pub fn console_events(&mut self, backend: &Backend, mut send: impl FnMut(&ServerMessage)) {
        let Some(stream) = self.stream.as_mut() else {
            return;
        };
        let domid = stream.domid;
        let Some(output) = backend.output_since(domid, stream.next) else {
            self.stream = None;
            send(&closed(domid, ConsoleEnd::Destroyed));
            return;
        };
        let (older, newer) = output.bytes;
        for data in older
            .chunks(MAX_CONSOLE_DATA)
            .chain(newer.chunks(MAX_CONSOLE_DATA))
        {
            send(&ServerMessage::Event(Event::ConsoleOutput {
                domid,
                data: data.to_vec(),
            }));
        }
        stream.next = output.next;
        if let Some(end) = output.ended {
            self.stream = None;
            let reason = match end {
                console_backend::ConsoleEnd::Shutdown(code) => {
                    // xen-core reports only Xen's codes (SCHEDOP_shutdown
                    // refuses others): anything else shows as a crash.
                    ConsoleEnd::Shutdown(
                        ShutdownReason::from_code(code).unwrap_or(ShutdownReason::Crash),
                    )
                }
                console_backend::ConsoleEnd::Destroyed => ConsoleEnd::Destroyed,
            };
            send(&closed(domid, reason));
        }
    }
}

fn closed(domid: DomId, reason: ConsoleEnd) -> ServerMessage {
    ServerMessage::Event(Event::ConsoleClosed { domid, reason })
}

/// `Info`: the hypervisor's version (`xen_version`), our control ABI's,
/// and `CONTROL_OP_PHYSINFO`.
fn info(ctx: &mut Ctx<'_, impl Hypervisor>) -> Result<Reply, MgmtError> {
    let xen = ctx.backend.xen();
    let version = xen
        .version()
        .and_then(|v| Ok((v, xen.extraversion()?)))
        .map_err(|e| MgmtError::Hypervisor {
            operation: "xen_version".into(),
            errno: e.0 as i32,
        })?;
    let ((major, minor), extra) = version;
    let physinfo = ctx
        .hv
        .physinfo()
        .map_err(|e| hypervisor_error("physinfo", e))?;
    Ok(Reply::Info(HostInfo {
        hypervisor_version: alloc::format!("Xen {major}.{minor}{}", nul_padded_str(&extra)),
        control_abi: ControlAbiVersion {
            major: CONTROL_ABI_MAJOR,
            minor: CONTROL_ABI_MINOR,
        },
        nr_pcpus: physinfo.nr_pcpus,
        nr_domains: physinfo.nr_domains,
        total_memory_kib: physinfo.total_memory_kib,
        free_memory_kib: physinfo.free_memory_kib,
    }))
}

/// Refuses a new domain early (before its image is sent, and again
/// before it is built): a name in use, more memory than is free.
fn precheck(hv: &mut impl Hypervisor, config: &DomainConfig) -> Result<(), MgmtError> {
    config.validate()?;
    if domains::list(hv)?
        .iter()
        .any(|info| domains::name_of(info) == config.name)
    {
        return Err(MgmtError::DuplicateName(config.name.clone()));
    }
    let free_kib = hv
        .physinfo()
        .map_err(|e| hypervisor_error("physinfo", e))?
        .free_memory_kib;
    let needed_kib = u64::from(config.memory_mib) * 1024;
    if needed_kib > free_kib {
        return Err(MgmtError::NotEnoughMemory {
            needed_kib,
            free_kib,
        });
    }
    Ok(())
}

/// Builds and starts the uploaded domain, all or nothing.
fn create(
    ctx: &mut Ctx<'_, impl Hypervisor>,
    config: &DomainConfig,
    image: &[u8],
) -> Result<DomId, MgmtError> {
    precheck(ctx.hv, config)?;
    let spec = DomainSpec {
        name: &config.name,
        memory_mib: config.memory_mib,
        vcpus: config.vcpus,
        cmdline: &config.cmdline,
        image,
    };
    match create_domain(ctx.hv, &spec) {
        Ok(domid) => {
            println!("dom0: mgmt: created d{domid} ({})", config.name);
            ctx.backend.rescan_soon();
            Ok(domid)
        }
        Err(e) => {
            println!("dom0: mgmt: creating {} failed: {e}", config.name);
            let max = ctx.hv.physinfo().map_or(0, |p| p.nr_domains);
            Err(domains::create_error(e, &config.name, max))
        }
    }
}

/// `ConsoleInput`: as much of `data` as the guest's input ring takes.
fn console_input(
    ctx: &mut Ctx<'_, impl Hypervisor>,
    domid: DomId,
    data: &[u8],
) -> Result<Reply, MgmtError> {
    if data.len() > MAX_CONSOLE_DATA {
        return Err(MgmtError::MalformedRequest(alloc::format!(
            "console input of {} bytes, more than {MAX_CONSOLE_DATA}",
            data.len()
        )));
    }
    match ctx.backend.write_input(domid, data) {
        Some(n) if n == data.len() => Ok(Reply::Done),
        Some(n) => Err(MgmtError::Unsupported(alloc::format!(
            "more console input than the guest reads: its input ring took {n} of {} bytes",
            data.len()
        ))),
        None => {
            let info = find(ctx.hv, &DomainRef::Id(domid))?;
            Err(MgmtError::InvalidState {
                domid,
                operation: DomainOperation::AttachConsole,
                state: domains::state_of(&info),
            })
        }
    }
}

/// `Dmesg`: the newest [`mgmt::MAX_DMESG_BYTES`] of the hypervisor's log
/// ring (`CONTROL_OP_READCONSOLE`, read in pieces).
fn dmesg(backend: &Backend) -> Result<Reply, MgmtError> {
    let xen = backend.xen();
    let failed = |e: guest_pv_shim::XenError| {
        let errno = e.errno().unwrap_or(abi::xen::errno::Errno::EINVAL);
        hypervisor_error("read the hypervisor log", errno)
    };
    let (_, total) = xen.read_console(0, &mut []).map_err(failed)?;
    let mut offset = total.saturating_sub(mgmt::MAX_DMESG_BYTES as u64);
    let mut text = Vec::new();
    let mut piece = [0u8; 4096];
    while text.len() < mgmt::MAX_DMESG_BYTES {
        let (count, _) = xen.read_console(offset, &mut piece).map_err(failed)?;
        if count == 0 {
            break;
        }
        let room = mgmt::MAX_DMESG_BYTES - text.len();
        text.extend_from_slice(&piece[..count.min(room)]);
        offset += count as u64;
    }
    Ok(Reply::Dmesg {
        text: String::from_utf8_lossy(&text).into_owned(),
    })
}
