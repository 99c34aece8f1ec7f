//! The command line: global options and subcommands (named after Xen's `xl`).

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand};

pub use crate::transport::Endpoint;

/// The management socket used when neither `--connect` nor
/// [`SOCKET_ENV`] names one; `cargo xtask up` and `cargo xtask run` start
/// QEMU with COM2 on it.
pub const DEFAULT_SOCKET: &str = "/tmp/xen-core-mgmt.sock";
/// Environment variable naming the management socket.
pub const SOCKET_ENV: &str = "DOM0CTL_SOCKET";
/// The key file used for TCP when `--key-file` and [`KEY_FILE_ENV`] name
/// none: next to [`DEFAULT_SOCKET`], where `cargo xtask up` writes it.
pub const DEFAULT_KEY_FILE: &str = "/tmp/xen-core-mgmt.key";
/// Environment variable naming the key file.
pub const KEY_FILE_ENV: &str = "DOM0CTL_KEY_FILE";
/// Seconds to wait for each reply when `--timeout` is not given.
pub const DEFAULT_TIMEOUT_SECS: u64 = 60;

const MAIN_AFTER_HELP: &str = "\
Domains are named by name or by domid (a number) wherever one is expected.

Exit status: 0 success; 1 the hypervisor refused the request; 2 bad arguments;
3 bad config file, kernel or key file (nothing was sent); 4 nothing listens on
the socket; 5 protocol or connection failure (a wrong key included).

Start the hypervisor with `cargo xtask up`; it prints where to connect: the
COM2 socket, and tcp://127.0.0.1:PORT with the key file.";

/// Manage the domains of a running xen-core hypervisor.
#[derive(Debug, Parser)]
#[command(name = "dom0ctl", version, after_help = MAIN_AFTER_HELP)]
pub struct Cli {
    /// Where the management agent is: a UNIX socket path (QEMU's COM2 of
    /// the hypervisor machine) or tcp://HOST:PORT (dom0's management NIC,
    /// authenticated with --key-file).
    #[arg(long, global = true, value_name = "PATH|tcp://HOST:PORT", env = SOCKET_ENV,
          default_value = DEFAULT_SOCKET)]
    pub connect: Endpoint,
    /// The management key for tcp:// connections (written by `cargo xtask
    /// up`, mode 0600).
    #[arg(long, global = true, value_name = "PATH", env = KEY_FILE_ENV,
          default_value = DEFAULT_KEY_FILE)]
    pub key_file: PathBuf,
    /// Seconds each step may take: connecting, the handshake, each reply,
    /// a guest's acknowledgement of `shutdown`/`reboot`.
    #[arg(long, global = true, value_name = "SECS", default_value_t = DEFAULT_TIMEOUT_SECS,
          value_parser = clap::value_parser!(u64).range(1..))]
    pub timeout: u64,
    /// No progress bar and no notes while waiting (errors are still shown).
    #[arg(long, short, global = true)]
    pub quiet: bool,
    /// What to do.
    #[command(subcommand)]
    pub command: Command,
}

/// The subcommands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Create a domain from a TOML config file and start it.
    #[command(after_help = "\
