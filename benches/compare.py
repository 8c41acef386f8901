#!/usr/bin/env python3
"""iocwatch against its peers, in one run, on loopback only: the table of issue 10.

Workloads (each tool in turn, same targets, same rate, bounded in time):
  ICMP at 1,000, 10,000 and 100,000 loopback addresses (127.20.0.0/14), one echo per target
  per period (1 s, or N/10,000 s above 10,000 targets so that the rate stays 10,000/s);
  peers: fping (loop mode), and at 1,000 targets prometheus-blackbox-exporter (driven at the
  same rate) and prometheus-smokeping-prober (300 targets: it cannot keep up with more).
  HTTP and TCP at 1,000 targets against local servers; peer: prometheus-blackbox-exporter.

Measured per tool: CPU (user+system, /proc) per probe, loss and mean RTT (ICMP), resident
memory at the end; for iocwatch also one /metrics scrape as Prometheus makes it (asking for
gzip; time, size, series). Ratios are
peer / iocwatch or iocwatch / peer as the goal states them.
Usage: benches/compare.py [--sizes 1000,10000,100000] [--seconds S] [--binary PATH]
Needs root (raw ICMP) and the Debian packages fping, prometheus-blackbox-exporter,
prometheus-smokeping-prober (installed by benches/run.sh).
"""

import argparse
import gzip
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


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def loopback_addresses(n):
    """N distinct loopback addresses in 127.20.0.0/14 (all of 127.0.0.0/8 answers ICMP)."""
    return [f"127.{20 + i // 62500}.{i // 250 % 250}.{i % 250 + 1}" for i in range(n)]


def large_agent_config(n):
    """The config of scrape.py and prometheus_scrape.py: N ICMP checks every 10 s."""
    lines = ["defaults: {interval: 10s, timeout: 800ms}",
             f"global: {{max_concurrency: {{icmp: {n}}}}}",
             'areas: [{code: "15", name: Lào Cai}]', "targets:"]
    lines += [f'  - {{id: t{i}, area: "15", address: {a}, checks: [icmp: {{count: 1}}]}}'
              for i, a in enumerate(loopback_addresses(n))]
    return "\n".join(lines) + "\n"


def get_raw(port, path, timeout=10):
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=timeout)
    try:
        conn.request("GET", path)
        response = conn.getresponse()
        return response.status, response.read()
    finally:
        conn.close()


def scrape_as_prometheus(port, timeout=60):
    """One /metrics scrape as Prometheus makes it (asking for gzip), timed over the bytes
    read; returns the seconds, the compressed size and the text (decoded after the clock)."""
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=timeout)
    try:
        started = time.monotonic()
        conn.request("GET", "/metrics", headers={"Accept-Encoding": "gzip"})
        response = conn.getresponse()
        raw = response.read()
        elapsed = time.monotonic() - started
    finally:
        conn.close()
    gzipped = response.getheader("Content-Encoding") == "gzip"
    text = gzip.decompress(raw) if gzipped else raw
    return elapsed, len(raw), text.decode("utf-8", "replace")


def get(port, path, timeout=10):
    status, body = get_raw(port, path, timeout)
    return status, body.decode("utf-8", "replace")


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


def rss_mib(pid):
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    return float("nan")


def measure_daemon(cmd, port, counters, seconds, warmup=3, ready=None):
    """Runs a daemon, lets it warm up, then measures CPU and the deltas of its counters."""
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        wait_http(port, deadline_s=300)
        if ready:
            deadline = time.monotonic() + 300
            while not ready(get(port, "/metrics", timeout=60)[1]) and time.monotonic() < deadline:
                time.sleep(1)
        time.sleep(warmup)
        text0 = get(port, "/metrics", timeout=60)[1]
        cpu0 = cpu_seconds(proc.pid)
        time.sleep(seconds)
        cpu1 = cpu_seconds(proc.pid)
        scrape, wire, text1 = scrape_as_prometheus(port)
        rss = rss_mib(proc.pid)
        fds = len(os.listdir(f"/proc/{proc.pid}/fd"))
    finally:
        stop(proc)
    deltas = {c: metric_sum(text1, c) - metric_sum(text0, c) for c in counters}
    series = sum(1 for line in text1.splitlines() if line and not line.startswith("#"))
    return {"cpu": cpu1 - cpu0, "rss": rss, "deltas": deltas, "scrape": scrape,
            "bytes": len(text1.encode()), "wire": wire, "series": series, "fds": fds}


