//! `emperor-stub-vassal`: a tiny vassal for black-box tests.
//!
//! It speaks the uWSGI emperor byte protocol and appends every event it sees
//! to `$STUB_RECORD/<escaped name>.events`, one line per event, each written
//! with a single `write(2)` on an `O_APPEND` fd:
//! `<event> pid=<pid> gen=<generation> <details>`.
//!
//! * uWSGI mode: `emperor-stub-vassal [OPTIONS] --ini|--xml|--yaml|--json|--config TARGET [OPTIONS]`
//!   (TARGET is a file, or `emperor://NAME` for a config sent over
//!   `UWSGI_EMPEROR_FD_CONFIG`). Knobs are `stub-...= value` lines of the config.
//! * Native mode: `emperor-stub-vassal native [--exit-after-ms N] [--ignore-stop] [--child]
//!   [--print-lines N [--print-pause-ms MS]] [--serve] [--serve-then-exit N]
//!   [--notify-ready-after-ms N] [--notify-status TEXT] [--watchdog-ms N] [--on-usr2 ACTIONS]...`.
//!   `--print-lines` writes the lines `00001` … (five digits, zero-padded) to stdout from a
//!   thread, in 1000-byte writes that split lines, pausing MS between writes, then records
//!   `printed lines=N`. With `NOTIFY_SOCKET` set, it sends `READY=1` after N ms, `STATUS=TEXT`
//!   at start, `WATCHDOG=1` every N ms (recorded as `watchdog`) until a SIGUSR1 (recorded as
//!   `watchdog-stop`), and `STATUS=got SIGHUP` on a SIGHUP. Each SIGUSR2 takes the next
//!   `--on-usr2` list: comma-separated messages to send, in order, where `exit` exits with
//!   code 0 instead.
//!
//! Serving (`--serve` natively: the `LISTEN_FDS` sockets from fd 3;
//! `stub-serve = 1` in uWSGI mode: the listening socket on fd 0): each
//! connection is accepted and answered `hello pid=<pid> gen=<generation>`,
//! then closed. `--serve-then-exit N` exits with status 0 after N
//! connections; `stub-idle-after = N` sends byte 22 (idle) after N.
//!
//! Events: `start`, `config` (or `config-timeout` when none came within 5 s),
//! `child`, `recv <byte>`, `reloaded`, `sighup`, `sigterm`, `sigusr1`, `eof`,
//! `printed`, `listen fds=<n> pid=<ok|wrong|unset> names=<names>`, `served n=<count>`,
//! `idle`, `notify <message>`, `watchdog`, `watchdog-stop`, `exit code=<n>`. One `poll(2)`
//! loop watches the control fd, a signalfd and
//! the next timer deadline, so nothing busy-waits.
#![allow(unsafe_code)] // raw calls of its own (the package denies them elsewhere)

use std::fs::{File, OpenOptions};
use std::io::Write;
use std::os::fd::RawFd;
use std::path::PathBuf;
use std::time::{Duration, Instant};

/// Where and as whom events are recorded.
struct Recorder {
    file: Option<File>,
    config_path: Option<PathBuf>,
    pid: u32,
    generation: String,
}

impl Recorder {
    fn new() -> Self {
        let vassal = std::env::var("EMPEROR_VASSAL").unwrap_or_default();
        let (name, generation) = vassal.rsplit_once(':').unwrap_or((vassal.as_str(), "-"));
        let name = if name.is_empty() { "unnamed" } else { name };
        let escaped = name.replace('%', "%25").replace('/', "%2F");
        let dir = std::env::var_os("STUB_RECORD").map(PathBuf::from);
        let file = dir.as_ref().and_then(|d| {
            let path = d.join(format!("{escaped}.events"));
            OpenOptions::new().create(true).append(true).open(path).ok()
        });
        let config_path = dir.map(|d| d.join(format!("{escaped}.config")));
        Recorder { file, config_path, pid: std::process::id(), generation: generation.to_owned() }
    }

    /// Appends one event line with a single write.
    fn record(&mut self, event: &str, details: &str) {
        let mut line = format!("{event} pid={} gen={}", self.pid, self.generation);
        if !details.is_empty() {
            line.push(' ');
            line.push_str(details);
        }
        line.push('\n');
        if let Some(f) = self.file.as_mut() {
            let _ = f.write(line.as_bytes());
        }
    }

    /// Records `exit code=N` and exits.
    fn exit(&mut self, code: i32) -> ! {
        self.record("exit", &format!("code={code}"));
        std::process::exit(code)
    }
}

