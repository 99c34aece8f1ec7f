//! What each subcommand does.

use std::io::Write;
use std::thread;
use std::time::{Duration, Instant};

use mgmt::{
    create_requests, stream_requests, DomainRef, DomainState, DomainSummary, MgmtError, Reply,
    Request, ShutdownKind, MAX_IMAGE_BYTES,
};

use crate::cli::{Cli, Command, CreateArgs, ListArgs, PvControlArgs, VswitchCommand};
use crate::client::{unexpected, Client};
use crate::console::{self, Input};
use crate::error::CliError;
use crate::progress::Progress;
use crate::pvcontrol::{self, Ack, PvCommand};
use crate::xs_link::XsConn;
use crate::xs_mgmt::MgmtPipe;
use crate::{config, memory, network, output, sched, storage, top};

/// How often `shutdown --wait` looks at the domain.
const SHUTDOWN_POLL: Duration = Duration::from_millis(200);

/// Runs `cli`, printing results to `out`; `input` feeds `console`.
pub fn run(cli: Cli, out: &mut dyn Write, input: Input) -> Result<(), CliError> {
    let timeout = Duration::from_secs(cli.timeout);
    let quiet = cli.quiet;
    let connect = || Client::connect(&cli.connect, &cli.key_file, timeout, quiet);
    match cli.command {
        Command::Create(args) => create(args, connect, out, input, quiet),
        Command::List(args) => list(&mut connect()?, args, out),
        Command::Info(args) => match connect()?.call(Request::Info)? {
            Reply::Info(info) if args.json => print(out, &output::info_json(&info)),
            Reply::Info(info) => print(out, &output::info_text(&info)),
            other => Err(unexpected(&other)),
        },
        Command::Console(args) => console::attach(
            &mut connect()?,
            DomainRef::parse(&args.domain),
            !args.no_follow,
            input,
            out,
        ),
        Command::Pause(d) => pause(&mut connect()?, &d.domain, out),
        Command::Unpause(d) => unpause(&mut connect()?, &d.domain, out),
        Command::Destroy(d) => {
            let domain = DomainRef::parse(&d.domain);
            match connect()?.call(Request::Destroy {
                domain: domain.clone(),
            })? {
                Reply::Done => print(out, &format!("Destroyed {domain}.\n")),
                other => Err(unexpected(&other)),
            }
        }
        Command::Shutdown(args) => {
            let command = if args.reboot {
                PvCommand::Reboot
            } else {
                PvCommand::Poweroff
            };
            shutdown(&mut connect()?, &args.control, command, timeout, out)
        }
        Command::Reboot(args) => shutdown(&mut connect()?, &args, PvCommand::Reboot, timeout, out),
        Command::Dmesg => match connect()?.call(Request::Dmesg)? {
            Reply::Dmesg { mut text } => {
                if !text.is_empty() && !text.ends_with('\n') {
                    text.push('\n');
                }
                print(out, &text)
            }
            other => Err(unexpected(&other)),
        },
        Command::Xenstore(args) => crate::xenstore::run(&mut connect()?, args.command, out, quiet),
        Command::Volume(args) => storage::volume(&mut connect()?, args.command, out),
        Command::BlockAttach(args) => storage::attach(&mut connect()?, args, out),
        Command::BlockDetach(args) => storage::detach(&mut connect()?, args, out),
        Command::BlockList(args) => storage::list(&mut connect()?, args, out),
        Command::NetworkAttach(args) => network::attach(&mut connect()?, args, out),
        Command::NetworkDetach(args) => network::detach(&mut connect()?, args, out),
        Command::NetworkList(args) => network::list(&mut connect()?, args, out),
        Command::Vswitch(args) => match args.command {
            VswitchCommand::Show { json } => network::show(&mut connect()?, json, out),
        },
        Command::MemSet(args) => memory::mem_set(&mut connect()?, args, out),
        Command::MemMax(args) => memory::mem_max(&mut connect()?, args, out),
        Command::VcpuList(args) => sched::vcpu_list(&mut connect()?, args, out),
        Command::VcpuPin(args) => sched::vcpu_pin(&mut connect()?, args, out),
        Command::SchedCredit(args) => sched::sched_credit(&mut connect()?, args, out),
        Command::Top(args) if args.batch => top::batch(&mut connect()?, &args, out),
        Command::Top(args) => top::live(&mut connect()?, &args),
    }
}

