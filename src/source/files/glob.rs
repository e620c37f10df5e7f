//! `glob://PATTERN`: every regular config file matching a shell pattern is a
//! vassal named by its path (e.g. `/opt/apps/*/uwsgi.ini`).

use super::{self as watch, Classified, Layout};
use crate::source::util::path::absolute;
use crate::source::{Built, Source, SourceContext, SourceError};
use notify::RecursiveMode;
use reconciler::{SourceId, VassalName};
use std::path::{Path, PathBuf};

/// A watched glob pattern.
#[derive(Debug, Clone)]
pub struct GlobSource {
    pattern: glob::Pattern,
    /// The longest directory prefix without wildcards: watched recursively.
    base: PathBuf,
    /// Matched files already reported as unusable (reported once each).
    refused: std::sync::Arc<std::sync::Mutex<std::collections::BTreeSet<PathBuf>>>,
}

impl GlobSource {
    /// Builds the source from the part after `glob://`.
    pub fn from_uri(rest: &str) -> Result<Box<dyn Source>, SourceError> {
        let invalid = |message: String| SourceError::Invalid { uri: format!("glob://{rest}"), message };
        if rest.is_empty() {
            return Err(invalid("no pattern given".into()));
        }
        let text = absolute(Path::new(rest)).to_string_lossy().into_owned();
        let pattern = glob::Pattern::new(&text).map_err(|e| invalid(format!("bad pattern: {e}")))?;
        let base: PathBuf = Path::new(&text)
            .components()
            .take_while(|c| !c.as_os_str().to_string_lossy().contains(['*', '?', '[']))
            .collect();
        let base =
            if base.as_os_str() == text.as_str() { base.parent().map(Path::to_owned).unwrap_or(base) } else { base };
        Ok(Box::new(Self { pattern, base, refused: Default::default() }))
    }

    fn name_of(&self, path: &Path) -> Option<VassalName> {
        path.to_str().and_then(|p| VassalName::parse_path(p).ok())
    }
}

impl Source for GlobSource {
    fn id(&self) -> SourceId {
        SourceId(format!("glob://{}", self.pattern.as_str()))
    }

    fn build(&self, ctx: SourceContext) -> Built<'_> {
        let layout = self.clone();
        Box::pin(async move { watch::task(layout, ctx) })
    }
}

impl Layout for GlobSource {
    fn roots(&self) -> Vec<(PathBuf, RecursiveMode)> {
        let recursive = self.pattern.as_str().len() > self.base.as_os_str().len() + 1
            && self.pattern.as_str()[self.base.as_os_str().len() + 1..].contains('/');
        vec![(self.base.clone(), if recursive { RecursiveMode::Recursive } else { RecursiveMode::NonRecursive })]
    }

    fn list(&self) -> std::io::Result<Vec<(VassalName, PathBuf)>> {
        if !self.base.is_dir() {
            return Err(std::io::Error::new(
                std::io::ErrorKind::NotFound,
                format!("{} does not exist", self.base.display()),
            ));
        }
        let paths = glob::glob(self.pattern.as_str()).map_err(std::io::Error::other)?;
        let mut refused = self.refused.lock().unwrap_or_else(|e| e.into_inner());
        let mut out = Vec::new();
        for path in paths.filter_map(Result::ok).filter(|p| p.metadata().is_ok_and(|m| m.is_file())) {
            match path.to_str().map(VassalName::parse_path) {
                Some(Ok(name)) => out.push((name, path)),
                Some(Err(e)) if refused.insert(path.clone()) => {
                    tracing::warn!(path = %path.display(), error = %e, "matched file is not a vassal config; skipped")
                }
                None if refused.insert(path.clone()) => {
                    tracing::warn!(path = %path.display(), "matched file name is not UTF-8; skipped")
                }
                _ => {}
            }
        }
        Ok(out)
    }

    fn classify(&self, path: &Path) -> Classified {
        if self.base.starts_with(path) {
            return Classified::Resetup;
        }
        if !path.starts_with(&self.base) {
            return Classified::Ignore;
        }
        if self.pattern.matches_path(path) {
            if let Some(name) = self.name_of(path) {
                return Classified::File(name, path.to_owned());
            }
        }
        match std::fs::symlink_metadata(path) {
            Ok(m) if m.file_type().is_file() => Classified::Ignore,
            _ => Classified::Rescan,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn base_is_the_literal_prefix() {
        let src = GlobSource::from_uri("/opt/apps/*/uwsgi.ini").unwrap();
        assert_eq!(src.id().0, "glob:///opt/apps/*/uwsgi.ini");
        let g = GlobSource {
            pattern: glob::Pattern::new("/opt/apps/*/uwsgi.ini").unwrap(),
            base: PathBuf::from("/opt/apps"),
            refused: Default::default(),
        };
        assert_eq!(g.roots(), vec![(PathBuf::from("/opt/apps"), RecursiveMode::Recursive)]);
        let name = VassalName::parse_path("/opt/apps/a/uwsgi.ini").unwrap();
        assert_eq!(
            g.classify(Path::new("/opt/apps/a/uwsgi.ini")),
            Classified::File(name, "/opt/apps/a/uwsgi.ini".into())
        );
        assert_eq!(g.classify(Path::new("/opt")), Classified::Resetup);
        assert_eq!(g.classify(Path::new("/etc/x.ini")), Classified::Ignore);
    }

    #[test]
    fn lists_matches() {
        let dir = tempfile::tempdir().unwrap();
        for app in ["a", "b"] {
            std::fs::create_dir(dir.path().join(app)).unwrap();
            std::fs::write(dir.path().join(app).join("uwsgi.ini"), "x").unwrap();
        }
        let uri = format!("{}/*/uwsgi.ini", dir.path().display());
        let src = GlobSource::from_uri(&uri).unwrap();
        assert_eq!(src.id().0, format!("glob://{uri}"));
    }
}
