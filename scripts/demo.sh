#!/usr/bin/env bash
# Placeholder for `make demo`: another engineer fills it in. Until then it says what exists.
set -euo pipefail
cd "$(dirname "$0")/.."

echo "fogwire demo: not written yet. What exists in this checkout:"
for d in core plugins/*/ tests/dists/*/; do
    [[ -f $d/pyproject.toml ]] || continue
    name=$(sed -n 's/^name *= *"\(.*\)"/\1/p' "$d/pyproject.toml" | head -1)
    echo "  - ${name:-?} (${d%/})"
done
if [[ -x .venv/bin/fogwire ]]; then
    echo "The CLI is installed in .venv: .venv/bin/fogwire --help"
    .venv/bin/fogwire --help || true
else
    echo "The CLI is not installed yet: run 'make setup'."
fi
