//! Spawning a process under another identity: a vfork-style `clone`
//! (`CLONE_VM | CLONE_VFORK`, what `posix_spawn` itself does) whose child
//! sets its supplementary groups, gid and uid, then execs.
//!
//! `posix_spawn` cannot change credentials, and a full `fork()` copies the
//! emperor's page tables per spawn (with 10 000 vassals running, starting
//! them took minutes that way). The child here runs on the emperor's memory
//! until its exec, so it only makes system calls and allocates nothing: the
//! parent prepares everything in a [`Plan`] first. Credentials are changed with the per-task system calls
//! (rustix's `thread` functions): glibc's `setuid` would broadcast the
//! change to every thread of the emperor, whose thread list the child
//! shares.
//!
//! The child shares the emperor's fd table until it takes a private one
//! holding only what it keeps ([`super::spawn_fds`]): with 10 000 vassals
//! running, a spawn then costs what it costs with none.

use super::spawn::{cstring, environment, Credentials, SpawnRequest};
use super::spawn_fds::{self, FdStep};
use rustix::process::{Gid, Uid};
use std::ffi::{c_int, c_void, CString};
use std::os::fd::AsRawFd;
use std::sync::atomic::{AtomicI32, AtomicU8, Ordering};

/// Stack of the child until it execs: it only makes system calls.
const CHILD_STACK: usize = 64 * 1024;

/// One more than the highest signal number (Linux's `_NSIG`).
const NSIG: c_int = 65;

/// The step of the child that failed, for the error message.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u8)]
enum Step {
    Setsid = 1,
    Unshare,
    Fds,
    Groups,
    Gid,
    Uid,
    Chdir,
    Exec,
}

impl Step {
    fn from_u8(n: u8) -> Option<Step> {
        [Step::Setsid, Step::Unshare, Step::Fds, Step::Groups, Step::Gid, Step::Uid, Step::Chdir, Step::Exec]
            .into_iter()
            .find(|s| *s as u8 == n)
    }

    fn describe(self, credentials: Option<&Credentials>) -> String {
        let Some(&Credentials { uid, gid, .. }) = credentials else {
            return match self {
                Step::Chdir => "chdir".into(),
                Step::Exec => "exec".into(),
                other => other.describe(Some(&Credentials { uid: 0, gid: 0, groups: None })),
            };
        };
        match self {
            Step::Setsid => "setsid".into(),
            Step::Unshare => "taking a private fd table".into(),
            Step::Fds => "placing stdin, stdout/stderr, channels and sockets".into(),
            Step::Groups => format!("setgroups for uid {uid}"),
            Step::Gid => format!("setgid({gid})"),
            Step::Uid => format!("setuid({uid})"),
            Step::Chdir => format!("chdir as uid {uid}"),
            Step::Exec => format!("exec as uid {uid} gid {gid}"),
        }
    }
}

/// Everything the child needs, prepared by the parent; the pointers point
/// into the parent's values, alive (and unmoved) until the clone returns.
struct Plan {
    program: *const libc::c_char,
    argv: *const *mut libc::c_char,
    envp: *const *mut libc::c_char,
    cwd: *const libc::c_char,
    /// `(slot, target)`: see [`spawn_fds::Staged`].
    moves: *const (c_int, c_int),
    moves_len: usize,
    low: c_int,
    parking: c_int,
    umask: Option<libc::mode_t>,
    groups: Option<(*const Gid, usize)>,
    /// The uid and gid to switch to (none: the emperor's own).
    ids: Option<(Uid, Gid)>,
    /// Written by a failing child: the step, and its errno.
    failed_step: AtomicU8,
    failed_errno: AtomicI32,
}

