//! Paths and config-file versions shared by the file and message sources.

use super::hash::fnv1a;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

/// `path` made absolute against the current directory, without resolving links.
pub fn absolute(path: &Path) -> PathBuf {
    std::path::absolute(path).unwrap_or_else(|_| path.to_owned())
}

/// What identifies one state of a config file.
pub struct FileMeta {
    /// Device.
    pub dev: u64,
    /// Inode.
    pub ino: u64,
    /// Modification time, in nanoseconds.
    pub mtime_ns: i128,
    /// Status change time, in nanoseconds.
    pub ctime_ns: i128,
    /// Owner.
    pub uid: u32,
    /// Group.
    pub gid: u32,
}

/// The metadata of a regular file (following symlinks); `None` when there
/// is no such regular file.
pub fn file_meta(path: &Path) -> std::io::Result<Option<FileMeta>> {
    match std::fs::metadata(path) {
        Ok(m) if m.is_file() => Ok(Some(FileMeta {
            dev: m.dev(),
            ino: m.ino(),
            mtime_ns: i128::from(m.mtime()) * 1_000_000_000 + i128::from(m.mtime_nsec()),
            ctime_ns: i128::from(m.ctime()) * 1_000_000_000 + i128::from(m.ctime_nsec()),
            uid: m.uid(),
            gid: m.gid(),
        })),
        Ok(_) => Ok(None),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound || e.raw_os_error() == Some(libc::ENOTDIR) => Ok(None),
        Err(e) => Err(e),
    }
}

/// The version a config file gets when first seen: its content hash and
/// mtime (`None` when there is no such regular file).
pub fn file_version(path: &Path) -> std::io::Result<Option<String>> {
    let Some(meta) = file_meta(path)? else { return Ok(None) };
    match std::fs::read(path) {
        Ok(bytes) => Ok(Some(format!("{:016x}@{}", fnv1a(&bytes), meta.mtime_ns))),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(e),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn file_versions_follow_content_and_mtime() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("a.ini");
        assert_eq!(file_version(&p).unwrap(), None);
        std::fs::write(&p, "x").unwrap();
        let v1 = file_version(&p).unwrap().unwrap();
        assert_eq!(file_version(&p).unwrap().unwrap(), v1);
        std::fs::write(&p, "y").unwrap();
        assert_ne!(file_version(&p).unwrap().unwrap(), v1);
        assert_eq!(file_version(dir.path()).unwrap(), None, "a directory is not a config");
    }
}
