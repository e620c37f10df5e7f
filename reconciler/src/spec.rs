//! What a source says it wants: one [`VassalSpec`] per vassal.

use crate::VassalName;
use serde::{Deserialize, Serialize};
use std::fmt;
use std::path::PathBuf;

/// Identifies one config source (its URI as given on the command line).
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(transparent)]
pub struct SourceId(pub String);

impl fmt::Display for SourceId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// Where a vassal's config lives.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum ConfigRef {
    /// A file on disk; the vassal reads it itself.
    File(PathBuf),
    /// Config text carried by the source (a database row, a message body).
    Inline(String),
}

/// The desired state of one vassal, as a source reports it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct VassalSpec {
    /// The vassal's name.
    pub name: VassalName,
    /// The source that wants it.
    pub source: SourceId,
    /// Where its config is.
    pub config: ConfigRef,
    /// An opaque version: any change means "reload".
    pub version: String,
    /// uid/gid to run as (tyrant mode), when the source gives them.
    pub owner: Option<(u32, u32)>,
    /// An on-demand socket the source asked for.
    pub socket: Option<String>,
}
