//! Giving freed heap memory back to the system.
//!
//! Starting thousands of vassals allocates a lot for a short while (plans,
//! intents, events, spawn arguments); glibc keeps what is freed for later
//! allocations, so the emperor's resident size would stay at its peak for
//! the rest of its life. After such a burst the emperor asks glibc to
//! return its free pages.

/// Makes every thread allocate from one heap (glibc's `M_ARENA_MAX` = 1).
///
/// glibc gives each thread that allocates its own arena, and an arena keeps
/// what its thread freed; the emperor's work is on one thread, but its
/// store's I/O threads, the sources' thread and the runtime's helpers
/// each held an arena of their own. Call before any thread starts.
pub fn one_arena() {
    #[cfg(target_env = "gnu")]
    {
        // SAFETY: mallopt only sets an allocator parameter; no pointer.
        unsafe {
            libc::mallopt(libc::M_ARENA_MAX, 1);
        }
    }
}

/// Returns the heap's free memory to the system (glibc's `malloc_trim(0)`);
/// `true` when some was released. A no-op on other C libraries.
pub fn trim() -> bool {
    #[cfg(target_env = "gnu")]
    {
        // SAFETY: malloc_trim only walks the allocator's own free lists,
        // under the allocator's lock; it takes no pointer from us.
        unsafe { libc::malloc_trim(0) == 1 }
    }
    #[cfg(not(target_env = "gnu"))]
    {
        false
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn trimming_after_freeing_a_large_burst_keeps_the_heap_usable() {
        let burst: Vec<Vec<u8>> = (0..4096).map(|i| vec![i as u8; 1024]).collect();
        drop(burst);
        super::trim();
        let after: Vec<u8> = vec![7; 1 << 20];
        assert_eq!(after.iter().map(|&b| u64::from(b)).sum::<u64>(), 7 << 20);
    }
}
