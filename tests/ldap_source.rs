//! `ldap://` against a real OpenLDAP slapd: syncrepl refreshAndPersist
//! (uWSGIConfig entries and whole-config entries; create / change / delete
//! → spawn / reload / stop), bad entries, a server outage, the polling
//! fallback on a slapd without syncprov, binding, TLS, and the create →
//! spawn latency. Each test uses its own organizational unit of a shared
//! server, except those that need a server of their own.

mod common;
mod servers;

use common::*;
use ldap3::{LdapConnAsync, Scope, SearchEntry};
use servers::{LdapClient, Proxy, Slapd, SlapdOptions};
use std::time::{Duration, Instant};

/// The RFC 4533 content synchronization control.
const SYNC_CONTROL: &str = "1.3.6.1.4.1.4203.1.9.1.1";
/// Deadline for what follows a server restart (the source backs off up to 10 s).
const RECOVERY: Duration = Duration::from_secs(40);

fn config(tag: &str) -> String {
    uwsgi_ini(&format!("# {tag}"))
}

/// An `applicationProcess` entry named `cn` whose `description` is `config`.
fn add_whole(ldap: &mut LdapClient, ou: &str, cn: &str, config: &str) -> String {
    let dn = format!("cn={cn},{ou}");
    ldap.add(&dn, &[("objectClass", &["applicationProcess"]), ("cn", &[cn]), ("description", &[config])]);
    dn
}

/// The URI of whole-config entries (`description`) under `ou`.
fn whole_uri(server: &str, ou: &str, ext: &str) -> String {
    format!("{server}/{ou}??one?(objectClass=applicationProcess)?x-config=description{ext}")
}

/// The entries of the standard outage scenario: `keep.ini` and `gone.ini`.
fn add_keep_and_gone(ldap: &mut LdapClient, ou: &str) {
    add_whole(ldap, ou, "keep.ini", &config("k1"));
    add_whole(ldap, ou, "gone.ini", &config("g"));
}

/// Waits for `keep.ini` and `gone.ini` to start; their pids.
fn wait_keep_and_gone(h: &Harness) -> (i32, i32) {
    (h.wait_start("keep.ini").pid, h.wait_start("gone.ini").pid)
}

/// The changes of the standard outage scenario, made while the emperor is
/// cut off: `keep.ini` changed, `gone.ini` deleted, `new.ini` added.
fn change_meanwhile(ldap: &mut LdapClient, ou: &str) {
    ldap.replace(&format!("cn=keep.ini,{ou}"), "description", &[&config("k2")]);
    ldap.delete(&format!("cn=gone.ini,{ou}"));
    add_whole(ldap, ou, "new.ini", &config("n"));
}

fn root_dse_controls(url: &str) -> Vec<String> {
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().expect("runtime");
    rt.block_on(async {
        let (conn, mut ldap) = LdapConnAsync::new(url).await.expect("connect");
        ldap3::drive!(conn);
        let (entries, _) =
            ldap.search("", Scope::Base, "(objectClass=*)", vec!["supportedControl"]).await.unwrap().success().unwrap();
        let dse = SearchEntry::construct(entries.into_iter().next().expect("root DSE"));
        dse.attrs.get("supportedControl").cloned().unwrap_or_default()
    })
}

#[test]
fn test_server_offers_syncrepl_unless_asked_not_to() {
    let with = Slapd::shared();
    assert!(root_dse_controls(&with.url()).iter().any(|c| c == SYNC_CONTROL));
    let without = Slapd::with(SlapdOptions { no_syncprov: true, ..Default::default() });
    assert!(!root_dse_controls(&without.url()).iter().any(|c| c == SYNC_CONTROL));
}

