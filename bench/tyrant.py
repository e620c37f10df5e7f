#!/usr/bin/env python3
"""bench/tyrant.py -- spawn latency of vassals started under another user.

Run it through bench/tyrant.sh (which builds emperor and the C programs).
Three ways to start the trivial C vassal (bench/vassal.c) of a dir://
config, one emperor each, same trials:

  own user      emperor, config owned by root: posix_spawn, no user switch;
  --tyrant      emperor --tyrant, config owned by nobody: a vfork-style
                clone whose child sets groups, gid and uid, then execs;
  exec helper   emperor without --tyrant whose vassal binary is
                bench/dropexec.c: it drops to nobody, then execs the vassal
                (one exec more per spawn).

Figures: spawn (config renamed into the directory -> vassal's first
instruction, from the vassal's own CLOCK_REALTIME marker), p50 / p90 / max
over TRIALS, and convergence with N configs present at start (emperor exec
-> last vassal started). Every process started carries BENCH_RUN_TOKEN and
is killed by pid at the end.
"""

import argparse
import os
import random
import shutil
import signal
import subprocess
import sys
import time

NOBODY = 65534


def knob(name, default, cast=int):
    value = os.environ.get(name, "")
    return cast(value) if value else default


TRIALS = knob("TRIALS", 30)
N = knob("N", 1000)
WAIT_S = knob("WAIT_S", 30.0, float)


def marker(path):
    """(ns, pid) of a vassal marker, or None."""
    try:
        with open(path) as f:
            ns, pid = f.read().split()
        return int(ns), int(pid)
    except (OSError, ValueError):
        return None


def wait_for(check, timeout):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = check()
        if value is not None:
            return value
        time.sleep(0.0005)
    return None


def pct(values, p):
    s = sorted(values)
    return s[min(len(s) - 1, int(round(p / 100.0 * (len(s) - 1))))]


def token_pids(token):
    out = []
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                with open(f"/proc/{entry}/environ", "rb") as f:
                    if f"BENCH_RUN_TOKEN={token}".encode() in f.read().split(b"\0"):
                        out.append(int(entry))
            except OSError:
                pass
    return out


class Mode:
    def __init__(self, key, label, owner, emperor_args, binary, env):
        self.key, self.label, self.owner = key, label, owner
        self.emperor_args, self.binary, self.env = emperor_args, binary, env


def run_mode(mode, args, work, token):
    base = os.path.join(work, mode.key)
    vdir, marks, staging = (os.path.join(base, d) for d in ("vassals", "marks", "staging"))
    for d in (vdir, marks, staging):
        os.makedirs(d)
    for d in (work, base, vdir, marks):
        os.chmod(d, 0o777 if d == marks else 0o755)

    def put(name):
        tmp = os.path.join(staging, name)
        with open(tmp, "w") as f:
            f.write(f"[uwsgi]\n; bench vassal {name}\n")
        os.chown(tmp, mode.owner, mode.owner)
        return tmp

    for i in range(N):
        os.rename(put(f"conv{i}.ini"), os.path.join(vdir, f"conv{i}.ini"))
    env = dict(os.environ, BENCH_MARK_DIR=marks, BENCH_RUN_TOKEN=token, **mode.env)
    argv = [args.emperor, "--vassal-binary", mode.binary, "--state-dir", os.path.join(base, "state"),
            "--vassal-umask", "0"] + mode.emperor_args + [f"dir://{vdir}"]
    log = open(os.path.join(base, "emperor.log"), "w")
    t_start = time.time_ns()
    emperor = subprocess.Popen(argv, env=env, stdin=subprocess.DEVNULL, stdout=log, stderr=log)
    result = {"label": mode.label}
    try:
        def started():
            return [m for m in os.listdir(marks) if m.startswith("conv") and m.endswith(".start0")]

        if not wait_for(lambda: True if len(started()) >= N else None, WAIT_S * 4):
            result["error"] = f"converge timeout ({len(started())} of {N} started)"
            return result
        last = max(marker(os.path.join(marks, m))[0] for m in started())
        result["converge_ms"] = (last - t_start) / 1e6
        rng = random.Random(7)
        spawns = []
        for i in range(TRIALS):
            time.sleep(rng.uniform(0.05, 0.15))
            tmp = put(f"lat{i}.ini")
            t0 = time.time_ns()
            os.rename(tmp, os.path.join(vdir, f"lat{i}.ini"))
            m = wait_for(lambda: marker(os.path.join(marks, f"lat{i}.start0")), WAIT_S)
            if not m:
                result["error"] = f"spawn timeout at trial {i}"
                return result
            spawns.append((m[0] - t0) / 1e6)
            if i == 0:
                with open(f"/proc/{m[1]}/status") as f:
                    uid = next(line.split()[1] for line in f if line.startswith("Uid:"))
                result["uid"] = int(uid)
        result["spawn"] = spawns
        return result
    finally:
        emperor.send_signal(signal.SIGTERM)
        try:
            emperor.wait(timeout=60)
        except subprocess.TimeoutExpired:
            emperor.kill()
            emperor.wait()
        for pid in token_pids(token):
            try:
                os.kill(pid, signal.SIGKILL)
            except OSError:
                pass


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--emperor", required=True)
    p.add_argument("--vassal", required=True)
    p.add_argument("--dropexec", required=True)
    p.add_argument("--work", required=True)
    args = p.parse_args()
    if os.geteuid() != 0:
        sys.exit("bench/tyrant.py: run as root (vassals switch users)")
    token = f"emperor-tyrant-bench-{os.getpid()}-{time.time_ns()}"
    modes = [
        Mode("own", "own user (posix_spawn)", 0, [], args.vassal, {}),
        Mode("tyrant", "--tyrant (clone, drop in the child)", NOBODY, ["--tyrant"], args.vassal, {}),
        Mode("helper", "exec helper (dropexec, one exec more)", 0, [], args.dropexec,
             {"DROP_UID": str(NOBODY), "DROP_GID": str(NOBODY), "DROP_EXEC": args.vassal}),
    ]
    results = []
    for mode in modes:
        print(f"bench: {mode.label} ...", file=sys.stderr, flush=True)
        results.append(run_mode(mode, args, args.work, token))
    print(f"\n| mode | vassal uid | spawn p50 | spawn p90 | spawn max (n={TRIALS}) | converge, {N} configs at start |")
    print("|---|---|---|---|---|---|")
    for r in results:
        if "error" in r:
            print(f"| {r['label']} | — | {r['error']} | | | |")
            continue
        s = r["spawn"]
        print(f"| {r['label']} | {r['uid']} | {pct(s, 50):.2f} ms | {pct(s, 90):.2f} ms | {max(s):.2f} ms "
              f"| {r['converge_ms']:.0f} ms |")
    shutil.rmtree(args.work, ignore_errors=True)


if __name__ == "__main__":
    main()
