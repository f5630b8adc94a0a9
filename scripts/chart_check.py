#!/usr/bin/env python3
"""Offline checks of the Helm chart charts/kybern.

For each value set below: `helm lint` (strict) and a render with Helm's own engine
(helm-python-sdk), then every rendered document is validated against the Kubernetes 1.33 JSON
schemas with kubernetes-validate in strict mode (an unknown field is an error), and a few facts
that a careless edit could break are asserted. CustomResourceDefinitions in charts/kybern/crds/
(and in files given with --crds) are validated against the apiextensions schema.

Run it through scripts/chart-check.sh, which prepares the virtualenv.
"""

from __future__ import annotations

import argparse
import base64
import gzip
import json
import re
import sys
from pathlib import Path
from typing import Any, Callable

import helm_python as helm
import kubernetes_validate
import yaml

KUBE_VERSION = "1.33.0"
ROOT = Path(__file__).resolve().parent.parent
CHART = ROOT / "charts" / "kybern"

# Kinds whose CRDs are not part of Kubernetes: no schema to validate against, so only the
# facts below look at them.
CUSTOM_KINDS = {
    ("monitoring.coreos.com/v1", "ServiceMonitor"),
    ("cert-manager.io/v1", "Certificate"),
    ("cert-manager.io/v1", "Issuer"),
}

CLUSTER_SCOPED = {"ClusterRole", "ClusterRoleBinding", "CustomResourceDefinition", "Namespace"}

STANDARD_LABELS = [
    "helm.sh/chart",
    "app.kubernetes.io/name",
    "app.kubernetes.io/instance",
    "app.kubernetes.io/component",
    "app.kubernetes.io/part-of",
    "app.kubernetes.io/version",
    "app.kubernetes.io/managed-by",
]

# A set that turns on every optional input, so every branch of the templates renders once.
EVERYTHING = {
    "exceptionNamespaces": ["policy-exceptions"],
    "registry": {"pullSecrets": ["regcred", "mirror-cred"], "insecure": ["registry.local:5000"]},
    "certificates": {"tlsSecret": "byo-tls"},
    "metrics": {
        "serviceMonitor": {
            "enabled": True,
            "additionalLabels": {"release": "prometheus"},
            "caSecret": {"name": "kybern-svc.kybern.svc.kybern-tls-ca"},
            "relabelings": [{"action": "replace", "targetLabel": "cluster", "replacement": "a"}],
            "metricRelabelings": [{"action": "drop", "regex": "go_.*", "sourceLabels": ["__name__"]}],
        }
    },
    "rbac": {
        "createViewRoleBinding": False,
        "extraRules": [{"apiGroups": [""], "resources": ["services"], "verbs": ["get", "list"]}],
    },
    "admissionController": {
        "maxBodyBytes": 1048576,
        "priorityClassName": "system-cluster-critical",
        "topologySpreadConstraints": [
            {"maxSkew": 1, "topologyKey": "topology.kubernetes.io/zone", "whenUnsatisfiable": "ScheduleAnyway"}
        ],
        "podDisruptionBudget": {"maxUnavailable": 1, "unhealthyPodEvictionPolicy": "IfHealthyBudget"},
    },
    "config": {
        "excludeUsernames": ["ci-bot", "!ci-admin"],
        "excludeRoles": ["ops:break-glass"],
        "excludeClusterRoles": ["cluster-admin"],
        "webhooks": [
            {
                "namespaceSelector": {"matchLabels": {"policy": "enforced"}},
                "objectSelector": {"matchExpressions": [{"key": "skip", "operator": "DoesNotExist"}]},
            }
        ],
    },
    "networkPolicy": {
        "enabled": True,
        "ingressFrom": [{"ipBlock": {"cidr": "10.0.0.0/8"}}],
    },
    "failurePolicy": "Ignore",
    "webhookTimeoutSeconds": 5,
    "excludeNamespaces": ["kube-system", "cert-manager"],
    "extraArgs": ["--max-evaluations=8"],
    "extraEnv": [{"name": "RUST_BACKTRACE", "value": "1"}],
    "podAnnotations": {"example.com/scrape": "true"},
    "podLabels": {"tier": "infra"},
    "nodeSelector": {"kubernetes.io/os": "linux"},
    "tolerations": [{"key": "dedicated", "operator": "Equal", "value": "infra", "effect": "NoSchedule"}],
    "affinity": {
        "nodeAffinity": {
            "requiredDuringSchedulingIgnoredDuringExecution": {
                "nodeSelectorTerms": [
                    {"matchExpressions": [{"key": "kubernetes.io/arch", "operator": "In", "values": ["amd64"]}]}
                ]
            }
        }
    },
    "imagePullSecrets": [{"name": "regcred"}],
    "serviceAccount": {"annotations": {"example.com/role": "kybern"}},
    "service": {"annotations": {"example.com/internal": "true"}},
    "webhooksCleanup": {"podLabels": {"tier": "infra"}},
    "backgroundController": {
        "replicas": 2,
        "priorityClassName": "system-cluster-critical",
        "extraArgs": ["--kubeconfig=/etc/kybern/kubeconfig"],
        "podAnnotations": {"example.com/scrape": "true"},
        "podLabels": {"tier": "infra"},
        "podDisruptionBudget": {"maxUnavailable": 1, "unhealthyPodEvictionPolicy": "IfHealthyBudget"},
        "serviceAccount": {"annotations": {"example.com/role": "kybern-background"}},
        "rbac": {
            "generatedKinds": [
                {"apiGroups": [""], "resources": ["configmaps", "secrets"]},
                {"apiGroups": ["networking.k8s.io"], "resources": ["networkpolicies"]},
            ]
        },
    },
}