#[test]
fn uwsgi_config_entry_spawn_reload_stop() {
    let slapd = Slapd::shared();
    let mut ldap = slapd.client();
    let ou = ldap.add_ou("uwsgiconfig");
    let mut h = Harness::new();
    h.start(&[format!("{}/{ou}", slapd.url()).as_str()]);

    let dn = format!("cn=app,{ou}");
    ldap.add(
        &dn,
        &[
            ("objectClass", &["applicationProcess", "uWSGIConfig"]),
            ("cn", &["app"]),
            ("uWSGIsocket", &["127.0.0.1:3031"]),
            ("uWSGImaster", &["TRUE"]),
            ("uWSGIharakiriVerbose", &["FALSE"]),
            ("uWSGIenv", &["A=1", "B=2"]),
        ],
    );
    let pid = h.wait_start("app.ini").pid;
    assert_eq!(h.wait_start("app.ini").argv(), "--ini emperor://app.ini");
    // The values of one attribute come in the order the directory keeps.
    wait_until(DEADLINE, "the rendered ini", || {
        let got = received_config(&h, "app.ini")?;
        let envs = ["env = A=1\nenv = B=2\n", "env = B=2\nenv = A=1\n"];
        cond(envs.iter().any(|env| got == format!("[uwsgi]\n{env}master = true\nsocket = 127.0.0.1:3031\n")))
    });

    ldap.replace(&dn, "uWSGIprocesses", &["4"]);
    wait_recvs(&h, "app.ini", 1, 1);
    wait_until(DEADLINE, "processes = 4 in the ini", || {
        cond(received_config(&h, "app.ini")?.contains("\nprocesses = 4\n"))
    });
    // A change to an attribute the source does not use reloads nothing.
    ldap.replace(&dn, "description", &["the app"]);
    ldap.replace(&dn, "uWSGIprocesses", &["8"]);
    wait_recvs(&h, "app.ini", 1, 2);
    assert_eq!(recvs(&h, "app.ini", 1), 2, "only the two config changes reload");
    assert!(alive(pid), "reloads keep the process");

    ldap.delete(&dn);
    h.wait_event("app.ini", "recv 0 (stop)", |e| e.is_recv(0));
    h.wait_reaped(pid, "deleted entry");
}

#[test]
fn whole_config_entries_and_bad_entries() {
    let slapd = Slapd::shared();
    let mut ldap = slapd.client();
    let ou = ldap.add_ou("whole");
    add_whole(&mut ldap, &ou, "early.ini", &config("early"));
    let mut h = Harness::new();
    h.start(&[whole_uri(&slapd.url(), &ou, "").as_str()]);
    h.wait_start("early.ini");
    wait_config(&h, "early.ini", &config("early"));

    let dn = add_whole(&mut ldap, &ou, "web", &config("w1"));
    let web = h.wait_start("web.ini").pid;
    wait_config(&h, "web.ini", &config("w1"));
    ldap.replace(&dn, "description", &[&config("w2")]);
    wait_nth_config(&h, "web.ini", 2, &config("w2"));

    // Bad entries: each refused with one warning, the rest keeps running.
    add_whole(&mut ldap, &ou, "../evil", &config("x"));
    let multi = format!("cn=multi,{ou}");
    ldap.add(
        &multi,
        &[("objectClass", &["applicationProcess"]), ("cn", &["multi"]), ("description", &["[uwsgi]", "a = 1"])],
    );
    ldap.add(&format!("cn=noconf,{ou}"), &[("objectClass", &["applicationProcess"]), ("cn", &["noconf"])]);
    assert!(h.wait_complaint("../evil.ini").contains("path separator"));
    assert!(h.wait_complaint("cn=multi").contains("several values"));
    assert!(h.wait_complaint("cn=noconf").contains("config is NULL or missing"));
    add_whole(&mut ldap, &ou, "big.ini", &format!("[uwsgi]\n# {}\n", "x".repeat(70_000)));
    h.wait_complaint("65535");

    // More changes happen; each bad entry was still reported only once.
    add_whole(&mut ldap, &ou, "late.yaml", "uwsgi:\n  master: true\n");
    h.wait_start("late.yaml");
    ldap.delete(&dn);
    h.wait_reaped(web, "deleted entry");
    for needle in ["../evil.ini", "cn=multi", "cn=noconf", "65535"] {
        assert_eq!(h.complaints_about(needle).len(), 1, "{needle}: {:?}", h.complaints_about(needle));
    }
    assert_eq!(h.recorded_names(), ["early.ini", "late.yaml", "web.ini"]);
}

