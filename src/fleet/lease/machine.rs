//! The holder of one singleton's lease, as a pure state machine:
//! `(state, event, now) → (state, actions)`, with no clock and no I/O, so
//! that every timing rule can be tested exhaustively.
//!
//! | state      | what happens                                        | next                       |
//! |------------|-----------------------------------------------------|----------------------------|
//! | Candidate  | tries to acquire every R                            | Acquired on success        |
//! | Recovering | a restarted emperor renews with the token it kept   | Running, or Fencing        |
//! | Acquired   | renews; waits Δ                                     | Running: the vassal starts |
//! | Running    | each confirmed renewal moves `confirmed`            | Fencing at `confirmed + D` |
//! | Fencing    | SIGTERM now, SIGKILL by `confirmed + L − M`         | Lost at the kill deadline  |
//! | Lost       | the vassal is gone                                  | Candidate                  |
//!
//! Times are milliseconds of one monotonic clock; `confirmed` is the send
//! time of the last renewal the store confirmed. A renewal the store
//! answers with "not ours" fences at once with SIGKILL; a late success
//! after fencing began does not undo it.

use super::timing::Timing;

/// Where the holder of one lease is; see the module docs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum State {
    /// Not holding; tries to acquire.
    Candidate,
    /// A restarted emperor found the vassal still running under `token`;
    /// it must renew before `give_up_at`, or the vassal is killed.
    Recovering {
        /// The token the vassal was started under.
        token: u64,
        /// When to stop waiting for the store.
        give_up_at: u64,
    },
    /// Holding; the vassal starts at `run_at`.
    Acquired {
        /// The lease's fencing token.
        token: u64,
        /// Send time of the last confirmed acquisition or renewal.
        confirmed: u64,
        /// When the vassal may start.
        run_at: u64,
    },
    /// Holding, and the vassal may run.
    Running {
        /// The lease's fencing token.
        token: u64,
        /// Send time of the last confirmed renewal.
        confirmed: u64,
    },
    /// No longer sure of the lease: the vassal is being stopped.
    Fencing {
        /// The token it ran under.
        token: u64,
        /// When it is dead at the latest.
        kill_at: u64,
    },
    /// The vassal is gone; next, a candidate again.
    Lost,
}

/// What happened to the holder.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Event {
    /// Time passed (a timer fired, or the store could not be reached).
    Tick,
    /// The store gave (or renewed) the lease under `token`; the request was sent at `sent`.
    Granted {
        /// The lease's fencing token.
        token: u64,
        /// When the request was sent.
        sent: u64,
    },
    /// The store says the lease is someone else's (or its token moved on).
    NotOurs,
}

/// What the holder asks the emperor to do.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Action {
    /// The vassal may run under `token` until `kill_at` unless extended.
    Run {
        /// The fencing token, for `EMPEROR_FENCE`.
        token: u64,
        /// The SIGKILL deadline.
        kill_at: u64,
    },
    /// A renewal moved the SIGKILL deadline to `kill_at`.
    Extend {
        /// The SIGKILL deadline.
        kill_at: u64,
    },
    /// Stop the vassal now, and kill it by `kill_at`.
    Stop {
        /// The SIGKILL deadline (now, when the lease is someone else's).
        kill_at: u64,
    },
}

/// What the store should be asked next for this lease.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Request {
    /// Nothing.
    None,
    /// Try to take it.
    Acquire,
    /// Renew it, under this token.
    Renew(u64),
}

