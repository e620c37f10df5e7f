"""bench/pg_rows.py -- emperor only: one row of a large pg:// table changed -> its vassal reloaded.

A private PostgreSQL (initdb + pg_ctl on a free loopback port, in the work
dir, as the user `postgres` when run as root) holds PG_N rows of the shipped
table (deploy/pg/vassals.sql, whose trigger names the changed row). The
emperor runs all of them from `pg://...;listen=emperor_vassals` (PG_CHANGES
of them uWSGI-style, the rest native vassals); then PG_CHANGES times, one of
those rows' ts is bumped (each time a different row) and the time until its
vassal reads byte 1 (and until it re-exec'd) is measured,
with the emperor's CPU time over all the changes (/proc/PID/stat and
schedstat) divided by their number.

Called by harness.py (`h` is the harness module: its waits, process
tracking and logging).
"""

import os
import pwd
import random
import shutil
import signal
import socket
import subprocess
import time

PG_DIRS = "/usr/lib/postgresql"
ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def pg_bin():
    """The newest PostgreSQL server binaries on this machine, or None."""
    try:
        versions = sorted((int(v) for v in os.listdir(PG_DIRS) if v.isdigit()), reverse=True)
    except OSError:
        return None
    for v in versions:
        b = os.path.join(PG_DIRS, str(v), "bin")
        if os.path.exists(os.path.join(b, "pg_ctl")):
            return b
    return None


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Postgres:
    """A private cluster in `base`; stopped (SIGINT, fast shutdown) by stop()."""

    def __init__(self, h, base):
        self.h, self.base, self.bin = h, base, pg_bin()
        self.data, self.port, self.pid = os.path.join(base, "data"), free_port(), None
        self.as_postgres = os.geteuid() == 0
        os.makedirs(base, exist_ok=True)
        if self.as_postgres:
            pw = pwd.getpwnam("postgres")
            os.chown(base, pw.pw_uid, pw.pw_gid)
            # the user postgres must reach its dir through the work dir (mktemp: 0700)
            parent = os.path.dirname(base)
            while parent != os.path.dirname(parent):
                if not os.stat(parent).st_mode & 0o001:
                    os.chmod(parent, os.stat(parent).st_mode | 0o711)
                parent = os.path.dirname(parent)

    def _run(self, argv, **kw):
        if self.as_postgres:
            argv = ["runuser", "-u", "postgres", "--"] + argv
        return subprocess.run(argv, cwd=self.base, capture_output=True, text=True, timeout=120, **kw)

    def start(self):
        out = self._run([os.path.join(self.bin, "initdb"), "-D", self.data, "-U", "postgres", "-A", "trust",
                         "-E", "UTF8", "--locale=C", "--no-sync"])
        if out.returncode != 0:
            return f"initdb failed: {out.stderr.strip()[-300:]}"
        opts = (f"-p {self.port} -c listen_addresses=127.0.0.1 -k {self.base} -c fsync=off "
                "-c synchronous_commit=off -c full_page_writes=off")
        out = self._run([os.path.join(self.bin, "pg_ctl"), "-D", self.data, "-l", os.path.join(self.base, "server.log"),
                         "-w", "-t", "60", "-o", opts, "start"])
        if out.returncode != 0:
            return f"pg_ctl start failed: {out.stderr.strip()[-300:]}"
        with open(os.path.join(self.data, "postmaster.pid")) as f:
            self.pid = int(f.readline())
        return None

    def psql(self):
        """A psql session reading statements from its stdin (one per line)."""
        argv = [os.path.join(self.bin, "psql"), "-X", "-q", "-v", "ON_ERROR_STOP=1", "-h", "127.0.0.1", "-p",
                str(self.port), "-U", "postgres", "-d", "postgres"]
        return subprocess.Popen(argv, stdin=subprocess.PIPE, stdout=subprocess.DEVNULL, text=True)

    def sql(self, text):
        argv = [os.path.join(self.bin, "psql"), "-X", "-q", "-v", "ON_ERROR_STOP=1", "-h", "127.0.0.1", "-p",
                str(self.port), "-U", "postgres", "-d", "postgres"]
        out = subprocess.run(argv, input=text, capture_output=True, text=True, timeout=300)
        if out.returncode != 0:
            raise RuntimeError(f"psql: {out.stderr.strip()[-300:]}")

    def conninfo(self):
        return f"host=127.0.0.1 port={self.port} user=postgres dbname=postgres"

    def stop(self):
        if not self.pid:
            return
        try:
            os.kill(self.pid, signal.SIGINT)
        except ProcessLookupError:
            pass
        if not self.h.wait_until(lambda: not os.path.exists(f"/proc/{self.pid}"), 30):
            os.kill(self.pid, signal.SIGKILL)
        self.pid = None