# (name, values, release name, namespace)
VALUE_SETS: list[tuple[str, dict[str, Any], str, str]] = [
    ("defaults", {}, "kybern", "kybern"),
    ("compat.kyvernoNames=true", {"compat": {"kyvernoNames": True}}, "kyverno", "kyverno"),
    ("certificates.certManager.enabled=true", {"certificates": {"certManager": {"enabled": True}}}, "kybern", "kybern"),
    ("metrics.serviceMonitor.enabled=true", {"metrics": {"serviceMonitor": {"enabled": True}}}, "kybern", "kybern"),
    ("networkPolicy.enabled=true", {"networkPolicy": {"enabled": True}}, "kybern", "kybern"),
    ("admissionController.replicas=1", {"admissionController": {"replicas": 1}}, "kybern", "kybern"),
    ("webhooksCleanup.enabled=false", {"webhooksCleanup": {"enabled": False}}, "kybern", "kybern"),
    ("backgroundController.enabled=false", {"backgroundController": {"enabled": False}}, "kybern", "kybern"),
    ("backgroundController.replicas=2", {"backgroundController": {"replicas": 2}}, "kybern", "kybern"),
    ("backgroundController.reports.enabled=true", {"backgroundController": {"reports": {"enabled": True}}}, "kybern", "kybern"),
    ("backgroundController.reports.api=openreports", {"backgroundController": {"reports": {"enabled": True, "api": "openreports"}}}, "kybern", "kybern"),
    ("backgroundController.cleanup.enabled=true", {"backgroundController": {"cleanup": {"enabled": True}}}, "kybern", "kybern"),
    ("registry.enabled=false", {"registry": {"enabled": False}}, "kybern", "kybern"),
    ("every optional input", EVERYTHING, "policy", "policy-system"),
]


# Values that values.schema.json must reject, so a typo fails at install instead of at run time.
REJECTED_VALUES: list[dict[str, Any]] = [
    {"failurePolicy": "fail"},
    {"webhookTimeoutSeconds": 31},
    {"exceptionNamespaces": ["Not_A_Namespace"]},
    {"registry": {"pullSecrets": ["Not_A_Secret"]}},
    {"admissionControler": {"replicas": 1}},
    {"config": {"resourceFilters": ["Event,*,*"]}},
    {"admissionController": {"podDisruptionBudget": {"unhealthyPodEvictionPolicy": "Always"}}},
    {"backgroundController": {"replica": 2}},
    {"backgroundController": {"reports": {"results": ["passed"]}}},
    {"backgroundController": {"reports": {"scanInterval": "hourly"}}},
    {"backgroundController": {"cleanup": {"deletableKinds": [{"apiGroups": [""], "resources": ["*"]}]}}},
    {"backgroundController": {"rbac": {"generatedKinds": [{"apiGroups": [""], "resources": ["*"]}]}}},
    {"backgroundController": {"rbac": {"generatedKinds": [{"apiGroups": [""], "resources": ["pods"], "verbs": ["*"]}]}}},
]


class Doc:
    """One rendered document and where it came from."""

    def __init__(self, source: str, index: int, body: dict[str, Any]):
        self.source = source
        self.index = index
        self.body = body

    @property
    def kind(self) -> str:
        return str(self.body.get("kind", "?"))

    @property
    def name(self) -> str:
        return str((self.body.get("metadata") or {}).get("name", "?"))

    def where(self) -> str:
        return f"{self.source} document {self.index} ({self.kind}/{self.name})"


class Report:
    def __init__(self) -> None:
        self.failures: list[str] = []

    def fail(self, value_set: str, where: str, message: str) -> None:
        self.failures.append(f"FAIL [{value_set}] {where}: {message}")


def parse_documents(source: str, text: str) -> list[Doc]:
    docs = []
    for index, body in enumerate(yaml.safe_load_all(text), start=1):
        if body is None:
            continue
        if not isinstance(body, dict):
            raise yaml.YAMLError(f"document {index} is a {type(body).__name__}, not a mapping")
        docs.append(Doc(source, index, body))
    return docs


def validate_schema(doc: Doc) -> str | None:
    """None when valid; else the error. Custom kinds are the caller's business."""
    try:
        kubernetes_validate.validate(doc.body, KUBE_VERSION, strict=True)
    except kubernetes_validate.SchemaNotFoundError as e:
        return f"unknown kind: {e.message}"
    except kubernetes_validate.ValidationError as e:
        path = "/".join(str(p) for p in e.path) or "(root)"
        return f"schema: at {path}: {e.message}"
    except kubernetes_validate.InvalidSchemaError as e:
        return f"schema file broken: {e.message}"
    return None


def one(docs: list[Doc], kind: str, pred: Callable[[Doc], bool] = lambda d: True) -> list[Doc]:
    return [d for d in docs if d.kind == kind and pred(d)]


def is_hook(d: Doc) -> bool:
    return "helm.sh/hook" in ((d.body.get("metadata") or {}).get("annotations") or {})


def container_args(dep: Doc) -> list[str]:
    return list(dep.body["spec"]["template"]["spec"]["containers"][0].get("args") or [])


def component(d: Doc) -> str | None:
    return ((d.body.get("metadata") or {}).get("labels") or {}).get("app.kubernetes.io/component")


def selects(selector: dict[str, str], labels: dict[str, str]) -> bool:
    return all(labels.get(k) == v for k, v in selector.items())


def check_pod_security(dep: Doc, fail: Callable[[str, str], None]) -> None:
    """Non-root on a read-only root filesystem, without privileges."""
    pod = dep.body["spec"]["template"]["spec"]
    psc = pod.get("securityContext") or {}
    for container in pod["containers"]:
        csc = container.get("securityContext") or {}
        where = f"{dep.where()} container {container['name']}"
        if not (psc.get("runAsNonRoot") or csc.get("runAsNonRoot")):
            fail(where, "runAsNonRoot is not set")
        if (csc.get("runAsUser", psc.get("runAsUser")) or 0) == 0:
            fail(where, "runAsUser is root or unset")
        if csc.get("readOnlyRootFilesystem") is not True:
            fail(where, "readOnlyRootFilesystem is not true")
        if csc.get("allowPrivilegeEscalation") is not False:
            fail(where, "allowPrivilegeEscalation is not false")
        if csc.get("privileged"):
            fail(where, "privileged")
        if "ALL" not in ((csc.get("capabilities") or {}).get("drop") or []):
            fail(where, "capabilities do not drop ALL")


def check_probes(dep: Doc, port: int, scheme: str, fail: Callable[[str, str], None]) -> None:
    """Startup and liveness on /health/liveness, readiness on /health/readiness."""
    container = dep.body["spec"]["template"]["spec"]["containers"][0]
    want_paths = {
        "startupProbe": "/health/liveness",
        "livenessProbe": "/health/liveness",
        "readinessProbe": "/health/readiness",
    }
    for probe, path in want_paths.items():
        get = (container.get(probe) or {}).get("httpGet") or {}
        if (get.get("path"), get.get("port"), get.get("scheme")) != (path, port, scheme):
            fail(dep.where(), f"{probe} is {get}, want {scheme} {path} on {port}")


