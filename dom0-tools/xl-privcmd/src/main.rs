//! `xl-privcmd`: the toolstack as a Linux program in a control domain
//! (issue 17 C), a sibling of `dom0ctl` built from the same toolstack
//! crate: it reaches the hypervisor through Xen's `/dev/xen/privcmd`
//! ([`privcmd::Privcmd`]) instead of the management channel. Runs in a
//! Linux domU given the control privilege by its bundle entry; in any
//! other domain the hypervisor refuses (`EPERM`).
//!
//! ```text
//! xl-privcmd list
//! xl-privcmd create hello.toml     # dom0ctl's config format
//! xl-privcmd destroy DOMID
//! ```

mod privcmd;

use std::path::PathBuf;
use std::process::ExitCode;

use abi::control::{
    DomainInfo, DOMAIN_FLAG_BLOCKED, DOMAIN_FLAG_DYING, DOMAIN_FLAG_PAUSED, DOMAIN_FLAG_PRIVILEGED,
    DOMAIN_FLAG_RUNNING, DOMAIN_FLAG_SHUTDOWN,
};
use abi::xen::domid::DomId;
use clap::{Parser, Subcommand};
use toolstack::{create_domain, list_domains, DomainSpec, Hypervisor, SchedSpec};

use crate::privcmd::Privcmd;

#[derive(Parser)]
#[command(about = "Create, list and destroy domains through /dev/xen/privcmd")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Every domain: id, name, memory, vCPUs, state.
    List,
    /// Builds and starts the domain a config file describes (dom0ctl's
    /// format: name, kernel, memory, vcpus, cmdline).
    Create { config: PathBuf },
    /// Destroys a domain.
    Destroy { domid: DomId },
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    match run(cli.command) {
        Ok(()) => ExitCode::SUCCESS,
        Err(message) => {
            eprintln!("xl-privcmd: {message}");
            ExitCode::FAILURE
        }
    }
}

fn run(command: Command) -> Result<(), String> {
    let mut hv = Privcmd::open().map_err(|e| format!("{}: {e}", privcmd::PRIVCMD_PATH))?;
    match command {
        Command::List => {
            let domains = list_domains(&mut hv).map_err(|e| format!("list: {e:?}"))?;
            println!(
                "{:>5}  {:<32} {:>9} {:>5}  state",
                "id", "name", "mem KiB", "vcpus"
            );
            for d in &domains {
                println!("{}", row(d));
            }
        }
        Command::Create { config } => {
            let loaded = dom0ctl::config::load(&config).map_err(|e| e.to_string())?;
            let cfg = &loaded.config;
            let spec = DomainSpec {
                name: &cfg.name,
                memory_mib: cfg.memory_mib,
                vcpus: cfg.vcpus,
                cmdline: &cfg.cmdline,
                image: &loaded.kernel,
                sched: SchedSpec::from(&cfg.sched),
            };
            let domid = create_domain(&mut hv, &spec).map_err(|e| format!("create: {e}"))?;
            println!("created d{domid} \"{}\"", cfg.name);
        }
        Command::Destroy { domid } => {
            hv.destroy(domid)
                .map_err(|e| format!("destroy d{domid}: {e:?}"))?;
            println!("destroyed d{domid}");
        }
    }
    Ok(())
}

/// One line of `list`.
fn row(d: &DomainInfo) -> String {
    let end = d.name.iter().position(|&b| b == 0).unwrap_or(d.name.len());
    let name = String::from_utf8_lossy(&d.name[..end]);
    let states = [
        (DOMAIN_FLAG_RUNNING, "running"),
        (DOMAIN_FLAG_PAUSED, "paused"),
        (DOMAIN_FLAG_BLOCKED, "blocked"),
        (DOMAIN_FLAG_SHUTDOWN, "shutdown"),
        (DOMAIN_FLAG_DYING, "dying"),
        (DOMAIN_FLAG_PRIVILEGED, "control"),
    ];
    let state: Vec<&str> = states
        .iter()
        .filter(|(flag, _)| d.flags & flag != 0)
        .map(|(_, s)| *s)
        .collect();
    format!(
        "{:>5}  {:<32} {:>9} {:>5}  {}",
        d.domid,
        name,
        d.memory_kib,
        d.nr_vcpus,
        state.join(",")
    )
}
