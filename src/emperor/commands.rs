//! Operators' commands from the control socket, applied by the main loop:
//! `stop` is made durable before it is acted on, and every command only
//! marks what the next reconcile round does.

use super::event_loop::Emperor;
use super::processes::Processes;
use crate::control::{Action, CommandError, Reply, Request};
use reconciler::VassalName;

impl<P: Processes> Emperor<P> {
    /// Applies one command; its outcome is sent once the round it causes has run.
    pub(super) fn on_command(&mut self, Request { name, action, reply }: Request) {
        let outcome = self.apply(&name, action);
        match &outcome {
            Ok(what) => tracing::info!(vassal = %name, action = action.as_str(), "operator command: {what}"),
            Err(e) => tracing::warn!(vassal = %name, action = action.as_str(), error = %e, "operator command refused"),
        }
        self.control.answer(reply, outcome);
    }

    fn apply(&mut self, name: &VassalName, action: Action) -> Reply {
        let desired = self.controller.desired();
        let stopped = desired.is_stopped(name);
        // A stopped name stays known, so that `start` can lift the stop
        // even after its source dropped it.
        let known = stopped || desired.offered(name).is_some() || self.controller.actual().contains_key(name);
        if !known {
            return Err(CommandError::NoSuchVassal(name.clone()));
        }
        let now = self.now();
        match action {
            Action::Stop | Action::Start => {
                let stop = action == Action::Stop;
                if stop == stopped {
                    return Ok(if stop { "already stopped" } else { "not stopped" }.into());
                }
                self.journal
                    .set_stopped(name, stop)
                    .map_err(|source| CommandError::Store { name: name.clone(), source })?;
                self.controller.set_stopped(name, stop);
                Ok(if stop { "stopping" } else { "starting" }.into())
            }
            Action::Restart | Action::Reload if stopped => Err(CommandError::Stopped(name.clone())),
            Action::Restart => {
                self.observed(|controller, exec| controller.restart(name, now, exec));
                Ok("restarting".into())
            }
            Action::Reload => {
                self.observed(|controller, exec| controller.reload_one(name, now, exec));
                Ok("reloading".into())
            }
        }
    }

    /// Publishes the status table of the round just run (or of the rounds
    /// run since it was last built, when it is due).
    pub(super) fn publish(&mut self) {
        let now = self.now();
        let supervisor = &self.supervisor;
        let Some(counts) = self.control.publish(&self.controller, |name| supervisor.status(name), now) else {
            return;
        };
        self.notify.published(counts, self.controller.deferred_starts());
        self.metrics.set_healthy(self.notify.all_settled());
        self.metrics.kills(self.supervisor.kills());
    }
}
