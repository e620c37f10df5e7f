//! Chaos: the emperor is `kill -9`ed over and over at moments picked by a
//! seeded PRNG while configs are added, rewritten and removed and vassals
//! are killed, uWSGI-style and native alike, always on the same state dir.
//! One more emperor then has to converge on exactly the wanted fleet: one
//! process per wanted vassal, none for removed ones, no process of ours that
//! it does not manage, and one fd holder (not one per crash).
//!
//! The randomness is in *which* operation comes next and *which* condition
//! it and the kill wait for (nothing, the emperor's "started" line, the start
//! record of a vassal just added, the wanted fleet running), never in a sleep.

mod common;

use common::*;
use serde_json::Value;
use std::collections::{BTreeMap, BTreeSet};
use std::fs;
use std::process::Command;
use std::time::Duration;

/// The fixed seed: every run replays the same sequence (`CHAOS_SEED=<n>`
/// replays another one, to explore).
const SEED: u64 = 0x9E37_79B9_7F4A_7C15;
/// Emperor lifetimes ended by `kill -9`.
const ROUNDS: usize = 24;
/// Vassals the rounds pick from: uWSGI-style (`u*`) and native (`n*`).
const NAMES: [&str; 8] = ["u0.ini", "u1.ini", "u2.ini", "u3.ini", "n0.ini", "n1.ini", "n2.ini", "n3.ini"];
/// How long the last emperor may take to converge.
const CONVERGE: Duration = Duration::from_secs(30);

/// Marsaglia's xorshift64: small, deterministic, no dependency.
struct XorShift(u64);

impl XorShift {
    fn next(&mut self) -> u64 {
        let mut x = self.0;
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        self.0 = x;
        x
    }

    /// A number in `0..n`.
    fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }

    /// One element of `items`, if there is any.
    fn pick<'a>(&mut self, items: &[&'a str]) -> Option<&'a str> {
        (!items.is_empty()).then(|| items[self.below(items.len())])
    }
}

/// The config of `name` at revision `rev`: uWSGI-style for `u*`, native for `n*`.
fn config(name: &str, rev: usize) -> String {
    if name.starts_with('u') {
        uwsgi_ini(&format!("# rev {rev}"))
    } else {
        format!("[vassal]\nexec = {STUB} native\n# rev {rev}\n")
    }
}

/// What the test wants and has done so far.
struct Chaos {
    h: Harness,
    rng: XorShift,
    /// Configs present in the vassals dir.
    wanted: BTreeSet<&'static str>,
    /// Configs written so far (each write a new revision).
    rev: usize,
    /// Vassal processes killed so far.
    vassals_killed: usize,
}

/// A moment of an emperor's life: when the next operation or the
/// `kill -9` comes.
#[derive(Debug, Clone, Copy)]
enum Moment {
    /// At once.
    Now,
    /// As soon as the emperor logged that it started.
    Started,
    /// As soon as the vassal added last recorded its start.
    Spawned,
    /// As soon as exactly the wanted vassals run, one process each.
    Settled,
}

