//! Whom a vassal runs as.
//!
//! Without tyrant mode a vassal runs as the emperor, or as the `uid`/`gid`
//! keys of its native config. In tyrant mode (`--tyrant`, upstream's
//! `--emperor-tyrant`) it runs as the owner its source gives: the owner of
//! its config file (dir://, glob://) or the uid and gid fields of its row,
//! document, message, znode or entry. A vassal without an owner, or whose
//! owner is uid 0 or gid 0, is refused: whoever can write a config must not
//! gain an identity they do not already have. For the same reason a native
//! config's own `uid`/`gid` keys may only name its owner.

use super::launch::Launch;
use super::user::{self, UserError};
use super::Supervisor;
use crate::sys::spawn::Credentials;
use reconciler::{SourceId, VassalName, VassalSpec};

/// Why a vassal may not run as the identity it asks for.
#[derive(Debug, thiserror::Error)]
pub enum IdentityError {
    /// Tyrant mode, and the source gives no owner.
    #[error("{vassal}: tyrant mode: {source_id} gives no owner for it (a config file's owner, or uid and gid fields)")]
    NoOwner {
        /// The vassal.
        vassal: VassalName,
        /// Its source.
        source_id: SourceId,
    },
    /// Tyrant mode, and the owner is root (uid 0 or gid 0).
    #[error("{vassal}: tyrant mode never runs a vassal as uid 0 or gid 0 (its owner is {uid}:{gid})")]
    Root {
        /// The vassal.
        vassal: VassalName,
        /// The owner's uid.
        uid: u32,
        /// The owner's gid.
        gid: u32,
    },
    /// Tyrant mode, and the native config's `uid`/`gid` keys name someone else.
    #[error("{vassal}: tyrant mode: its uid/gid keys ask for {asked_uid}:{asked_gid}, but its owner is {uid}:{gid}")]
    NotTheOwner {
        /// The vassal.
        vassal: VassalName,
        /// What the keys resolve to.
        asked_uid: u32,
        /// What the keys resolve to.
        asked_gid: u32,
        /// The owner's uid.
        uid: u32,
        /// The owner's gid.
        gid: u32,
    },
    /// The native config's `uid`/`gid` keys name no user or group.
    #[error("{vassal}: {source}")]
    Unknown {
        /// The vassal.
        vassal: VassalName,
        /// The lookup failure.
        #[source]
        source: UserError,
    },
}

/// The uid and gid `spec` (run as `launch`) gets: `None` to run as the
/// emperor. Pure but for the user database lookups of native keys.
pub(super) fn identity(spec: &VassalSpec, launch: &Launch, tyrant: bool) -> Result<Option<(u32, u32)>, IdentityError> {
    let keys = match launch {
        Launch::Native(native) => user::resolve(native.uid.as_deref(), native.gid.as_deref())
            .map_err(|source| IdentityError::Unknown { vassal: spec.name.clone(), source })?,
        Launch::Uwsgi { .. } => None,
    };
    if !tyrant {
        return Ok(keys);
    }
    let vassal = || spec.name.clone();
    let (uid, gid) =
        spec.owner.ok_or_else(|| IdentityError::NoOwner { vassal: vassal(), source_id: spec.source.clone() })?;
    if uid == 0 || gid == 0 {
        return Err(IdentityError::Root { vassal: vassal(), uid, gid });
    }
    match keys {
        Some((asked_uid, asked_gid)) if (asked_uid, asked_gid) != (uid, gid) => {
            Err(IdentityError::NotTheOwner { vassal: vassal(), asked_uid, asked_gid, uid, gid })
        }
        _ => Ok(Some((uid, gid))),
    }
}

/// What a process running as `uid`/`gid` is started with: the groups
/// `initgroups` gives the user (none when the uid has no passwd entry).
/// Only a privileged emperor can set groups; otherwise its own stay.
pub(super) fn credentials((uid, gid): (u32, u32)) -> Credentials {
    let groups = crate::sys::user::is_root().then(|| crate::sys::user::groups_of(uid, gid).unwrap_or_default());
    Credentials { uid, gid, groups }
}

impl Supervisor {
    /// Without tyrant mode, says once per source that the owners it gives
    /// are not used.
    pub(super) fn note_unused_owner(&mut self, spec: &VassalSpec) {
        if self.settings.tyrant || spec.owner.is_none() || !self.unused_owners.insert(spec.source.clone()) {
            return;
        }
        tracing::info!(source = %spec.source, vassal = %spec.name,
            "uid/gid given by this source are only honoured in tyrant mode (--tyrant); ignoring them (reported once per source)");
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::vassal::{NativeSpec, ReloadMode};
    use reconciler::ConfigRef;

    fn spec(owner: Option<(u32, u32)>) -> VassalSpec {
        VassalSpec {
            name: VassalName::parse("app.ini").unwrap(),
            source: SourceId("pg://x".into()),
            config: ConfigRef::Inline("[uwsgi]\n".into()),
            version: "1".into(),
            owner,
            socket: None,
        }
    }

    fn native(uid: Option<&str>, gid: Option<&str>) -> Launch {
        Launch::Native(Box::new(NativeSpec {
            singleton: false,
            exec: vec!["true".into()],
            chdir: None,
            env: Vec::new(),
            uid: uid.map(Into::into),
            gid: gid.map(Into::into),
            stop_signal: libc::SIGTERM,
            stop_timeout: None,
            reload: ReloadMode::Restart,
            sockets: Vec::new(),
            readiness: Default::default(),
        }))
    }

    const UWSGI: Launch = Launch::Uwsgi { flag: "--ini", inline: None };

    #[test]
    fn without_tyrant_owners_are_ignored_and_native_keys_apply() {
        assert_eq!(identity(&spec(Some((1000, 100))), &UWSGI, false).unwrap(), None);
        assert_eq!(identity(&spec(None), &native(Some("12345"), Some("54321")), false).unwrap(), Some((12345, 54321)));
        assert_eq!(identity(&spec(None), &native(Some("root"), None), false).unwrap(), Some((0, 0)));
    }

    #[test]
    fn tyrant_runs_as_the_owner_and_refuses_the_rest() {
        assert_eq!(identity(&spec(Some((1000, 100))), &UWSGI, true).unwrap(), Some((1000, 100)));
        let none = identity(&spec(None), &UWSGI, true).unwrap_err().to_string();
        assert!(none.contains("app.ini") && none.contains("pg://x") && none.contains("no owner"), "{none}");
        for root in [(0, 100), (1000, 0), (0, 0)] {
            let err = identity(&spec(Some(root)), &UWSGI, true).unwrap_err();
            assert!(matches!(err, IdentityError::Root { .. }), "{err}");
            assert!(err.to_string().contains("uid 0 or gid 0"), "{err}");
        }
        let same = native(Some("1000"), Some("100"));
        assert_eq!(identity(&spec(Some((1000, 100))), &same, true).unwrap(), Some((1000, 100)));
        let other = identity(&spec(Some((1000, 100))), &native(Some("root"), None), true).unwrap_err();
        assert!(matches!(other, IdentityError::NotTheOwner { asked_uid: 0, .. }), "{other}");
    }
}
