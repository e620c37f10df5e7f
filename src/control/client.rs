//! `emperor ctl`: asks a running emperor, over its control socket, what
//! its vassals do, and tells it to start, stop, restart or reload some.

use super::render;
use super::table::{SourceView, State, VassalView};
use clap::{Args, Parser, Subcommand, ValueEnum};
use serde_json::Value;
use std::io::{Read, Write};
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Duration;

const EXIT_CODES: &str = "\
Exit codes (as systemctl): 0 ok; 1 failed (a refused command, a --wait that
timed out, a rolling restart stopped); 2 usage; 3 not running (status of a
vassal that is not running); 4 no such vassal or source; 7 emperor not reachable.";

/// Talks to a running emperor through its control socket.
#[derive(Debug, Parser)]
#[command(name = "emperor ctl", version, about, after_help = EXIT_CODES)]
pub struct CtlCli {
    /// The emperor's state directory (same default as the emperor's).
    #[arg(long, value_name = "DIR", global = true)]
    pub state_dir: Option<PathBuf>,
    /// The control socket (default <state-dir>/control.sock).
    #[arg(long, value_name = "PATH", global = true)]
    pub control_socket: Option<PathBuf>,
    /// What to do.
    #[command(subcommand)]
    pub command: Command,
}

/// Output formats of the read commands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Output {
    /// Aligned columns for people.
    Table,
    /// JSON for scripts.
    Json,
}

/// The commands of `emperor ctl`.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Every vassal: source, state, pid, uptime, restarts, last exit.
    List {
        /// Output format.
        #[arg(short, long, value_enum, default_value = "table")]
        output: Output,
    },
    /// Details of some vassals (with their last log lines); `list` without names.
    Status {
        /// Vassal names.
        names: Vec<String>,
        /// Output format.
        #[arg(short, long, value_enum, default_value = "table")]
        output: Output,
    },
    /// Starts vassals stopped by `stop`.
    Start(Targets),
    /// Stops vassals and keeps them stopped (across resyncs and emperor restarts) until `start`.
    Stop(Targets),
    /// Starts a new process for each vassal, with a fresh backoff.
    ///
    /// With `--rolling`: one at a time, each once the previous runs again.
    Restart {
        /// The vassals and how long to wait.
        #[command(flatten)]
        targets: Targets,
        /// Restart one vassal at a time, the next once the previous runs
        /// again (implies --wait); stops at the first that does not (exit 1).
        #[arg(long)]
        rolling: bool,
    },
    /// Reloads vassals as a config change does.
    Reload(Targets),
    /// Every source: up or down, since when, last error, restarts, desired vassals.
    Sources {
        /// Output format.
        #[arg(short, long, value_enum, default_value = "table")]
        output: Output,
    },
    /// The event stream, one JSON object a line (the last 10000 are kept).
    ///
    /// Events: spawned, reloaded, reload_refused, stopping, exited,
    /// crashed, held, source_up, source_down, source_synced. Each has `seq`
    /// (never reused, also across emperor restarts), `time` (seconds since
    /// the epoch), `event`, and `vassal` or `source`.
    Events {
        /// Keep printing events as they happen.
        #[arg(short, long)]
        follow: bool,
        /// Only the events after this sequence number (the last one seen);
        /// a `{"event":"missed"}` line counts those no longer kept, a
        /// `{"event":"reset"}` line says SEQ is unknown (the state was reset)
        /// and all kept events follow.
        #[arg(long, value_name = "SEQ")]
        since: Option<u64>,
        /// Only the events of this vassal.
        #[arg(long, value_name = "NAME")]
        vassal: Option<String>,
    },
    /// The last lines of a vassal's log file.
    Logs {
        /// The vassal.
        name: String,
        /// How many lines.
        #[arg(short = 'n', long = "lines", value_name = "N", default_value_t = super::stream::DEFAULT_LINES)]
        lines: usize,
        /// Keep printing what is appended (across a rotation of the file).
        #[arg(short, long)]
        follow: bool,
    },
    /// Asks the sources to read everything again now.
    ///
    /// All sources, or the one whose id is SOURCE, or those whose id starts
    /// with it; message sources have nothing to read again and are skipped.
    Resync {
        /// A source id (`dir:///etc/emperor/vassals`) or the start of some (`pg://`).
        source: Option<String>,
        /// Return once each source delivered its complete listing.
        #[arg(long)]
        wait: bool,
        /// With --wait, how many seconds to wait at most.
        #[arg(long, value_name = "SECS", default_value = "60")]
        timeout: f64,
    },
}

/// The vassals a command applies to, and whether to wait for its outcome.
#[derive(Debug, Args)]
pub struct Targets {
    /// Vassal names.
    #[arg(required = true)]
    names: Vec<String>,
    /// Return only once the command is carried out (stopped, running again).
    #[arg(long)]
    wait: bool,
    /// With --wait, how many seconds to wait at most.
    #[arg(long, value_name = "SECS", default_value = "60")]
    timeout: f64,
}

