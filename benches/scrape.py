#!/usr/bin/env python3
"""The /metrics scrape of a large agent, alone: N loopback ICMP checks (every 10 s), then
ten scrapes timed as Prometheus makes them (asking for gzip; the bytes read, decoded after
the clock), and the agent's resident memory then and once every loss window (5 minutes)
has filled, with the journal's slowest commit of the hourly counting (one upsert per check
a minute). Takes ~6 minutes.

Usage: sudo benches/scrape.py [N] [BINARY]   (default 100000 target/release/iocwatch)
Loopback only (127.20.0.0/14); stops by itself.
"""

import os
import statistics
import subprocess
import sys
import tempfile
import time

from compare import free_port, large_agent_config, scrape_as_prometheus

# Loss windows are 5 minutes long; memory is read once they have filled.
SETTLE_S = 330


def rss_mib(pid):
    with open(f"/proc/{pid}/status") as f:
        return next(int(l.split()[1]) / 1024 for l in f if l.startswith("VmRSS:"))


def main():
    n = int(sys.argv[1]) if len(sys.argv) > 1 else 100_000
    binary = sys.argv[2] if len(sys.argv) > 2 else "target/release/iocwatch"
    port = free_port()
    with tempfile.TemporaryDirectory() as d:
        path = os.path.join(d, "iocwatch.yaml")
        with open(path, "w") as f:
            f.write(large_agent_config(n))
        proc = subprocess.Popen([binary, "-c", path, "--listen", f"127.0.0.1:{port}",
                                 "--storage.path", os.path.join(d, "data")],
                                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)

        try:
            started = time.monotonic()
            while time.monotonic() - started < 300:
                try:
                    _, _, body = scrape_as_prometheus(port)
                    if body.count("\niocwatch_probe_success{") >= n:
                        ready = time.monotonic()
                        break
                except OSError:
                    pass
                time.sleep(1)
            else:
                sys.exit("not every check had run after 300 s")
            times = []
            for _ in range(10):
                elapsed, wire, body = scrape_as_prometheus(port)
                times.append(elapsed)
            early = rss_mib(proc.pid)
            # Every check's loss window (5 minutes) has filled, and the hourly counting has
            # been handed to the journal: the agent's memory as it stays.
            time.sleep(max(0.0, SETTLE_S - (time.monotonic() - ready)))
            _, _, after = scrape_as_prometheus(port)
            commits = {}
            for line in after.splitlines():
                if line.startswith("iocwatch_store_commit_duration_seconds_bucket"):
                    le = line.split('le="')[1].split('"')[0]
                    commits[le] = float(line.rsplit(" ", 1)[1])
            slowest = next((le for le in commits if commits[le] == commits.get("+Inf")), "?")
            rss = rss_mib(proc.pid)
            series = sum(1 for l in body.splitlines() if l and not l.startswith("#"))
            print(f"{n:,} checks: {series:,} series, {len(body.encode()) / 1e6:.1f} MB "
                  f"({wire / 1e6:.1f} MB gzip); scrape median "
                  f"{statistics.median(times):.3f} s (min {min(times):.3f}, max {max(times):.3f}); RSS {early:.0f} MiB "
                  f"at the first scrapes, {rss:.0f} MiB ({rss * 1024 / n:.1f} KiB per check) "
                  f"after {SETTLE_S} s; {commits.get('+Inf', 0):.0f} commits, "
                  f"the slowest within {slowest} s")
        finally:
            proc.terminate()
            proc.wait(timeout=60)


if __name__ == "__main__":
    main()
