#!/usr/bin/env python3
"""Memory of `kybern serve` under a burst of large AdmissionReviews, over loopback TLS.

Starts the server with the Pod Security policy set of the conformance corpus (or the examples when
the corpus is absent), sends CONCURRENCY reviews at once of a Pod with CONTAINERS small containers
(about 6.4 MiB for 195,000), samples the server's RSS every 20 ms, and prints each answer's status,
the peak RSS (VmHWM), and the RSS a few seconds after the burst. Then the same with 6.4 MiB UPDATE
reviews whose size is one annotation.

Usage: scripts/bench-big-reviews.py [BIN] [CONCURRENCY] [CONTAINERS]
  BIN defaults to target/release/kybern (build it with cargo build --release -p kybern-cli).
Extra serve flags can be given in KYBERN_BENCH_SERVE_FLAGS (space separated).
"""
import glob
import json
import os
import shutil
import socket
import ssl
import subprocess
import sys
import tempfile
import threading
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
BIN = sys.argv[1] if len(sys.argv) > 1 else os.path.join(ROOT, "target/release/kybern")
CONCURRENCY = int(sys.argv[2]) if len(sys.argv) > 2 else 8
CONTAINERS = int(sys.argv[3]) if len(sys.argv) > 3 else 195_000
CORPUS = os.environ.get("KYBERN_CONFORMANCE_DIR", os.path.join(ROOT, "..", "shared", "conformance"))


def free_port():
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


def rss_kib(pid, field):
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith(field + ":"):
                return int(line.split()[1])
    return 0


def review(uid, op, obj, old):
    return json.dumps({
        "apiVersion": "admission.k8s.io/v1", "kind": "AdmissionReview",
        "request": {
            "uid": uid, "kind": {"group": "", "version": "v1", "kind": "Pod"},
            "resource": {"group": "", "version": "v1", "resource": "pods"},
            "namespace": "shop", "name": "big", "operation": op,
            "userInfo": {"username": "bench", "groups": ["system:authenticated"]},
            "object": obj, "oldObject": old, "dryRun": False,
        },
    }, separators=(",", ":")).encode()


def many_containers(n):
    containers = [{"name": f"c{i}", "image": "nginx"} for i in range(n)]
    return {"apiVersion": "v1", "kind": "Pod",
            "metadata": {"name": "big", "namespace": "shop"},
            "spec": {"containers": containers}}


def big_annotation(size):
    return {"apiVersion": "v1", "kind": "Pod",
            "metadata": {"name": "big", "namespace": "shop", "annotations": {"blob": "y" * size}},
            "spec": {"containers": [{"name": "c", "image": "nginx"}]}}


def post(port, body, out, i):
    ctx = ssl.create_default_context()
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=60) as raw:
            with ctx.wrap_socket(raw, server_hostname="localhost") as s:
                head = (f"POST /validate?timeout=10s HTTP/1.1\r\nHost: localhost\r\n"
                        f"Content-Type: application/json\r\nContent-Length: {len(body)}\r\n"
                        f"Connection: close\r\n\r\n").encode()
                s.sendall(head + body)
                data = b""
                while True:
                    chunk = s.recv(65536)
                    if not chunk:
                        break
                    data += chunk
        status = data.split(b"\r\n", 1)[0].decode(errors="replace")
        payload = data.split(b"\r\n\r\n", 1)[-1][:300].decode(errors="replace")
        out[i] = f"{status} {payload}"
    except Exception as e:  # noqa: BLE001 - reported, not hidden
        out[i] = f"client error: {e}"


def burst(pid, port, bodies, label):
    peak = [0]
    stop = threading.Event()

    def sample():
        while not stop.is_set():
            peak[0] = max(peak[0], rss_kib(pid, "VmRSS"))
            time.sleep(0.02)

    before = rss_kib(pid, "VmRSS")
    sampler = threading.Thread(target=sample)
    sampler.start()
    out = [None] * len(bodies)
    threads = [threading.Thread(target=post, args=(port, b, out, i)) for i, b in enumerate(bodies)]
    started = time.time()
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    took = time.time() - started
    stop.set()
    sampler.join()
    time.sleep(3)
    after3 = rss_kib(pid, "VmRSS")
    print(f"== {label}: {len(bodies)} x {len(bodies[0]) / 1048576:.1f} MiB at once, {took:.1f} s")
    for i, o in enumerate(out):
        print(f"   [{i}] {o[:200]}")
    print(f"   RSS before {before / 1024:.0f} MiB, peak {peak[0] / 1024:.0f} MiB, "
          f"3 s after {after3 / 1024:.0f} MiB, VmHWM {rss_kib(pid, 'VmHWM') / 1024:.0f} MiB")


def main():
    work = tempfile.mkdtemp()
    pol = os.path.join(work, "policies")
    os.makedirs(pol)
    pss = glob.glob(os.path.join(CORPUS, "policies/pod-security/*/*/*.yaml"))
    pss = [p for p in pss if os.path.basename(p) not in ("kustomization.yaml", "artifacthub-pkg.yml")]
    if not pss:
        pss = glob.glob(os.path.join(ROOT, "examples/policies/*.yaml"))
    for p in pss:
        shutil.copy(p, os.path.join(pol, os.path.basename(os.path.dirname(p)) + "-" + os.path.basename(p)))
    port = free_port()
    flags = os.environ.get("KYBERN_BENCH_SERVE_FLAGS", "").split()
    server = subprocess.Popen(
        [BIN, "serve", "--listen", f"127.0.0.1:{port}", "--policies", pol,
         "--cert-dir", os.path.join(work, "certs")] + flags,
        stdout=subprocess.DEVNULL, stderr=open(os.path.join(work, "server.log"), "w"))
    try:
        ctx = ssl.create_default_context()
        ctx.check_hostname = False
        ctx.verify_mode = ssl.CERT_NONE
        for _ in range(300):
            try:
                with socket.create_connection(("127.0.0.1", port), timeout=2) as raw:
                    with ctx.wrap_socket(raw) as s:
                        s.sendall(b"GET /health/readiness HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
                        if b'"ready":true' in s.recv(4096):
                            break
            except OSError:
                pass
            time.sleep(0.1)
        print(f"{len(pss)} policies, server idle RSS {rss_kib(server.pid, 'VmRSS') / 1024:.0f} MiB")
        pod = many_containers(CONTAINERS)
        bodies = [review(f"c{i}", "CREATE", pod, None) for i in range(CONCURRENCY)]
        burst(server.pid, port, bodies, f"CREATE of a Pod with {CONTAINERS} containers")
        size = len(bodies[0]) // 2
        obj = big_annotation(size)
        bodies = [review(f"u{i}", "UPDATE", obj, obj) for i in range(CONCURRENCY)]
        burst(server.pid, port, bodies, "UPDATE with one big annotation")
    finally:
        server.terminate()
        server.wait()
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
