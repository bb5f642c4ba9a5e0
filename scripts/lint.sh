#!/usr/bin/env bash
# ruff (lint + format check) over the Python trees that exist, mypy --strict over core/src.
set -euo pipefail
cd "$(dirname "$0")/.."
VENV=${VENV:-.venv}

paths=()
for d in core plugins tests harness bench scripts; do
    [[ -d $d ]] && paths+=("$d")
done
echo "lint: ruff check ${paths[*]}"
"$VENV/bin/ruff" check "${paths[@]}"
echo "lint: ruff format --check ${paths[*]}"
"$VENV/bin/ruff" format --check "${paths[@]}"
if [[ -d core/src ]]; then
    echo "lint: mypy --strict core/src"
    "$VENV/bin/mypy" --strict core/src
fi
