use super::*;
use proptest::prelude::*;
use std::time::Duration;

fn timing() -> Timing {
    Timing::default_for(Duration::from_secs(15))
}

fn run(state: State, event: Event, now: u64) -> (State, Vec<Action>) {
    step(state, event, now, &timing())
}

#[test]
fn a_candidate_starts_the_vassal_delta_after_acquiring() {
    let (s, a) = run(State::Candidate, Event::Granted { token: 7, sent: 100 }, 150);
    assert_eq!(s, State::Acquired { token: 7, confirmed: 100, run_at: 1150 });
    assert!(a.is_empty());
    assert_eq!(run(s, Event::Tick, 1000), (s, vec![]));
    let (s, a) = run(s, Event::Tick, 1150);
    assert_eq!(s, State::Running { token: 7, confirmed: 100 });
    assert_eq!(a, vec![Action::Run { token: 7, kill_at: 13_100 }]);
}

#[test]
fn renewals_extend_and_silence_fences_by_the_deadlines() {
    let s = State::Running { token: 3, confirmed: 0 };
    let (s, a) = run(s, Event::Granted { token: 3, sent: 3000 }, 3050);
    assert_eq!(a, vec![Action::Extend { kill_at: 16_000 }]);
    assert_eq!(run(s, Event::Tick, 12_999).1, vec![]);
    let (s, a) = run(s, Event::Tick, 13_000);
    assert_eq!(s, State::Fencing { token: 3, kill_at: 16_000 });
    assert_eq!(a, vec![Action::Stop { kill_at: 16_000 }]);
    // A late success does not undo the fence.
    let (s, a) = run(s, Event::Granted { token: 3, sent: 12_000 }, 13_500);
    assert_eq!((s, a), (State::Fencing { token: 3, kill_at: 16_000 }, vec![]));
    let (s, _) = run(s, Event::Tick, 16_000);
    assert_eq!(s, State::Lost);
    assert_eq!(run(s, Event::Tick, 16_001).0, State::Candidate);
}

#[test]
fn not_ours_kills_at_once() {
    let (s, a) = run(State::Running { token: 3, confirmed: 0 }, Event::NotOurs, 500);
    assert_eq!((s, a), (State::Fencing { token: 3, kill_at: 500 }, vec![Action::Stop { kill_at: 500 }]));
    let (s, a) = run(State::Running { token: 3, confirmed: 0 }, Event::Granted { token: 4, sent: 400 }, 500);
    assert_eq!((s, a), (State::Fencing { token: 3, kill_at: 500 }, vec![Action::Stop { kill_at: 500 }]));
}

#[test]
fn a_restarted_emperor_keeps_the_vassal_only_with_its_token() {
    let recovering = State::Recovering { token: 9, give_up_at: 13_000 };
    let (s, a) = run(recovering, Event::Granted { token: 9, sent: 200 }, 250);
    assert_eq!(s, State::Running { token: 9, confirmed: 200 });
    assert_eq!(a, vec![Action::Run { token: 9, kill_at: 13_200 }]);
    assert_eq!(run(recovering, Event::NotOurs, 250).1, vec![Action::Stop { kill_at: 250 }]);
    assert_eq!(run(recovering, Event::Tick, 12_000).1, vec![]);
    assert_eq!(run(recovering, Event::Tick, 13_000).1, vec![Action::Stop { kill_at: 13_000 }]);
}

#[test]
fn an_acquisition_never_confirmed_again_gives_up_without_running() {
    let s = State::Acquired { token: 1, confirmed: 0, run_at: 20_000 };
    assert_eq!(run(s, Event::Tick, 10_000), (State::Candidate, vec![]));
}

#[test]
fn requests_follow_the_state() {
    assert_eq!(request(State::Candidate), Request::Acquire);
    assert_eq!(request(State::Running { token: 2, confirmed: 0 }), Request::Renew(2));
    assert_eq!(request(State::Fencing { token: 2, kill_at: 0 }), Request::None);
}

/// A random history: events at increasing times, where a grant's send time
/// is some time before it is answered.
fn history() -> impl Strategy<Value = Vec<(u64, u8, u64, u64)>> {
    prop::collection::vec((1u64..4000, 0u8..4, 0u64..3, 0u64..3000), 1..80)
}

proptest! {
    /// Whatever the store answers and whenever: the vassal runs only under
    /// a token the store granted, only Δ after the grant, never past
    /// `confirmed + D` without a fence, and its SIGKILL deadline is never
    /// later than `sent + L − M` of the last grant, so it is dead before
    /// the store can hand the lease to anyone else.
    #[test]
    fn the_vassal_never_outlives_its_lease(events in history()) {
        let t = timing();
        let (deadline, kill_after, delay) = (10_000u64, 13_000u64, 1000u64);
        let mut state = State::Candidate;
        let mut now = 0u64;
        // The send time of the last request the store granted.
        let mut last_sent: Option<u64> = None;
        let mut granted: Option<(u64, u64)> = None;
        for (gap, kind, token, age) in events {
            now += gap;
            let event = match (kind, request(state)) {
                (0 | 1, _) | (_, Request::None) => Event::Tick,
                (2, Request::Renew(held)) if token > 0 => Event::Granted { token: held, sent: now.saturating_sub(age) },
                (2, _) => Event::Granted { token: token + 10, sent: now.saturating_sub(age) },
                _ => Event::NotOurs,
            };
            if let Event::Granted { token, sent } = event {
                last_sent = Some(last_sent.map_or(sent, |l| l.max(sent)));
                if state == State::Candidate {
                    granted = Some((token, now));
                }
            }
            let (next, actions) = step(state, event, now, &t);
            for action in actions {
                let kill_at = match action {
                    Action::Run { token, kill_at } => {
                        let (held, at) = granted.expect("ran without a grant");
                        prop_assert_eq!(held, token);
                        prop_assert!(now >= at + delay, "started before Δ");
                        kill_at
                    }
                    Action::Extend { kill_at } | Action::Stop { kill_at } => kill_at,
                };
                prop_assert!(kill_at <= last_sent.expect("a grant") + kill_after, "kill deadline past the lease");
            }
            if let State::Running { confirmed, .. } = next {
                prop_assert!(now < confirmed + deadline, "running past the renew deadline");
            }
            state = next;
        }
    }
}
