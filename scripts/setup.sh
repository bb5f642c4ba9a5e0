#!/usr/bin/env bash
# Set up a Debian 12 machine (root) and the repo's .venv for fogwire development.
# Idempotent: a second run installs nothing and takes about a second.
#
#   1. Debian packages from scripts/debian-packages.txt, only the missing ones
#      (apt-get update only when something is missing).
#   2. containers.conf / registries.conf drop-ins for podman on this kind of host.
#   3. Wheels for sdist-only dependencies (scripts/sdist-wheels.txt) built once
#      into .cache/wheels, so no venv compiles them again.
#   4. .venv: core[testing] and every plugins/*/ (editable), tests/dists/*/
#      (non-editable) and the dev tools; skipped while the stamp matches.
#   5. .cache/stubs-venv: the pinned grpcio-tools that regenerates the containerd
#      plugin's committed *_pb2 modules (scripts/regen-containerd-stubs.py), kept out
#      of .venv because it needs protobuf<5; skipped while its stamp matches.
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD
export DEBIAN_FRONTEND=noninteractive
PYTHON=${PYTHON:-python3}
# shellcheck source=scripts/_lib.sh
source scripts/_lib.sh

log() { printf 'setup: %s\n' "$*"; }

# --------------------------------------------------------------------------- 1. Debian packages
install_debian_packages() {
    local -a wanted missing=()
    mapfile -t wanted < <(sed -e 's/#.*//' scripts/debian-packages.txt | awk 'NF { print $1 }')
    local installed
    installed=$(dpkg-query -W -f='${Package} ${db:Status-Status}\n' "${wanted[@]}" 2>/dev/null || true)
    local p
    for p in "${wanted[@]}"; do
        grep -qx "$p installed" <<<"$installed" || missing+=("$p")
    done
    if ((${#missing[@]} == 0)); then
        return
    fi
    if [[ $(id -u) != 0 ]]; then
        log "missing Debian packages (run as root to install): ${missing[*]}" >&2
        exit 1
    fi
    log "installing Debian packages: ${missing[*]}"
    apt-get update -qq
    # runc is listed, so apt does not pull in crun (which fails on this host's hybrid cgroups).
    apt-get install -y -qq -o Dpkg::Options::=--force-confdef -o Dpkg::Options::=--force-confold \
        "${missing[@]}" </dev/null
}

# --------------------------------------------------------------------------- 2. podman drop-ins
configure_containers() {
    [[ $(id -u) == 0 ]] || return 0
    # The sandbox lacks CAP_SYS_RESOURCE: podman's default rlimits (1048576) fail with EPERM.
    # crun fails on the hybrid cgroups; runc works.
    write_if_changed /etc/containers/containers.conf.d/50-fogwire-sandbox.conf '# Written by fogwire scripts/setup.sh.
[containers]
default_ulimits = ["nofile=1024:1024", "nproc=4096:4096"]

[engine]
runtime = "runc"
# The file events log rotates at 1 MB by default, which can end a reader'"'"'s event stream.
events_logfile_max_size = "100m"'
    # The tests' named OCI runtime: runc behind a wrapper that records its calls (harness/runtimes.py
    # writes it; the harness restarts its podman service when these files change).
    write_if_changed /etc/containers/containers.conf.d/50-fogwire-test-runtime.conf '# Written by fogwire scripts/setup.sh.
[engine.runtimes]
fogwire-test-runc = ["/usr/local/libexec/fogwire-test/fogwire-test-runc"]'
    # The harness registry (harness/services.py) speaks plain http on loopback.
    write_if_changed /etc/containers/registries.conf.d/50-fogwire-test.conf '# Written by fogwire scripts/setup.sh.
[[registry]]
location = "127.0.0.1:5001"
insecure = true'
}

# --------------------------------------------------------------------------- 3. wheels of sdists
build_sdist_wheels() { # PIP
    local pip=$1 name
    mkdir -p .cache/wheels
    while read -r name; do
        local -a reqs
        mapfile -t reqs < <("$PYTHON" scripts/_project.py requirements "$name")
        ((${#reqs[@]})) || continue # nothing depends on it (yet)
        local whl_name=${name//-/_}
        if compgen -G ".cache/wheels/${whl_name}-*.whl" >/dev/null; then
            continue
        fi
        log "building a wheel for ${reqs[*]} into .cache/wheels (once)"
        pip_quiet "$pip" wheel -q "${pip_args[@]}" --no-deps -w .cache/wheels "${reqs[@]}"
    done < <(sed -e 's/#.*//' scripts/sdist-wheels.txt | awk 'NF { print $1 }')
}

# --------------------------------------------------------------------------- 4. the dev venv
setup_venv() {
    mkdir -p .cache/wheels
    if [[ ! -x .venv/bin/python ]]; then
        log "creating .venv with $("$PYTHON" --version)"
        "$PYTHON" -m venv .venv
    fi
    local -a stamp_files
    mapfile -t stamp_files < <(
        {
            ls core/pyproject.toml plugins/*/pyproject.toml 2>/dev/null || true
            find tests/dists -type f -not -path '*/__pycache__/*' -not -path '*/build/*' \
                -not -path '*.egg-info/*' 2>/dev/null || true
            echo scripts/dev-requirements.txt
            echo scripts/sdist-wheels.txt
            echo scripts/setup.sh
            echo scripts/_lib.sh
        } | sort
    )
    local stamp
    stamp="$(.venv/bin/python -VV | tr -d '\n'):$("$PYTHON" scripts/_project.py stamp "${stamp_files[@]}")"
    if [[ -f .venv/.fogwire-stamp ]] && [[ $(<.venv/.fogwire-stamp) == "$stamp" ]]; then
        add_repo_pth .venv
        return
    fi

    # uv installs into the venv, not pip: it caches built wheels and build environments
    # (pip here rebuilds each editable's isolated build env every time: minutes, not seconds).
    if [[ ! -x .venv/bin/uv ]]; then
        log "installing uv into .venv"
        pip_quiet .venv/bin/pip install -q "${pip_args[@]}" "uv==0.13.9"
    fi
    build_sdist_wheels .venv/bin/pip

    local -a targets=() now=() names=()
    local name folder
    while IFS=$'\t' read -r name folder; do
        targets+=(-e "$("$PYTHON" scripts/_project.py spec "$folder")")
        now+=("$folder")
    done < <("$PYTHON" scripts/_project.py dists)
    while read -r folder; do
        targets+=("$folder")
        now+=("$folder")
    done < <("$PYTHON" scripts/_project.py test-dists)
    if ((${#now[@]})); then
        mapfile -t names < <("$PYTHON" scripts/_project.py name "${now[@]}")
    fi

    # Uninstall what an earlier run installed from a folder that is gone now.
    if [[ -f .venv/.fogwire-installed ]]; then
        local -a gone=()
        local dist
        while IFS=$'\t' read -r dist folder; do
            [[ -d $folder ]] || gone+=("$dist")
        done <.venv/.fogwire-installed
        if ((${#gone[@]})); then
            log "uninstalling distributions whose folder is gone: ${gone[*]}"
            .venv/bin/uv pip uninstall -q --python .venv/bin/python "${gone[@]}"
        fi
    fi

    log "installing into .venv: ${#now[@]} project distribution(s) and the dev tools"
    local -a reinstall=()
    for name in "${names[@]}"; do
        # rebuild our own distributions (tests/dists are not editable: their code is copied)
        reinstall+=(--reinstall-package "$name" --refresh-package "$name")
    done
    # pip>=25: pip 23.2 (what venv bundles) cannot resolve `-e core[testing]` beside a
    # non-editable distribution that depends on plain `fogwire`; tests use .venv's pip too.
    .venv/bin/uv pip install -q --python .venv/bin/python "${uv_args[@]}" "${reinstall[@]}" \
        "pip>=25" -r scripts/dev-requirements.txt "${targets[@]}"

    : >.venv/.fogwire-installed
    local i
    for i in "${!now[@]}"; do
        printf '%s\t%s\n' "${names[$i]}" "${now[$i]}" >>.venv/.fogwire-installed
    done
    add_repo_pth .venv
    printf '%s' "$stamp" >.venv/.fogwire-stamp
}

# --------------------------------------------------------------------------- 5. the protoc venv
setup_stubs_venv() {
    "$PYTHON" scripts/regen-containerd-stubs.py --setup
}

install_debian_packages
configure_containers
setup_venv
setup_stubs_venv
log "ok"
