use super::*;
use proptest::prelude::*;

fn row(state: &'static str, pid: Option<i32>, since: f64) -> Row {
    Row { state, pid, since: Some(since), restarts: 0, last_exit: None }
}

fn table(rows: &[(&str, Row)]) -> BTreeMap<String, Row> {
    rows.iter().map(|(name, row)| ((*name).to_owned(), row.clone())).collect()
}

/// Writes everything pending, as a store that never fails would.
fn flush(dirty: &mut Dirty) -> Vec<Batch> {
    let mut batches = Vec::new();
    while !dirty.is_clean() {
        let batch = dirty.batch(SystemTime::now());
        assert!(!batch.is_empty(), "something is pending, so a batch carries it");
        dirty.written(&batch);
        batches.push(batch);
    }
    batches
}

#[test]
fn nothing_is_written_twice() {
    let now = Instant::now();
    let mut dirty = Dirty::default();
    let rows = table(&[("a.ini", row("running", Some(10), 100.0)), ("b.ini", row("starting", Some(11), 100.0))]);
    dirty.observe(rows.clone(), now);
    assert_eq!(dirty.due(), Some(now + NORMAL));
    let batches = flush(&mut dirty);
    assert_eq!(batches.len(), 1);
    assert_eq!(batches[0].upserts.len(), 2);
    assert!(batches[0].upserts.iter().all(|u| u.age.is_some()), "new rows get their since");
    dirty.observe(rows, now);
    assert!(dirty.is_clean(), "the same table again writes nothing");
    assert_eq!(dirty.due(), None);
}

#[test]
fn urgent_changes_are_due_sooner_and_since_is_kept_without_a_state_change() {
    let now = Instant::now();
    let mut dirty = Dirty::default();
    dirty.observe(table(&[("a.ini", row("running", Some(10), 100.0))]), now);
    flush(&mut dirty);
    dirty.observe(table(&[("a.ini", row("crashed", None, 105.0))]), now);
    assert_eq!(dirty.due(), Some(now + URGENT));
    let batch = &flush(&mut dirty)[0];
    assert!(batch.upserts[0].age.is_some(), "a new state writes its since");
    // A new pid in the same state (a restart seen late) keeps the stored since.
    dirty.observe(table(&[("a.ini", row("crashed", Some(12), 105.0))]), now);
    assert_eq!(dirty.due(), Some(now + NORMAL), "a pid alone is not urgent");
    assert_eq!(flush(&mut dirty)[0].upserts[0].age, None);
}

#[test]
fn a_crash_respawned_at_once_is_urgent() {
    let now = Instant::now();
    let mut dirty = Dirty::default();
    dirty.observe(table(&[("a.ini", row("running", Some(10), 100.0))]), now);
    flush(&mut dirty);
    let respawned = Row { last_exit: Some("signal SIGKILL".into()), restarts: 1, ..row("starting", Some(11), 101.0) };
    dirty.observe(table(&[("a.ini", respawned)]), now);
    assert_eq!(dirty.due(), Some(now + URGENT));
}

#[test]
fn removed_vassals_are_deleted_and_the_newest_value_wins() {
    let now = Instant::now();
    let mut dirty = Dirty::default();
    dirty.observe(table(&[("a.ini", row("running", Some(1), 1.0)), ("b.ini", row("running", Some(2), 1.0))]), now);
    flush(&mut dirty);
    dirty.observe(table(&[("b.ini", row("stopping", Some(2), 2.0))]), now);
    dirty.observe(table(&[("b.ini", row("stopped", None, 3.0))]), now + NORMAL);
    assert_eq!(dirty.due(), Some(now + URGENT), "an entry keeps its first deadline");
    let batch = &flush(&mut dirty)[0];
    assert_eq!(batch.deletes, ["a.ini"]);
    assert_eq!(batch.upserts.len(), 1);
    assert_eq!(batch.upserts[0].row.state, "stopped", "only the newest value is written");
}

#[test]
fn a_change_undone_before_its_write_writes_nothing() {
    let now = Instant::now();
    let mut dirty = Dirty::default();
    let rows = table(&[("a.ini", row("running", Some(1), 1.0))]);
    dirty.observe(rows.clone(), now);
    flush(&mut dirty);
    dirty.observe(table(&[]), now);
    assert!(!dirty.is_clean());
    dirty.observe(rows, now);
    assert!(dirty.is_clean());
}

