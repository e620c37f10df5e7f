//! Large starts cut into rounds: a config that arrives meanwhile does not
//! wait for the whole backlog, and a stop ends the starts at once.

use super::*;

/// The names started so far, in order, from what the fake recorded.
fn started(did: &[Did]) -> Vec<String> {
    did.iter()
        .filter_map(|d| match d {
            Did::Start(name, _) => Some(name.clone()),
            _ => None,
        })
        .collect()
}

fn many(count: usize) -> Vec<(String, &'static str)> {
    (0..count).map(|i| (format!("s{i:04}.ini"), "1")).collect()
}

#[tokio::test(start_paused = true)]
async fn a_config_new_during_a_large_start_goes_before_the_backlog() {
    let h = Harness::start();
    let specs = many(2_000);
    let specs: Vec<(&str, &str)> = specs.iter().map(|(n, v)| (n.as_str(), *v)).collect();
    h.send(snapshot(DIR, &specs)).await;
    let first = started(&h.fake.take());
    assert!(!first.is_empty() && first.len() < 2_000, "one round of the most starts, not all: {}", first.len());
    h.send(SourceEvent::Upsert(spec(AMQP, "probe.ini", "1"))).await;
    let before: Vec<String> = started(&h.fake.take());
    let at = before.iter().position(|n| n == "probe.ini").expect("started in the round that applied it");
    assert!(first.len() + at < 2_000, "started while {} others still waited", 2_000 - first.len() - at);
}

#[tokio::test(start_paused = true)]
async fn no_start_follows_a_stop_signal_during_a_round() {
    let pace = super::super::pace::Pace::default();
    let fake = Fake::default();
    fake.stop_after(3, pace.stop_flag().clone());
    let mut h = Harness::paced(Controller::new(POLICY), fake, pace);
    let specs = many(10);
    let specs: Vec<(&str, &str)> = specs.iter().map(|(n, v)| (n.as_str(), *v)).collect();
    h.send(snapshot(DIR, &specs)).await;
    h.settle().await;
    let names = started(&h.fake.take());
    assert_eq!(names, ["s0000.ini", "s0001.ini", "s0002.ini"], "the round ends at the signal");
    h.request_shutdown();
    until("stopped every vassal", || h.fake.has(&Did::StopAll)).await;
    for name in &names {
        h.exit(name).await;
    }
    let fake = h.fake.clone();
    h.finished().await.expect("a clean stop");
    assert!(started(&fake.take()).is_empty(), "nothing started after it");
}