/// Starts `req`, as `credentials` when given (else as the emperor's own
/// identity); returns the pid.
pub(super) fn spawn(req: &SpawnRequest, credentials: Option<&Credentials>) -> std::io::Result<i32> {
    let program = cstring(resolve(&req.program)?.into_encoded_bytes())?;
    let argv: Vec<CString> = std::iter::once(cstring(req.program.clone()))
        .chain(req.args.iter().map(|a| cstring(a.clone())))
        .collect::<Result<_, _>>()?;
    let envp = environment(&req.env, &req.env_remove)?;
    let cwd = req.cwd.as_ref().map(|d| cstring(d.as_os_str().as_encoded_bytes())).transpose()?;
    let log = req.log.as_raw_fd();
    let fds: Vec<(c_int, c_int)> = req.moved_fds.iter().copied().chain([(log, 1), (log, 2)]).collect();
    let ptrs = |v: &[CString]| {
        v.iter().map(|c| c.as_ptr().cast_mut()).chain(std::iter::once(std::ptr::null_mut())).collect::<Vec<_>>()
    };
    let (argv_p, envp_p) = (ptrs(&argv), ptrs(&envp));
    let groups: Option<Vec<Gid>> =
        credentials.and_then(|c| c.groups.as_ref()).map(|g| g.iter().map(|&gid| Gid::from_raw(gid)).collect());
    // Held until the child has exec'd: its fds are in the slots meanwhile.
    let staged = spawn_fds::stage(&fds)?;
    let plan = Plan {
        program: program.as_ptr(),
        argv: argv_p.as_ptr(),
        envp: envp_p.as_ptr(),
        cwd: cwd.as_ref().map_or(std::ptr::null(), |c| c.as_ptr()),
        moves: staged.moves.as_ptr(),
        moves_len: staged.moves.len(),
        low: staged.low,
        parking: staged.parking,
        umask: req.umask.map(|m| m as libc::mode_t),
        groups: groups.as_ref().map(|g| (g.as_ptr(), g.len())),
        ids: credentials.map(|c| (Uid::from_raw(c.uid), Gid::from_raw(c.gid))),
        failed_step: AtomicU8::new(0),
        failed_errno: AtomicI32::new(0),
    };
    let pid = clone_vfork(&plan);
    drop(staged);
    let pid = pid?;
    match Step::from_u8(plan.failed_step.load(Ordering::SeqCst)) {
        None => Ok(pid),
        Some(step) => {
            // The child has called _exit: reap it here, it is no vassal.
            let _ =
                rustix::process::waitpid(rustix::process::Pid::from_raw(pid), rustix::process::WaitOptions::empty());
            let os = std::io::Error::from_raw_os_error(plan.failed_errno.load(Ordering::SeqCst));
            Err(std::io::Error::new(os.kind(), format!("{}: {os}", step.describe(credentials))))
        }
    }
}

/// `program` as a path to execute: as given when it holds a `/`, else the
/// first executable match in the emperor's PATH (what `posix_spawnp` does;
/// the child cannot search, it must not allocate).
fn resolve(program: &str) -> std::io::Result<std::ffi::OsString> {
    if program.contains('/') {
        return Ok(program.into());
    }
    let paths = std::env::var_os("PATH").unwrap_or_else(|| "/usr/local/bin:/usr/bin:/bin".into());
    std::env::split_paths(&paths)
        .map(|dir| dir.join(program))
        .find(|p| super::spawn::resolvable(&p.to_string_lossy()))
        .map(Into::into)
        .ok_or_else(|| std::io::Error::new(std::io::ErrorKind::NotFound, format!("{program}: not found in PATH")))
}

/// Runs the child on a stack of its own, sharing the emperor's memory until
/// it execs or exits; returns its pid.
fn clone_vfork(plan: &Plan) -> std::io::Result<i32> {
    // Never read before the child writes it: no need to zero it.
    let mut stack: Vec<u8> = Vec::with_capacity(CHILD_STACK);
    // The stack grows down: its top, aligned as the ABI wants.
    let top = ((stack.as_mut_ptr() as usize + CHILD_STACK) & !15) as *mut c_void;
    let mut all: libc::sigset_t = empty_sigset();
    let mut previous: libc::sigset_t = empty_sigset();
    // SAFETY: sigfillset and pthread_sigmask write into the sigsets above.
    // Every signal stays blocked while the child runs on the emperor's
    // memory (no handler of the emperor's may run in it); the child resets
    // every disposition before it unblocks them.
    unsafe {
        libc::sigfillset(&mut all);
        libc::pthread_sigmask(libc::SIG_SETMASK, &all, &mut previous);
    }
    // CLONE_FILES: no copy of the emperor's fd table (see `spawn_fds`).
    let flags = libc::CLONE_VM | libc::CLONE_VFORK | libc::CLONE_FILES | libc::SIGCHLD;
    // SAFETY: `top` is the top of a live, writable allocation of
    // CHILD_STACK bytes, used only as the child's stack; `plan` outlives
    // the call, because CLONE_VFORK suspends this thread until the child
    // has exec'd or exited; `child` only makes system calls and never
    // returns into the emperor's code.
    let pid = unsafe { libc::clone(child, top, flags, std::ptr::from_ref(plan).cast_mut().cast()) };
    let error = std::io::Error::last_os_error();
    // SAFETY: restores the mask saved above.
    unsafe { libc::pthread_sigmask(libc::SIG_SETMASK, &previous, std::ptr::null_mut()) };
    drop(stack);
    if pid < 0 {
        return Err(error);
    }
    Ok(pid)
}

/// An empty signal set.
fn empty_sigset() -> libc::sigset_t {
    // SAFETY: sigset_t is plain data; all zeroes is the empty set.
    unsafe { std::mem::zeroed() }
}

/// The child: from the clone to exec. Reports a failure in the plan and exits 127.
extern "C" fn child(arg: *mut c_void) -> c_int {
    // SAFETY: `arg` is the `&Plan` clone_vfork passed, alive while the
    // parent is suspended.
    let plan = unsafe { &*(arg as *const Plan) };
    // SAFETY: only system calls on the values of the plan (see `run`).
    let (step, errno) = unsafe { run(plan) };
    plan.failed_errno.store(errno, Ordering::SeqCst);
    plan.failed_step.store(step as u8, Ordering::SeqCst);
    // SAFETY: _exit ends the child at once, running nothing of the emperor's.
    unsafe { libc::_exit(127) }
}