#[test]
fn a_read_back_writes_only_the_differences() {
    let now = Instant::now();
    let mut dirty = Dirty::default();
    dirty.observe(table(&[("a.ini", row("running", Some(1), 1.0)), ("b.ini", row("running", Some(2), 1.0))]), now);
    let mut stored: HashMap<String, Row> = HashMap::new();
    stored.insert("a.ini".into(), Row { since: None, ..row("running", Some(1), 0.0) });
    stored.insert("gone.ini".into(), Row { since: None, ..row("crashed", None, 0.0) });
    dirty.stored(stored, now);
    let batch = &flush(&mut dirty)[0];
    assert_eq!(batch.deletes, ["gone.ini"]);
    assert_eq!(batch.upserts.iter().map(|u| u.name.as_str()).collect::<Vec<_>>(), ["b.ini"]);
}

#[test]
fn a_clean_stop_writes_every_vassal_stopped_without_a_process() {
    let now = Instant::now();
    let wall = UNIX_EPOCH + Duration::from_secs(500);
    let crashed = Row { last_exit: Some("code 1".into()), restarts: 2, ..row("crashed", None, 1.0) };
    let mut dirty = Dirty::default();
    dirty.observe(table(&[("a.ini", row("running", Some(1), 1.0)), ("b.ini", crashed)]), now);
    flush(&mut dirty);
    dirty.stop_all(true, wall, now);
    assert_eq!(dirty.vassals(), 2);
    let batch = &flush(&mut dirty)[0];
    assert!(batch.deletes.is_empty());
    for upsert in &batch.upserts {
        assert_eq!((upsert.row.state, upsert.row.pid, upsert.row.since), ("stopped", None, Some(500.0)));
        assert!(upsert.age.is_some(), "a new state writes its since");
    }
    assert_eq!(batch.upserts[1].row.last_exit.as_deref(), Some("code 1"), "the last exit and restarts are kept");

    // Before any table was shown, the rows the store holds are the ones stopped.
    let mut fresh = Dirty::default();
    let stored = HashMap::from([("c.ini".to_owned(), Row { since: None, ..row("running", Some(3), 0.0) })]);
    fresh.stored(stored, now);
    fresh.stop_all(false, wall, now);
    let batch = &flush(&mut fresh)[0];
    assert_eq!((batch.upserts.len(), batch.upserts[0].row.state), (1, "stopped"));
}

#[test]
fn statements_carry_at_most_max_rows() {
    let now = Instant::now();
    let mut dirty = Dirty::default();
    let rows = (0..2500).map(|i| (format!("v{i}"), row("running", Some(i), 1.0))).collect();
    dirty.observe(rows, now);
    let batches = flush(&mut dirty);
    assert_eq!(batches.iter().map(|b| b.upserts.len()).collect::<Vec<_>>(), [1000, 1000, 500]);
}

fn arb_row() -> impl Strategy<Value = Row> {
    let states = prop::sample::select(vec!["running", "starting", "crashed", "stopped", "held"]);
    (states, prop::option::of(1..5i32), 0..3u8, 0..3i32).prop_map(|(state, pid, since, restarts)| Row {
        state,
        pid,
        since: Some(f64::from(since)),
        restarts,
        last_exit: None,
    })
}

fn arb_table() -> impl Strategy<Value = BTreeMap<String, Row>> {
    prop::collection::btree_map(prop::sample::select(vec!["a", "b", "c", "d"]).prop_map(String::from), arb_row(), 0..4)
}

proptest! {
    /// Whatever the sequence of tables and partial flushes, flushing in the
    /// end leaves the store equal to the last table, and writes nothing more.
    #[test]
    fn the_store_converges_to_the_last_table(
        steps in prop::collection::vec((arb_table(), any::<bool>()), 1..12),
        stored in arb_table(),
    ) {
        let now = Instant::now();
        let mut dirty = Dirty::default();
        dirty.stored(stored.into_iter().collect(), now);
        let mut last = BTreeMap::new();
        for (rows, write) in steps {
            dirty.observe(rows.clone(), now);
            if write {
                flush(&mut dirty);
            }
            last = rows;
        }
        flush(&mut dirty);
        let mut written: Vec<(String, Row)> = dirty.written.clone().into_iter().collect();
        written.sort_by(|a, b| a.0.cmp(&b.0));
        prop_assert_eq!(written.len(), last.len());
        for ((name, stored), (want_name, want)) in written.iter().zip(&last) {
            prop_assert_eq!(name, want_name);
            prop_assert!(want.matches(stored), "{:?} vs {:?}", want, stored);
        }
        dirty.observe(last, now);
        prop_assert!(dirty.is_clean());
    }
}
