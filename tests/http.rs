//! `--http` (Prometheus `/metrics`, `/healthz`, the JSON lists) and
//! `--stats` (the uWSGI Emperor's stats object) against the real binary.

mod common;

use common::*;
use serde_json::Value;
use std::collections::BTreeMap;
use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// One sample of the OpenMetrics text format.
#[derive(Debug, Clone)]
struct Sample {
    name: String,
    labels: BTreeMap<String, String>,
    value: f64,
}

/// Parses the samples of an OpenMetrics text exposition (comments and
/// `# EOF` skipped); panics on a line it cannot read.
fn parse_metrics(text: &str) -> Vec<Sample> {
    assert!(text.ends_with("# EOF\n"), "an OpenMetrics exposition ends with # EOF:\n{text}");
    text.lines().filter(|l| !l.starts_with('#') && !l.is_empty()).map(parse_sample).collect()
}

fn parse_sample(line: &str) -> Sample {
    let (series, value) = line.rsplit_once(' ').unwrap_or_else(|| panic!("no value in {line:?}"));
    let value = value.parse().unwrap_or_else(|_| panic!("bad value in {line:?}"));
    let Some((name, labels)) = series.split_once('{') else {
        return Sample { name: series.to_owned(), labels: BTreeMap::new(), value };
    };
    let labels = labels.strip_suffix('}').unwrap_or_else(|| panic!("unclosed labels in {line:?}"));
    Sample { name: name.to_owned(), labels: parse_labels(labels, line), value }
}

/// `a="x",b="y\"z"` (values quoted, `\"`, `\\` and `\n` escaped).
fn parse_labels(mut text: &str, line: &str) -> BTreeMap<String, String> {
    let mut labels = BTreeMap::new();
    while !text.is_empty() {
        let (key, rest) = text.split_once("=\"").unwrap_or_else(|| panic!("bad label in {line:?}"));
        let mut value = String::new();
        let mut chars = rest.char_indices();
        let end = loop {
            match chars.next() {
                Some((_, '\\')) => value.push(match chars.next() {
                    Some((_, 'n')) => '\n',
                    Some((_, c)) => c,
                    None => panic!("bad escape in {line:?}"),
                }),
                Some((i, '"')) => break i,
                Some((_, c)) => value.push(c),
                None => panic!("unterminated label value in {line:?}"),
            }
        };
        labels.insert(key.to_owned(), value);
        text = rest[end + 1..].trim_start_matches(',');
    }
    labels
}

/// The value of the one sample named `name` whose labels include `with`.
fn value(samples: &[Sample], name: &str, with: &[(&str, &str)]) -> Option<f64> {
    let mut found = samples
        .iter()
        .filter(|s| s.name == name && with.iter().all(|(k, v)| s.labels.get(*k).map(String::as_str) == Some(*v)));
    let first = found.next()?;
    assert!(found.next().is_none(), "more than one {name} with {with:?}");
    Some(first.value)
}

/// The address a server logged (`addr=`) on its line containing `needle`.
fn logged_addr(h: &Harness, needle: &str) -> String {
    wait_until(DEADLINE, format!("the log line {needle:?}"), || {
        let log = h.log_text();
        let line = log.lines().find(|l| l.contains(needle))?;
        Some(line.split_once("addr=")?.1.split_whitespace().next()?.to_owned())
    })
}

/// Starts an emperor on the default dir source with `--http` (and
/// `--stats`) on free loopback ports, `extra` options first; returns the
/// HTTP address.
fn start(h: &mut Harness, extra: &[&str]) -> String {
    let mut args = vec!["--http", "127.0.0.1:0", "--stats", "127.0.0.1:0"];
    args.extend_from_slice(extra);
    h.start_dir(&args);
    logged_addr(h, "http: serving")
}

/// Sends `request` as it is and returns the whole answer.
fn raw(addr: &str, request: &[u8]) -> String {
    let mut stream = TcpStream::connect(addr).expect("connect");
    stream.set_read_timeout(Some(DEADLINE)).unwrap();
    let _ = stream.write_all(request);
    let mut answer = Vec::new();
    let _ = stream.read_to_end(&mut answer);
    String::from_utf8_lossy(&answer).into_owned()
}

/// `METHOD path`: the status and the body.
fn request(addr: &str, method: &str, path: &str) -> (u16, String) {
    let answer = raw(addr, format!("{method} {path} HTTP/1.1\r\nHost: test\r\n\r\n").as_bytes());
    let status = answer.split(' ').nth(1).and_then(|s| s.parse().ok()).unwrap_or_else(|| panic!("{answer:?}"));
    let body = answer.split_once("\r\n\r\n").map_or("", |(_, b)| b).to_owned();
    (status, body)
}