/// Behaviour knobs (from config lines or native arguments).
#[derive(Default)]
struct Knobs {
    exit_after_ms: Option<u64>,
    ignore_stop: bool,
    heartbeat_ms: Option<u64>,
    child: bool,
    print_lines: u32,
    print_pause_ms: u64,
    serve: bool,
    serve_then_exit: Option<u64>,
    idle_after: Option<u64>,
    ready_after_ms: Option<u64>,
    status: Option<String>,
    watchdog_ms: Option<u64>,
    on_usr2: std::collections::VecDeque<String>,
}

impl Knobs {
    /// Reads `stub-<key> = <value>` lines; every other line is ignored.
    fn apply_config(&mut self, text: &str) {
        for line in text.lines().map(str::trim).filter(|l| l.starts_with("stub-")) {
            let Some((key, value)) = line.split_once('=').or_else(|| line.split_once(':')) else {
                continue;
            };
            let value = value.trim();
            match key.trim() {
                "stub-exit-after-ms" => self.exit_after_ms = value.parse().ok(),
                "stub-ignore-stop" => self.ignore_stop = value == "1" || value == "true",
                "stub-heartbeat-ms" => self.heartbeat_ms = value.parse().ok().filter(|&n| n > 0),
                "stub-child" => self.child = value == "1" || value == "true",
                "stub-serve" => self.serve = value == "1" || value == "true",
                "stub-idle-after" => self.idle_after = value.parse().ok(),
                _ => {}
            }
        }
    }
}

/// Writes the numbered lines of `--print-lines` to stdout, then records `printed`.
fn print_lines(count: u32, pause: Duration) {
    let text: String = (1..=count).map(|n| format!("{n:05}\n")).collect();
    for chunk in text.as_bytes().chunks(1000) {
        let mut done = 0;
        while done < chunk.len() {
            // SAFETY: writing from a valid buffer of the given length.
            let n = unsafe { libc::write(1, chunk[done..].as_ptr().cast(), chunk.len() - done) };
            if n < 0 && std::io::Error::last_os_error().kind() == std::io::ErrorKind::Interrupted {
                continue;
            }
            if n <= 0 {
                return Recorder::new().record("print-failed", &std::io::Error::last_os_error().to_string());
            }
            done += n as usize;
        }
        if !pause.is_zero() {
            std::thread::sleep(pause);
        }
    }
    Recorder::new().record("printed", &format!("lines={count}"));
}

/// The `NOTIFY_SOCKET` the emperor gave, if any (`@name` is abstract).
struct Notify {
    socket: std::os::unix::net::UnixDatagram,
    addr: std::os::unix::net::SocketAddr,
}

impl Notify {
    fn from_env() -> Option<Notify> {
        use std::os::linux::net::SocketAddrExt;
        let path = std::env::var("NOTIFY_SOCKET").ok()?;
        let addr = match path.strip_prefix('@') {
            Some(name) => std::os::unix::net::SocketAddr::from_abstract_name(name.as_bytes()).ok()?,
            None => std::os::unix::net::SocketAddr::from_pathname(&path).ok()?,
        };
        Some(Notify { socket: std::os::unix::net::UnixDatagram::unbound().ok()?, addr })
    }

    /// Sends `message`; records it unless it is a watchdog ping.
    fn send(notify: &Option<Notify>, rec: &mut Recorder, message: &str) {
        let Some(n) = notify else { return };
        let sent = n.socket.send_to_addr(message.as_bytes(), &n.addr).is_ok();
        match message {
            "WATCHDOG=1" => rec.record("watchdog", ""),
            _ => rec.record("notify", &format!("{} sent={sent}", message.replace('\n', " "))),
        }
    }
}

/// 64-bit FNV-1a, printed as 16 hex digits in `config` records.
fn fnv1a64(bytes: &[u8]) -> u64 {
    bytes.iter().fold(0xcbf2_9ce4_8422_2325, |h, &b| (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3))
}

fn env_fd(key: &str) -> Option<RawFd> {
    std::env::var(key).ok()?.trim().parse().ok()
}

fn send_byte(fd: Option<RawFd>, byte: u8) {
    if let Some(fd) = fd {
        // SAFETY: writing one byte from a valid buffer; errors are ignored.
        unsafe { libc::write(fd, [byte].as_ptr().cast(), 1) };
    }
}

/// Polls one fd for input; returns false on timeout.
fn wait_readable(fd: RawFd, timeout: Duration) -> bool {
    let mut pfd = pollin(fd);
    let ms = timeout.as_millis().min(i32::MAX as u128) as i32;
    // SAFETY: one valid pollfd.
    unsafe { libc::poll(&mut pfd, 1, ms) > 0 }
}

