//! The stub vassal's records: one `<name>.events` file per vassal, of lines
//! `<kind> pid=<pid> gen=<gen> <details>`, and `<name>.config` with the last
//! inline config it received.

/// Escapes a vassal name for use as a file name (`%` → `%25`, `/` → `%2F`).
pub fn escape(name: &str) -> String {
    name.replace('%', "%25").replace('/', "%2F")
}

/// One line the stub recorded: `<kind> pid=<pid> gen=<gen> <details>`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Event {
    /// What happened: `start`, `recv`, `config`, `exit`, `child`, ...
    pub kind: String,
    /// The stub process that recorded it.
    pub pid: i32,
    /// The generation the emperor gave that process, if it told one.
    pub gen: Option<u64>,
    /// The rest of the line.
    pub details: String,
}

impl Event {
    fn parse(line: &str) -> Option<Event> {
        let (kind, rest) = line.split_once(' ')?;
        let rest = rest.strip_prefix("pid=")?;
        let (pid, rest) = rest.split_once(' ')?;
        let rest = rest.strip_prefix("gen=")?;
        let (gen, details) = rest.split_once(' ').unwrap_or((rest, ""));
        Some(Event {
            kind: kind.to_owned(),
            pid: pid.parse().ok()?,
            gen: gen.parse().ok(),
            details: details.to_owned(),
        })
    }

    /// The pid of a `child` record (its details are `pid=<child pid>`).
    pub fn child_pid(&self) -> Option<i32> {
        self.details.strip_prefix("pid=")?.parse().ok()
    }

    /// The `argv=` part of a `start` record.
    pub fn argv(&self) -> &str {
        let rest = self.details.strip_prefix("argv=").unwrap_or("");
        rest.split(" cwd=").next().unwrap_or("")
    }

    /// The `cwd=` part of a `start` record.
    pub fn cwd(&self) -> &str {
        let rest = self.details.split(" cwd=").nth(1).unwrap_or("");
        rest.split(" env_fd=").next().unwrap_or("")
    }

    /// Whether this is a `recv` of `byte`.
    pub fn is_recv(&self, byte: u8) -> bool {
        self.kind == "recv" && self.details == byte.to_string()
    }
}

/// Parses a whole events file; a trailing line without its newline is skipped.
pub fn parse_events(text: &str) -> Vec<Event> {
    text.split_inclusive('\n').filter(|l| l.ends_with('\n')).filter_map(|l| Event::parse(l.trim_end())).collect()
}

/// An uWSGI-style config with the given extra lines (stub knobs).
pub fn uwsgi_ini(extra: &str) -> String {
    format!("[uwsgi]\nmaster = true\n{extra}\n")
}
