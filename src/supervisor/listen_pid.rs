//! `LISTEN_PID` for native vassals that get sockets (`LISTEN_FDS`).
//!
//! The systemd convention says a program uses `LISTEN_FDS` only if
//! `LISTEN_PID` is its own pid, so that a child it starts does not take the
//! sockets for its own. The variable must hold the pid of the process that
//! execs the program, which the spawner cannot know before the spawn
//! (`posix_spawn` takes the environment first). systemd sets it in the child
//! after fork; we do the same without code between fork and exec: the
//! vassal is spawned as `emperor --exec-with-listen-pid PROGRAM ARGS…`, a
//! shim that sets `LISTEN_PID` to its own pid and execs the program, which
//! keeps that pid (and the fds at 3…). The cost is one more exec, paid only
//! by vassals with sockets.

use std::ffi::OsString;
use std::os::unix::process::CommandExt;

/// The first argument that runs the shim instead of the emperor.
pub const SHIM_FLAG: &str = "--exec-with-listen-pid";

/// The program and arguments that run `program args…` through the shim.
pub(super) fn wrap(program: String, args: Vec<String>) -> std::io::Result<(String, Vec<String>)> {
    let exe = std::env::current_exe()?;
    let mut wrapped = Vec::with_capacity(args.len() + 2);
    wrapped.push(SHIM_FLAG.to_owned());
    wrapped.push(program);
    wrapped.extend(args);
    Ok((exe.to_string_lossy().into_owned(), wrapped))
}

/// The shim itself (`emperor --exec-with-listen-pid PROGRAM ARGS…`, the
/// flag already taken off `args`): sets `LISTEN_PID` and execs; returns
/// only if the exec failed (exit code 127, as a shell would).
pub fn exec_with_listen_pid(mut args: impl Iterator<Item = OsString>) -> std::process::ExitCode {
    let Some(program) = args.next() else {
        eprintln!("emperor {SHIM_FLAG}: no program given");
        return std::process::ExitCode::from(127);
    };
    let error =
        std::process::Command::new(&program).args(args).env("LISTEN_PID", std::process::id().to_string()).exec();
    eprintln!("emperor {SHIM_FLAG}: cannot execute {}: {error}", program.to_string_lossy());
    std::process::ExitCode::from(127)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_shim_goes_first_and_keeps_the_arguments() {
        let (exe, args) = wrap("python3".into(), vec!["-m".into(), "app".into()]).unwrap();
        assert!(!exe.is_empty());
        assert_eq!(args, [SHIM_FLAG, "python3", "-m", "app"]);
    }
}
