#!/usr/bin/env bash
# Build every distribution's wheel (core, plugins/*/ but _template) into dist/.
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD
PYTHON=${PYTHON:-python3}
# shellcheck source=scripts/_lib.sh
source scripts/_lib.sh

mkdir -p dist
rm -f dist/*.whl
n=0
while IFS=$'\t' read -r name folder; do
    echo "wheels: $name"
    # --installer uv: build environments from uv's cache instead of fresh pip downloads
    if ! out=$(.venv/bin/python -m build --wheel --installer uv --outdir dist "$folder" 2>&1); then
        printf '%s\n' "$out" >&2
        echo "wheels: $name failed" >&2
        exit 1
    fi
    n=$((n + 1))
done < <("$PYTHON" scripts/_project.py dists)
echo "wheels: built $n distribution(s) into dist/:"
ls -1 dist/*.whl
