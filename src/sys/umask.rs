//! The emperor's own file-creation mask, and the one its vassals get.
//!
//! The emperor creates its files with umask `0077` (its state is private);
//! the mask it was started with is kept, as the default for its vassals.

use std::sync::OnceLock;

/// The mask the emperor keeps for its own files.
pub const PRIVATE: u32 = 0o077;

static STARTED_WITH: OnceLock<u32> = OnceLock::new();

/// Sets the process umask to [`PRIVATE`], first remembering the one the
/// process was started with (the first call's). Idempotent.
pub fn make_private() {
    let previous = set(PRIVATE);
    STARTED_WITH.get_or_init(|| previous);
}

/// The umask the process had before [`make_private`] (the current one if it
/// was never called).
pub fn started_with() -> u32 {
    STARTED_WITH.get().copied().unwrap_or_else(current)
}

/// The current umask, read from `/proc/self/status` (reading it with
/// `umask(2)` would change it for a moment under other threads).
fn current() -> u32 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    status
        .lines()
        .find_map(|l| l.strip_prefix("Umask:"))
        .and_then(|v| u32::from_str_radix(v.trim(), 8).ok())
        .unwrap_or(0o022)
}

/// Sets the process umask; returns the previous one.
pub(super) fn set(mask: u32) -> u32 {
    // SAFETY: umask cannot fail and touches no memory.
    unsafe { libc::umask(mask as libc::mode_t) as u32 }
}

#[cfg(test)]
mod tests {
    #[test]
    fn the_current_mask_is_readable() {
        // The test harness's own umask, whatever it is, is a valid mask.
        assert!(super::current() <= 0o777);
    }
}