def iocwatch(binary, targets, seconds, kind, period=1, port_or_url=None):
    port = free_port()
    lines = [
        f"defaults: {{interval: {period}s, timeout: 800ms}}",
        f"global: {{max_concurrency: {{icmp: {len(targets)}, tcp: {len(targets)}, http: {len(targets)}}}}}",
        'areas: [{code: "15", name: Lào Cai}]',
        "targets:",
    ]
    check = {"icmp": "icmp: {count: 1}",
             "tcp": f"tcp: {{port: {port_or_url}}}",
             "http": f'http: {{url: "{port_or_url}"}}'}[kind]
    for i, t in enumerate(targets):
        lines.append(f'  - {{id: t{i}, area: "15", address: {t}, checks: [{check}]}}')
    with tempfile.TemporaryDirectory() as d:
        path = os.path.join(d, "iocwatch.yaml")
        with open(path, "w") as f:
            f.write("\n".join(lines) + "\n")
        cmd = [binary, "run", "-c", path, "--listen", f"127.0.0.1:{port}", "--log.level", "error",
               "--storage.path", os.path.join(d, "data")]
        counters = ["iocwatch_icmp_packets_sent_total", "iocwatch_icmp_packets_received_total",
                    "iocwatch_icmp_rtt_seconds_sum", "iocwatch_icmp_rtt_seconds_count",
                    "iocwatch_probe_duration_seconds_count", "iocwatch_icmp_receive_dropped_total"]
        # Every check has run once before the measurement starts.
        def ready(text):
            return metric_sum(text, "iocwatch_probe_last_run_timestamp_seconds") > 0 and \
                text.count("iocwatch_probe_last_run_timestamp_seconds{") >= len(targets)
        r = measure_daemon(cmd, port, counters, seconds, warmup=period + 2, ready=ready)
    d = r["deltas"]
    if kind == "icmp":
        r["probes"] = d["iocwatch_icmp_packets_sent_total"]
        r["loss"] = 1 - d["iocwatch_icmp_packets_received_total"] / max(r["probes"], 1)
        r["rtt"] = d["iocwatch_icmp_rtt_seconds_sum"] / max(d["iocwatch_icmp_rtt_seconds_count"], 1)
        # Replies the kernel dropped on a full socket buffer: a loss that is ours, not the link's.
        r["dropped"] = d["iocwatch_icmp_receive_dropped_total"]
    else:
        r["probes"] = d["iocwatch_probe_duration_seconds_count"]
    return r


def smokeping(targets, seconds):
    port = free_port()
    cmd = ["prometheus-smokeping-prober", "--privileged", "--ping.interval=1s",
           f"--web.listen-address=127.0.0.1:{port}", "--log.level=error", *targets]
    r = measure_daemon(cmd, port, ["smokeping_requests_total", "smokeping_response_duration_seconds_count",
                                   "smokeping_response_duration_seconds_sum"], seconds)
    d = r["deltas"]
    r["probes"] = d["smokeping_requests_total"]
    r["loss"] = 1 - d["smokeping_response_duration_seconds_count"] / max(r["probes"], 1)
    r["rtt"] = d["smokeping_response_duration_seconds_sum"] / max(d["smokeping_response_duration_seconds_count"], 1)
    return r


