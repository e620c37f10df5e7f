//! Spawning one vassal: its own session, stdin from /dev/null, output
//! appended to its log file, and no fd of the emperor's leaking into it.
//!
//! A vassal that runs as the emperor's own user is a `posix_spawn`; one
//! that runs as another user goes through [`super::spawn_as`], the one
//! module that runs code of ours between clone and exec.

use std::collections::BTreeMap;
use std::ffi::CString;
use std::fs::File;
use std::os::fd::AsRawFd;
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
    /// Fds (open in the emperor, close-on-exec) the process inherits at the same numbers.
    pub keep_fds: Vec<i32>,
    /// Fds placed at other numbers: `(source, target)`. A target of 0
    /// replaces `/dev/null` as stdin; every source is close-on-exec and
    /// numbered above every target (see [`super::socket::dup_at_least`]),
    /// and no target is one of `keep_fds`.
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
/// Without a user switch this is a `posix_spawn`; with one it is the same
/// kind of vfork-style clone with a child that drops privileges before its
/// exec ([`super::spawn_as`]). Neither copies the emperor's page tables, so
/// a spawn costs the same with 10 000 vassals running as with none.
pub fn spawn(req: SpawnRequest) -> std::io::Result<i32> {
    match &req.user {
        None => spawn_vfork(req),
        Some(credentials) => super::spawn_as::spawn(&req, credentials),
    }
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

fn spawn_vfork(req: SpawnRequest) -> std::io::Result<i32> {
    let program = cstring(req.program.clone())?;
    let argv: Vec<CString> = std::iter::once(Ok(program.clone()))
        .chain(req.args.iter().map(|a| cstring(a.clone())))
        .collect::<Result<_, _>>()?;
    let envp = environment(&req.env, &req.env_remove)?;
    let cwd = req.cwd.as_ref().map(|d| cstring(d.as_os_str().as_encoded_bytes())).transpose()?;
    let devnull = cstring("/dev/null")?;
    let ptrs = |v: &[CString]| {
        v.iter().map(|c| c.as_ptr().cast_mut()).chain(std::iter::once(std::ptr::null_mut())).collect::<Vec<_>>()
    };
    let (argv_p, envp_p) = (ptrs(&argv), ptrs(&envp));
    let log = req.log.as_raw_fd();
    // SAFETY: every pointer handed to libc points into the CStrings and
    // vectors above, which live until posix_spawn returns; the attribute
    // and file-action objects are initialised before use and destroyed after.
    unsafe {
        let mut actions: libc::posix_spawn_file_actions_t = std::mem::zeroed();
        let mut attr: libc::posix_spawnattr_t = std::mem::zeroed();
        libc::posix_spawn_file_actions_init(&mut actions);
        libc::posix_spawnattr_init(&mut attr);
        match req.moved_fds.iter().find(|(_, target)| *target == 0) {
            Some((source, _)) => libc::posix_spawn_file_actions_adddup2(&mut actions, *source, 0),
            None => libc::posix_spawn_file_actions_addopen(&mut actions, 0, devnull.as_ptr(), libc::O_RDONLY, 0),
        };
        libc::posix_spawn_file_actions_adddup2(&mut actions, log, 1);
        libc::posix_spawn_file_actions_adddup2(&mut actions, log, 2);
        for (source, target) in req.moved_fds.iter().filter(|(_, target)| *target != 0) {
            libc::posix_spawn_file_actions_adddup2(&mut actions, *source, *target);
        }
        // dup2 of an fd onto itself clears its close-on-exec flag: the
        // channel ends pass, everything else of the emperor's is closed.
        for fd in &req.keep_fds {
            libc::posix_spawn_file_actions_adddup2(&mut actions, *fd, *fd);
        }
        if let Some(dir) = &cwd {
            libc::posix_spawn_file_actions_addchdir_np(&mut actions, dir.as_ptr());
        }
        let mut empty: libc::sigset_t = std::mem::zeroed();
        libc::sigemptyset(&mut empty);
        libc::posix_spawnattr_setsigmask(&mut attr, &empty);
        let mut all: libc::sigset_t = std::mem::zeroed();
        libc::sigfillset(&mut all);
        libc::posix_spawnattr_setsigdefault(&mut attr, &all);
        let flags =
            libc::POSIX_SPAWN_SETSID | (libc::POSIX_SPAWN_SETSIGMASK | libc::POSIX_SPAWN_SETSIGDEF) as libc::c_short;
        libc::posix_spawnattr_setflags(&mut attr, flags);
        let mut pid: libc::pid_t = 0;
        let spawn = if req.program.contains('/') { libc::posix_spawn } else { libc::posix_spawnp };
        // posix_spawn has no umask attribute: the child inherits the
        // caller's, so the vassal's is set for the length of the call. The
        // state store's files all exist from its opening, and the state dir
        // is 0700 besides, so no file of the emperor's gets the vassal's mask.
        let emperor_mask = req.umask.map(super::umask::set);
        let rc = spawn(&mut pid, program.as_ptr(), &actions, &attr, argv_p.as_ptr(), envp_p.as_ptr());
        if let Some(mask) = emperor_mask {
            super::umask::set(mask);
        }
        libc::posix_spawn_file_actions_destroy(&mut actions);
        libc::posix_spawnattr_destroy(&mut attr);
        if rc != 0 {
            return Err(std::io::Error::from_raw_os_error(rc));
        }
        Ok(pid)
    }
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
