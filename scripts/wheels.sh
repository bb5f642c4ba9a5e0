#!/usr/bin/env bash
# Build every distribution's wheel (core, plugins/*/ but _template) into dist/.
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD
PYTHON=${PYTHON:-python3}
# shellcheck source=scripts/_lib.sh
source scripts/_lib.sh

mkdir -p dist
n=0
while IFS=$'\t' read -r name folder; do
    echo "wheels: $name"
    pip_quiet .venv/bin/python -m build --wheel --outdir dist "$folder" >/dev/null
    n=$((n + 1))
done < <("$PYTHON" scripts/_project.py dists)
echo "wheels: built $n distribution(s) into dist/:"
ls -1 dist/*.whl
