//! Reading `/proc/PID/stat`: the fields that identify one of our processes.

/// What `/proc/PID/stat` tells about a process.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Stat {
    /// Its state letter (`R`, `S`, `Z`…).
    pub state: char,
    /// The session it belongs to.
    pub session: i32,
    /// Its start time in clock ticks since boot: with the pid, it identifies
    /// the process across pid reuse.
    pub start_time: u64,
}

impl Stat {
    /// Whether the process leads its own session (as every vassal does).
    pub fn leads_session(&self, pid: i32) -> bool {
        self.session == pid
    }

    /// Whether the process is a zombie (exited, not reaped yet).
    pub fn is_zombie(&self) -> bool {
        self.state == 'Z'
    }
}

/// Reads `/proc/PID/stat`; `None` when the process does not exist. One
/// read of a page (a whole-file read would probe in small reads, each of
/// which makes the kernel format the whole file again).
pub fn stat(pid: i32) -> Option<Stat> {
    let mut buf = Vec::new();
    parse_bytes(read_into(pid, "stat", &mut buf)?)
}

/// Reads `/proc/PID/<file>` into `buf` (reused from call to call, so that a
/// scan of every process allocates once) in as few reads as the file
/// allows; the bytes read, or `None` when the process does not exist.
pub fn read_into<'a>(pid: i32, file: &str, buf: &'a mut Vec<u8>) -> Option<&'a [u8]> {
    use std::io::Read;
    let mut f = std::fs::File::open(format!("/proc/{pid}/{file}")).ok()?;
    if buf.len() < 4096 {
        buf.resize(4096, 0);
    }
    let mut filled = 0;
    loop {
        if filled == buf.len() {
            buf.resize(buf.len() * 2, 0);
        }
        match f.read(&mut buf[filled..]) {
            Ok(0) => return Some(&buf[..filled]),
            Ok(n) => filled += n,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(_) => return None,
        }
    }
}

/// Parses the bytes of a stat file (see [`read_into`]).
pub fn parse_bytes(bytes: &[u8]) -> Option<Stat> {
    parse(&String::from_utf8_lossy(bytes))
}

/// The start time of `pid` (`/proc/PID/stat` field 22).
pub fn start_time(pid: i32) -> Option<u64> {
    stat(pid).map(|s| s.start_time)
}

/// The boot clock read just before a process is created: the kernel
/// stamps a new process with that clock, in clock ticks in
/// `/proc/PID/stat`, so a process created between two readings that fall
/// in the same tick started in that tick. A spawn then knows its child's
/// start time without reading `/proc` (most spawns take far less than a
/// tick of 10 ms).
#[derive(Debug, Clone, Copy)]
pub struct BootWindow(Option<u64>);

impl BootWindow {
    /// Opens the window: reads the boot clock.
    pub fn open() -> Self {
        Self(boot_ticks())
    }

    /// The start time (clock ticks since boot) of a process created since
    /// [`BootWindow::open`], when the clock is still in the same tick.
    pub fn start_time(self) -> Option<u64> {
        let before = self.0?;
        (boot_ticks()? == before).then_some(before)
    }
}

/// The boot clock (`CLOCK_BOOTTIME`, which the kernel's process start
/// times follow) in clock ticks.
fn boot_ticks() -> Option<u64> {
    static NS_PER_TICK: std::sync::OnceLock<Option<u64>> = std::sync::OnceLock::new();
    let per_tick = (*NS_PER_TICK.get_or_init(|| {
        // SAFETY: sysconf only reads a system setting.
        let ticks = unsafe { libc::sysconf(libc::_SC_CLK_TCK) };
        u64::try_from(ticks).ok().filter(|&t| t > 0 && 1_000_000_000 % t == 0).map(|t| 1_000_000_000 / t)
    }))?;
    Some(super::clock::boottime_ns() / per_tick)
}

/// Parses the text of a stat file.
fn parse(text: &str) -> Option<Stat> {
    // The command name (field 2) may hold spaces and parentheses: skip past its last ')'.
    let fields: Vec<&str> = text.get(text.rfind(')')? + 2..)?.split_whitespace().collect();
    // Fields after the command: state(0) ppid(1) pgrp(2) session(3) … starttime(19).
    Some(Stat {
        state: fields.first()?.chars().next()?,
        session: fields.get(3)?.parse().ok()?,
        start_time: fields.get(19)?.parse().ok()?,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_start_time_known_at_spawn_is_the_one_in_proc() {
        let mut known = 0;
        for _ in 0..50 {
            let window = BootWindow::open();
            let mut child = std::process::Command::new("sleep").arg("5").spawn().unwrap();
            let pid = child.id() as i32;
            if let Some(at) = window.start_time() {
                assert_eq!(Some(at), start_time(pid), "pid {pid}");
                known += 1;
            }
            child.kill().unwrap();
            child.wait().unwrap();
        }
        assert!(known > 0, "every spawn of 50 straddled a clock tick");
    }

    #[test]
    fn parses_a_command_with_spaces_and_parentheses() {
        let line = "42 (a) b (c)) S 1 42 42 0 -1 4194560 0 0 0 0 0 0 0 0 20 0 1 0 12345 0 0";
        let stat = parse(line).unwrap();
        assert_eq!(stat, Stat { state: 'S', session: 42, start_time: 12345 });
        assert!(stat.leads_session(42));
        assert!(!stat.is_zombie());
        assert_eq!(parse("7 (x) Z"), None);
    }

    #[test]
    fn a_reused_buffer_reads_stat_and_environ_whole() {
        let me = std::process::id() as i32;
        let mut buf = Vec::new();
        let stat = parse_bytes(read_into(me, "stat", &mut buf).unwrap()).unwrap();
        assert_eq!(stat.start_time, start_time(me).unwrap());
        let environ = read_into(me, "environ", &mut buf).unwrap().to_vec();
        assert_eq!(environ, std::fs::read(format!("/proc/{me}/environ")).unwrap());
        assert!(read_into(-1, "stat", &mut buf).is_none());
    }

    #[test]
    fn start_time_of_self_parses() {
        assert!(start_time(std::process::id() as i32).unwrap() > 0);
    }
}
