//! The emperor's resource limits, as far as operators are told about them.

/// The soft `RLIMIT_NPROC` of the emperor: how many processes a uid may run
/// for a process started from it (`None`: unlimited). A vassal inherits it
/// through its spawn, and its exec fails (`EAGAIN`) while its uid already
/// runs more than that many.
pub fn process_limit() -> Option<u64> {
    rustix::process::getrlimit(rustix::process::Resource::Nproc).current
}
