//! `--wait`: a command's outcome is awaited on the table the main loop
//! publishes after every round, never by polling.

use super::table::{State, Table};
use super::Action;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::watch;

/// Whether `name` shows the outcome of `action` in `table`; `before` is its
/// generation when the command was sent.
fn reached(table: &Table, name: &str, action: Action, before: Option<u64>) -> bool {
    let view = table.vassals.get(name);
    match action {
        Action::Stop => view.is_none_or(|v| v.state == State::Stopped),
        Action::Start => view.is_some_and(|v| v.state.is_up()),
        Action::Restart => view.is_some_and(|v| v.state.is_up() && v.generation != before),
        Action::Reload => true,
    }
}

/// Waits until `name` shows the outcome of `action`, at most `timeout`;
/// returns whether it did.
pub(crate) async fn until_done(
    mut table: watch::Receiver<Arc<Table>>,
    name: &str,
    action: Action,
    before: Option<u64>,
    timeout: Duration,
) -> bool {
    let done = table.wait_for(|t| reached(t, name, action, before));
    matches!(tokio::time::timeout(timeout, done).await, Ok(Ok(_)))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::control::VassalView;

    fn table(state: State, generation: u64) -> Arc<Table> {
        let view = VassalView {
            name: "a.ini".into(),
            source: "dir:///v".into(),
            version: "1".into(),
            state,
            reason: None,
            pid: None,
            generation: Some(generation),
            since: None,
            restart_at: None,
            restarts: 0,
            last_exit: None,
            ready: state == State::Running,
            since_ready: None,
            status_text: None,
        };
        Arc::new(Table { vassals: [("a.ini".to_owned(), Arc::new(view))].into(), ..Table::default() })
    }

    #[tokio::test]
    async fn a_restart_is_done_when_a_new_generation_runs() {
        let (tx, rx) = watch::channel(table(State::Running, 1));
        let waiter = tokio::spawn(until_done(rx, "a.ini", Action::Restart, Some(1), Duration::from_secs(5)));
        tx.send_replace(table(State::Stopping, 1));
        tx.send_replace(table(State::Running, 2));
        assert!(waiter.await.unwrap());
    }

    #[tokio::test(start_paused = true)]
    async fn a_stop_that_never_happens_times_out() {
        let (_tx, rx) = watch::channel(table(State::Running, 1));
        assert!(!until_done(rx, "a.ini", Action::Stop, Some(1), Duration::from_secs(5)).await);
    }
}
