#!/usr/bin/env python3
"""Benchmark (not a test): the drop-in API against the raw python-etcd3
calls a Python programmer would otherwise make, on the same etcd, in one
process and one run.

Each measured call is interleaved with its raw baseline in the same loop
(one cached `etcd3.client`: a get for is_up, a put for update), in several
rounds; the ratio is the median over rounds of median(ours)/median(raw),
the spread the min-max of the per-round ratios.

    python bench.py [--rounds 5] [--reads 300] [--writes 200] [--endpoint host:port]

Without --endpoint it starts its own etcd (ETCD_BIN or PATH) on a free
loopback port. Needs `etcd3==0.12.0` installed beside os_lively.
"""

import argparse
import os
import platform
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request

import etcd3

import os_lively
from os_lively import _dropin
from os_lively import conf as conf_mod
from os_lively import service


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start_etcd():
    binary = os.environ.get("ETCD_BIN") or shutil.which("etcd")
    if not binary:
        sys.exit("bench: no etcd (set ETCD_BIN or put etcd on PATH)")
    d = tempfile.mkdtemp(prefix="os-lively-pybench-")
    port, peer = free_port(), free_port()
    url = "http://127.0.0.1:%d" % port
    proc = subprocess.Popen(
        [binary, "--name=b", "--data-dir=%s/data" % d, "--listen-client-urls=" + url,
         "--advertise-client-urls=" + url, "--listen-peer-urls=http://127.0.0.1:%d" % peer,
         "--initial-advertise-peer-urls=http://127.0.0.1:%d" % peer,
         "--initial-cluster=b=http://127.0.0.1:%d" % peer, "--logger=zap", "--log-level=error"],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 30
    while True:
        try:
            urllib.request.urlopen(url + "/health", timeout=1).read()
            break
        except OSError:
            if time.monotonic() > deadline or proc.poll() is not None:
                sys.exit("bench: etcd did not start")
            time.sleep(0.05)
    return proc, d, port


def fmt(sec):
    return "%.1f µs" % (sec * 1e6) if sec < 1e-3 else "%.3f ms" % (sec * 1e3)


def interleaved(n, ours, raw):
    """n alternating calls; per-call times of each."""
    a, b = [], []
    clock = time.perf_counter
    for i in range(n):
        t0 = clock()
        ours(i)
        t1 = clock()
        raw(i)
        t2 = clock()
        a.append(t1 - t0)
        b.append(t2 - t1)
    return a, b


def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--rounds", type=int, default=5)
    p.add_argument("--reads", type=int, default=300)
    p.add_argument("--writes", type=int, default=200)
    p.add_argument("--endpoint", help="host:port of an etcd to use instead of starting one")
    args = p.parse_args()

    proc = None
    if args.endpoint:
        host, port = args.endpoint.rsplit(":", 1)
        port = int(port)
    else:
        proc, tmp, port = start_etcd()
        host = "127.0.0.1"
    try:
        run(args, host, port)
    finally:
        if proc is not None:
            proc.kill()
            proc.wait()
            shutil.rmtree(tmp, ignore_errors=True)


def run(args, host, port):
    import google.protobuf as protobuf
    from google.protobuf.internal import api_implementation

    ns = "pybench-%d" % os.getpid()
    cfg = conf_mod.Conf(etcd_host=host, etcd_port=port, etcd_key_namespace=ns, status_ttl=60)
    raw = etcd3.client(host=host, port=port)  # one cached client, as a careful programmer would

    me = service.Service(type="nova-compute", host="host-7", region="east", status=service.Status.UP)
    service.update(cfg, me)
    uuid = me.uuid
    up_key = "/%s/services/by-status/UP/%s" % (ns, uuid)
    th_key = "/%s/services/by-type-host/nova-compute/host-7" % ns
    payload = me.SerializeToString()
    assert raw.get(up_key)[1] is not None
    for _ in range(50):  # warm both paths
        service.is_up(cfg, uuid=uuid)
        raw.get(up_key)

    client = os_lively.Client("%s:%d" % (host, port), namespace=ns)
    view = client.view()
    view.sync()
    # Hosts for the "register a new service" rows: unique per call.
    counter = [0]

    def register_new(_):
        counter[0] += 1
        s = service.Service(type="bench-new", host="h%d" % counter[0], region="east", status=service.Status.UP)
        service.update(cfg, s)

    rows = [
        ("is_up(conf, uuid=) vs raw get", args.reads,
         lambda i: service.is_up(cfg, uuid=uuid), lambda i: raw.get(up_key), "≤ 1.20×"),
        ("is_up(conf, type=, host=) vs raw get", args.reads,
         lambda i: service.is_up(cfg, type="nova-compute", host="host-7"), lambda i: raw.get(th_key), "≤ 2.20×"),
        ("update(conf, s) new service vs raw put", args.writes,
         register_new, lambda i: raw.put("/%s/raw/new/%d" % (ns, i), payload), "≤ 2.00×"),
        ("update(conf, s) unchanged (periodic) vs raw put", args.writes,
         lambda i: service.update(cfg, me), lambda i: raw.put("/%s/raw/same" % ns, payload), "≤ 2.00×"),
    ]
    results = {name: ([], [], []) for name, *_ in rows}
    view_ns = []
    t_start = time.monotonic()
    for r in range(args.rounds):
        for name, n, ours, base, _ in rows:
            a, b = interleaved(n, ours, base)
            ma, mb = statistics.median(a), statistics.median(b)
            results[name][0].append(ma)
            results[name][1].append(mb)
            results[name][2].append(ma / mb)
        # Pythonic view is_up: a tight loop, per-call time.
        reps = 20000
        f = view.is_up
        t0 = time.perf_counter()
        for _ in range(reps):
            f(uuid)
        view_ns.append((time.perf_counter() - t0) / reps)
    elapsed = time.monotonic() - t_start

    print("machine: nproc=%d, %s, Python %s, os-lively %s, etcd3 %s with protobuf %s (%s implementation), %d rounds in %.0f s" % (
        os.cpu_count(), platform.processor() or platform.machine(), platform.python_version(),
        os_lively.__version__, getattr(etcd3, "__version__", "?"), protobuf.__version__,
        api_implementation.Type(), args.rounds, elapsed))
    print("heartbeat deadlines in the loaded library: %s" % os_lively.features()["heartbeat"])
    print("| measurement | median | raw median | ratio | ratio spread | goal | met |")
    print("|---|---|---|---|---|---|---|")
    for name, _, _, _, goal in rows:
        a, b, ratios = results[name]
        ratio = statistics.median(ratios)
        limit = float(goal.split()[1].rstrip("×"))
        print("| %s | %s | %s | %.2f× | %.2f–%.2f | %s | %s |" % (
            name, fmt(statistics.median(a)), fmt(statistics.median(b)), ratio, min(ratios), max(ratios), goal,
            "yes" if ratio <= limit else "NO"))
    v = statistics.median(view_ns)
    print("| Client.view().is_up(uuid), per call | %s | - | - | %s–%s | ≤ 2 µs | %s |" % (
        fmt(v), fmt(min(view_ns)), fmt(max(view_ns)), "yes" if v <= 2e-6 else "NO"))
    print("ratio = median over rounds of median(os-lively)/median(raw python-etcd3); spread = min–max of the per-round ratios.")
    view.close()
    client.close()
    _dropin.close_all()


if __name__ == "__main__":
    main()
