#!/usr/bin/env bash
# Prints the interpreter the project's venv is built with: Python 3.12, the functions' runtime
# (cfn/lambda-stack.yaml, Runtime: python3.12), where the machine has one (on PATH, or installed by
# pyenv without being selected), else python3 (3.11 or newer works; the tests run slower there:
# coverage measures with sys.monitoring only from 3.12 on).
set -uo pipefail
RUNTIME="3.12"

works() { "$1" -c "import sys; sys.exit(sys.version_info[:2] != (${RUNTIME/./, }))" >/dev/null 2>&1; }

candidates=("python$RUNTIME")
if command -v pyenv >/dev/null 2>&1; then
    # A pyenv shim of a version the shell has not selected fails when run: use the install itself.
    candidates+=("$(pyenv root)"/versions/"$RUNTIME".*/bin/"python$RUNTIME")
fi
for candidate in "${candidates[@]}"; do
    if works "$candidate"; then
        echo "$candidate"
        exit 0
    fi
done
echo python3
