//! Signal names and numbers, as written in configs (the name table is
//! [`crate::sys::signal`]'s).

use crate::sys::signal;

/// Parses a signal name or number ("SIGTERM", "TERM", "term", "15", "HUP",
/// "SIGUSR1"...) into its libc number, so configs can name signals portably.
/// Returns None for unknown names and out-of-range numbers.
pub fn parse_signal(text: &str) -> Option<i32> {
    let text = text.trim();
    if !text.is_empty() && text.bytes().all(|b| b.is_ascii_digit()) {
        return text.parse().ok().filter(|n| (1..=signal::max()).contains(n));
    }
    let upper = text.to_ascii_uppercase();
    let name = upper.strip_prefix("SIG").unwrap_or(&upper);
    signal::by_name(name)
}

#[cfg(test)]
mod tests {
    use super::parse_signal;

    #[test]
    fn signals_by_name_and_number() {
        for text in ["SIGTERM", "TERM", "term", "15", " sigterm "] {
            assert_eq!(parse_signal(text), Some(libc::SIGTERM), "{text}");
        }
        assert_eq!(parse_signal("SIGHUP"), Some(libc::SIGHUP));
        assert_eq!(parse_signal("HUP"), Some(libc::SIGHUP));
        assert_eq!(parse_signal("SIGUSR1"), Some(libc::SIGUSR1));
        assert_eq!(parse_signal("usr2"), Some(libc::SIGUSR2));
        assert_eq!(parse_signal("SIGINT"), Some(libc::SIGINT));
        assert_eq!(parse_signal("QUIT"), Some(libc::SIGQUIT));
        assert_eq!(parse_signal("SIGKILL"), Some(libc::SIGKILL));
        assert_eq!(parse_signal("SIGWINCH"), Some(libc::SIGWINCH));
        assert_eq!(parse_signal("SIGCONT"), Some(libc::SIGCONT));
        assert_eq!(parse_signal("SIGSTOP"), Some(libc::SIGSTOP));
        assert_eq!(parse_signal("SIGALRM"), Some(libc::SIGALRM));
        assert_eq!(parse_signal("9"), Some(9));
    }

    #[test]
    fn bad_signals_are_rejected() {
        for text in ["", "SIG", "SIGFOO", "0", "-1", "1000", "99999999999", "TERM2", "+15"] {
            assert_eq!(parse_signal(text), None, "{text}");
        }
    }
}
