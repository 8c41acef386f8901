#!/usr/bin/env python3
"""The /metrics scrape of a large agent, alone: N loopback ICMP checks (every 10 s), then
five scrapes timed as Prometheus sees them (the bytes read, not decoded), and the agent's
resident memory and the journal's slowest commit once a minute of hourly counting (one
upsert per check) has been handed to the journal.

Usage: sudo benches/scrape.py [N] [BINARY]   (default 100000 target/release/iocwatch)
Loopback only (127.20.0.0/14); stops by itself.
"""

import http.client
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import time


def main():
    n = int(sys.argv[1]) if len(sys.argv) > 1 else 100_000
    binary = sys.argv[2] if len(sys.argv) > 2 else "target/release/iocwatch"
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    addresses = [f"127.{20 + i // 62500}.{i // 250 % 250}.{i % 250 + 1}" for i in range(n)]
    lines = ["defaults: {interval: 10s, timeout: 800ms}",
             f"global: {{max_concurrency: {{icmp: {n}}}}}",
             'areas: [{code: "15", name: Lào Cai}]', "targets:"]
    lines += [f'  - {{id: t{i}, area: "15", address: {a}, checks: [icmp: {{count: 1}}]}}'
              for i, a in enumerate(addresses)]
    with tempfile.TemporaryDirectory() as d:
        path = os.path.join(d, "iocwatch.yaml")
        with open(path, "w") as f:
            f.write("\n".join(lines) + "\n")
        proc = subprocess.Popen([binary, "-c", path, "--listen", f"127.0.0.1:{port}",
                                 "--storage.path", os.path.join(d, "data")],
                                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)

        def scrape():
            conn = http.client.HTTPConnection("127.0.0.1", port, timeout=120)
            try:
                started = time.monotonic()
                conn.request("GET", "/metrics")
                body = conn.getresponse().read()
                return time.monotonic() - started, body
            finally:
                conn.close()

        try:
            started = time.monotonic()
            while time.monotonic() - started < 300:
                try:
                    _, body = scrape()
                    if body.count(b"\niocwatch_probe_success{") >= n:
                        break
                except OSError:
                    pass
                time.sleep(1)
            times = []
            for _ in range(5):
                elapsed, body = scrape()
                times.append(elapsed)
            # Past the first minute: the hourly counting has been handed to the journal.
            time.sleep(max(0.0, 70 - (time.monotonic() - started)))
            _, after = scrape()
            commits = {}
            for line in after.decode().splitlines():
                if line.startswith("iocwatch_store_commit_duration_seconds_bucket"):
                    le = line.split('le="')[1].split('"')[0]
                    commits[le] = float(line.rsplit(" ", 1)[1])
            slowest = next((le for le in commits if commits[le] == commits.get("+Inf")), "?")
            with open(f"/proc/{proc.pid}/status") as f:
                rss = next(int(l.split()[1]) / 1024 for l in f if l.startswith("VmRSS:"))
            series = sum(1 for l in body.split(b"\n") if l and not l.startswith(b"#"))
            print(f"{n:,} checks: {series:,} series, {len(body) / 1e6:.1f} MB; scrape median "
                  f"{statistics.median(times):.3f} s (min {min(times):.3f}); RSS {rss:.0f} MiB "
                  f"({rss * 1024 / n:.1f} KiB per check); {commits.get('+Inf', 0):.0f} commits, "
                  f"the slowest within {slowest} s")
        finally:
            proc.terminate()
            proc.wait(timeout=60)


if __name__ == "__main__":
    main()