fn get(addr: &str, path: &str) -> (u16, String) {
    request(addr, "GET", path)
}

fn metrics(addr: &str) -> Vec<Sample> {
    let (status, body) = get(addr, "/metrics");
    assert_eq!(status, 200, "{body}");
    parse_metrics(&body)
}

/// Waits until `/metrics` satisfies `check`, and returns its samples.
fn wait_metrics(addr: &str, what: &str, check: impl Fn(&[Sample]) -> bool) -> Vec<Sample> {
    wait_until(DEADLINE, what, || Some(metrics(addr)).filter(|s| check(s)))
}

fn now() -> f64 {
    SystemTime::now().duration_since(UNIX_EPOCH).unwrap().as_secs_f64()
}

#[test]
fn metrics_follow_the_running_vassals_and_count_a_respawn() {
    let mut h = Harness::new();
    put(&h.vassal("a.ini"), &uwsgi_ini(""));
    put(&h.vassal("b.ini"), &uwsgi_ini(""));
    let addr = start(&mut h, &[]);
    let a = h.wait_start("a.ini");
    h.wait_start("b.ini");
    let source = h.dir_source();
    let samples =
        wait_metrics(&addr, "2 vassals running", |s| value(s, "emperor_vassals", &[("state", "running")]) == Some(2.0));
    for state in ["stopping", "crashed", "held", "stopped"] {
        assert_eq!(value(&samples, "emperor_vassals", &[("state", state)]), Some(0.0), "{state} present, 0");
    }
    let a_labels = [("vassal", "a.ini"), ("source", source.as_str())];
    assert_eq!(value(&samples, "emperor_vassal_up", &a_labels), Some(1.0));
    assert_eq!(value(&samples, "emperor_vassal_restarts_total", &a_labels), Some(0.0));
    assert_eq!(value(&samples, "emperor_vassal_last_exit_code", &a_labels), Some(-1.0), "nothing exited yet");
    let started = value(&samples, "emperor_vassal_start_time_seconds", &a_labels).expect("a start time");
    assert!(started > now() - 60.0 && started <= now() + 1.0, "a timestamp, not an age: {started}");
    assert_eq!(value(&samples, "emperor_source_up", &[("source", &source)]), Some(1.0));
    assert_eq!(value(&samples, "emperor_vassals_desired", &[("source", &source)]), Some(2.0));
    assert_eq!(samples.iter().filter(|s| s.name == "emperor_build_info").count(), 1);
    let synced = value(&samples, "emperor_source_last_sync_timestamp_seconds", &[("source", &source)]).unwrap();
    assert!(synced > now() - 60.0 && synced <= now() + 1.0, "{synced}");
    assert!(value(&samples, "emperor_actions_total", &[("action", "spawn")]).unwrap() >= 2.0);
    for action in ["respawn", "reload", "stop", "kill"] {
        assert!(value(&samples, "emperor_actions_total", &[("action", action)]).is_some(), "{action} present");
    }
    assert!(value(&samples, "emperor_event_to_action_seconds_count", &[]).unwrap() >= 2.0, "both spawns timed");

    kill(a.pid, libc::SIGKILL);
    let samples = wait_metrics(&addr, "a.ini restarted once and up", |s| {
        value(s, "emperor_vassal_restarts_total", &a_labels) == Some(1.0)
            && value(s, "emperor_vassal_up", &a_labels) == Some(1.0)
    });
    assert_eq!(value(&samples, "emperor_vassal_last_exit_code", &a_labels), Some(-1.0), "a signal ended it");
    assert_eq!(value(&samples, "emperor_actions_total", &[("action", "respawn")]), Some(1.0));
    assert_eq!(value(&samples, "emperor_vassal_restarts_total", &[("vassal", "b.ini")]), Some(0.0));

    let (status, body) = get(&addr, "/healthz");
    assert_eq!(status, 200, "{body}");
    let (status, body) = get(&addr, "/v1/vassals");
    assert_eq!(status, 200);
    let vassals: Vec<Value> = serde_json::from_str(&body).expect("a JSON array");
    let names: Vec<&str> = vassals.iter().filter_map(|v| v["name"].as_str()).collect();
    assert_eq!(names, ["a.ini", "b.ini"]);
    assert_eq!(vassals[0]["restarts"], 1);
    let (status, body) = get(&addr, "/v1/sources");
    assert_eq!(status, 200);
    let sources: Vec<Value> = serde_json::from_str(&body).expect("a JSON array");
    assert_eq!((&sources[0]["source"], &sources[0]["desired"]), (&Value::from(source), &Value::from(2)));
}

