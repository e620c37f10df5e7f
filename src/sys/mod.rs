//! The operating-system calls the emperor makes, behind safe functions.
//!
//! This is the only module of the crate allowed `unsafe` code. Most calls go
//! through `rustix`, which is safe; raw `libc` remains only where `rustix`
//! has no wrapper: `posix_spawn`, `close_range`, `waitid` on any child (its
//! siginfo pid), `pidfd_send_signal` with `PIDFD_SIGNAL_PROCESS_GROUP`, and
//! the passwd/group database, `umask` and `poll`. Every `unsafe` block says why it is sound.
#![allow(unsafe_code)]
#![deny(clippy::undocumented_unsafe_blocks)]

pub mod dgram;
pub mod host;
mod own_pid;
pub mod peer;
pub mod pidfd;
pub mod proc;
pub mod scm;
pub mod signal;
pub mod spawn;
pub mod umask;
pub mod user;
pub mod wait;
