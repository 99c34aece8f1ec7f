//! One session's state (the chunked upload, the attached console) and
//! what each request does.
//!
//! COM2 carries no connect or disconnect signal (QEMU's socket backend
//! hands the line to whichever client connects), so a client is known by
//! its session: [`mgmt::Server`] opens one per `Hello`, drops the previous
//! one's [`Session`] (its upload and console stream) and lets only
//! requests that carry the current session reach [`Session::dispatch`].

use alloc::string::String;
use alloc::vec::Vec;

use abi::control::{CONTROL_ABI_MAJOR, CONTROL_ABI_MINOR, SHUTDOWN_POWEROFF, SHUTDOWN_REBOOT};
use abi::xen::domid::DomId;
use abi::xen::errno::Errno;
use guest_pv_shim::console::nul_padded_str;
use guest_pv_shim::println;
use mgmt::{
    Accepted, ConsoleEnd, ControlAbiVersion, DomainConfig, DomainOperation, DomainRef, DomainState,
    Event, HostInfo, MgmtError, Reply, Request, ServerMessage, SessionId, ShutdownKind,
    ShutdownReason, StreamUpload, Upload, UploadError, MAX_CONSOLE_DATA, MAX_CONSOLE_HISTORY,
};
use toolstack::{build_domain, DomainSpec, Hypervisor, SchedSpec, StreamSpec, StreamedDomain};

use super::domains::{self, check_operable, find, hypervisor_error, is_dom0, xen_error};
use super::memory;
use super::network;
use super::sched;
use super::storage;
use crate::blkback::BlockBackends;
use crate::console_backend::{self, Backend};
use crate::netback::NetBackends;
use crate::store::{LocalError, StoreService};
use crate::switch::Vswitch;
use crate::volumes::Volumes;

/// What a request needs to act on.
pub struct Ctx<'a, H> {
    /// The control operations (the toolstack's view of the hypervisor).
    pub hv: &'a mut H,
    /// The console backend (history, input, rescans).
    pub backend: &'a mut Backend,
    /// The store (the session's own connection, the toolstack's).
    pub store: &'a mut StoreService,
    /// The block backend (the domains' virtual block devices).
    pub blk: &'a mut BlockBackends,
    /// The volumes on dom0's disk.
    pub volumes: &'a mut Volumes,
    /// The guests' switch (`vswitch show`).
    pub vswitch: &'a mut Vswitch,
    /// The vifs (attach, detach, list; a destroyed domain's go).
    pub netback: &'a mut NetBackends,
}

/// A console stream: new output of `domid` from position `next` on.
struct Stream {
    domid: DomId,
    next: u64,
}

/// A streamed create in progress: the chunks' bookkeeping and the
/// paused domain they are written into.
struct Streamed {
    config: DomainConfig,
    upload: StreamUpload,
    domain: StreamedDomain,
}

/// The state of the current session.
#[derive(Default)]
pub struct Session {
    upload: Option<Upload>,
    streamed: Option<Streamed>,
    stream: Option<Stream>,
    /// Set by `Shutdown` of dom0 with power-off: the agent stops after
    /// the reply.
    power_off: bool,
    /// The session's store connection, opened by its first `Xenstore`.
    store_conn: Option<xenstore::ConnId>,
}

impl Session {
    /// Whether dom0 was asked to power off.
    pub fn power_off_requested(&self) -> bool {
        self.power_off
    }

    /// Bytes of an upload that was begun and not committed, if any.
    pub fn unfinished_upload(&self) -> Option<u32> {
        self.upload.as_ref().map(Upload::received)
    }

    /// Closes the session's store connection and destroys the domain of
    /// an unfinished streamed create (the session ended).
    pub fn end(&mut self, id: SessionId, store: &mut StoreService, hv: &mut impl Hypervisor) {
        if let Some(conn) = self.store_conn.take() {
            store.disconnect_local(conn);
        }
        if let Some(streamed) = self.streamed.take() {
            let received = streamed.upload.received();
            let domid = streamed.domain.domid();
            match streamed.domain.abort(hv) {
                Ok(()) => println!(
                    "dom0: mgmt: session {id} ended: dropped its unfinished streamed create ({received} bytes received); destroyed the half-built d{domid}"
                ),
                Err(errno) => println!(
                    "dom0: mgmt: session {id} ended: destroying the half-built d{domid} failed: {errno:?}"
                ),
            }
        }
    }