#[test]
fn wrong_requests_get_404_405_400_and_a_silent_client_is_dropped() {
    let mut h = Harness::new();
    let addr = start(&mut h, &[]);
    assert_eq!(get(&addr, "/nope").0, 404);
    assert_eq!(get(&addr, "/v1/vassals/a.ini").0, 404);
    for path in ["/metrics", "/healthz", "/v1/vassals"] {
        assert_eq!(request(&addr, "POST", path).0, 405, "POST {path}");
    }
    assert_eq!(request(&addr, "DELETE", "/metrics").0, 405);
    let garbage: [&[u8]; 6] = [
        b"GARBAGE\r\n\r\n",
        b"GET /metrics HTTP/9\r\n\r\n",
        b"GET /metrics HTTP/1.1\r\nno-colon\r\n\r\n",
        b"GET metrics HTTP/1.1\r\n\r\n",
        b"\x00\xff\xfe /metrics HTTP/1.1\r\n\r\n",
        b"GET /metrics HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n",
    ];
    for request in garbage {
        let answer = raw(&addr, request);
        assert!(answer.starts_with("HTTP/1.1 400 "), "{:?} -> {answer}", String::from_utf8_lossy(request));
    }
    assert!(raw(&addr, &vec![b'A'; 64 * 1024]).starts_with("HTTP/1.1 413 "), "an endless head is refused");
    let huge_body = b"GET /metrics HTTP/1.1\r\nContent-Length: 99999999\r\n\r\n";
    assert!(raw(&addr, huge_body).starts_with("HTTP/1.1 413 "), "a huge body is refused before it is read");
    assert_eq!(get(&addr, "/metrics").0, 200, "the listener still serves");

    // A client that never finishes its request does not hold the server up,
    // and is disconnected.
    let mut slow = TcpStream::connect(&addr).unwrap();
    slow.write_all(b"GET /metrics HTTP/1.1\r\n").unwrap();
    assert_eq!(get(&addr, "/metrics").0, 200, "others are served meanwhile");
    slow.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
    let mut rest = Vec::new();
    let read = slow.read_to_end(&mut rest);
    assert!(read.is_ok() && rest.is_empty(), "closed without an answer: {read:?} {rest:?}");
}

#[test]
fn per_vassal_series_can_be_off_or_only_for_unhealthy_vassals() {
    let mut off = Harness::new();
    put(&off.vassal("a.ini"), &uwsgi_ini(""));
    let addr = start(&mut off, &["--metrics-per-vassal=off"]);
    let samples =
        wait_metrics(&addr, "a.ini running", |s| value(s, "emperor_vassals", &[("state", "running")]) == Some(1.0));
    let per_vassal: Vec<&Sample> = samples.iter().filter(|s| s.name.starts_with("emperor_vassal_")).collect();
    assert!(per_vassal.is_empty(), "no per-vassal series: {per_vassal:?}");

    let mut unhealthy = Harness::new();
    put(&unhealthy.vassal("a.ini"), &uwsgi_ini(""));
    put(&unhealthy.vassal("bad.xml"), "not xml");
    let addr = start(&mut unhealthy, &["--metrics-per-vassal", "unhealthy"]);
    let samples = wait_metrics(&addr, "a.ini running, bad.xml held", |s| {
        value(s, "emperor_vassals", &[("state", "running")]) == Some(1.0)
            && value(s, "emperor_vassals", &[("state", "held")]) == Some(1.0)
    });
    assert_eq!(value(&samples, "emperor_vassal_up", &[("vassal", "bad.xml")]), Some(0.0));
    assert_eq!(value(&samples, "emperor_vassal_up", &[("vassal", "a.ini")]), None, "a running vassal is left out");
}