def pod_name_from_downward_api(dep: Doc) -> bool:
    env = {e["name"]: e for e in dep.body["spec"]["template"]["spec"]["containers"][0].get("env") or []}
    ref = ((env.get("KYBERN_POD_NAME") or {}).get("valueFrom") or {}).get("fieldRef", {})
    return ref.get("fieldPath") == "metadata.name"


def bound_roles(docs: list[Doc], sa: str, ns: str) -> tuple[list[Doc], list[Doc]]:
    """Rendered roles whose rules the bindings grant ServiceAccount ns/sa: (cluster-wide, in ns
    only). A ClusterRole with an aggregationRule stands for the rendered ClusterRoles it selects,
    as the API server fills it in; a role the chart does not render (`view`) counts as none."""
    croles = {d.name: d for d in one(docs, "ClusterRole", lambda d: not is_hook(d))}
    roles = {d.name: d for d in one(docs, "Role", lambda d: not is_hook(d))}

    def cluster_role(name: str) -> list[Doc]:
        role = croles.get(name)
        if role is None:
            return []
        agg = role.body.get("aggregationRule")
        if not agg:
            return [role]
        return [
            other
            for other in croles.values()
            if any(
                selects(sel.get("matchLabels") or {}, other.body["metadata"].get("labels") or {})
                for sel in agg.get("clusterRoleSelectors") or []
            )
        ]

    def binds(b: Doc) -> bool:
        return any(
            s.get("kind") == "ServiceAccount" and s.get("name") == sa and s.get("namespace") == ns
            for s in b.body.get("subjects") or []
        )

    cluster: list[Doc] = []
    local: list[Doc] = []
    for b in one(docs, "ClusterRoleBinding", lambda d: not is_hook(d) and binds(d)):
        cluster += cluster_role(b.body["roleRef"]["name"])
    for b in one(docs, "RoleBinding", lambda d: not is_hook(d) and binds(d)):
        if b.body["metadata"].get("namespace") != ns:
            continue
        ref = b.body["roleRef"]
        if ref["kind"] == "ClusterRole":
            local += cluster_role(ref["name"])
        elif ref["name"] in roles:
            local.append(roles[ref["name"]])
    return cluster, local


def bound_rules(docs: list[Doc], sa: str, ns: str) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """Rules granted to ServiceAccount ns/sa: (cluster-wide, in ns only)."""
    cluster, local = bound_roles(docs, sa, ns)
    return [x for d in cluster for x in d.body.get("rules") or []], [x for d in local for x in d.body.get("rules") or []]


WRITE_VERBS = ("create", "update", "patch", "delete", "deletecollection")


