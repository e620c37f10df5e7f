//! The streaming endpoints of the control socket: `GET /v1/events` (the
//! event stream, NDJSON) and `GET /v1/vassals/NAME/logs` (a log file's
//! last lines, text). With `follow=1` the body goes on until the client
//! hangs up; the loop never waits for it.

use super::events::{missed_line, Event, EventFeed};
use super::http::{self, query, Request};
use super::logs::Follower;
use super::server::Context;
use reconciler::VassalName;
use serde_json::json;
use std::path::PathBuf;
use std::sync::Arc;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::unix::{OwnedReadHalf, OwnedWriteHalf};
use tokio::net::UnixStream;
use tokio::sync::broadcast::error::RecvError;
use tokio::sync::Notify;

/// How many lines of its log `logs` shows by default.
pub(crate) const DEFAULT_LINES: usize = 10;

/// Whether `request` is for a streaming endpoint.
pub(crate) fn is_stream(request: &Request) -> bool {
    request.method == "GET" && (events_path(&request.target) || logs_segment(&request.target).is_some())
}

/// Answers a streaming request, then closes the connection.
pub(crate) async fn serve(stream: UnixStream, context: &Context, request: &Request) {
    let target = &request.target;
    let follow = query(target, "follow").is_some_and(|v| v == "1" || v == "true");
    if events_path(target) {
        let since = query(target, "since").and_then(|s| s.parse().ok());
        let vassal = query(target, "vassal").and_then(|v| percent_encoding::percent_decode_str(v).decode_utf8().ok());
        let wanted = Wanted { since, follow, vassal: vassal.map(|v| v.into_owned()) };
        return events(stream, &context.handle.events, wanted).await;
    }
    let Some(segment) = logs_segment(target) else { return };
    let lines = query(target, "lines").and_then(|n| n.parse().ok()).unwrap_or(DEFAULT_LINES);
    match log_of(context, segment) {
        Some(path) => logs(stream, path, lines, follow).await,
        None => refuse(stream, 404, &format!("no such vassal: {segment}")).await,
    }
}

fn events_path(target: &str) -> bool {
    target.split('?').next() == Some("/v1/events")
}

/// The vassal segment of `/v1/vassals/NAME/logs`.
fn logs_segment(target: &str) -> Option<&str> {
    let path = target.split('?').next()?;
    path.strip_prefix("/v1/vassals/")?.strip_suffix("/logs").filter(|s| !s.is_empty() && !s.contains('/'))
}

/// The log file of the vassal named by `segment`, if some source wants it.
fn log_of(context: &Context, segment: &str) -> Option<PathBuf> {
    let name = percent_encoding::percent_decode_str(segment).decode_utf8().ok()?;
    context.handle.table.borrow().vassals.get(name.as_ref())?;
    let name = VassalName::parse(&name).or_else(|_| VassalName::parse_path(&name)).ok()?;
    Some(crate::supervisor::log_path(&context.log_dir, &name))
}

async fn refuse(mut stream: UnixStream, status: u16, why: &str) {
    let _ = stream.write_all(&http::response(status, &json!({ "error": why }).to_string())).await;
    let _ = stream.shutdown().await;
}

/// What a reader of the event stream asks for.
struct Wanted {
    /// Only events after this one.
    since: Option<u64>,
    /// Go on with the events published from now on.
    follow: bool,
    /// Only the events of this vassal.
    vassal: Option<String>,
}

impl Wanted {
    fn shows(&self, event: &Event) -> bool {
        self.vassal.as_ref().is_none_or(|name| event.vassal.as_ref() == Some(name))
    }

    fn shows_line(&self, line: &[u8]) -> bool {
        self.vassal.is_none() || serde_json::from_slice(line).is_ok_and(|event| self.shows(&event))
    }
}

/// The stored events after `since` (all of them without it), then, when
/// following, every event published from then on.
async fn events(stream: UnixStream, feed: &EventFeed, wanted: Wanted) {
    let Wanted { since, follow, .. } = wanted;
    let mut live = follow.then(|| feed.subscribe());
    let mut tail = feed.stored_after(since.unwrap_or(0)).await;
    let (mut hangup, mut out) = stream.into_split();
    let mut body = http::stream_head("application/x-ndjson");
    let mut last = since.unwrap_or(0);
    if since.is_some_and(|since| since > tail.last) {
        // Not a number this store handed out (its state was reset): the
        // reader is told, and starts over from what is kept.
        push_line(&mut body, json!({ "event": "reset", "last": tail.last }).to_string().as_bytes());
        tail = feed.stored_after(0).await;
        last = 0;
    }
    if let Some((first, _)) = tail.events.first().filter(|(first, _)| since.is_some() && *first > last + 1) {
        push_line(&mut body, missed_line(first - last - 1).as_bytes());
    }
    for (seq, line) in &tail.events {
        if wanted.shows_line(line) {
            push_line(&mut body, line);
        }
        last = *seq;
    }
    if out.write_all(&body).await.is_err() {
        return;
    }
    let Some(live) = &mut live else { return shut(out).await };
    loop {
        let line = tokio::select! {
            received = live.recv() => match received {
                Ok(posted) if posted.event.seq > last && wanted.shows(&posted.event) => {
                    last = posted.event.seq;
                    posted.line.clone()
                }
                Ok(_) => continue,
                Err(RecvError::Lagged(count)) => missed_line(count),
                Err(RecvError::Closed) => break,
            },
            () = hung_up(&mut hangup) => break,
        };
        let mut body = Vec::with_capacity(line.len() + 1);
        push_line(&mut body, line.as_bytes());
        if out.write_all(&body).await.is_err() {
            return;
        }
    }
    shut(out).await;
}

