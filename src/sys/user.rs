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

/// The supplementary groups `initgroups(3)` would give the user numbered
/// `uid` with primary group `gid` (`gid` included), or `None` when `uid` has
/// no passwd entry. Uses the reentrant lookups: the emperor has threads.
pub fn groups_of(uid: u32, gid: u32) -> Option<Vec<u32>> {
    let name = user_name(uid)?;
    let mut groups: Vec<libc::gid_t> = vec![0; 64];
    loop {
        let mut count = groups.len() as libc::c_int;
        // SAFETY: `name` is NUL-terminated; `groups` has room for `count`
        // entries, and getgrouplist writes at most that many (it sets
        // `count` to the number needed when they do not fit).
        let rc = unsafe { libc::getgrouplist(name.as_ptr(), gid, groups.as_mut_ptr(), &mut count) };
        let count = usize::try_from(count).unwrap_or(0);
        if rc >= 0 {
            groups.truncate(count);
            return Some(groups);
        }
        // Too small: `count` says how many there are (grow anyway, in case it does not).
        groups.resize(count.max(groups.len() * 2), 0);
    }
}

/// The login name of the user numbered `uid`, if it has a passwd entry.
fn user_name(uid: u32) -> Option<CString> {
    let mut buf: Vec<libc::c_char> = vec![0; 1024];
    loop {
        // SAFETY: a zeroed passwd is a valid value for getpwuid_r to fill in.
        let mut pw: libc::passwd = unsafe { std::mem::zeroed() };
        let mut found: *mut libc::passwd = std::ptr::null_mut();
        // SAFETY: every pointer refers to live storage of the sizes given;
        // the strings getpwuid_r stores point into `buf`.
        let rc = unsafe { libc::getpwuid_r(uid, &mut pw, buf.as_mut_ptr(), buf.len(), &mut found) };
        if rc == libc::ERANGE && buf.len() < 1 << 20 {
            buf.resize(buf.len() * 4, 0);
            continue;
        }
        if rc != 0 || found.is_null() || pw.pw_name.is_null() {
            return None;
        }
        // SAFETY: pw_name is a NUL-terminated string inside `buf`, alive here.
        return Some(unsafe { std::ffi::CStr::from_ptr(pw.pw_name) }.to_owned());
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

    #[test]
    fn group_lists_come_from_the_group_database() {
        let root = groups_of(0, 0).expect("root has a passwd entry");
        assert!(root.contains(&0), "the primary group is in the list: {root:?}");
        // A uid no passwd entry names gets no list at all.
        assert_eq!(groups_of(3_999_999_999, 5), None);
    }
}
