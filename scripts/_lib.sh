# Shared by scripts/*.sh (sourced, not run). Expects ROOT and PYTHON to be set.

# pip flags for every install: cached wheels of sdist-only dependencies win over compiling.
pip_args=(--disable-pip-version-check --progress-bar off --prefer-binary --find-links "$ROOT/.cache/wheels")

# uv flags for every install (scripts/setup.sh puts uv into .venv).
uv_args=(--find-links "$ROOT/.cache/wheels")

# Run pip, hiding the machine's "Location 'file:///…' is ignored" noise from its global
# extra-index-url config; everything else pip says on stderr still shows.
pip_quiet() {
    { "$@" 2>&1 1>&3 3>&- | { grep -v "is ignored: it is neither a file nor a directory" || true; } >&2; } 3>&1
}

write_if_changed() { # PATH CONTENT
    local path=$1 content=$2
    if [[ -f $path ]] && [[ $(<"$path") == "$content" ]]; then
        return 0
    fi
    mkdir -p "$(dirname "$path")"
    printf '%s\n' "$content" >"$path"
    echo "wrote $path"
}

# Make the repo root importable in a venv (harness/, used by every test run and by bench/).
add_repo_pth() { # VENV
    local site
    site=$("$1/bin/python" -c 'import sysconfig; print(sysconfig.get_paths()["purelib"])')
    write_if_changed "$site/fogwire-dev-root.pth" "$ROOT" >/dev/null
}