/// The last `lines` lines of the log at `path`, then, when following, what
/// is appended to it, read when the directory watch says it changed.
async fn logs(stream: UnixStream, path: PathBuf, lines: usize, follow: bool) {
    let (mut hangup, mut out) = stream.into_split();
    let changed = Arc::new(Notify::new());
    // Watching starts before the first read, so no write falls in between.
    let _watch = if follow { watch(&path, changed.clone()) } else { None };
    let opened = tokio::task::spawn_blocking(move || Follower::open(path, lines)).await;
    let Ok((mut follower, text)) = opened else { return };
    let mut body = http::stream_head("text/plain; charset=utf-8");
    body.extend_from_slice(&text);
    if out.write_all(&body).await.is_err() || !follow {
        return shut(out).await;
    }
    loop {
        let read = tokio::task::spawn_blocking(move || {
            let text = follower.read_new();
            (follower, text)
        })
        .await;
        let Ok((back, text)) = read else { return };
        follower = back;
        if !text.is_empty() {
            if out.write_all(&text).await.is_err() {
                return;
            }
            continue;
        }
        tokio::select! {
            () = changed.notified() => {}
            () = hung_up(&mut hangup) => break,
        }
    }
    shut(out).await;
}

/// A watch on the log's directory that wakes `changed` for events on the
/// log or its rotated copies (`NAME.log.1`); `None` if it cannot be set.
fn watch(path: &std::path::Path, changed: Arc<Notify>) -> Option<notify::RecommendedWatcher> {
    use notify::Watcher;
    let dir = path.parent()?.to_owned();
    let file = path.file_name()?.to_owned();
    let ours = move |p: &std::path::Path| {
        p.file_name().is_some_and(|n| {
            n == file.as_os_str()
                || n.as_encoded_bytes().strip_prefix(file.as_encoded_bytes()).is_some_and(|r| r.starts_with(b"."))
        })
    };
    let mut watcher = notify::recommended_watcher(move |event: notify::Result<notify::Event>| match event {
        Ok(event) if !event.paths.iter().any(|p| ours(p)) => {}
        _ => changed.notify_one(),
    })
    .ok()?;
    match watcher.watch(&dir, notify::RecursiveMode::NonRecursive) {
        Ok(()) => Some(watcher),
        Err(e) => {
            tracing::warn!(dir = %dir.display(), error = %e, "ctl logs -f: cannot watch the log dir");
            None
        }
    }
}

/// Completes when the client closes its end (or sends anything more).
async fn hung_up(read: &mut OwnedReadHalf) {
    let mut buf = [0u8; 64];
    let _ = read.read(&mut buf).await;
}

async fn shut(mut out: OwnedWriteHalf) {
    let _ = out.shutdown().await;
}

fn push_line(body: &mut Vec<u8>, line: &[u8]) {
    body.extend_from_slice(line);
    body.push(b'\n');
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::control::events::{Detail, EventLog, Kind, Subject};
    use tokio::io::{AsyncBufReadExt, BufReader};

    #[tokio::test]
    async fn a_lagging_follower_is_told_how_many_it_missed_and_goes_on() {
        let (mut log, feed) = EventLog::new(None);
        let (server, client) = UnixStream::pair().unwrap();
        let wanted = Wanted { since: None, follow: true, vassal: None };
        let _follower = tokio::spawn(async move { events(server, &feed, wanted).await });
        let mut lines = BufReader::new(client).lines();
        while lines.next_line().await.unwrap().is_some_and(|l| !l.is_empty()) {} // the head: subscribed
        let total = 20_000;
        for _ in 0..total {
            log.record(Kind::Spawned, Subject::Vassal("a.ini".into()), Detail::default());
            log.stage();
            log.release(); // never waits for the follower
        }
        let (mut shown, mut missed) = (0, 0);
        while shown + missed < total {
            let line = lines.next_line().await.unwrap().expect("a line");
            let json: serde_json::Value = serde_json::from_str(&line).unwrap();
            match json["event"].as_str() {
                Some("missed") => missed += json["missed"].as_u64().unwrap(),
                _ => shown += 1,
            }
        }
        assert!(missed > 0 && shown > 0, "{shown} shown, {missed} missed");
        log.record(Kind::Stopping, Subject::Vassal("a.ini".into()), Detail::default());
        log.stage();
        log.release();
        let next = lines.next_line().await.unwrap().expect("it goes on");
        assert!(next.contains(&format!("\"seq\":{}", total + 1)) && next.contains("stopping"), "{next}");
    }
}
