#!/usr/bin/env bash
# Offline checks of charts/kybern: helm lint and render with Helm's own engine (helm-python-sdk,
# no helm binary), strict validation of every rendered document against the Kubernetes 1.33
# schemas (kubernetes-validate), the CRDs in charts/kybern/crds/, and facts about security and
# names. Only pip needs the network, once, to fill the virtualenv.
# Usage: scripts/chart-check.sh [--crds EXTRA_CRD_FILE]...
set -euo pipefail
cd "$(dirname "$0")/.."

VENV="${KYBERN_CHART_VENV:-target/chart-venv}"
# Every package pinned (dependencies too), so that a new Helm, new schemas or a new validator
# change the result only through an edit here. helm-python-sdk 0.2.2 embeds Helm v4.2.3.
REQUIREMENTS="helm-python-sdk==0.2.2 kubernetes-validate==1.37.0 PyYAML==6.0.4 jsonschema==4.26.0 \
jsonschema-specifications==2025.9.1 referencing==0.37.0 rpds-py==2026.9.1 attrs==26.1.0 \
importlib_resources==7.1.0 typing_extensions==4.16.0 packaging==26.4"

if ! command -v python3 >/dev/null 2>&1; then
  echo "python3 is required (with its venv module)" >&2
  exit 1
fi
# Reinstall only when the pins change.
if [ ! -x "$VENV/bin/python" ] || [ "$(cat "$VENV/.pins" 2>/dev/null)" != "$REQUIREMENTS" ]; then
  rm -rf "$VENV"
  mkdir -p "$(dirname "$VENV")"
  python3 -m venv "$VENV"
  # shellcheck disable=SC2086 # the pins are separate words
  "$VENV/bin/pip" install --quiet --disable-pip-version-check $REQUIREMENTS
  echo "$REQUIREMENTS" > "$VENV/.pins"
fi

exec "$VENV/bin/python" scripts/chart_check.py "$@"