def check_facts(value_set: str, values: dict[str, Any], release: str, ns: str, docs: list[Doc], r: Report) -> None:
    merged = chart_values(values)
    compat = merged["compat"]["kyvernoNames"]
    names = "kyverno" if compat else "kybern"
    svc_name = merged["service"]["name"] or f"{names}-svc"
    cm_name = merged["config"]["name"] or names

    def fail(where: str, message: str) -> None:
        r.fail(value_set, where, message)

    # Every object carries the standard labels and lives in the release namespace.
    for d in docs:
        meta = d.body.get("metadata") or {}
        labels = meta.get("labels") or {}
        missing = [l for l in STANDARD_LABELS if l not in labels]
        if missing:
            fail(d.where(), f"missing labels {missing}")
        if d.kind not in CLUSTER_SCOPED and d.kind != "ServiceMonitor" and meta.get("namespace") != ns:
            fail(d.where(), f"namespace is {meta.get('namespace')!r}, want the release namespace {ns!r}")

    bg = merged["backgroundController"]
    deps = one(docs, "Deployment")
    by_component = {c: [d for d in deps if component(d) == c] for c in ("admission", "background")}
    want_deps = {"admission": 1, "background": 1 if bg["enabled"] else 0}
    for c, n in want_deps.items():
        if len(by_component[c]) != n:
            fail("chart", f"want {n} {c} Deployment, found {[d.name for d in by_component[c]]}")
    if len(deps) != sum(want_deps.values()) or len(by_component["admission"]) != 1:
        fail("chart", f"unexpected Deployments {[d.name for d in deps]}")
        return
    dep = by_component["admission"][0]
    pod = dep.body["spec"]["template"]["spec"]
    container = pod["containers"][0]

    # Runs as non-root on a read-only root filesystem, without privileges; probes HTTPS on 9443.
    check_pod_security(dep, fail)
    check_probes(dep, 9443, "HTTPS", fail)

    # Arguments and the writable certificate folder.
    args = container_args(dep)
    for want in [
        "serve",
        "--cluster",
        f"--namespace={ns}",
        f"--service-name={svc_name}",
        f"--names={names}",
        f"--config-map={cm_name}",
        "--cert-dir=/tmp/kybern-certs",
        "--listen=0.0.0.0:9443",
    ]:
        if want not in args:
            fail(dep.where(), f"argument {want} missing from {args}")
    # Exceptions honoured only in the namespaces asked for, by admission and the controller.
    want_exc = merged.get("exceptionNamespaces") or []
    exc_arg = f"--exception-namespace={','.join(want_exc)}" if want_exc else None
    for d in [dep] + list(by_component["background"]):
        have = [a for a in container_args(d) if a.startswith("--exception-namespace")]
        if have != ([exc_arg] if exc_arg else []):
            fail(d.where(), f"exception namespaces {have}, want {exc_arg}")
    # Registry access, with the pull secrets and insecure registries asked for.
    reg = merged.get("registry") or {}
    want_reg = []
    if reg.get("enabled", True):
        want_reg.append("--registry")
        if reg.get("pullSecrets"):
            want_reg.append(f"--image-pull-secrets={','.join(reg['pullSecrets'])}")
        if reg.get("insecure"):
            want_reg.append(f"--insecure-registry={','.join(reg['insecure'])}")
    have_reg = [a for a in args if a.startswith(("--registry", "--image-pull-secrets", "--insecure-registry"))]
    if have_reg != want_reg:
        fail(dep.where(), f"registry arguments {have_reg}, want {want_reg}")
    # Admission results into reports: the flag, and writes on the report kinds.
    admission_reports = merged["backgroundController"]["reports"]["enabled"] and merged["admissionController"]["reports"]["enabled"]
    if admission_reports != ("--admission-reports" in args):
        fail(dep.where(), f"--admission-reports {'missing' if admission_reports else 'given'} with reports {'on' if admission_reports else 'off'}: {args}")
    if admission_reports:
        adm_rules, _ = bound_rules(docs, pod["serviceAccountName"], ns)
        group, plurals = (
            ("openreports.io", ("reports", "clusterreports"))
            if merged["backgroundController"]["reports"].get("api") == "openreports"
            else ("wgpolicyk8s.io", ("policyreports", "clusterpolicyreports"))
        )
        missing = [f"{v} {group}/{res}" for res in plurals for v in ("get", "create", "update", "delete") if not rule_allows(adm_rules, group, res, v)]
        if missing:
            fail(dep.where(), f"admission writes reports but may not {missing}")
    excl = next((a for a in args if a.startswith("--exclude-namespaces=")), "")
    if ns not in excl.split("=", 1)[-1].split(","):
        fail(dep.where(), f"the release namespace is not excluded: {excl!r}")
    mounts = {m["mountPath"]: m["name"] for m in container.get("volumeMounts") or []}
    vols = {v["name"]: v for v in pod.get("volumes") or []}
    cert_vol = vols.get(mounts.get("/tmp/kybern-certs", ""), {})
    if "emptyDir" not in cert_vol:
        fail(dep.where(), "/tmp/kybern-certs is not an emptyDir mount")
    if not pod_name_from_downward_api(dep):
        fail(dep.where(), "KYBERN_POD_NAME does not come from metadata.name")
    if dep.body["spec"]["replicas"] != merged["admissionController"]["replicas"]:
        fail(dep.where(), "replicas differ from admissionController.replicas")

    # The background controller: its own Deployment, ServiceAccount and roles, or nothing at all.
    ctl = by_component["background"][0] if by_component["background"] else None
    if ctl is not None:
        check_pod_security(ctl, fail)
        check_probes(ctl, 8080, "HTTP", fail)
        cargs = container_args(ctl)
        if cargs[:1] != ["controller"]:
            fail(ctl.where(), f"does not run `kybern controller`: {cargs}")
        parts = ["background"] + [p for p in ("reports", "cleanup") if bg.get(p, {}).get("enabled")]
        enable = "--enable=" + ",".join(parts)
        for want in [f"--namespace={ns}", f"--names={names}", enable, "--listen=0.0.0.0:8080"]:
            if want not in cargs:
                fail(ctl.where(), f"argument {want} missing from {cargs}")
        if not compat and any("kyverno" in a for a in cargs):
            fail(ctl.where(), f"Kyverno names in the arguments outside compat mode: {cargs}")
        ports = {p.get("name"): p.get("containerPort") for p in ctl.body["spec"]["template"]["spec"]["containers"][0].get("ports") or []}
        if ports.get("http") != 8080:
            fail(ctl.where(), f"container ports {ports}, want http on 8080")
        if not pod_name_from_downward_api(ctl):
            fail(ctl.where(), "KYBERN_POD_NAME does not come from metadata.name")
        if ctl.body["spec"]["replicas"] != bg["replicas"]:
            fail(ctl.where(), "replicas differ from backgroundController.replicas")
        if ctl.body["spec"]["template"]["spec"]["serviceAccountName"] == pod.get("serviceAccountName"):
            fail(ctl.where(), "shares the admission ServiceAccount")
    else:
        leftovers = [d.where() for d in docs if component(d) == "background" or "background" in d.name]
        if leftovers:
            fail("chart", f"controller objects rendered while backgroundController is disabled: {leftovers}")

    # TLS: the Secret passed to the binary is the one cert-manager writes.
    tls_arg = next((a.split("=", 1)[1] for a in args if a.startswith("--tls-secret=")), None)
    certs = one(docs, "Certificate", lambda d: not d.body["spec"].get("isCA"))
    if merged["certificates"]["certManager"]["enabled"]:
        if len(certs) != 1:
            fail("chart", f"want one serving Certificate, found {len(certs)}")
        else:
            spec = certs[0].body["spec"]
            if spec.get("secretName") != tls_arg:
                fail(certs[0].where(), f"secretName {spec.get('secretName')!r} is not --tls-secret {tls_arg!r}")
            want_dns = {svc_name, f"{svc_name}.{ns}", f"{svc_name}.{ns}.svc"}
            if not want_dns <= set(spec.get("dnsNames") or []):
                fail(certs[0].where(), f"dnsNames {spec.get('dnsNames')} lack {sorted(want_dns)}")
            issuers = {d.name for d in one(docs, "Issuer")}
            for c in one(docs, "Certificate"):
                ref = c.body["spec"]["issuerRef"]["name"]
                if ref not in issuers:
                    fail(c.where(), f"issuerRef {ref!r} is not a rendered Issuer")
    elif certs:
        fail(certs[0].where(), "Certificate rendered while certManager is disabled")
    if merged["certificates"]["tlsSecret"] and tls_arg != merged["certificates"]["tlsSecret"]:
        fail(dep.where(), f"--tls-secret is {tls_arg!r}, want {merged['certificates']['tlsSecret']!r}")
    if not merged["certificates"]["tlsSecret"] and not merged["certificates"]["certManager"]["enabled"] and tls_arg:
        fail(dep.where(), "--tls-secret given while kybern should manage its certificates")

    # Services: each selects the Pods of one Deployment and reaches a port of its container; the
    # webhook Service the admission Pods' https port.
    svcs = one(docs, "Service", lambda d: d.name == svc_name)
    if len(svcs) != 1:
        fail("chart", f"want the webhook Service {svc_name!r}, found {[d.name for d in one(docs, 'Service')]}")
    backends: dict[str, Doc] = {}
    for s in one(docs, "Service"):
        sel = s.body["spec"].get("selector") or {}
        picked = [d for d in deps if sel and selects(sel, d.body["spec"]["template"]["metadata"]["labels"])]
        if len(picked) != 1:
            fail(s.where(), f"selector {sel} selects the Pods of {[d.name for d in picked]}, want one Deployment")
            continue
        backends[s.name] = picked[0]
        cports = picked[0].body["spec"]["template"]["spec"]["containers"][0].get("ports") or []
        targets = {p.get("name") for p in cports} | {p.get("containerPort") for p in cports}
        for p in s.body["spec"]["ports"]:
            if p.get("targetPort") not in targets:
                fail(s.where(), f"targetPort {p.get('targetPort')} is not a port of {picked[0].name}")
    if svcs and svcs[0].name in backends and backends[svcs[0].name] is not dep:
        fail(svcs[0].where(), "the webhook Service does not select the admission Pods")
    if svcs and svcs[0].body["spec"]["ports"][0]["port"] != 443:
        fail(svcs[0].where(), "the webhook Service does not listen on 443")
    ctl_svcs = [n for n, d in backends.items() if d is ctl]
    if ctl is not None and bool(ctl_svcs) != merged["metrics"]["service"]["enabled"]:
        fail("chart", f"controller metrics Services {ctl_svcs} do not follow metrics.service.enabled")

    # The ConfigMap, in Kyverno's format.
    cms = one(docs, "ConfigMap", lambda d: d.name == cm_name)
    if len(cms) != 1:
        fail("chart", f"want the ConfigMap {cm_name!r}")
    else:
        data = cms[0].body.get("data") or {}
        for key in ["resourceFilters", "excludeGroups", "excludeUsernames", "excludeRoles", "excludeClusterRoles", "webhooks"]:
            if not isinstance(data.get(key), str):
                fail(cms[0].where(), f"data.{key} missing or not a string")
        entries = re.findall(r"\[([^\[\]]*)\]", data.get("resourceFilters", ""))
        if not entries or any(len(e.split(",")) > 3 for e in entries):
            fail(cms[0].where(), "resourceFilters is not a list of [Kind,Namespace,Name]")
        try:
            hooks = json.loads(data.get("webhooks", ""))
            exprs = hooks[0]["namespaceSelector"]["matchExpressions"]
            if not any(e["operator"] == "NotIn" and ns in e["values"] for e in exprs):
                fail(cms[0].where(), "webhooks namespaceSelector does not exclude the release namespace")
        except (ValueError, KeyError, IndexError, TypeError) as e:
            fail(cms[0].where(), f"data.webhooks is not Kyverno's JSON list: {e}")

    # Compat names appear exactly in compat mode; each aggregating role selects its own labels.
    def agg_labels(comp: str) -> list[str]:
        return [
            k
            for cr in one(docs, "ClusterRole", lambda d: "aggregationRule" in d.body and component(d) == comp)
            for sel in cr.body["aggregationRule"]["clusterRoleSelectors"]
            for k in sel.get("matchLabels", {})
        ]

    for comp, own, kyverno_label, present in (
        ("admission", "rbac.kybern.io/aggregate-to-admission", "rbac.kyverno.io/aggregate-to-admission-controller", True),
        ("background", "rbac.kybern.io/aggregate-to-background", "rbac.kyverno.io/aggregate-to-background-controller", ctl is not None),
    ):
        labels = agg_labels(comp)
        if not present:
            continue
        if own not in labels:
            fail("chart", f"the {comp} ClusterRole does not aggregate {own}")
        if compat != (kyverno_label in labels):
            fail("chart", f"{kyverno_label} aggregation {'missing' if compat else 'present'} (compat={compat})")
        if set(labels) - {own, kyverno_label}:
            fail("chart", f"the {comp} ClusterRole aggregates unexpected labels {labels}")
    if compat and (svc_name != "kyverno-svc" or cm_name != "kyverno"):
        fail("chart", "compat mode does not use kyverno-svc and the kyverno ConfigMap")
    if not compat and any("kyverno" in a for a in args):
        fail(dep.where(), f"Kyverno names in the arguments outside compat mode: {args}")

    # RBAC: least privilege.
    for role in one(docs, "Role") + one(docs, "ClusterRole"):
        for rule in role.body.get("rules") or []:
            for field in ("verbs", "resources", "apiGroups"):
                if "*" in (rule.get(field) or []):
                    fail(role.where(), f"grants '*' {field}: {rule}")
            if role.kind == "Role" and "secrets" in (rule.get("resources") or []) and "delete" in rule.get("verbs", []):
                fail(role.where(), f"grants secrets delete: {rule}")
            # Users add these by aggregation, knowingly; the chart never grants them.
            if {"bind", "escalate", "impersonate"} & set(rule.get("verbs") or []):
                fail(role.where(), f"grants bind, escalate or impersonate: {rule}")
    rendered_roles = {(d.kind, d.name) for d in one(docs, "Role") + one(docs, "ClusterRole")}
    rendered_sas = {d.name for d in one(docs, "ServiceAccount")}
    for b in one(docs, "RoleBinding") + one(docs, "ClusterRoleBinding"):
        ref = b.body["roleRef"]
        builtin = ref["kind"] == "ClusterRole" and ref["name"] == merged["rbac"]["viewRoleName"]
        if (ref["kind"], ref["name"]) not in rendered_roles and not builtin:
            fail(b.where(), f"roleRef {ref['kind']}/{ref['name']} is not rendered")
        for s in b.body.get("subjects") or []:
            if s["kind"] == "ServiceAccount" and s["name"] not in rendered_sas:
                fail(b.where(), f"subject ServiceAccount {s['name']} is not rendered")
    view = [b for b in one(docs, "ClusterRoleBinding") if b.body["roleRef"]["name"] == merged["rbac"]["viewRoleName"]]
    want_view = (1 + (ctl is not None)) if merged["rbac"]["createViewRoleBinding"] else 0
    if len(view) != want_view:
        fail("chart", f"{len(view)} view ClusterRoleBindings, want {want_view} (rbac.createViewRoleBinding)")

    # The admission ServiceAccount never holds what only the controller may do: none of its roles,
    # no cluster-wide write of the kinds generate rules write, no consuming of UpdateRequests.
    # (Its own Role writes Secrets in the release namespace, for the certificates.)
    adm_sa = pod["serviceAccountName"]
    adm_cluster_roles, adm_local_roles = bound_roles(docs, adm_sa, ns)
    foreign = sorted({f"{d.kind}/{d.name}" for d in adm_cluster_roles + adm_local_roles if component(d) != "admission"})
    if foreign:
        fail(dep.where(), f"the admission ServiceAccount {adm_sa} holds {foreign}")
    adm_cluster, adm_local = bound_rules(docs, adm_sa, ns)
    generated_writes = [
        (g, res, v)
        for entry in bg["rbac"]["generatedKinds"]
        for g in entry["apiGroups"]
        for res in entry["resources"]
        for v in WRITE_VERBS
    ]
    queue_writes = [("kyverno.io", "updaterequests", "delete"), ("kyverno.io", "updaterequests/status", "patch"), ("kyverno.io", "updaterequests/status", "update")]
    leaked = sorted(
        {f"{v} {g or 'core'}/{res}" for g, res, v in generated_writes + queue_writes if rule_allows(adm_cluster, g, res, v)}
        | {f"{v} {g}/{res} in {ns}" for g, res, v in queue_writes if rule_allows(adm_local, g, res, v)}
    )
    if leaked:
        fail(dep.where(), f"the admission ServiceAccount {adm_sa} may {leaked}")

    # The controller's ServiceAccount holds what `kybern controller` calls: admission's policy
    # reads, its context watches, the queue and Lease in the release namespace, and the generated
    # kinds through aggregation.
    if ctl is not None:
        ctl_sa = ctl.body["spec"]["template"]["spec"]["serviceAccountName"]
        cluster, local = bound_rules(docs, ctl_sa, ns)
        adm_cluster, _ = bound_rules(docs, adm_sa, ns)
        policy_groups = {"kyverno.io", "policies.kyverno.io"}
        needs = {
            (g, res, v, False)
            for rule in adm_cluster
            for g in rule.get("apiGroups", [])
            for res in rule.get("resources", [])
            for v in rule.get("verbs", [])
            if v in ("get", "list", "watch")
            and "/" not in res
            and (g in policy_groups or res.endswith(("admissionpolicies", "admissionpolicybindings")))
        }
        needs |= {(g, res, v, False) for g, res in (("", "namespaces"), ("", "configmaps"), ("rbac.authorization.k8s.io", "rolebindings"), ("rbac.authorization.k8s.io", "clusterrolebindings")) for v in ("get", "list", "watch")}
        needs |= {("kyverno.io", "updaterequests", v, True) for v in ("get", "list", "watch", "delete")}
        needs |= {("kyverno.io", "updaterequests/status", v, True) for v in ("patch", "update")}
        needs |= {("coordination.k8s.io", "leases", v, True) for v in ("get", "create", "update", "patch")}
        needs.add(("", "events", "create", True))
        needs |= {
            (g, res, v, False)
            for entry in bg["rbac"]["generatedKinds"]
            for g in entry["apiGroups"]
            for res in entry["resources"]
            for v in ("get", "list", "watch", "create", "update", "patch", "delete")
        }
        # `--enable reports`: the reports it lists, applies and deletes.
        if bg.get("reports", {}).get("enabled"):
            group, plurals = (
                ("openreports.io", ("reports", "clusterreports"))
                if bg["reports"].get("api") == "openreports"
                else ("wgpolicyk8s.io", ("policyreports", "clusterpolicyreports"))
            )
            needs |= {(group, res, v, False) for res in plurals for v in ("get", "list", "create", "update", "delete")}
        # `--enable cleanup`: policies' status, and the kinds it may delete.
        if bg.get("cleanup", {}).get("enabled"):
            needs |= {
                (g, f"{res}/status", "patch", False)
                for g, res in (
                    ("kyverno.io", "clustercleanuppolicies"),
                    ("kyverno.io", "cleanuppolicies"),
                    ("policies.kyverno.io", "deletingpolicies"),
                    ("policies.kyverno.io", "namespaceddeletingpolicies"),
                )
            }
            needs |= {
                (g, res, v, False)
                for entry in bg["cleanup"]["deletableKinds"]
                for g in entry["apiGroups"]
                for res in entry["resources"]
                for v in ("list", "delete")
            }
        missing = sorted(
            f"{v} {g or 'core'}/{res}" + (f" in {ns}" if in_ns else "")
            for g, res, v, in_ns in needs
            if not rule_allows(cluster, g, res, v) and not (in_ns and rule_allows(local, g, res, v))
        )
        if missing:
            fail(ctl.where(), f"the ServiceAccount {ctl_sa} lacks {missing}")
        if not any(res.endswith("policies") for g, res, v, _ in needs if g == "policies.kyverno.io"):
            fail("chart", "admission's policy reads were not found, so the controller's were not checked")

    # A PodDisruptionBudget exists over a Deployment only when it has more than one replica.
    pdbs = one(docs, "PodDisruptionBudget")
    for d, key in ((dep, "admissionController"), (ctl, "backgroundController")):
        if d is None:
            continue
        pod_labels = d.body["spec"]["template"]["metadata"]["labels"]
        mine = [p for p in pdbs if selects(p.body["spec"]["selector"]["matchLabels"], pod_labels)]
        want_pdb = merged[key]["podDisruptionBudget"]["enabled"] and merged[key]["replicas"] > 1
        if bool(mine) != want_pdb or len(mine) > 1:
            fail("chart", f"{len(mine)} PodDisruptionBudgets over {d.name} with {key}.replicas={merged[key]['replicas']}")
    if len(pdbs) > (dep is not None) + (ctl is not None):
        fail("chart", f"PodDisruptionBudgets {[p.name for p in pdbs]} select no Deployment of their own")

    # Pre-delete hooks: scale to zero (90), then remove the webhooks (100), least privilege.
    hooks = [d for d in docs if is_hook(d)]
    if merged["webhooksCleanup"]["enabled"]:
        jobs = {d.name: d for d in one(docs, "Job")}
        order = []
        for suffix, weight in (("scale-to-zero", "90"), ("rm-webhooks", "100")):
            job = next((j for n, j in jobs.items() if n.endswith(suffix)), None)
            if job is None:
                fail("chart", f"pre-delete Job {suffix} missing")
                continue
            ann = job.body["metadata"]["annotations"]
            if ann.get("helm.sh/hook") != "pre-delete" or ann.get("helm.sh/hook-weight") != weight:
                fail(job.where(), f"want a pre-delete hook of weight {weight}, got {ann}")
            if "hook-succeeded" not in ann.get("helm.sh/hook-delete-policy", ""):
                fail(job.where(), "hook-delete-policy lacks hook-succeeded")
            jpod = job.body["spec"]["template"]["spec"]
            if not (jpod.get("securityContext") or {}).get("runAsNonRoot"):
                fail(job.where(), "hook Pod may run as root")
            for c in jpod.get("containers", []) + jpod.get("initContainers", []):
                if (c.get("securityContext") or {}).get("readOnlyRootFilesystem") is not True:
                    fail(job.where(), f"container {c['name']} has a writable root filesystem")
            order.append(job)
        rm = next((j for n, j in jobs.items() if n.endswith("rm-webhooks")), None)
        if rm and rm.body["spec"]["template"]["spec"]["containers"][0].get("args", [])[:3] != ["webhooks", "delete", f"--names={names}"]:
            fail(rm.where(), "rm-webhooks does not run `kybern webhooks delete --names=...`")
        for d in hooks:
            if d.kind not in ("Job",) and int(d.body["metadata"]["annotations"].get("helm.sh/hook-weight", "0")) >= 90:
                fail(d.where(), "hook RBAC must be created before the Jobs (weight below 90)")
    elif hooks:
        fail(hooks[0].where(), "hook rendered while webhooksCleanup is disabled")

    # Optional objects follow their switches.
    if bool(one(docs, "NetworkPolicy")) != merged["networkPolicy"]["enabled"]:
        fail("chart", "NetworkPolicy does not follow networkPolicy.enabled")
    sms = one(docs, "ServiceMonitor")
    if bool(sms) != merged["metrics"]["serviceMonitor"]["enabled"]:
        fail("chart", "ServiceMonitor does not follow metrics.serviceMonitor.enabled")
    for sm in sms:
        # HTTPS for admission, plain HTTP for the controller, both at /metrics.
        endpoints = sm.body["spec"]["endpoints"]
        got = sorted((ep.get("port"), ep.get("scheme"), ep.get("path")) for ep in endpoints)
        want = sorted([("https", "https", "/metrics")] + ([("http", "http", "/metrics")] if ctl is not None else []))
        if got != want:
            fail(sm.where(), f"endpoints {got}, want {want}")
        for ep in endpoints:
            if ep.get("scheme") == "http" and "tlsConfig" in ep:
                fail(sm.where(), f"plain-HTTP endpoint {ep.get('port')} has a tlsConfig")
        metric_svcs = [s for s in one(docs, "Service") if s.name != svc_name]
        sel = sm.body["spec"]["selector"]["matchLabels"]
        picked = [s for s in one(docs, "Service") if selects(sel, s.body["metadata"]["labels"])]
        if [s.name for s in picked] != [s.name for s in metric_svcs]:
            fail(sm.where(), f"selects {[s.name for s in picked]}, want only the metrics Services {[s.name for s in metric_svcs]}")
        scraped = {ep.get("port") for ep in endpoints}
        for svc in picked:
            if not scraped & {p.get("name") for p in svc.body["spec"]["ports"]}:
                fail(sm.where(), f"no endpoint scrapes a port of {svc.name}")


