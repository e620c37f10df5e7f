//! The loop's events: one per thing done to a vassal, numbered in order,
//! stored in the round's flush and published to followers after it.

use super::*;
use crate::control::Kind;

/// The events published since the last call, as (kind, vassal or source).
fn published(rx: &mut tokio::sync::broadcast::Receiver<Arc<crate::control::events::Posted>>) -> Vec<(Kind, String)> {
    let mut seen = Vec::new();
    while let Ok(posted) = rx.try_recv() {
        let e = &posted.event;
        seen.push((e.event, e.vassal.clone().or(e.source.clone()).unwrap_or_default()));
    }
    seen
}

fn ev(kind: Kind, whom: &str) -> (Kind, String) {
    (kind, whom.to_owned())
}

#[tokio::test(start_paused = true)]
async fn spawns_exits_crashes_and_stops_are_published_in_order_and_stored() {
    let h = Harness::start();
    let mut rx = h.control.events.subscribe();
    h.send(snapshot(DIR, &[("a.ini", "1")])).await;
    assert_eq!(published(&mut rx), [ev(Kind::SourceSynced, DIR), ev(Kind::Spawned, "a.ini")]);
    h.exit("a.ini").await;
    h.settle().await;
    let crash = [ev(Kind::Exited, "a.ini"), ev(Kind::Crashed, "a.ini"), ev(Kind::Spawned, "a.ini")];
    assert_eq!(published(&mut rx)[..3], crash, "the first crash respawns at once");
    h.exit("a.ini").await;
    h.settle().await;
    let events = h.store.events().after(0).expect("stored");
    let stored: Vec<crate::control::Event> =
        events.events.iter().map(|(_, line)| serde_json::from_slice(line).expect("an event")).collect();
    let crashed = stored.iter().rfind(|e| e.event == Kind::Crashed).expect("crashed");
    assert_eq!(crashed.detail.respawn_in, Some(POLICY.min_ms as f64 / 1000.0), "the second waits the backoff");
    let numbers: Vec<u64> = events.events.iter().map(|(seq, _)| *seq).collect();
    assert!(numbers.windows(2).all(|w| w[1] == w[0] + 1), "numbered in order: {numbers:?}");
    published(&mut rx);
    h.send(snapshot(DIR, &[])).await;
    assert_eq!(published(&mut rx), [ev(Kind::SourceSynced, DIR)], "a crashed vassal has no process to stop");
}
