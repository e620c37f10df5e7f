//! Waits and assertions that several test files share: inline configs and
//! control bytes the stub received, and the vassals an emperor manages.

use super::harness::Harness;
use super::proc::{all_pids, environ, proc_state, session_leader};
use super::stub::escape;
use super::{cond, wait_until, DEADLINE};
use std::collections::BTreeMap;
use std::fs;

/// Live session leaders carrying this harness's emperor id (from
/// `state/emperor-id`), by vassal name: the vassal processes the emperor of
/// this state dir manages, however it got them.
pub fn our_vassals(h: &Harness) -> BTreeMap<String, Vec<i32>> {
    let mut out: BTreeMap<String, Vec<i32>> = BTreeMap::new();
    let Ok(id) = fs::read_to_string(h.state.join("emperor-id")) else { return out };
    let marker = format!("EMPEROR_ID={}", id.trim());
    for pid in all_pids() {
        if !session_leader(pid) || proc_state(pid) == Some('Z') {
            continue;
        }
        let env = environ(pid);
        if !env.contains(&marker) {
            continue;
        }
        if let Some(v) = env.iter().find_map(|v| v.strip_prefix("EMPEROR_VASSAL=")) {
            out.entry(v.rsplit_once(':').map_or(v, |(n, _)| n).to_owned()).or_default().push(pid);
        }
    }
    out
}

/// What the stub last received as `name`'s inline config.
pub fn received_config(h: &Harness, name: &str) -> Option<String> {
    fs::read_to_string(h.record.join(format!("{}.config", escape(name)))).ok()
}

/// Waits until the stub received `expected` as `name`'s inline config.
pub fn wait_config(h: &Harness, name: &str, expected: &str) {
    wait_until(DEADLINE, format!("{name} to receive config {expected:?}"), || {
        cond(received_config(h, name).as_deref() == Some(expected))
    });
}

/// How many times `name` received the control byte `byte`.
pub fn recvs(h: &Harness, name: &str, byte: u8) -> usize {
    h.events(name).iter().filter(|e| e.is_recv(byte)).count()
}

/// Waits until `name` received the control byte `byte` at least `n` times.
pub fn wait_recvs(h: &Harness, name: &str, byte: u8, n: usize) {
    wait_until(DEADLINE, format!("{name}: {n} × recv {byte}"), || cond(recvs(h, name, byte) >= n));
}

/// Waits until `name` has received `n` inline configs, the last one `text`.
pub fn wait_nth_config(h: &Harness, name: &str, n: usize, text: &str) {
    wait_until(DEADLINE, format!("{name}: config #{n} = {text:?}"), || {
        cond(h.events_of(name, "config").len() >= n && received_config(h, name).as_deref() == Some(text))
    });
}

/// After an outage of a table source (the standard scenario): `new.ini`
/// (created meanwhile) starts, `gone.ini` (deleted meanwhile, pid `gone`)
/// stops, `keep.ini` (pid `keep`, changed meanwhile) gets `keep_config`
/// without a restart, and the outage and the recovery are logged once each.
pub fn assert_outage_recovered(h: &Harness, keep: i32, gone: i32, keep_config: &str, within: std::time::Duration) {
    wait_until(within, "new.ini to start after the outage", || h.starts("new.ini").first().cloned());
    wait_until(within, "gone.ini to stop", || cond(super::proc::reaped(gone)));
    wait_config(h, "keep.ini", keep_config);
    assert!(super::proc::alive(keep));
    assert_eq!(h.starts("keep.ini").len(), 1);
    let log = h.log_text();
    assert_eq!(log.matches("failed; running vassals are kept").count(), 1, "one warning per outage:\n{log}");
    assert_eq!(log.matches("source recovered").count(), 1, "one recovery line:\n{log}");
}