_defaults: dict[str, Any] | None = None


def set_chart(path: Path) -> None:
    global CHART, _defaults
    CHART, _defaults = path, None


def chart_values(overrides: dict[str, Any]) -> dict[str, Any]:
    global _defaults
    if _defaults is None:
        _defaults = yaml.safe_load((CHART / "values.yaml").read_text())

    def merge(base: Any, over: Any) -> Any:
        if isinstance(base, dict) and isinstance(over, dict):
            out = dict(base)
            for k, v in over.items():
                out[k] = merge(base.get(k), v)
            return out
        return over

    return merge(_defaults, overrides)


def check_crds(paths: list[Path], r: Report) -> int:
    count = 0
    for path in paths:
        try:
            docs = parse_documents(str(path.relative_to(ROOT) if path.is_relative_to(ROOT) else path), path.read_text())
        except yaml.YAMLError as e:
            r.fail("crds", str(path), f"not YAML: {e}")
            continue
        for d in docs:
            count += 1
            if d.kind != "CustomResourceDefinition":
                r.fail("crds", d.where(), "not a CustomResourceDefinition (crds/ holds only CRDs)")
                continue
            err = validate_schema(d)
            if err:
                r.fail("crds", d.where(), err)
            spec = d.body.get("spec") or {}
            want = f"{spec.get('names', {}).get('plural')}.{spec.get('group')}"
            if d.name != want:
                r.fail("crds", d.where(), f"name must be <plural>.<group> = {want}")
            if not any(v.get("storage") for v in spec.get("versions") or []):
                r.fail("crds", d.where(), "no storage version")
    return count


