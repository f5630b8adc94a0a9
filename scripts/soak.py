#!/usr/bin/env python3
"""Driver of scripts/soak.sh (standard library only): starts the two servers, rewrites the first
one's policy folder while requests run, and compares every answer with the fixed server's."""
import argparse
import http.client
import json
import os
import random
import shutil
import signal
import socket
import ssl
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

# Malformed bodies: each must get the same 4xx from both servers, never a crash or a 5xx.
MALFORMED = [
    b"",
    b"{",
    b"not json",
    b"[]",
    b"null",
    b'{"apiVersion":"admission.k8s.io/v1","kind":"AdmissionReview"}',
    b'{"apiVersion":"admission.k8s.io/v1","kind":"AdmissionReview","request":{}}',
    b'{"apiVersion":"admission.k8s.io/v1","kind":"AdmissionReview","request":{"uid":"x","operation":"CREATE"}}',
    b'{"apiVersion":"admission.k8s.io/v1","kind":"AdmissionReview","request":{"uid":7}}',
    b'{"apiVersion":"v0","kind":"Nope","request":{"uid":"x"}}',
    b"[" * 5000 + b"]" * 5000,
    b'{"apiVersion":"admission.k8s.io/v1","kind":"AdmissionReview","request":' + b'{"a":' * 300 + b"1" + b"}" * 301,
    b"\xff\xfe\x00garbage",
]


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def rss_kib(pid):
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    except OSError:
        return None
    return None


class Server:
    def __init__(self, name, binary, policies, scratch):
        self.name = name
        self.port = free_port()
        cert_dir = scratch / f"certs-{name}"
        self.log = open(scratch / f"{name}.log", "wb")
        self.proc = subprocess.Popen(
            [binary, "serve", "--listen", f"127.0.0.1:{self.port}", "--policies", str(policies),
             "--cert-dir", str(cert_dir), "--ip", "127.0.0.1", "--poll-interval", "1"],
            stdout=self.log, stderr=subprocess.STDOUT)
        ca = cert_dir / "ca.crt"
        deadline = time.time() + 60
        while not ca.exists():
            if self.proc.poll() is not None or time.time() > deadline:
                sys.exit(f"soak: server {name} did not start (see {scratch}/{name}.log)")
            time.sleep(0.1)
        time.sleep(0.2)
        self.ctx = ssl.create_default_context(cafile=str(ca))
        while True:
            try:
                status, _ = self.get("/health/readiness")
                if status == 200:
                    break
            except OSError:
                pass
            if time.time() > deadline:
                sys.exit(f"soak: server {name} not ready")
            time.sleep(0.2)

    def connect(self):
        return http.client.HTTPSConnection("127.0.0.1", self.port, context=self.ctx, timeout=30)

    def get(self, path):
        c = self.connect()
        c.request("GET", path)
        r = c.getresponse()
        body = r.read()
        c.close()
        return r.status, body

    def stop(self):
        crashed = self.proc.poll() is not None
        if not crashed:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
        self.log.close()
        return crashed


def decision(status, body):
    """What must be equal between the two servers: the HTTP status and, for a review, the
    response without its uid."""
    try:
        doc = json.loads(body)
    except ValueError:
        return (status, body[:200])
    if status == 200 and isinstance(doc, dict):
        resp = dict(doc.get("response") or {})
        resp.pop("uid", None)
        if "warnings" in resp:
            resp["warnings"] = sorted(resp["warnings"])
        return (status, json.dumps(resp, sort_keys=True))
    # Error bodies may word a decode error with a position; the status decides.
    return (status, None)


