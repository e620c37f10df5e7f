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
//!
//! Recording intents costs a flush per round that records any; a round
//! therefore records them for a batch of starts ahead of what it makes (see
//! [`Controller::set_intent_batch`](crate::Controller::set_intent_batch)).
//! A start announced and not made stays *prepared*, with its generation and
//! its durable intent, and a later round makes it without recording it
//! again, as long as its spec is the same: the rounds that follow make the
//! prepared starts first, and only a round that has none left (or a change
//! just made) records new intents.

use crate::{VassalName, VassalSpec};
use std::collections::{BTreeMap, BTreeSet};

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
    /// Starts the round announces (records the intents of) with its own
    /// but leaves prepared for the next rounds.
    pub ahead: Vec<VassalName>,
    /// The starts left for later rounds, with where each came from.
    pub held: Vec<(VassalName, Origin)>,
}

/// One start a round planned: its name, where it comes from, and whether it
/// is prepared (announced by an earlier round, with the same spec).
pub type Planned = (VassalName, Origin, bool);

/// Orders a round's planned starts by [`Origin`] (keeping the given order
/// within each origin), admits up to `budget` of them and holds back the
/// others. While prepared starts wait and no change just made needs an
/// intent, the round makes only prepared ones: it records nothing. A round
/// that records intents for the backlog also announces the next starts that
/// need one, up to `batch` starts in all, so that the following rounds need
/// not record theirs; a round with a change just made announces none ahead,
/// so that the change waits for no more than its round makes. Pure, so that
/// the order is tested apart from any process.
pub fn admit(starts: impl IntoIterator<Item = Planned>, budget: usize, batch: usize) -> Admission {
    let mut starts: Vec<Planned> = starts.into_iter().collect();
    starts.sort_by_key(|(_, origin, _)| *origin);
    let fresh_needs_intent = starts.iter().any(|(_, origin, prepared)| *origin == Origin::Fresh && !prepared);
    let only_prepared = !fresh_needs_intent && starts.iter().any(|(_, _, prepared)| *prepared);
    let mut admission = Admission::default();
    for (name, origin, prepared) in starts {
        let made = admission.admitted.len();
        if made < budget && (prepared || !only_prepared) {
            admission.admitted.push(name);
        } else if !prepared && !only_prepared && !fresh_needs_intent && made + admission.ahead.len() < batch {
            admission.ahead.push(name);
        } else {
            admission.held.push((name, origin));
        }
    }
    admission
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

/// Starts announced to the executor and not made yet: each keeps its spec
/// and generation (and so its durable intent) for the round that makes it.
#[derive(Debug, Default)]
pub(crate) struct Prepared(BTreeMap<VassalName, (VassalSpec, u64)>);

impl Prepared {
    /// Keeps a start announced and not made.
    pub(crate) fn keep(&mut self, start: (VassalSpec, u64)) {
        self.0.insert(start.0.name.clone(), start);
    }

    /// The prepared start of `name`, if any.
    pub(crate) fn get(&self, name: &VassalName) -> Option<&(VassalSpec, u64)> {
        self.0.get(name)
    }

    /// Whether a start of `name` is prepared.
    pub(crate) fn contains(&self, name: &VassalName) -> bool {
        self.0.contains_key(name)
    }

    /// Takes the prepared start of `name`: it is being made.
    pub(crate) fn take(&mut self, name: &VassalName) -> Option<(VassalSpec, u64)> {
        self.0.remove(name)
    }

    /// Drops the prepared starts of `names` that a round cannot make as
    /// they were prepared: `wanted` gives the spec the round would start a
    /// name with (`None`: the round plans no start of it), and a prepared
    /// start of another spec is never made. Returns the ones dropped, for
    /// [`Executor::withdraw`](crate::Executor::withdraw).
    pub(crate) fn drop_stale<'a>(
        &mut self,
        names: &BTreeSet<VassalName>,
        wanted: impl Fn(&VassalName) -> Option<&'a VassalSpec>,
    ) -> Vec<(VassalSpec, u64)> {
        let stale: Vec<VassalName> = self
            .0
            .iter()
            .filter(|(name, (spec, _))| names.contains(*name) && wanted(name) != Some(spec))
            .map(|(name, _)| name.clone())
            .collect();
        stale.iter().filter_map(|name| self.0.remove(name)).collect()
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
            (n("a.ini"), Origin::Backlog, false),
            (n("b.ini"), Origin::Withdrawn, true),
            (n("z.ini"), Origin::Fresh, false),
            (n("c.ini"), Origin::Backlog, false),
            (n("d.ini"), Origin::Fresh, false),
        ];
        let got = admit(starts, 3, 0);
        assert_eq!(got.admitted, [n("z.ini"), n("d.ini"), n("b.ini")]);
        assert!(got.ahead.is_empty());
        assert_eq!(got.held, [(n("a.ini"), Origin::Backlog), (n("c.ini"), Origin::Backlog)]);
    }

    #[test]
    fn a_round_that_records_intents_announces_a_batch_ahead() {
        let starts = (0..6).map(|i| (n(&format!("s{i}.ini")), Origin::Backlog, false));
        let got = admit(starts, 2, 5);
        assert_eq!(got.admitted, [n("s0.ini"), n("s1.ini")]);
        assert_eq!(got.ahead, [n("s2.ini"), n("s3.ini"), n("s4.ini")]);
        assert_eq!(got.held, [(n("s5.ini"), Origin::Backlog)]);
    }

    #[test]
    fn prepared_starts_go_first_and_alone_unless_a_change_needs_an_intent() {
        let waiting = [(n("p.ini"), Origin::Withdrawn, true), (n("b.ini"), Origin::Backlog, false)];
        let got = admit(waiting.clone(), 4, 8);
        assert_eq!(got.admitted, [n("p.ini")], "nothing recorded while a prepared start waits");
        assert!(got.ahead.is_empty());
        assert_eq!(got.held, [(n("b.ini"), Origin::Backlog)]);
        let changed = waiting.into_iter().chain([(n("new.ini"), Origin::Fresh, false)]);
        let got = admit(changed.clone(), 2, 4);
        assert_eq!(got.admitted, [n("new.ini"), n("p.ini")], "the change first, then the prepared one");
        assert!(got.ahead.is_empty(), "nothing announced ahead of a change");
        assert_eq!(got.held, [(n("b.ini"), Origin::Backlog)]);
        let got = admit(changed, 3, 4);
        assert_eq!(got.admitted, [n("new.ini"), n("p.ini"), n("b.ini")], "the backlog goes on within the budget");
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