/// Writes `text` to the output and flushes it.
pub(crate) fn print(out: &mut dyn Write, text: &str) -> Result<(), CliError> {
    out.write_all(text.as_bytes())
        .and_then(|()| out.flush())
        .map_err(|e| CliError::io("cannot write the output", e))
}

/// Checks the config and kernel (before connecting: a bad file sends
/// nothing), uploads the kernel in chunks with a progress bar, commits.
fn create(
    args: CreateArgs,
    connect: impl FnOnce() -> Result<Client, CliError>,
    out: &mut dyn Write,
    input: Input,
    quiet: bool,
) -> Result<(), CliError> {
    let loaded = config::load(&args.config)?;
    let name = loaded.config.name.clone();
    let ramdisk = loaded.ramdisk.as_deref().unwrap_or_default();
    let total = loaded.kernel.len() + ramdisk.len();
    let too_large = || CliError::Protocol("kernel image or ramdisk too large to upload".into());
    // What fits dom0's upload buffer is sent whole and built at the
    // commit; a larger kernel, or one with a ramdisk, is streamed into
    // the domain as it arrives (protocol 2.8).
    let requests: Box<dyn Iterator<Item = Request>> =
        if loaded.ramdisk.is_none() && loaded.kernel.len() <= MAX_IMAGE_BYTES as usize {
            Box::new(create_requests(loaded.config, &loaded.kernel).ok_or_else(too_large)?)
        } else {
            Box::new(stream_requests(loaded.config, &loaded.kernel, ramdisk).ok_or_else(too_large)?)
        };
    let mut client = connect()?;
    let progress = Progress::upload(total as u64, &name, quiet);
    let mut created = None;
    for request in requests {
        match client.call(request)? {
            Reply::UploadReady => {}
            Reply::ChunkAccepted { received } => progress.at(u64::from(received)),
            Reply::Created { domid } => created = Some(domid),
            other => return Err(unexpected(&other)),
        }
    }
    progress.finish();
    let domid = created
        .ok_or_else(|| CliError::Protocol("the upload ended without a created domain".into()))?;
    print(out, &format!("Created domain '{name}' (domid {domid}).\n"))?;
    if args.console {
        console::attach(&mut client, DomainRef::Id(domid), true, input, out)?;
    }
    Ok(())
}

fn list(client: &mut Client, args: ListArgs, out: &mut dyn Write) -> Result<(), CliError> {
    let domains = if args.domains.is_empty() {
        match client.call(Request::List)? {
            Reply::List(domains) => domains,
            other => return Err(unexpected(&other)),
        }
    } else {
        let mut domains = Vec::new();
        for d in &args.domains {
            match client.call(Request::DomainInfo {
                domain: DomainRef::parse(d),
            })? {
                Reply::Domain(summary) => domains.push(summary),
                other => return Err(unexpected(&other)),
            }
        }
        domains
    };
    let counters = if args.long {
        match client.call(Request::Stats)? {
            Reply::Stats(counters) => Some(counters),
            other => return Err(unexpected(&other)),
        }
    } else {
        None
    };
    if args.json {
        print(out, &output::domains_json(&domains, counters.as_deref()))
    } else {
        print(out, &output::domain_table(&domains, counters.as_deref()))
    }
}

/// `pause`: pauses nest, as in xl (Xen counts them); says so when the
/// domain was paused already.
fn pause(client: &mut Client, domain: &str, out: &mut dyn Write) -> Result<(), CliError> {
    let domain = DomainRef::parse(domain);
    match client.call(Request::Pause {
        domain: domain.clone(),
    })? {
        Reply::Paused {
            already_paused: false,
            ..
        } => print(out, &format!("Paused {domain}.\n")),
        Reply::Paused { .. } => print(
            out,
            &format!(
                "Paused {domain} again: it was paused already, and pauses nest as in xl \
                 (it runs again after one unpause per pause).\n"
            ),
        ),
        other => Err(unexpected(&other)),
    }
}