# Helm keeps each release (chart files, CRDs included, and the rendered manifest) gzipped and
# base64-encoded in one Secret, which the API server caps at 1 MiB.
RELEASE_SECRET_LIMIT = 1024 * 1024 - 64 * 1024


def release_secret_bytes(rendered: dict[str, str]) -> int:
    # As Helm serialises a release: file contents ([]byte) as base64 inside JSON, which gzip
    # compresses far worse than the plain text; the rendered manifest as a plain string.
    files = [
        {"name": str(p.relative_to(CHART)), "data": base64.b64encode(p.read_bytes()).decode()}
        for p in sorted(CHART.rglob("*"))
        if p.is_file()
    ]
    payload = json.dumps({"chart": {"files": files}, "manifest": "\n---\n".join(rendered.values())}).encode()
    return len(base64.b64encode(gzip.compress(payload, compresslevel=9)))


def request_rule(method: str, path_and_query: str) -> tuple[str, str, str, str | None] | None:
    """(apiGroup, resource[/subresource], verb, namespace) of an API request; None for discovery."""
    path, _, query = path_and_query.partition("?")
    parts = [p for p in path.split("/") if p]
    if parts[:2] == ["api", "v1"]:
        group, rest = "", parts[2:]
    elif parts[:1] == ["apis"] and len(parts) >= 3:
        group, rest = parts[1], parts[3:]
    else:
        return None
    if not rest:
        return None
    namespace = None
    if rest[0] == "namespaces" and len(rest) >= 3:
        namespace, rest = rest[1], rest[2:]
    resource, name, sub = rest[0], rest[1] if len(rest) > 1 else None, rest[2] if len(rest) > 2 else None
    if sub:
        resource = f"{resource}/{sub}"
    watching = any(q in ("watch=true", "watch=1") for q in query.split("&"))
    verb = {
        "GET": "watch" if watching else ("get" if name else "list"),
        "POST": "create",
        "PUT": "update",
        "PATCH": "patch",
        "DELETE": "delete" if name else "deletecollection",
    }.get(method, method.lower())
    return group, resource, verb, namespace


