#!/usr/bin/env python3
"""Seeds fuzz/corpus/<target>/ from the conformance corpus ($KYBERN_CONFORMANCE_DIR, default
../shared/conformance beside the repository). The corpus is read at run time and never
committed; seeds are shaped the way each target reads its input (see fuzz/fuzz_targets)."""
import hashlib
import os
import re
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent
MAX_FILES = 400  # per target: enough variety, and the first run stays short
MAX_SIZE = 64 * 1024


def corpus_dir() -> Path:
    default = ROOT.parent.parent / "shared" / "conformance"
    return Path(os.environ.get("KYBERN_CONFORMANCE_DIR", default))


def yaml_files(base: Path):
    files = sorted(p for p in base.rglob("*") if p.suffix in (".yaml", ".yml") and p.is_file())
    return [p for p in files if p.stat().st_size <= MAX_SIZE]


def write(target: str, seeds):
    out = ROOT / "corpus" / target
    out.mkdir(parents=True, exist_ok=True)
    n = 0
    for seed in seeds:
        if n >= MAX_FILES:
            break
        data = seed.encode() if isinstance(seed, str) else seed
        name = hashlib.sha1(data).hexdigest()
        path = out / name
        if not path.exists():
            path.write_bytes(data)
        n += 1
    return n


def spread(items, count=MAX_FILES):
    """Every k-th item, so seeds come from the whole corpus rather than its first folders."""
    step = max(1, len(items) // count)
    return items[::step]


def main():
    base = corpus_dir()
    if not base.is_dir():
        print(f"fuzz seeds: no conformance corpus at {base}; targets start from empty corpora",
              file=sys.stderr)
        return
    files = yaml_files(base)
    texts = [(p, p.read_text(errors="replace")) for p in spread(files, 4 * MAX_FILES)]
    policies = [t for _, t in texts if re.search(r"^kind: (Cluster)?Policy\b", t, re.M)]
    resources = [t for _, t in texts if re.search(r"^kind: (Pod|Deployment|ConfigMap|Namespace|Service)\b", t, re.M)]
    if not resources:
        resources = ["apiVersion: v1\nkind: Pod\nmetadata: {name: p}\nspec: {containers: [{name: c, image: nginx}]}\n"]

    def pair(i):
        return resources[i % len(resources)]

    counts = {}
    counts["yaml"] = write("yaml", (t for _, t in texts))
    counts["policy"] = write("policy", (p + "\n---\n" + pair(i) for i, p in enumerate(policies)))
    pattern_policies = [p for p in policies if "pattern:" in p]
    counts["pattern"] = write("pattern", (p + "\n---\n" + pair(i) for i, p in enumerate(pattern_policies)))
    patch_policies = [p for p in policies if "patchStrategicMerge" in p or "patchesJson6902" in p]
    counts["patch"] = write("patch", (pair(i) + "\n---\n" + p for i, p in enumerate(patch_policies)))

    variables = sorted({m.strip() for _, t in texts for m in re.findall(r"\{\{-?\s*(.+?)\s*-?\}\}", t)})
    counts["jmespath"] = write("jmespath", (v + "\n" + pair(i) for i, v in enumerate(spread(variables))))
    cel = sorted({m.strip().strip("'\"") for _, t in texts
                  for m in re.findall(r"^\s*(?:- )?expression:\s*(.+)$", t, re.M)})
    counts["cel"] = write("cel", (e + "\n" + pair(i) for i, e in enumerate(spread(cel))))
    stars = sorted({m for _, t in texts for m in re.findall(r"[\"']?([\w./:\-]*[*?][\w./:\-*?]*)", t)})
    names = sorted({m for _, t in texts for m in re.findall(r"name: ([\w.\-]+)", t)})
    counts["wildcard"] = write("wildcard", (s + "\n" + names[i % len(names)] for i, s in enumerate(spread(stars)) if names))
    quantities = sorted({m for _, t in texts for m in re.findall(r"\b(\d+(?:\.\d+)?(?:[numkMGTPE]i?|[eE][+-]?\d+)?)\b", t)})
    counts["quantity"] = write("quantity", spread(quantities))
    counts["review"] = write("review", review_seeds())
    print("fuzz seeds from", base, ":", ", ".join(f"{k} {v}" for k, v in counts.items()))


def review_seeds():
    """AdmissionReview bodies of each shape the server meets: CREATE, UPDATE, DELETE, a
    subresource, a cluster-scoped object, a dry run."""
    import json
    pod = {"apiVersion": "v1", "kind": "Pod",
           "metadata": {"name": "web", "namespace": "shop", "labels": {"app": "web"}},
           "spec": {"containers": [{"name": "c", "image": "nginx:1.27",
                                    "securityContext": {"privileged": True}}]}}
    deploy = {"apiVersion": "apps/v1", "kind": "Deployment",
              "metadata": {"name": "d", "namespace": "shop"},
              "spec": {"template": {"metadata": {"labels": {"app": "d"}},
                                    "spec": {"containers": [{"name": "c", "image": "x:latest"}]}}}}
    ns = {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "team", "labels": {"a": "b"}}}

    def review(op, obj, old=None, sub=None, dry=False):
        api = (old or obj or {}).get("apiVersion", "v1")
        group, _, version = api.rpartition("/")
        kind = (obj or old)["kind"]
        req = {"uid": f"u-{op}-{kind}", "kind": {"group": group, "version": version, "kind": kind},
               "resource": {"group": group, "version": version, "resource": kind.lower() + "s"},
               "name": (obj or old)["metadata"]["name"],
               "namespace": (obj or old)["metadata"].get("namespace", ""), "operation": op,
               "userInfo": {"username": "alice", "groups": ["system:authenticated"]},
               "object": obj, "oldObject": old, "dryRun": dry}
        if sub:
            req["subResource"] = sub
        return json.dumps({"apiVersion": "admission.k8s.io/v1", "kind": "AdmissionReview",
                           "request": req})

    return [review("CREATE", pod), review("UPDATE", pod, pod), review("DELETE", None, pod),
            review("CREATE", deploy), review("CREATE", ns, dry=True),
            review("CONNECT", {"apiVersion": "v1", "kind": "PodExecOptions",
                               "metadata": {"name": "web", "namespace": "shop"}}, sub="exec")]


if __name__ == "__main__":
    main()
