#!/usr/bin/env python3
"""Whole-process benchmark of `kybern controller --enable background` draining a queue.

Usage: scripts/bench-background.py [N ...]            (default: 1000 10000)

For each N: starts `kybern-fake-apiserver`, loads kybern's CRDs and one ClusterPolicy whose
generate rule gives every new Namespace a `default-deny` NetworkPolicy kept in sync
(`synchronize: true`, the example Kyverno is best known for); creates N Namespaces and, for each,
the UpdateRequest `serve --cluster` queues when it admits one (as an admission burst leaves
them). Then starts `kybern controller --enable background` and waits until the queue is empty
and every Namespace has its NetworkPolicy. Prints the time to drain, the controller's peak RSS
(VmHWM) and the RSS once drained, and checks the generated objects' labels.

Environment:
  KYBERN_BENCH_BIN        kybern binary (default: target/release/kybern)
  KYBERN_FAKE_APISERVER   fake API server binary (default: target/release/kybern-fake-apiserver)

Build first: cargo build --release -p kybern-cli -p kybern-testkube
Needs python3 with PyYAML.
"""

import http.client
import json
import os
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

POLICY = {
    "apiVersion": "kyverno.io/v1",
    "kind": "ClusterPolicy",
    "metadata": {"name": "add-networkpolicy"},
    "spec": {"rules": [{
        "name": "default-deny",
        "match": {"any": [{"resources": {"kinds": ["Namespace"]}}]},
        "generate": {
            "apiVersion": "networking.k8s.io/v1", "kind": "NetworkPolicy", "name": "default-deny",
            "namespace": "{{request.object.metadata.name}}", "synchronize": True,
            "data": {"spec": {"podSelector": {}, "policyTypes": ["Ingress", "Egress"]}},
        },
    }]},
}


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Api:
    def __init__(self, port):
        self.conn = http.client.HTTPConnection("127.0.0.1", port, timeout=60)

    def request(self, method, path, body=None):
        data = None if body is None else json.dumps(body)
        headers = {"Content-Type": "application/json"} if data is not None else {}
        self.conn.request(method, path, body=data, headers=headers)
        r = self.conn.getresponse()
        payload = r.read()
        if r.status >= 300:
            raise RuntimeError(f"{method} {path}: {r.status} {payload[:300]!r}")
        return json.loads(payload) if payload else None


def update_request(ns):
    """The UpdateRequest admission queues for the CREATE of Namespace `ns` (an object with uid)."""
    name = ns["metadata"]["name"]
    uid = ns["metadata"]["uid"]
    trigger = {"apiVersion": "v1", "kind": "Namespace", "namespace": "", "name": name, "uid": uid}
    user = {"username": "alice", "uid": "1", "groups": ["system:authenticated"]}
    obj = {"apiVersion": "v1", "kind": "Namespace", **{k: v for k, v in ns.items() if k not in ("apiVersion", "kind")}}
    return {
        "apiVersion": "kyverno.io/v2",
        "kind": "UpdateRequest",
        "metadata": {"name": f"ur-{uid}", "namespace": "kybern", "labels": {
            "generate.kyverno.io/policy-name": "add-networkpolicy",
            "generate.kyverno.io/trigger-kind": "Namespace",
            "generate.kyverno.io/trigger-uid": uid}},
        "spec": {
            "requestType": "generate", "policy": "add-networkpolicy", "rule": "default-deny",
            "ruleContext": [{"rule": "default-deny", "synchronize": True, "trigger": trigger}],
            "resource": trigger, "synchronize": True,
            "context": {
                "userInfo": {"roles": [], "clusterRoles": [], "userInfo": user},
                "admissionRequestInfo": {"operation": "CREATE", "admissionRequest": {
                    "uid": f"req-{uid}", "kind": {"group": "", "version": "v1", "kind": "Namespace"},
                    "subResource": "", "name": name, "namespace": "", "operation": "CREATE",
                    "userInfo": user, "object": obj, "oldObject": None, "dryRun": False}},
            },
        },
    }


def vm(pid, field):
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1]) // 1024
    return 0


def count(api, path):
    return len(api.request("GET", path)["items"])


def run(n):
    tmp = Path(tempfile.mkdtemp(prefix="kybern-bench-background-"))
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
        api.request("POST", "/api/v1/namespaces", {"metadata": {"name": "kybern"}})
        api.request("POST", "/apis/kyverno.io/v1/clusterpolicies", POLICY)
        for i in range(n):
            ns = api.request("POST", "/api/v1/namespaces", {"metadata": {"name": f"team-{i}"}})
            api.request("POST", "/apis/kyverno.io/v2/namespaces/kybern/updaterequests", update_request(ns))
        start = time.monotonic()
        ctl = subprocess.Popen(
            [BIN, "controller", "--enable", "background", "--kubeconfig", str(kubeconfig), "--namespace", "kybern",
             "--pod-name", "bench", "--listen", f"127.0.0.1:{free_port()}"],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env={**os.environ, "RUST_LOG": "warn"})
        peak = 0
        while True:
            time.sleep(0.5)
            peak = max(peak, vm(ctl.pid, "VmHWM"))
            if ctl.poll() is not None:
                raise RuntimeError("the controller exited")
            if count(api, "/apis/kyverno.io/v2/namespaces/kybern/updaterequests") == 0:
                break
            if time.monotonic() - start > 3600:
                raise RuntimeError("timed out")
        elapsed = time.monotonic() - start
        nps = api.request("GET", "/apis/networking.k8s.io/v1/networkpolicies")["items"]
        labelled = [p for p in nps if p["metadata"].get("labels", {}).get("generate.kyverno.io/policy-name") == "add-networkpolicy"]
        time.sleep(2)
        rss = vm(ctl.pid, "VmRSS")
        peak = max(peak, vm(ctl.pid, "VmHWM"))
        print(f"N={n}: queue of {n} UpdateRequests drained in {elapsed:.1f} s ({n / elapsed:.0f}/s), "
              f"{len(labelled)} NetworkPolicies generated, controller peak RSS {peak} MiB, "
              f"RSS once drained {rss} MiB")
        return 0 if len(labelled) == n else 1
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
