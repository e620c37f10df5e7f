//! Singletons in the supervisor: the fencing token a singleton is started
//! with (`EMPEROR_FENCE`), and the SIGKILL deadline its lease sets.
//!
//! The deadline is enforced twice: here, by the supervisor's own timer, and
//! by the fd holder's watchdog (given each new deadline), which still kills
//! the singleton when the emperor is dead, hung or stopped.

use super::Supervisor;
use crate::fleet::lease::task::Order;
use reconciler::VassalName;
use std::collections::HashMap;
use std::time::Instant;

/// The variable that carries a singleton's fencing token.
pub const FENCE_VARIABLE: &str = "EMPEROR_FENCE";

/// What the supervisor knows of one singleton's lease.
#[derive(Debug, Clone, Copy)]
struct Fence {
    /// The token it may be started under; `None` once it must stop.
    token: Option<u64>,
    /// When its process must be dead.
    kill_at: Instant,
    /// Whether the current process was killed for it already.
    killed: bool,
}

/// Every singleton's fence, by name.
#[derive(Debug, Default)]
pub(super) struct Fences {
    by_name: HashMap<VassalName, Fence>,
}

impl Supervisor {
    /// Applies what the lease of the singleton `name` decided: it may be
    /// started under a token, its deadline moved, or it must stop (the main
    /// loop's next round stops it; this only makes sure it is dead by the
    /// deadline).
    pub fn fence(&mut self, name: &VassalName, order: Order) {
        let fences = &mut self.fences.by_name;
        match order {
            Order::Run { token, kill_at } => {
                fences.insert(name.clone(), Fence { token: Some(token), kill_at, killed: false });
            }
            Order::Extend { kill_at } => {
                if let Some(fence) = fences.get_mut(name).filter(|f| f.token.is_some()) {
                    fence.kill_at = kill_at;
                }
            }
            Order::Stop { kill_at } => {
                if !self.procs.contains_key(name) {
                    fences.remove(name);
                } else {
                    let fence = fences.entry(name.clone()).or_insert(Fence { token: None, kill_at, killed: false });
                    fence.token = None;
                    fence.kill_at = fence.kill_at.min(kill_at);
                }
            }
        }
        self.watch_fence(name);
    }

    /// Gives the fd holder the current deadline of `name`'s process.
    pub(super) fn watch_fence(&mut self, name: &VassalName) {
        let (Some(fence), Some(proc)) = (self.fences.by_name.get(name), self.procs.get(name)) else { return };
        let deadline_ns = crate::sys::clock::monotonic_ns_at(fence.kill_at);
        self.holder.watch(name.as_str(), proc.pid(), deadline_ns);
    }

    /// `EMPEROR_FENCE=<token>` for a singleton started under a lease.
    pub(super) fn fence_env(&self, name: &VassalName) -> Option<(String, String)> {
        let token = self.fences.by_name.get(name)?.token?;
        Some((FENCE_VARIABLE.to_owned(), token.to_string()))
    }

    /// The next fence deadline of a running singleton.
    pub(super) fn fence_deadline(&self) -> Option<Instant> {
        let live = |(name, f): (&VassalName, &Fence)| (!f.killed && self.procs.contains_key(name)).then_some(f.kill_at);
        self.fences.by_name.iter().filter_map(live).min()
    }

    /// Kills every singleton past its deadline.
    pub(super) fn fence_tick(&mut self, now: Instant) {
        for (name, fence) in self.fences.by_name.iter_mut() {
            let Some(proc) = self.procs.get(name) else { continue };
            if fence.killed || fence.kill_at > now {
                continue;
            }
            tracing::warn!(vassal = %name, pid = proc.pid(), "singleton past its lease deadline: sending SIGKILL to its process group");
            Self::signal_group(proc, libc::SIGKILL);
            fence.killed = true;
            self.kills += 1;
        }
    }

    /// A singleton's process is gone: the holder stops watching it, and a
    /// fence without a token is forgotten.
    pub(super) fn fence_exited(&mut self, name: &VassalName) {
        let Some(fence) = self.fences.by_name.get_mut(name) else { return };
        fence.killed = false;
        if fence.token.is_none() {
            self.fences.by_name.remove(name);
        }
        self.holder.unwatch(name.as_str());
    }
}
