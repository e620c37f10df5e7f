//! Starts held for a cause that passes: no durable intent (a full state
//! dir), too few fds left, no process to spare. Such a start is neither a
//! bad config nor a crash: it is said once per vassal, shown `held` with
//! its reason, and retried by the controller with the vassal's backoff
//! until the cause goes away.

use super::Supervisor;
use crate::sys::spawn::Credentials;
use reconciler::{StartError, VassalName};

/// Why a start did not happen, as the supervisor tells it apart.
#[derive(Debug)]
pub(super) enum StartFailure {
    /// A failure the controller handles as it is (logged where it happened).
    Error(StartError),
    /// A cause that passes: held, said once, retried with backoff.
    Held(String),
}

impl From<StartError> for StartFailure {
    fn from(error: StartError) -> Self {
        StartFailure::Error(error)
    }
}

/// The reason to hold a start whose spawn failed with `error`, when it is
/// the kernel saying there is no process to spare (`EAGAIN`): the uid the
/// vassal runs as already runs more processes than its `RLIMIT_NPROC` (its
/// exec fails), or the system is out of pids or threads (the clone fails).
/// `None` for any other failure.
pub(super) fn out_of_processes(error: &std::io::Error, user: Option<&Credentials>) -> Option<String> {
    if error.kind() != std::io::ErrorKind::WouldBlock {
        return None;
    }
    let whose = user.map_or_else(|| "the emperor's uid".to_owned(), |c| format!("uid {}", c.uid));
    let limit = crate::sys::limits::process_limit().map_or_else(|| "unlimited".to_owned(), |n| n.to_string());
    Some(format!(
        "out of processes (EAGAIN): {whose} has reached its process limit (RLIMIT_NPROC {limit}), or the system has no pid to spare (pid_max, threads-max, a cgroup's pids.max); {error}"
    ))
}

impl Supervisor {
    /// What a failed start of `name` tells the controller: a held start is
    /// said once (until the vassal starts) and retried with backoff; any
    /// other failure ends the hold.
    pub(super) fn start_failed(&mut self, name: &VassalName, failure: StartFailure) -> StartError {
        match failure {
            StartFailure::Held(why) => {
                if self.held_starts.insert(name.clone()) {
                    tracing::error!(vassal = %name, reason = %why, "vassal not started; retrying with backoff");
                } else {
                    tracing::debug!(vassal = %name, reason = %why, "vassal still not started");
                }
                StartError::Failed(why)
            }
            StartFailure::Error(error) => {
                self.held_starts.remove(name);
                error
            }
        }
    }

    /// Whether the last start of `name` is held (see the module docs).
    pub(super) fn is_held(&self, name: &VassalName) -> bool {
        self.held_starts.contains(name)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_eagain_is_out_of_processes() {
        let user = Credentials { uid: 4321, gid: 4321, groups: None };
        let eagain = std::io::Error::from_raw_os_error(libc::EAGAIN);
        let why = out_of_processes(&eagain, Some(&user)).expect("EAGAIN is out of processes");
        assert!(why.starts_with("out of processes (EAGAIN") && why.contains("uid 4321"), "{why}");
        assert!(why.contains("RLIMIT_NPROC"), "{why}");
        let own = out_of_processes(&eagain, None).unwrap();
        assert!(own.contains("the emperor's uid"), "{own}");
        for other in [libc::ENOENT, libc::EACCES, libc::ENOMEM, libc::EMFILE] {
            assert_eq!(out_of_processes(&std::io::Error::from_raw_os_error(other), Some(&user)), None);
        }
    }
}
