//! What `/proc` says about a process, and signals to it.

use std::fs;
use std::path::PathBuf;

/// The state letter of `/proc/<pid>/stat` (`R`, `S`, `Z`, ...), or `None` when
/// the pid does not exist (it exited and was reaped).
pub fn proc_state(pid: i32) -> Option<char> {
    let stat = fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    stat.rsplit_once(')')?.1.trim_start().chars().next()
}

/// Running (exists and is not a zombie).
pub fn alive(pid: i32) -> bool {
    matches!(proc_state(pid), Some(s) if s != 'Z' && s != 'X')
}

/// Exited and reaped: no `/proc` entry at all.
pub fn reaped(pid: i32) -> bool {
    proc_state(pid).is_none()
}

/// Dead: reaped, or a zombie (for grandchildren re-parented to an init that
/// may not reap).
pub fn dead(pid: i32) -> bool {
    !alive(pid)
}

/// Whether `pid` leads its own session (vassals do).
pub fn session_leader(pid: i32) -> bool {
    fs::read_to_string(format!("/proc/{pid}/stat"))
        .ok()
        .and_then(|s| s[s.rfind(')')? + 2..].split_whitespace().nth(3)?.parse::<i32>().ok())
        == Some(pid)
}

/// Every pid in `/proc`.
pub fn all_pids() -> Vec<i32> {
    let Ok(proc_dir) = fs::read_dir("/proc") else { return Vec::new() };
    proc_dir.filter_map(|e| e.ok()?.file_name().to_str()?.parse::<i32>().ok()).collect()
}

/// `/proc/<pid>/<file>` split at NUL bytes.
fn nul_separated(pid: i32, file: &str) -> Vec<String> {
    let raw = fs::read(format!("/proc/{pid}/{file}")).unwrap_or_default();
    raw.split(|&b| b == 0).filter(|s| !s.is_empty()).map(|s| String::from_utf8_lossy(s).into_owned()).collect()
}

/// `/proc/<pid>/cmdline` split into arguments.
pub fn cmdline(pid: i32) -> Vec<String> {
    nul_separated(pid, "cmdline")
}

/// `/proc/<pid>/environ` as `K=V` strings.
pub fn environ(pid: i32) -> Vec<String> {
    nul_separated(pid, "environ")
}

/// The value of `key` in `/proc/<pid>/environ`.
pub fn env_of(pid: i32, key: &str) -> Option<String> {
    let prefix = format!("{key}=");
    environ(pid).into_iter().find_map(|kv| kv.strip_prefix(&prefix).map(str::to_owned))
}

/// `/proc/<pid>/cwd`.
pub fn cwd_of(pid: i32) -> Option<PathBuf> {
    fs::read_link(format!("/proc/{pid}/cwd")).ok()
}

/// Sends `sig` to `pid`.
pub fn kill(pid: i32, sig: i32) {
    // SAFETY: kill(2) has no memory-safety preconditions.
    unsafe { libc::kill(pid, sig) };
}
