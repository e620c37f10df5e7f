//! The checks every source must pass, written once against [`Driver`]; each
//! family module runs them with a driver of its own (see `conformance!`).

use crate::common::DEADLINE;
use crate::harness::{start, touched, wait_warning, warnings, Running, View};
use emperor::source::supervise::SHUTDOWN_GRACE;
use emperor::source::SourceEvent;
use reconciler::{ConfigRef, SourceId};
use std::time::Duration;

/// How a family tells the emperor what it offers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Family {
    /// Lists everything (a first complete snapshot), then sends changes.
    Snapshot,
    /// Relays one command per message (upsert or remove); no listing.
    Message,
}

/// Changes what one source offers, through its real backend.
pub trait Driver {
    /// The family of the source.
    const FAMILY: Family;
    /// The source URI.
    fn uri(&self) -> String;
    /// The vassal name the source gives to the item put as `base`.
    fn name(&self, base: &str) -> String {
        base.to_owned()
    }
    /// Creates item `base`, or changes it, with a config tagged `tag`.
    fn put(&mut self, base: &str, tag: &str);
    /// Deletes item `base`.
    fn delete(&mut self, base: &str);
    /// Makes the source re-read without changing anything it offers.
    fn noop(&mut self) {}
    /// Waits until the started source takes changes.
    fn ready(&mut self, _source: &Running) {}
}

/// A backend that can go away and come back.
pub trait Outage: Driver {
    /// The warning that says the source noticed (once per outage).
    const NOTICE: &'static str;
    /// The line that says it recovered, when it logs one.
    const RECOVERED: Option<&'static str>;
    /// How long recovery may take (the sources back off up to 10 s).
    const RECOVERY: Duration = Duration::from_secs(40);
    /// Stops the backend (idempotent).
    fn stop(&mut self);
    /// Brings the backend back where the test can change it but the source
    /// cannot reach it yet; `false` when the backend cannot (a broker: then
    /// the changes are made after [`Outage::restart`]).
    fn cut_off(&mut self) -> bool;
    /// Brings the backend back for the source.
    fn restart(&mut self);
}

