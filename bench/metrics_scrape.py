#!/usr/bin/env python3
"""bench/metrics_scrape.py -- what reading the status costs: a scrape of
`--http`'s /metrics, the JSON lists, the --stats object, and a whole
`emperor ctl list` (the client process included).

    python3 bench/metrics_scrape.py                 # 1000 vassals, 200 scrapes
    N=10000 SCRAPES=50 python3 bench/metrics_scrape.py

Starts the emperor (EMPEROR, default target/release/emperor) on N native
vassals (`sleep`), waits until /metrics shows all N running, then times
SCRAPES sequential GETs of /metrics, /v1/vassals, one read of the --stats
object and one run of `emperor ctl list` (table and `-o json`) each, and prints p50 / p90 / max and the body size. Every wait is
bounded; the emperor and its vassals are stopped (SIGTERM, then the state
dir is removed) on exit. Needs python3 (standard library only).
"""

import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time

N = int(os.environ.get("N", "1000"))
SCRAPES = int(os.environ.get("SCRAPES", "200"))
EMPEROR = os.environ.get("EMPEROR", "target/release/emperor")
CONVERGE_S = float(os.environ.get("CONVERGE_S", "300"))


def fetch(addr, request):
    """Sends `request` to `addr` and returns everything read until EOF."""
    host, port = addr.rsplit(":", 1)
    with socket.create_connection((host, int(port)), timeout=30) as s:
        s.sendall(request)
        chunks = []
        while True:
            chunk = s.recv(1 << 16)
            if not chunk:
                return b"".join(chunks)
            chunks.append(chunk)


def get(addr, path):
    return fetch(addr, f"GET {path} HTTP/1.1\r\nHost: bench\r\n\r\n".encode())


def run(argv):
    """Runs a command to its end; its output."""
    return subprocess.run(argv, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, check=True).stdout


def logged_addr(log, needle, deadline):
    while time.monotonic() < deadline:
        with open(log) as f:
            for line in f:
                if needle in line:
                    return re.search(r"addr=(\S+)", line).group(1)
        time.sleep(0.05)
    sys.exit(f"no {needle!r} line in {log}")


def timed(what, call):
    times, size = [], 0
    for _ in range(SCRAPES):
        start = time.perf_counter()
        size = len(call())
        times.append((time.perf_counter() - start) * 1000)
    times.sort()
    p = lambda q: times[min(len(times) - 1, int(q * len(times)))]
    print(f"| {what}, {N} vassals, p50 / p90 / max (n={SCRAPES}) | "
          f"{p(0.5):.2f} ms / {p(0.9):.2f} ms / {times[-1]:.2f} ms | {size / 1024:.0f} KiB |")


def main():
    work = tempfile.mkdtemp(prefix="emperor-metrics-bench-")
    vassals = os.path.join(work, "vassals")
    os.makedirs(vassals)
    for i in range(N):
        with open(os.path.join(vassals, f"v{i:05}.ini"), "w") as f:
            f.write("[vassal]\nexec = sleep 3600\nstop-timeout = 2\n")
    log = os.path.join(work, "emperor.log")
    args = [EMPEROR, "--state-dir", os.path.join(work, "state"), "--http", "127.0.0.1:0",
            "--stats", "127.0.0.1:0", "dir://" + vassals]
    emperor = subprocess.Popen(args, stdout=open(log, "w"), stderr=subprocess.STDOUT,
                               stdin=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + CONVERGE_S
        http = logged_addr(log, "http: serving", deadline)
        stats = logged_addr(log, "stats: serving", deadline)
        running = f'emperor_vassals{{state="running"}} {N}\n'.encode()
        while running not in get(http, "/metrics"):
            if time.monotonic() > deadline:
                sys.exit(f"{N} vassals not running within {CONVERGE_S} s")
            time.sleep(0.2)
        print("| scrape | time | body |")
        print("|---|---|---|")
        timed("GET /metrics", lambda: get(http, "/metrics"))
        timed("GET /v1/vassals", lambda: get(http, "/v1/vassals"))
        timed("--stats object", lambda: fetch(stats, b""))
        ctl = [EMPEROR, "ctl", "--state-dir", os.path.join(work, "state"), "list"]
        timed("`emperor ctl list` (whole process)", lambda: run(ctl))
        timed("`emperor ctl list -o json` (whole process)", lambda: run(ctl + ["-o", "json"]))
    finally:
        emperor.send_signal(signal.SIGTERM)
        try:
            emperor.wait(timeout=60)
        except subprocess.TimeoutExpired:
            emperor.kill()
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
