//! File descriptors kept for the emperor itself: a start goes ahead only
//! while, after it, enough fds would be left for the sources, the control
//! socket and the log files. When the fd limit is reached, it is vassal
//! starts that wait (and are retried), never the emperor's own work.

use std::fs::File;

/// Fds that must stay free for the emperor's own needs.
pub(super) const RESERVE: usize = 32;
/// The most fds one start takes (log file, two channel pairs, copies for
/// the fd holder, the spawn's own).
const PER_START: usize = 10;

/// The probe; see the module docs.
#[derive(Debug)]
pub(super) struct FdReserve {
    /// An open `/dev/null`, duplicated to count free fds.
    probe: Option<File>,
}

impl FdReserve {
    /// A probe on `/dev/null` (no check at all if it cannot be opened).
    pub(super) fn new() -> Self {
        Self { probe: File::open("/dev/null").ok() }
    }

    /// Whether a start may go ahead: `RESERVE + PER_START` fds can be
    /// opened now. The probe's copies are closed again at once.
    pub(super) fn check(&self) -> Result<(), String> {
        let Some(probe) = &self.probe else { return Ok(()) };
        let wanted = RESERVE + PER_START;
        let mut copies = Vec::with_capacity(wanted);
        while copies.len() < wanted {
            match probe.try_clone() {
                Ok(copy) => copies.push(copy),
                Err(e) => {
                    return Err(format!(
                        "too few file descriptors left ({e}): {} free, a start needs {PER_START} and the emperor keeps {RESERVE} for its sources, control socket and logs; raise RLIMIT_NOFILE",
                        copies.len()
                    ))
                }
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_process_with_fds_to_spare_may_start_vassals() {
        assert_eq!(FdReserve::new().check(), Ok(()));
        assert_eq!(FdReserve { probe: None }.check(), Ok(()), "no probe, no check");
    }
}
