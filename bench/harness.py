#!/usr/bin/env python3
"""bench/harness.py -- runs the uWSGI Emperor and emperor through the same
measurements, one after the other in one run, and prints one markdown table.

Run it through bench/run.sh, which builds emperor, compiles the C vassal and
the fork+exec floor program, sets the fd limit and passes the paths here.

Every emperor watches a dir:// directory and runs the same trivial C vassal
(bench/vassal.c) on each *.ini file. The vassal writes CLOCK_REALTIME markers
("<ns> <pid>") into $BENCH_MARK_DIR; the harness takes its own CLOCK_REALTIME
timestamp just before it acts (write, append, unlink, kill), so the figures
do not depend on how fast the harness notices a marker.

Process hygiene: the harness is a child subreaper, so a vassal orphaned by
an emperor that exits or is killed is reparented here and reaped. Every
process an emperor starts inherits BENCH_RUN_TOKEN=<token>; at the end (and
on any error or signal) every process carrying the token is killed by pid.
"""

import argparse
import ctypes
import json
import os
import platform
import random
import select
import shutil
import signal
import subprocess
import sys
import time

import pg_rows

# ---------------------------------------------------------------- knobs


def knob(name, default, cast=str):
    value = os.environ.get(name, "")
    return cast(value) if value != "" else default


def knob_ns(name, default):
    """A list of vassal counts: unset is the default, set but empty is none (those rows are skipped)."""
    value = os.environ.get(name)
    return [int(n) for n in (default if value is None else value).split()]


QUICK = knob("QUICK", 0, int) == 1
TRIALS = knob("TRIALS", 5 if QUICK else 20, int)
PERIOD_S = knob("PERIOD_S", 3.0, float)  # jitter window: uWSGI's default scan period
FREQ = knob("FREQ", "")  # uWSGI --emperor-freq (empty: its default, 3 s)
WAIT_S = knob("WAIT_S", 15.0, float)  # bound of every per-event wait
SCALE_NS = knob_ns("SCALE_NS", "1000" if QUICK else "1000 10000")
SCALE_WAIT_S = knob("SCALE_WAIT_S", 60.0 if QUICK else 300.0, float)  # bound of a convergence
SCALE_STALL_S = knob("SCALE_STALL_S", 30.0, float)  # give up a convergence that makes no progress this long
NATIVE_NS = knob_ns("NATIVE_NS", "" if QUICK else "10000 25000")  # emperor-only runs, native vassals
UWSGI_MAX_N = knob("UWSGI_MAX_N", 0, int)  # cap uWSGI's scale runs at this N (0: no cap)
SETTLE_S = knob("SETTLE_S", 3.0 if QUICK else 15.0, float)
SETTLE_MAX_S = knob("SETTLE_MAX_S", 10.0 if QUICK else 120.0, float)
SETTLE_QUIET_PCT = knob("SETTLE_QUIET_PCT", 1.0, float)
IDLE_S = knob("IDLE_S", 10.0 if QUICK else 60.0, float)
STOP_WAIT_S = knob("STOP_WAIT_S", 120.0, float)
ADOPT_N = knob("ADOPT_N", 200 if QUICK else 10000, int)
ADOPT_WAIT_S = knob("ADOPT_WAIT_S", 60.0, float)
BURST_N = knob("BURST_N", 1000 if QUICK else 10000, int)  # vassals being started while new configs arrive (0 skips it)
BURST_PROBES = knob("BURST_PROBES", 20, int)  # new configs written during that start
PG_N = knob("PG_N", 1000 if QUICK else 10000, int)  # emperor only: rows of the pg:// table (0 skips it)
PG_CHANGES = knob("PG_CHANGES", 20 if QUICK else 50, int)  # rows changed one after the other in it
FLOOR_TRIALS = knob("FLOOR_TRIALS", 100 if QUICK else 500, int)
SEED = knob("SEED", 7, int)
ONLY = knob("ONLY", "")  # "uwsgi" or "emperor": run only that one
EMPEROR_ARGS = knob("EMPEROR_ARGS", "").split()
UWSGI_ARGS = knob("UWSGI_ARGS", "").split()
KEEP = knob("KEEP", 0, int) == 1

# ---------------------------------------------------------------- libc bits

libc = ctypes.CDLL(None, use_errno=True)
PR_SET_CHILD_SUBREAPER = 36
IN_NONBLOCK, IN_CLOEXEC = 0o4000, 0o2000000
IN_CLOSE_WRITE, IN_MOVED_TO, IN_CREATE = 0x8, 0x80, 0x100
CLK_TCK = os.sysconf("SC_CLK_TCK")


LOAD_MAX = [0.0]  # highest 1-minute load average seen at any log line


def log(msg):
    try:
        with open("/proc/loadavg") as f:
            LOAD_MAX[0] = max(LOAD_MAX[0], float(f.read().split()[0]))
    except OSError:
        pass
    print(time.strftime("[%H:%M:%S] ") + msg, file=sys.stderr, flush=True)


class Inotify:
    """Wakes the harness when a marker appears (instead of busy polling)."""

    def __init__(self, path):
        self.fd = libc.inotify_init1(IN_NONBLOCK | IN_CLOEXEC)
        if self.fd < 0 or libc.inotify_add_watch(self.fd, path.encode(), IN_CLOSE_WRITE | IN_MOVED_TO | IN_CREATE) < 0:
            raise OSError(ctypes.get_errno(), "inotify on " + path)

    def wait(self, timeout):
        ready, _, _ = select.select([self.fd], [], [], max(timeout, 0))
        if ready:
            try:
                while os.read(self.fd, 65536):
                    pass
            except BlockingIOError:
                pass

    def close(self):
        os.close(self.fd)


def wait_until(cond, timeout, ino=None, step=0.05):
    """Returns cond()'s first truthy value, or None after `timeout` seconds."""
    end = time.monotonic() + timeout
    while True:
        value = cond()
        if value:
            return value
        left = end - time.monotonic()
        if left <= 0:
            return None
        if ino:
            ino.wait(min(left, step))
        else:
            time.sleep(min(left, step))


# ---------------------------------------------------------------- processes

EXITED = {}  # pid -> wait status, for every child (or orphan) reaped here
STARTED = []  # pids of every emperor started
TOKEN = ""


def reap():
    while True:
        try:
            pid, status = os.waitpid(-1, os.WNOHANG)
        except ChildProcessError:
            return
        if pid == 0:
            return
        EXITED[pid] = status


def running(pid):
    """True while `pid` exists and is not a zombie."""
    reap()
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            stat = f.read()
    except OSError:
        return False
    return stat[stat.rindex(b")") + 2 :][:1] not in (b"Z", b"X")


def stat_fields(pid):
    with open(f"/proc/{pid}/stat", "rb") as f:
        stat = f.read()
    return stat[stat.rindex(b")") + 2 :].split()


