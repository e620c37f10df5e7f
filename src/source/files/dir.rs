//! `dir://PATH`: every config file directly inside one directory is a vassal
//! named by its file name.

use super::{self as watch, Classified, Layout};
use crate::source::util::path::absolute;
use crate::source::{Built, Resource, Source, SourceContext, SourceError};
use notify::RecursiveMode;
use reconciler::{SourceId, VassalName};
use std::path::{Path, PathBuf};

/// A watched directory of vassal configs.
#[derive(Debug, Clone)]
pub struct DirSource {
    /// The directory, absolute but not resolved: it may be a symlink that is
    /// swapped to a new checkout.
    path: PathBuf,
}

impl DirSource {
    /// Builds the source from the part after `dir://`.
    pub fn from_uri(rest: &str) -> Result<Box<dyn Source>, SourceError> {
        if rest.is_empty() {
            return Err(SourceError::Invalid { uri: format!("dir://{rest}"), message: "no directory given".into() });
        }
        Ok(Box::new(Self { path: absolute(Path::new(rest)) }))
    }
}

impl Source for DirSource {
    fn id(&self) -> SourceId {
        SourceId(format!("dir://{}", self.path.display()))
    }

    fn resources(&self) -> Vec<Resource> {
        vec![Resource::Path(self.path.canonicalize().unwrap_or_else(|_| self.path.clone()))]
    }

    fn build(&self, ctx: SourceContext) -> Built<'_> {
        let layout = self.clone();
        Box::pin(async move { watch::task(layout, ctx) })
    }
}

impl Layout for DirSource {
    fn roots(&self) -> Vec<(PathBuf, RecursiveMode)> {
        vec![(self.path.clone(), RecursiveMode::NonRecursive)]
    }

    fn list(&self) -> std::io::Result<Vec<(VassalName, PathBuf)>> {
        let mut out = Vec::new();
        for entry in std::fs::read_dir(&self.path)? {
            let entry = entry?;
            let Some(file_name) = entry.file_name().to_str().map(str::to_owned) else { continue };
            if let Ok(name) = VassalName::parse(&file_name) {
                let path = entry.path();
                // The file type comes with the listing; only links need a stat.
                let is_file = match entry.file_type() {
                    Ok(t) if t.is_symlink() => path.metadata().is_ok_and(|m| m.is_file()),
                    Ok(t) => t.is_file(),
                    Err(_) => false,
                };
                if is_file {
                    out.push((name, path));
                }
            }
        }
        Ok(out)
    }

    fn classify(&self, path: &Path) -> Classified {
        if self.path.starts_with(path) {
            return Classified::Resetup;
        }
        if path.parent() != Some(self.path.as_path()) {
            return Classified::Ignore;
        }
        let name = path.file_name().and_then(|n| n.to_str()).and_then(|n| VassalName::parse(n).ok());
        match name {
            Some(name) => Classified::File(name, path.to_owned()),
            None if std::fs::symlink_metadata(path).is_ok_and(|m| m.file_type().is_file()) => Classified::Ignore,
            None => Classified::Rescan,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn classifies_paths() {
        let src = DirSource { path: PathBuf::from("/srv/vassals") };
        let name = VassalName::parse("a.ini").unwrap();
        assert_eq!(src.classify(Path::new("/srv/vassals/a.ini")), Classified::File(name, "/srv/vassals/a.ini".into()));
        assert_eq!(src.classify(Path::new("/srv/vassals")), Classified::Resetup);
        assert_eq!(src.classify(Path::new("/srv")), Classified::Resetup);
        assert_eq!(src.classify(Path::new("/srv/other")), Classified::Ignore);
        assert_eq!(src.classify(Path::new("/srv/vassals/sub/a.ini")), Classified::Ignore);
        assert_eq!(src.classify(Path::new("/srv/vassals/..data")), Classified::Rescan);
    }

    #[test]
    fn lists_only_config_files() {
        let dir = tempfile::tempdir().unwrap();
        for f in ["a.ini", "b.yaml", "notes.txt", ".ini"] {
            std::fs::write(dir.path().join(f), "x").unwrap();
        }
        std::fs::create_dir(dir.path().join("d.ini")).unwrap();
        let src = DirSource { path: dir.path().to_owned() };
        let mut names: Vec<String> = src.list().unwrap().into_iter().map(|(n, _)| n.to_string()).collect();
        names.sort();
        assert_eq!(names, ["a.ini", "b.yaml"]);
    }
}
