//! The order of a round's starts, and where the starts a round does not make
//! wait for the next rounds.
//!
//! A round makes a bounded number of starts (see
//! [`Controller::set_start_budget`](crate::Controller::set_start_budget)),
//! and its executor may end it sooner (its time is up, the emperor is
//! stopping; see [`Executor::may_start`](crate::Executor::may_start)). So
//! that a change just made is never queued behind a large start, a round
//! starts, in this order: the names made dirty since the last round
//! ([`Origin::Fresh`]), then the ones an earlier round admitted but did not
//! reach ([`Origin::Withdrawn`]), then the backlog, in name order
//! ([`Origin::Backlog`]).

use crate::VassalName;
use std::collections::BTreeSet;

/// Where a start planned by a round comes from. The variants are in the
/// order the round makes the starts.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Origin {
    /// Made dirty since the last round: a change just made.
    Fresh,
    /// Admitted by an earlier round that ended before making it.
    Withdrawn,
    /// Held back by an earlier round over its budget.
    Backlog,
}

/// What one round starts, in order, and what it holds back.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Admission {
    /// The starts the round makes, in the order it makes them.
    pub admitted: Vec<VassalName>,
    /// The starts left for later rounds, with where each came from.
    pub held: Vec<(VassalName, Origin)>,
}

/// Orders a round's planned starts by [`Origin`] (keeping the given order
/// within each origin), admits the first `budget` of them and holds back the
/// others. Pure, so that the order is tested apart from any process.
pub fn admit(starts: impl IntoIterator<Item = (VassalName, Origin)>, budget: usize) -> Admission {
    let mut starts: Vec<(VassalName, Origin)> = starts.into_iter().collect();
    starts.sort_by_key(|(_, origin)| *origin);
    let held = starts.split_off(budget.min(starts.len()));
    Admission { admitted: starts.into_iter().map(|(name, _)| name).collect(), held }
}

/// The starts held back by earlier rounds: the withdrawn ones, then the
/// backlog, each in name order.
#[derive(Debug, Default)]
pub(crate) struct Queues {
    withdrawn: BTreeSet<VassalName>,
    backlog: BTreeSet<VassalName>,
}

impl Queues {
    /// Takes up to `count` names for a round to plan again, the withdrawn
    /// ones first, each with the queue it came from.
    pub(crate) fn take(&mut self, count: usize) -> Vec<(VassalName, Origin)> {
        let mut taken = Vec::with_capacity(count.min(self.len()));
        while taken.len() < count {
            let next = match self.withdrawn.pop_first() {
                Some(name) => (name, Origin::Withdrawn),
                None => match self.backlog.pop_first() {
                    Some(name) => (name, Origin::Backlog),
                    None => break,
                },
            };
            taken.push(next);
        }
        taken
    }

    /// Queues a start held back over a round's budget: a withdrawn one
    /// keeps its place before the backlog.
    pub(crate) fn hold(&mut self, name: VassalName, origin: Origin) {
        match origin {
            Origin::Withdrawn => self.withdraw(name),
            Origin::Fresh | Origin::Backlog => {
                self.backlog.insert(name);
            }
        }
    }

    /// Queues a start a round admitted and did not make.
    pub(crate) fn withdraw(&mut self, name: VassalName) {
        self.withdrawn.insert(name);
    }

    /// How many starts wait.
    pub(crate) fn len(&self) -> usize {
        self.withdrawn.len() + self.backlog.len()
    }

    /// Whether no start waits.
    pub(crate) fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn n(s: &str) -> VassalName {
        VassalName::parse(s).unwrap()
    }

    #[test]
    fn fresh_then_withdrawn_then_backlog_within_the_budget() {
        let starts = [
            (n("a.ini"), Origin::Backlog),
            (n("b.ini"), Origin::Withdrawn),
            (n("z.ini"), Origin::Fresh),
            (n("c.ini"), Origin::Backlog),
            (n("d.ini"), Origin::Fresh),
        ];
        let got = admit(starts, 3);
        assert_eq!(got.admitted, [n("z.ini"), n("d.ini"), n("b.ini")]);
        assert_eq!(got.held, [(n("a.ini"), Origin::Backlog), (n("c.ini"), Origin::Backlog)]);
    }

    #[test]
    fn the_withdrawn_are_taken_before_the_backlog_and_keep_their_place() {
        let mut q = Queues::default();
        q.hold(n("a.ini"), Origin::Backlog);
        q.hold(n("b.ini"), Origin::Fresh);
        q.withdraw(n("y.ini"));
        q.hold(n("z.ini"), Origin::Withdrawn);
        assert_eq!(q.len(), 4);
        assert_eq!(
            q.take(3),
            [(n("y.ini"), Origin::Withdrawn), (n("z.ini"), Origin::Withdrawn), (n("a.ini"), Origin::Backlog)]
        );
        assert_eq!(q.take(5), [(n("b.ini"), Origin::Backlog)]);
        assert!(q.is_empty());
    }
}