/// Why a ctl command failed, with its exit code.
#[derive(Debug, thiserror::Error)]
pub enum CtlError {
    /// The socket does not answer.
    #[error("emperor not reachable at {socket}: {source}")]
    Unreachable {
        /// The control socket.
        socket: PathBuf,
        /// What failed.
        source: std::io::Error,
    },
    /// The emperor answered something this client does not understand.
    #[error("bad answer from {socket}: {why}")]
    Protocol {
        /// The control socket.
        socket: PathBuf,
        /// What was wrong.
        why: String,
    },
}

impl CtlError {
    fn exit_code(&self) -> u8 {
        match self {
            CtlError::Unreachable { .. } => 7,
            CtlError::Protocol { .. } => 1,
        }
    }
}

/// Runs `emperor ctl` with `args` (the program name first); returns its exit code.
pub fn main(args: impl IntoIterator<Item = std::ffi::OsString>) -> ExitCode {
    let cli = match CtlCli::try_parse_from(args) {
        Ok(cli) => cli,
        Err(e) => {
            let _ = e.print();
            return ExitCode::from(e.exit_code() as u8);
        }
    };
    let socket = cli
        .control_socket
        .clone()
        .unwrap_or_else(|| cli.state_dir.clone().unwrap_or_else(crate::cli::default_state_dir).join("control.sock"));
    match run(&socket, cli.command) {
        Ok(code) => ExitCode::from(code),
        Err(e) => {
            eprintln!("emperor ctl: {e}");
            ExitCode::from(e.exit_code())
        }
    }
}

fn run(socket: &Path, command: Command) -> Result<u8, CtlError> {
    let client = Client { socket };
    match command {
        Command::List { output } => client.list(output),
        Command::Status { names, output } if names.is_empty() => client.list(output),
        Command::Status { names, output } => client.status(&names, output),
        Command::Start(targets) => client.act(super::Action::Start, &targets, false),
        Command::Stop(targets) => client.act(super::Action::Stop, &targets, false),
        Command::Restart { targets, rolling } => client.act(super::Action::Restart, &targets, rolling),
        Command::Reload(targets) => client.act(super::Action::Reload, &targets, false),
        Command::Sources { output } => client.sources(output),
        Command::Events { follow, since, vassal } => {
            let since = since.map_or(String::new(), |seq| format!("&since={seq}"));
            let vassal = vassal.map_or(String::new(), |name| format!("&vassal={}", encode(&name)));
            super::follow::get(socket, &format!("/v1/events?follow={}{since}{vassal}", u8::from(follow)))
        }
        Command::Logs { name, lines, follow } => super::follow::get(
            socket,
            &format!("/v1/vassals/{}/logs?lines={lines}&follow={}", encode(&name), u8::from(follow)),
        ),
        Command::Resync { source, wait, timeout } => client.resync(source.as_deref(), wait.then_some(timeout)),
    }
}

struct Client<'a> {
    socket: &'a Path,
}

