//! Starting QEMU and making sure it stops: each QEMU runs in its own
//! process group, which is killed when its [`Qemu`] guard drops, and by the
//! Ctrl-C/SIGTERM handler and the panic hook for any guard still alive.

use std::io::{Read, Write};
use std::path::Path;
use std::process::{Child, ChildStdin, Command, ExitStatus, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use abi::debug_exit::DEBUG_EXIT_PORT;
use anyhow::{Context, Result};
use nix::sys::signal::{killpg, Signal};
use nix::unistd::Pid;

use crate::machine::MachineDevices;
use crate::scenario::QemuSpec;

/// Most output kept from one run; the rest is dropped (a runaway guest
/// must not exhaust the host's memory).
const MAX_CAPTURE: usize = 64 << 20;

/// How long QEMU gets to end after SIGTERM before it is killed.
const TERM_GRACE: Duration = Duration::from_secs(2);

/// Process groups of the QEMUs alive now.
static LIVE_GROUPS: Mutex<Vec<i32>> = Mutex::new(Vec::new());
/// Set once Ctrl-C (or SIGTERM, SIGHUP) has stopped the QEMUs.
static INTERRUPTED: AtomicBool = AtomicBool::new(false);

/// Whether an interrupt stopped QEMU (so its ending is no failure of its own).
pub fn interrupted() -> bool {
    INTERRUPTED.load(Ordering::SeqCst)
}

/// Stops every live QEMU on Ctrl-C, SIGTERM, SIGHUP (SIGTERM first, so
/// QEMU ends cleanly) and kills them on a panic (the workspace builds with
/// `panic = "abort"`, so no destructor runs then); removes the management
/// sockets and scenario directories either way.
pub fn install_cleanup_handlers() {
    let handler = ctrlc::set_handler(|| {
        INTERRUPTED.store(true, Ordering::SeqCst);
        terminate_all();
        crate::mgmt_socket::remove_owned();
        eprintln!("\nxtask: interrupted; QEMU stopped");
        std::process::exit(130);
    });
    if let Err(e) = handler {
        eprintln!("xtask: warning: no Ctrl-C handler ({e}); a QEMU may outlive an interrupt");
    }
    let default_hook = std::panic::take_hook();
    std::panic::set_hook(Box::new(move |info| {
        kill_all();
        crate::mgmt_socket::remove_owned();
        default_hook(info);
    }));
}

/// SIGTERM to every live QEMU group, then SIGKILL to those still alive
/// after [`TERM_GRACE`].
fn terminate_all() {
    let groups = LIVE_GROUPS
        .lock()
        .unwrap_or_else(PoisonError::into_inner)
        .clone();
    for &pgid in &groups {
        let _ = killpg(Pid::from_raw(pgid), Signal::SIGTERM);
    }
    let deadline = Instant::now() + TERM_GRACE;
    while Instant::now() < deadline
        && groups
            .iter()
            .any(|&pgid| killpg(Pid::from_raw(pgid), None).is_ok())
    {
        std::thread::sleep(Duration::from_millis(20));
    }
    kill_all();
}

fn kill_all() {
    let groups = LIVE_GROUPS.lock().unwrap_or_else(PoisonError::into_inner);
    for &pgid in groups.iter() {
        let _ = killpg(Pid::from_raw(pgid), Signal::SIGKILL);
    }
}

/// The QEMU command line: the machine of docs/development.md, COM1 on
/// stdio, COM2 (the management channel) on the UNIX socket `com2` if
/// given, the debug-exit device, `kernel` as `-kernel`, `initrd` as the
/// one boot module, and the disk and NICs dom0 drives (`devices`).
pub fn command(
    kernel: &Path,
    initrd: Option<&Path>,
    spec: &QemuSpec,
    com2: Option<&Path>,
    devices: Option<&MachineDevices>,
) -> Command {
    let mut command = Command::new("qemu-system-x86_64");
    command
        .args([
            "-machine",
            "q35",
            "-accel",
            "tcg",
            "-cpu",
            "qemu64,+svm,+npt",
        ])
        .args(["-m", &spec.memory_mib.to_string()])
        .args(["-smp", &spec.smp.to_string()])
        .args(["-nographic", "-no-reboot", "-nic", "none"])
        // Explicit, so that a later -serial in extra_args becomes COM2.
        .args(["-serial", "mon:stdio"]);
    if let Some(socket) = com2 {
        // wait=off: QEMU boots without waiting for a client; dom0ctl
        // connects (and reconnects) whenever it likes.
        command.args([
            "-serial",
            &format!("unix:{},server=on,wait=off", socket.display()),
        ]);
    }
    command
        .args([
            "-device",
            &format!("isa-debug-exit,iobase={DEBUG_EXIT_PORT:#x},iosize=0x04"),
        ])
        .arg("-kernel")
        .arg(kernel);
    if let Some(initrd) = initrd {
        command.arg("-initrd").arg(initrd);
    }
    if let Some(devices) = devices {
        command.args(devices.qemu_args());
    }
    if let Some(append) = &spec.append {
        command.args(["-append", append]);
    }
    command.args(&spec.extra_args);
    command
}

/// A running QEMU, killed (with its whole process group) when dropped.
pub struct Qemu {
    child: Child,
    /// Cleared once the child is reaped: its pid may then be reused.
    pgid: Option<i32>,
    output: Arc<Mutex<Vec<u8>>>,
    readers: Vec<JoinHandle<()>>,
}

impl Qemu {
    /// Starts `command` in a new process group with stdio piped; `echo`
    /// also copies its output to this terminal as it arrives.
    pub fn spawn(mut command: Command, echo: bool) -> Result<Self> {
        use std::os::unix::process::CommandExt;
        let mut groups = LIVE_GROUPS.lock().unwrap_or_else(PoisonError::into_inner);
        let mut child = command
            .process_group(0)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .context("starting qemu-system-x86_64")?;
        let pgid = i32::try_from(child.id()).context("pid out of range")?;
        groups.push(pgid);
        drop(groups);

        let output = Arc::new(Mutex::new(Vec::new()));
        let mut readers = Vec::new();
        if let Some(stdout) = child.stdout.take() {
            readers.push(capture(
                stdout,
                Arc::clone(&output),
                echo.then(|| Box::new(std::io::stdout()) as _),
            ));
        }
        if let Some(stderr) = child.stderr.take() {
            readers.push(capture(
                stderr,
                Arc::clone(&output),
                echo.then(|| Box::new(std::io::stderr()) as _),
            ));
        }
        Ok(Qemu {
            child,
            pgid: Some(pgid),
            output,
            readers,
        })
    }

    /// All output so far (COM1 and QEMU's own messages).
    pub fn output(&self) -> Vec<u8> {
        self.output
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }

    /// The shared buffer the output goes to (for another thread to watch).
    pub fn output_handle(&self) -> Arc<Mutex<Vec<u8>>> {
        Arc::clone(&self.output)
    }

    /// QEMU's console input.
    pub fn stdin(&mut self) -> Option<ChildStdin> {
        self.child.stdin.take()
    }

    /// Types `text` on the console.
    pub fn send(&mut self, text: &str) -> Result<()> {
        let stdin = self
            .child
            .stdin
            .as_mut()
            .context("QEMU's stdin is closed")?;
        stdin.write_all(text.as_bytes())?;
        stdin.flush()?;
        Ok(())
    }

    /// QEMU's exit status, if it has ended.
    pub fn try_wait(&mut self) -> Result<Option<ExitStatus>> {
        let status = self.child.try_wait().context("waiting for QEMU")?;
        if status.is_some() {
            self.forget_group();
        }
        Ok(status)
    }

    /// Kills QEMU, waits for it and returns everything it printed.
    pub fn finish(mut self) -> Vec<u8> {
        self.kill();
        for reader in self.readers.drain(..) {
            let _ = reader.join();
        }
        self.output()
    }

    fn kill(&mut self) {
        if let Some(pgid) = self.pgid {
            let _ = killpg(Pid::from_raw(pgid), Signal::SIGKILL);
        }
        let _ = self.child.wait();
        self.forget_group();
    }

    fn forget_group(&mut self) {
        if let Some(pgid) = self.pgid.take() {
            LIVE_GROUPS
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .retain(|&g| g != pgid);
        }
    }
}

impl Drop for Qemu {
    fn drop(&mut self) {
        self.kill();
    }
}

/// Copies `source` into `output` (up to [`MAX_CAPTURE`]) and to `echo`.
fn capture(
    mut source: impl Read + Send + 'static,
    output: Arc<Mutex<Vec<u8>>>,
    mut echo: Option<Box<dyn Write + Send>>,
) -> JoinHandle<()> {
    std::thread::spawn(move || {
        let mut chunk = [0u8; 4096];
        while let Ok(n @ 1..) = source.read(&mut chunk) {
            let data = &chunk[..n];
            if let Some(echo) = echo.as_mut() {
                let _ = echo.write_all(data).and_then(|()| echo.flush());
            }
            let mut output = output.lock().unwrap_or_else(PoisonError::into_inner);
            let room = MAX_CAPTURE.saturating_sub(output.len());
            output.extend_from_slice(&data[..n.min(room)]);
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::{Duration, Instant};

    /// Whether any process is left in group `pgid`.
    fn group_alive(pgid: i32) -> bool {
        killpg(Pid::from_raw(pgid), None).is_ok()
    }

    /// `kill_all` reaches every test's group: run these one at a time.
    static ONE_AT_A_TIME: Mutex<()> = Mutex::new(());

    fn spawn_group() -> (Qemu, i32) {
        // A stand-in for QEMU with a child of its own: the whole group must go.
        let mut command = Command::new("sh");
        command.args(["-c", "sleep 60 & echo started; sleep 60"]);
        let qemu = Qemu::spawn(command, false).unwrap();
        let pgid = qemu.pgid.unwrap();
        let deadline = Instant::now() + Duration::from_secs(5);
        while qemu.output().is_empty() && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(10));
        }
        assert_eq!(qemu.output(), b"started\n");
        (qemu, pgid)
    }

    #[test]
    fn dropping_the_guard_kills_the_process_group() {
        let _serial = ONE_AT_A_TIME.lock().unwrap_or_else(PoisonError::into_inner);
        let (qemu, pgid) = spawn_group();
        assert!(group_alive(pgid));
        assert!(LIVE_GROUPS.lock().unwrap().contains(&pgid));
        drop(qemu);
        // The orphaned `sleep` is reaped by init, not by us: allow a moment.
        let deadline = Instant::now() + Duration::from_secs(5);
        while group_alive(pgid) && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(10));
        }
        assert!(!group_alive(pgid));
        assert!(!LIVE_GROUPS.lock().unwrap().contains(&pgid));
    }

    #[test]
    fn kill_all_stops_live_groups() {
        let _serial = ONE_AT_A_TIME.lock().unwrap_or_else(PoisonError::into_inner);
        let (mut qemu, _) = spawn_group();
        kill_all();
        let deadline = Instant::now() + Duration::from_secs(5);
        let status = loop {
            if let Some(status) = qemu.try_wait().unwrap() {
                break status;
            }
            assert!(Instant::now() < deadline, "kill_all left the group running");
            std::thread::sleep(Duration::from_millis(10));
        };
        assert_eq!(
            std::os::unix::process::ExitStatusExt::signal(&status),
            Some(9)
        );
        assert!(qemu.pgid.is_none(), "a reaped group is forgotten");
    }
}
