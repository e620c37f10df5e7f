//! Reaction latency of a dir source (printed, not asserted).

mod common;

use common::*;
use std::time::{Duration, Instant};

const TRIALS: usize = 20;

fn summary(what: &str, mut samples: Vec<Duration>) {
    samples.sort();
    let p50 = samples[samples.len() / 2];
    let max = samples[samples.len() - 1];
    eprintln!("latency {what}: n={} p50={p50:?} max={max:?}", samples.len());
}

#[test]
fn create_and_touch_latency() {
    let mut h = Harness::new();
    put(&h.vassal("sentinel.ini"), &uwsgi_ini(""));
    h.start_dir(&[]);
    h.wait_start("sentinel.ini");

    let tight = Duration::from_millis(1);
    let mut create = Vec::new();
    let mut reload = Vec::new();
    for i in 0..TRIALS {
        let name = format!("lat{i}.ini");
        let path = h.vassal(&name);

        let t = Instant::now();
        put(&path, &uwsgi_ini(""));
        let pid = wait_every(DEADLINE, tight, format!("{name}: start"), || h.starts(&name).first().map(|s| s.pid));
        create.push(t.elapsed());
        assert!(alive(pid));

        let t = Instant::now();
        touch(&path);
        let recv = wait_every(DEADLINE, tight, format!("{name}: recv 1 after touch"), || {
            h.events(&name).into_iter().find(|e| e.is_recv(1))
        });
        reload.push(t.elapsed());
        assert_eq!(recv.pid, pid);
    }
    summary("create -> start record", create);
    summary("touch -> recv 1", reload);
}