#[test]
fn outage_keeps_vassals_and_applies_changes_made_meanwhile() {
    let mut slapd = Slapd::private();
    let mut ldap = slapd.client();
    let ou = ldap.add_ou("outage");
    add_keep_and_gone(&mut ldap, &ou);
    let mut h = Harness::new();
    h.start(&[whole_uri(&slapd.url(), &ou, "").as_str()]);
    let (keep, gone) = wait_keep_and_gone(&h);

    slapd.kill();
    h.wait_complaint("LDAP connection failed");

    // Back on the unix socket only: the emperor (TCP) still cannot connect,
    // so these changes are made while it is cut off.
    slapd.restart(false);
    change_meanwhile(&mut ldap, &ou);
    slapd.kill();
    assert!(alive(keep) && alive(gone), "an outage must not stop vassals");
    assert_eq!(recvs(&h, "keep.ini", 0) + recvs(&h, "gone.ini", 0), 0, "nothing stopped during the outage");

    slapd.restart(true);
    assert_outage_recovered(&h, keep, gone, &config("k2"), RECOVERY);
}

#[test]
fn polling_fallback_without_syncprov() {
    let slapd = Slapd::with(SlapdOptions { no_syncprov: true, ..Default::default() });
    let mut ldap = slapd.client();
    let ou = ldap.add_ou("poll");
    add_whole(&mut ldap, &ou, "early.ini", &config("e"));
    let mut h = Harness::new();
    h.start(&[whole_uri(&slapd.url(), &ou, ",x-interval=0.2").as_str()]);
    let early = h.wait_start("early.ini").pid;

    let dn = add_whole(&mut ldap, &ou, "late.ini", &config("l1"));
    h.wait_start("late.ini");
    ldap.replace(&dn, "description", &[&config("l2")]);
    wait_nth_config(&h, "late.ini", 2, &config("l2"));
    ldap.delete(&format!("cn=early.ini,{ou}"));
    h.wait_reaped(early, "deleted entry");
    assert!(h.log_text().contains("does not offer syncrepl"));
}

#[test]
fn size_limit_never_removes_vassals() {
    let slapd = Slapd::with(SlapdOptions { no_syncprov: true, size_limit: Some(2), ..Default::default() });
    let mut ldap = slapd.client();
    let ou = ldap.add_ou("limit");
    add_whole(&mut ldap, &ou, "a.ini", &config("a"));
    add_whole(&mut ldap, &ou, "b.ini", &config("b"));
    let mut h = Harness::new();
    h.start(&[whole_uri(&slapd.url(), &ou, ",x-interval=0.2").as_str()]);
    let a = h.wait_start("a.ini").pid;
    let b = h.wait_start("b.ini").pid;

    // A third entry makes every search hit the limit: a warning, no stop.
    add_whole(&mut ldap, &ou, "c.ini", &config("c"));
    h.wait_complaint("nothing is removed");
    assert!(alive(a) && alive(b));
    assert!(h.starts("c.ini").is_empty());
    assert_eq!(recvs(&h, "a.ini", 0) + recvs(&h, "b.ini", 0), 0);
}

#[test]
fn binds_with_a_password_file() {
    let slapd = Slapd::shared();
    let mut ldap = slapd.client();
    let ou = ldap.add_ou("bound");
    add_whole(&mut ldap, &ou, "app.ini", &config("b"));
    let mut h = Harness::new();
    let pw = h.root.join("ldap.pw");
    put(&pw, &format!("{}\n", servers::READER_PASSWORD));
    let ext = format!(",bindname={},x-password-file={}", servers::READER.replace(',', "%2C"), pw.display());
    h.start(&[whole_uri(&slapd.url(), &ou, &ext).as_str()]);
    h.wait_start("app.ini");
    assert!(!h.log_text().contains(servers::READER_PASSWORD), "the password is never logged");
}