Config file (TOML): name, kernel (path relative to the config file), memory (MiB),
vcpus (default 1), cmdline (default empty), disks (default none): volumes the
domain sees as disks from its first instruction, e.g.
  disks = [{ volume = \"data\", vdev = \"xvda\", mode = \"w\" }]
(mode \"w\" read-write, the default, or \"r\" read-only), vifs (default none;
e.g. vifs = [{ mac = \"00:16:3e:00:00:01\", vlan = 10 }, { trunk = [10, 20] }],
see network-attach). The kernel must be an x86 ELF with a Xen PVH entry note
(XEN_ELFNOTE_PHYS32_ENTRY).

Examples:
  dom0ctl create guests/hello.toml
  dom0ctl create -c guests/hello.toml     # and attach to its console (Ctrl-] detaches)")]
    Create(CreateArgs),
    /// List domains: name, domid, state, memory, vCPUs, CPU time (-l: and
    /// VM exits, hypercalls).
    #[command(after_help = "\
Examples:
  dom0ctl list
  dom0ctl list hello 0
  dom0ctl list -l --json")]
    List(ListArgs),
    /// Show the hypervisor's version, ABI version, pCPUs and memory.
    #[command(after_help = "\
Examples:
  dom0ctl info
  dom0ctl info --json")]
    Info(InfoArgs),
    /// Attach to a domain's console: its output so far, then live output.
    #[command(after_help = "\
Ctrl-] detaches (the domain keeps running). Input is forwarded to the guest:
key by key when stdin is a terminal (raw mode), else line by line.

Examples:
  dom0ctl console hello
  dom0ctl console 3 --no-follow           # print the output so far and exit")]
    Console(ConsoleArgs),
    /// Pause a domain's vCPUs.
    #[command(after_help = "Example:\n  dom0ctl pause hello")]
    Pause(DomainArg),
    /// Unpause a paused domain.
    #[command(after_help = "Example:\n  dom0ctl unpause hello")]
    Unpause(DomainArg),
    /// Ask a domain to power off through its `control/shutdown` key, as
    /// xl does; -F forces it down instead.
    #[command(after_help = SHUTDOWN_AFTER_HELP)]
    Shutdown(ShutdownArgs),
    /// Ask a domain to reboot through its `control/shutdown` key, as xl
    /// does; -F forces it down instead.
    #[command(after_help = "\
The same path as `shutdown`, with \"reboot\" written to control/shutdown.

Examples:
  dom0ctl reboot hello
  dom0ctl reboot -w hello                 # and wait until it has shut down")]
    Reboot(PvControlArgs),
    /// Destroy a domain at once; its memory returns to the free pool.
    #[command(after_help = "Example:\n  dom0ctl destroy hello")]
    Destroy(DomainArg),
    /// Print the hypervisor's log ring.
    #[command(after_help = "Example:\n  dom0ctl dmesg")]
    Dmesg,
    /// Read and change XenStore, as Xen's xenstore-ls/-read/-write/-rm/-watch
    /// do, with dom0's privileges.
    #[command(after_help = "\
Examples:
  dom0ctl xenstore ls /local/domain/1
  dom0ctl xenstore read /local/domain/1/name
  dom0ctl xenstore write /local/domain/1/data/greeting hello
  dom0ctl xenstore rm /local/domain/1/data/greeting
  dom0ctl xenstore watch @releaseDomain --count 2")]
    Xenstore(XenstoreArgs),
    /// Create, list and delete volumes: named GPT partitions on dom0's
    /// disk, kept across reboots, attached to domains as disks.
    #[command(after_help = VOLUME_AFTER_HELP)]
    Volume(VolumeArgs),
    /// Attach a volume to a running domain as a virtual block device
    /// (xl block-attach).
    #[command(after_help = "\
VDEV is the device name the guest sees, per Xen's vbd-interface.txt: xvda,
xvdb, ..., xvdb3 (a partition), sda, hdc, d0p1, or the number. A volume is
writable in one domain at a time; read-only in any number while none writes it.

Examples:
  dom0ctl block-attach web data xvda
  dom0ctl block-attach 3 iso xvdb --read-only")]
    BlockAttach(BlockAttachArgs),
    /// Detach a domain's virtual block device (xl block-detach).
    #[command(after_help = "Example:\n  dom0ctl block-detach web xvda")]
    BlockDetach(BlockDetachArgs),
    /// List attached virtual block devices: domain, vdev, volume, mode,
    /// backend state (xl block-list).
    #[command(after_help = "\
Examples:
  dom0ctl block-list
  dom0ctl block-list web --json")]
    BlockList(BlockListArgs),
    /// Give a domain a new vif on the vswitch (xl network-attach): netback
    /// serves it, the guest's netfront finds it in the store.
    #[command(after_help = NETWORK_ATTACH_AFTER_HELP)]
    NetworkAttach(NetworkAttachArgs),
    /// Take a vif away from a domain, by devid or MAC (xl network-detach).
    #[command(after_help = "\
Examples:
  dom0ctl network-detach web 0
  dom0ctl network-detach web 00:16:3e:00:00:01")]
    NetworkDetach(NetworkDetachArgs),
    /// List vifs: domain, devid, MAC, VLANs, backend state, switch port
    /// (xl network-list).
    #[command(after_help = "\
Examples:
  dom0ctl network-list
  dom0ctl network-list web --json")]
    NetworkList(NetworkListArgs),
    /// The guests' virtual switch.
    #[command(after_help = "\
Examples:
  dom0ctl vswitch show
  dom0ctl vswitch show --json")]
    Vswitch(VswitchArgs),
    /// Set a domain's memory target (xl mem-set): its balloon driver
    /// gives memory back or takes it again until it holds SIZE.
    #[command(after_help = MEM_SET_AFTER_HELP)]
    MemSet(MemArgs),
    /// Set the most memory a domain may have (xl mem-max).
    #[command(after_help = MEM_MAX_AFTER_HELP)]
    MemMax(MemArgs),
    /// List vCPUs: domain, vCPU, pCPU, state, CPU time, hard affinity
    /// (xl vcpu-list).
    #[command(after_help = "\
State as in xl: r running, b blocked, p paused (its domain), - offline; a
runnable vCPU waiting for a pCPU shows ---.

Examples:
  dom0ctl vcpu-list
  dom0ctl vcpu-list web --json")]
    VcpuList(VcpuListArgs),
    /// Pin a vCPU to pCPUs: its hard affinity (xl vcpu-pin).
    #[command(after_help = "\
CPUS is `all` or a list of pCPUs and ranges: 0, 0-3, 1,3,5-7. It must name an
online pCPU. VCPU is a vCPU id or `all`.

Examples:
  dom0ctl vcpu-pin web 0 0
  dom0ctl vcpu-pin web all all")]
    VcpuPin(VcpuPinArgs),
    /// Show or set credit scheduler weights and caps (xl sched-credit).
    #[command(after_help = "\
Weight (default 256, 1 to 65535) is a domain's share relative to the others';
cap is the most CPU it may use, in percent of one pCPU (0: no cap).

Examples:
  dom0ctl sched-credit
  dom0ctl sched-credit -d web -w 512
  dom0ctl sched-credit -d web -c 25")]
    SchedCredit(SchedCreditArgs),
    /// Watch domains live (xentop): CPU %, memory, vCPUs, VM exits/s by
    /// exit code, hypercalls/s, events/s.
    #[command(after_help = "\
Rates are counter differences over the hypervisor's own system time between two
samples. q or Esc quits the live view.

Examples:
  dom0ctl top
  dom0ctl top --batch -n 3 -d 2
  dom0ctl top --batch --json -n 1")]
    Top(TopArgs),
}

/// `vcpu-list` arguments.
#[derive(Debug, Args)]
pub struct VcpuListArgs {
    /// Only this domain's vCPUs (name or domid).
    #[arg(value_name = "DOMAIN")]
    pub domain: Option<String>,
    /// Print JSON instead of a table.
    #[arg(long)]
    pub json: bool,
}

/// `vcpu-pin` arguments.
#[derive(Debug, Args)]
pub struct VcpuPinArgs {
    /// The domain (name or domid).
    #[arg(value_name = "DOMAIN")]
    pub domain: String,
    /// The vCPU id, or `all`.
    #[arg(value_name = "VCPU")]
    pub vcpu: String,
    /// pCPUs: `all`, or e.g. 0-3,5.
    #[arg(value_name = "CPUS", value_parser = cpu_set)]
    pub cpus: mgmt::CpuSet,
}

fn cpu_set(text: &str) -> Result<mgmt::CpuSet, String> {
    mgmt::CpuSet::parse(text).ok_or_else(|| {
        format!(
            "'{text}' is not a pCPU list: use `all` or pCPUs and ranges below {} (0, 0-3, 1,3,5-7)",
            mgmt::sched::MAX_PCPUS
        )
    })
}

/// `sched-credit` arguments.
#[derive(Debug, Args)]
pub struct SchedCreditArgs {
    /// The domain (name or domid); without it, every domain's.
    #[arg(short, long, value_name = "DOMAIN")]
    pub domain: Option<String>,
    /// New weight, 1 to 65535.
    #[arg(short, long, value_name = "WEIGHT",
          value_parser = clap::value_parser!(u16).range(1..))]
    pub weight: Option<u16>,
    /// New cap, percent of one pCPU (0: none).
    #[arg(short, long, value_name = "CAP")]
    pub cap: Option<u16>,
    /// Print JSON instead of a table.
    #[arg(long)]
    pub json: bool,
}