impl Client<'_> {
    fn list(&self, output: Output) -> Result<u8, CtlError> {
        self.show::<VassalView>("/v1/vassals", output, render::vassals)
    }

    fn sources(&self, output: Output) -> Result<u8, CtlError> {
        self.show::<SourceView>("/v1/sources", output, render::sources)
    }

    /// Prints the array at `path`, as JSON or through `table`.
    fn show<T: serde::de::DeserializeOwned>(
        &self,
        path: &str,
        output: Output,
        table: fn(&[T]) -> String,
    ) -> Result<u8, CtlError> {
        let body = self.expect_ok("GET", path)?;
        match output {
            Output::Json => emit(&format!("{}\n", pretty(&body))),
            Output::Table => emit(&table(&self.decode::<Vec<T>>(body)?)),
        }
        Ok(0)
    }

    fn status(&self, names: &[String], output: Output) -> Result<u8, CtlError> {
        let (mut missing, mut down, mut found) = (false, false, Vec::new());
        for name in names {
            let (status, body) = self.call("GET", &format!("/v1/vassals/{}", encode(name)))?;
            match status {
                200 => {
                    let state: Option<State> = serde_json::from_value(body["state"].clone()).ok();
                    down |= !state.is_some_and(State::is_up);
                    found.push(body);
                }
                404 => {
                    eprintln!("emperor ctl: no such vassal: {name}");
                    missing = true;
                }
                _ => return Err(self.unexpected(status, &body)),
            }
        }
        match output {
            Output::Json => emit(&format!("{}\n", pretty(&Value::Array(found)))),
            Output::Table => {
                let blocks: Vec<String> = found.iter().map(render::status).collect();
                emit(&blocks.join("\n"));
            }
        }
        Ok(if missing {
            4
        } else if down {
            3
        } else {
            0
        })
    }

    /// Sends `action` for each target; `rolling`: each waited for, and
    /// none after the first that fails.
    fn act(&self, action: super::Action, targets: &Targets, rolling: bool) -> Result<u8, CtlError> {
        let mut code = 0;
        let wait = if targets.wait || rolling { format!("?wait={}", targets.timeout) } else { String::new() };
        for name in &targets.names {
            let path = format!("/v1/vassals/{}/{}{wait}", encode(name), action.as_str());
            let (status, body) = self.call("POST", &path)?;
            match status {
                200 => emit(&format!("{name}: {}\n", body["result"].as_str().unwrap_or("done"))),
                _ => {
                    eprintln!("emperor ctl: {name}: {}", body["error"].as_str().unwrap_or("failed"));
                    code = if status == 404 { 4 } else { code.max(1) };
                    if rolling {
                        eprintln!("emperor ctl: rolling restart stopped at {name}");
                        return Ok(code);
                    }
                }
            }
        }
        Ok(code)
    }

    /// Asks sources to read everything again; with `wait`, until each delivered.
    fn resync(&self, source: Option<&str>, wait: Option<f64>) -> Result<u8, CtlError> {
        let mut query = Vec::new();
        query.extend(source.map(|s| format!("source={}", encode(s))));
        query.extend(wait.map(|secs| format!("wait={secs}")));
        let (status, body) = self.call("POST", &format!("/v1/resync?{}", query.join("&")))?;
        if status != 200 {
            eprintln!("emperor ctl: {}", body["error"].as_str().unwrap_or("failed"));
            return Ok(if status == 404 { 4 } else { 1 });
        }
        let list = |key: &str| -> Vec<String> {
            body[key].as_array().into_iter().flatten().filter_map(|v| v.as_str().map(str::to_owned)).collect()
        };
        let done = if wait.is_some() { "synced" } else { "resyncing" };
        for id in list("resyncing") {
            emit(&format!("{id}: {done}\n"));
        }
        for id in list("skipped") {
            emit(&format!("{id}: skipped (a message source has no listing to read again)\n"));
        }
        Ok(0)
    }

    fn expect_ok(&self, method: &str, path: &str) -> Result<Value, CtlError> {
        match self.call(method, path)? {
            (200, body) => Ok(body),
            (status, body) => Err(self.unexpected(status, &body)),
        }
    }

    fn unexpected(&self, status: u16, body: &Value) -> CtlError {
        let why = body["error"].as_str().map_or_else(|| format!("HTTP status {status}"), str::to_owned);
        CtlError::Protocol { socket: self.socket.to_owned(), why }
    }

    fn decode<T: serde::de::DeserializeOwned>(&self, body: Value) -> Result<T, CtlError> {
        serde_json::from_value(body)
            .map_err(|e| CtlError::Protocol { socket: self.socket.to_owned(), why: e.to_string() })
    }

    /// One request, one connection: the status and the JSON body.
    fn call(&self, method: &str, path: &str) -> Result<(u16, Value), CtlError> {
        let unreachable = |source| CtlError::Unreachable { socket: self.socket.to_owned(), source };
        let mut stream = UnixStream::connect(self.socket).map_err(unreachable)?;
        stream.set_read_timeout(Some(Duration::from_secs(120))).map_err(unreachable)?;
        let request =
            format!("{method} {path} HTTP/1.1\r\nHost: emperor\r\nContent-Length: 0\r\nConnection: close\r\n\r\n");
        stream.write_all(request.as_bytes()).map_err(unreachable)?;
        let mut answer = Vec::new();
        stream.read_to_end(&mut answer).map_err(unreachable)?;
        let bad = |why: &str| CtlError::Protocol { socket: self.socket.to_owned(), why: why.to_owned() };
        let text = String::from_utf8(answer).map_err(|_| bad("not UTF-8"))?;
        let (head, body) = text.split_once("\r\n\r\n").ok_or_else(|| bad("no end of head"))?;
        let status = head.split(' ').nth(1).and_then(|s| s.parse().ok()).ok_or_else(|| bad("no status"))?;
        let body = serde_json::from_str(body).map_err(|e| bad(&e.to_string()))?;
        Ok((status, body))
    }
}

/// A vassal name as one path segment.
fn encode(name: &str) -> String {
    const SET: &percent_encoding::AsciiSet =
        &percent_encoding::NON_ALPHANUMERIC.remove(b'.').remove(b'-').remove(b'_').remove(b'~');
    percent_encoding::utf8_percent_encode(name, SET).to_string()
}

/// Writes to stdout; a closed pipe (`| head`) is not an error worth a panic.
fn emit(text: &str) {
    let _ = std::io::stdout().lock().write_all(text.as_bytes());
}

fn pretty(value: &Value) -> String {
    serde_json::to_string_pretty(value).unwrap_or_default()
}
