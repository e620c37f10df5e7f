//! Per-vassal log files: by default the vassal writes to its own file, so
//! it never depends on the emperor draining a pipe; with rotation on, the
//! emperor writes them from the vassal's pipe (see [`super::logpipe`]).

use reconciler::VassalName;
use std::fs::File;
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

/// The file name of a vassal's log: its name with `%` and `/` escaped, plus `.log`.
pub fn file_name(name: &VassalName) -> String {
    file_name_of(name.as_str())
}

/// [`file_name`] of a vassal known by its name's text only (from an fd
/// holder key).
pub fn file_name_of(name: &str) -> String {
    format!("{}.log", name.replace('%', "%25").replace('/', "%2F"))
}

/// The path of a vassal's log in `dir`.
pub fn path(dir: &Path, name: &VassalName) -> PathBuf {
    dir.join(file_name(name))
}

/// Opens (creating) a vassal's log for appending, close-on-exec in the emperor.
pub fn open(dir: &Path, name: &VassalName) -> std::io::Result<File> {
    open_named(dir, &file_name(name))
}

/// Mode of a new log file: readable by the log dir's group, whatever the
/// emperor's own (private) umask.
const MODE: u32 = 0o640;

/// Opens (creating, mode `0640`) the log file `file` in `dir` for appending.
pub fn open_named(dir: &Path, file: &str) -> std::io::Result<File> {
    open_mode_0640(&dir.join(file), true)
}

/// Opens (creating, mode `0640`) the log file at `path` for writing at
/// offsets the caller chooses (not appending: `splice` refuses such files).
pub fn open_for_splice(path: &Path) -> std::io::Result<File> {
    open_mode_0640(path, false)
}

/// Opens `path` for writing, creating it `0640` if it does not exist.
fn open_mode_0640(path: &Path, append: bool) -> std::io::Result<File> {
    let mut options = File::options();
    options.write(true).append(append);
    match options.clone().create_new(true).mode(MODE).open(path) {
        Ok(created) => {
            created.set_permissions(std::fs::Permissions::from_mode(MODE))?;
            Ok(created)
        }
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => options.open(path),
        Err(e) => Err(e),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn new_logs_are_0640_whatever_the_umask() {
        let dir = tempfile::tempdir().unwrap();
        open_named(dir.path(), "a.log").unwrap();
        let mode = dir.path().join("a.log").metadata().unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o640);
        open_named(dir.path(), "a.log").unwrap();
    }

    #[test]
    fn names_are_escaped() {
        assert_eq!(file_name(&VassalName::parse("app.ini").unwrap()), "app.ini.log");
        assert_eq!(file_name(&VassalName::parse_path("/opt/a%b/u.ini").unwrap()), "%2Fopt%2Fa%25b%2Fu.ini.log");
    }
}