/// `top` arguments.
#[derive(Debug, Args)]
pub struct TopArgs {
    /// Print plain text frames instead of the live view (xentop -b).
    #[arg(short, long)]
    pub batch: bool,
    /// With --batch: one JSON object per frame, one per line.
    #[arg(long, requires = "batch")]
    pub json: bool,
    /// Frames to print, then exit (xentop -i); default: until interrupted.
    #[arg(short = 'n', long, value_name = "N",
          value_parser = clap::value_parser!(u32).range(1..))]
    pub iterations: Option<u32>,
    /// Seconds between samples (xentop -d).
    #[arg(short, long, value_name = "SECS", default_value_t = 1.0)]
    pub delay: f64,
}

const MEM_SET_AFTER_HELP: &str = "\
SIZE as in xl: a number with an optional unit b, k, m, g or t; MiB without one.
It must lie between 1 MiB and the domain's maximum (memory/static-max: see
mem-max). The target goes to memory/target in the store, where the guest's
balloon driver watches it; the hypervisor's limit is set to it as well, as
xl does. `dom0ctl list` shows the memory the domain holds as it follows.

Examples:
  dom0ctl mem-set web 48m
  dom0ctl mem-set 3 1g";

const MEM_MAX_AFTER_HELP: &str = "\
SIZE as for mem-set. It may not be below the domain's current target. Sets the
hypervisor's limit and memory/static-max; nothing is taken from the domain.