/// One step of the machine; see the module docs.
pub fn step(state: State, event: Event, now: u64, t: &Timing) -> (State, Vec<Action>) {
    let ms = |d: std::time::Duration| d.as_millis() as u64;
    let (deadline, kill_after, delay) = (ms(t.deadline), ms(t.kill_after()), ms(t.delay));
    // At once, or by the deadline already in force if that is earlier.
    let fence_now = |token, cap: u64| {
        let kill_at = now.min(cap);
        (State::Fencing { token, kill_at }, vec![Action::Stop { kill_at }])
    };
    match (state, event) {
        (State::Candidate, Event::Granted { token, sent }) => {
            let next = State::Acquired { token, confirmed: sent, run_at: now + delay };
            timed(next, now, deadline, kill_after)
        }
        (State::Candidate, _) => (State::Candidate, vec![]),
        (State::Recovering { token, .. }, Event::Granted { token: got, sent }) if got == token => {
            let kill_at = sent + kill_after;
            let next = State::Running { token, confirmed: sent };
            let (state, mut actions) = timed(next, now, deadline, kill_after);
            actions.insert(0, Action::Run { token, kill_at });
            (state, actions)
        }
        (State::Recovering { token, give_up_at }, Event::Granted { .. } | Event::NotOurs) => {
            fence_now(token, give_up_at)
        }
        (State::Recovering { token, give_up_at }, Event::Tick) if now >= give_up_at => fence_now(token, give_up_at),
        (recovering @ State::Recovering { .. }, Event::Tick) => (recovering, vec![]),
        (State::Acquired { token, confirmed, run_at }, Event::Granted { token: got, sent }) if got == token => {
            timed(State::Acquired { token, confirmed: confirmed.max(sent), run_at }, now, deadline, kill_after)
        }
        (State::Acquired { .. }, Event::Granted { .. } | Event::NotOurs) => (State::Candidate, vec![]),
        (acquired @ State::Acquired { .. }, Event::Tick) => timed(acquired, now, deadline, kill_after),
        (State::Running { token, confirmed }, Event::Granted { token: got, sent }) if got == token => {
            let confirmed = confirmed.max(sent);
            let (state, mut actions) = timed(State::Running { token, confirmed }, now, deadline, kill_after);
            if matches!(state, State::Running { .. }) {
                actions.push(Action::Extend { kill_at: confirmed + kill_after });
            }
            (state, actions)
        }
        (State::Running { token, confirmed }, Event::Granted { .. } | Event::NotOurs) => {
            fence_now(token, confirmed + kill_after)
        }
        (running @ State::Running { .. }, Event::Tick) => timed(running, now, deadline, kill_after),
        (State::Fencing { kill_at, .. }, _) if now >= kill_at => (State::Lost, vec![]),
        (fencing @ State::Fencing { .. }, _) => (fencing, vec![]),
        (State::Lost, _) => (State::Candidate, vec![]),
    }
}

/// Applies the clock to a holding state: the start after Δ, the fence at
/// `confirmed + D`.
fn timed(state: State, now: u64, deadline: u64, kill_after: u64) -> (State, Vec<Action>) {
    match state {
        State::Acquired { confirmed, .. } if now >= confirmed + deadline => (State::Candidate, vec![]),
        State::Acquired { token, confirmed, run_at } if now >= run_at => {
            let kill_at = confirmed + kill_after;
            let (state, mut actions) = timed(State::Running { token, confirmed }, now, deadline, kill_after);
            actions.insert(0, Action::Run { token, kill_at });
            (state, actions)
        }
        State::Running { token, confirmed } if now >= confirmed + deadline => {
            let kill_at = confirmed + kill_after;
            (State::Fencing { token, kill_at }, vec![Action::Stop { kill_at }])
        }
        other => (other, vec![]),
    }
}

/// What to ask the store next in `state`.
pub fn request(state: State) -> Request {
    match state {
        State::Candidate => Request::Acquire,
        State::Recovering { token, .. } | State::Acquired { token, .. } | State::Running { token, .. } => {
            Request::Renew(token)
        }
        State::Fencing { .. } | State::Lost => Request::None,
    }
}

/// When the machine next needs a [`Event::Tick`] by the clock alone (not
/// counting the renew period).
pub fn next_due(state: State, t: &Timing) -> Option<u64> {
    let deadline = t.deadline.as_millis() as u64;
    match state {
        State::Recovering { give_up_at, .. } => Some(give_up_at),
        State::Acquired { confirmed, run_at, .. } => Some(run_at.min(confirmed + deadline)),
        State::Running { confirmed, .. } => Some(confirmed + deadline),
        State::Fencing { kill_at, .. } => Some(kill_at),
        State::Lost => Some(0),
        State::Candidate => None,
    }
}

/// Whether the vassal may be running in `state` (it may be started, or
/// kept when it already runs).
pub fn may_run(state: State) -> bool {
    matches!(state, State::Running { .. } | State::Recovering { .. })
}

#[cfg(test)]
#[path = "machine_tests.rs"]
mod tests;
