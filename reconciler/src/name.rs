//! Vassal names: the key of everything the emperor manages.

use serde::{Deserialize, Serialize};
use std::fmt;
use std::sync::RwLock;

/// Longest name accepted, in bytes (the upstream limit).
pub const MAX_NAME_LEN: usize = 255;

/// Config file extensions a vassal name may end in (`.js` is JSON, as upstream).
pub const EXTENSIONS: &[&str] = &[".ini", ".xml", ".yml", ".yaml", ".json", ".js", ".toml"];

/// Extensions added at start (`--extra-extension`), accepted everywhere a
/// name is validated: it is a process-wide setting, fixed before any source
/// runs, so every source and the state store agree on what a name is.
static EXTRA: RwLock<Vec<&'static str>> = RwLock::new(Vec::new());

/// Why an extra extension is refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ExtensionError {
    /// Empty, or holding a path separator, a second dot or NUL.
    #[error("extension {0:?} is not a file extension such as .conf")]
    Invalid(String),
    /// One of [`EXTENSIONS`] already.
    #[error("extension {0:?} is already a config extension")]
    Builtin(String),
}

/// Accepts names ending in `ext` (`.conf` or `conf`) from now on; such
/// vassals are handed to the vassal binary with `--config`. Idempotent.
pub fn add_extension(ext: &str) -> Result<&'static str, ExtensionError> {
    let dotted = if ext.starts_with('.') { ext.to_owned() } else { format!(".{ext}") };
    let bare = &dotted[1..];
    if bare.is_empty() || bare.contains(['/', '\\', '.', '\0']) || dotted.len() > 32 {
        return Err(ExtensionError::Invalid(ext.to_owned()));
    }
    if EXTENSIONS.contains(&dotted.as_str()) {
        return Err(ExtensionError::Builtin(ext.to_owned()));
    }
    let mut extra = EXTRA.write().unwrap_or_else(|e| e.into_inner());
    if let Some(known) = extra.iter().find(|e| **e == dotted) {
        return Ok(known);
    }
    // Leaked once per distinct extension: names borrow it for the whole run.
    let leaked: &'static str = Box::leak(dotted.into_boxed_str());
    extra.push(leaked);
    Ok(leaked)
}

/// Whether `ext` (with its dot) was added with [`add_extension`].
pub fn is_extra_extension(ext: &str) -> bool {
    EXTRA.read().unwrap_or_else(|e| e.into_inner()).contains(&ext)
}

/// Why a text was refused as a vassal name.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum NameError {
    /// The name is empty.
    #[error("vassal name is empty")]
    Empty,
    /// The name is longer than the limit.
    #[error("vassal name {0:?} is longer than {MAX_NAME_LEN} bytes")]
    TooLong(String),
    /// The name holds a path separator, a `..` or a NUL byte.
    #[error("vassal name {0:?} contains a path separator, '..' or a NUL byte")]
    Unsafe(String),
    /// The name does not end in a known config extension.
    #[error("vassal name {0:?} does not end in one of .ini .xml .yml .yaml .json .js .toml (or an --extra-extension)")]
    BadExtension(String),
}

/// A validated vassal name.
///
/// Names that arrive over the network are untrusted, so [`VassalName::parse`]
/// refuses separators, `..`, NUL and overlong names. Names of glob-matched
/// files are local paths and go through [`VassalName::parse_path`].
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
#[serde(transparent)]
pub struct VassalName(String);

/// A stored or received name is validated like any other: garbage (a
/// damaged record, say) is refused rather than trusted.
impl<'de> Deserialize<'de> for VassalName {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let text = String::deserialize(deserializer)?;
        Self::parse_path(&text).map_err(serde::de::Error::custom)
    }
}

impl VassalName {
    /// Validates an untrusted bare name such as `app.ini`.
    pub fn parse(text: &str) -> Result<Self, NameError> {
        if text.contains('/') || text.contains('\\') || text == "." || text.starts_with("..") {
            return Err(NameError::Unsafe(text.to_owned()));
        }
        Self::parse_path(text)
    }

