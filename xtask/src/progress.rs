//! A spinner while a user waits for QEMU (a scenario without `-v` prints
//! nothing until it ends): what runs, for how long, and the limit. Only
//! on a terminal; pipes and CI logs stay as they were.

use std::io::IsTerminal;
use std::time::Duration;

use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};

/// A spinner that goes away when dropped.
pub struct Waiting(ProgressBar);

impl Waiting {
    /// Shows `what` with the time elapsed and the `limit`, if `wanted`
    /// and stdout is a terminal.
    pub fn start(what: &str, limit: Duration, wanted: bool) -> Self {
        let target = if wanted && std::io::stdout().is_terminal() {
            ProgressDrawTarget::stderr()
        } else {
            ProgressDrawTarget::hidden()
        };
        let bar = ProgressBar::with_draw_target(None, target);
        if let Ok(style) = ProgressStyle::with_template("{spinner} {msg}: {elapsed} so far") {
            bar.set_style(style);
        }
        bar.set_message(format!("{what} (at most {} s)", limit.as_secs()));
        bar.enable_steady_tick(Duration::from_millis(200));
        Self(bar)
    }
}

impl Drop for Waiting {
    fn drop(&mut self) {
        self.0.finish_and_clear();
    }
}