def cpu_ticks(pid):
    """utime + stime of the whole process (exited threads included), in ticks."""
    f = stat_fields(pid)
    return int(f[11]) + int(f[12])


def cpu_ns_by_task(pid):
    """Per thread: time on CPU in ns (/proc/PID/task/TID/schedstat)."""
    out = {}
    for tid in os.listdir(f"/proc/{pid}/task"):
        try:
            with open(f"/proc/{pid}/task/{tid}/schedstat") as f:
                out[tid] = int(f.read().split()[0])
        except OSError:
            pass
    return out


def cpu_ns_between(before, after):
    """CPU ns spent between two cpu_ns_by_task() readings (new threads count in full)."""
    return sum(v - before.get(tid, 0) for tid, v in after.items())


def status_kb(pid, key):
    try:
        with open(f"/proc/{pid}/status") as f:
            for line in f:
                if line.startswith(key + ":"):
                    return int(line.split()[1])
    except OSError:
        pass
    return None


def fd_kinds(pid):
    """(number of fds, number of them that are pidfds)."""
    total = pidfds = 0
    base = f"/proc/{pid}/fd"
    try:
        names = os.listdir(base)
    except OSError:
        return None, None
    for name in names:
        total += 1
        try:
            if os.readlink(f"{base}/{name}") == "anon_inode:[pidfd]":
                pidfds += 1
        except OSError:
            pass
    return total, pidfds


def token_pids():
    """Every live process whose environment carries this run's token."""
    needle = b"BENCH_RUN_TOKEN=" + TOKEN.encode()
    me = os.getpid()
    out = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit() or int(entry) == me:
            continue
        try:
            with open(f"/proc/{entry}/environ", "rb") as f:
                env = f.read()
        except OSError:
            continue
        if needle in env.split(b"\0"):
            out.append(int(entry))
    return out


def kill_token_processes(deadline_s=10.0):
    """SIGKILLs every process of this run (by pid); returns how many there were."""
    seen = set()
    end = time.monotonic() + deadline_s
    while time.monotonic() < end:
        pids = token_pids()
        if not pids:
            break
        for pid in pids:
            seen.add(pid)
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        time.sleep(0.05)
        reap()
    reap()
    return len(seen)


