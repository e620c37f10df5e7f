//! The lease task of one source: runs a [`machine`](super::machine) per
//! singleton the main loop wants, asks the source's [`LeaseStore`] to
//! acquire and renew (all leases of this emperor in one statement each),
//! and sends the main loop what the machines decide.

use super::machine::{self, Action, Event, Request, State};
use super::{LeaseStore, Timing};
use reconciler::VassalName;
use std::collections::BTreeMap;
use std::hash::BuildHasher;
use std::time::{Duration, Instant};
use tokio::sync::{mpsc, watch};

/// The singletons the main loop wants leases for, each with the token of a
/// process that still runs from before a restart (to be renewed, not acquired).
pub type Wanted = BTreeMap<VassalName, Option<u64>>;

/// What the main loop must do with a singleton.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Order {
    /// It may run under `token`; it must be dead by `kill_at` unless extended.
    Run {
        /// The fencing token (`EMPEROR_FENCE`).
        token: u64,
        /// The SIGKILL deadline.
        kill_at: Instant,
    },
    /// A renewal moved its SIGKILL deadline.
    Extend {
        /// The SIGKILL deadline.
        kill_at: Instant,
    },
    /// Stop it now; kill it by `kill_at`.
    Stop {
        /// The SIGKILL deadline.
        kill_at: Instant,
    },
}

/// One order for one singleton.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Notice {
    /// The singleton.
    pub name: VassalName,
    /// What to do.
    pub order: Order,
}

/// The shortest wait for a store call before it counts as failed.
const MIN_CALL: Duration = Duration::from_millis(100);

/// Runs the leases of one source until the main loop goes away.
pub async fn run(
    mut store: Box<dyn LeaseStore>,
    timing: Timing,
    mut wanted: watch::Receiver<Wanted>,
    notices: mpsc::UnboundedSender<Notice>,
) {
    let mut holder = Holder { timing, origin: Instant::now(), machines: BTreeMap::new(), notices };
    let jitter = std::collections::hash_map::RandomState::new();
    let mut next_call = 0u64;
    let mut round = 0u64;
    let wakeup = store.wakeup();
    loop {
        let gone = holder.follow(&wanted.borrow_and_update());
        if !gone.is_empty() {
            let _ = timed(holder.wait(), store.release(&gone)).await;
        }
        holder.feed_all(Event::Tick);
        if holder.now() >= next_call {
            holder.renew(&mut *store).await;
            holder.acquire(&mut *store).await;
            round += 1;
            next_call = holder.now() + jittered(timing.renew, jitter.hash_one(round));
        }
        if holder.closed() {
            return;
        }
        let wake = holder.next_due().map_or(next_call, |due| due.min(next_call));
        let sleep = tokio::time::sleep_until((holder.origin + Duration::from_millis(wake)).into());
        let freed = async {
            match &wakeup {
                Some(notify) => notify.notified().await,
                None => std::future::pending().await,
            }
        };
        tokio::select! {
            changed = wanted.changed() => if changed.is_err() { return },
            () = sleep => {}
            () = freed => next_call = 0,
        }
    }
}

/// `period` ± [`JITTER`](super::timing::JITTER), from a random `draw`.
fn jittered(period: Duration, draw: u64) -> u64 {
    let ms = period.as_millis() as u64;
    let spread = (ms as f64 * super::timing::JITTER) as u64;
    ms - spread + draw % (2 * spread + 1)
}

/// The machines of one source and where their orders go.
struct Holder {
    timing: Timing,
    origin: Instant,
    machines: BTreeMap<VassalName, State>,
    notices: mpsc::UnboundedSender<Notice>,
}

impl Holder {
    fn now(&self) -> u64 {
        self.origin.elapsed().as_millis() as u64
    }

    fn closed(&self) -> bool {
        self.notices.is_closed()
    }

    /// Starts a machine per new name and drops those no longer wanted;
    /// returns their names, to release (a lease that may still be ours, or
    /// a candidate's place in a queue).
    fn follow(&mut self, wanted: &Wanted) -> Vec<String> {
        let now = self.now();
        let give_up = self.timing.kill_after().as_millis() as u64;
        for (name, recovered) in wanted {
            self.machines.entry(name.clone()).or_insert_with(|| match recovered {
                Some(token) => State::Recovering { token: *token, give_up_at: now + give_up },
                None => State::Candidate,
            });
        }
        let gone: Vec<VassalName> = self.machines.keys().filter(|n| !wanted.contains_key(*n)).cloned().collect();
        gone.into_iter().filter_map(|name| self.machines.remove(&name).map(|_| name.to_string())).collect()
    }