    /// Drops the session's unfinished uploads (buffered or streamed).
    fn drop_uploads(&mut self, hv: &mut impl Hypervisor) {
        self.upload = None;
        if let Some(streamed) = self.streamed.take() {
            let domid = streamed.domain.domid();
            if let Err(errno) = streamed.domain.abort(hv) {
                println!("dom0: mgmt: destroying the half-built d{domid} failed: {errno:?}");
            }
        }
    }

    /// `CreateStreamBegin`: checks, creates the domain with its memory.
    fn stream_begin(
        &mut self,
        ctx: &mut Ctx<'_, impl Hypervisor>,
        config: DomainConfig,
        (kernel_len, kernel_crc32): (u32, u32),
        (ramdisk_len, ramdisk_crc32): (u32, u32),
    ) -> Result<Reply, MgmtError> {
        self.drop_uploads(ctx.hv);
        precheck(ctx.hv, &config)?;
        for disk in &config.disks {
            ctx.volumes.get(&disk.volume).map_err(MgmtError::Volume)?;
        }
        let upload = StreamUpload::begin(kernel_len, kernel_crc32, ramdisk_len, ramdisk_crc32)?;
        let spec = StreamSpec {
            name: &config.name,
            memory_mib: config.memory_mib,
            vcpus: config.vcpus,
            cmdline: &config.cmdline,
            kernel_len: kernel_len.into(),
            ramdisk_len: ramdisk_len.into(),
            sched: SchedSpec::from(&config.sched),
        };
        let domain =
            StreamedDomain::begin(ctx.hv, &spec).map_err(|e| create_failed(ctx, &config, e))?;
        println!(
            "dom0: mgmt: upload started: {} ({kernel_len} bytes, ramdisk {ramdisk_len} bytes): streamed into d{}",
            config.name,
            domain.domid()
        );
        self.streamed = Some(Streamed {
            config,
            upload,
            domain,
        });
        Ok(Reply::UploadReady)
    }

    /// `ImageChunk` of a streamed create: checked, then written into
    /// the domain. Any error destroys the domain.
    fn stream_chunk(
        &mut self,
        ctx: &mut Ctx<'_, impl Hypervisor>,
        offset: u32,
        data: &[u8],
    ) -> Result<Reply, MgmtError> {
        let Some(mut streamed) = self.streamed.take() else {
            return Err(UploadError::NotStarted.into());
        };
        match streamed.upload.accept(offset, data) {
            Ok(Accepted::Resent) => {}
            Ok(Accepted::New) => {
                streamed.domain = streamed
                    .domain
                    .push(ctx.hv, data)
                    .map_err(|e| create_failed(ctx, &streamed.config, e))?;
            }
            Err(e) => {
                self.streamed = Some(streamed);
                self.drop_uploads(ctx.hv);
                return Err(e.into());
            }
        }
        let received = streamed.upload.received();
        self.streamed = Some(streamed);
        Ok(Reply::ChunkAccepted { received })
    }

    /// `CreateCommit` of a streamed create: checksums, boot information,
    /// devices, unpause.
    fn stream_commit(&mut self, ctx: &mut Ctx<'_, impl Hypervisor>) -> Result<Reply, MgmtError> {
        #[cfg(feature = "bench-trace")]
        println!(
            "bench: create-received {}",
            guest_pv_shim::arch::cpu::rdtsc()
        );
        let Some(streamed) = self.streamed.take() else {
            return Err(UploadError::NotStarted.into());
        };
        let Streamed {
            config,
            upload,
            domain,
        } = streamed;
        if let Err(e) = upload.finish() {
            let domid = domain.domid();
            if let Err(errno) = domain.abort(ctx.hv) {
                println!("dom0: mgmt: destroying the half-built d{domid} failed: {errno:?}");
            }
            return Err(e.into());
        }
        let domid = domain
            .finish(ctx.hv)
            .map_err(|e| create_failed(ctx, &config, e))?;
        start(ctx, &config, domid)?;
        Ok(Reply::Created { domid })
    }

