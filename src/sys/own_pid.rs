//! An exec whose environment names the new process's own pid (a vassal's
//! `WATCHDOG_PID`, which tells it, and not its children, that the watchdog
//! is its own). Only the child knows its pid, so the variable is written
//! between fork and exec, into memory prepared before the fork: nothing is
//! allocated in the child.

use std::ffi::{c_char, CString};
use std::io;

/// A program, its arguments and its environment, ready to be executed with
/// one more variable holding the pid of whoever executes it.
pub(super) struct ExecNamingPid {
    program: CString,
    _argv: Vec<CString>,
    argv_ptrs: Vec<*const c_char>,
    _envp: Vec<CString>,
    /// The environment's pointers; the one before the final null is the
    /// variable's, set in the child.
    envp_ptrs: Vec<*const c_char>,
    /// `NAME=` and room for the digits and their NUL.
    slot: Vec<u8>,
    /// Where the digits go in `slot`.
    digits_at: usize,
}

// SAFETY: the raw pointers point into the CStrings this value owns; they are
// only read by `execve`, in the child that owns its copy of the value.
unsafe impl Send for ExecNamingPid {}
// SAFETY: as above; `&self` gives no access to the pointers.
unsafe impl Sync for ExecNamingPid {}

impl ExecNamingPid {
    /// `program` (a path) run with `argv` (argv[0] included) and `envp`
    /// (`KEY=VALUE` entries, without `variable`), plus `variable` set to
    /// the pid of the process that calls [`exec`](Self::exec).
    pub(super) fn new(program: CString, argv: Vec<CString>, envp: Vec<CString>, variable: &str) -> Self {
        let null = std::ptr::null::<c_char>();
        let argv_ptrs = argv.iter().map(|a| a.as_ptr()).chain([null]).collect();
        let envp_ptrs = envp.iter().map(|e| e.as_ptr()).chain([null, null]).collect();
        let mut slot = format!("{variable}=").into_bytes();
        let digits_at = slot.len();
        slot.resize(digits_at + 21, 0);
        Self { program, _argv: argv, argv_ptrs, _envp: envp, envp_ptrs, slot, digits_at }
    }

    /// In the child: writes its pid into the variable and executes the
    /// program; returns only if that fails. Async-signal-safe.
    pub(super) fn exec(&mut self) -> io::Error {
        let mut pid = rustix::process::getpid().as_raw_nonzero().get().unsigned_abs();
        let mut digits = [0u8; 20];
        let mut start = digits.len();
        loop {
            start -= 1;
            digits[start] = b'0' + (pid % 10) as u8;
            pid /= 10;
            if pid == 0 {
                break;
            }
        }
        let end = self.digits_at + digits.len() - start;
        self.slot[self.digits_at..end].copy_from_slice(&digits[start..]);
        self.slot[end] = 0;
        let at = self.envp_ptrs.len() - 2;
        self.envp_ptrs[at] = self.slot.as_ptr().cast();
        // SAFETY: `program` is NUL-terminated; both pointer arrays end with a
        // null and point to NUL-terminated strings owned by `self` (the slot
        // ends with the NUL written above).
        unsafe { libc::execve(self.program.as_ptr(), self.argv_ptrs.as_ptr(), self.envp_ptrs.as_ptr()) };
        io::Error::last_os_error()
    }
}
