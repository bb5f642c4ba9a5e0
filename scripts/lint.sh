#!/usr/bin/env bash
# ruff (lint + format check) over the Python trees that exist, mypy --strict over core and every plugin.
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
typed=()
[[ -d core/src ]] && typed+=(core/src)
for d in plugins/*/src; do
    [[ $d == plugins/_* ]] || typed+=("$d")
done
echo "lint: mypy --strict ${typed[*]}"
"$VENV/bin/mypy" --strict "${typed[@]}"
