//! Users and groups: our own ids and the passwd/group database.

use std::ffi::CString;

/// The real uid and gid of the emperor.
pub fn ids() -> (u32, u32) {
    (rustix::process::getuid().as_raw(), rustix::process::getgid().as_raw())
}

/// Whether the emperor runs as root (effective uid 0).
pub fn is_root() -> bool {
    rustix::process::geteuid().is_root()
}

/// The uid and primary gid of the user called `name`.
pub fn user_by_name(name: &str) -> Option<(u32, u32)> {
    let name = CString::new(name).ok()?;
    // SAFETY: getpwnam takes a NUL-terminated string and returns null or a
    // pointer into static storage, read at once before any other lookup.
    unsafe {
        let pw = libc::getpwnam(name.as_ptr());
        (!pw.is_null()).then(|| ((*pw).pw_uid, (*pw).pw_gid))
    }
}

/// The uid and primary gid of the user numbered `uid`, if it has an entry.
pub fn user_by_id(uid: u32) -> Option<(u32, u32)> {
    // SAFETY: getpwuid returns null or a pointer into static storage, read at
    // once before any other lookup.
    unsafe {
        let pw = libc::getpwuid(uid);
        (!pw.is_null()).then(|| ((*pw).pw_uid, (*pw).pw_gid))
    }
}

/// The gid of the group called `name`.
pub fn group_by_name(name: &str) -> Option<u32> {
    let name = CString::new(name).ok()?;
    // SAFETY: getgrnam takes a NUL-terminated string and returns null or a
    // pointer into static storage, read at once before any other lookup.
    unsafe {
        let gr = libc::getgrnam(name.as_ptr());
        (!gr.is_null()).then(|| (*gr).gr_gid)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn root_is_in_the_database() {
        assert_eq!(user_by_name("root"), Some((0, 0)));
        assert_eq!(user_by_id(0), Some((0, 0)));
        assert_eq!(group_by_name("root"), Some(0));
        assert_eq!(user_by_name("no-such-user-here"), None);
        assert_eq!(user_by_name("nul\0inside"), None);
    }
}