#[test]
fn ldaps_and_starttls() {
    let slapd = Slapd::with(SlapdOptions { tls: true, ..Default::default() });
    let mut ldap = slapd.client();
    let ou = ldap.add_ou("tls");
    add_whole(&mut ldap, &ou, "app.ini", &config("t1"));
    let ca = slapd.ca_file();
    let env = [("SSL_CERT_FILE", ca.to_str().unwrap())];
    let ldaps = Harness::new();
    let _a = ldaps.spawn(&[whole_uri(&slapd.ldaps_url(), &ou, "").as_str()], &env);
    let starttls = Harness::new();
    let _b = starttls.spawn(&[whole_uri(&slapd.url(), &ou, ",x-starttls").as_str()], &env);
    ldaps.wait_start("app.ini");
    starttls.wait_start("app.ini");
    ldap.replace(&format!("cn=app.ini,{ou}"), "description", &[&config("t2")]);
    wait_nth_config(&ldaps, "app.ini", 2, &config("t2"));
    wait_nth_config(&starttls, "app.ini", 2, &config("t2"));
}

#[test]
fn syncrepl_latency() {
    let slapd = Slapd::shared();
    let mut ldap = slapd.client();
    let ou = ldap.add_ou("latency");
    let mut h = Harness::new();
    h.start(&[whole_uri(&slapd.url(), &ou, "").as_str()]);
    add_whole(&mut ldap, &ou, "sentinel.ini", &config("s"));
    h.wait_start("sentinel.ini");

    let mut samples = Vec::new();
    for i in 0..20 {
        let name = format!("lat{i}.ini");
        let t = Instant::now();
        add_whole(&mut ldap, &ou, &name, &config("x"));
        wait_every(DEADLINE, Duration::from_millis(1), format!("{name}: start"), || h.starts(&name).first().cloned());
        samples.push(t.elapsed());
    }
    samples.sort();
    eprintln!("latency ldap syncrepl add→spawn: n={} p50={:?} max={:?}", samples.len(), samples[10], samples[19]);
    assert!(samples[19] < Duration::from_secs(5), "{samples:?}");
}

#[test]
fn emperor_restart_readopts_and_an_unreachable_server_keeps_the_snapshot() {
    let mut slapd = Slapd::private();
    let mut ldap = slapd.client();
    let ou = ldap.add_ou("restart");
    add_keep_and_gone(&mut ldap, &ou);
    let uri = whole_uri(&slapd.url(), &ou, "");
    let h = Harness::new();
    let first = h.spawn(&[uri.as_str()], &[]);
    let (keep, gone) = wait_keep_and_gone(&h);

    // kill -9, changes while the emperor is down, restart: re-adopted, not
    // restarted, and the changes are applied.
    first.kill9();
    change_meanwhile(&mut ldap, &ou);
    let second = h.spawn(&[uri.as_str()], &[]);
    h.wait_start("new.ini");
    h.wait_reaped(gone, "entry deleted while the emperor was down");
    wait_config(&h, "keep.ini", &config("k2"));
    assert_eq!(h.starts("keep.ini").len(), 1, "keep.ini re-adopted, not restarted");

    // The server is unreachable when the emperor starts again: the
    // persisted snapshot stays in force until it answers.
    second.kill9();
    slapd.kill();
    let _third = h.spawn(&[uri.as_str()], &[]);
    h.wait_complaint("connecting to LDAP failed");
    assert!(alive(keep), "nothing stopped while the server is away");
    assert_eq!(recvs(&h, "keep.ini", 0) + recvs(&h, "new.ini", 0), 0);
    slapd.restart(true);
    ldap.delete(&format!("cn=new.ini,{ou}"));
    wait_until(RECOVERY, "new.ini to stop after the server came back", || {
        cond(h.events("new.ini").iter().any(|e| e.is_recv(0)))
    });
    assert!(alive(keep));
    assert_eq!(h.starts("keep.ini").len(), 1);
}