    /// Validates a name that is a local path (glob sources); `/` is allowed
    /// but `..` components and NUL are not.
    pub fn parse_path(text: &str) -> Result<Self, NameError> {
        if text.is_empty() {
            return Err(NameError::Empty);
        }
        if text.len() > MAX_NAME_LEN && !text.contains('/') || text.len() > 4096 {
            return Err(NameError::TooLong(text.chars().take(64).collect()));
        }
        if text.contains('\0') || text.split('/').any(|part| part == "..") {
            return Err(NameError::Unsafe(text.to_owned()));
        }
        if extension_of(text).is_none() {
            return Err(NameError::BadExtension(text.to_owned()));
        }
        Ok(Self(text.to_owned()))
    }

    /// The name as text.
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The config extension the name ends in, with its dot (`.ini`); empty
    /// for a name read back from an earlier run whose extra extension is no
    /// longer given.
    pub fn extension(&self) -> &'static str {
        extension_of(&self.0).unwrap_or("")
    }
}

/// The known extension `text` ends in, if any: a built-in one first, then
/// the extra ones.
pub fn extension_of(text: &str) -> Option<&'static str> {
    let ends = |ext: &&str| text.len() > ext.len() && text.ends_with(*ext);
    EXTENSIONS
        .iter()
        .copied()
        .find(ends)
        .or_else(|| EXTRA.read().unwrap_or_else(|e| e.into_inner()).iter().copied().find(ends))
}

impl fmt::Display for VassalName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl AsRef<str> for VassalName {
    fn as_ref(&self) -> &str {
        &self.0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accepts_plain_names() {
        for ok in ["app.ini", "a.xml", "b.yml", "c.yaml", "d.json", "e.toml", "f.js", "my app.ini", "x..y.ini"] {
            assert!(VassalName::parse(ok).is_ok(), "{ok}");
        }
    }

    #[test]
    fn refuses_hostile_names() {
        assert_eq!(VassalName::parse(""), Err(NameError::Empty));
        assert!(matches!(VassalName::parse("../evil.ini"), Err(NameError::Unsafe(_))));
        assert!(matches!(VassalName::parse("a/b.ini"), Err(NameError::Unsafe(_))));
        assert!(matches!(VassalName::parse("..ini"), Err(NameError::Unsafe(_))));
        assert!(matches!(VassalName::parse("a\0.ini"), Err(NameError::Unsafe(_))));
        assert!(matches!(VassalName::parse("app.sh"), Err(NameError::BadExtension(_))));
        assert!(matches!(VassalName::parse(".ini"), Err(NameError::BadExtension(_))));
        let long = format!("{}.ini", "a".repeat(300));
        assert!(matches!(VassalName::parse(&long), Err(NameError::TooLong(_))));
    }

    #[test]
    fn paths_allow_separators_but_not_parent_components() {
        assert!(VassalName::parse_path("/opt/apps/a/uwsgi.ini").is_ok());
        assert!(VassalName::parse_path("/opt/../etc/x.ini").is_err());
        assert_eq!(VassalName::parse_path("/x/a.yaml").unwrap().extension(), ".yaml");
    }

    #[test]
    fn extra_extensions_are_accepted_once_added() {
        assert!(VassalName::parse("app.tyrantconf").is_err());
        assert_eq!(add_extension("tyrantconf"), Ok(".tyrantconf"));
        assert_eq!(add_extension(".tyrantconf"), Ok(".tyrantconf"), "idempotent");
        let name = VassalName::parse("app.tyrantconf").unwrap();
        assert_eq!(name.extension(), ".tyrantconf");
        assert!(is_extra_extension(".tyrantconf") && !is_extra_extension(".ini"));
        assert_eq!(VassalName::parse("x.json").unwrap().extension(), ".json", "not .js");
        assert!(matches!(add_extension(".ini"), Err(ExtensionError::Builtin(_))));
        for bad in ["", ".", "a/b", "a.b", "x\0"] {
            assert!(matches!(add_extension(bad), Err(ExtensionError::Invalid(_))), "{bad:?}");
        }
    }
}
