#!/usr/bin/env bash
# Whole-process benchmark of `kybern apply`: wall time and peak RSS on generated workloads.
#
# Usage: scripts/bench-apply.sh [N ...]          (default: 1000 10000 50000)
#
# For each N, generates N varied workload resources (Pods, Deployments, StatefulSets, DaemonSets,
# Jobs, CronJobs; about half of them break a rule: missing labels, a latest tag, privileged,
# hostNetwork, no securityContext) as multi-document YAML files in a temporary directory, then
# runs `kybern apply examples/policies crates/kybern-engine/benches/policies --resource <dir>`
# once and reports wall time, time per resource and peak resident memory.
#
# Environment:
#   CARGO_TARGET_DIR               where cargo builds (default: target)
#   KYBERN_BENCH_MEM_LIMIT_MB      address-space cap for each run (default: 8192); a run that hits
#                                  it is reported as over the cap instead of exhausting the machine
#   KYBERN_BENCH_SEED              generator seed (default: 42)
#
# Needs bash, python3 (standard library only) and cargo. `kybern apply` exits 1 when a policy
# fails, which is expected here.
set -euo pipefail

root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$root"

sizes=("$@")
if [ ${#sizes[@]} -eq 0 ]; then
    sizes=(1000 10000 50000)
fi
mem_limit_mb="${KYBERN_BENCH_MEM_LIMIT_MB:-8192}"
seed="${KYBERN_BENCH_SEED:-42}"
target_dir="${CARGO_TARGET_DIR:-target}"
policies=(examples/policies crates/kybern-engine/benches/policies)

work="$(mktemp -d "${TMPDIR:-/tmp}/kybern-bench-apply.XXXXXX")"
trap 'rm -rf "$work"' EXIT

echo "building the release binary..." >&2
if ! cargo build --release -p kybern-cli >"$work/build.log" 2>&1; then
    cat "$work/build.log" >&2
    exit 1
fi
# Run a private copy, so that another build into the same target directory cannot replace the
# binary while the benchmark runs.
cp "$target_dir/release/kybern" "$work/kybern"

generate() { # generate N DIR
    python3 - "$1" "$2" "$seed" <<'PY'
import os
import random
import sys

n, out, seed = int(sys.argv[1]), sys.argv[2], int(sys.argv[3])
rng = random.Random(seed)
kinds = ["Pod", "Deployment", "StatefulSet", "DaemonSet", "Job", "CronJob"]
api = {"Pod": "v1", "Deployment": "apps/v1", "StatefulSet": "apps/v1",
       "DaemonSet": "apps/v1", "Job": "batch/v1", "CronJob": "batch/v1"}
defects = ["labels", "latest", "privileged", "hostNetwork", "securityContext"]
apps = ["web", "api", "worker", "cache", "gateway", "search", "billing", "auth"]


def pod_spec(app, i, broken):
    tag = "latest" if "latest" in broken else f"{1 + i % 7}.{i % 13}.{i % 5}"
    sc = {"allowPrivilegeEscalation": False, "capabilities": {"drop": ["ALL"]}}
    if "privileged" in broken:
        sc["privileged"] = True
    container = {
        "name": app,
        "image": f"ghcr.io/acme/{app}:{tag}",
        "ports": [{"name": "http", "containerPort": 8080 + i % 10}],
        "env": [{"name": "INSTANCE", "value": str(i)}, {"name": "LOG_LEVEL", "value": "info"}],
        "resources": {"requests": {"cpu": "100m", "memory": "128Mi"},
                      "limits": {"memory": f"{128 * (1 + i % 8)}Mi"}},
        "volumeMounts": [{"name": "tmp", "mountPath": "/tmp"}],
    }
    if "securityContext" not in broken:
        container["securityContext"] = sc
    spec = {"containers": [container], "volumes": [{"name": "tmp", "emptyDir": {}}]}
    if i % 3 == 0:
        sidecar = {"name": "metrics", "image": f"registry.k8s.io/metrics/exporter:v0.{i % 20}.1",
                   "resources": {"limits": {"memory": "64Mi"}}}
        if "securityContext" not in broken:
            sidecar["securityContext"] = dict(sc)
        spec["containers"].append(sidecar)
    if "securityContext" not in broken:
        spec["securityContext"] = {"runAsNonRoot": True, "runAsUser": 10000 + i % 1000,
                                   "seccompProfile": {"type": "RuntimeDefault"}}
    if "hostNetwork" in broken:
        spec["hostNetwork"] = True
    return spec


def labels(app, broken):
    if "labels" in broken:
        return {"run": app}
    return {"app.kubernetes.io/name": app, "app.kubernetes.io/part-of": "shop", "team": "platform"}


def resource(i):
    kind = kinds[i % len(kinds)]
    app = apps[rng.randrange(len(apps))]
    broken = set()
    if rng.random() < 0.5:
        broken = set(rng.sample(defects, rng.randint(1, 2)))
    name = f"{app}-{kind.lower()}-{i}"
    meta = {"name": name, "namespace": f"team-{i % 10}", "labels": labels(app, broken)}
    template = {"metadata": {"labels": labels(app, broken)}, "spec": pod_spec(app, i, broken)}
    if kind == "Pod":
        spec = template["spec"]
    elif kind == "CronJob":
        template["spec"]["restartPolicy"] = "OnFailure"
        spec = {"schedule": f"{i % 60} * * * *",
                "jobTemplate": {"spec": {"template": template}}}
    elif kind == "Job":
        template["spec"]["restartPolicy"] = "Never"
        spec = {"backoffLimit": 2, "template": template}
    else:
        spec = {"selector": {"matchLabels": {"app.kubernetes.io/name": app}}, "template": template}
        if kind != "DaemonSet":
            spec["replicas"] = 1 + i % 5
        if kind == "StatefulSet":
            spec["serviceName"] = app
    return {"apiVersion": api[kind], "kind": kind, "metadata": meta, "spec": spec}


def emit(v, indent, out):
    """Block-style YAML for the JSON-like values above (strings are always quoted)."""
    pad = "  " * indent
    if isinstance(v, dict):
        if not v:
            out.append(" {}\n")
            return
        out.append("\n")
        for k, x in v.items():
            out.append(f"{pad}{k}:")
            emit(x, indent + 1, out)
    elif isinstance(v, list):
        if not v:
            out.append(" []\n")
            return
        out.append("\n")
        for x in v:
            if isinstance(x, dict) and x:
                first = True
                for k, y in x.items():
                    out.append(f"{pad}- {k}:" if first else f"{pad}  {k}:")
                    first = False
                    emit(y, indent + 2, out)
            else:
                out.append(f"{pad}-")
                emit(x, indent + 1, out)
    elif isinstance(v, bool):
        out.append(" true\n" if v else " false\n")
    elif isinstance(v, (int, float)):
        out.append(f" {v}\n")
    else:
        out.append(' "' + str(v).replace("\\", "\\\\").replace('"', '\\"') + '"\n')


per_file = 1000
for start in range(0, n, per_file):
    parts = []
    for i in range(start, min(n, start + per_file)):
        doc = []
        for k, x in resource(i).items():
            doc.append(f"{k}:")
            emit(x, 1, doc)
        parts.append("".join(doc))
    with open(os.path.join(out, f"resources-{start // per_file:04d}.yaml"), "w") as f:
        f.write("---\n".join(parts))
PY
}

# Runs one apply; prints "wall_seconds peak_rss_kib exit_code".
run_apply() { # run_apply RESOURCE_DIR
    python3 - "$mem_limit_mb" "$work/kybern" "$1" "${policies[@]}" <<'PY'
import os
import resource
import subprocess
import sys
import time

limit_mb, binary, resources, policies = int(sys.argv[1]), sys.argv[2], sys.argv[3], sys.argv[4:]


def cap():
    limit = limit_mb * 1024 * 1024
    resource.setrlimit(resource.RLIMIT_AS, (limit, limit))


start = time.monotonic()
with open(os.devnull, "w") as null:
    proc = subprocess.run([binary, "apply", *policies, "--resource", resources],
                          stdout=null, stderr=subprocess.PIPE, preexec_fn=cap)
wall = time.monotonic() - start
peak_kib = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss  # KiB on Linux
if proc.returncode not in (0, 1):
    sys.stderr.write(proc.stderr.decode(errors="replace")[-2000:])
print(f"{wall:.3f} {peak_kib} {proc.returncode}")
PY
}

printf '%-9s %10s %14s %14s  %s\n' "resources" "wall (s)" "per resource" "peak RSS" "status"
for n in "${sizes[@]}"; do
    dir="$work/resources-$n"
    mkdir -p "$dir"
    generate "$n" "$dir"
    read -r wall rss code < <(run_apply "$dir")
    per_us=$(python3 -c "print(f'{$wall / $n * 1e6:.1f} µs')")
    case "$code" in
        0 | 1) status="ok (exit $code)" ;;
        *)
            status="FAILED (exit $code; over the ${mem_limit_mb} MiB cap?)"
            per_us="-"
            ;;
    esac
    rss_mib=$(python3 -c "print(f'{$rss / 1024:.1f}')")
    printf '%-9s %10s %14s %10s MiB  %s\n' "$n" "$wall" "$per_us" "$rss_mib" "$status"
    rm -rf "$dir"
done
