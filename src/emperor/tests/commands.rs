//! Operators' commands through the loop: a stop is recorded before it is
//! acted on and outlives resyncs, a start lifts it, a restart makes a new
//! process, an unknown name is refused; each answer comes after its round.

use super::*;
use crate::control::{Action, CommandError, Reply, Request};

impl Harness {
    /// Sends a command and waits for its outcome.
    async fn command(&self, name: &str, action: Action) -> Reply {
        let (reply, outcome) = oneshot::channel();
        let request = Request { name: vassal(name), action, reply };
        self.control.commands.send(request).await.expect("the loop is running");
        timeout(PATIENCE, outcome).await.expect("the loop answers").expect("an outcome")
    }

    /// The published state of `name`.
    fn state_of(&self, name: &str) -> Option<crate::control::State> {
        self.control.table.borrow().vassals.get(name).map(|v| v.state)
    }
}

#[tokio::test(start_paused = true)]
async fn a_stop_is_recorded_first_and_outlives_a_resync_until_start() {
    let h = Harness::start();
    h.send(snapshot(DIR, &[("a.ini", "1")])).await;
    h.fake.take();
    assert_eq!(h.command("a.ini", Action::Stop).await.unwrap(), "stopping");
    assert_eq!(h.fake.take(), [stop("a.ini")], "stopped in the round the command caused");
    assert_eq!(h.store.stopped().unwrap(), [vassal("a.ini")], "recorded");
    h.exit("a.ini").await;
    assert_eq!(h.fake.take(), [forget("a.ini")], "not respawned");
    h.send(snapshot(DIR, &[("a.ini", "2")])).await;
    assert_eq!(h.fake.take(), [], "a resync with a new version leaves it stopped");
    assert_eq!(h.state_of("a.ini"), Some(crate::control::State::Stopped));
    assert!(matches!(h.command("a.ini", Action::Restart).await, Err(CommandError::Stopped(_))));
    assert_eq!(h.command("a.ini", Action::Start).await.unwrap(), "starting");
    assert_eq!(h.fake.take(), [start("a.ini", 2)]);
    assert!(h.store.stopped().unwrap().is_empty());
    assert_eq!(h.state_of("a.ini"), Some(crate::control::State::Running), "published before the answer");
}

#[tokio::test(start_paused = true)]
async fn restart_and_reload_act_on_one_vassal_and_unknown_names_are_refused() {
    let h = Harness::start();
    h.send(snapshot(DIR, &[("a.ini", "1"), ("b.ini", "1")])).await;
    h.fake.take();
    h.command("a.ini", Action::Reload).await.unwrap();
    assert_eq!(h.fake.take(), [reload("a.ini", "1")]);
    h.command("a.ini", Action::Restart).await.unwrap();
    assert_eq!(h.fake.take(), [stop("a.ini")]);
    h.exit("a.ini").await;
    assert_eq!(h.fake.take(), [forget("a.ini"), start("a.ini", 3)], "a new process once the old one is gone");
    assert!(matches!(h.command("nope.ini", Action::Stop).await, Err(CommandError::NoSuchVassal(_))));
    assert_eq!(h.fake.take(), []);
}

#[tokio::test(start_paused = true)]
async fn a_stop_can_be_lifted_after_the_source_dropped_the_vassal() {
    let h = Harness::start();
    h.send(snapshot(DIR, &[("a.ini", "1")])).await;
    h.command("a.ini", Action::Stop).await.unwrap();
    h.exit("a.ini").await;
    h.send(snapshot(DIR, &[])).await;
    assert_eq!(h.state_of("a.ini"), None, "no source wants it: not listed");
    assert_eq!(h.command("a.ini", Action::Start).await.unwrap(), "starting");
    assert!(h.store.stopped().unwrap().is_empty(), "the stop is gone with it");
    h.fake.take();
    h.send(snapshot(DIR, &[("a.ini", "2")])).await;
    assert_eq!(h.fake.take(), [start("a.ini", 2)], "back in the source, it runs");
}