def rewrite_policies(folder, sources, stop, counter, in_place):
    """Rewrites every policy file in turn, by atomic rename (as a ConfigMap mount or a careful
    tool does) and, with `in_place`, also by truncate-and-write (as some editors do: a reader can
    then see an empty or half-written file), and adds and removes an extra policy for a kind no
    request has. The policies in force never change meaning."""
    extra = folder / "extra-unused-kind.yaml"
    extra_text = (
        "apiVersion: kyverno.io/v1\nkind: ClusterPolicy\nmetadata: {name: soak-unused-kind}\n"
        "spec:\n  validationFailureAction: Enforce\n  rules:\n  - name: r\n"
        "    match: {any: [{resources: {kinds: [SoakUnusedKind]}}]}\n"
        "    validate: {message: never, deny: {}}\n")
    i = 0
    while not stop.is_set():
        name, text = sources[i % len(sources)]
        path = folder / name
        mode = i % 3
        if mode == 1 and not in_place:
            mode = 0
        if mode == 0:
            tmp = folder / f".{name}.tmp"
            tmp.write_text(f"# rewrite {i}\n{text}")
            os.replace(tmp, path)
        elif mode == 1:
            with open(path, "w") as f:
                f.write(f"# rewrite {i}\n")
                f.flush()
                f.write(text)
        else:
            if extra.exists():
                extra.unlink()
            else:
                extra.write_text(extra_text)
        i += 1
        counter[0] = i
        time.sleep(0.05)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--bin", required=True)
    ap.add_argument("--conformance", required=True)
    ap.add_argument("--workload", required=True)
    ap.add_argument("--requests", type=int, default=100000)
    ap.add_argument("--seconds", type=int, default=3600)
    ap.add_argument("--threads", type=int, default=4)
    ap.add_argument("--malformed-every", type=int, default=10)
    ap.add_argument("--in-place", action="store_true",
                    help="also rewrite policy files in place (truncate, then write)")
    args = ap.parse_args()

    scratch = Path(tempfile.mkdtemp(prefix="kybern-soak-"))
    # Pod Security policies from the library, as Enforce so that decisions deny.
    sources = []
    for level in ("baseline", "restricted"):
        for f in sorted((Path(args.conformance) / "policies/pod-security" / level).glob("*/*.yaml")):
            text = f.read_text()
            if "kind: ClusterPolicy" not in text:
                continue
            sources.append((f"{level}-{f.name}", text.replace("validationFailureAction: Audit",
                                                                "validationFailureAction: Enforce")))
    if not sources:
        sys.exit(f"soak: no Pod Security policies under {args.conformance}")
    fixed, live = scratch / "fixed", scratch / "live"
    for d in (fixed, live):
        d.mkdir()
        for name, text in sources:
            (d / name).write_text(text)

    reviews_path = scratch / "reviews.jsonl"
    subprocess.run([sys.executable, args.workload, "2000", str(scratch / "workload.yaml"),
                    "--reviews", str(reviews_path)], check=True, stdout=subprocess.DEVNULL)
    reviews = [line.encode() for line in reviews_path.read_text().splitlines() if line.strip()]

    servers = [Server("live", args.bin, live, scratch), Server("fixed", args.bin, fixed, scratch)]
    time.sleep(1)
    rss_start = [rss_kib(s.proc.pid) for s in servers]
    print(f"soak: {len(sources)} policies, {len(reviews)} distinct reviews, {args.requests} requests, "
          f"{args.threads} threads, 1 in {args.malformed_every} malformed, rewrites "
          f"{'atomic and in place' if args.in_place else 'atomic'}; scratch {scratch}", flush=True)

    stop = threading.Event()
    rewrites = [0]
    writer = threading.Thread(target=rewrite_policies, args=(live, sources, stop, rewrites, args.in_place), daemon=True)
    writer.start()

    lock = threading.Lock()
    stats = {"sent": 0, "errors": 0, "wrong": 0, "denied": 0, "allowed": 0, "rejected": 0, "status": {}}
    examples = []
    next_index = [0]
    deadline = time.time() + args.seconds

    def take():
        with lock:
            if next_index[0] >= args.requests or time.time() > deadline:
                return None
            next_index[0] += 1
            return next_index[0]

    def send(conns, k, body):
        for attempt in range(2):
            try:
                c = conns[k]
                c.request("POST", "/validate?timeout=10s", body=body,
                          headers={"Content-Type": "application/json"})
                r = c.getresponse()
                return r.status, r.read()
            except (OSError, http.client.HTTPException):
                conns[k].close()
                conns[k] = servers[k].connect()
                if attempt == 1:
                    raise
        raise OSError("unreachable")

    def worker(seed):
        rng = random.Random(seed)
        conns = [s.connect() for s in servers]
        while (n := take()) is not None:
            if n % args.malformed_every == 0:
                body = rng.choice(MALFORMED)
            else:
                body = rng.choice(reviews)
            try:
                got = [send(conns, k, body) for k in range(2)]
            except (OSError, http.client.HTTPException) as e:
                with lock:
                    stats["errors"] += 1
                    if len(examples) < 5:
                        examples.append(f"transport error: {e!r}")
                continue
            live_d, fixed_d = decision(*got[0]), decision(*got[1])
            with lock:
                stats["sent"] += 1
                stats["status"][got[0][0]] = stats["status"].get(got[0][0], 0) + 1
                if got[0][0] >= 500:
                    stats["errors"] += 1
                if live_d != fixed_d:
                    stats["wrong"] += 1
                    if len(examples) < 5:
                        examples.append(f"differs: live {live_d} fixed {fixed_d}")
                elif got[0][0] == 200:
                    allowed = json.loads(got[0][1]).get("response", {}).get("allowed")
                    stats["allowed" if allowed else "denied"] += 1
                else:
                    stats["rejected"] += 1

    started = time.time()
    threads = [threading.Thread(target=worker, args=(i,)) for i in range(args.threads)]
    for t in threads:
        t.start()
    last = started
    # RSS once caches and pools are warm (after 5% of the requests): growth is measured from there.
    warm = max(1, args.requests // 20)
    rss_warm = None
    while any(t.is_alive() for t in threads):
        time.sleep(0.2)
        if rss_warm is None and stats["sent"] >= warm:
            rss_warm = [rss_kib(s.proc.pid) for s in servers]
        if time.time() - last >= 30:
            last = time.time()
            print(f"soak: {stats['sent']} sent, {stats['wrong']} wrong, {stats['errors']} errors, "
                  f"{rewrites[0]} rewrites, RSS {[rss_kib(s.proc.pid) for s in servers]} KiB", flush=True)
    for t in threads:
        t.join()
    elapsed = time.time() - started
    stop.set()
    writer.join()
    rss_end = [rss_kib(s.proc.pid) for s in servers]
    crashed = [s.name for s in servers if s.stop()]

    print(f"soak: {stats['sent']} requests in {elapsed:.0f} s ({stats['sent'] / elapsed:.0f}/s to each server), "
          f"{rewrites[0]} policy rewrites")
    print(f"soak: decisions {stats['allowed']} allowed, {stats['denied']} denied, {stats['rejected']} malformed "
          f"rejected; HTTP status of the live server {dict(sorted(stats['status'].items()))}")
    print(f"soak: wrong decisions {stats['wrong']}, errors {stats['errors']}, crashed {crashed or 'none'}")
    rss_warm = rss_warm or rss_start
    for name, a, w, b in zip(["live", "fixed"], rss_start, rss_warm, rss_end):
        growth = f"{100 * (b - w) / w:+.1f}%" if w and b else "n/a"
        print(f"soak: RSS {name}: {a} KiB idle, {w} KiB after {warm} requests, {b} KiB at end "
              f"({growth} from warm)")
    for e in examples:
        print("soak: example:", e)
    ok = stats["wrong"] == 0 and stats["errors"] == 0 and not crashed
    if ok:
        shutil.rmtree(scratch, ignore_errors=True)
    else:
        print(f"soak: logs kept in {scratch}")
    sys.exit(0 if ok else 1)


if __name__ == "__main__":
    main()