/// A vassal added in this round, with its start records at that time.
type Pending = Option<(&'static str, usize)>;

impl Chaos {
    /// Live stub processes carrying this state dir's `EMPEROR_ID`, with the
    /// `EMPEROR_VASSAL` each carries (`name:generation`).
    fn stubs(&self) -> BTreeMap<i32, String> {
        let Ok(id) = fs::read_to_string(self.h.state.join("emperor-id")) else { return BTreeMap::new() };
        let marker = format!("EMPEROR_ID={}", id.trim());
        all_pids()
            .into_iter()
            .filter(|&pid| alive(pid) && cmdline(pid).first().map(String::as_str) == Some(STUB))
            .filter_map(|pid| {
                let env = environ(pid);
                env.contains(&marker).then(|| (pid, env_of(pid, "EMPEROR_VASSAL").unwrap_or_default()))
            })
            .collect()
    }

    /// How many times the emperor logged that it started.
    fn started_lines(&self) -> usize {
        self.h.log_text().matches("emperor started").count()
    }

    /// Writes `name`'s config at the next revision: added, or rewritten.
    fn write(&mut self, name: &'static str) {
        self.rev += 1;
        put(&self.h.vassal(name), &config(name, self.rev));
        self.wanted.insert(name);
    }

    /// One random operation; the name it added, if it added one (a spawn follows).
    fn operate(&mut self) -> Option<&'static str> {
        let absent: Vec<&'static str> = NAMES.iter().copied().filter(|n| !self.wanted.contains(n)).collect();
        let present: Vec<&'static str> = self.wanted.iter().copied().collect();
        // Removable: those whose kind (the first letter) keeps another wanted vassal.
        let kind_count = |n: &str| present.iter().filter(|p| p.as_bytes()[0] == n.as_bytes()[0]).count();
        let removable: Vec<&'static str> = present.iter().copied().filter(|n| kind_count(n) > 1).collect();
        match self.rng.below(5) {
            0 | 1 if !absent.is_empty() => {
                let name = self.rng.pick(&absent).expect("absent");
                self.write(name);
                Some(name)
            }
            3 if !removable.is_empty() => {
                let name = self.rng.pick(&removable).expect("removable");
                fs::remove_file(self.h.vassal(name)).expect("remove config");
                self.wanted.remove(name);
                None
            }
            4 => {
                let stubs: Vec<i32> = self.stubs().into_keys().collect();
                if !stubs.is_empty() {
                    kill(stubs[self.rng.below(stubs.len())], libc::SIGKILL);
                    self.vassals_killed += 1;
                }
                None
            }
            _ => {
                let name = self.rng.pick(&present).expect("a config is always there");
                self.write(name);
                None
            }
        }
    }

    /// Whether exactly the wanted vassals run, one live process each.
    fn settled(&self) -> bool {
        let mut names: Vec<String> = self.stubs().into_values().map(|v| vassal_name(&v).to_owned()).collect();
        names.sort();
        names.iter().map(String::as_str).eq(self.wanted.iter().copied())
    }

    /// A moment picked at random among those that will come.
    fn pick_moment(&mut self, pending: Pending) -> Moment {
        match self.rng.below(4) {
            0 => Moment::Now,
            1 => Moment::Started,
            2 if pending.is_some() => Moment::Spawned,
            2 => Moment::Now,
            _ => Moment::Settled,
        }
    }

    /// Waits for `moment` of the emperor that logged `started` lines before it.
    fn wait_for(&self, moment: Moment, started: usize, pending: Pending) {
        match (moment, pending) {
            (Moment::Now, _) => {}
            (Moment::Started, _) => {
                wait_until(DEADLINE, "the emperor's started line", || cond(self.started_lines() > started));
            }
            (Moment::Spawned, Some((name, before))) => {
                wait_until(DEADLINE, format!("{name} to start"), || cond(self.h.starts(name).len() > before));
            }
            (Moment::Spawned, None) => unreachable!("picked only when a start is pending"),
            (Moment::Settled, _) => {
                wait_until(DEADLINE, format!("exactly {:?} to run", self.wanted), || cond(self.settled()));
            }
        }
    }

    /// One emperor lifetime: start; a few operations, each at a picked
    /// moment; `kill -9` at a picked moment.
    fn round(&mut self, round: usize) {
        let started = self.started_lines();
        let run = self.h.spawn_dir(&[], &[]);
        let mut pending: Pending = None;
        let mut moments = Vec::new();
        for _ in 0..1 + self.rng.below(3) {
            let moment = self.pick_moment(pending);
            self.wait_for(moment, started, pending);
            moments.push(moment);
            let running = self.stubs().into_values().map(|v| vassal_name(&v).to_owned()).collect::<Vec<_>>();
            // A config put back while its process still runs is a change
            // (a reload), not a new vassal: only an added name with no
            // process must start.
            if let Some(name) = self.operate().filter(|n| !running.iter().any(|r| r == n)) {
                pending = Some((name, self.h.starts(name).len()));
            }
            pending = pending.filter(|(name, _)| self.wanted.contains(name));
        }
        let moment = self.pick_moment(pending);
        self.wait_for(moment, started, pending);
        eprintln!("round {round}: operations at {moments:?}, kill at {moment:?}, wanted {:?}", self.wanted);
        run.kill9();
    }
}

