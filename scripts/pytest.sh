#!/usr/bin/env bash
# pytest in a venv with the root pyproject.toml's config; "no tests collected" (exit 5) fails.
#   scripts/pytest.sh [pytest args...]          # the dev .venv, the configured testpaths
#   VENV=.venv-iso/core scripts/pytest.sh core/tests
set -euo pipefail
cd "$(dirname "$0")/.."
VENV=${VENV:-.venv}

rc=0
"$VENV/bin/python" -m pytest -c pyproject.toml --rootdir . "$@" || rc=$?
if ((rc == 5)); then
    echo "pytest: no tests were collected ($*): failing rather than passing silently" >&2
    exit 1
fi
exit "$rc"
