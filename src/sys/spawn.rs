//! Spawning one vassal: its own session, stdin from /dev/null, output
//! appended to its log file, and no fd of the emperor's leaking into it.
//!
//! Every spawn goes through [`super::spawn_as`], the one module that runs
//! code of ours between clone and exec.

use std::collections::BTreeMap;
use std::ffi::CString;
use std::fs::File;
use std::path::PathBuf;

/// Everything needed to start one process.
#[derive(Debug)]
pub struct SpawnRequest {
    /// Program (a path, or a name looked up in PATH).
    pub program: String,
    /// Arguments after the program.
    pub args: Vec<String>,
    /// Working directory.
    pub cwd: Option<PathBuf>,
    /// Variables added to (or replacing in) the emperor's environment.
    pub env: Vec<(String, String)>,
    /// Variables removed from the emperor's environment.
    pub env_remove: Vec<String>,
    /// The fds the process gets besides stdout and stderr: `(source,
    /// target)`, each source an fd of the emperor's (open until the spawn
    /// returns), each target (0 or from 3) used once. A target of 0
    /// replaces `/dev/null` as stdin. Every other fd is closed.
    pub moved_fds: Vec<(i32, i32)>,
    /// stdout and stderr.
    pub log: File,
    /// Whom to run as (the emperor's own identity when `None`).
    pub user: Option<Credentials>,
    /// The file-creation mask of the process (the emperor's own when `None`).
    pub umask: Option<u32>,
}

/// Whom a process runs as: set in the child just before exec.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Credentials {
    /// The uid (real, effective and saved).
    pub uid: u32,
    /// The gid (real, effective and saved).
    pub gid: u32,
    /// The supplementary groups, or `None` to leave the emperor's (only a
    /// privileged emperor can change them).
    pub groups: Option<Vec<u32>>,
}

/// Starts the process; returns its pid. The process leads a new session and
/// process group whose id equals its pid.
///
/// This is a vfork-style clone (what `posix_spawn` does) whose child sets
/// its umask, fds and, with a user switch, its identity before its exec
/// ([`super::spawn_as`]). It copies neither the emperor's page tables nor
/// its fd table, so a spawn costs the same with 10 000 vassals running
/// (and their 10 000 channel fds open) as with none; and the
/// vassal's umask is set in the child alone, never in the emperor, whose
/// other threads keep creating files with its private mask meanwhile.
pub fn spawn(req: SpawnRequest) -> std::io::Result<i32> {
    super::spawn_as::spawn(&req, req.user.as_ref())
}

pub(super) fn cstring(text: impl Into<Vec<u8>>) -> std::io::Result<CString> {
    CString::new(text).map_err(|_| std::io::Error::new(std::io::ErrorKind::InvalidInput, "NUL byte in argument"))
}

/// The environment of the child: the emperor's, less `remove`, plus `add`.
pub(super) fn environment(add: &[(String, String)], remove: &[String]) -> std::io::Result<Vec<CString>> {
    let mut vars: BTreeMap<Vec<u8>, Vec<u8>> =
        std::env::vars_os().map(|(k, v)| (k.into_encoded_bytes(), v.into_encoded_bytes())).collect();
    for key in remove {
        vars.remove(key.as_bytes());
    }
    for (k, v) in add {
        vars.insert(k.clone().into_bytes(), v.clone().into_bytes());
    }
    vars.into_iter()
        .map(|(mut k, v)| {
            k.push(b'=');
            k.extend(v);
            cstring(k)
        })
        .collect()
}

/// Keeps a few of the lowest free fd numbers for spawns, so that a spawn
/// never copies the emperor's fd table (see [`super::spawn_fds`]). Call at
/// start, before the emperor opens its own fds.
pub fn reserve_spawn_fds() {
    super::spawn_fds::reserve_slots();
}

/// Marks every fd of the emperor from 3 up close-on-exec, so that fds it
/// inherited from its own parent never reach a vassal. Called once at start.
pub fn cloexec_inherited_fds() {
    // SAFETY: plain syscall with integer arguments.
    unsafe { libc::syscall(libc::SYS_close_range, 3u32, u32::MAX, libc::CLOSE_RANGE_CLOEXEC) };
}

/// Whether `program` names something that can be executed (a path to an
/// executable file, or a name found in PATH).
pub fn resolvable(program: &str) -> bool {
    resolve(program).is_some()
}

/// The executable file `program` names: itself when it holds a `/`, else
/// the first match in PATH.
fn resolve(program: &str) -> Option<PathBuf> {
    use std::os::unix::fs::PermissionsExt;
    let executable =
        |p: &std::path::Path| p.metadata().is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0);
    if program.contains('/') {
        return Some(PathBuf::from(program)).filter(|p| executable(p));
    }
    let paths = std::env::var_os("PATH")?;
    std::env::split_paths(&paths).map(|dir| dir.join(program)).find(|p| executable(p))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn resolves_programs() {
        assert!(resolvable("sh"));
        assert!(resolvable("/bin/sh"));
        assert!(!resolvable("/nonexistent/prog"));
        assert!(!resolvable("no-such-program-anywhere"));
    }
}
