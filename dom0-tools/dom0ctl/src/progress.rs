//! The upload's progress bar (bytes, rate, time left) on a terminal.

use std::io::IsTerminal;
use std::time::Duration;

use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};

/// How the bar looks: what is sent, how fast, how long still.
const TEMPLATE: &str = "{msg} [{bar:30}] {bytes}/{total_bytes} {binary_bytes_per_sec}, {eta} left";

/// A kernel upload's progress: drawn on stderr when stdout is a terminal
/// and not `--quiet`, hidden otherwise (scripts, pipes, scenario steps).
pub struct Progress(ProgressBar);

impl Progress {
    /// A bar for uploading `total` bytes of `name`'s kernel.
    pub fn upload(total: u64, name: &str, quiet: bool) -> Self {
        let target = if quiet || !std::io::stdout().is_terminal() {
            ProgressDrawTarget::hidden()
        } else {
            ProgressDrawTarget::stderr()
        };
        let bar = ProgressBar::with_draw_target(Some(total), target);
        if let Ok(style) = ProgressStyle::with_template(TEMPLATE) {
            bar.set_style(style.progress_chars("=> "));
        }
        bar.set_message(format!("uploading {name}"));
        // Redraws the rate and time left between chunks (a chunk takes
        // seconds over the serial line).
        bar.enable_steady_tick(Duration::from_millis(500));
        Self(bar)
    }

    /// `done` bytes have arrived.
    pub fn at(&self, done: u64) {
        self.0.set_position(done);
    }

    /// The upload is over: the bar goes away.
    pub fn finish(&self) {
        self.0.finish_and_clear();
    }
}

impl Drop for Progress {
    fn drop(&mut self) {
        // An error left it unfinished: clear it before the message.
        self.0.finish_and_clear();
    }
}
