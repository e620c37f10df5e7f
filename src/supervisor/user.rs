//! Resolving the `uid`/`gid` of a native vassal to numeric ids.

use std::ffi::CString;

/// Why a user or group cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum UserError {
    /// No such user.
    #[error("unknown user {0:?}")]
    NoUser(String),
    /// No such group.
    #[error("unknown group {0:?}")]
    NoGroup(String),
}

/// Resolves `uid`/`gid` (names or numbers). A user without a group runs with
/// the user's primary group; a group alone keeps the emperor's uid.
pub fn resolve(uid: Option<&str>, gid: Option<&str>) -> Result<Option<(u32, u32)>, UserError> {
    if uid.is_none() && gid.is_none() {
        return Ok(None);
    }
    // SAFETY: getuid/getgid cannot fail.
    let (mut u, mut g) = unsafe { (libc::getuid(), libc::getgid()) };
    if let Some(user) = uid {
        let (pu, pg) = lookup_user(user)?;
        u = pu;
        g = pg;
    }
    if let Some(group) = gid {
        g = lookup_group(group)?;
    }
    Ok(Some((u, g)))
}

fn lookup_user(user: &str) -> Result<(u32, u32), UserError> {
    let c = CString::new(user).map_err(|_| UserError::NoUser(user.to_owned()))?;
    // SAFETY: getpwnam/getpwuid return a pointer into static storage or null; read at once.
    unsafe {
        let pw = match user.parse::<u32>() {
            Ok(n) => libc::getpwuid(n),
            Err(_) => libc::getpwnam(c.as_ptr()),
        };
        if pw.is_null() {
            return match user.parse::<u32>() {
                Ok(n) => Ok((n, n)),
                Err(_) => Err(UserError::NoUser(user.to_owned())),
            };
        }
        Ok(((*pw).pw_uid, (*pw).pw_gid))
    }
}

fn lookup_group(group: &str) -> Result<u32, UserError> {
    if let Ok(n) = group.parse::<u32>() {
        return Ok(n);
    }
    let c = CString::new(group).map_err(|_| UserError::NoGroup(group.to_owned()))?;
    // SAFETY: as above.
    unsafe {
        let gr = libc::getgrnam(c.as_ptr());
        if gr.is_null() {
            return Err(UserError::NoGroup(group.to_owned()));
        }
        Ok((*gr).gr_gid)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn resolves_names_and_numbers() {
        assert_eq!(resolve(None, None).unwrap(), None);
        assert_eq!(resolve(Some("root"), None).unwrap(), Some((0, 0)));
        assert_eq!(resolve(Some("12345"), Some("54321")).unwrap(), Some((12345, 54321)));
        assert!(resolve(Some("no-such-user-here"), None).is_err());
        assert!(resolve(None, Some("no-such-group-here")).is_err());
    }
}
