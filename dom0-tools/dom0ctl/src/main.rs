//! `dom0ctl`: parse the command line, run it, report errors with a clear
//! message and the documented exit status.

use std::io;
use std::process::ExitCode;

use clap::Parser;
use dom0ctl::{run, Cli, Input};

fn main() -> ExitCode {
    let cli = Cli::parse();
    match run(cli, &mut io::stdout().lock(), Input::stdin()) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("dom0ctl: error: {e}");
            ExitCode::from(e.exit_code())
        }
    }
}