/// The errno of the last failed libc call.
fn errno() -> i32 {
    std::io::Error::last_os_error().raw_os_error().unwrap_or(libc::EINVAL)
}

/// Prepares the child and execs; returns only on failure, with the step and errno.
///
/// # Safety
/// Call only in the child of [`clone_vfork`], with the plan it was given.
unsafe fn run(plan: &Plan) -> (Step, i32) {
    // Default dispositions for every signal: the emperor's handlers are not
    // the vassal's (and must not run on the shared memory).
    for sig in 1..NSIG {
        if sig != libc::SIGKILL && sig != libc::SIGSTOP {
            libc::signal(sig, libc::SIG_DFL);
        }
    }
    if libc::setsid() < 0 {
        return (Step::Setsid, errno());
    }
    if let Some(mask) = plan.umask {
        libc::umask(mask);
    }
    // Until here the fd table is the emperor's: nothing above touched it.
    let moves = std::slice::from_raw_parts(plan.moves, plan.moves_len);
    match spawn_fds::place(moves, plan.low, plan.parking) {
        Ok(()) => {}
        Err((FdStep::Unshare, errno)) => return (Step::Unshare, errno),
        Err((FdStep::Place, errno)) => return (Step::Fds, errno),
    }
    if let Some((groups, len)) = plan.groups {
        if let Err(e) = rustix::thread::set_thread_groups(std::slice::from_raw_parts(groups, len)) {
            return (Step::Groups, e.raw_os_error());
        }
    }
    if let Some((uid, gid)) = plan.ids {
        if let Err(e) = rustix::thread::set_thread_res_gid(gid, gid, gid) {
            return (Step::Gid, e.raw_os_error());
        }
        if let Err(e) = rustix::thread::set_thread_res_uid(uid, uid, uid) {
            return (Step::Uid, e.raw_os_error());
        }
    }
    // As the vassal's user: it only starts where it may go itself.
    if !plan.cwd.is_null() && libc::chdir(plan.cwd) < 0 {
        return (Step::Chdir, errno());
    }
    let empty = empty_sigset();
    libc::sigprocmask(libc::SIG_SETMASK, &empty, std::ptr::null_mut());
    libc::execve(plan.program, plan.argv.cast(), plan.envp.cast());
    (Step::Exec, errno())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sys::spawn::{spawn as spawn_any, SpawnRequest};

    fn request(program: &str, args: &[&str], user: Credentials) -> SpawnRequest {
        SpawnRequest {
            program: program.into(),
            args: args.iter().map(|a| (*a).to_owned()).collect(),
            cwd: Some("/".into()),
            env: Vec::new(),
            env_remove: Vec::new(),
            moved_fds: Vec::new(),
            log: std::fs::OpenOptions::new().write(true).open("/dev/null").unwrap(),
            user: Some(user),
            umask: None,
        }
    }

    /// `Uid:`, `Gid:` and `Groups:` of a process, from /proc.
    fn ids_of(pid: i32) -> (String, String, String) {
        let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
        let field = |key: &str| {
            status.lines().find_map(|l| l.strip_prefix(key)).map(|v| v.split_whitespace().collect::<Vec<_>>().join(" "))
        };
        (field("Uid:").unwrap(), field("Gid:").unwrap(), field("Groups:").unwrap_or_default())
    }

    #[test]
    fn the_child_runs_as_the_given_ids() {
        if !crate::sys::user::is_root() {
            return; // only root can change its ids; the integration tests run as root
        }
        let user = Credentials { uid: 65534, gid: 65533, groups: Some(vec![65533, 4242]) };
        let pid = spawn_any(request("sleep", &["30"], user)).unwrap();
        // The clone returns once the child has exec'd: its ids are final.
        let (uid, gid, groups) = ids_of(pid);
        crate::sys::signal::kill(pid, libc::SIGKILL).unwrap();
        crate::sys::wait::reap_soon(pid);
        assert_eq!(uid, "65534 65534 65534 65534");
        assert_eq!(gid, "65533 65533 65533 65533");
        assert_eq!(groups, "4242 65533");
    }

    #[test]
    fn a_failed_exec_is_reported_with_its_step() {
        let me = crate::sys::user::ids();
        let user = Credentials { uid: me.0, gid: me.1, groups: None };
        let err = spawn_any(request("/nonexistent/program", &[], user.clone())).unwrap_err();
        assert_eq!(err.kind(), std::io::ErrorKind::NotFound, "{err}");
        assert!(err.to_string().starts_with("exec as uid"), "{err}");
        let err = spawn_any(request("no-such-program-anywhere", &[], user)).unwrap_err();
        assert_eq!(err.kind(), std::io::ErrorKind::NotFound, "{err}");
    }
}
