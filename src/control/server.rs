//! The control task: accepts connections on the control socket, answers
//! reads from the published table and passes commands to the main loop.

use super::hook::{Handle, Request};
use super::http::{self, HttpError};
use super::table::{SourceView, Table};
use super::{Action, CommandError};
use crate::source::supervise::StatusBoard;
use reconciler::VassalName;
use serde_json::json;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, SystemTime};
use tokio::io::AsyncWriteExt;
use tokio::net::{UnixListener, UnixStream};
use tokio::sync::oneshot;

/// How long a client may take to send its request.
const READ_TIMEOUT: Duration = Duration::from_secs(5);
/// How many lines of its log `status` shows.
const LOG_LINES: usize = 10;

/// Why the control socket could not be set up.
#[derive(Debug, thiserror::Error)]
pub enum BindError {
    /// Another emperor answers on it.
    #[error("control socket {0} is in use by another emperor")]
    InUse(PathBuf),
    /// The socket could not be created.
    #[error("cannot create the control socket {path}: {source}")]
    Io {
        /// The socket's path.
        path: PathBuf,
        /// What failed.
        source: std::io::Error,
    },
}

/// What the control task needs.
#[derive(Clone)]
pub struct Context {
    /// The main loop's table and command queue.
    pub(crate) handle: Handle,
    /// The uid (besides root) allowed to change things: the emperor's.
    pub(crate) owner: u32,
    /// Where the vassals' logs are.
    pub(crate) log_dir: PathBuf,
    /// The sources' statuses.
    pub(crate) sources: StatusBoard,
}

/// Creates the control socket at `path`, replacing a stale one but never
/// one another emperor still answers on. Mode 0660, so a group may read
/// the status; 0600 in a directory the group cannot enter anyway (the
/// private state dir, where every file is the owner's alone).
pub fn bind(path: &Path) -> Result<UnixListener, BindError> {
    let io = |source| BindError::Io { path: path.to_owned(), source };
    if std::fs::symlink_metadata(path).is_ok() {
        if std::os::unix::net::UnixStream::connect(path).is_ok() {
            return Err(BindError::InUse(path.to_owned()));
        }
        std::fs::remove_file(path).map_err(io)?;
    }
    let listener = UnixListener::bind(path).map_err(io)?;
    let group_may_enter = path
        .parent()
        .and_then(|dir| std::fs::metadata(if dir.as_os_str().is_empty() { Path::new(".") } else { dir }).ok())
        .is_some_and(|meta| meta.permissions().mode() & 0o010 != 0);
    let mode = if group_may_enter { 0o660 } else { 0o600 };
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode)).map_err(io)?;
    Ok(listener)
}

