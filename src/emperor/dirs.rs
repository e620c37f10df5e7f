//! The emperor's directories and the permissions it keeps on them: the
//! state dir is private (`0700`, every file in it `0600`), the log dir
//! `0750` with vassal logs `0640`.

use anyhow::Context;
use std::fs::{DirBuilder, Permissions};
use std::os::unix::fs::{DirBuilderExt, PermissionsExt};
use std::path::Path;

/// Mode of the state dir and of every directory in it.
pub const STATE_DIR_MODE: u32 = 0o700;
/// Mode of a log dir the emperor creates.
pub const LOG_DIR_MODE: u32 = 0o750;

/// Creates the state dir `0700`, or tightens an existing one that others
/// can reach (one info line), then takes group and other permissions off
/// every file and directory in it, `skip` (the log dir) aside.
pub fn prepare_state_dir(dir: &Path, skip: &Path) -> anyhow::Result<()> {
    match dir.metadata() {
        Ok(meta) if meta.permissions().mode() & 0o077 != 0 => {
            let was = meta.permissions().mode() & 0o777;
            set_mode(dir, STATE_DIR_MODE)?;
            tracing::info!(state_dir = %dir.display(), was = format!("{was:04o}"), "state dir made private (0700)");
        }
        Ok(_) => {}
        Err(_) => {
            DirBuilder::new().recursive(true).mode(STATE_DIR_MODE).create(dir).with_context(|| creating(dir))?;
            set_mode(dir, STATE_DIR_MODE)?;
        }
    }
    make_private(dir, skip)
}

/// Creates the log dir `0750` if it does not exist (an existing one keeps
/// the mode its owner gave it).
pub fn prepare_log_dir(dir: &Path) -> anyhow::Result<()> {
    if dir.is_dir() {
        return Ok(());
    }
    DirBuilder::new().recursive(true).mode(LOG_DIR_MODE).create(dir).with_context(|| creating(dir))?;
    set_mode(dir, LOG_DIR_MODE)
}

/// Takes group and other permissions off everything under `dir`, `skip` aside.
fn make_private(dir: &Path, skip: &Path) -> anyhow::Result<()> {
    for entry in std::fs::read_dir(dir).with_context(|| format!("reading {}", dir.display()))? {
        let path = entry?.path();
        if path == skip {
            continue;
        }
        let meta = std::fs::symlink_metadata(&path).with_context(|| format!("reading {}", path.display()))?;
        if meta.file_type().is_symlink() {
            continue;
        }
        let mode = meta.permissions().mode() & 0o777;
        if mode & 0o077 != 0 {
            set_mode(&path, mode & 0o700)?;
        }
        if meta.is_dir() {
            make_private(&path, skip)?;
        }
    }
    Ok(())
}

fn set_mode(path: &Path, mode: u32) -> anyhow::Result<()> {
    std::fs::set_permissions(path, Permissions::from_mode(mode))
        .with_context(|| format!("setting the mode of {} to {mode:04o}", path.display()))
}

fn creating(dir: &Path) -> String {
    format!("creating {}", dir.display())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn mode(path: &Path) -> u32 {
        path.metadata().unwrap().permissions().mode() & 0o777
    }

    #[test]
    fn a_wide_state_dir_is_tightened_and_its_files_made_private() {
        let root = tempfile::tempdir().unwrap();
        let state = root.path().join("state");
        let logs = state.join("logs");
        std::fs::create_dir_all(state.join("state.sled")).unwrap();
        std::fs::create_dir_all(&logs).unwrap();
        std::fs::write(state.join("state.sled/db"), "x").unwrap();
        std::fs::write(logs.join("a.log"), "x").unwrap();
        for (path, m) in [(&state, 0o755), (&state.join("state.sled"), 0o755), (&state.join("state.sled/db"), 0o644)] {
            set_mode(path, m).unwrap();
        }
        set_mode(&logs.join("a.log"), 0o640).unwrap();
        prepare_state_dir(&state, &logs).unwrap();
        assert_eq!(mode(&state), 0o700);
        assert_eq!(mode(&state.join("state.sled")), 0o700);
        assert_eq!(mode(&state.join("state.sled/db")), 0o600);
        assert_eq!(mode(&logs.join("a.log")), 0o640, "the log dir keeps its own modes");
    }

    #[test]
    fn new_dirs_get_their_modes() {
        let root = tempfile::tempdir().unwrap();
        let state = root.path().join("a/state");
        prepare_state_dir(&state, &state.join("logs")).unwrap();
        prepare_log_dir(&state.join("logs")).unwrap();
        assert_eq!(mode(&state), 0o700);
        assert_eq!(mode(&state.join("logs")), 0o750);
    }
}
