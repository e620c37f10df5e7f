//! What the main loop needs of the vassal processes: the reconciler's
//! [`Executor`] plus the exits and the shutdown. The [`Supervisor`] is the
//! one implementation in the emperor; the loop's tests drive a fake.

use crate::supervisor::{ProcStatus, Supervisor};
use reconciler::{Executor, VassalName};

/// The vassal processes as the main loop sees them.
pub(crate) trait Processes: Executor {
    /// Waits until a vassal's process is gone and returns its name and
    /// generation, or `None` when only what [`Processes::status`] tells
    /// changed (an on-demand vassal started or went idle, a vassal became
    /// ready). Cancel-safe: an exit not yet
    /// returned is kept.
    async fn next_exit(&mut self) -> Option<(VassalName, u64)>;
    /// An exit already known, without waiting (to drain a burst of them).
    fn exited_now(&mut self) -> Option<(VassalName, u64)>;
    /// Asks every vassal to stop (emperor shutdown).
    fn stop_all(&mut self);
    /// Whether no process is left.
    fn is_idle(&self) -> bool;
    /// Ends what outlives the vassals (the fd holder); called once every
    /// vassal has stopped.
    fn retire_holder(&mut self);
    /// What is known of `name`'s process, for operators.
    fn status(&self, _name: &VassalName) -> ProcStatus {
        ProcStatus::default()
    }
    /// How many SIGKILLs were sent to vassals so far, for the metrics.
    fn kills(&self) -> u64 {
        0
    }
    /// Applies what a singleton's lease decided (see [`Supervisor::fence`]).
    fn fence(&mut self, _name: &VassalName, _order: crate::fleet::lease::task::Order) {}
}

impl Processes for Supervisor {
    async fn next_exit(&mut self) -> Option<(VassalName, u64)> {
        Supervisor::next_exit(self).await
    }

    fn exited_now(&mut self) -> Option<(VassalName, u64)> {
        Supervisor::exited_now(self)
    }

    fn stop_all(&mut self) {
        Supervisor::stop_all(self);
    }

    fn is_idle(&self) -> bool {
        Supervisor::is_idle(self)
    }

    fn retire_holder(&mut self) {
        Supervisor::retire_holder(self);
    }

    fn status(&self, name: &VassalName) -> ProcStatus {
        Supervisor::status(self, name)
    }

    fn kills(&self) -> u64 {
        Supervisor::kills(self)
    }

    fn fence(&mut self, name: &VassalName, order: crate::fleet::lease::task::Order) {
        Supervisor::fence(self, name, order);
    }
}