    /// `Xenstore`: `data` into the session's store connection (opened
    /// now if need be), and what the store answered.
    fn xenstore(&mut self, store: &mut StoreService, data: &[u8]) -> Result<Reply, MgmtError> {
        if data.len() > mgmt::MAX_XENSTORE_DATA {
            return Err(MgmtError::MalformedRequest(alloc::format!(
                "xenstore data of {} bytes, more than {}",
                data.len(),
                mgmt::MAX_XENSTORE_DATA
            )));
        }
        let conn = match self.store_conn {
            Some(conn) => conn,
            None => {
                let conn = store.connect_local().map_err(|_| {
                    MgmtError::Unsupported("another store connection: too many are open".into())
                })?;
                // Scenarios wait for this before acting on a watch.
                println!("dom0: store: a management session connected ({conn:?})");
                *self.store_conn.insert(conn)
            }
        };
        let taken = store.request(conn, data).map_err(|e| {
            self.store_conn = None;
            let why = match e {
                LocalError::TooManyConnections => "too many connections",
                LocalError::Dropped(_) => "it broke the protocol (a message over 4096 bytes)",
            };
            MgmtError::MalformedRequest(alloc::format!("the store dropped this connection: {why}"))
        })?;
        Ok(Reply::Xenstore {
            taken: u32::try_from(taken).unwrap_or(u32::MAX),
            data: store.take_output(conn),
        })
    }

    /// The session's store output that came since (watch events) as
    /// events of `session`.
    pub fn store_events(
        &mut self,
        session: SessionId,
        store: &mut StoreService,
        mut send: impl FnMut(&ServerMessage),
    ) {
        let Some(conn) = self.store_conn else {
            return;
        };
        while store.has_output(conn) {
            send(&ServerMessage::Event {
                session,
                event: Event::XenstoreOutput {
                    data: store.take_output(conn),
                },
            });
        }
    }