Examples:
  dom0ctl mem-max web 128m";

const VOLUME_AFTER_HELP: &str = "\
Sizes are whole MiB or GiB: 64MiB, 64M, 2GiB, 2G. A new volume reads as zeroes.
A volume attached to a domain cannot be deleted; detach it (block-detach) or
destroy the domain first. `sgdisk -p` on the host reads dom0's disk image
(target/disks/dom0.img under `cargo xtask up`) while the hypervisor is down.

Examples:
  dom0ctl volume create data 64MiB
  dom0ctl volume list
  dom0ctl volume list --json
  dom0ctl volume delete data";

/// `volume` arguments.
#[derive(Debug, Args)]
pub struct VolumeArgs {
    /// What to do.
    #[command(subcommand)]
    pub command: VolumeCommand,
}

/// The `volume` subcommands.
#[derive(Debug, Subcommand)]
pub enum VolumeCommand {
    /// Create a volume of SIZE (MiB or GiB).
    #[command(
        after_help = "Examples:\n  dom0ctl volume create data 64MiB\n  dom0ctl volume create big 1GiB"
    )]
    Create {
        /// Its name: up to 32 letters, digits, '.', '_' or '-' (not first
        /// '.' or '-').
        #[arg(value_name = "NAME", value_parser = volume_name)]
        name: String,
        /// Its size: 64MiB, 64M, 2GiB, 2G.
        #[arg(value_name = "SIZE", value_parser = volume_size)]
        size: u64,
    },
    /// List the volumes: name, size, where each is attached.
    #[command(after_help = "Examples:\n  dom0ctl volume list\n  dom0ctl volume list --json")]
    List {
        /// Print JSON (sizes in bytes).
        #[arg(long)]
        json: bool,
    },
    /// Delete a volume (refused while it is attached).
    #[command(after_help = "Example:\n  dom0ctl volume delete data")]
    Delete {
        /// Which.
        #[arg(value_name = "NAME")]
        name: String,
    },
}