/// Reads one framed config (`115, size_lo, size_hi, 0`, body) from `fd`,
/// giving up after 5 s.
fn read_config(fd: RawFd) -> Option<Vec<u8>> {
    let deadline = Instant::now() + Duration::from_secs(5);
    let mut buf = Vec::new();
    let mut need = 4;
    while buf.len() < need {
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() || !wait_readable(fd, left) {
            return None;
        }
        let mut chunk = vec![0u8; need - buf.len()];
        // SAFETY: reading into a buffer of the given length.
        let n = unsafe { libc::read(fd, chunk.as_mut_ptr().cast(), chunk.len()) };
        if n <= 0 {
            return None;
        }
        buf.extend_from_slice(&chunk[..n as usize]);
        if buf.len() == 4 && need == 4 {
            if buf[0] != 115 {
                return None;
            }
            need = 4 + usize::from(u16::from_le_bytes([buf[1], buf[2]]));
        }
    }
    Some(buf.split_off(4))
}

/// Reads a config from the config channel and records it.
fn receive_config(rec: &mut Recorder, fd: RawFd) -> Option<String> {
    let Some(body) = read_config(fd) else {
        rec.record("config-timeout", "");
        return None;
    };
    if let Some(path) = &rec.config_path {
        let _ = std::fs::write(path, &body);
    }
    rec.record("config", &format!("len={} sha={:016x}", body.len(), fnv1a64(&body)));
    Some(String::from_utf8_lossy(&body).into_owned())
}

/// Blocks the handled signals and returns a signalfd that reports them.
fn signal_fd() -> RawFd {
    // SAFETY: plain libc calls on a local sigset.
    unsafe {
        let mut set: libc::sigset_t = std::mem::zeroed();
        libc::sigemptyset(&mut set);
        for sig in [libc::SIGTERM, libc::SIGHUP, libc::SIGUSR1, libc::SIGUSR2] {
            libc::sigaddset(&mut set, sig);
        }
        libc::sigprocmask(libc::SIG_BLOCK, &set, std::ptr::null_mut());
        libc::signalfd(-1, &set, libc::SFD_CLOEXEC)
    }
}

/// Forks a child that sleeps forever in our process group.
fn spawn_child(close: &[RawFd]) -> libc::pid_t {
    // SAFETY: the stub is single-threaded; the child only makes
    // async-signal-safe calls before sleeping.
    unsafe {
        let pid = libc::fork();
        if pid == 0 {
            let mut set: libc::sigset_t = std::mem::zeroed();
            libc::sigemptyset(&mut set);
            libc::sigprocmask(libc::SIG_SETMASK, &set, std::ptr::null_mut());
            for &fd in close {
                libc::close(fd);
            }
            loop {
                libc::pause();
            }
        }
        pid
    }
}

/// A `pollfd` waiting for input on `fd`.
fn pollin(fd: RawFd) -> libc::pollfd {
    libc::pollfd { fd, events: libc::POLLIN, revents: 0 }
}

/// Reads one pending signal from the signalfd and reacts to it.
fn on_signal(rec: &mut Recorder, sfd: RawFd, knobs: &mut Knobs, notify: &Option<Notify>) {
    // SAFETY: reading one signalfd_siginfo into a zeroed struct of that size.
    let mut info: libc::signalfd_siginfo = unsafe { std::mem::zeroed() };
    let size = std::mem::size_of_val(&info);
    let ptr = (&mut info as *mut libc::signalfd_siginfo).cast();
    if unsafe { libc::read(sfd, ptr, size) } != size as isize {
        return;
    }
    match info.ssi_signo as i32 {
        libc::SIGTERM => {
            rec.record("sigterm", "");
            if !knobs.ignore_stop {
                rec.exit(0);
            }
        }
        libc::SIGHUP => {
            rec.record("sighup", "");
            Notify::send(notify, rec, "STATUS=got SIGHUP");
        }
        libc::SIGUSR1 => {
            rec.record("sigusr1", "");
            if knobs.watchdog_ms.take().is_some() {
                rec.record("watchdog-stop", "");
            }
        }
        libc::SIGUSR2 => {
            rec.record("sigusr2", "");
            for action in knobs.on_usr2.pop_front().unwrap_or_default().split(',').filter(|a| !a.is_empty()) {
                match action {
                    "exit" => rec.exit(0),
                    message => Notify::send(notify, rec, message),
                }
            }
        }
        _ => {}
    }
}