/// Bad items put, and what their warnings must say.
pub struct Bad {
    /// How many bad items (messages: each gets exactly one warning).
    pub items: usize,
    /// What every warning of a message source contains.
    pub refused: &'static str,
    /// Texts a warning must contain (snapshot sources: exactly one each)
    /// and, if given, what else that warning must say.
    pub warnings: Vec<(String, Option<&'static str>)>,
}

/// Where bad items come from.
pub trait BadItems: Driver {
    /// Puts bad items.
    fn put_bad(&mut self) -> Bad;
    /// Names of good items [`BadItems::put_bad`] puts among the bad ones.
    fn also_good(&self) -> Vec<String> {
        Vec::new()
    }
    /// The inline config the first `good.ini` has (a later duplicate must
    /// not replace it), for sources with inline configs.
    fn good_config(&self) -> Option<String> {
        None
    }
    /// Text every warning of this source contains (its id by default).
    fn scope(&self, id: &SourceId) -> String {
        id.0.clone()
    }
}

/// A URI form that carries a password.
pub trait Secret: Driver {
    /// URIs of this family with `secret` as their password; the first is started.
    fn uris_with(&self, secret: &str) -> Vec<String>;
    /// URIs with `secret` as their password that the family refuses (it
    /// takes passwords from elsewhere only).
    fn refused_with(&self, _secret: &str) -> Vec<String> {
        Vec::new()
    }
}

/// Starts the source; waits for its first listing (snapshot sources,
/// returning that first event) or until it takes changes (message sources).
fn started<D: Driver>(d: &mut D) -> (Running, Option<SourceEvent>) {
    let mut s = start(&d.uri());
    d.ready(&s);
    let first = (D::FAMILY == Family::Snapshot).then(|| s.next("the first listing"));
    (s, first)
}

/// Snapshot sources: the first event is a complete snapshot of what exists.
/// Message sources: an upsert then a remove arrive as such.
pub fn first_events<D: Driver>(mut d: D) {
    if D::FAMILY == Family::Message {
        let (mut s, _) = started(&mut d);
        let app = d.name("app.ini");
        d.put("app.ini", "one");
        match s.next("the upsert") {
            SourceEvent::Upsert(spec) => assert_eq!(spec.name.as_str(), app),
            other => panic!("expected an upsert of {app}, got {other:?}"),
        }
        d.delete("app.ini");
        match s.next("the remove") {
            SourceEvent::Remove { name, source } => assert_eq!((name.as_str(), &source), (app.as_str(), &s.id)),
            other => panic!("expected a remove of {app}, got {other:?}"),
        }
        return;
    }
    d.put("a.ini", "one");
    d.put("b.ini", "one");
    let (s, first) = started(&mut d);
    match first {
        Some(SourceEvent::Snapshot { source, specs }) => {
            assert_eq!(source, s.id);
            let mut names: Vec<String> = specs.iter().map(|v| v.name.as_str().to_owned()).collect();
            names.sort();
            let mut expected = vec![d.name("a.ini"), d.name("b.ini")];
            expected.sort();
            assert_eq!(names, expected, "the first snapshot lists everything");
            assert!(specs.iter().all(|v| v.source == s.id), "every spec names its source: {specs:?}");
        }
        other => panic!("the first event must be a snapshot, got {other:?}"),
    }
}

/// The source ends within one second of shutdown (its task and every
/// sender of its events gone), even right after a change.
pub fn ends_within_a_second_of_shutdown<D: Driver>(mut d: D) {
    let (mut s, _) = started(&mut d);
    d.put("late.ini", "one");
    let (took, closed) = s.shutdown();
    assert!(took < SHUTDOWN_GRACE, "{}: shutdown took {took:?}", s.id);
    assert!(closed, "{}: the event queue is still open after shutdown", s.id);
}

/// Create → the vassal appears; change → its version changes; delete → it
/// goes away.
pub fn create_change_delete<D: Driver>(mut d: D) {
    let (mut s, _) = started(&mut d);
    let app = d.name("app.ini");
    d.put("app.ini", "v1");
    s.until(DEADLINE, "app.ini to appear", |v| v.specs.contains_key(&app));
    let v1 = s.view.version(&app);
    d.put("app.ini", "v2");
    s.until(DEADLINE, "app.ini to get a new version", |v| v.version(&app).is_some_and(|v2| Some(&v2) != v1.as_ref()));
    d.delete("app.ini");
    s.until(DEADLINE, "app.ini to go away", |v| !v.specs.contains_key(&app));
}

/// An unchanged state sends nothing: after re-reads that change nothing
/// (no-op triggers, and the short resync running all along), the next
/// event is exactly the real change that follows them.
///
/// Message sources have no state to re-read: every message is a command
/// (a repeated touch must reload), and the only message that changes
/// nothing, a refused one, is checked by [`bad_item_reported_once`].
pub fn unchanged_state_sends_nothing<D: Driver>(mut d: D) {
    assert_eq!(D::FAMILY, Family::Snapshot, "see the doc comment");
    d.put("a.ini", "one");
    let (mut s, _) = started(&mut d);
    for _ in 0..3 {
        d.noop();
    }
    d.put("new.ini", "one");
    let before = s.view.clone();
    let event = s.next("the real change");
    assert_eq!(touched(&before, &event), [d.name("new.ini")], "the first event after no-op re-reads: {event:?}");
}

/// An outage never removes a vassal: while the backend is away nothing is
/// sent; once it is back, what changed meanwhile (or after) arrives, and the
/// outage and the recovery are logged once each.
pub fn outage_removes_nothing<D: Outage>(mut d: D) {
    let (mut s, _) = started(&mut d);
    let [keep, gone, new] = ["keep.ini", "gone.ini", "new.ini"].map(|n| d.name(n));
    d.put("keep.ini", "k1");
    d.put("gone.ini", "g");
    s.until(DEADLINE, "keep.ini and gone.ini", |v| v.specs.contains_key(&keep) && v.specs.contains_key(&gone));
    let k1 = s.view.version(&keep);

    d.stop();
    wait_warning(D::RECOVERY, &s.id.0, D::NOTICE);
    let edited_meanwhile = d.cut_off();
    let edit = |d: &mut D| {
        d.put("keep.ini", "k2");
        d.delete("gone.ini");
        d.put("new.ini", "n");
    };
    if edited_meanwhile {
        edit(&mut d);
        d.stop();
    }
    let during = s.drain();
    assert!(during.is_empty(), "nothing is sent while the backend is away: {during:?}");
    assert!(s.view.specs.contains_key(&keep) && s.view.specs.contains_key(&gone));

    d.restart();
    if !edited_meanwhile {
        edit(&mut d);
    }
    let done = |v: &View| {
        v.specs.contains_key(&new) && !v.specs.contains_key(&gone) && v.version(&keep).is_some_and(|k| Some(k) != k1)
    };
    while !done(&s.view) {
        let event = s.next_within(D::RECOVERY, "the changes after the outage");
        assert!(s.view.specs.contains_key(&keep), "keep.ini was never removed; it was by {event:?}");
    }
    let notices = warnings(&s.id.0, D::NOTICE);
    assert_eq!(notices.len(), 1, "one warning per outage: {notices:#?}");
    if let Some(recovered) = D::RECOVERED {
        let lines: Vec<String> = s.log().into_iter().filter(|l| l.contains(recovered)).collect();
        assert_eq!(lines.len(), 1, "one recovery line: {lines:#?}");
    }
}

/// Source ids and logs carry no secret: every URI form with a password
/// yields an id without it (or, where refused, an error without it), and nothing the source logs while it runs (or
/// fails to log in) contains it.
pub fn no_secret_in_ids_or_logs<D: Secret>(d: D) {
    let secret = format!("s3cr3t-{}-{}", std::process::id(), std::any::type_name::<D>().len());
    for uri in d.uris_with(&secret) {
        let id = emperor::source::parse(&uri).unwrap_or_else(|e| panic!("{e}")).id();
        assert!(!id.0.contains(&secret), "the id of {uri} carries the password: {id}");
    }
    for uri in d.refused_with(&secret) {
        let error = emperor::source::parse(&uri).map(|s| s.id()).expect_err(&format!("{uri} is refused"));
        assert!(!error.to_string().contains(&secret), "the error of {uri} carries the password: {error}");
    }
    let mut s = start(&d.uris_with(&secret)[0]);
    // Either it gets in (the snapshot) or it says why not (a warning).
    crate::common::wait_until(DEADLINE * 2, "a first event or a warning", || {
        let warned = s.log().iter().any(|l| l.starts_with(" WARN") || l.starts_with("ERROR"));
        (warned || !s.drain().is_empty()).then_some(())
    });
    let log = crate::harness::whole_log();
    assert!(!log.contains(&secret), "the password is in the log:\n{log}");
}

/// A bad item is reported once: one warning naming it, not one per re-read
/// (or per message), and the good items still arrive.
pub fn bad_item_reported_once<D: BadItems>(mut d: D) {
    let good = d.name("good.ini");
    if D::FAMILY == Family::Message {
        let (mut s, _) = started(&mut d);
        let bad = d.put_bad();
        d.put("good.ini", "good");
        let before = s.view.clone();
        let event = s.next("the good message, after every bad one");
        assert_eq!(touched(&before, &event), [good], "bad messages send nothing: {event:?}");
        let scope = d.scope(&s.id);
        let refused = warnings(&scope, bad.refused);
        assert_eq!(refused.len(), bad.items, "one warning per bad message: {refused:#?}");
        for (needle, says) in &bad.warnings {
            let line = warnings(&scope, needle).into_iter().next();
            let line = line.unwrap_or_else(|| panic!("no warning naming {needle:?}: {refused:#?}"));
            assert!(says.is_none_or(|t| line.contains(t)), "{line}: should say {says:?}");
        }
        return;
    }
    d.put("good.ini", "good");
    let bad = d.put_bad();
    let (mut s, _) = started(&mut d);
    let scope = d.scope(&s.id);
    for (needle, says) in &bad.warnings {
        let line = wait_warning(DEADLINE, &scope, needle);
        assert!(says.is_none_or(|t| line.contains(t)), "{line}: should say {says:?}");
    }
    let mut expected = d.also_good();
    expected.push(good.clone());
    expected.sort();
    assert_eq!(s.view.names(), expected, "only the good items arrive");
    if let Some(config) = d.good_config() {
        assert_eq!(s.view.specs[&good].config, ConfigRef::Inline(config), "the first good.ini is used");
    }
    for _ in 0..3 {
        d.noop();
    }
    let later = d.name("later.ini");
    d.put("later.ini", "later");
    s.until(DEADLINE, "later.ini, after re-reads", |v| v.specs.contains_key(&later));
    for (needle, _) in &bad.warnings {
        let lines = warnings(&scope, needle);
        assert_eq!(lines.len(), 1, "{needle}: reported once: {lines:#?}");
    }
    expected.push(later);
    expected.sort();
    assert_eq!(s.view.names(), expected, "only the good items arrive");
}
