#!/usr/bin/env python3
"""A real Prometheus scraping a large agent: N loopback ICMP checks (every 10 s), Debian's
prometheus scraping the agent every 30 s for M minutes on the same machine. Prints what
Prometheus itself reports per scrape (`scrape_duration_seconds`, which covers the fetch *and*
Prometheus parsing and appending every sample, `scrape_samples_scraped`, `up`) beside the
agent's own share, the time to read the gzipped body (as in scrape.py).

Usage: sudo benches/prometheus_scrape.py [--checks 100000] [--minutes 4] [--binary PATH]
Needs the Debian package prometheus. Loopback only (127.20.0.0/14); stops by itself.
"""

import argparse
import json
import os
import statistics
import subprocess
import tempfile
import time
import urllib.parse
import urllib.request

from compare import free_port, large_agent_config, scrape_as_prometheus


def query(port, expr):
    url = f"http://127.0.0.1:{port}/api/v1/query?" + urllib.parse.urlencode({"query": expr})
    with urllib.request.urlopen(url, timeout=10) as response:
        result = json.loads(response.read())["data"]["result"]
    return float(result[0]["value"][1]) if result else None


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--checks", type=int, default=100_000)
    parser.add_argument("--minutes", type=float, default=4)
    parser.add_argument("--binary", default="target/release/iocwatch")
    args = parser.parse_args()
    n = args.checks
    agent_port, prom_port = free_port(), free_port()
    with tempfile.TemporaryDirectory() as d:
        with open(os.path.join(d, "iocwatch.yaml"), "w") as f:
            f.write(large_agent_config(n))
        with open(os.path.join(d, "prometheus.yml"), "w") as f:
            f.write("global: {scrape_interval: 30s, scrape_timeout: 25s}\n"
                    "scrape_configs: [{job_name: iocwatch, static_configs: "
                    f"[{{targets: ['127.0.0.1:{agent_port}']}}]}}]\n")
        env = dict(os.environ, MALLOC_ARENA_MAX="2")
        agent = subprocess.Popen([args.binary, "-c", os.path.join(d, "iocwatch.yaml"),
                                  "--listen", f"127.0.0.1:{agent_port}",
                                  "--storage.path", os.path.join(d, "data")],
                                 stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=env)
        prometheus = None
        try:
            deadline = time.monotonic() + 300
            while True:
                try:
                    if scrape_as_prometheus(agent_port)[2].count("\niocwatch_probe_success{") >= n:
                        break
                except OSError:
                    pass
                if time.monotonic() > deadline:
                    raise SystemExit("not every check had run after 300 s")
                time.sleep(1)
            prometheus = subprocess.Popen(
                ["prometheus", f"--config.file={d}/prometheus.yml", f"--storage.tsdb.path={d}/tsdb",
                 f"--web.listen-address=127.0.0.1:{prom_port}"],
                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
            durations, fetches, samples, ups = [], [], [], []
            end = time.monotonic() + args.minutes * 60
            last = None
            while time.monotonic() < end:
                time.sleep(5)
                try:
                    duration = query(prom_port, 'scrape_duration_seconds{job="iocwatch"}')
                except OSError:
                    continue
                if duration is None or duration == last:
                    continue
                last = duration
                durations.append(duration)
                samples.append(query(prom_port, 'scrape_samples_scraped{job="iocwatch"}'))
                ups.append(query(prom_port, 'up{job="iocwatch"}'))
                fetches.append(scrape_as_prometheus(agent_port)[0])
        finally:
            if prometheus:
                prometheus.terminate()
                prometheus.wait(timeout=60)
            agent.terminate()
            agent.wait(timeout=60)
    if len(durations) < 2:
        raise SystemExit("Prometheus reported fewer than two scrapes")
    # The first scrape also creates every series in Prometheus's head block.
    first, rest = durations[0], durations[1:]
    print(f"{n:,} checks, {len(durations)} scrapes by Prometheus every 30 s on the same machine:")
    print(f"  scrape_duration_seconds (fetch + parse + append): first {first:.2f} s (creating every "
          f"series), then median {statistics.median(rest):.2f} s (min {min(rest):.2f}, max {max(rest):.2f}); "
          f"samples {samples[-1]:,.0f}; up {ups.count(1.0)} of {len(ups)}")
    print(f"  the agent's share, the gzipped body read between them: median {statistics.median(fetches):.2f} s "
          f"(min {min(fetches):.2f}, max {max(fetches):.2f})")


if __name__ == "__main__":
    main()