/// Reads what the emperor sent on the control channel and reacts to each byte.
fn on_control(rec: &mut Recorder, ctl: RawFd, cfg_fd: Option<RawFd>, knobs: &Knobs) {
    let mut buf = [0u8; 64];
    // SAFETY: reading into a local buffer of the given length.
    let n = unsafe { libc::read(ctl, buf.as_mut_ptr().cast(), buf.len()) };
    if n < 0 && std::io::Error::last_os_error().kind() == std::io::ErrorKind::Interrupted {
        return;
    }
    if n <= 0 {
        rec.record("eof", "");
        rec.exit(1);
    }
    for &byte in &buf[..n as usize] {
        rec.record("recv", &byte.to_string());
        match byte {
            0 | 2 if !knobs.ignore_stop => rec.exit(0),
            1 => {
                if let Some(cfd) = cfg_fd {
                    send_byte(Some(ctl), 2);
                    receive_config(rec, cfd);
                }
                rec.record("reloaded", "");
                send_byte(Some(ctl), 1);
            }
            _ => {}
        }
    }
}

/// The config of a uWSGI-style command line: the argument after the config
/// flag, wherever the emperor's injected `--inherit`/`--include`/`--set`
/// options put it.
fn config_target(args: &[String]) -> Option<&String> {
    let flags = ["--ini", "--xml", "--yaml", "--json", "--config"];
    args.iter().position(|a| flags.contains(&a.as_str())).and_then(|at| args.get(at + 1))
}

/// The listening sockets to serve: fd 0 for a uWSGI-style vassal, the
/// `LISTEN_FDS` ones from fd 3 for a native one (recorded, with whether
/// `LISTEN_PID` is ours).
fn listeners(rec: &mut Recorder, native: bool) -> Vec<RawFd> {
    if !native {
        // SAFETY: fstat into a zeroed stat struct.
        let mut st: libc::stat = unsafe { std::mem::zeroed() };
        let socket = unsafe { libc::fstat(0, &mut st) } == 0 && st.st_mode & libc::S_IFMT == libc::S_IFSOCK;
        rec.record("listen", &format!("fds={}", u8::from(socket)));
        return if socket { vec![0] } else { Vec::new() };
    }
    let count: i32 = std::env::var("LISTEN_FDS").ok().and_then(|n| n.parse().ok()).unwrap_or(0);
    let pid = match std::env::var("LISTEN_PID") {
        Ok(pid) if pid == std::process::id().to_string() => "ok",
        Ok(_) => "wrong",
        Err(_) => "unset",
    };
    let names = std::env::var("LISTEN_FDNAMES").unwrap_or_default();
    rec.record("listen", &format!("fds={count} pid={pid} names={names}"));
    (3..3 + count).collect()
}

/// Accepts one connection on `fd` and answers it; returns whether one came.
fn serve_one(rec: &Recorder, fd: RawFd) -> bool {
    // SAFETY: accept on a listening fd; the new fd is owned by `stream`.
    let conn = unsafe { libc::accept4(fd, std::ptr::null_mut(), std::ptr::null_mut(), libc::SOCK_CLOEXEC) };
    if conn < 0 {
        return false;
    }
    // SAFETY: `conn` was just returned by accept4 and is ours alone.
    let mut stream = unsafe { <std::fs::File as std::os::fd::FromRawFd>::from_raw_fd(conn) };
    let _ = stream.write_all(format!("hello pid={} gen={}\n", rec.pid, rec.generation).as_bytes());
    true
}