def rule_allows(rules: list[dict[str, Any]], group: str, resource: str, verb: str) -> bool:
    for rule in rules:
        groups, resources, verbs = rule.get("apiGroups", []), rule.get("resources", []), rule.get("verbs", [])
        if (group in groups or "*" in groups) and (resource in resources or "*" in resources) and (verb in verbs or "*" in verbs):
            return True
    return False


def check_rbac_covers(requests_file: Path, docs: list[Doc], ns: str, r: Report) -> int:
    """Every request the server made against the API in the tests is allowed by the chart's
    RBAC for the admission ServiceAccount (what its bindings grant, aggregation included)."""
    requests = json.loads(requests_file.read_text())
    admission = one(docs, "Deployment", lambda d: component(d) == "admission")
    if len(admission) != 1:
        r.fail("defaults", "rbac", "no admission Deployment to take the ServiceAccount from")
        return len(requests)
    sa = admission[0].body["spec"]["template"]["spec"]["serviceAccountName"]
    cluster_rules, ns_rules = bound_rules(docs, sa, ns)
    missing = set()
    for method, path in requests:
        rule = request_rule(method, path)
        if rule is None:
            continue
        group, resource, verb, namespace = rule
        if rule_allows(cluster_rules, group, resource, verb):
            continue
        # The tests run the server in namespace "kybern"; the Role is the release namespace's.
        if namespace == "kybern" and rule_allows(ns_rules, group, resource, verb):
            continue
        missing.add(f"{verb} {group or 'core'}/{resource}" + (f" in {namespace}" if namespace else ""))
    for m in sorted(missing):
        r.fail("defaults", "rbac", f"the server needs `{m}` (seen in the cluster tests) and the chart's RBAC does not grant it")
    return len(requests)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--crds", action="append", type=Path, default=[], help="extra CRD file to validate (repeatable)")
    parser.add_argument("--chart", type=Path, default=CHART, help="chart folder (default: charts/kybern)")
    parser.add_argument("--requests", type=Path, help="API requests the server made in the cluster tests (JSON); the chart's RBAC must allow each")
    opts = parser.parse_args()
    set_chart(opts.chart.resolve())

    r = Report()
    total = 0
    skipped: dict[str, int] = {}

    crd_files = sorted((CHART / "crds").glob("*.yaml")) + sorted((CHART / "crds").glob("*.yml")) + opts.crds
    crd_count = check_crds(crd_files, r)
    if crd_files:
        print(f"crds: {crd_count} CustomResourceDefinitions in {len(crd_files)} files checked against apiextensions.k8s.io/v1")
    else:
        print("crds: charts/kybern/crds/ holds no CRD file yet; skipped")

    chart = helm.Chart.load(str(CHART))
    try:
        for name, values, release, ns in VALUE_SETS:
            lint = helm.lint(str(CHART), values, strict=True, namespace=ns, kube_version=f"v{KUBE_VERSION}")
            for m in lint.get("messages", []):
                if m.get("severity", 0) >= 2:
                    r.fail(name, f"helm lint {m.get('path')}", m.get("error", ""))
            for e in lint.get("errors", []):
                r.fail(name, "helm lint", str(e))
            try:
                rendered = chart.render(values, name=release, namespace=ns, is_install=True)
            except helm.HelmError as e:
                r.fail(name, "helm render", str(e))
                continue
            docs: list[Doc] = []
            for source in sorted(rendered):
                if not source.endswith((".yaml", ".yml")):
                    continue
                try:
                    docs += parse_documents(source, rendered[source])
                except yaml.YAMLError as e:
                    r.fail(name, source, f"rendered text is not YAML: {e}")
            for d in docs:
                key = (str(d.body.get("apiVersion")), d.kind)
                if key in CUSTOM_KINDS:
                    skipped[f"{key[1]} ({key[0]})"] = skipped.get(f"{key[1]} ({key[0]})", 0) + 1
                    continue
                err = validate_schema(d)
                if err:
                    r.fail(name, d.where(), err)
            check_facts(name, values, release, ns, docs, r)
            if opts.requests and name == "defaults":
                n = check_rbac_covers(opts.requests, docs, ns, r)
                print(f"  rbac: {n} API requests of the cluster tests checked against the chart's roles")
            size = release_secret_bytes(rendered)
            if size > RELEASE_SECRET_LIMIT:
                r.fail(name, "release", f"the release Secret would hold about {size} bytes, over the API server's 1 MiB cap (less a margin)")
            total += len(docs)
            print(f"  {name}: {len(docs)} documents, release Secret about {size // 1024} KiB")
        for values in REJECTED_VALUES:
            try:
                chart.render(values, name="kybern", namespace="kybern", is_install=True)
                r.fail("schema", "values.schema.json", f"accepts invalid values {json.dumps(values)}")
            except helm.HelmValuesError:
                pass
            except helm.HelmError as e:
                r.fail("schema", "values.schema.json", f"{json.dumps(values)} failed otherwise than by the schema: {e}")
        print(f"  values.schema.json rejects {len(REJECTED_VALUES)} invalid value sets")
    finally:
        chart.close()

    if skipped:
        kinds = ", ".join(f"{k} x{n}" for k, n in sorted(skipped.items()))
        print(f"no Kubernetes schema for custom kinds, checked by the facts only: {kinds}")
    if r.failures:
        for f in r.failures:
            print(f, file=sys.stderr)
        print(f"chart: {len(r.failures)} problems in {len(VALUE_SETS)} value sets", file=sys.stderr)
        return 1
    print(f"chart: {total} documents in {len(VALUE_SETS)} value sets valid")
    return 0


if __name__ == "__main__":
    sys.exit(main())
