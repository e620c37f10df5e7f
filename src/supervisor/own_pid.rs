//! Variables that must hold the vassal's own pid: `LISTEN_PID` for native
//! vassals that get sockets (`LISTEN_FDS`), `WATCHDOG_PID` for those with a
//! watchdog.
//!
//! The systemd conventions say a program uses `LISTEN_FDS` (or its watchdog)
//! only if the matching `…_PID` variable is its own pid, so that a child it
//! starts does not take them for its own. The variable must hold the pid of
//! the process that execs the program, which the spawner cannot know before
//! the spawn (`posix_spawn` takes the environment first). systemd sets it in
//! the child after fork; we do the same without code between fork and exec:
//! the vassal is spawned as `emperor --exec-with-own-pid VARS PROGRAM ARGS…`,
//! a shim that sets each of the comma-separated VARS to its own pid and execs
//! the program, which keeps that pid (and the fds at 3…). The cost is one more
//! exec, paid only by vassals that need it; the spawn stays a `posix_spawn`
//! (or the vfork-style clone of tyrant mode), never a fork of the emperor.

use std::ffi::OsString;
use std::os::unix::process::CommandExt;

/// The first argument that runs the shim instead of the emperor.
pub const SHIM_FLAG: &str = "--exec-with-own-pid";

/// The program and arguments that run `program args…` through the shim,
/// with each of `variables` set to the vassal's pid.
pub(super) fn wrap(variables: &[&str], program: String, args: Vec<String>) -> std::io::Result<(String, Vec<String>)> {
    let exe = std::env::current_exe()?;
    let mut wrapped = Vec::with_capacity(args.len() + 3);
    wrapped.push(SHIM_FLAG.to_owned());
    wrapped.push(variables.join(","));
    wrapped.push(program);
    wrapped.extend(args);
    Ok((exe.to_string_lossy().into_owned(), wrapped))
}

/// The shim itself (`emperor --exec-with-own-pid VARS PROGRAM ARGS…`, the
/// flag already taken off `args`): sets the variables and execs; returns
/// only if the exec failed (exit code 127, as a shell would).
pub fn exec_with_own_pid(mut args: impl Iterator<Item = OsString>) -> std::process::ExitCode {
    let (Some(variables), Some(program)) = (args.next(), args.next()) else {
        eprintln!("emperor {SHIM_FLAG}: usage: {SHIM_FLAG} VARIABLES PROGRAM [ARGS…]");
        return std::process::ExitCode::from(127);
    };
    let pid = std::process::id().to_string();
    let variables = variables.to_string_lossy().into_owned();
    let names = variables.split(',').filter(|v| !v.is_empty());
    let error = std::process::Command::new(&program).args(args).envs(names.map(|v| (v, pid.as_str()))).exec();
    eprintln!("emperor {SHIM_FLAG}: cannot execute {}: {error}", program.to_string_lossy());
    std::process::ExitCode::from(127)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_shim_goes_first_and_keeps_the_arguments() {
        let (exe, args) =
            wrap(&["LISTEN_PID", "WATCHDOG_PID"], "python3".into(), vec!["-m".into(), "app".into()]).unwrap();
        assert!(!exe.is_empty());
        assert_eq!(args, [SHIM_FLAG, "LISTEN_PID,WATCHDOG_PID", "python3", "-m", "app"]);
    }
}
