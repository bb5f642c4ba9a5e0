#!/usr/bin/env bash
# `make demo`: fogwire's main job, watched step by step.
#
# Starts the agent on the embedded default (the containerd engine running its own
# containerd child, the `file` config source) with every path under a temp dir,
# applies examples/hello.yaml (an httpd on a published port and a worker writing
# to a named volume, both from a busybox image built locally), fetches a page,
# changes an env var and shows the replacement, then stops and cleans up.
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD
PY=$ROOT/.venv/bin/python
FOGWIRE=$ROOT/.venv/bin/fogwire
PORT=18080

say() { printf '\n\033[1m==> %s\033[0m\n' "$*"; }
run() { printf '$ %s\n' "$*"; "$@"; }

DEMO=$(mktemp -d /tmp/fogwire-demo.XXXXXX)
export FOGWIRE_CONFIG=$DEMO/etc/config.yaml FOGWIRE_STATE_DIR=$DEMO/state FOGWIRE_LOG_DIR=$DEMO/log FOGWIRE_RUN_DIR=$DEMO/run
DAEMON_PID=
cleanup() {
    status=$?
    if [[ -n $DAEMON_PID ]] && kill -0 "$DAEMON_PID" 2>/dev/null; then
        say "cleaning up after an error: stopping the daemon"
        kill -TERM "$DAEMON_PID" 2>/dev/null || true
        wait "$DAEMON_PID" 2>/dev/null || true
    fi
    if [[ $status -ne 0 ]]; then
        echo "demo failed (exit $status); daemon log follows:" >&2
        tail -n 40 "$DEMO/daemon.log" >&2 2>/dev/null || true
    fi
    if ! grep -qF " $DEMO/" /proc/self/mountinfo; then rm -rf "$DEMO"; else echo "mounts left under $DEMO; not removed" >&2; fi
}
trap cleanup EXIT

say "fogwire keeps an edge device's microservices equal to a desired state. Everything lives under $DEMO"
mkdir -p "$DEMO/etc"
cat >"$FOGWIRE_CONFIG" <<EOF
currentProfile: default
profiles:
  default:
    containerEngine: containerd      # the Linux default: containerd over gRPC
    containerEngineUrl: null         # null: start our own containerd child (embedded)
    engineOptions: {embedded: true}
    agentId: demo
    pruningFrequency: 0
    configSource: {name: file, options: {path: $DEMO/etc/desired.yaml}}
EOF
run cat "$FOGWIRE_CONFIG"

say "Building the busybox test image as an OCI tarball (from Debian's busybox-static; nothing is pulled)"
"$PY" - "$DEMO/busybox-oci.tar" <<'EOF'
import sys, shutil, tempfile
from pathlib import Path
from harness import images
layout = Path(tempfile.mkdtemp())
images.build_busybox_layout(layout, "fogwire/busybox:1")
images._tar_layout(layout, Path(sys.argv[1]))
shutil.rmtree(layout)
print(f"wrote {sys.argv[1]}")
EOF

say "Loading it into the embedded containerd with fogwire's containerd engine (registry 'local' never pulls)"
IMAGE=$("$PY" - "$DEMO/busybox-oci.tar" <<'EOF'
import asyncio, sys
from pathlib import Path
from fogwire.engine import EngineContext
from fogwire.paths import default_paths
from fogwire.plugins import PluginHost
paths = default_paths()
paths.ensure()
async def main() -> None:
    context = EngineContext("demo", paths.state_dir / "engine", paths.run_dir, paths.log_dir, options={"embedded": True})
    engine = PluginHost().engine_factory("containerd")(context)
    await engine.start()
    try:
        result = await engine.load_image_archive(Path(sys.argv[1]))
    finally:
        await engine.close()
    print(result.references[0])
asyncio.run(main())
EOF
)
echo "loaded image: $IMAGE"
sed "s#docker.io/fogwire/busybox:1#$IMAGE#" examples/hello.yaml >"$DEMO/hello.yaml"

say "Starting the daemon: fogwire daemon (log in $DEMO/daemon.log)"
"$FOGWIRE" daemon >"$DEMO/daemon.log" 2>&1 &
DAEMON_PID=$!
for _ in $(seq 1 150); do [[ -S $FOGWIRE_RUN_DIR/fogwire.sock ]] && break; sleep 0.2; done
[[ -S $FOGWIRE_RUN_DIR/fogwire.sock ]] || { echo "the daemon did not come up" >&2; exit 1; }
echo "daemon pid $DAEMON_PID, control socket $FOGWIRE_RUN_DIR/fogwire.sock"
echo "(the watched file doesn't exist yet, so the daemon started from the state last applied: nothing)"

say "What would applying examples/hello.yaml do? (fogwire plan changes nothing)"
run "$FOGWIRE" plan -f "$DEMO/hello.yaml"

say "Applying it: the file is validated whole, written where the file source watches, and reconciled"
run "$FOGWIRE" apply -f "$DEMO/hello.yaml"

say "Waiting until both microservices run"
for _ in $(seq 1 100); do
    running=$("$FOGWIRE" status --json | "$PY" -c 'import json,sys; print(sum(m["state"]=="running" for m in json.load(sys.stdin)["microservices"]))')
    [[ $running == 2 ]] && break
    sleep 0.3
done
run "$FOGWIRE" status

say "Fetching a page from the httpd on its published port $PORT"
"$PY" - "$PORT" <<'EOF'
import sys, time, urllib.request
url = f"http://127.0.0.1:{sys.argv[1]}/index.html"
for attempt in range(50):
    try:
        print(f"GET {url} ->", urllib.request.urlopen(url, timeout=2).read().decode().strip())
        break
    except OSError:
        time.sleep(0.2)
else:
    sys.exit(f"no answer from {url}")
EOF

say "The worker's output (fogwire logs hello-worker --tail 2)"
sleep 2
run "$FOGWIRE" logs hello-worker --tail 2

say "Changing GREETING from 'hello' to 'bonjour' in the watched file; the daemon notices and replaces the worker only"
sed -i 's/value: hello$/value: bonjour/' "$DEMO/etc/desired.yaml"
run grep -n -A1 'key: GREETING' "$DEMO/etc/desired.yaml"
echo "(a replacement is health-gated: it must keep running for 10 s, or the old spec comes back)"
for _ in $(seq 1 100); do
    "$FOGWIRE" status --json | "$PY" -c '
import json, sys
s = json.load(sys.stdin)
w = next(m for m in s["microservices"] if m["name"] == "hello-worker")
sys.exit(0 if w["status"] == "running" and any(e["kind"] == "replaced" for e in s["events"]) else 1)' && break
    sleep 0.5
done
run "$FOGWIRE" status
echo
echo "recent events:"
"$FOGWIRE" status --json | "$PY" -c '
import json, sys, time
for e in json.load(sys.stdin)["events"][-6:]:
    print(" ", time.strftime("%H:%M:%S", time.localtime(e["time"])), e["kind"], e["microservice"] or "-", "-", e["message"])'
run "$FOGWIRE" logs hello-worker --tail 1

say "Stopping: an empty desired state removes both workloads, then SIGTERM stops the daemon (and its containerd)"
: >"$DEMO/empty.yaml"
run "$FOGWIRE" apply -f "$DEMO/empty.yaml"
kill -TERM "$DAEMON_PID"
wait "$DAEMON_PID"
DAEMON_PID=
echo "daemon stopped cleanly"

say "Done. Removing $DEMO"
