#!/usr/bin/env bash
# End-to-end test of the image and the Helm chart on a kind cluster.
#
# Needs a Docker engine, kind, kubectl and helm (and chainsaw with RUN_CHAINSAW=1). It cannot run
# on machines without a Docker engine, such as this project's development and CI machines, so it
# was written to be correct by reading; run it where Docker runs.
#
# Steps: create a kind cluster; build the image and load it into the cluster; install the chart
# and wait for the webhook configuration; apply an Enforce ClusterPolicy that requires an `owner`
# label on Pods; retry until a Pod without the label is denied with a message naming the policy;
# check that a labelled Pod is admitted. With RUN_CHAINSAW=1, also run a few of kyverno/policies'
# chainsaw tests in compat mode (Kyverno's names, namespace kyverno). Last, `helm uninstall` and
# check that the pre-delete hooks removed the webhook configurations. The cluster is deleted on
# exit unless KEEP_CLUSTER=1.
#
# Environment:
#   KIND_IMAGE       node image (default kindest/node:v1.33.7)
#   KIND_CLUSTER     cluster name (default kybern-e2e)
#   E2E_TIMEOUT      seconds to wait for each condition (default 180)
#   RUN_CHAINSAW     1: run chainsaw tests from kyverno/policies (default 0)
#   POLICIES_REF     branch or tag of kyverno/policies (default main)
#   CHAINSAW_TESTS   policy folders to test (default: three below)
#   KEEP_CLUSTER     1: keep the cluster after the run
set -euo pipefail
cd "$(dirname "$0")/.."

KIND_IMAGE="${KIND_IMAGE:-kindest/node:v1.33.7}"
CLUSTER="${KIND_CLUSTER:-kybern-e2e}"
TIMEOUT="${E2E_TIMEOUT:-180}"
RUN_CHAINSAW="${RUN_CHAINSAW:-0}"
POLICIES_REF="${POLICIES_REF:-main}"
CHAINSAW_TESTS="${CHAINSAW_TESTS:-best-practices/require-labels best-practices/disallow-latest-tag pod-security/baseline/disallow-privileged-containers}"
KEEP_CLUSTER="${KEEP_CLUSTER:-0}"
IMAGE_REPO=kybern
IMAGE_TAG=dev
POLICY=e2e-require-owner-label
TEST_NS=e2e

# Kyverno's chainsaw tests expect Kyverno's names in namespace kyverno.
if [ "$RUN_CHAINSAW" = 1 ]; then
  NAMESPACE=kyverno
  NAMES=kyverno
else
  NAMESPACE=kybern
  NAMES=kybern
fi
VWC="$NAMES-resource-validating-webhook-cfg"
MANAGED_BY="webhook.$NAMES.io/managed-by=$NAMES"

log() { printf '\n== %s\n' "$*"; }
die() { echo "e2e: $*" >&2; exit 1; }

for tool in docker kind kubectl helm; do
  command -v "$tool" >/dev/null 2>&1 || die "$tool is required"
done
if [ "$RUN_CHAINSAW" = 1 ]; then
  command -v chainsaw >/dev/null 2>&1 || die "chainsaw is required with RUN_CHAINSAW=1 (go install github.com/kyverno/chainsaw@latest)"
  command -v git >/dev/null 2>&1 || die "git is required with RUN_CHAINSAW=1"
fi
docker info >/dev/null 2>&1 || die "no Docker engine answers (docker info failed)"

WORK="$(mktemp -d)"
# A kubeconfig of our own, so the user's current context is never touched.
export KUBECONFIG="$WORK/kubeconfig"
CLUSTER_CREATED=0

cleanup() {
  local rc=$?
  if [ "$rc" -ne 0 ] && [ "$CLUSTER_CREATED" = 1 ]; then
    echo "e2e: failed (exit $rc); cluster state follows" >&2
    kubectl get pods -A -o wide >&2 || true
    kubectl -n "$NAMESPACE" describe pods >&2 || true
    kubectl -n "$NAMESPACE" logs -l app.kubernetes.io/component=admission --tail=200 --prefix >&2 || true
    kubectl get events -A --sort-by=.lastTimestamp 2>&1 | tail -50 >&2 || true
    kubectl get validatingwebhookconfigurations,mutatingwebhookconfigurations -o wide >&2 || true
  fi
  if [ "$CLUSTER_CREATED" = 1 ]; then
    if [ "$KEEP_CLUSTER" = 1 ]; then
      echo "e2e: keeping cluster $CLUSTER (kubeconfig $KUBECONFIG)" >&2
      return
    fi
    kind delete cluster --name "$CLUSTER" || true
  fi
  rm -rf "$WORK"
}
trap cleanup EXIT

# Runs "$@" every 2 seconds until it succeeds or $TIMEOUT seconds have passed.
retry() {
  local deadline=$((SECONDS + TIMEOUT))
  until "$@"; do
    if [ "$SECONDS" -ge "$deadline" ]; then
      return 1
    fi
    sleep 2
  done
}