fn volume_name(text: &str) -> Result<String, String> {
    volumes::check_name(text)
        .map(|()| text.to_string())
        .map_err(|e| e.to_string())
}

fn volume_size(text: &str) -> Result<u64, String> {
    volumes::parse_size(text).map_err(|e| e.to_string())
}

/// `block-attach` arguments.
#[derive(Debug, Args)]
pub struct BlockAttachArgs {
    /// The domain (name or domid).
    #[arg(value_name = "DOMAIN")]
    pub domain: String,
    /// The volume.
    #[arg(value_name = "VOLUME")]
    pub volume: String,
    /// The device name the guest sees (xvda).
    #[arg(value_name = "VDEV")]
    pub vdev: String,
    /// Attach read-only (xl's mode=r).
    #[arg(long, short = 'r')]
    pub read_only: bool,
}

/// `block-detach` arguments.
#[derive(Debug, Args)]
pub struct BlockDetachArgs {
    /// The domain (name or domid).
    #[arg(value_name = "DOMAIN")]
    pub domain: String,
    /// The device name it was attached as.
    #[arg(value_name = "VDEV")]
    pub vdev: String,
}

/// `block-list` arguments.
#[derive(Debug, Args)]
pub struct BlockListArgs {
    /// Only this domain's devices (name or domid).
    #[arg(value_name = "DOMAIN")]
    pub domain: Option<String>,
    /// Print JSON.
    #[arg(long)]
    pub json: bool,
}

const NETWORK_ATTACH_AFTER_HELP: &str = "\
A vif is an access port in one VLAN (untagged; --vlan, default 1, the uplink's
VLAN) or a trunk carrying several VLANs tagged (--trunk). Without --mac the MAC
is Xen's OUI 00:16:3e and a hash of the domain's name and the devid (stable).
The vif may send only from its MAC (anti-spoofing).

Examples:
  dom0ctl network-attach web                       # VLAN 1, with the uplink
  dom0ctl network-attach web --vlan 10 --mac 00:16:3e:00:00:10
  dom0ctl network-attach router --trunk 10,20";

/// `network-attach` arguments.
#[derive(Debug, Args)]
pub struct NetworkAttachArgs {
    /// The domain (name or domid).
    #[arg(value_name = "DOMAIN")]
    pub domain: String,
    /// The vif's MAC (six hex bytes, e.g. 00:16:3e:12:34:56).
    #[arg(long, value_name = "MAC", value_parser = crate::config::parse_mac)]
    pub mac: Option<[u8; 6]>,
    /// An access port in this VLAN (1-4094).
    #[arg(long, value_name = "N", conflicts_with = "trunk")]
    pub vlan: Option<u16>,
    /// A trunk port carrying these VLANs, tagged.
    #[arg(long, value_name = "N,M", value_delimiter = ',', num_args = 1..)]
    pub trunk: Option<Vec<u16>>,
}

/// `network-detach` arguments.
#[derive(Debug, Args)]
pub struct NetworkDetachArgs {
    /// The domain (name or domid).
    #[arg(value_name = "DOMAIN")]
    pub domain: String,
    /// The vif: its devid or its MAC.
    #[arg(value_name = "DEVID|MAC")]
    pub vif: String,
}

