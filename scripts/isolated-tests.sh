#!/usr/bin/env bash
# Run each distribution's unit tests (-m unit) in a venv holding only core, that distribution
# and the test tools (scripts/test-requirements.txt), so an undeclared dependency fails here.
# The service and e2e layers run once, in the dev venv (scripts/pytest.sh), not again here.
#
#   scripts/isolated-tests.sh            # core and every plugins/*/ (not _template)
#   scripts/isolated-tests.sh core engine_docker
#
# Venvs are cached in .venv-iso/<dist> and rebuilt from scratch only when a file they were
# built from changed (core's or the distribution's pyproject.toml, the test requirements):
# rebuilding, not reinstalling, so a dependency dropped from a pyproject is really gone.
# A distribution that depends on another of the repo's (the router's plugins on
# fogwire-router) gets that one installed too, from its folder.
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD
PYTHON=${PYTHON:-python3}
# shellcheck source=scripts/_lib.sh
source scripts/_lib.sh

log() { printf 'isolated: %s\n' "$*"; }

UV=$ROOT/.venv/bin/uv
if [[ ! -x $UV ]]; then
    log "no $UV: run 'make setup' first" >&2
    exit 1
fi

ensure_venv() { # NAME FOLDER
    local name=$1 folder=$2 venv=.venv-iso/$1
    local -a files=(core/pyproject.toml scripts/test-requirements.txt scripts/sdist-wheels.txt
        scripts/isolated-tests.sh scripts/_lib.sh)
    local dep
    local -a deps=()
    [[ $name == core ]] || mapfile -t deps < <("$PYTHON" scripts/_project.py local-deps "$folder")
    [[ $name == core ]] || files+=("$folder/pyproject.toml")
    for dep in "${deps[@]}"; do files+=("$dep/pyproject.toml"); done
    local stamp
    stamp="$("$PYTHON" -VV | tr -d '\n'):$("$PYTHON" scripts/_project.py stamp "${files[@]}")"
    if [[ -f $venv/.fogwire-stamp ]] && [[ $(<"$venv/.fogwire-stamp") == "$stamp" ]]; then
        return 0
    fi
    log "$name: building $venv"
    rm -rf "$venv"
    "$UV" venv -q --seed --python "$("$PYTHON" -c 'import sys; print(sys.executable)')" "$venv"
    local -a targets=(-e "$("$PYTHON" scripts/_project.py spec core)")
    [[ $name == core ]] || targets+=(-e "$("$PYTHON" scripts/_project.py spec "$folder")")
    # the repo's own distributions it depends on (fogwire-router for the router's plugins)
    for dep in "${deps[@]}"; do targets+=(-e "$dep"); done
    "$UV" pip install -q --python "$venv/bin/python" "${uv_args[@]}" \
        --reinstall-package fogwire --refresh-package fogwire \
        -r scripts/test-requirements.txt "${targets[@]}"
    add_repo_pth "$venv"
    printf '%s' "$stamp" >"$venv/.fogwire-stamp"
}

declare -a failed=() ran=()
while IFS=$'\t' read -r name folder; do
    if (($#)) && [[ " $* " != *" $name "* ]]; then
        continue
    fi
    rel=${folder#"$ROOT"/}
    if [[ ! -d $folder/tests ]]; then
        log "$name: no $rel/tests folder, nothing to run"
        continue
    fi
    ensure_venv "$name" "$folder"
    log "$name: pytest -m unit $rel/tests in .venv-iso/$name"
    if FOGWIRE_FORBID_SERVICES=1 VENV=.venv-iso/$name scripts/pytest.sh -q -p no:cacheprovider -m unit "$rel/tests"; then
        ran+=("$name")
    else
        failed+=("$name")
    fi
done < <("$PYTHON" scripts/_project.py dists)

if ((${#failed[@]})); then
    log "FAILED in isolation: ${failed[*]} (passed: ${ran[*]:-none})" >&2
    exit 1
fi
log "passed in isolation: ${ran[*]:-none}"