log "kind cluster $CLUSTER ($KIND_IMAGE)"
kind create cluster --name "$CLUSTER" --image "$KIND_IMAGE" --kubeconfig "$KUBECONFIG" --wait 180s
CLUSTER_CREATED=1

log "image $IMAGE_REPO:$IMAGE_TAG"
docker build -t "$IMAGE_REPO:$IMAGE_TAG" .
kind load docker-image "$IMAGE_REPO:$IMAGE_TAG" --name "$CLUSTER"

# Helm installs charts/kybern/crds/ itself; before that file exists, take the CRDs from the image.
if ! ls charts/kybern/crds/*.yaml >/dev/null 2>&1; then
  log "CRDs from the image (charts/kybern/crds/ is empty)"
  docker run --rm "$IMAGE_REPO:$IMAGE_TAG" crds | kubectl apply --server-side -f -
fi

log "helm install into namespace $NAMESPACE (names: $NAMES)"
helm_args=(--set "image.repository=$IMAGE_REPO" --set "image.tag=$IMAGE_TAG" --set image.pullPolicy=Never)
if [ "$NAMES" = kyverno ]; then
  helm_args+=(--set compat.kyvernoNames=true)
fi
helm install kybern charts/kybern --namespace "$NAMESPACE" --create-namespace \
  "${helm_args[@]}" --wait --timeout "${TIMEOUT}s"

log "waiting for ValidatingWebhookConfiguration $VWC"
vwc_exists() { kubectl get validatingwebhookconfiguration "$VWC" >/dev/null 2>&1; }
retry vwc_exists || die "$VWC did not appear within ${TIMEOUT}s"
kubectl get validatingwebhookconfigurations -l "$MANAGED_BY" -o name | grep -x "validatingwebhookconfiguration.admissionregistration.k8s.io/$VWC" >/dev/null \
  || die "$VWC lacks the label $MANAGED_BY"

log "ClusterPolicy $POLICY (Enforce: Pods in $TEST_NS need an owner label)"
kubectl create namespace "$TEST_NS"
kubectl apply -f - <<EOF
apiVersion: kyverno.io/v1
kind: ClusterPolicy
metadata:
  name: $POLICY
spec:
  validationFailureAction: Enforce
  background: false
  rules:
    - name: require-owner
      match:
        any:
          - resources:
              kinds: [Pod]
              namespaces: [$TEST_NS]
      validate:
        message: "label 'owner' is required"
        pattern:
          metadata:
            labels:
              owner: "?*"
EOF

# The policy takes effect once the leader has rebuilt the webhook and every replica has loaded it;
# until then an unlabelled Pod is admitted, and is deleted before the next try.
DENIAL="$WORK/denial.txt"
try_denied() {
  if kubectl -n "$TEST_NS" run unlabelled --image=registry.k8s.io/pause:3.10 --restart=Never >"$DENIAL" 2>&1; then
    kubectl -n "$TEST_NS" delete pod unlabelled --wait=false >/dev/null 2>&1 || true
    return 1
  fi
  grep -q "denied" "$DENIAL"
}
log "waiting for an unlabelled Pod to be denied"
retry try_denied || { cat "$DENIAL" >&2; die "no denial within ${TIMEOUT}s"; }
cat "$DENIAL"
grep -q "$POLICY" "$DENIAL" || die "the denial does not name the policy $POLICY"

log "a labelled Pod is admitted"
kubectl -n "$TEST_NS" run labelled --image=registry.k8s.io/pause:3.10 --restart=Never --labels=owner=e2e
kubectl delete clusterpolicy "$POLICY"

if [ "$RUN_CHAINSAW" = 1 ]; then
  log "chainsaw tests of kyverno/policies@$POLICIES_REF: $CHAINSAW_TESTS"
  git clone --quiet --depth 1 --branch "$POLICIES_REF" https://github.com/kyverno/policies.git "$WORK/policies"
  test_args=()
  for t in $CHAINSAW_TESTS; do
    dir="$WORK/policies/$t"
    [ -d "$dir" ] || die "no folder $t in kyverno/policies"
    # The tests live in each policy's .chainsaw-test folder.
    if [ -d "$dir/.chainsaw-test" ]; then dir="$dir/.chainsaw-test"; fi
    test_args+=(--test-dir "$dir")
  done
  (cd "$WORK/policies" && chainsaw test --config .chainsaw.yaml "${test_args[@]}")
fi

log "helm uninstall (pre-delete hooks scale to zero, then remove the webhooks)"
helm uninstall kybern --namespace "$NAMESPACE" --wait --timeout "${TIMEOUT}s"
left="$(kubectl get validatingwebhookconfigurations,mutatingwebhookconfigurations -l "$MANAGED_BY" -o name)"
[ -z "$left" ] || die "webhook configurations left after uninstall: $left"

log "e2e passed"
