#!/usr/bin/env python3
"""iocwatch against its peers, in one run, on loopback only.

Workloads (each tool in turn, same targets, same rate, bounded in time):
  icmp: N loopback addresses (127.20.0.0/16), one echo per target per second
        peers: fping (loop mode), prometheus-smokeping-prober, prometheus-blackbox-exporter
  tcp:  N loopback addresses, one TCP connect per target per second to a local listener
        peer: prometheus-blackbox-exporter (tcp_connect)

Measured per tool: probes done, CPU seconds (user+system, from /proc) per 1000 probes,
peak resident memory; then the ratios peer / iocwatch. The blackbox exporter probes on
scrape, so this script drives it with N requests per second (the driver's own CPU is not
counted). Usage: benches/compare.py [--targets N] [--seconds S] [--binary PATH]
Needs root (raw ICMP) and the Debian packages fping, prometheus-blackbox-exporter,
prometheus-smokeping-prober (installed by benches/run.sh).
"""

import argparse
import http.client
import os
import re
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time

CLK_TCK = os.sysconf("SC_CLK_TCK")


def cpu_seconds(pid):
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / CLK_TCK


def peak_rss_mib(pid):
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    return float("nan")


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def get(port, path, timeout=10):
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=timeout)
    try:
        conn.request("GET", path)
        response = conn.getresponse()
        return response.status, response.read().decode("utf-8", "replace")
    finally:
        conn.close()


def metric_sum(text, name):
    total = 0.0
    for line in text.splitlines():
        if line.startswith(name + "{") or line.startswith(name + " "):
            total += float(line.rsplit(" ", 1)[1])
    return total


def wait_http(port, deadline_s=60):
    deadline = time.monotonic() + deadline_s
    while time.monotonic() < deadline:
        try:
            get(port, "/metrics", timeout=2)
            return
        except OSError:
            time.sleep(0.1)
    raise RuntimeError(f"nothing answered on port {port}")


def stop(proc):
    proc.send_signal(signal.SIGTERM)
    try:
        proc.wait(timeout=15)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()


def measure_daemon(cmd, port, counter, seconds, warmup=3):
    """Runs a daemon, lets it warm up, then measures CPU and its own probe counter."""
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        wait_http(port)
        time.sleep(warmup)
        cpu0, done0 = cpu_seconds(proc.pid), metric_sum(get(port, "/metrics")[1], counter)
        time.sleep(seconds)
        cpu1, done1 = cpu_seconds(proc.pid), metric_sum(get(port, "/metrics")[1], counter)
        rss = peak_rss_mib(proc.pid)
    finally:
        stop(proc)
    return {"probes": done1 - done0, "cpu": cpu1 - cpu0, "rss": rss}


def iocwatch(binary, targets, seconds, kind, tcp_port=None):
    port = free_port()
    lines = [
        "defaults: {interval: 1s, timeout: 800ms}",
        f"global: {{max_concurrency: {{icmp: {len(targets)}, tcp: {len(targets)}}}}}",
        'areas: [{code: "15", name: Lào Cai}]',
        "targets:",
    ]
    check = "icmp: {count: 1}" if kind == "icmp" else f"tcp: {{port: {tcp_port}}}"
    for i, t in enumerate(targets):
        lines.append(f'  - {{id: t{i}, area: "15", address: {t}, checks: [{check}]}}')
    with tempfile.TemporaryDirectory() as d:
        path = os.path.join(d, "iocwatch.yaml")
        with open(path, "w") as f:
            f.write("\n".join(lines) + "\n")
        counter = "iocwatch_icmp_packets_sent_total" if kind == "icmp" else "iocwatch_probe_duration_seconds_count"
        cmd = [binary, "run", "-c", path, "--listen", f"127.0.0.1:{port}", "--log.level", "error"]
        return measure_daemon(cmd, port, counter, seconds)


def smokeping(targets, seconds):
    port = free_port()
    cmd = ["prometheus-smokeping-prober", "--privileged", "--ping.interval=1s",
           f"--web.listen-address=127.0.0.1:{port}", "--log.level=error", *targets]
    return measure_daemon(cmd, port, "smokeping_requests_total", seconds)