/// `network-list` arguments.
#[derive(Debug, Args)]
pub struct NetworkListArgs {
    /// Only this domain's vifs (name or domid).
    #[arg(value_name = "DOMAIN")]
    pub domain: Option<String>,
    /// Print JSON instead of a table.
    #[arg(long)]
    pub json: bool,
}

/// `vswitch` arguments.
#[derive(Debug, Args)]
pub struct VswitchArgs {
    /// What to do.
    #[command(subcommand)]
    pub command: VswitchCommand,
}

/// The `vswitch` subcommands.
#[derive(Debug, Subcommand)]
pub enum VswitchCommand {
    /// Ports (vifs and the uplink) with their VLANs and counters, east-west
    /// (guest to guest) and north-south (through the uplink) apart; the
    /// learned MACs; drops by reason.
    #[command(after_help = "\
Examples:
  dom0ctl vswitch show
  dom0ctl vswitch show --json")]
    Show {
        /// Print JSON instead of tables.
        #[arg(long)]
        json: bool,
    },
}

/// `xenstore` arguments.
#[derive(Debug, Args)]
pub struct XenstoreArgs {
    /// What to do in the store.
    #[command(subcommand)]
    pub command: XenstoreCommand,
}

/// The `xenstore` subcommands, named after Xen's `xenstore-*` tools.
#[derive(Debug, Subcommand)]
pub enum XenstoreCommand {
    /// List the nodes under PATH (default /), one per line, indented by
    /// depth: `name = "value"` (xenstore-ls).
    #[command(
        after_help = "Examples:\n  dom0ctl xenstore ls /local/domain/1\n  dom0ctl xenstore ls /vm --json"
    )]
    Ls {
        /// The subtree.
        #[arg(value_name = "PATH")]
        path: Option<String>,
        /// Print a JSON object of path to value instead.
        #[arg(long)]
        json: bool,
    },
    /// Print a node's value (xenstore-read).
    #[command(after_help = "Example:\n  dom0ctl xenstore read /local/domain/1/memory/target")]
    Read {
        /// The node.
        #[arg(value_name = "PATH")]
        path: String,
        /// Print {"path": ..., "value": ...} instead.
        #[arg(long)]
        json: bool,
    },
    /// Write a node, creating it and its parents (xenstore-write).
    #[command(after_help = "Example:\n  dom0ctl xenstore write /local/domain/1/data/x 42")]
    Write {
        /// The node.
        #[arg(value_name = "PATH")]
        path: String,
        /// Its new value.
        #[arg(value_name = "VALUE")]
        value: String,
    },
    /// Remove a node and everything under it (xenstore-rm).
    #[command(after_help = "Example:\n  dom0ctl xenstore rm /local/domain/1/data/x")]
    Rm {
        /// The node.
        #[arg(value_name = "PATH")]
        path: String,
    },
    /// Print the path of each change under PATH, starting with the one
    /// event every new watch fires (xenstore-watch). Special paths:
    /// @introduceDomain, @releaseDomain.
    #[command(
        after_help = "Examples:\n  dom0ctl xenstore watch /local/domain/1/data\n  dom0ctl xenstore watch @releaseDomain --count 2"
    )]
    Watch {
        /// The subtree or special path.
        #[arg(value_name = "PATH")]
        path: String,
        /// Stop after N events (the first one included); default: never.
        #[arg(short = 'n', long, value_name = "N")]
        count: Option<u64>,
    },
    /// Serve xenstored's socket protocol on a host UNIX socket, carried to
    /// the store with dom0's privileges, for Xen's own xenstore-* tools.
    #[command(after_help = "\
