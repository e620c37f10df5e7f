//! Crash injection for the recovery tests: with the `failpoints` feature,
//! `EMPEROR_FAILPOINTS=name[,name…]` makes the emperor abort at those
//! points, as if it had been killed there. Without the feature every
//! failpoint compiles to nothing.

/// Aborts the process if failpoint `name` is armed.
#[cfg(feature = "failpoints")]
pub fn hit(name: &str) {
    static ARMED: std::sync::OnceLock<Vec<String>> = std::sync::OnceLock::new();
    let armed = ARMED.get_or_init(|| {
        std::env::var("EMPEROR_FAILPOINTS").map(|v| v.split(',').map(str::to_owned).collect()).unwrap_or_default()
    });
    if armed.iter().any(|a| a == name) {
        eprintln!("emperor: failpoint {name} hit; aborting");
        std::process::abort();
    }
}

/// Aborts the process if failpoint `name` is armed (never, in this build).
#[cfg(not(feature = "failpoints"))]
#[inline(always)]
pub fn hit(_name: &str) {}