/// Serves the control socket until the task is dropped.
pub async fn serve(listener: UnixListener, context: Context) {
    let context = Arc::new(context);
    loop {
        match listener.accept().await {
            Ok((stream, _)) => {
                tokio::spawn(connection(stream, context.clone()));
            }
            Err(e) => {
                tracing::warn!(error = %e, "control socket: accept failed");
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        }
    }
}

/// Answers one request on one connection.
async fn connection(mut stream: UnixStream, context: Arc<Context>) {
    let uid = stream.peer_cred().map(|c| c.uid()).ok();
    let request = match tokio::time::timeout(READ_TIMEOUT, http::read_request(&mut stream)).await {
        Ok(Ok(request)) => request,
        Ok(Err(HttpError::Io(_))) | Err(_) => return,
        Ok(Err(e @ HttpError::TooLarge)) => return reply(&mut stream, 413, &error(&e)).await,
        Ok(Err(e)) => return reply(&mut stream, 400, &error(&e)).await,
    };
    if super::stream::is_stream(&request) {
        return super::stream::serve(stream, &context, &request).await;
    }
    let (status, body) = route(&context, uid, &request.method, &request.target).await;
    reply(&mut stream, status, &body).await;
}

async fn reply(stream: &mut UnixStream, status: u16, body: &str) {
    let _ = stream.write_all(&http::response(status, body)).await;
    let _ = stream.shutdown().await;
}

pub(super) fn error(e: &dyn std::fmt::Display) -> String {
    json!({ "error": e.to_string() }).to_string()
}

/// The status and JSON body answering `method target`.
async fn route(context: &Context, uid: Option<u32>, method: &str, target: &str) -> (u16, String) {
    let path = target.split('?').next().unwrap_or_default();
    let segments: Vec<&str> = path.trim_start_matches('/').split('/').collect();
    let table = context.handle.table.borrow().clone();
    match (method, segments.as_slice()) {
        ("GET", ["v1", "vassals"]) => (200, table.vassals_json().to_owned()),
        ("GET", ["v1", "vassals", name]) => vassal(context, &table, name),
        ("GET", ["v1", "sources"]) => (200, json!(sources(context, &table)).to_string()),
        ("POST", ["v1", "resync"]) => super::resync::resync(context, uid, target).await,
        ("POST", ["v1", "vassals", name, action]) => match Action::parse(action) {
            Some(action) => command(context, uid, name, action, wait_of(target)).await,
            None => (404, error(&format!("no such action: {action}"))),
        },
        (
            _,
            ["v1", "vassals"] | ["v1", "vassals", _] | ["v1", "sources"] | ["v1", "vassals", _, _] | ["v1", "resync"],
        ) => (405, error(&format!("{method} is not allowed on {path}"))),
        _ => (404, error(&format!("no such endpoint: {path}"))),
    }
}

/// A vassal's name from a path segment (percent-encoded).
fn name_of(segment: &str) -> Option<String> {
    percent_encoding::percent_decode_str(segment).decode_utf8().ok().map(|n| n.into_owned())
}

/// One vassal, with its log file and the last lines of it.
fn vassal(context: &Context, table: &Table, segment: &str) -> (u16, String) {
    let Some(view) = name_of(segment).and_then(|n| table.vassals.get(&n)) else {
        return (404, error(&format!("no such vassal: {segment}")));
    };
    let mut body = json!(**view);
    if let Ok(name) = VassalName::parse(&view.name).or_else(|_| VassalName::parse_path(&view.name)) {
        let log = crate::supervisor::log_path(&context.log_dir, &name);
        let tail = super::logs::tail(&log, LOG_LINES);
        body["log_tail"] = json!(String::from_utf8_lossy(&tail).lines().collect::<Vec<_>>());
        body["log"] = json!(log);
    }
    (200, body.to_string())
}

/// Every source's status, as `/v1/sources` lists them.
pub(super) fn sources(context: &Context, table: &Table) -> Vec<SourceView> {
    let now = SystemTime::now();
    context
        .sources
        .statuses()
        .into_iter()
        .map(|(id, status)| SourceView {
            desired: table.desired.get(&id.0).copied().unwrap_or(0),
            source: id.0,
            up: status.up,
            since: now
                .checked_sub(status.since.elapsed())
                .and_then(|t| t.duration_since(SystemTime::UNIX_EPOCH).ok())
                .map_or(0.0, |d| d.as_millis() as f64 / 1000.0),
            last_error: status.last_error,
            restarts: status.restarts,
        })
        .collect()
}

/// Whether a peer (its uid as `SO_PEERCRED` reports it) may change
/// anything: root or the emperor's own uid.
pub(super) fn may_change(uid: Option<u32>, owner: u32) -> bool {
    uid.is_some_and(|uid| uid == 0 || uid == owner)
}

/// The answer to a peer that may not `what` (`stop vassals`).
pub(super) fn forbidden(uid: Option<u32>, owner: u32, what: &str) -> (u16, String) {
    tracing::warn!(uid, what, "control socket: command refused");
    let who = uid.map_or("an unknown peer".to_owned(), |u| format!("uid {u}"));
    (403, error(&format!("{who} may not {what} (root or uid {owner} only)")))
}

/// The `wait=SECS` of a target's query: how long to wait for the outcome.
pub(super) fn wait_of(target: &str) -> Option<Duration> {
    let secs = http::query(target, "wait")?;
    secs.parse::<f64>().ok().and_then(|s| Duration::try_from_secs_f64(s).ok())
}

/// Passes a command to the main loop, if the caller may change things;
/// with `wait`, answers once the outcome shows in the table (or not, 504).
async fn command(
    context: &Context,
    uid: Option<u32>,
    segment: &str,
    action: Action,
    wait: Option<Duration>,
) -> (u16, String) {
    if !may_change(uid, context.owner) {
        return forbidden(uid, context.owner, &format!("{} vassals", action.as_str()));
    }
    let Some(name) = name_of(segment) else { return (400, error(&"vassal name is not UTF-8")) };
    let Ok(name) = VassalName::parse(&name).or_else(|_| VassalName::parse_path(&name)) else {
        return (404, error(&format!("no such vassal: {name}")));
    };
    let table = context.handle.table.clone();
    let before = table.borrow().vassals.get(name.as_str()).and_then(|v| v.generation);
    let (tx, rx) = oneshot::channel();
    let request = Request { name: name.clone(), action, reply: tx };
    if context.handle.commands.send(request).await.is_err() {
        return (500, error(&CommandError::ShuttingDown));
    }
    match rx.await {
        Ok(Ok(result)) => {
            tracing::info!(vassal = %name, action = action.as_str(), uid, "control socket: {result}");
            if let Some(timeout) = wait {
                if !super::wait::until_done(table, name.as_str(), action, before, timeout).await {
                    return (504, error(&format!("timed out waiting for {name} to {}", action.as_str())));
                }
                let result = match action {
                    Action::Stop => "stopped",
                    Action::Start => "running",
                    Action::Restart => "running again",
                    Action::Reload => "reload sent",
                };
                return (200, json!({ "vassal": name.as_str(), "result": result }).to_string());
            }
            (200, json!({ "vassal": name.as_str(), "result": result }).to_string())
        }
        Ok(Err(e @ CommandError::NoSuchVassal(_))) => (404, error(&e)),
        Ok(Err(e @ CommandError::Stopped(_))) => (409, error(&e)),
        Ok(Err(e)) => (500, error(&e)),
        Err(_) => (500, error(&CommandError::ShuttingDown)),
    }
}
