//! `dom0ctl`: the operator's CLI. It talks to the management agent in
//! dom0 over the management socket (QEMU's COM2) or over TCP
//! (authenticated, [`mgmt::auth`]) with the [`mgmt`] protocol; it never touches the hypervisor or guest memory itself.

#![forbid(unsafe_code)]

pub mod cli;
mod client;
mod commands;
pub mod config;
pub mod console;
pub mod error;
mod memory;
mod network;
mod output;
mod progress;
pub mod proxy;
pub mod pvcontrol;
mod sched;
mod storage;
mod top;
pub mod transport;
pub mod xenstore;
pub mod xs_link;
mod xs_mgmt;

pub use cli::{Cli, DEFAULT_KEY_FILE, DEFAULT_SOCKET, KEY_FILE_ENV, SOCKET_ENV};
pub use commands::run;
pub use console::Input;
pub use error::CliError;

#[cfg(test)]
mod xs_tests;