fn main() {
    let sfd = signal_fd();
    let args: Vec<String> = std::env::args().skip(1).collect();
    let mut rec = Recorder::new();
    let native = args.first().map(String::as_str) == Some("native");
    let (ctl, cfg_fd) = match native {
        true => (None, None),
        false => (env_fd("UWSGI_EMPEROR_FD"), env_fd("UWSGI_EMPEROR_FD_CONFIG")),
    };
    let cwd = std::env::current_dir().map(|p| p.display().to_string()).unwrap_or_default();
    let env_fd_text = std::env::var("UWSGI_EMPEROR_FD").unwrap_or_else(|_| "-".into());
    let argv = args.join(" ");
    rec.record("start", &format!("argv={argv} cwd={cwd} env_fd={env_fd_text}"));
    let _ = writeln!(std::io::stdout(), "stub vassal pid {} started: {argv}", rec.pid);

    let mut knobs = Knobs::default();
    if native {
        let mut it = args.iter().skip(1);
        while let Some(arg) = it.next() {
            match arg.as_str() {
                "--exit-after-ms" => knobs.exit_after_ms = it.next().and_then(|v| v.parse().ok()),
                "--ignore-stop" => knobs.ignore_stop = true,
                "--child" => knobs.child = true,
                "--print-lines" => knobs.print_lines = it.next().and_then(|v| v.parse().ok()).unwrap_or(0),
                "--print-pause-ms" => knobs.print_pause_ms = it.next().and_then(|v| v.parse().ok()).unwrap_or(0),
                "--serve" => knobs.serve = true,
                "--serve-then-exit" => knobs.serve_then_exit = it.next().and_then(|v| v.parse().ok()),
                "--notify-ready-after-ms" => knobs.ready_after_ms = it.next().and_then(|v| v.parse().ok()),
                "--notify-status" => knobs.status = it.next().cloned(),
                "--on-usr2" => knobs.on_usr2.extend(it.next().cloned()),
                "--watchdog-ms" => knobs.watchdog_ms = it.next().and_then(|v| v.parse().ok()).filter(|&n| n > 0),
                _ => {}
            }
        }
    } else if let Some(target) = config_target(&args) {
        let text = match target.starts_with("emperor://") {
            true => cfg_fd.and_then(|fd| receive_config(&mut rec, fd)),
            false => std::fs::read_to_string(target).ok(),
        };
        knobs.apply_config(&text.unwrap_or_default());
    }

    if knobs.child {
        let close: Vec<RawFd> = [Some(sfd), ctl, cfg_fd].into_iter().flatten().collect();
        let child = spawn_child(&close);
        rec.record("child", &format!("pid={child}"));
    }
    if knobs.print_lines > 0 {
        let (count, pause) = (knobs.print_lines, Duration::from_millis(knobs.print_pause_ms));
        std::thread::spawn(move || print_lines(count, pause));
    }
    send_byte(ctl, 1);
    send_byte(ctl, 17);
    let served_fds = if knobs.serve { listeners(&mut rec, native) } else { Vec::new() };
    let mut served = 0u64;
    let notify = if native { Notify::from_env() } else { None };
    if let Some(status) = knobs.status.clone() {
        Notify::send(&notify, &mut rec, &format!("STATUS={status}"));
    }

    let started = Instant::now();
    let exit_at = knobs.exit_after_ms.map(|ms| started + Duration::from_millis(ms));
    let beat = knobs.heartbeat_ms.map(Duration::from_millis);
    let mut next_beat = beat.map(|b| started + b);
    let mut ready_at = knobs.ready_after_ms.map(|ms| started + Duration::from_millis(ms));
    let mut next_ping = knobs.watchdog_ms.map(|_| started);
    loop {
        let now = Instant::now();
        if exit_at.is_some_and(|t| now >= t) {
            rec.exit(3);
        }
        if let (Some(t), Some(b)) = (next_beat, beat) {
            if now >= t {
                send_byte(ctl, 26);
                next_beat = Some(now + b);
            }
        }
        if ready_at.is_some_and(|t| now >= t) {
            ready_at = None;
            Notify::send(&notify, &mut rec, "READY=1");
        }
        next_ping = next_ping.filter(|_| knobs.watchdog_ms.is_some());
        if let (Some(t), Some(ms)) = (next_ping, knobs.watchdog_ms) {
            if now >= t {
                Notify::send(&notify, &mut rec, "WATCHDOG=1");
                next_ping = Some(now + Duration::from_millis(ms));
            }
        }
        let next = [exit_at, next_beat, ready_at, next_ping].into_iter().flatten().min();
        let timeout = next.map_or(-1, |t| t.saturating_duration_since(now).as_millis().max(1) as i32);
        let mut fds: Vec<libc::pollfd> = [Some(sfd), ctl].into_iter().flatten().map(pollin).collect();
        let first_served = fds.len();
        fds.extend(served_fds.iter().copied().map(pollin));
        // SAFETY: `fds` is a valid array of pollfd.
        if unsafe { libc::poll(fds.as_mut_ptr(), fds.len() as libc::nfds_t, timeout) } <= 0 {
            continue; // timeout (timers are checked above) or EINTR
        }
        for pfd in &fds[first_served..] {
            if pfd.revents != 0 && serve_one(&rec, pfd.fd) {
                served += 1;
                rec.record("served", &format!("n={served}"));
                if knobs.idle_after == Some(served) {
                    rec.record("idle", "");
                    send_byte(ctl, 22);
                }
                if knobs.serve_then_exit == Some(served) {
                    rec.exit(0);
                }
            }
        }
        if fds[0].revents != 0 {
            on_signal(&mut rec, sfd, &mut knobs, &notify);
        }
        if let (Some(ctl), Some(pfd)) = (ctl, fds.get(1)) {
            if pfd.revents != 0 {
                on_control(&mut rec, ctl, cfg_fd, &knobs);
            }
        }
    }
}