#[test]
fn stats_dump_one_object_with_upstreams_fields() {
    let mut h = Harness::new();
    put(&h.vassal("app.ini"), &uwsgi_ini(""));
    let socket = h.root.join("stats.sock");
    let socket = socket.to_str().unwrap();
    let addr = start(&mut h, &[]);
    let app = h.wait_start("app.ini");
    wait_until(DEADLINE, "app.ini running", || cond(get(&addr, "/v1/vassals").1.contains("\"state\":\"running\"")));
    let tcp = logged_addr(&h, "stats: serving");
    let text = raw(&tcp, b"");
    let stats: Value = serde_json::from_str(&text).unwrap_or_else(|e| panic!("{e}: {text}"));
    assert_eq!(stats["pid"], h.emperor_pid());
    assert!(stats["version"].is_string() && stats["cwd"].is_string());
    for key in ["uid", "gid", "emperor_tyrant", "throttle_level"] {
        assert!(stats[key].is_u64(), "{key} is a number: {stats}");
    }
    assert_eq!(stats["emperor"], serde_json::json!([h.dir_source()]));
    assert_eq!(stats["blacklist"], serde_json::json!([]));
    let vassal = &stats["vassals"][0];
    assert_eq!(vassal["id"], "app.ini");
    assert_eq!(vassal["pid"], app.pid);
    assert_eq!(vassal["monitor"], h.dir_source().as_str());
    assert_eq!(vassal["on_demand"], "");
    for key in [
        "born",
        "last_mod",
        "last_heartbeat",
        "loyal",
        "ready",
        "accepting",
        "last_loyal",
        "last_ready",
        "last_accepting",
        "first_run",
        "last_run",
        "cursed",
        "zerg",
        "uid",
        "gid",
        "respawns",
    ] {
        assert!(vassal[key].is_u64(), "{key} is a number: {vassal}");
    }
    let born = vassal["born"].as_u64().unwrap() as f64;
    assert!(born > now() - 60.0 && born <= now() + 1.0, "born is a timestamp: {vassal}");
    let last_mod = vassal["last_mod"].as_u64().unwrap() as f64;
    assert!(last_mod > now() - 60.0 && last_mod <= now() + 1.0, "last_mod is the file's mtime: {vassal}");

    // The same object on a Unix socket.
    let mut on_unix = Harness::new();
    on_unix.start_dir(&["--stats", socket]);
    logged_addr(&on_unix, "stats: serving");
    let mut stream = std::os::unix::net::UnixStream::connect(socket).expect("the stats socket");
    let mut text = String::new();
    stream.read_to_string(&mut text).unwrap();
    let stats: Value = serde_json::from_str(&text).unwrap_or_else(|e| panic!("{e}: {text}"));
    assert_eq!(stats["vassals"], serde_json::json!([]));
}

#[test]
fn a_source_password_never_shows_and_healthz_waits_for_every_source() {
    let mut h = Harness::new();
    put(&h.vassal("a.ini"), &uwsgi_ini(""));
    let pg = "pg://host=127.0.0.1 port=1 user=emperor password=hunter2 dbname=fleet connect_timeout=1;\
              SELECT name,config,ts FROM vassals";
    let source = h.dir_source();
    h.start(&["--http", "127.0.0.1:0", "--stats", "127.0.0.1:0", &source, pg]);
    let addr = logged_addr(&h, "http: serving");
    h.wait_start("a.ini");
    let samples = wait_metrics(&addr, "the pg source listed", |s| {
        s.iter().any(|s| s.name == "emperor_source_up" && s.labels["source"].starts_with("pg://"))
    });
    let pg_label = samples.iter().find(|s| s.labels.get("source").is_some_and(|l| l.starts_with("pg://"))).unwrap();
    assert!(pg_label.labels["source"].contains("password=***"), "{pg_label:?}");
    let (_, text) = get(&addr, "/metrics");
    assert!(!text.contains("hunter2"), "the password in /metrics:\n{text}");
    let (status, body) = get(&addr, "/healthz");
    assert_eq!(status, 503, "the pg source never delivered its listing: {body}");
    let pg_sync = samples
        .iter()
        .find(|s| s.name == "emperor_source_last_sync_timestamp_seconds" && s.labels["source"].starts_with("pg://"));
    assert_eq!(pg_sync.map(|s| s.value), Some(0.0), "never synced: present, at 0");
    for path in ["/v1/sources", "/v1/vassals"] {
        assert!(!get(&addr, path).1.contains("hunter2"), "the password in {path}");
    }
    let stats = raw(&logged_addr(&h, "stats: serving"), b"");
    assert!(stats.contains("pg://") && !stats.contains("hunter2"), "{stats}");
}

#[test]
fn a_port_in_use_stops_the_start_before_any_vassal_runs() {
    let mut h = Harness::new();
    put(&h.vassal("a.ini"), &uwsgi_ini(""));
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = taken.local_addr().unwrap().to_string();
    h.start_dir(&["--http", &addr]);
    let status = h.wait_emperor_exit(DEADLINE);
    assert!(!status.success(), "{status:?}");
    assert!(h.log_text().contains(&format!("--http: cannot listen on {addr}")), "{}", h.log_text());
    assert!(h.starts("a.ini").is_empty(), "no vassal was started");
}

#[test]
fn an_address_beyond_loopback_is_served_with_a_warning() {
    let mut h = Harness::new();
    h.start_dir(&["--http", "0.0.0.0:0"]);
    let addr = logged_addr(&h, "http: serving");
    let port = addr.rsplit_once(':').unwrap().1;
    let local = format!("127.0.0.1:{port}");
    wait_until(DEADLINE, "/healthz 200 on loopback", || cond(get(&local, "/healthz").0 == 200));
    let warning = h.wait_complaint("listening beyond this host");
    assert!(warning.contains("WARN") && warning.contains("--http"), "{warning}");
}
