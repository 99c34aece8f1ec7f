//! What each subcommand does.

use std::io::Write;
use std::thread;
use std::time::{Duration, Instant};

use mgmt::{create_requests, DomainRef, DomainState, MgmtError, Reply, Request, ShutdownKind};

use crate::cli::{Cli, Command, CreateArgs, ListArgs, ShutdownArgs};
use crate::client::{unexpected, Client};
use crate::console::{self, Input};
use crate::error::CliError;
use crate::{config, output};

/// How often `shutdown --wait` looks at the domain.
const SHUTDOWN_POLL: Duration = Duration::from_millis(200);

/// Runs `cli`, printing results to `out`; `input` feeds `console`.
pub fn run(cli: Cli, out: &mut dyn Write, input: Input) -> Result<(), CliError> {
    let timeout = Duration::from_secs(cli.timeout);
    let connect = || Client::connect(&cli.connect, timeout);
    match cli.command {
        Command::Create(args) => create(args, connect, out, input),
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
        Command::Pause(d) => life_cycle(
            &mut connect()?,
            &d.domain,
            |domain| Request::Pause { domain },
            "Paused",
            out,
        ),
        Command::Unpause(d) => life_cycle(
            &mut connect()?,
            &d.domain,
            |domain| Request::Unpause { domain },
            "Unpaused",
            out,
        ),
        Command::Destroy(d) => life_cycle(
            &mut connect()?,
            &d.domain,
            |domain| Request::Destroy { domain },
            "Destroyed",
            out,
        ),
        Command::Shutdown(args) => shutdown(&mut connect()?, args, timeout, out),
        Command::Dmesg => match connect()?.call(Request::Dmesg)? {
            Reply::Dmesg { mut text } => {
                if !text.is_empty() && !text.ends_with('\n') {
                    text.push('\n');
                }
                print(out, &text)
            }
            other => Err(unexpected(&other)),
        },
    }
}

fn print(out: &mut dyn Write, text: &str) -> Result<(), CliError> {
    out.write_all(text.as_bytes())
        .and_then(|()| out.flush())
        .map_err(|e| CliError::io("cannot write the output", e))
}

/// Checks the config and kernel (before connecting: a bad file sends
/// nothing), uploads the kernel in chunks, commits.
fn create(
    args: CreateArgs,
    connect: impl FnOnce() -> Result<Client, CliError>,
    out: &mut dyn Write,
    input: Input,
) -> Result<(), CliError> {
    let loaded = config::load(&args.config)?;
    let name = loaded.config.name.clone();
    let mut client = connect()?;
    let requests = create_requests(loaded.config, &loaded.kernel)
        .ok_or_else(|| CliError::Protocol("kernel image too large to upload".into()))?;
    let mut created = None;
    for request in requests {
        match client.call(request)? {
            Reply::UploadReady | Reply::ChunkAccepted { .. } => {}
            Reply::Created { domid } => created = Some(domid),
            other => return Err(unexpected(&other)),
        }
    }
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
    if args.json {
        print(out, &output::domains_json(&domains))
    } else {
        print(out, &output::domain_table(&domains))
    }
}

/// Pause, unpause or destroy: one request, a one-line confirmation.
fn life_cycle(
    client: &mut Client,
    domain: &str,
    request: impl FnOnce(DomainRef) -> Request,
    done: &str,
    out: &mut dyn Write,
) -> Result<(), CliError> {
    let domain = DomainRef::parse(domain);
    match client.call(request(domain.clone()))? {
        Reply::Done => print(out, &format!("{done} {domain}.\n")),
        other => Err(unexpected(&other)),
    }
}

fn shutdown(
    client: &mut Client,
    args: ShutdownArgs,
    timeout: Duration,
    out: &mut dyn Write,
) -> Result<(), CliError> {
    let domain = DomainRef::parse(&args.domain);
    let (kind, verb) = if args.reboot {
        (ShutdownKind::Reboot, "reboot")
    } else {
        (ShutdownKind::Poweroff, "power off")
    };
    match client.call(Request::Shutdown {
        domain: domain.clone(),
        kind,
    })? {
        Reply::Done => print(out, &format!("Asked {domain} to {verb}.\n"))?,
        other => return Err(unexpected(&other)),
    }
    if !args.wait {
        return Ok(());
    }
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
