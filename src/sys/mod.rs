//! The operating-system calls the emperor makes, behind safe functions.
//!
//! This is the only module of the crate allowed `unsafe` code. Most calls go
//! through `rustix`, which is safe; raw `libc` remains only where `rustix`
//! has no wrapper: the vfork-style `clone` of a spawn (and what its child
//! does before exec), `close_range` (and `unshare` where the kernel lacks
//! `CLOSE_RANGE_UNSHARE`),
//! `waitid` on any child (its siginfo pid), `pidfd_send_signal` with
//! `PIDFD_SIGNAL_PROCESS_GROUP`, the passwd/group database (with
//! `getgrouplist`), `umask`, `poll`, `clock_gettime` and `malloc_trim`. Every `unsafe` block says why it is
//! sound.
#![allow(unsafe_code)]
#![deny(clippy::undocumented_unsafe_blocks)]

pub mod clock;
pub mod dgram;
pub mod epoll;
pub mod heap;
pub mod host;
pub mod limits;
pub mod peer;
pub mod pidfd;
pub mod pipe;
pub mod proc;
pub mod scm;
pub mod signal;
pub mod socket;
pub mod spawn;
mod spawn_as;
mod spawn_fds;
pub mod umask;
pub mod user;
pub mod wait;