    /// What `request` (of this session) does, and its outcome.
    pub fn dispatch(
        &mut self,
        request: Request,
        ctx: &mut Ctx<'_, impl Hypervisor>,
    ) -> Result<Reply, MgmtError> {
        match request {
            // `mgmt::Server` answers it; it never reaches a session.
            Request::Hello { .. } => Err(MgmtError::MalformedRequest("a second Hello".into())),
            // Only the first message of a TCP connection (`mgmt-net`).
            Request::Authenticate { .. } => Err(MgmtError::MalformedRequest(
                "Authenticate outside a TCP connection's handshake".into(),
            )),
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
                self.drop_uploads(ctx.hv);
                precheck(ctx.hv, &config)?;
                println!(
                    "dom0: mgmt: upload started: {} ({image_len} bytes)",
                    config.name
                );
                self.upload = Some(Upload::begin(config, image_len, image_crc32)?);
                Ok(Reply::UploadReady)
            }
            Request::ImageChunk { offset, data } if self.streamed.is_some() => {
                self.stream_chunk(ctx, offset, &data)
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
            Request::CreateCommit if self.streamed.is_some() => self.stream_commit(ctx),
            Request::CreateCommit => {
                #[cfg(feature = "bench-trace")]
                println!(
                    "bench: create-received {}",
                    guest_pv_shim::arch::cpu::rdtsc()
                );
                let upload = self.upload.take().ok_or(UploadError::NotStarted)?;
                let (config, image) = upload.finish()?;
                let domid = create(ctx, &config, &image)?;
                Ok(Reply::Created { domid })
            }
            Request::CreateAbort => {
                self.drop_uploads(ctx.hv);
                Ok(Reply::Done)
            }
            Request::CreateStreamBegin {
                config,
                kernel_len,
                kernel_crc32,
                ramdisk_len,
                ramdisk_crc32,
            } => self.stream_begin(
                ctx,
                config,
                (kernel_len, kernel_crc32),
                (ramdisk_len, ramdisk_crc32),
            ),
            Request::Destroy { domain } => {
                let info = find(ctx.hv, &domain)?;
                if is_dom0(&info) {
                    return Err(MgmtError::Dom0Protected(DomainOperation::Destroy));
                }
                // The backend lets go of the ring before the memory goes,
                // and the store of its tree and ring (`@releaseDomain`).
                ctx.backend.forget(info.domid);
                ctx.blk.domain_destroyed(ctx.store, info.domid);
                network::domain_destroyed(ctx, info.domid);
                ctx.store.domain_destroyed(info.domid);
                ctx.store.serve(ctx.backend.events(), &ctx.backend.grants());
                ctx.hv.destroy(info.domid).map_err(|e| match e {
                    // Destroyed by someone else since we looked.
                    Errno::ESRCH => MgmtError::UnknownDomain(domain.clone()),
                    e => hypervisor_error("destroy", e),
                })?;
                println!(
                    "dom0: mgmt: destroyed d{} ({})",
                    info.domid,
                    domains::name_of(&info)
                );
                Ok(Reply::Done)
            }
            Request::Pause { domain } => pause(ctx, &domain),
            Request::Unpause { domain } => unpause(ctx, &domain),
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
            Request::Stats => Ok(Reply::Stats(
                domains::list(ctx.hv)?
                    .iter()
                    .filter_map(|info| domains::counters(ctx.hv, info.domid))
                    .collect(),
            )),
            Request::Xenstore { data } => self.xenstore(ctx.store, &data),
            Request::VolumeCreate { name, bytes } => storage::create(ctx, &name, bytes),
            Request::VolumeList => storage::list(ctx),
            Request::VolumeDelete { name } => storage::delete(ctx, &name),
            Request::BlockAttach {
                domain,
                volume,
                vdev,
                read_only,
            } => storage::attach(ctx, &domain, &volume, &vdev, read_only),
            Request::BlockDetach { domain, vdev } => storage::detach(ctx, &domain, &vdev),
            Request::BlockList { domain } => storage::block_list(ctx, domain.as_ref()),
            Request::VswitchShow => Ok(Reply::Vswitch(ctx.vswitch.snapshot().into())),
            Request::NetworkAttach { domain, mac, vlan } => {
                network::attach(ctx, &domain, mac, vlan)
            }
            Request::NetworkDetach { domain, vif } => network::detach(ctx, &domain, &vif),
            Request::NetworkList { domain } => network::list(ctx, domain.as_ref()),
            Request::MemSet { domain, target_kib } => memory::set_target(ctx, &domain, target_kib),
            Request::MemMax { domain, max_kib } => memory::set_max(ctx, &domain, max_kib),
            Request::Counters { domain } => sched::counters(ctx.hv, domain.as_ref()),
            Request::VcpuPin { domain, vcpu, cpus } => sched::vcpu_pin(ctx.hv, &domain, vcpu, cpus),
            Request::SchedCredit {
                domain,
                weight,
                cap,
            } => sched::sched_credit(ctx.hv, domain.as_ref(), weight, cap),
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
        // The forced path (`dom0ctl shutdown -F`): the hypervisor shuts
        // the guest down, as Xen's domain_shutdown does. Asking the guest
        // through `control/shutdown` is dom0ctl's, over its session's
        // store connection, as libxl does it from the toolstack's side.
        ctx.backend
            .xen()
            .remote_shutdown(info.domid, reason)
            .map_err(|e| xen_error("remote shutdown", e))?;
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

    /// The attached console's new output as events of `session`, then
    /// `ConsoleClosed` if its domain shut down or is gone.
    pub fn console_events(
        &mut self,
        session: SessionId,
        backend: &Backend,
        mut send: impl FnMut(&ServerMessage),
    ) {
        let Some(stream) = self.stream.as_mut() else {
            return;
        };
        let domid = stream.domid;
        let Some(output) = backend.output_since(domid, stream.next) else {
            self.stream = None;
            send(&closed(session, domid, ConsoleEnd::Destroyed));
            return;
        };
        let (older, newer) = output.bytes;
        for data in older
            .chunks(MAX_CONSOLE_DATA)
            .chain(newer.chunks(MAX_CONSOLE_DATA))
        {
            send(&ServerMessage::Event {
                session,
                event: Event::ConsoleOutput {
                    domid,
                    data: data.to_vec(),
                },
            });
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
            send(&closed(session, domid, reason));
        }
    }
}

fn closed(session: SessionId, domid: DomId, reason: ConsoleEnd) -> ServerMessage {
    ServerMessage::Event {
        session,
        event: Event::ConsoleClosed { domid, reason },
    }
}

/// `Pause`: one more pause (they nest, as in Xen and xl); says whether
/// the domain was paused already.
fn pause(ctx: &mut Ctx<'_, impl Hypervisor>, domain: &DomainRef) -> Result<Reply, MgmtError> {
    let info = find(ctx.hv, domain)?;
    check_operable(&info, DomainOperation::Pause)?;
    let already_paused = domains::state_of(&info) == DomainState::Paused;
    ctx.hv.pause(info.domid).map_err(|e| match e {
        Errno::EOVERFLOW => MgmtError::TooManyPauses {
            domid: info.domid,
            max: abi::control::PAUSE_COUNT_MAX,
        },
        Errno::ESRCH => MgmtError::UnknownDomain(domain.clone()),
        e => hypervisor_error("pause", e),
    })?;
    Ok(Reply::Paused {
        domain: domains::summary(&ctx.hv.domain_info(info.domid).unwrap_or(info)),
        already_paused,
    })
}

/// `Unpause`: takes back one pause of a paused domain; the reply shows
/// whether others remain.
fn unpause(ctx: &mut Ctx<'_, impl Hypervisor>, domain: &DomainRef) -> Result<Reply, MgmtError> {
    let info = find(ctx.hv, domain)?;
    check_operable(&info, DomainOperation::Unpause)?;
    let not_paused = |state| MgmtError::NotPaused {
        domid: info.domid,
        state,
    };
    let state = domains::state_of(&info);
    if state != DomainState::Paused {
        return Err(not_paused(state));
    }
    ctx.hv.unpause(info.domid).map_err(|e| match e {
        // Unpaused by someone else since we looked.
        Errno::EINVAL => not_paused(DomainState::Runnable),
        Errno::ESRCH => MgmtError::UnknownDomain(domain.clone()),
        e => hypervisor_error("unpause", e),
    })?;
    Ok(Reply::Unpaused {
        domain: domains::summary(&ctx.hv.domain_info(info.domid).unwrap_or(info)),
    })
}

/// `Info`: the hypervisor's version (`xen_version`), our control ABI's,
/// and `CONTROL_OP_PHYSINFO`.
fn info(ctx: &mut Ctx<'_, impl Hypervisor>) -> Result<Reply, MgmtError> {
    let xen = ctx.backend.xen();
    let version = xen
        .version()
        .and_then(|v| Ok((v, xen.extraversion()?)))
        .map_err(|e| xen_error("xen_version", e))?;
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
    sched::check_config(hv, &config.sched)?;
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

/// Builds the uploaded domain paused and [`start`]s it. All or nothing.
fn create(
    ctx: &mut Ctx<'_, impl Hypervisor>,
    config: &DomainConfig,
    image: &[u8],
) -> Result<DomId, MgmtError> {
    precheck(ctx.hv, config)?;
    for disk in &config.disks {
        // Before anything is built: an unknown volume sends nothing.
        ctx.volumes.get(&disk.volume).map_err(MgmtError::Volume)?;
    }
    let spec = DomainSpec {
        name: &config.name,
        memory_mib: config.memory_mib,
        vcpus: config.vcpus,
        cmdline: &config.cmdline,
        image,
        sched: SchedSpec::from(&config.sched),
    };
    let domid = build_domain(ctx.hv, &spec).map_err(|e| create_failed(ctx, config, e))?;
    #[cfg(feature = "bench-trace")]
    println!("bench: create-built {}", guest_pv_shim::arch::cpu::rdtsc());
    start(ctx, config, domid)?;
    Ok(domid)
}

/// Introduces the built, paused `domid` to the store, attaches its
/// disks and vifs, then unpauses it (libxl's order: the guest finds its
/// devices at boot). A device that cannot be attached destroys it.
fn start(
    ctx: &mut Ctx<'_, impl Hypervisor>,
    config: &DomainConfig,
    domid: DomId,
) -> Result<(), MgmtError> {
    if let Ok(info) = ctx.hv.domain_info(domid) {
        ctx.store.introduce_new(ctx.backend.xen(), &info);
        ctx.store.serve(ctx.backend.events(), &ctx.backend.grants());
    }
    // Its devices exist before it first runs, so its frontends find them
    // at boot (libxl's order).
    let started = storage::attach_disks(ctx, domid, &config.disks)
        .and_then(|()| network::attach_vifs(ctx, domid, &config.name, &config.vifs))
        .and_then(|()| {
            ctx.hv
                .unpause(domid)
                .map_err(|e| hypervisor_error("unpause", e))
        });
    if let Err(e) = started {
        println!("dom0: mgmt: creating {} failed: {e}", config.name);
        ctx.blk.domain_destroyed(ctx.store, domid);
        network::domain_destroyed(ctx, domid);
        ctx.store.domain_destroyed(domid);
        if let Err(errno) = ctx.hv.destroy(domid) {
            println!("dom0: mgmt: destroying the half-made d{domid} failed: {errno:?}");
        }
        return Err(e);
    }
    println!("dom0: mgmt: created d{domid} ({})", config.name);
    ctx.backend.rescan_soon();
    Ok(())
}

fn create_failed(
    ctx: &mut Ctx<'_, impl Hypervisor>,
    config: &DomainConfig,
    e: toolstack::CreateError,
) -> MgmtError {
    println!("dom0: mgmt: creating {} failed: {e}", config.name);
    let max = ctx.hv.physinfo().map_or(0, |p| p.nr_domains);
    domains::create_error(e, &config.name, max)
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