    fn feed(&mut self, name: &VassalName, event: Event) {
        let now = self.now();
        let Some(state) = self.machines.get_mut(name) else { return };
        let (next, actions) = machine::step(*state, event, now, &self.timing);
        if next != *state {
            tracing::debug!(vassal = %name, from = ?state, to = ?next, "lease");
        }
        *state = next;
        for action in actions {
            let at = |ms: u64| self.origin + Duration::from_millis(ms);
            let order = match action {
                Action::Run { token, kill_at } => Order::Run { token, kill_at: at(kill_at) },
                Action::Extend { kill_at } => Order::Extend { kill_at: at(kill_at) },
                Action::Stop { kill_at } => Order::Stop { kill_at: at(kill_at) },
            };
            let _ = self.notices.send(Notice { name: name.clone(), order });
        }
    }

    fn feed_all(&mut self, event: Event) {
        let names: Vec<VassalName> = self.machines.keys().cloned().collect();
        for name in &names {
            self.feed(name, event);
        }
    }

    fn next_due(&self) -> Option<u64> {
        self.machines.values().filter_map(|s| machine::next_due(*s, &self.timing)).min()
    }

    /// Renews every lease held (one call), feeding each machine the answer.
    async fn renew(&mut self, store: &mut dyn LeaseStore) {
        let held: Vec<(String, u64)> = self
            .machines
            .iter()
            .filter_map(|(name, s)| match machine::request(*s) {
                Request::Renew(token) => Some((name.to_string(), token)),
                _ => None,
            })
            .collect();
        if held.is_empty() {
            return;
        }
        let sent = self.now();
        let wait = self.wait();
        let result = timed(wait, store.renew(&held)).await;
        match result {
            Ok(renewed) => {
                for (name, token) in &held {
                    let event =
                        if renewed.contains(name) { Event::Granted { token: *token, sent } } else { Event::NotOurs };
                    self.feed_named(name, event);
                }
            }
            Err(e) => {
                store.reset();
                tracing::warn!(error = %e, leases = held.len(), "cannot renew the singletons' leases");
            }
        }
    }

    /// Tries to take every lease a candidate wants (one call).
    async fn acquire(&mut self, store: &mut dyn LeaseStore) {
        let wanted: Vec<String> = self
            .machines
            .iter()
            .filter(|(_, s)| machine::request(**s) == Request::Acquire)
            .map(|(name, _)| name.to_string())
            .collect();
        if wanted.is_empty() {
            return;
        }
        let sent = self.now();
        let wait = self.wait();
        match timed(wait, store.acquire(&wanted)).await {
            Ok(taken) => {
                for (name, token) in taken {
                    tracing::info!(vassal = %name, token, "singleton lease acquired");
                    self.feed_named(&name, Event::Granted { token, sent });
                }
            }
            Err(e) => {
                store.reset();
                tracing::debug!(error = %e, "cannot acquire the singletons' leases");
            }
        }
    }

    fn feed_named(&mut self, name: &str, event: Event) {
        let Some(name) = self.machines.keys().find(|n| n.as_str() == name).cloned() else { return };
        self.feed(&name, event);
    }

    /// How long a store call may take: until the next machine deadline
    /// (at least [`MIN_CALL`], at most the renew period), so that a store
    /// that does not answer never delays a fence.
    fn wait(&self) -> Duration {
        let now = self.now();
        let due = self.next_due().map_or(u64::MAX, |d| d.saturating_sub(now));
        Duration::from_millis(due).clamp(MIN_CALL, self.timing.renew)
    }
}

async fn timed<T>(wait: Duration, call: super::StoreFuture<'_, T>) -> Result<T, String> {
    match tokio::time::timeout(wait, call).await {
        Ok(result) => result,
        Err(_) => Err(format!("no answer within {wait:?}")),
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn jitter_stays_within_a_fifth() {
        let period = std::time::Duration::from_secs(3);
        for draw in [0, 1, 599, 600, 1200, u64::MAX] {
            let ms = super::jittered(period, draw);
            assert!((2400..=3600).contains(&ms), "{ms}");
        }
    }
}