/// The vassal name of an `EMPEROR_VASSAL` value (`name:generation`).
fn vassal_name(value: &str) -> &str {
    value.rsplit_once(':').map_or(value, |(name, _)| name)
}

/// [`SEED`], or another one from `CHAOS_SEED` (mixed, so small numbers do too).
fn seed() -> u64 {
    match std::env::var("CHAOS_SEED") {
        Ok(text) => text.parse::<u64>().expect("CHAOS_SEED is a number").wrapping_mul(SEED) | 1,
        Err(_) => SEED,
    }
}

/// `emperor ctl list -o json` of `h`, once the control socket answers.
fn ctl_list(h: &Harness) -> Option<Vec<Value>> {
    let out = Command::new(EMPEROR)
        .args(["ctl", "--control-socket"])
        .arg(h.state.join("control.sock"))
        .args(["list", "-o", "json"])
        .output()
        .expect("run emperor ctl");
    out.status.success().then(|| serde_json::from_slice(&out.stdout).expect("ctl list prints a JSON array"))
}

/// Running vassals in `list`, by name, with their pid.
fn running(list: &[Value]) -> BTreeMap<String, i32> {
    list.iter()
        .filter(|v| v["state"] == "running")
        .filter_map(|v| Some((v["name"].as_str()?.to_owned(), v["pid"].as_i64()? as i32)))
        .collect()
}

#[test]
fn repeated_kill9_under_churn_converges_to_exactly_the_wanted_vassals() {
    let mut chaos =
        Chaos { h: Harness::new(), rng: XorShift(seed()), wanted: BTreeSet::new(), rev: 0, vassals_killed: 0 };
    for name in ["u0.ini", "n0.ini"] {
        chaos.write(name);
    }
    for round in 0..ROUNDS {
        chaos.round(round);
    }

    eprintln!("{} configs written, {} vassals killed", chaos.rev, chaos.vassals_killed);
    assert!(chaos.vassals_killed > 0, "the seed kills vassals");
    let kinds: BTreeSet<char> = chaos.wanted.iter().filter_map(|n| n.chars().next()).collect();
    assert_eq!(kinds, BTreeSet::from(['n', 'u']), "both uWSGI-style and native vassals are wanted");

    let _last = chaos.h.spawn_dir(&[], &[]);
    let wanted: Vec<String> = chaos.wanted.iter().map(|n| n.to_string()).collect();
    // Converged: ctl lists every wanted vassal running, and the live stub
    // processes of ours are exactly those pids.
    let converged = poll_until(CONVERGE, POLL, || {
        let listed = running(&ctl_list(&chaos.h)?);
        let stubs = chaos.stubs();
        let listed_pids: BTreeSet<i32> = listed.values().copied().collect();
        (listed.keys().eq(wanted.iter()) && stubs.keys().copied().collect::<BTreeSet<_>>() == listed_pids)
            .then_some((listed, stubs))
    });
    let Some((listed, stubs)) = converged else {
        panic!(
            "no convergence within {CONVERGE:?}: wanted {wanted:?}, ctl running {:?}, live stubs {:?}",
            ctl_list(&chaos.h).as_deref().map(running),
            chaos.stubs()
        );
    };

    for name in &wanted {
        let own: Vec<i32> = stubs.iter().filter(|(_, v)| vassal_name(v) == name).map(|(p, _)| *p).collect();
        assert_eq!(own, [listed[name]], "{name}: exactly one live process, the one ctl lists");
    }
    for name in NAMES.iter().filter(|n| !chaos.wanted.contains(*n)) {
        let own = stubs.values().filter(|v| vassal_name(v) == *name).count();
        assert_eq!(own, 0, "{name} was removed: no process may run for it");
    }
    let socket = chaos.h.state.join("fd-holder.sock").display().to_string();
    let holders: Vec<i32> = all_pids()
        .into_iter()
        .filter(|&pid| alive(pid) && cmdline(pid).iter().any(|a| a == "--fd-holder") && cmdline(pid).contains(&socket))
        .collect();
    assert_eq!(holders.len(), 1, "one fd holder, however often the emperor died: {holders:?}");
    assert_eq!(stubs.len(), wanted.len(), "no live stub the emperor does not manage: {stubs:?}");
}