def start_process(argv, env_extra, logpath):
    env = dict(os.environ)
    env.update(env_extra)
    env["BENCH_RUN_TOKEN"] = TOKEN
    fd = os.open(logpath, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
    try:
        actions = [
            (os.POSIX_SPAWN_OPEN, 0, "/dev/null", os.O_RDONLY, 0),
            (os.POSIX_SPAWN_DUP2, fd, 1),
            (os.POSIX_SPAWN_DUP2, fd, 2),
        ]
        pid = os.posix_spawn(argv[0], argv, env, file_actions=actions, setsid=True)
    finally:
        os.close(fd)
    STARTED.append(pid)
    return pid


def terminate(pid, timeout):
    """SIGTERM, then SIGKILL after `timeout` s. Returns the time to exit (ns) or None on timeout."""
    t0 = time.time_ns()
    try:
        os.kill(pid, signal.SIGTERM)
    except ProcessLookupError:
        return 0
    if wait_until(lambda: not running(pid), timeout, step=0.002):
        return time.time_ns() - t0
    try:
        os.kill(pid, signal.SIGKILL)
    except ProcessLookupError:
        pass
    wait_until(lambda: not running(pid), 5)
    return None


# ---------------------------------------------------------------- markers


def read_marker(path):
    try:
        with open(path) as f:
            ns, pid = f.read().split()
        return int(ns), int(pid)
    except (OSError, ValueError):
        return None


def write_file(path, text, mode="w"):
    with open(path, mode) as f:
        f.write(text)


def start_markers(marks):
    """name -> (ns, pid) of every <name>.start0 marker."""
    out = {}
    with os.scandir(marks) as it:
        for e in it:
            if e.name.endswith(".start0"):
                m = read_marker(e.path)
                if m:
                    out[e.name[: -len(".start0")]] = m
    return out


def count_starts(marks):
    with os.scandir(marks) as it:
        return sum(1 for e in it if e.name.endswith(".start0"))


# ---------------------------------------------------------------- emperors


class Kind:
    def __init__(self, key, label, argv):
        self.key, self.label, self._argv = key, label, argv

    def argv(self, vdir, state):
        return self._argv(vdir, state)


def kinds(args):
    out = []
    if ONLY in ("", "uwsgi"):
        freq = ["--emperor-freq", FREQ] if FREQ else []
        out.append(
            Kind(
                "uwsgi",
                args.uwsgi_label,
                lambda d, s: [args.uwsgi, "--emperor", d, "--emperor-wrapper", args.vassal] + freq + UWSGI_ARGS,
            )
        )
    if ONLY in ("", "emperor"):
        out.append(
            Kind(
                "emperor",
                "emperor",
                lambda d, s: [args.emperor, "--state-dir", s, "--vassal-binary", args.vassal, "--stop-timeout", "30", d]
                + EMPEROR_ARGS,
            )
        )
    return out


class Run:
    """One emperor on one vassal directory, with its own marker dir and log."""

    def __init__(self, kind, work, tag):
        self.kind = kind
        self.base = os.path.join(work, f"{kind.key}-{tag}")
        # the watched directory is alone in its parent: emperor also watches the
        # parent (for symlink swaps), and the markers and logs must not wake it
        self.vdir = os.path.join(self.base, "watched", "vassals")
        self.marks = os.path.join(self.base, "marks")
        self.state = os.path.join(self.base, "state")
        self.logpath = os.path.join(self.base, "emperor.log")
        for d in (self.vdir, self.marks):
            os.makedirs(d, exist_ok=True)
        self.pid = None

    def start(self):
        argv = self.kind.argv(self.vdir, self.state)
        self.pid = start_process(argv, {"BENCH_MARK_DIR": self.marks, "BENCH_LOYAL": "1"}, self.logpath)
        return self.pid

    def log_tail(self, n=15):
        try:
            with open(self.logpath, errors="replace") as f:
                return "".join(f.readlines()[-n:])
        except OSError:
            return ""

    def remove(self):
        if not KEEP:
            shutil.rmtree(self.base, ignore_errors=True)


def log_errors(path):
    """The distinct error causes an emperor logged (first few), to explain a failed convergence."""
    seen = []
    try:
        with open(path, errors="replace") as f:
            for line in f:
                low = line.lower()
                for needle in ("too many open files", "cannot allocate memory", "resource temporarily unavailable",
                               "no space left"):
                    if needle in low and needle not in seen:
                        seen.append(needle)
    except OSError:
        pass
    return seen


def helpers(emperor_pid, vassal_exe):
    """Processes of this run that are neither the emperor nor a vassal (e.g. an fd holder)."""
    out = []
    for pid in token_pids():
        if pid == emperor_pid:
            continue
        try:
            exe = os.readlink(f"/proc/{pid}/exe")
        except OSError:
            continue
        if exe != vassal_exe:
            out.append(pid)
    return out


# ---------------------------------------------------------------- phases


def floor(args, work):
    marks = os.path.join(work, "floor-marks")
    os.makedirs(marks, exist_ok=True)
    log(f"floor: {FLOOR_TRIALS} bare fork+exec of the vassal")
    out = subprocess.run(
        [args.floor, args.vassal, marks, str(FLOOR_TRIALS), "20"], capture_output=True, text=True, timeout=600
    )
    if out.returncode != 0:
        log("floor failed: " + out.stderr)
        return {}
    marker, byte = [], []
    for line in out.stdout.splitlines():
        a, b = line.split()
        marker.append(int(a))
        byte.append(int(b))
    return {"spawn": marker, "answer": byte}


def converge_floor(args, work, n, native=False):
    """The floor of a convergence: `forkexec --keep`, N vassals forked back to back and kept running."""
    marks = os.path.join(work, f"floor-keep{n}{'-native' if native else ''}")
    os.makedirs(marks, exist_ok=True)
    log(f"floor: {n} vassals forked back to back and kept running{' (native)' if native else ''}")
    argv = [args.floor, args.vassal, marks, "--keep", str(n)] + (["native"] if native else [])
    try:
        out = subprocess.run(argv, capture_output=True, text=True, timeout=SCALE_WAIT_S + 60)
    except subprocess.TimeoutExpired:
        kill_token_processes()
        return {"error": "timeout"}
    shutil.rmtree(marks, ignore_errors=True)
    if out.returncode != 0 or not out.stdout.strip():
        log("converge floor failed: " + out.stderr)
        return {"error": out.stderr.strip() or f"exit {out.returncode}"}
    ms = int(out.stdout.split()[0]) / 1e6
    log(f"floor: {n} kept running, last exec'd at {ms:.0f} ms")
    return {"last_ms": ms}


def warm_up(kind, args, work):
    """Starts the emperor on 3 vassals and stops it, so binaries and libraries are in the page cache."""
    run = Run(kind, work, "warmup")
    for i in range(3):
        write_file(os.path.join(run.vdir, f"w{i}.ini"), f"[uwsgi]\n; warm-up vassal {i}\n")
    run.start()
    ok = wait_until(lambda: count_starts(run.marks) >= 3, 30, step=0.01)
    terminate(run.pid, 60)
    kill_token_processes()
    run.remove()
    log(f"{kind.key}: warm-up {'done' if ok else 'timed out'}")


def latency(kind, args, work):
    run = Run(kind, work, "latency")
    rng = random.Random(SEED)
    jitter = lambda: time.sleep(rng.uniform(0, PERIOD_S))  # noqa: E731
    run.start()
    time.sleep(1.0)
    if not running(run.pid):
        log(run.log_tail())
        return {"error": "emperor did not start"}
    ino = Inotify(run.marks)
    r = {k: [] for k in ("spawn", "respawn", "reload", "reload_exec", "stop_byte", "reaped")}
    r["failures"] = 0
    r["reload_restart"] = 0
    mk = lambda n, ev: os.path.join(run.marks, f"{n}.{ev}")  # noqa: E731
    for i in range(1, TRIALS + 1):
        n = f"lat{i}"
        cfg = os.path.join(run.vdir, f"{n}.ini")
        # spawn: config file created -> vassal start marker
        jitter()
        t0 = time.time_ns()
        write_file(cfg, f"[uwsgi]\n; bench vassal {n}\n")
        m = wait_until(lambda: read_marker(mk(n, "start0")), WAIT_S, ino)
        if not m:
            log(f"{kind.key} trial {i}: spawn timeout")
            r["failures"] += 1
            os.unlink(cfg)
            continue
        r["spawn"].append(m[0] - t0)
        pid = m[1]
        # respawn: SIGKILL -> start marker of the new process
        time.sleep(0.2)
        jitter()
        os.unlink(mk(n, "start0"))
        t0 = time.time_ns()
        os.kill(pid, signal.SIGKILL)
        m = wait_until(lambda: read_marker(mk(n, "start0")), WAIT_S, ino)
        if not m:
            log(f"{kind.key} trial {i}: respawn timeout")
            r["failures"] += 1
            os.unlink(cfg)
            continue
        r["respawn"].append(m[0] - t0)
        pid = m[1]
        # reload: append to the config -> byte 1 received. uWSGI compares whole-second
        # mtimes, so (for both) wait until the clock is past the file's mtime second.
        mtime = int(os.stat(cfg).st_mtime)
        while time.time() < mtime + 1:
            time.sleep(0.01)
        jitter()
        t0 = time.time_ns()
        write_file(cfg, f"; edit {t0}\n", "a")

        def reloaded():
            if os.path.exists(mk(n, "reload0")):
                return "byte"
            s = read_marker(mk(n, "start0"))
            if s and s[1] != pid:
                return "restart"
            return None

        how = wait_until(reloaded, WAIT_S, ino)
        if how == "byte":
            m = read_marker(mk(n, "reload0"))
            r["reload"].append(m[0] - t0)
            m = wait_until(lambda: read_marker(mk(n, "start1")), WAIT_S, ino)
            if m:
                r["reload_exec"].append(m[0] - t0)
        elif how == "restart":
            m = read_marker(mk(n, "start0"))
            r["reload_exec"].append(m[0] - t0)
            r["reload_restart"] += 1
            pid = m[1]
        else:
            log(f"{kind.key} trial {i}: reload timeout")
            r["failures"] += 1
        # destroy: config removed -> stop byte received, and -> pid reaped (gone from /proc)
        jitter()
        t0 = time.time_ns()
        os.unlink(cfg)
        wait_until(lambda: os.path.exists(mk(n, "stop")) or not running(pid), WAIT_S, ino)
        end = time.monotonic() + WAIT_S
        spins = 0
        while os.path.exists(f"/proc/{pid}") and time.monotonic() < end:
            time.sleep(0.0002 if spins < 2000 else 0.001)
            spins += 1
        t_gone = time.time_ns()
        if os.path.exists(f"/proc/{pid}"):
            log(f"{kind.key} trial {i}: destroy timeout (pid {pid} still there)")
            r["failures"] += 1
        else:
            r["reaped"].append(t_gone - t0)
            m = read_marker(mk(n, "stop"))
            if m:
                r["stop_byte"].append(m[0] - t0)
        last = lambda k: f"{r[k][-1] / 1e6:.1f}" if r[k] else "?"  # noqa: E731
        log(
            f"{kind.key} trial {i}/{TRIALS}: spawn {last('spawn')} respawn {last('respawn')} "
            f"reload {last('reload')} stop {last('stop_byte')} reaped {last('reaped')} ms"
        )
    ino.close()
    terminate(run.pid, 60)
    kill_token_processes()
    run.remove()
    return r


def thread_names(pid):
    out = {}
    for tid in os.listdir(f"/proc/{pid}/task"):
        try:
            with open(f"/proc/{pid}/task/{tid}/comm") as f:
                out[tid] = f.read().strip()
        except OSError:
            pass
    return out


def cpu_window(pid, seconds, by_thread=None):
    """CPU % of `pid` over the next `seconds` (schedstat, ns precision) and its ticks.
    With a dict `by_thread`, also fills it with CPU ms per thread name."""
    b, k0, t0 = cpu_ns_by_task(pid), cpu_ticks(pid), time.monotonic()
    time.sleep(seconds)
    a, k1, t1 = cpu_ns_by_task(pid), cpu_ticks(pid), time.monotonic()
    ns = cpu_ns_between(b, a)
    if by_thread is not None:
        names = thread_names(pid)
        for tid, v in a.items():
            key = names.get(tid, tid)
            by_thread[key] = round(by_thread.get(key, 0) + (v - b.get(tid, 0)) / 1e6, 3)
    return 100.0 * ns / 1e9 / (t1 - t0), k1 - k0, t1 - t0


def scale(kind, args, work, n, native=False):
    run = Run(kind, work, f"{'native' if native else 'scale'}{n}")
    res = {"n": n}
    log(f"{kind.key}: scale {n}{' (native vassals)' if native else ''}: writing {n} configs")
    for i in range(n):
        if native:
            # the same vassal binary run directly: no control socket (it just waits for a signal)
            text = f"[vassal]\nexec = {args.vassal} --ini s{i}.ini\n"
        else:
            text = f"[uwsgi]\n; scale vassal {i}\n"
        write_file(os.path.join(run.vdir, f"s{i}.ini"), text)
    t0 = time.time_ns()
    pid = run.start()
    end = time.monotonic() + SCALE_WAIT_S
    count = last_count = 0
    progress = time.monotonic()
    stalled = False
    while True:
        count = count_starts(run.marks)
        now = time.monotonic()
        if count > last_count:
            last_count, progress = count, now
        if count >= n or now > end or not running(pid):
            break
        if now - progress > SCALE_STALL_S:
            stalled = True
            break
        time.sleep(0.25)
    seen = time.time_ns()
    starts = start_markers(run.marks)
    res["up"] = len(starts)
    res["alive"] = sum(1 for _, (_, p) in starts.items() if os.path.exists(f"/proc/{p}"))
    if starts:
        res["first_ms"] = (min(ts for ts, _ in starts.values()) - t0) / 1e6
        res["last_ms"] = (max(ts for ts, _ in starts.values()) - t0) / 1e6
    res["seen_ms"] = (seen - t0) / 1e6
    res["converged"] = count >= n
    if not res["converged"]:
        res["timeout_s"] = round((seen - t0) / 1e9)
        res["stalled"] = stalled
        res["log_errors"] = log_errors(run.logpath)
    log(
        f"{kind.key}: scale {n}: {len(starts)}/{n} up, last at {res.get('last_ms', 0):.0f} ms"
        + ("" if res["converged"] else f" ({'stalled' if stalled else 'timeout'} after {(seen - t0) / 1e9:.0f}s)")
    )
    if not running(pid):
        res["error"] = "emperor died"
        log(run.log_tail())
        kill_token_processes()
        run.remove()
        return res
    res["conv_cpu_s"] = cpu_ticks(pid) / CLK_TCK
    # settle: let start-up messages drain before the idle window
    t_settle = time.monotonic()
    pct, _, _ = cpu_window(pid, SETTLE_S)
    settle_pcts = [pct]
    while pct > SETTLE_QUIET_PCT and time.monotonic() - t_settle < SETTLE_MAX_S:
        pct, _, _ = cpu_window(pid, 5)
        settle_pcts.append(pct)
    res["settle_s"] = time.monotonic() - t_settle
    res["settle_last_pct"] = pct
    res["settle_quiet"] = pct <= SETTLE_QUIET_PCT
    log(f"{kind.key}: scale {n}: settled {res['settle_s']:.0f}s (last window {pct:.2f}%); idle {IDLE_S:.0f}s")
    # idle window
    hp = helpers(pid, args.vassal)
    hb = {h: cpu_ns_by_task(h) for h in hp}
    res["idle_ms_by_thread"] = {}
    pct, ticks, secs = cpu_window(pid, IDLE_S, res["idle_ms_by_thread"])
    res["idle_pct"] = pct
    res["idle_ticks"] = ticks
    res["idle_s"] = secs
    res["rss_kb"] = status_kb(pid, "VmRSS")
    res["hwm_kb"] = status_kb(pid, "VmHWM")
    res["threads"] = len(os.listdir(f"/proc/{pid}/task"))
    res["fds"], res["pidfds"] = fd_kinds(pid)
    hcpu = 0
    hrss = 0
    for h in hp:
        try:
            hcpu += cpu_ns_between(hb[h], cpu_ns_by_task(h))
            hrss += status_kb(h, "VmRSS") or 0
        except OSError:
            pass
    res["helpers"] = len(hp)
    res["helpers_rss_kb"] = hrss
    res["helpers_idle_pct"] = 100.0 * hcpu / 1e9 / secs
    log(f"{kind.key}: scale {n}: idle CPU {pct:.3f}%, RSS {res['rss_kb']} KiB, fds {res['fds']}")
    # stop everything: SIGTERM -> emperor exited and every vassal gone
    pids = [p for _, p in starts.values()]
    t0 = time.time_ns()
    os.kill(pid, signal.SIGTERM)
    end = time.monotonic() + STOP_WAIT_S
    t_emp = None
    left = pids
    while time.monotonic() < end:
        if t_emp is None and not running(pid):
            t_emp = time.time_ns()
        if t_emp is not None:
            reap()
            left = [p for p in left if os.path.exists(f"/proc/{p}")]
            if not left:
                break
        time.sleep(0.005)
    t_all = time.time_ns()
    if t_emp is not None and not left:
        res["stop_ms"] = (t_all - t0) / 1e6
        res["stop_emperor_ms"] = (t_emp - t0) / 1e6
    else:
        res["stop_timeout_s"] = STOP_WAIT_S
        res["stop_left"] = len(left)
        try:
            os.kill(pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
    res["left_after_stop"] = kill_token_processes()
    log(f"{kind.key}: scale {n}: stop {res.get('stop_ms', 'timeout')} ms, left {res['left_after_stop']}")
    run.remove()
    return res


class LogWatch:
    """Reads a log from its current end on, and finds the first new line holding a needle."""

    def __init__(self, path, needle):
        self.path, self.needle = path, needle
        try:
            self.pos = os.path.getsize(path)
        except OSError:
            self.pos = 0
        self.partial = ""

    def poll(self):
        """The first complete new line holding the needle (from it on), or None."""
        try:
            with open(self.path, errors="replace") as f:
                f.seek(self.pos)
                chunk = f.read()
                self.pos = f.tell()
        except OSError:
            return None
        lines = (self.partial + chunk).split("\n")
        self.partial = lines.pop()
        for line in lines:
            at = line.find(self.needle)
            if at >= 0:
                return line[at:]
        return None


def adopt(kind, args, work, n):
    """Emperor killed with SIGKILL while n vassals run, restarted on the same state dir."""
    run = Run(kind, work, f"adopt{n}")
    res = {"n": n}
    for i in range(n):
        write_file(os.path.join(run.vdir, f"a{i}.ini"), f"[uwsgi]\n; adoption vassal {i}\n")
    pid = run.start()
    ok = wait_until(lambda: count_starts(run.marks) >= n or not running(pid), SCALE_WAIT_S, step=0.1)
    if not ok or not running(pid):
        res["error"] = f"first emperor did not converge ({count_starts(run.marks)}/{n})"
        kill_token_processes()
        run.remove()
        return res
    time.sleep(2.0)  # let start-up messages drain
    before = start_markers(run.marks)
    os.kill(pid, signal.SIGKILL)
    wait_until(lambda: not running(pid), 10, step=0.005)
    time.sleep(0.5)
    survivors = {name: p for name, (_, p) in before.items() if running(p)}
    res["survived_kill"] = len(survivors)
    log(f"{kind.key}: adopt {n}: {len(survivors)}/{n} vassals alive after kill -9 of the emperor; restarting it")
    done = LogWatch(run.logpath, "re-adoption done ")
    t0 = time.time_ns()
    pid2 = run.start()

    def state():
        now = start_markers(run.marks)
        changed = sum(1 for name, (_, p) in now.items() if before.get(name, (0, p))[1] != p)
        if changed:
            return ("respawned", changed)
        line = done.poll()
        if line is not None:
            fields = dict(kv.split("=", 1) for kv in line.split() if "=" in kv)
            res["logged_adopted"] = int(fields.get("adopted", -1))
            res["logged_gone"] = int(fields.get("gone", -1))
            return ("adopted", res["logged_adopted"])
        return None

    got = wait_until(state, ADOPT_WAIT_S, step=0.01)
    t1 = time.time_ns()
    if got and got[0] == "adopted":
        # confirm: no vassal restarted in the next 2 s and the old pids all run
        time.sleep(2.0)
        now = start_markers(run.marks)
        changed = sum(1 for name, (_, p) in now.items() if before.get(name, (0, p))[1] != p)
        alive = sum(1 for p in survivors.values() if running(p))
        if changed or alive < len(survivors):
            got = ("respawned", changed)
        else:
            res["adopt_ms"] = (t1 - t0) / 1e6
            res["adopted"] = alive
    if got is None:
        res["result"] = "timeout"
        res["timeout_s"] = ADOPT_WAIT_S
    else:
        res["result"] = got[0]
        if got[0] == "respawned":

            def respawned():
                now = start_markers(run.marks)
                return sum(1 for name, (_, p) in now.items() if before.get(name, (0, p))[1] != p)

            wait_until(lambda: respawned() >= n, 30, step=0.1)
            res["respawned"] = respawned()
    log(f"{kind.key}: adopt {n}: {res['result']} {res.get('adopt_ms', '')}")
    if running(pid2):
        res["stop_after_ms"] = (terminate(pid2, STOP_WAIT_S) or 0) / 1e6
    res["left_after_stop"] = kill_token_processes()
    run.remove()
    return res


def burst(kind, args, work, n):
    """While n configs present at start are being started: how soon a config written meanwhile is started
    (BURST_PROBES of them, one after the other), then, in a second run, how long starts go on after SIGTERM."""
    res = {"n": n, "probe": [], "probe_started_before": []}
    run = Run(kind, work, f"burst{n}")
    for i in range(n):
        write_file(os.path.join(run.vdir, f"s{i}.ini"), f"[uwsgi]\n; burst vassal {i}\n")
    pid = run.start()
    wait_until(lambda: count_starts(run.marks) >= 1 or not running(pid), SCALE_WAIT_S, step=0.002)
    for i in range(BURST_PROBES):
        before = count_starts(run.marks)
        if before >= n or not running(pid):
            break  # the start is over: later probes would not measure it
        t0 = time.time_ns()
        write_file(os.path.join(run.vdir, f"probe{i}.ini"), f"[uwsgi]\n; probe {i}\n")
        m = wait_until(lambda: read_marker(os.path.join(run.marks, f"probe{i}.start0")), WAIT_S, step=0.0005)
        if m:
            res["probe"].append(m[0] - t0)
            res["probe_started_before"].append(before)
        time.sleep(0.1)
    res["probe_failed"] = BURST_PROBES - len(res["probe"])
    log(f"{kind.key}: burst {n}: {len(res['probe'])} new configs started during the start of {n}")
    terminate(pid, STOP_WAIT_S)
    kill_token_processes()
    run.remove()
    # SIGTERM a quarter of the way through a start of n
    run = Run(kind, work, f"burst{n}-term")
    for i in range(n):
        write_file(os.path.join(run.vdir, f"s{i}.ini"), f"[uwsgi]\n; burst vassal {i}\n")
    pid = run.start()
    wait_until(lambda: count_starts(run.marks) >= n // 4 or not running(pid), SCALE_WAIT_S, step=0.002)
    t0 = time.time_ns()
    os.kill(pid, signal.SIGTERM)
    res["term_started_before"] = count_starts(run.marks)
    quiet = lambda: not running(pid) or count_starts(run.marks) == res.get("_c", -1)  # noqa: E731
    while True:  # until no vassal started for 1 s
        res["_c"] = count_starts(run.marks)
        time.sleep(1.0)
        if quiet():
            break
    last = max((ts for ts, _ in start_markers(run.marks).values()), default=t0)
    res.pop("_c")
    res["term_last_start_ms"] = max(0, last - t0) / 1e6
    res["term_started_after"] = count_starts(run.marks) - res["term_started_before"]
    if wait_until(lambda: not running(pid), STOP_WAIT_S, step=0.002):
        res["term_exit_ms"] = (time.time_ns() - t0) / 1e6
    else:
        terminate(pid, 10)
    res["left_after_stop"] = kill_token_processes()
    log(f"{kind.key}: burst {n}: SIGTERM: last start {res['term_last_start_ms']:.1f} ms after it,"
        f" {res['term_started_after']} started after it")
    run.remove()
    return res


# ---------------------------------------------------------------- report


def pct_stats(ns_list):
    v = sorted(x / 1e6 for x in ns_list)
    if not v:
        return None
    n = len(v)
    med = v[n // 2] if n % 2 else (v[n // 2 - 1] + v[n // 2]) / 2
    p90 = v[max(0, -(-9 * n // 10) - 1)]
    p99 = v[max(0, -(-99 * n // 100) - 1)]
    return {"n": n, "p50": med, "p90": p90, "p99": p99, "min": v[0], "max": v[-1], "mean": sum(v) / n}


def fmt_ms(x):
    if x is None:
        return "—"
    if x >= 10000:
        return f"{x / 1000:.1f} s"
    if x >= 100:
        return f"{x:.0f} ms"
    if x >= 10:
        return f"{x:.1f} ms"
    return f"{x:.2f} ms"


def ratio(u, e):
    """How emperor compares with uWSGI on one figure (lower is better for every row)."""
    if not isinstance(u, (int, float)) or not isinstance(e, (int, float)) or u <= 0 or e < 0:
        return "—"
    if e == 0:
        return "—"
    r = u / e
    if r >= 1:
        return f"{r:,.0f}× less" if r >= 10 else f"{r:.2g}× less"
    return f"{1 / r:,.0f}× more" if 1 / r >= 10 else f"{1 / r:.2g}× more"


def mark(ok):
    return "✅ met" if ok else "❌ missed"


def render(res, args, meta):
    U, E = res.get("uwsgi", {}), res.get("emperor", {})
    rows = []

    def row(metric, uv, ev, uval=None, eval_=None, target=""):
        rows.append((metric, uv, ev, ratio(uval, eval_), target))

    floor_s = pct_stats(res.get("floor", {}).get("spawn", []))
    lat_rows = [
        ("spawn: config created → vassal exec'd", "spawn", 5.0, "p50 ≤ 5 ms"),
        ("reload: config changed → byte 1 received", "reload", 5.0, "p50 ≤ 5 ms"),
        ("reload: config changed → vassal re-exec'd", "reload_exec", None, ""),
        ("destroy: config removed → stop byte received", "stop_byte", None, ""),
        ("destroy: config removed → pid reaped", "reaped", 10.0, "p50 ≤ 10 ms"),
        ("respawn: SIGKILL → new vassal exec'd", "respawn", None, ""),
    ]
    for label, key, tgt, tgt_text in lat_rows:
        us = pct_stats(U.get("latency", {}).get(key, []))
        es = pct_stats(E.get("latency", {}).get(key, []))
        for p in ("p50", "p90", "max"):
            uv = us[p] if us else None
            ev = es[p] if es else None
            t = ""
            if p == "p50" and tgt is not None:
                t = f"{tgt_text}: {mark(ev is not None and ev <= tgt)}" if ev is not None else tgt_text
            row(f"{label}, {p}", fmt_ms(uv), fmt_ms(ev), uv, ev, t)
    if floor_s:
        fv = f"{fmt_ms(floor_s['p50'])} / {fmt_ms(floor_s['p90'])} / {fmt_ms(floor_s['max'])}"
        rows.append((f"floor: bare fork+exec → vassal exec'd, p50 / p90 / max (n={floor_s['n']})", fv, fv, "—", "—"))
        us = pct_stats(U.get("latency", {}).get("spawn", []))
        es = pct_stats(E.get("latency", {}).get("spawn", []))
        uf = us["p50"] / floor_s["p50"] if us else None
        ef = es["p50"] / floor_s["p50"] if es else None
        row(
            "spawn p50 ÷ floor p50",
            f"{uf:.1f}×" if uf else "—",
            f"{ef:.1f}×" if ef else "—",
            uf,
            ef,
            f"≤ 3×: {mark(ef is not None and ef <= 3)}" if ef else "≤ 3×",
        )
    fails = [str(X.get("latency", {}).get("failures", "—")) for X in (U, E)]
    rows.append(("latency trials / failed (each emperor)", f"{TRIALS} / {fails[0]}", f"{TRIALS} / {fails[1]}", "", ""))

    def sc(X, n, key="scale"):
        return X.get(key, {}).get(str(n))

    # one case per scale run: (row suffix, N, uWSGI figures, emperor figures)
    cases = [(f"{n}", n, sc(U, n), sc(E, n)) for n in SCALE_NS]
    cases += [(f"{n}, emperor with native vassals (no control socket)", n, None, sc(E, n, "native"))
              for n in NATIVE_NS if sc(E, n, "native")]

    def conv(s, n):
        if not s:
            return "—", None
        if s.get("error"):
            return f"{s['error']} ({s.get('up', 0)}/{n} up)", None
        if not s.get("converged"):
            why = "stalled" if s.get("stalled") else "timeout"
            errs = f"; log: {', '.join(s['log_errors'])}" if s.get("log_errors") else ""
            return f"{why} after {s['timeout_s']:.0f}s ({s.get('up', 0)}/{n} up{errs})", None
        return fmt_ms(s["last_ms"]), s["last_ms"]

    def val(s, key, f):
        if not s or s.get(key) is None:
            return "—", None
        return f(s[key]), s[key]

    def settle(s):
        if not s or s.get("settle_s") is None:
            return "—"
        q = "" if s.get("settle_quiet") else " (still busy)"
        return f"{s['settle_s']:.0f} s, last window at {s['settle_last_pct']:.2f} %{q}"

    def nc(s):
        return "" if s.get("converged") else " (not converged)"

    def idl(s):
        if not s or s.get("idle_pct") is None:
            return "—", None
        h = f" (+{s['helpers_idle_pct']:.3f} % in {s['helpers']} helper)" if s.get("helpers") else ""
        return f"{s['idle_pct']:.3f} %{h}{nc(s)}", s["idle_pct"]

    def rss(s):
        if not s or s.get("rss_kb") is None:
            return "—", None
        h = f" (+{s['helpers_rss_kb'] / 1024:.1f} MiB in {s['helpers']} helper)" if s.get("helpers") else ""
        return f"{s['rss_kb'] / 1024:.1f} MiB (peak {s['hwm_kb'] / 1024:.1f}){h}{nc(s)}", s["rss_kb"] / 1024

    def fds(s):
        if not s or s.get("fds") is None:
            return "—", None
        return f"{s['fds']} ({s['threads']} threads)", s["fds"]

    def stop(s):
        if not s or (s.get("stop_ms") is None and s.get("stop_timeout_s") is None):
            return "—", None
        if s.get("stop_ms") is None:
            return f"timeout after {s['stop_timeout_s']:.0f}s ({s.get('stop_left', '?')} left)", None
        return fmt_ms(s["stop_ms"]), s["stop_ms"]

    def target(n, e, ev, text, ok):
        if n != 10000:
            return ""
        return f"{text}: {mark(ev is not None and ok(ev))}" if e else text

    # the floor of each convergence (forkexec --keep), and the bound the emperor is held to
    floors = {f"{n}": (res.get("floor_keep", {}).get(str(n)), 2.0) for n in SCALE_NS}
    floors.update({f"{n}, emperor with native vassals (no control socket)":
                   (res.get("floor_keep_native", {}).get(str(n)), 1.3) for n in NATIVE_NS})
    for suffix, n, u, e in cases:
        fl, bound = floors.get(suffix, (None, None))
        fl_ms = fl.get("last_ms") if fl else None
        if fl:
            ft = fmt_ms(fl_ms) if fl_ms is not None else f"error: {fl.get('error')}"
            rows.append((f"floor: {n} bare fork+exec back to back, kept running → all exec'd, {suffix}",
                         ft, ft, "—", "—"))
        (ut, uv), (et, ev) = conv(u, n), conv(e, n)
        row(f"converge: {n} configs present at start → all vassals exec'd, {suffix}", ut, et, uv, ev)
        if fl_ms:
            ur = f"{uv / fl_ms:.2f}×" if uv is not None else "—"
            er = f"{ev / fl_ms:.2f}×" if ev is not None else "—"
            rows.append((f"converge ÷ floor, {suffix}", ur, er, "",
                         target(n, e, ev, f"≤ {bound:g}×", lambda v: v <= bound * fl_ms)))
    for suffix, n, u, e in cases:
        f = lambda x: f"{x:.2f} s"  # noqa: E731
        (ut, uv), (et, ev) = val(u, "conv_cpu_s", f), val(e, "conv_cpu_s", f)
        row(f"emperor CPU time until converged, {suffix}", ut, et, uv, ev)
    for suffix, n, u, e in cases:
        rows.append((f"settle after convergence until CPU ≤ {SETTLE_QUIET_PCT:g} % (max {SETTLE_MAX_S:.0f} s), {suffix}",
                     settle(u), settle(e), "", ""))
    idle = {}
    for suffix, n, u, e in cases:
        (ut, uv), (et, ev) = idl(u), idl(e)
        idle.setdefault(n, ev)
        row(f"emperor CPU over {IDLE_S:.0f} s idle, {suffix}", ut, et, uv, ev,
            target(n, e, ev, "≤ 0.02 %", lambda v: v <= 0.02))
    if len(SCALE_NS) > 1:
        lo, hi = idle.get(SCALE_NS[0]), idle.get(SCALE_NS[-1])
        for n in NATIVE_NS:
            if n == SCALE_NS[-1] and sc(E, n, "native") and (hi is None or not sc(E, n).get("converged")):
                hi = sc(E, n, "native").get("idle_pct")
        if lo is not None and hi is not None:
            flat = hi <= 1.5 * lo
            rows.append((f"emperor idle CPU at {SCALE_NS[-1]} ÷ at {SCALE_NS[0]}", "", f"{hi / lo:.2g}×" if lo else "—",
                         "", f"≤ 1.5×: {mark(flat)}"))
    for suffix, n, u, e in cases:
        (ut, uv), (et, ev) = rss(u), rss(e)
        row(f"emperor RSS after idle, {suffix}", ut, et, uv, ev, target(n, e, ev, "≤ 20 MiB", lambda v: v <= 20))
    for suffix, n, u, e in cases:
        (ut, uv), (et, ev) = fds(u), fds(e)
        row(f"emperor open fds, {suffix}", ut, et, uv, ev)
    for suffix, n, u, e in cases:
        (ut, uv), (et, ev) = stop(u), stop(e)
        row(f"SIGTERM → emperor exited and all vassals gone, {suffix}", ut, et, uv, ev)
    for suffix, n, u, e in cases:
        lu = str(u.get("left_after_stop", "—")) if u else "—"
        le = str(e.get("left_after_stop", "—")) if e else "—"
        rows.append((f"processes left after that stop, {suffix}", lu, le, "", "0"))
    a = E.get("adopt")
    if a is not None:
        if a.get("error"):
            ev = f"error: {a['error']}"
        elif a.get("result") == "adopted":
            ev = (
                f"{fmt_ms(a['adopt_ms'])} to the emperor's 're-adoption done' (all {a['adopted']} kept their pids,"
                f" 0 restarted; logged adopted={a.get('logged_adopted', '?')} gone={a.get('logged_gone', '?')})"
            )
        elif a.get("result") == "respawned":
            ev = f"n/a (not supported by this build: {a.get('respawned', '?')} of {a['n']} re-spawned)"
        else:
            ev = f"timeout after {a.get('timeout_s', 0):.0f}s (pids unchanged, no 're-adoption done' logged)"
        ok = a.get("result") == "adopted" and a.get("adopt_ms", 1e9) <= 1500
        t = f"≤ 1.5 s, 0 restarted: {mark(ok)}" if a["n"] >= 10000 else ""
        rows.append((f"re-adoption of {a['n']} running vassals after kill -9 of the emperor", "n/a (cannot)", ev, "—", t))
    b = E.get("burst")
    if b is not None:
        ps = pct_stats(b.get("probe", []))
        if ps:
            ev = f"{fmt_ms(ps['p50'])} / {fmt_ms(ps['p99'])} / {fmt_ms(ps['max'])} (n={ps['n']}, {b['probe_failed']} not started)"
            t = f"p99 ≤ 50 ms: {mark(ps['p99'] <= 50 and not b['probe_failed'])}"
        else:
            ev, t = f"no probe started ({b.get('probe_failed', '?')} failed)", "p99 ≤ 50 ms: ❌ missed"
        rows.append((f"a new config while {b['n']} others are being started → its vassal exec'd, p50 / p99 / max",
                     "—", ev, "—", t))
        lt = b.get("term_last_start_ms")
        if lt is not None:
            ev = f"{fmt_ms(lt)} ({b['term_started_after']} started after it, {b['term_started_before']} before)"
            rows.append((f"SIGTERM during the start of {b['n']} → last vassal started", "—", ev, "—",
                         f"≤ 100 ms: {mark(lt <= 100)}"))
        if b.get("term_exit_ms") is not None:
            rows.append((f"SIGTERM during the start of {b['n']} → emperor exited (every vassal stopped)", "—",
                         fmt_ms(b["term_exit_ms"]), "—", ""))
    if E.get("pg") is not None:
        rows.extend(pg_rows.render_rows(sys.modules[__name__], E["pg"]))

    out = []
    out.append(meta)
    out.append("")
    out.append(f"| metric | {args.uwsgi_label} | emperor | emperor vs uWSGI | target (emperor) |")
    out.append("|---|---|---|---|---|")
    for r_ in rows:
        out.append("| " + " | ".join(r_) + " |")
    return "\n".join(out)


def machine(args):
    def sh(cmd):
        try:
            return subprocess.run(cmd, shell=True, capture_output=True, text=True, timeout=10).stdout.strip()
        except Exception:
            return "?"

    mem = sh("awk '/MemTotal/{printf \"%.1f GiB\", $2/1048576}' /proc/meminfo")
    cpu = sh("awk -F': ' '/model name/{print $2; exit}' /proc/cpuinfo") or platform.machine()
    deb = sh("cat /etc/debian_version")
    lines = [
        f"## emperor vs uWSGI Emperor ({time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())})",
        "",
        f"- machine: {os.cpu_count()} cores ({cpu}), {mem} RAM, Linux {platform.release()}, Debian {deb}",
        f"- {args.uwsgi_label}: `{args.uwsgi}`; emperor {args.emperor_version}; {args.rustc}; {args.cc}",
        f"- limits: `ulimit -n` {args.nofile} for both (hard {args.nofile_hard}), pid_max {sh('cat /proc/sys/kernel/pid_max')},"
        f" threads-max {sh('cat /proc/sys/kernel/threads-max')}",
        f"- work dir (configs, markers, emperor state and logs) on {args.workfs}; 1-minute load average at start"
        f" {args.load_start}, highest seen {LOAD_MAX[0]:.2f}, at end {open('/proc/loadavg').read().split()[0]}",
        f"- vassal: bench/vassal.c (gcc -O2), the same binary for both; `dir://` source; caches warm (one warm-up"
        f" start of each emperor, and the floor run, before measuring)",
        f"- latency: {TRIALS} sequential trials per emperor with the same random pre-action delays in"
        f" [0, {PERIOD_S:g} s) (seed {SEED}); uWSGI {'--emperor-freq ' + FREQ if FREQ else 'default scan period (3 s)'};"
        f" reload waits until the clock is past the config's mtime second (uWSGI needs it) for both",
        f"- scale: N configs written, then the emperor started; settle ≥ {SETTLE_S:g} s until a 5 s window is"
        f" ≤ {SETTLE_QUIET_PCT:g} % CPU (max {SETTLE_MAX_S:g} s), then {IDLE_S:g} s idle; CPU from"
        f" /proc/PID/task/*/schedstat; every wait bounded ({SCALE_WAIT_S:g} s per convergence)",
        f"- emperor command: `emperor --state-dir <fresh> --vassal-binary <vassal> --stop-timeout 30 <dir>`;"
        f" uWSGI command: `uwsgi --emperor <dir> --emperor-wrapper <vassal>`",
    ]
    if UWSGI_MAX_N:
        lines.append(f"- uWSGI scale runs capped at N = {UWSGI_MAX_N} (UWSGI_MAX_N)")
    return "\n".join(lines)


# ---------------------------------------------------------------- main


def rerender(path):
    """Prints the table again from the raw figures of a run (RESULTS_JSON)."""
    with open(path) as f:
        res = json.load(f)
    globals().update(res["knobs"])
    print(render(res, argparse.Namespace(uwsgi_label=res["uwsgi_label"]), res["meta"]))


def main():
    global TOKEN
    if len(sys.argv) == 3 and sys.argv[1] == "--render":
        return rerender(sys.argv[2])
    p = argparse.ArgumentParser()
    p.add_argument("--token", required=True)
    p.add_argument("--work", required=True)
    p.add_argument("--vassal", required=True)
    p.add_argument("--floor", required=True)
    p.add_argument("--emperor", required=True)
    p.add_argument("--uwsgi", required=True)
    p.add_argument("--uwsgi-label", default="uWSGI")
    p.add_argument("--emperor-version", default="")
    p.add_argument("--rustc", default="")
    p.add_argument("--cc", default="")
    p.add_argument("--nofile", default="")
    p.add_argument("--nofile-hard", default="")
    p.add_argument("--workfs", default="?")
    p.add_argument("--json", default="")
    p.add_argument("--results", default="")
    args = p.parse_args()
    args.load_start = open("/proc/loadavg").read().split()[0]
    TOKEN = args.token
    os.makedirs(args.work, exist_ok=True)
    if libc.prctl(PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0) != 0:
        log("warning: cannot become a child subreaper; orphaned vassals are reaped by init")

    def on_signal(signum, _frame):
        raise SystemExit(128 + signum)

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    signal.signal(signal.SIGHUP, on_signal)

    knobs = ("TRIALS", "PERIOD_S", "FREQ", "SCALE_NS", "NATIVE_NS", "IDLE_S", "SETTLE_S", "SETTLE_MAX_S",
             "SETTLE_QUIET_PCT", "SCALE_WAIT_S", "ADOPT_N", "FLOOR_TRIALS", "UWSGI_MAX_N", "SEED", "BURST_N",
             "BURST_PROBES", "PG_N", "PG_CHANGES")
    res = {"knobs": {k: globals()[k] for k in knobs}, "uwsgi_label": args.uwsgi_label}
    ks = kinds(args)
    try:
        res["floor"] = floor(args, args.work)
        for k in ks:
            res.setdefault(k.key, {})
            warm_up(k, args, args.work)
        for k in ks:
            log(f"{k.key}: latency, {TRIALS} trials")
            res[k.key]["latency"] = latency(k, args, args.work)
        for n in SCALE_NS:
            res.setdefault("floor_keep", {})[str(n)] = converge_floor(args, args.work, n)
            for k in ks:
                if k.key == "uwsgi" and UWSGI_MAX_N and n > UWSGI_MAX_N:
                    continue
                res[k.key].setdefault("scale", {})[str(n)] = scale(k, args, args.work, n)
        for n in NATIVE_NS:
            res.setdefault("floor_keep_native", {})[str(n)] = converge_floor(args, args.work, n, native=True)
            for k in ks:
                if k.key == "emperor":
                    res[k.key].setdefault("native", {})[str(n)] = scale(k, args, args.work, n, native=True)
        for k in ks:
            if k.key == "emperor" and ADOPT_N > 0:
                res[k.key]["adopt"] = adopt(k, args, args.work, ADOPT_N)
        for k in ks:
            if k.key == "emperor" and BURST_N > 0:
                res[k.key]["burst"] = burst(k, args, args.work, BURST_N)
        for k in ks:
            if k.key == "emperor" and PG_N > 0:
                log(f"emperor: pg table of {PG_N} rows, {PG_CHANGES} rows changed")
                res[k.key]["pg"] = pg_rows.run(sys.modules[__name__], args, args.work, PG_N, PG_CHANGES)
    finally:
        res["meta"] = machine(args)
        for pid in STARTED:
            if running(pid):
                terminate(pid, 10)
        left = kill_token_processes()
        if left:
            log(f"killed {left} leftover processes of this run")
        if args.json:
            with open(args.json, "w") as f:
                json.dump(res, f, indent=1)
    table = render(res, args, res["meta"])
    print(table)
    if args.results:
        with open(args.results, "w") as f:
            f.write(table + "\n")


if __name__ == "__main__":
    main()