#[test]
fn fleet_filters_move_an_entry() {
    let slapd = Slapd::shared();
    let mut ldap = slapd.client();
    let ou = ldap.add_ou("fleet");
    let host = |h: &str| format!("{}/{ou}??one?(%26(objectClass=uWSGIConfig)(ou={h}))", slapd.url());
    let mut a = Harness::new();
    let mut b = Harness::new();
    a.start(&[host("web-a").as_str()]);
    b.start(&[host("web-b").as_str()]);
    let dn = format!("cn=app,{ou}");
    ldap.add(
        &dn,
        &[
            ("objectClass", &["applicationProcess", "uWSGIConfig"]),
            ("cn", &["app"]),
            ("ou", &["web-a"]),
            ("uWSGImaster", &["TRUE"]),
        ],
    );
    let on_a = a.wait_start("app.ini").pid;

    ldap.replace(&dn, "ou", &["web-b"]);
    a.wait_event("app.ini", "recv 0 (stop) after the entry left the filter", |e| e.is_recv(0));
    a.wait_reaped(on_a, "vassal moved to the other host");
    b.wait_start("app.ini");
    wait_config(&b, "app.ini", "[uwsgi]\nmaster = true\n");
    assert_eq!(a.starts("app.ini").len(), 1);
}

#[test]
fn a_restarted_emperor_resumes_syncrepl_with_only_the_changes() {
    let slapd = Slapd::shared();
    let mut ldap = slapd.client();
    let ou = ldap.add_ou("resume");
    for i in 0..5 {
        add_whole(&mut ldap, &ou, &format!("v{i}.ini"), &config("1"));
    }
    let uri = whole_uri(&slapd.url(), &ou, "");
    let h = Harness::new();
    let first = h.spawn(&[uri.as_str()], &[]);
    for i in 0..5 {
        h.wait_start(&format!("v{i}.ini"));
    }
    let refreshes = |h: &Harness| -> Vec<String> {
        h.log_text().lines().filter(|l| l.contains("sync refresh done")).map(str::to_owned).collect()
    };
    assert!(refreshes(&h)[0].contains("sent=5"), "{:?}", refreshes(&h));
    first.kill9();

    ldap.replace(&format!("cn=v3.ini,{ou}"), "description", &[&config("2")]);
    let _second = h.spawn(&[uri.as_str()], &[]);
    wait_config(&h, "v3.ini", &config("2"));
    let log = h.log_text();
    assert!(log.contains("resuming from the stored sync state"), "{log}");
    let second = wait_until(DEADLINE, "a second refresh", || refreshes(&h).get(1).cloned());
    assert!(second.contains("entries=5") && second.contains("sent=1 "), "only the change is sent: {second}");
    for i in 0..5 {
        assert_eq!(h.starts(&format!("v{i}.ini")).len(), 1, "v{i}.ini re-adopted, not restarted");
    }
}

#[test]
fn a_cookie_ahead_of_a_restored_directory_means_a_full_refresh_not_a_mass_stop() {
    let mut slapd = Slapd::private();
    let mut ldap = slapd.client();
    let ou = ldap.add_ou("restored");
    add_whole(&mut ldap, &ou, "keep.ini", &config("k"));
    let backup = slapd.backup();
    add_whole(&mut ldap, &ou, "late.ini", &config("l"));
    let uri = whole_uri(&slapd.url(), &ou, "");
    let h = Harness::new();
    let first = h.spawn(&[uri.as_str()], &[]);
    let keep = h.wait_start("keep.ini").pid;
    let late = h.wait_start("late.ini").pid;
    first.kill9();

    // The directory goes back to a backup taken before late.ini existed:
    // the stored cookie is ahead of it (slapd answers 53), so the source
    // drops the cookie and refreshes everything.
    slapd.restore(&backup);
    let _second = h.spawn(&[uri.as_str()], &[]);
    h.wait_reaped(late, "the entry the restored directory lacks");
    assert!(h.log_text().contains("cannot resume from the sync cookie"), "{}", h.log_text());
    assert!(alive(keep), "keep.ini is in the backup: it keeps running");
    assert_eq!(h.starts("keep.ini").len(), 1);
}

