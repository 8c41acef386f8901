#!/usr/bin/env python3
"""Memory stays flat: iocwatch with N ICMP checks on loopback for M minutes, a reload every
10 s (every other one swaps a tenth of the targets for new ones, so tasks, series and alert
state come and go; every third halves the ICMP concurrency limit while rounds run, the next
restores it) and a scrape every 5 s. Prints resident memory, open descriptors and
runtime tasks at the start (after the first minute) and at the end, and their peaks.

Usage: benches/soak.py [--checks 10000] [--minutes 10] [--binary target/release/iocwatch]
Needs root (raw ICMP). Loopback only; stops by itself.
"""

import argparse
import http.client
import os
import signal
import socket
import subprocess
import tempfile
import time


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def scrape(port):
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    try:
        conn.request("GET", "/metrics")
        return conn.getresponse().read().decode()
    finally:
        conn.close()


def value(text, name):
    for line in text.splitlines():
        if line.startswith(name + " ") or line.startswith(name + "{"):
            return float(line.rsplit(" ", 1)[1])
    return float("nan")


def write_config(path, checks, generation):
    # Generation g swaps the last tenth of the targets for new ids and addresses.
    swapped = checks // 10
    limit = checks // 2 if generation % 3 == 1 else checks
    lines = ["defaults: {interval: 1s, timeout: 800ms}",
             f"global: {{max_concurrency: {{icmp: {limit}}}}}",
             'areas: [{code: "15", name: Lào Cai}]', "targets:"]
    for i in range(checks):
        if i >= checks - swapped and generation % 2:
            tid, a = f"n{i}", i + checks
        else:
            tid, a = f"t{i}", i
        lines.append(f'  - {{id: {tid}, area: "15", address: 127.{20 + a // 62500}.{a // 250 % 250}.{a % 250 + 1}, '
                     f"checks: [icmp: {{count: 1}}]}}")
    tmp = path + ".tmp"
    with open(tmp, "w") as f:
        f.write("\n".join(lines) + "\n")
    os.replace(tmp, path)


def sample(port):
    text = scrape(port)
    return {"rss": value(text, "process_resident_memory_bytes") / 2**20,
            "fds": value(text, "process_open_fds"),
            "tasks": value(text, "iocwatch_runtime_tasks"),
            "reloads": value(text, 'iocwatch_config_reloads_total{result="success"}'),
            "series": sum(1 for line in text.splitlines() if line and not line.startswith("#"))}


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--checks", type=int, default=10000)
    parser.add_argument("--minutes", type=float, default=10)
    parser.add_argument("--binary", default="target/release/iocwatch")
    parser.add_argument("--reload-every", type=float, default=10, help="seconds; 0: never")
    args = parser.parse_args()
    port = free_port()
    with tempfile.TemporaryDirectory() as d:
        config = os.path.join(d, "iocwatch.yaml")
        write_config(config, args.checks, 0)
        proc = subprocess.Popen([args.binary, "run", "-c", config, "--listen", f"127.0.0.1:{port}",
                                 "--log.level", "error", "--storage.path", os.path.join(d, "data")],
                                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        try:
            deadline = time.monotonic() + 120
            while True:
                try:
                    scrape(port)
                    break
                except OSError:
                    if time.monotonic() > deadline:
                        raise
                    time.sleep(0.2)
            started = time.monotonic()
            end = started + args.minutes * 60
            every = args.reload_every or float("inf")
            generation, next_reload, next_scrape = 0, started + every, started
            first = None
            peak = {"rss": 0.0, "fds": 0.0, "tasks": 0.0}
            minutes = []  # RSS at each whole minute: a plateau, or a slope
            scrapes = 0
            while time.monotonic() < end:
                now = time.monotonic()
                if now >= next_scrape:
                    s = sample(port)
                    scrapes += 1
                    if first is None and now - started >= 60:
                        first = s
                    if first is not None:
                        for k in peak:
                            peak[k] = max(peak[k], s[k])
                    if now - started >= 60 * (len(minutes) + 1):
                        minutes.append(s["rss"])
                    next_scrape += 5
                if now >= next_reload:
                    generation += 1
                    write_config(config, args.checks, generation)
                    proc.send_signal(signal.SIGHUP)
                    next_reload += every
                time.sleep(max(0.0, min(next_scrape, next_reload, end) - time.monotonic()))
            last = sample(port)
        finally:
            proc.send_signal(signal.SIGTERM)
            proc.wait(timeout=60)
    first = first or last
    print(f"{args.checks:,} ICMP checks at 1 s for {args.minutes:g} min: {generation} reloads "
          f"({last['reloads'] - first['reloads']:.0f} applied after the first minute), {scrapes} scrapes\n")
    print("| | after 1 min | end | peak |")
    print("| --- | --- | --- | --- |")
    print(f"| RSS MiB | {first['rss']:.1f} | {last['rss']:.1f} | {peak['rss']:.1f} |")
    print(f"| open descriptors | {first['fds']:.0f} | {last['fds']:.0f} | {peak['fds']:.0f} |")
    print(f"| runtime tasks | {first['tasks']:.0f} | {last['tasks']:.0f} | {peak['tasks']:.0f} |")
    print(f"| series | {first['series']:,} | {last['series']:,} | |")
    print("\nRSS MiB minute by minute: " + " ".join(f"{m:.0f}" for m in minutes))


if __name__ == "__main__":
    main()
