//! fork/exec of one vassal: its own session, stdin from /dev/null, output
//! appended to its log file, and no fd of the emperor's leaking into it.
//!
//! This is the one module that runs code between fork and exec.

use std::fs::File;
use std::os::unix::process::CommandExt;
use std::path::PathBuf;
use std::process::{Command, Stdio};

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
    /// stdout and stderr.
    pub log: File,
    /// uid and gid to switch to.
    pub user: Option<(u32, u32)>,
}

/// Starts the process; returns its pid. The process leads a new session and
/// process group whose id equals its pid.
pub fn spawn(req: SpawnRequest) -> std::io::Result<i32> {
    let mut cmd = Command::new(&req.program);
    cmd.args(&req.args).stdin(Stdio::null()).stdout(req.log.try_clone()?).stderr(req.log);
    if let Some(cwd) = &req.cwd {
        cmd.current_dir(cwd);
    }
    for key in &req.env_remove {
        cmd.env_remove(key);
    }
    cmd.envs(req.env.iter().map(|(k, v)| (k, v)));
    if let Some((uid, gid)) = req.user {
        cmd.uid(uid).gid(gid);
    }
    let keep = req.keep_fds.clone();
    // SAFETY: the closure only makes async-signal-safe syscalls (setsid,
    // close_range, fcntl, sigprocmask) and allocates nothing.
    unsafe {
        cmd.pre_exec(move || {
            if libc::setsid() < 0 {
                return Err(std::io::Error::last_os_error());
            }
            // Mark every inherited fd close-on-exec in one call, then let
            // through only the channel ends the vassal needs.
            libc::syscall(libc::SYS_close_range, 3u32, u32::MAX, libc::CLOSE_RANGE_CLOEXEC);
            for fd in &keep {
                if libc::fcntl(*fd, libc::F_SETFD, 0) < 0 {
                    return Err(std::io::Error::last_os_error());
                }
            }
            let mut empty: libc::sigset_t = std::mem::zeroed();
            libc::sigemptyset(&mut empty);
            libc::sigprocmask(libc::SIG_SETMASK, &empty, std::ptr::null_mut());
            Ok(())
        });
    }
    let child = cmd.spawn()?;
    Ok(child.id() as i32)
}

/// Whether `program` names something that can be executed (a path to an
/// executable file, or a name found in PATH).
pub fn resolvable(program: &str) -> bool {
    use std::os::unix::fs::PermissionsExt;
    let executable =
        |p: &std::path::Path| p.metadata().is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0);
    if program.contains('/') {
        return executable(std::path::Path::new(program));
    }
    std::env::var_os("PATH")
        .is_some_and(|paths| std::env::split_paths(&paths).any(|dir| executable(&dir.join(program))))
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
