#!/usr/bin/env python3
"""Whole-process benchmark of `kybern controller --enable reports` on the in-repo fake API server.

Usage: scripts/bench-reports.py [N ...]            (default: 1000 10000)

For each N: starts `kybern-fake-apiserver`, loads kybern's CRDs, the Pod Security policies of
../shared/conformance/policies/pod-security (the seven baseline policies and the podSecurity
subrule, all `background: true`) and N Pods over 10 namespaces, one in four privileged; then
starts `kybern controller --enable reports` and waits until every Pod has its report. Prints the
time to the last report, the controller's peak RSS (VmHWM), the report writes it sent, and checks
that every privileged Pod's report has a failing result. Then changes an annotation on 100 Pods
(no result changes) and counts the writes that caused (want 0).

Environment:
  KYBERN_BENCH_BIN        kybern binary (default: target/release/kybern)
  KYBERN_FAKE_APISERVER   fake API server binary (default: target/release/kybern-fake-apiserver)
  KYBERN_SHARED           the shared folder (default: ../shared beside the repository)
  KYBERN_BENCH_RATE       --report-writes-per-second (default 1000; the controller's default is 50)

Build first: cargo build --release -p kybern-cli -p kybern-testkube
Needs python3 with PyYAML.
"""

import http.client
import json
import os
import re
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parent.parent
BIN = os.environ.get("KYBERN_BENCH_BIN", str(ROOT / "target/release/kybern"))
FAKE = os.environ.get("KYBERN_FAKE_APISERVER", str(ROOT / "target/release/kybern-fake-apiserver"))
SHARED = Path(os.environ.get("KYBERN_SHARED", str(ROOT.parent / "shared")))
RATE = os.environ.get("KYBERN_BENCH_RATE", "1000")
NAMESPACES = 10


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Api:
    def __init__(self, port):
        self.conn = http.client.HTTPConnection("127.0.0.1", port, timeout=60)

    def request(self, method, path, body=None, content_type="application/json"):
        data = None if body is None else (body if isinstance(body, (bytes, str)) else json.dumps(body))
        headers = {"Content-Type": content_type} if data is not None else {}
        self.conn.request(method, path, body=data, headers=headers)
        r = self.conn.getresponse()
        payload = r.read()
        if r.status >= 300:
            raise RuntimeError(f"{method} {path}: {r.status} {payload[:300]!r}")
        return json.loads(payload) if payload else None


def policies():
    base = SHARED / "conformance/policies/pod-security"
    files = sorted((base / "baseline").glob("*/*.yaml"))
    files += [base / "subrule/podsecurity-subrule-baseline/podsecurity-subrule-baseline.yaml"]
    out = []
    for f in files:
        for doc in yaml.safe_load_all(f.read_text()):
            if isinstance(doc, dict) and doc.get("kind") == "ClusterPolicy":
                doc["spec"]["background"] = True
                out.append(doc)
    return out


def pod(i):
    privileged = i % 4 == 0
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": f"pod-{i}", "namespace": f"bench-{i % NAMESPACES}", "labels": {"app": f"a{i % 50}"}},
        "spec": {"containers": [{"name": "c", "image": "nginx:1.27", "securityContext": {"privileged": privileged}}]},
    }


def metric(port, name):
    try:
        c = http.client.HTTPConnection("127.0.0.1", port, timeout=5)
        c.request("GET", "/metrics")
        text = c.getresponse().read().decode()
    except OSError:
        return None
    m = re.search(rf"^{name} (\d+)", text, re.M)
    return int(m.group(1)) if m else None


def vmhwm(pid):
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) // 1024
    return 0


def run(n):
    tmp = Path(tempfile.mkdtemp(prefix="kybern-bench-reports-"))
    port = free_port()
    kubeconfig = tmp / "kubeconfig"
    fake = subprocess.Popen([FAKE, "--port", str(port), "--kubeconfig", str(kubeconfig)],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    ctl = None
    try:
        for _ in range(100):
            if kubeconfig.exists():
                break
            time.sleep(0.05)
        api = Api(port)
        crds = subprocess.run([BIN, "crds"], check=True, capture_output=True, text=True).stdout
        for doc in yaml.safe_load_all(crds):
            if doc:
                api.request("POST", "/apis/apiextensions.k8s.io/v1/customresourcedefinitions", doc)
        for ns in ["kybern"] + [f"bench-{i}" for i in range(NAMESPACES)]:
            api.request("POST", "/api/v1/namespaces", {"metadata": {"name": ns}})
        for p in policies():
            api.request("POST", "/apis/kyverno.io/v1/clusterpolicies", p)
        for i in range(n):
            p = pod(i)
            api.request("POST", f"/api/v1/namespaces/{p['metadata']['namespace']}/pods", p)
        mport = free_port()
        start = time.monotonic()
        ctl = subprocess.Popen(
            [BIN, "controller", "--enable", "reports", "--kubeconfig", str(kubeconfig), "--namespace", "kybern",
             "--pod-name", "bench", "--listen", f"127.0.0.1:{mport}", "--report-writes-per-second", RATE],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env={**os.environ, "RUST_LOG": "warn"})
        peak = 0
        while True:
            time.sleep(0.2)
            peak = max(peak, vmhwm(ctl.pid))
            if ctl.poll() is not None:
                raise RuntimeError("the controller exited")
            if metric(mport, "kybern_reports") == n:
                writes = metric(mport, "kybern_report_writes_total")
                if writes is not None and writes >= n:
                    break
            if time.monotonic() - start > 3600:
                raise RuntimeError("timed out")
        elapsed = time.monotonic() - start
        # Wait for the last writes to land, then check them.
        for _ in range(600):
            reports = api.request("GET", "/apis/wgpolicyk8s.io/v1alpha2/policyreports")["items"]
            if len(reports) == n:
                break
            time.sleep(0.2)
        by_name = {r["scope"]["name"]: r for r in reports}
        bad = [f"pod-{i}" for i in range(0, n, 4)]
        missing = [b for b in bad if by_name.get(b, {}).get("summary", {}).get("fail", 0) == 0]
        size = sum(len(json.dumps(r)) for r in reports) / max(len(reports), 1)
        writes = metric(mport, "kybern_report_writes_total")
        # 100 changes that leave results as they were.
        for i in range(1, min(n, 101)):
            p = pod(i)
            api.request("PATCH", f"/api/v1/namespaces/{p['metadata']['namespace']}/pods/{p['metadata']['name']}",
                        {"metadata": {"annotations": {"touched": "yes"}}}, "application/merge-patch+json")
        time.sleep(3)
        extra = metric(mport, "kybern_report_writes_total") - writes
        peak = max(peak, vmhwm(ctl.pid))
        print(f"N={n}: {len(reports)} reports in {elapsed:.1f} s, controller peak RSS {peak} MiB, "
              f"{writes} report writes, mean report {size / 1024:.1f} KiB, "
              f"privileged Pods without a failing result: {len(missing)} of {len(bad)}, "
              f"writes after 100 unchanged-result edits: {extra}")
        return 0 if not missing and extra == 0 else 1
    finally:
        if ctl:
            ctl.terminate()
            ctl.wait()
        fake.terminate()
        fake.wait()


def main():
    sizes = [int(a) for a in sys.argv[1:]] or [1000, 10000]
    sys.exit(max(run(n) for n in sizes))


if __name__ == "__main__":
    main()