def run(h, args, work, n, changes):
    """The PG_N phase: returns its figures (or {"error": ...})."""
    if pg_bin() is None:
        return {"n": n, "error": f"no PostgreSQL server binaries under {PG_DIRS}"}
    base = os.path.join(work, f"pg{n}")
    marks, state = os.path.join(base, "marks"), os.path.join(base, "state")
    os.makedirs(marks, exist_ok=True)
    pg = Postgres(h, os.path.join(base, "pg"))
    pid = None
    try:
        err = pg.start()
        if err:
            return {"n": n, "error": err}
        with open(os.path.join(ROOT, "deploy", "pg", "vassals.sql")) as f:
            pg.sql(f.read())
        # The changed rows are uWSGI-style vassals (reload: byte 1, then re-exec);
        # the others native ones, which cost the emperor no fd (an inline
        # uWSGI-style config costs it three: 10 000 would not fit under 20 000).
        probes = random.Random(h.SEED).sample(range(1, n + 1), min(changes, n))
        pg.sql(f"INSERT INTO vassals (name, config) SELECT 'pg' || i || '.ini', CASE WHEN i = ANY(ARRAY{probes}::int[]) "
               f"THEN E'[uwsgi]\\n; pg vassal ' || i ELSE E'[vassal]\\nexec = {args.vassal} --ini pg' || i || E'.ini\\n' END "
               f"FROM generate_series(1, {n}) AS i")
        h.log(f"emperor: pg {n}: table filled, starting the emperor")
        uri = f"pg://{pg.conninfo()};SELECT name, config, ts FROM vassals;listen=emperor_vassals"
        argv = [args.emperor, "--state-dir", state, "--vassal-binary", args.vassal, "--stop-timeout", "30", uri]
        pid = h.start_process(argv + h.EMPEROR_ARGS, {"BENCH_MARK_DIR": marks, "BENCH_LOYAL": "1"},
                              os.path.join(base, "emperor.log"))
        if not h.wait_until(lambda: h.count_starts(marks) >= n, h.SCALE_WAIT_S, step=0.5):
            return {"n": n, "error": f"only {h.count_starts(marks)} of {n} vassals started in {h.SCALE_WAIT_S:.0f} s"}
        settle(h, pid)
        return changes_phase(h, pg, pid, marks, n, probes)
    finally:
        if pid is not None:
            h.terminate(pid, h.STOP_WAIT_S)
        h.kill_token_processes()
        pg.stop()
        if not h.KEEP:
            shutil.rmtree(base, ignore_errors=True)


def settle(h, pid):
    """Until the emperor is quiet (≤ SETTLE_QUIET_PCT over 1 s), at most SETTLE_MAX_S."""
    end = time.monotonic() + h.SETTLE_MAX_S
    while time.monotonic() < end:
        pct, _, _ = h.cpu_window(pid, 1.0)
        if pct <= h.SETTLE_QUIET_PCT:
            return


def changes_phase(h, pg, pid, marks, n, rows):
    ino = h.Inotify(marks)
    session = pg.psql()
    res = {"n": n, "reload": [], "reload_exec": [], "failed": 0, "load_before": os.getloadavg()[0]}
    h.log(f"emperor: pg {n}: all started, changing {len(rows)} rows one after the other (emperor pid {pid})")
    ns0, ticks0 = h.cpu_ns_by_task(pid), h.cpu_ticks(pid)
    try:
        for k in rows:
            name = f"pg{k}"
            t0 = time.time_ns()
            session.stdin.write(f"UPDATE vassals SET ts = clock_timestamp() WHERE name = '{name}.ini';\n")
            session.stdin.flush()
            m = h.wait_until(lambda: h.read_marker(os.path.join(marks, f"{name}.reload0")), h.WAIT_S, ino)
            if not m:
                res["failed"] += 1
                h.log(f"emperor: pg {n}: {name} not reloaded")
                continue
            res["reload"].append(m[0] - t0)
            m = h.wait_until(lambda: h.read_marker(os.path.join(marks, f"{name}.start1")), h.WAIT_S, ino)
            if m:
                res["reload_exec"].append(m[0] - t0)
            time.sleep(0.05)
    finally:
        ns1, ticks1 = h.cpu_ns_by_task(pid), h.cpu_ticks(pid)
        session.stdin.close()
        session.wait(timeout=30)
        ino.close()
    done = max(1, len(res["reload"]))
    res["cpu_ms_per_change"] = h.cpu_ns_between(ns0, ns1) / 1e6 / done
    res["cpu_ticks_ms_per_change"] = (ticks1 - ticks0) * 1000.0 / h.CLK_TCK / done
    res["load_after"] = os.getloadavg()[0]
    ps = h.pct_stats(res["reload"])
    if ps:
        h.log(f"emperor: pg {n}: reload p50 {ps['p50']:.1f} p90 {ps['p90']:.1f} max {ps['max']:.1f} ms, "
              f"{res['cpu_ms_per_change']:.2f} ms CPU per change, load {res['load_before']:.2f}")
    return res


def render_rows(h, p):
    """The table rows of the phase's result `p` (emperor only)."""
    what = f"pg table of {p.get('n', '?')} rows, one row's ts updated → its vassal"
    if p.get("error"):
        return [(f"{what} reloaded", "—", f"error: {p['error']}", "—", "p50 ≤ 50 ms: ❌ missed")]
    out = []
    for key, event in (("reload", "read byte 1"), ("reload_exec", "re-exec'd")):
        ps = h.pct_stats(p[key])
        if not ps:
            continue
        v = f"{h.fmt_ms(ps['p50'])} / {h.fmt_ms(ps['p90'])} / {h.fmt_ms(ps['max'])} (n={ps['n']}, {p['failed']} failed)"
        t = f"p50 ≤ 50 ms: {h.mark(ps['p50'] <= 50 and not p['failed'])}" if key == "reload" else ""
        out.append((f"{what} {event}, p50 / p90 / max", "—", v, "—", t))
    out.append((f"pg table of {p['n']} rows: emperor CPU per changed row (load average {p['load_before']:.1f})", "—",
                f"{p['cpu_ms_per_change']:.2f} ms", "—", "not proportional to the table"))
    return out