/// `unpause`: takes back one pause and reports the state that results.
fn unpause(client: &mut Client, domain: &str, out: &mut dyn Write) -> Result<(), CliError> {
    let domain = DomainRef::parse(domain);
    match client.call(Request::Unpause {
        domain: domain.clone(),
    })? {
        Reply::Unpaused {
            domain:
                DomainSummary {
                    state: DomainState::Paused,
                    ..
                },
        } => print(
            out,
            &format!(
                "Took back one pause of {domain}; it is still paused (it was paused more than \
                 once, and pauses nest as in xl): unpause it again to let it run.\n"
            ),
        ),
        Reply::Unpaused { .. } => print(out, &format!("Unpaused {domain}.\n")),
        other => Err(unexpected(&other)),
    }
}

/// `shutdown` and `reboot`, as xl does them: the request goes to the
/// guest through `control/shutdown` ([`pvcontrol`]) and must be
/// acknowledged within `timeout`; `-F` (and dom0, which powers the
/// machine off) goes to the hypervisor instead. `-w` then waits for the
/// domain to shut down.
fn shutdown(
    client: &mut Client,
    args: &PvControlArgs,
    command: PvCommand,
    timeout: Duration,
    out: &mut dyn Write,
) -> Result<(), CliError> {
    let domain = DomainRef::parse(&args.domain);
    let domid = match client.call(Request::DomainInfo {
        domain: domain.clone(),
    })? {
        Reply::Domain(d) => d.domid,
        other => return Err(unexpected(&other)),
    };
    if args.force || domid == 0 {
        force_shutdown(client, &domain, command, out)?;
    } else {
        let mut xs = XsConn::new(MgmtPipe::new(client));
        match pvcontrol::request(&mut xs, domid, command, timeout)? {
            Ack::Acknowledged => print(
                out,
                &format!("{domain} acknowledged the {} request.\n", command.word()),
            )?,
            Ack::TimedOut => {
                return Err(CliError::NotAcknowledged {
                    domain: domain.to_string(),
                    arg: args.domain.clone(),
                    request: command.word(),
                    secs: timeout.as_secs(),
                })
            }
        }
    }
    if args.wait {
        wait_for_shutdown(client, &domain, timeout, out)?;
    }
    Ok(())
}

/// `-F`: the hypervisor shuts the domain down (`SCHEDOP_remote_shutdown`)
/// without asking the guest; for dom0, the machine powers off.
fn force_shutdown(
    client: &mut Client,
    domain: &DomainRef,
    command: PvCommand,
    out: &mut dyn Write,
) -> Result<(), CliError> {
    let (kind, verb) = match command {
        PvCommand::Reboot => (ShutdownKind::Reboot, "reboot"),
        PvCommand::Poweroff => (ShutdownKind::Poweroff, "power off"),
    };
    match client.call(Request::Shutdown {
        domain: domain.clone(),
        kind,
    })? {
        Reply::Done => print(out, &format!("Asked {domain} to {verb}.\n")),
        other => Err(unexpected(&other)),
    }
}

/// `-w`: polls until the domain has shut down or is gone, up to `timeout`.
fn wait_for_shutdown(
    client: &mut Client,
    domain: &DomainRef,
    timeout: Duration,
    out: &mut dyn Write,
) -> Result<(), CliError> {
    let deadline = Instant::now() + timeout;
    loop {
        let state = match client.call(Request::DomainInfo {
            domain: domain.clone(),
        }) {
            Ok(Reply::Domain(d)) => Some(d.state),
            Ok(other) => return Err(unexpected(&other)),
            Err(CliError::Refused(MgmtError::UnknownDomain(_))) => None,
            Err(e) => return Err(e),
        };
        match state {
            Some(DomainState::Shutdown(reason)) => {
                return print(out, &format!("Shut down: {domain} ({reason}).\n"))
            }
            Some(DomainState::Dying) | None => {
                return print(out, &format!("Gone: {domain} was destroyed.\n"))
            }
            Some(_) if Instant::now() >= deadline => {
                return Err(CliError::Protocol(format!(
                    "{domain} did not shut down within {} s",
                    timeout.as_secs()
                )))
            }
            Some(_) => thread::sleep(SHUTDOWN_POLL),
        }
    }
}
