//! `emperor`: keeps vassals running from declared config sources.
//!
//! The library holds the whole emperor; the `emperor` binary only parses
//! its command line and calls [`run`]. Tests and embedders can run the loop
//! in-process with a shutdown future of their own.
//!
//! Only `sys` may bypass the compiler's memory checks (the package denies
//! it everywhere else): it wraps the system calls behind safe functions.

pub mod cli;
pub mod control;
pub mod emperor;
mod failpoint;
pub mod fleet;
#[cfg(any(test, feature = "fuzzing"))]
#[doc(hidden)]
pub mod fuzzing;
pub mod json_log;
pub mod source;
mod store_outage;
pub mod supervisor;
mod sys;
pub mod vassal;

use anyhow::Context;

/// Runs what the command line asks for: the fd holder (an internal role) or
/// the emperor itself, until a stop signal or until `shutdown` completes
/// (which stops every vassal, like SIGTERM).
///
/// The process umask becomes `077` (the emperor's files are private); the
/// one it had is what vassals get unless `--vassal-umask` says otherwise.
pub fn run(cli: cli::Cli, shutdown: impl std::future::Future<Output = ()>) -> anyhow::Result<()> {
    sys::umask::make_private();
    if let Some(socket) = &cli.fd_holder {
        return supervisor::serve_fd_holder(socket).with_context(|| format!("fd holder on {}", socket.display()));
    }
    sys::spawn::reserve_spawn_fds();
    let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().context("starting the runtime")?;
    runtime.block_on(emperor::run(cli, shutdown))
}

/// Marks every inherited fd close-on-exec so vassals inherit nothing of
/// the emperor's caller, and keeps the heap in one arena; call first thing
/// in `main`, before any thread starts.
pub fn prepare_process() {
    sys::spawn::cloexec_inherited_fds();
    sys::heap::one_arena();
}
