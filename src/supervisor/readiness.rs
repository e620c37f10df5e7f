//! Whether a vassal's process is ready to do its work, one notion for both
//! run modes: a uWSGI-style vassal is ready once it sends byte 1 (ready) or
//! 5 (accepting) on its control channel; a native vassal with `notify =
//! true` once it sends `READY=1` to its `NOTIFY_SOCKET`; any other native
//! vassal as soon as it is spawned. `ctl restart --rolling` and `--wait`
//! wait for it; `ctl status` shows it, with the vassal's own `STATUS=` text.

use std::time::SystemTime;

/// A process's readiness and status text; a pure state machine the
/// supervisor feeds with what the process says.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(super) struct Readiness {
    /// Since when it is ready; `None` while it is starting (or reloading).
    since: Option<SystemTime>,
    /// The last `STATUS=` it sent.
    status: Option<String>,
}

impl Readiness {
    /// A process that is ready from the start (`now`).
    pub(super) fn ready_at(now: SystemTime) -> Self {
        Self { since: Some(now), status: None }
    }

    /// A process that must say when it is ready.
    pub(super) fn starting() -> Self {
        Self::default()
    }

    /// Since when it is ready, if it is.
    pub(super) fn since(&self) -> Option<SystemTime> {
        self.since
    }

    /// Its last status text.
    pub(super) fn status(&self) -> Option<&str> {
        self.status.as_deref()
    }

    /// It says it is ready; `true` if that is news.
    pub(super) fn ready(&mut self, now: SystemTime) -> bool {
        let news = self.since.is_none();
        self.since.get_or_insert(now);
        news
    }

    /// It began reloading: not ready until it says so again; `true` if
    /// that is news.
    pub(super) fn reloading(&mut self) -> bool {
        self.since.take().is_some()
    }

    /// It set its status text; `true` if the text changed.
    pub(super) fn set_status(&mut self, text: &str) -> bool {
        if self.status.as_deref() == Some(text) {
            return false;
        }
        self.status = Some(text.to_owned());
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn ready_once_until_a_reload() {
        let t0 = SystemTime::UNIX_EPOCH + Duration::from_secs(100);
        let mut r = Readiness::starting();
        assert_eq!(r.since(), None);
        assert!(r.ready(t0));
        assert!(!r.ready(t0 + Duration::from_secs(1)), "a second READY=1 is no news");
        assert_eq!(r.since(), Some(t0));
        assert!(r.reloading());
        assert!(!r.reloading());
        assert_eq!(r.since(), None);
        assert!(r.ready(t0 + Duration::from_secs(5)));
        assert_eq!(r.since(), Some(t0 + Duration::from_secs(5)));
        assert_eq!(Readiness::ready_at(t0).since(), Some(t0));
    }

    #[test]
    fn status_text_is_news_only_when_it_changes() {
        let mut r = Readiness::starting();
        assert!(r.set_status("loading"));
        assert!(!r.set_status("loading"));
        assert!(r.set_status("serving"));
        assert_eq!(r.status(), Some("serving"));
    }
}
