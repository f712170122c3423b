#!/usr/bin/env bash
# Lint and scan the CloudFormation templates: cfn-lint (AWS's linter, from the project's .venv)
# and checkov (security scanner) with zero findings. Any checkov skip lives in the template, in
# the resource's Metadata, with its reason.
#
# checkov pins an older boto3 than aioboto3 needs, so it gets its own virtual environment
# (.checkov-venv), created and installed here on first use.
#
# Usage: scripts/lint-cfn.sh [template.yaml ...]     (default: cfn/*.yaml)
# Env:   CHECKOV_VERSION (pinned below), CHECKOV_VENV, PYTHON (interpreter for the checkov venv)
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"

VENV="${VENV:-.venv}"
CFN_LINT="$VENV/bin/cfn-lint"
CHECKOV_VENV="${CHECKOV_VENV:-.checkov-venv}"
# Pinned: a new checkov release adds checks, and a lint run must not turn red by itself.
CHECKOV_VERSION="${CHECKOV_VERSION:-3.3.30}"
PYTHON="${PYTHON:-python3}"

if [[ $# -gt 0 ]]; then
    templates=("$@")
else
    shopt -s nullglob
    templates=(cfn/*.yaml)
    shopt -u nullglob
fi
if [[ ${#templates[@]} -eq 0 ]]; then
    echo "lint-cfn: no templates found under cfn/" >&2
    exit 1
fi

if [[ ! -x "$CFN_LINT" ]]; then
    echo "lint-cfn: $CFN_LINT not found; install the dev dependencies first (make install)" >&2
    exit 1
fi

ensure_checkov() {
    local stamp="$CHECKOV_VENV/.checkov-$CHECKOV_VERSION"
    if [[ -x "$CHECKOV_VENV/bin/checkov" && -f "$stamp" ]]; then
        return 0
    fi
    echo "lint-cfn: installing checkov $CHECKOV_VERSION into $CHECKOV_VENV (first use)"
    if [[ ! -x "$CHECKOV_VENV/bin/python" ]]; then
        "$PYTHON" -m venv "$CHECKOV_VENV"
    fi
    "$CHECKOV_VENV/bin/python" -m pip install --quiet --upgrade pip
    "$CHECKOV_VENV/bin/python" -m pip install --quiet "checkov==$CHECKOV_VERSION"
    rm -f "$CHECKOV_VENV"/.checkov-*
    touch "$stamp"
}

status=0

echo "== cfn-lint ($("$CFN_LINT" --version)): ${templates[*]}"
if "$CFN_LINT" "${templates[@]}"; then
    echo "cfn-lint: no errors or warnings"
else
    echo "cfn-lint: findings above" >&2
    status=1
fi

ensure_checkov
checkov_args=(--framework cloudformation --compact --quiet --skip-download)
for template in "${templates[@]}"; do
    checkov_args+=(--file "$template")
done
echo "== checkov $CHECKOV_VERSION: ${templates[*]}"
# --skip-download: no call to the vendor platform (guidelines, policies); the built-in checks run.
if "$CHECKOV_VENV/bin/checkov" "${checkov_args[@]}"; then
    echo "checkov: no failed checks"
else
    echo "checkov: failed checks above" >&2
    status=1
fi

exit "$status"
