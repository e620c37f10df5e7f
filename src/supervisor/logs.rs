//! Per-vassal log files: the vassal writes to its own file, so it never
//! depends on the emperor draining a pipe.

use reconciler::VassalName;
use std::fs::File;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};

/// The file name of a vassal's log: its name with `%` and `/` escaped, plus `.log`.
pub fn file_name(name: &VassalName) -> String {
    format!("{}.log", name.as_str().replace('%', "%25").replace('/', "%2F"))
}

/// The path of a vassal's log in `dir`.
pub fn path(dir: &Path, name: &VassalName) -> PathBuf {
    dir.join(file_name(name))
}

/// Opens (creating) a vassal's log for appending, close-on-exec in the emperor.
pub fn open(dir: &Path, name: &VassalName) -> std::io::Result<File> {
    open_named(dir, &file_name(name))
}

/// Opens (creating) the log file `file` in `dir` for appending.
pub fn open_named(dir: &Path, file: &str) -> std::io::Result<File> {
    File::options().create(true).append(true).mode(0o640).open(dir.join(file))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_escaped() {
        assert_eq!(file_name(&VassalName::parse("app.ini").unwrap()), "app.ini.log");
        assert_eq!(file_name(&VassalName::parse_path("/opt/a%b/u.ini").unwrap()), "%2Fopt%2Fa%25b%2Fu.ini.log");
    }
}