/// The time from emperor start to 1000 vassals running (run by hand:
/// `cargo test --test ldap_source -- --ignored --nocapture`).
#[test]
#[ignore = "a measurement: 1000 processes"]
fn thousand_vassals_start_time() {
    const N: usize = 1000;
    let slapd = Slapd::shared();
    let mut ldap = slapd.client();
    let ou = ldap.add_ou("thousand");
    for i in 0..N {
        add_whole(&mut ldap, &ou, &format!("v{i:04}.ini"), &config("t"));
    }
    let mut h = Harness::new();
    let t = Instant::now();
    h.start(&[whole_uri(&slapd.url(), &ou, "").as_str()]);
    wait_every(Duration::from_secs(300), Duration::from_millis(50), "1000 vassals running", || {
        cond(our_vassals(&h).len() == N)
    });
    eprintln!("ldap: emperor start → {N} vassals running: {:?}", t.elapsed());
}

#[test]
fn a_cut_connection_resumes_with_the_changes_made_meanwhile() {
    let slapd = Slapd::shared();
    let mut ldap = slapd.client();
    let ou = ldap.add_ou("cut");
    add_keep_and_gone(&mut ldap, &ou);
    let proxy = Proxy::new(slapd.port);
    let mut h = Harness::new();
    h.start(&[whole_uri(&format!("ldap://127.0.0.1:{}", proxy.port), &ou, "").as_str()]);
    let (keep, gone) = wait_keep_and_gone(&h);

    proxy.cut();
    h.wait_complaint("LDAP connection failed");
    change_meanwhile(&mut ldap, &ou);
    assert!(alive(keep) && alive(gone), "a cut connection must not stop vassals");

    proxy.restore();
    assert_outage_recovered(&h, keep, gone, &config("k2"), RECOVERY);
    // The search resumed from its cookie: only the three changes came.
    let refreshes: Vec<String> =
        h.log_text().lines().filter(|l| l.contains("sync refresh done")).map(str::to_owned).collect();
    let last = refreshes.last().expect("a refresh after the cut");
    assert!(refreshes.len() == 2 && last.contains("sent=2 ") && last.contains("deleted=1"), "{refreshes:?}");
}

#[test]
fn native_whole_config_entry_spawn_change_stop() {
    let slapd = Slapd::shared();
    let mut ldap = slapd.client();
    let ou = ldap.add_ou("native");
    let mut h = Harness::new();
    h.start(&[whole_uri(&slapd.url(), &ou, "").as_str()]);
    let native = |args: &str| format!("[vassal]\nexec = \"{STUB} native {args}\"\n");

    let dn = add_whole(&mut ldap, &ou, "api.toml", &native("one"));
    let first = h.wait_start("api.toml");
    assert_eq!(first.argv(), "native one");
    assert!(alive(first.pid));

    // Another command line: the vassal is restarted with it.
    ldap.replace(&dn, "description", &[&native("two")]);
    let second = h.wait_starts("api.toml", 2)[1].clone();
    assert_eq!(second.argv(), "native two");
    h.wait_dead(first.pid, "the old command line");

    ldap.delete(&dn);
    h.wait_dead(second.pid, "deleted entry");
}

#[test]
fn a_missing_search_base_is_reported_until_it_exists() {
    let slapd = Slapd::shared();
    let mut ldap = slapd.client();
    let ou = format!("ou=later,{}", servers::SUFFIX);
    let mut h = Harness::new();
    h.start(&[whole_uri(&slapd.url(), &ou, "").as_str()]);
    assert!(h.wait_complaint("the sync search failed").contains("rc=32"));

    ldap.add_ou("later");
    add_whole(&mut ldap, &ou, "app.ini", &config("a"));
    wait_until(RECOVERY, "app.ini to start once the base exists", || h.starts("app.ini").first().cloned());
    assert_eq!(h.log_text().matches("the sync search failed").count(), 1, "one warning per outage");
}