def fping(targets, seconds):
    # Loop mode, one echo per target per second; the summary on SIGINT counts what was sent.
    proc = subprocess.Popen(["fping", "-l", "-q", "-p", "1000", "-i", "1", *targets],
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    time.sleep(seconds)
    cpu, rss = cpu_seconds(proc.pid), peak_rss_mib(proc.pid)
    proc.send_signal(signal.SIGINT)
    _, err = proc.communicate(timeout=15)
    sent = sum(int(m.group(1)) for m in re.finditer(r"xmt/rcv/%loss = (\d+)/", err))
    return {"probes": sent, "cpu": cpu, "rss": rss}


def blackbox(targets, seconds, kind, tcp_port=None):
    port = free_port()
    config = (
        "modules:\n"
        "  icmp:\n    prober: icmp\n    timeout: 1s\n    icmp:\n      preferred_ip_protocol: ip4\n"
        "  tcp:\n    prober: tcp\n    timeout: 1s\n    tcp:\n      preferred_ip_protocol: ip4\n"
    )
    with tempfile.TemporaryDirectory() as d:
        path = os.path.join(d, "blackbox.yml")
        with open(path, "w") as f:
            f.write(config)
        proc = subprocess.Popen(["prometheus-blackbox-exporter", f"--config.file={path}",
                                 f"--web.listen-address=127.0.0.1:{port}", "--log.level=error"],
                                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        try:
            wait_http(port)
            paths = [f"/probe?module={kind}&target={t}" + (f":{tcp_port}" if kind == "tcp" else "")
                     for t in targets]
            done = drive(port, paths, seconds=1)  # warm-up
            cpu0 = cpu_seconds(proc.pid)
            done = drive(port, paths, seconds)
            cpu1, rss = cpu_seconds(proc.pid), peak_rss_mib(proc.pid)
        finally:
            stop(proc)
    return {"probes": done, "cpu": cpu1 - cpu0, "rss": rss}


def drive(port, paths, seconds, workers=64):
    """Requests every path once per second, like a Prometheus scraping each target each second."""
    deadline = time.monotonic() + seconds
    lock = threading.Lock()
    count = [0]
    next_index = [0]
    started = time.monotonic()

    def worker():
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=5)
        while time.monotonic() < deadline:
            with lock:
                i = next_index[0]
                next_index[0] += 1
            due = started + i / len(paths)  # N requests per second, evenly spaced
            wait = due - time.monotonic()
            if wait > 0:
                time.sleep(wait)
            if time.monotonic() >= deadline:
                break
            try:
                conn.request("GET", paths[i % len(paths)])
                body = conn.getresponse().read()
                if b"probe_success 1" in body:
                    with lock:
                        count[0] += 1
            except (OSError, http.client.HTTPException):
                conn.close()
                conn = http.client.HTTPConnection("127.0.0.1", port, timeout=5)
        conn.close()

    threads = [threading.Thread(target=worker) for _ in range(workers)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return count[0]


def accept_forever(listener):
    while True:
        try:
            conn, _ = listener.accept()
            conn.close()
        except OSError:
            return


def report(title, results):
    base = results["iocwatch"]
    base_cpu = base["cpu"] / max(base["probes"], 1) * 1000
    print(f"\n{title}")
    print(f"{'tool':<30} {'probes':>8} {'CPU s/1000 probes':>18} {'peak RSS MiB':>13} {'CPU ×iocwatch':>14} {'RSS ×iocwatch':>14}")
    for name, r in results.items():
        per = r["cpu"] / max(r["probes"], 1) * 1000
        print(f"{name:<30} {r['probes']:>8.0f} {per:>18.4f} {r['rss']:>13.1f} "
              f"{per / base_cpu if base_cpu else float('nan'):>14.2f} {r['rss'] / base['rss']:>14.2f}")


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--targets", type=int, default=1000)
    parser.add_argument("--seconds", type=int, default=20)
    parser.add_argument("--binary", default="target/release/iocwatch")
    args = parser.parse_args()
    if os.geteuid() != 0:
        sys.exit("run as root: the ICMP peers need raw sockets")
    n = args.targets
    # Loopback only: 127.20.0.1 … (all of 127/8 answers on Linux).
    targets = [f"127.20.{i // 250}.{i % 250 + 1}" for i in range(n)]
    print(f"{n} loopback targets, 1 probe per target per second, {args.seconds} s measured per tool")

    icmp = {
        "iocwatch": iocwatch(args.binary, targets, args.seconds, "icmp"),
        "prometheus-smokeping-prober": smokeping(targets, args.seconds),
        "fping -l": fping(targets, args.seconds),
        "prometheus-blackbox-exporter": blackbox(targets, args.seconds, "icmp"),
    }
    report("ICMP echo", icmp)

    listener = socket.socket()
    listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    listener.bind(("0.0.0.0", 0))
    listener.listen(4096)
    tcp_port = listener.getsockname()[1]
    threading.Thread(target=accept_forever, args=(listener,), daemon=True).start()
    tcp = {
        "iocwatch": iocwatch(args.binary, targets, args.seconds, "tcp", tcp_port),
        "prometheus-blackbox-exporter": blackbox(targets, args.seconds, "tcp", tcp_port),
    }
    report("TCP connect", tcp)
    listener.close()


if __name__ == "__main__":
    main()