One tool is served at a time; when it hangs up, its watches and transactions
are dropped (XS_RESET_WATCHES). Runs until interrupted. Xen's tools: `cargo
xtask xen-tools` fetches Debian's xenstore-utils and prints their directory.

Example:
  dom0ctl xenstore proxy --listen /tmp/xs.sock &
  XENSTORED_PATH=/tmp/xs.sock target/xen-tools/bin/xenstore-ls -f /local/domain")]
    Proxy(ProxyArgs),
}

/// `create` arguments.
#[derive(Debug, Args)]
pub struct CreateArgs {
    /// Domain config file (TOML).
    pub config: PathBuf,
    /// Attach to the new domain's console.
    #[arg(short = 'c', long = "console")]
    pub console: bool,
}

/// `list` arguments.
#[derive(Debug, Args)]
pub struct ListArgs {
    /// Only these domains (names or domids).
    #[arg(value_name = "DOMAIN")]
    pub domains: Vec<String>,
    /// Print JSON instead of a table.
    #[arg(long)]
    pub json: bool,
    /// Long listing: add each domain's VM exits and hypercalls since it
    /// was created.
    #[arg(short = 'l', long)]
    pub long: bool,
}

/// `info` arguments.
#[derive(Debug, Args)]
pub struct InfoArgs {
    /// Print JSON (memory in KiB).
    #[arg(long)]
    pub json: bool,
}

/// `console` arguments.
#[derive(Debug, Args)]
pub struct ConsoleArgs {
    /// The domain (name or domid).
    #[arg(value_name = "DOMAIN")]
    pub domain: String,
    /// Print the output so far and exit instead of following it.
    #[arg(long)]
    pub no_follow: bool,
}

/// `mem-set` and `mem-max` arguments.
#[derive(Debug, Args)]
pub struct MemArgs {
    /// The domain (name or domid).
    #[arg(value_name = "DOMAIN")]
    pub domain: String,
    /// The size: 64m, 512k, 1g; MiB without a unit (as xl).
    #[arg(value_name = "SIZE", value_parser = crate::memory::parse_mem_size_kib)]
    pub size: u64,
}

/// One domain argument.
#[derive(Debug, Args)]
pub struct DomainArg {
    /// The domain (name or domid).
    #[arg(value_name = "DOMAIN")]
    pub domain: String,
}

/// `shutdown` arguments.
#[derive(Debug, Args)]
pub struct ShutdownArgs {
    /// The domain, the wait and the force.
    #[command(flatten)]
    pub control: PvControlArgs,
    /// Ask for a reboot instead of a power-off (as `dom0ctl reboot`).
    #[arg(short = 'R', long)]
    pub reboot: bool,
}

/// `shutdown` and `reboot` arguments (xl's `-w` and `-F`).
#[derive(Debug, Args)]
pub struct PvControlArgs {
    /// The domain (name or domid).
    #[arg(value_name = "DOMAIN")]
    pub domain: String,
    /// After the guest has acknowledged, wait until the domain has shut
    /// down (up to --timeout seconds).
    #[arg(short = 'w', long)]
    pub wait: bool,
    /// Force: the hypervisor shuts the domain down at once
    /// (SCHEDOP_remote_shutdown) without asking the guest.
    #[arg(short = 'F', long)]
    pub force: bool,
}

const SHUTDOWN_AFTER_HELP: &str = "\
dom0ctl writes \"poweroff\" to /local/domain/N/control/shutdown and waits up to
--timeout seconds (default 60, libxl's) for the guest to acknowledge by clearing
the key; -w then waits until the domain has shut down. A guest that does not
acknowledge in time is left alone with an error naming -F. `shutdown 0` powers
the machine off.

Examples:
  dom0ctl shutdown hello
  dom0ctl shutdown -w hello               # and wait until it has shut down
  dom0ctl shutdown -F hello               # force it down, without asking the guest";

/// `xenstore proxy` arguments.
#[derive(Debug, Args)]
pub struct ProxyArgs {
    /// The UNIX socket to create (an existing socket file there is
    /// replaced).
    #[arg(long, value_name = "PATH")]
    pub listen: PathBuf,
}
