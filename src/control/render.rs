//! How `emperor ctl` prints what the control socket answers.

use super::table::{SourceView, State, VassalCounts, VassalView};
use serde_json::Value;
use std::fmt::Write;
use std::time::{SystemTime, UNIX_EPOCH};

/// The `list` table with its footer line.
pub(crate) fn vassals(views: &[VassalView]) -> String {
    let now = unix_now();
    let rows: Vec<Vec<String>> = views
        .iter()
        .map(|v| {
            vec![
                v.name.clone(),
                v.source.clone(),
                v.state.as_str().to_owned(),
                v.pid.map_or("-".into(), |p| p.to_string()),
                match (v.state, v.since) {
                    (State::Running | State::Starting, Some(since)) => duration(now - since),
                    _ => "-".into(),
                },
                v.restarts.to_string(),
                v.last_exit.map_or("-".into(), |e| e.to_string()),
            ]
        })
        .collect();
    let mut out = table(&["VASSAL", "SOURCE", "STATE", "PID", "UPTIME", "RESTARTS", "LAST-EXIT"], &rows);
    out.push_str(&footer(views));
    out.push('\n');
    out
}

/// `N vassals: R running, C crashed (backing off), H held, S stopped`.
pub(crate) fn footer(views: &[VassalView]) -> String {
    VassalCounts::of(views).to_string()
}

/// The `sources` table.
pub(crate) fn sources(views: &[SourceView]) -> String {
    let now = unix_now();
    let rows: Vec<Vec<String>> = views
        .iter()
        .map(|s| {
            vec![
                s.source.clone(),
                if s.up { "up" } else { "down" }.to_owned(),
                format!("{} ago", duration(now - s.since)),
                s.restarts.to_string(),
                s.desired.to_string(),
                s.last_error.clone().unwrap_or_else(|| "-".into()),
            ]
        })
        .collect();
    table(&["SOURCE", "UP", "SINCE", "RESTARTS", "DESIRED", "LAST-ERROR"], &rows)
}

/// One `status` block: the vassal's view plus its log file and log tail.
pub(crate) fn status(detail: &Value) -> String {
    let Ok(view) = serde_json::from_value::<VassalView>(detail.clone()) else {
        return format!("{detail}\n");
    };
    let mut out = format!("{} {} - {}\n", glyph(view.state), view.name, view.state.as_str());
    let mut field = |key: &str, value: String| {
        let _ = writeln!(out, "{key:>11}: {value}");
    };
    if let Some(since) = view.since {
        field("Since", format!("{} ({} ago)", utc(since), duration(unix_now() - since)));
    }
    if let Some(reason) = &view.reason {
        field("Why", reason.clone());
    }
    if let Some(since) = view.since_ready {
        field("Ready", format!("since {}", utc(since)));
    }
    if let Some(text) = &view.status_text {
        field("Status", text.clone());
    }
    if let Some(at) = view.restart_at {
        field("Respawn", utc(at));
    }
    let generation = view.generation.map_or(String::new(), |g| format!(" (generation {g})"));
    field("PID", format!("{}{generation}", view.pid.map_or("-".into(), |p| p.to_string())));
    field("Restarts", view.restarts.to_string());
    field("Last exit", view.last_exit.map_or("-".into(), |e| e.to_string()));
    field("Source", view.source.clone());
    field("Version", view.version.clone());
    if let Some(log) = detail["log"].as_str() {
        field("Log", log.to_owned());
    }
    if let Some(lines) = detail["log_tail"].as_array().filter(|l| !l.is_empty()) {
        out.push('\n');
        for line in lines {
            let _ = writeln!(out, "  {}", line.as_str().unwrap_or_default());
        }
    }
    out
}

fn glyph(state: State) -> char {
    match state {
        State::Running => '●',
        State::Waiting => '◌',
        State::Starting => '◐',
        State::Stopping | State::Stopped | State::Standby => '○',
        State::Crashed | State::Held => '×',
    }
}

/// Left-aligned columns two spaces apart.
fn table(header: &[&str], rows: &[Vec<String>]) -> String {
    let mut widths: Vec<usize> = header.iter().map(|h| h.len()).collect();
    for row in rows {
        for (w, cell) in widths.iter_mut().zip(row) {
            *w = (*w).max(cell.chars().count());
        }
    }
    let mut out = String::new();
    let header: Vec<String> = header.iter().map(|h| (*h).to_owned()).collect();
    for row in std::iter::once(&header).chain(rows) {
        let cells: Vec<String> = row.iter().zip(&widths).map(|(c, w)| format!("{c:<w$}")).collect();
        out.push_str(cells.join("  ").trim_end());
        out.push('\n');
    }
    out
}

fn unix_now() -> f64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map_or(0.0, |d| d.as_secs_f64())
}

/// A short duration: `42s`, `3m12s`, `2h05m`, `3d04h`.
pub(crate) fn duration(secs: f64) -> String {
    let s = secs.max(0.0) as u64;
    match s {
        0..60 => format!("{s}s"),
        60..3600 => format!("{}m{:02}s", s / 60, s % 60),
        3600..86400 => format!("{}h{:02}m", s / 3600, s % 3600 / 60),
        _ => format!("{}d{:02}h", s / 86400, s % 86400 / 3600),
    }
}

/// `2026-12-02 06:40:01 UTC` from seconds since the epoch.
pub(crate) fn utc(secs: f64) -> String {
    let secs = secs.max(0.0) as i64;
    let (days, rem) = (secs.div_euclid(86400), secs.rem_euclid(86400));
    // Civil date from days since 1970-01-01 (Howard Hinnant's algorithm).
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!("{year:04}-{month:02}-{day:02} {:02}:{:02}:{:02} UTC", rem / 3600, rem % 3600 / 60, rem % 60)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn times_print_short_and_in_utc() {
        assert_eq!(duration(5.2), "5s");
        assert_eq!(duration(192.0), "3m12s");
        assert_eq!(duration(7500.0), "2h05m");
        assert_eq!(duration(273_600.0), "3d04h");
        assert_eq!(utc(0.0), "1970-01-01 00:00:00 UTC");
        assert_eq!(utc(1_798_000_000.0), "2026-12-23 04:26:40 UTC");
        assert_eq!(utc(951_782_400.0), "2000-02-29 00:00:00 UTC");
    }

    #[test]
    fn the_table_aligns_and_the_footer_counts() {
        let view = |name: &str, state| VassalView {
            name: name.into(),
            source: "dir:///v".into(),
            version: "1".into(),
            state,
            reason: None,
            pid: None,
            generation: None,
            since: None,
            restart_at: None,
            restarts: 0,
            last_exit: None,
            ready: false,
            since_ready: None,
            status_text: None,
        };
        let out = vassals(&[view("a.ini", State::Running), view("long-name.ini", State::Held)]);
        let lines: Vec<&str> = out.lines().collect();
        assert_eq!(lines[0], "VASSAL         SOURCE    STATE    PID  UPTIME  RESTARTS  LAST-EXIT");
        assert_eq!(lines[3], "2 vassals: 1 running, 0 crashed (backing off), 1 held, 0 stopped");
    }
}
