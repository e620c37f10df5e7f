//! Resolving the `uid`/`gid` of a native vassal to numeric ids.

use crate::sys::user as db;

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
    let (mut u, mut g) = db::ids();
    if let Some(user) = uid {
        (u, g) = lookup_user(user)?;
    }
    if let Some(group) = gid {
        g = lookup_group(group)?;
    }
    Ok(Some((u, g)))
}

/// A user by name, or by number (a number without an entry is its own group).
fn lookup_user(user: &str) -> Result<(u32, u32), UserError> {
    match user.parse::<u32>() {
        Ok(n) => Ok(db::user_by_id(n).unwrap_or((n, n))),
        Err(_) => db::user_by_name(user).ok_or_else(|| UserError::NoUser(user.to_owned())),
    }
}

/// A group by name or number.
fn lookup_group(group: &str) -> Result<u32, UserError> {
    match group.parse::<u32>() {
        Ok(n) => Ok(n),
        Err(_) => db::group_by_name(group).ok_or_else(|| UserError::NoGroup(group.to_owned())),
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
