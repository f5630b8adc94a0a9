#!/usr/bin/env python3
"""Runs `kybern test` on every Kyverno suite of the conformance corpus, sorts the suites by the
features their policies use, and writes docs/conformance.md: counts per area and, for every suite
that does not pass, the first failing row and why.

Usage: scripts/conformance-report.py [--kybern target/release/kybern] [--corpus ../shared/conformance]
"""
import argparse
import os
import re
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

CEL_KINDS = {
    "ValidatingPolicy", "NamespacedValidatingPolicy", "MutatingPolicy", "NamespacedMutatingPolicy",
    "GeneratingPolicy", "NamespacedGeneratingPolicy", "DeletingPolicy", "NamespacedDeletingPolicy",
    "ImageValidatingPolicy", "NamespacedImageValidatingPolicy", "ValidatingAdmissionPolicy",
    "MutatingAdmissionPolicy",
}


def policy_files(test_file: Path):
    """Policy file paths named by a kyverno-test.yaml (a light reading: the `policies:` list)."""
    files, in_list = [], False
    for line in test_file.read_text(errors="replace").splitlines():
        if re.match(r"^policies:\s*$", line):
            in_list = True
            continue
        if in_list:
            m = re.match(r"^\s*-\s+(.+?)\s*$", line)
            if m:
                files.append(test_file.parent / m.group(1).strip("'\""))
            elif line and not line.startswith(" ") and not line.startswith("-"):
                in_list = False
    return files


def classify(test_file: Path) -> str:
    text = ""
    for f in policy_files(test_file):
        try:
            if f.is_dir():
                for p in sorted(f.rglob("*.y*ml")):
                    text += p.read_text(errors="replace") + "\n"
            else:
                text += f.read_text(errors="replace") + "\n"
        except OSError:
            pass
    kinds = set(re.findall(r"^kind:\s*(\w+)", text, re.M))
    if kinds & CEL_KINDS:
        return "cel-kinds"
    if re.search(r"^[\s-]+(verifyImages|manifests):", text, re.M):
        return "verify-images-manifests"
    if re.search(r"^[\s-]+cel:", text, re.M):
        return "validate-cel"
    if re.search(r"^[\s-]+(mutate|generate):", text, re.M):
        return "mutate-generate"
    return "validate"


AREAS = {
    "validate": "ClusterPolicy/Policy validation (pattern, anyPattern, deny, foreach, podSecurity)",
    "mutate-generate": "ClusterPolicy/Policy mutate and generate rules",
    "validate-cel": "ClusterPolicy/Policy with validate.cel",
    "cel-kinds": "CEL policy kinds (ValidatingPolicy, MutatingPolicy, ..., VAP/MAP)",
    "verify-images-manifests": "verifyImages and validate.manifests (need a registry or signatures)",
}

# Suites that read images from public registries (unreachable offline) and the tests that run
# them unchanged against a loopback registry, with images and keys moved there.
LOCAL_VARIANTS = {
    "kyverno/cli/test/images/signatures":
        "crates/kybern-cli/tests/image_verification.rs :: kyverno_signature_suite_passes_against_a_local_registry",
    "kyverno/cli/test/images/verify-signature":
        "crates/kybern-cli/tests/image_verification.rs :: kyverno_verify_signature_suite_passes_against_a_local_registry",
}


def run(kybern: str, corpus: Path, test_file: Path):
    suite = str(test_file.parent.relative_to(corpus))
    try:
        out = subprocess.run(
            [kybern, "test", str(test_file), "--detailed-results"],
            capture_output=True, text=True, timeout=120,
        )
        stdout, stderr, rc = out.stdout, out.stderr, out.returncode
    except subprocess.TimeoutExpired:
        return suite, False, "timed out after 120 s"
    ok = rc == 0 and "Test Summary:" in stdout
    reason = ""
    if not ok:
        for line in stdout.splitlines():
            cells = [c.strip() for c in line.split("│")]
            if len(cells) > 7 and cells[5] == "Fail":
                reason = f"{cells[2]}/{cells[3]} on {cells[4]}: {cells[6]}"
                if cells[7]:
                    reason += f" ({cells[7][:160]})"
                break
        if not reason:
            reason = (stderr.strip().splitlines() or ["no output"])[-1][:200]
        if "panicked" in stderr:
            reason = "PANIC: " + reason
    return suite, ok, reason


def main():
    ap = argparse.ArgumentParser()
    root = Path(__file__).resolve().parent.parent
    ap.add_argument("--kybern", default=str(root / os.environ.get("CARGO_TARGET_DIR", "target") / "release/kybern"))
    ap.add_argument("--corpus", default=os.environ.get("KYBERN_CONFORMANCE_DIR", str(root.parent / "shared/conformance")))
    ap.add_argument("--out", default=str(root / "docs/conformance.md"))
    args = ap.parse_args()
    corpus = Path(args.corpus).resolve()
    tests = sorted(corpus.rglob("kyverno-test.yaml"))
    if not tests:
        sys.exit(f"no suites under {corpus}")
    with ThreadPoolExecutor(max_workers=2) as pool:
        results = list(pool.map(lambda t: (classify(t), *run(args.kybern, corpus, t)), tests))
    lines = [
        "# Conformance with Kyverno's CLI test suites",
        "",
        "Generated by `scripts/conformance-report.py` (release build). A suite passes when `kybern test`",
        "judges every expected row as passed, the way `kyverno test` does. The suites that pass are",
        "listed in `tests/conformance/passing.txt`; CI fails if one of them stops passing. The admission\n"
        "webhook replay of the chainsaw tests is reported in `docs/webhook-replay.md`.",
        "",
        "| area | suites | pass | rate |",
        "|---|---|---|---|",
    ]
    for area, title in AREAS.items():
        rs = [r for r in results if r[0] == area]
        n, p = len(rs), sum(1 for r in rs if r[2])
        rate = f"{100 * p / n:.1f}%" if n else "-"
        lines.append(f"| {title} | {n} | {p} | {rate} |")
    total, passed = len(results), sum(1 for r in results if r[2])
    lines.append(f"| **all** | {total} | {passed} | {100 * passed / total:.1f}% |")
    for area, title in AREAS.items():
        failing = [r for r in results if r[0] == area and not r[2]]
        if not failing:
            continue
        lines += ["", f"## Not passing yet: {title}", ""]
        for _, suite, _, reason in failing:
            line = f"- `{suite}`: {reason.replace('|', '/')}"
            if suite in LOCAL_VARIANTS:
                line += f"; its local variant passes (`{LOCAL_VARIANTS[suite]}`, in CI)"
            lines.append(line)
    # The hand-written section on Kyverno behaviours stays as it is.
    out = Path(args.out)
    kept = ""
    if out.exists():
        previous = out.read_text()
        marker = "\n## Kyverno behaviours matched"
        if marker in previous:
            kept = previous[previous.index(marker):]
    out.write_text("\n".join(lines) + "\n" + kept)
    print(f"{passed} of {total} suites pass; wrote {args.out}")


if __name__ == "__main__":
    main()