def fping(targets, seconds, period=1):
    """fping in loop mode, one echo per target per period, the sends spread over the period
    (`-i` = period / targets). Below its 1 ms default fping busy-waits and falls short of
    the rate asked (the probes column shows what it did); splitting the targets over several
    fping processes is worse, as every raw socket reads every reply. The summary on SIGINT
    counts what was sent and received and gives each target's mean RTT."""
    interval_ms = period * 1000 / len(targets)
    # 100,000 addresses do not fit on a command line.
    with tempfile.NamedTemporaryFile("w", suffix=".txt") as listing:
        listing.write("\n".join(targets) + "\n")
        listing.flush()
        proc = subprocess.Popen(["fping", "-l", "-q", "-p", str(period * 1000), "-i", f"{interval_ms:g}",
                                 "-f", listing.name],
                                stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
        time.sleep(1)  # fping has read the list
    time.sleep(1)  # warm-up: the first round
    cpu0 = cpu_seconds(proc.pid)
    time.sleep(seconds)
    cpu, rss = cpu_seconds(proc.pid) - cpu0, rss_mib(proc.pid)
    proc.send_signal(signal.SIGINT)
    _, err = proc.communicate(timeout=60)
    sent = received = 0
    rtt_sum = 0.0
    for m in re.finditer(r"xmt/rcv/%loss = (\d+)/(\d+)/[^,\n]*(?:, min/avg/max = [\d.]+/([\d.]+)/)?", err):
        xmt, rcv = int(m.group(1)), int(m.group(2))
        sent += xmt
        received += rcv
        if m.group(3):
            rtt_sum += float(m.group(3)) / 1000 * rcv
    # The summary covers the whole run, warm-up included: scale the count to the window.
    return {"probes": sent * seconds / (seconds + 1), "cpu": cpu, "rss": rss,
            "loss": 1 - received / max(sent, 1), "rtt": rtt_sum / max(received, 1)}


def blackbox(targets, seconds, kind, probe_target=None):
    port = free_port()
    config = (
        "modules:\n"
        "  icmp:\n    prober: icmp\n    timeout: 1s\n    icmp:\n      preferred_ip_protocol: ip4\n"
        "  tcp:\n    prober: tcp\n    timeout: 1s\n    tcp:\n      preferred_ip_protocol: ip4\n"
        "  http:\n    prober: http\n    timeout: 1s\n    http:\n      preferred_ip_protocol: ip4\n"
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
            paths = [f"/probe?module={kind}&target=" + (probe_target(t) if probe_target else t)
                     for t in targets]
            drive(port, paths, seconds=1)  # warm-up
            cpu0 = cpu_seconds(proc.pid)
            done = drive(port, paths, seconds)
            cpu1, rss = cpu_seconds(proc.pid), rss_mib(proc.pid)
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


def http_server():
    """A minimal HTTP/1.1 server on loopback (a thread per connection is plenty at 1,000/s)."""
    import http.server

    class Handler(http.server.BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def do_GET(self):
            body = b"<h1>ok</h1>"
            self.send_response(200)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            try:
                self.wfile.write(body)
            except (BrokenPipeError, ConnectionResetError):
                pass  # a probe that timed out and left: nothing to report

        def log_message(self, *args):
            pass

    class Server(http.server.ThreadingHTTPServer):
        def handle_error(self, request, client_address):
            pass  # a client gone mid-request is not this benchmark's business

    server = Server(("127.0.0.1", 0), Handler)
    server.daemon_threads = True
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server


def per_probe_ms(r):
    return r["cpu"] / max(r["probes"], 1) * 1000


def row(cells):
    print("| " + " | ".join(cells) + " |")


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sizes", default="1000,10000,100000")
    parser.add_argument("--seconds", type=int, default=20)
    parser.add_argument("--binary", default="target/release/iocwatch")
    args = parser.parse_args()
    if os.geteuid() != 0:
        sys.exit("run as root: the ICMP peers need raw sockets")
    sizes = [int(n) for n in args.sizes.split(",")]
    secs = args.seconds
    # Loopback only: 127.20.0.1 … (all of 127/8 answers on Linux).
    addresses = loopback_addresses(max(sizes))

    print(f"{secs} s measured per tool; CPU is the tool's own process (user + system)\n")
    row(["work", "tool", "probes", "CPU ms/probe", "loss %", "mean RTT ms", "RSS MiB", "ratio"])
    row(["---"] * 8)
    for n in sizes:
        targets = addresses[:n]
        period = max(1, n // 10000)
        ours = iocwatch(args.binary, targets, secs, "icmp", period)
        work = f"ICMP, {n:,} targets every {period} s"

        def line(tool, r, ratio=""):
            loss = f"{r['loss'] * 100:.2f}" if "loss" in r else "–"
            rtt = f"{r['rtt'] * 1000:.3f}" if "rtt" in r else "–"
            row([work, tool, f"{r['probes']:.0f}", f"{per_probe_ms(r):.4f}", loss, rtt, f"{r['rss']:.1f}", ratio])

        line("iocwatch", ours, f"{ours['dropped']:.0f} replies dropped by the kernel")
        peer = fping(targets, secs, period)
        line(f"fping -l -i {period * 1000 / n:g}", peer,
             f"iocwatch CPU = {per_probe_ms(ours) / per_probe_ms(peer):.2f} × fping")
        if n <= 1000:
            bb = blackbox(targets, secs, "icmp")
            line("prometheus-blackbox-exporter", bb, f"iocwatch = 1/{per_probe_ms(bb) / per_probe_ms(ours):.0f} of it")
            sp_targets = targets[:300]
            sp = smokeping(sp_targets, secs)
            line("prometheus-smokeping-prober (300 targets)", sp, f"iocwatch = 1/{per_probe_ms(sp) / per_probe_ms(ours):.0f} of it")
        row([f"/metrics, {n:,} ICMP checks", "iocwatch", f"{ours['series']:,} series",
             f"{ours['bytes'] / 1e6:.1f} MB ({ours['wire'] / 1e6:.1f} MB gzip)", "", "", f"{ours['rss']:.1f}",
             f"{ours['scrape']:.2f} s per scrape; {ours['rss'] * 1024 / n:.1f} KiB per check"])

    if 1000 in sizes:
        targets = addresses[:1000]
        web = http_server()
        url = f"http://127.0.0.1:{web.server_address[1]}/"
        ours = iocwatch(args.binary, targets, secs, "http", 1, url)
        bb = blackbox(targets, secs, "http", lambda t: url)
        work = "HTTP, 1,000 targets"
        row([work, "iocwatch", f"{ours['probes']:.0f}", f"{per_probe_ms(ours):.4f}", "–", "–", f"{ours['rss']:.1f}", ""])
        row([work, "prometheus-blackbox-exporter", f"{bb['probes']:.0f}", f"{per_probe_ms(bb):.4f}", "–", "–",
             f"{bb['rss']:.1f}", f"iocwatch = 1/{per_probe_ms(bb) / per_probe_ms(ours):.1f} of it"])
        web.shutdown()

        listener = socket.socket()
        listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        listener.bind(("0.0.0.0", 0))
        listener.listen(4096)
        tcp_port = listener.getsockname()[1]
        threading.Thread(target=accept_forever, args=(listener,), daemon=True).start()
        ours = iocwatch(args.binary, targets, secs, "tcp", 1, tcp_port)
        bb = blackbox(targets, secs, "tcp", lambda t: f"{t}:{tcp_port}")
        work = "TCP, 1,000 targets"
        row([work, "iocwatch", f"{ours['probes']:.0f}", f"{per_probe_ms(ours):.4f}", "–", "–", f"{ours['rss']:.1f}", ""])
        row([work, "prometheus-blackbox-exporter", f"{bb['probes']:.0f}", f"{per_probe_ms(bb):.4f}", "–", "–",
             f"{bb['rss']:.1f}", f"iocwatch = 1/{per_probe_ms(bb) / per_probe_ms(ours):.1f} of it"])
        listener.close()


if __name__ == "__main__":
    main()
