"""Benchmark: importing an offline image bundle, against skopeo and ``ctr images import``.

A bundle of 3 images sharing a base layer (default ~300 MiB of random-content,
uncompressed layers: a 150 MiB base and three 50 MiB tops) is generated, then, in
the same run, on the harness services:

* **registry**: ``fogwire bundle import FILE --registry`` (a fresh process: start-up,
  verifying every blob, pushing) against ``skopeo copy oci-archive:FILE:REF
  docker://…`` of the same 3 images from the same file. Ratio fogwire/skopeo
  (goal ≤ 1.0). Each tool pushes to its own throwaway ``docker-registry`` on
  loopback with the harness's htpasswd, and the layers are new random bytes on
  every run, so neither finds anything already there (skopeo's blob-info cache
  would otherwise mount blobs from an earlier run).
* **re-import** of the same file into the same registry: with the import record
  (goal under 1 s) and with ``--force`` (everything verified again, every blob
  skipped by ``HEAD``).
* **peak RSS** of the registry import process (goal under 100 MiB).
* **containerd**: ``import_bundle`` into the containerd engine plugin against
  ``ctr images import FILE``, each into a fresh namespace.
* **deduplication**: the bundle's size against the sum of ``docker save`` of each
  image (loaded into the harness dockerd from the bundle).

Usage: python bench/bundle.py [--size-mib 300] [--json]
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import random
import resource
import shutil
import socket
import subprocess
import sys
import tarfile
import tempfile
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from fogwire_bundle.archive import Format, pack
from fogwire_bundle.importer import EngineTarget, import_bundle
from fogwire_bundle.layout import BlobInfo, BundleImage, LayoutDir
from fogwire_bundle.oci import OCI_MANIFEST, canonical_json, machine_platform, sha256_hex

from fogwire.engine import EngineContext
from fogwire.plugins import PluginHost
from harness import services

LAYER = "application/vnd.oci.image.layer.v1.tar"
CONFIG = "application/vnd.oci.image.config.v1+json"
MIB = 1 << 20


def _layer(layout: LayoutDir, size: int, seed: int) -> dict[str, Any]:
    """A one-file uncompressed layer of ``size`` random bytes, written straight into the layout."""
    rng = random.Random(seed)
    tmp = layout.root / f"layer-{seed}.tmp"
    info = tarfile.TarInfo(f"data-{seed}.bin")
    info.size = size
    with tmp.open("wb") as out, tarfile.open(fileobj=out, mode="w|") as tar:

        class Source:
            left = size

            def read(self, n: int = -1) -> bytes:
                n = min(self.left, MIB if n < 0 else n)
                self.left -= n
                return rng.randbytes(n)

        tar.addfile(info, Source())  # type: ignore[arg-type]
    digest = (
        "sha256:"
        + subprocess.run(["sha256sum", str(tmp)], capture_output=True, text=True, check=True).stdout.split()[0]
    )
    tmp.replace(layout.blob_path(digest))
    return {"mediaType": LAYER, "digest": digest, "size": layout.size(digest)}


def build(root: Path, repo: str, size_mib: int) -> tuple[list[BundleImage], Path]:
    """The 3-image layout under ``root`` and the tar bundle made from it."""
    layout = LayoutDir(root / "layout").create()
    seed = time.time_ns()
    base = _layer(layout, size_mib // 2 * MIB, seed)
    images: list[BundleImage] = []
    blobs: dict[str, BlobInfo] = {base["digest"]: BlobInfo(base["digest"], base["size"], LAYER)}
    for n in (1, 2, 3):
        top = _layer(layout, size_mib // 6 * MIB, seed + n)
        blobs[top["digest"]] = BlobInfo(top["digest"], top["size"], LAYER)
        config = canonical_json(
            {
                "architecture": machine_platform().architecture,
                "os": "linux",
                "config": {"Cmd": ["/data"]},
                "rootfs": {"type": "layers", "diff_ids": [base["digest"], top["digest"]]},
            }
        )
        config_digest = sha256_hex(config)
        layout.put_bytes(config_digest, config)
        blobs[config_digest] = BlobInfo(config_digest, len(config), CONFIG)
        manifest = canonical_json(
            {
                "schemaVersion": 2,
                "mediaType": OCI_MANIFEST,
                "config": {"mediaType": CONFIG, "digest": config_digest, "size": len(config)},
                "layers": [base, top],
            }
        )
        digest = sha256_hex(manifest)
        layout.put_bytes(digest, manifest)
        blobs[digest] = BlobInfo(digest, len(manifest), OCI_MANIFEST)
        images.append(BundleImage(f"bench.local/{repo}/app:{n}", digest, OCI_MANIFEST, len(manifest), ("linux/amd64",)))
    layout.write_index(images)
    layout.write_bundle_manifest(images, sorted(blobs.values(), key=lambda b: b.digest))
    bundle = root / "bench.tar"
    pack(layout.root, bundle, Format.TAR)
    shutil.rmtree(layout.root)
    return images, bundle


def _timed(argv: list[str], env: dict[str, str] | None = None) -> tuple[float, subprocess.CompletedProcess[str]]:
    start = time.perf_counter()
    done = subprocess.run(argv, capture_output=True, text=True, env=env, check=False, timeout=1800)
    elapsed = time.perf_counter() - start
    if done.returncode != 0:
        raise SystemExit(f"{argv[0]} failed: {done.stderr.strip()[-2000:]}")
    return elapsed, done


@contextlib.contextmanager
def throwaway_registry(root: Path) -> Iterator[str]:
    """A ``docker-registry`` with the harness's htpasswd, storing under ``root``; yields ``127.0.0.1:PORT``."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    htpasswd = services.harness_dir() / "registry" / "htpasswd"
    root.mkdir(parents=True)
    config = root / "config.yml"
    config.write_text(
        "version: 0.1\nlog:\n  level: error\n  accesslog:\n    disabled: true\n"
        f"storage:\n  filesystem:\n    rootdirectory: {root / 'data'}\n"
        f"http:\n  addr: 127.0.0.1:{port}\n"
        f"auth:\n  htpasswd:\n    realm: bench\n    path: {htpasswd}\n"
    )
    proc = subprocess.Popen(
        ["docker-registry", "serve", str(config)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )
    try:
        for _ in range(400):
            with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), timeout=1):
                break
            time.sleep(0.05)
        yield f"127.0.0.1:{port}"
    finally:
        proc.terminate()
        proc.wait(timeout=30)


WRAPPER = (
    "import resource, subprocess, sys; code = subprocess.run(sys.argv[1:]).returncode; "
    "print('PEAK', resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss, file=sys.stderr); sys.exit(code)"
)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--size-mib", type=int, default=300, help="random layer content in MiB (default 300)")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()

    registry = services.start_registry()  # its htpasswd is reused
    dockerd = services.start_dockerd()
    containerd = services.start_containerd()
    run_id = uuid.uuid4().hex[:8]
    repo = f"bench-bundle-{run_id}"
    figures: dict[str, Any] = {"size_mib": args.size_mib, "loadavg": os.getloadavg()[0]}
    with contextlib.ExitStack() as stack:
        tmp = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="fw-bundle-bench-", dir="/var/tmp")))
        reg_fw = stack.enter_context(throwaway_registry(tmp / "reg-fogwire"))
        reg_sk = stack.enter_context(throwaway_registry(tmp / "reg-skopeo"))
        start = time.perf_counter()
        images, bundle = build(tmp, repo, args.size_mib)
        figures["generate_s"] = round(time.perf_counter() - start, 2)
        figures["bundle_bytes"] = bundle.stat().st_size
        pw = tmp / "pw"
        pw.write_text(registry.password)
        env = {**os.environ, "FOGWIRE_STATE_DIR": str(tmp / "state")}
        creds = ["--registry-user", registry.username, "--registry-password-file", str(pw)]
        fogwire = [sys.executable, "-m", "fogwire.cli", "bundle"]
        try:
            # registry: fogwire vs skopeo, same file, same registry, different repositories
            t_fw, done = _timed(
                [sys.executable, "-c", WRAPPER, *fogwire, "import", str(bundle), "--registry",
                 f"http://{reg_fw}", *creds, "--json", "--work-dir", str(tmp / "work")],
                env,
            )  # fmt: skip
            figures["registry_import_s"] = round(t_fw, 2)
            figures["peak_rss_mib"] = round(int(done.stderr.rsplit("PEAK", 1)[1].split()[0]) / 1024, 1)
            t_sk = 0.0
            for image in images:
                name = image.reference.split("/", 1)[1]
                t, _ = _timed(
                    ["skopeo", "copy", "--quiet", "--dest-tls-verify=false", "--dest-creds",
                     f"{registry.username}:{registry.password}", f"oci-archive:{bundle}:{image.reference}",
                     f"docker://{reg_sk}/{name}"]
                )  # fmt: skip
                t_sk += t
            figures["skopeo_copy_s"] = round(t_sk, 2)
            figures["registry_ratio"] = round(t_fw / t_sk, 2)

            reimport = [*fogwire, "import", str(bundle), "--registry", f"http://{reg_fw}", *creds,
                        "--json", "--work-dir", str(tmp / "work")]  # fmt: skip
            before = resource.getrusage(resource.RUSAGE_CHILDREN)
            t, done = _timed(reimport, env)
            after = resource.getrusage(resource.RUSAGE_CHILDREN)
            figures["reimport_s"] = round(t, 2)
            # the wall time includes waiting for a CPU on a busy machine; this is the work itself
            figures["reimport_cpu_s"] = round(after.ru_utime + after.ru_stime - before.ru_utime - before.ru_stime, 2)
            figures["reimport_cached"] = json.loads(done.stdout)["cached"]
            t, done = _timed([*reimport, "--force"], env)
            figures["reimport_force_s"] = round(t, 2)
            figures["reimport_force_bytes_moved"] = json.loads(done.stdout)["bytesMoved"]

            # containerd: fogwire engine import vs ctr images import
            async def load_containerd(namespace: str, raw: bool) -> float:
                context = EngineContext(
                    "bundle-bench", tmp / "cd", tmp / "cr", tmp / "cl", url=containerd.url,
                    options={"namespace": namespace},
                )  # fmt: skip
                engine = PluginHost().engine_factory("containerd")(context)
                await engine.start()
                try:
                    began = time.perf_counter()
                    if raw:  # the plugin alone, handed the bundle file unverified: its own share of the time
                        await engine.load_image_archive(bundle)
                    else:
                        await import_bundle(bundle, EngineTarget(engine, machine_platform()), work_dir=tmp / "work")
                    return time.perf_counter() - began
                finally:
                    await engine.close()

            figures["containerd_fogwire_s"] = round(asyncio.run(load_containerd(f"fw-bench-{run_id}", False)), 2)
            figures["containerd_plugin_alone_s"] = round(asyncio.run(load_containerd(f"raw-bench-{run_id}", True)), 2)
            t, _ = _timed(
                ["ctr", "-a", containerd.address, "-n", f"ctr-bench-{run_id}", "images", "import", str(bundle)]
            )
            figures["containerd_ctr_import_s"] = round(t, 2)
            figures["containerd_ratio"] = round(figures["containerd_fogwire_s"] / t, 2)

            # deduplication: bundle size vs docker save of each image
            _timed(
                [*fogwire, "import", str(bundle), "--engine", "docker", "--engine-url", dockerd.host, "--force"], env
            )
            saved = 0
            for image in images:
                out = tmp / "saved.tar"
                _timed(["docker", "-H", dockerd.host, "save", "-o", str(out), image.reference])
                saved += out.stat().st_size
                out.unlink()
            figures["docker_save_sum_bytes"] = saved
            figures["bundle_vs_docker_save"] = round(figures["bundle_bytes"] / saved, 2)
        finally:
            _cleanup(dockerd, containerd, run_id, images)
    if args.json:
        print(json.dumps(figures))
    else:
        _print(figures)
    return 0


def _cleanup(
    dockerd: services.Dockerd, containerd: services.Containerd, run_id: str, images: list[BundleImage]
) -> None:
    for image in images:
        subprocess.run(["docker", "-H", dockerd.host, "rmi", "-f", image.reference], capture_output=True, check=False)
    for namespace in (f"fw-bench-{run_id}", f"ctr-bench-{run_id}", f"raw-bench-{run_id}"):
        base = ["ctr", "-a", containerd.address, "-n", namespace]
        names = subprocess.run(
            [*base, "images", "ls", "-q"], capture_output=True, text=True, check=False
        ).stdout.split()
        if names:
            subprocess.run([*base, "images", "rm", "--sync", *names], capture_output=True, check=False)
        subprocess.run([*base, "content", "prune", "references"], capture_output=True, check=False)
        subprocess.run(
            ["ctr", "-a", containerd.address, "namespaces", "rm", namespace], capture_output=True, check=False
        )


def _print(f: dict[str, Any]) -> None:
    mib = f["bundle_bytes"] / MIB
    print(f"bundle: 3 images sharing a base layer, {f['size_mib']} MiB of random layers, {mib:.1f} MiB file")
    print(f"  registry import (fogwire, fresh process)   {f['registry_import_s']:7.2f} s")
    print(f"  skopeo copy oci-archive -> registry (x3)   {f['skopeo_copy_s']:7.2f} s")
    print(f"  ratio fogwire/skopeo                       {f['registry_ratio']:7.2f}   (goal <= 1.0)")
    print(
        f"  re-import, same file (import record)       {f['reimport_s']:7.2f} s  (goal < 1 s; cached={f['reimport_cached']})"
    )
    print(
        f"    of which CPU time (user + system)        {f['reimport_cpu_s']:7.2f} s  (load average {f['loadavg']:.1f})"
    )
    print(
        f"  re-import --force (verify all, HEAD skips) {f['reimport_force_s']:7.2f} s  ({f['reimport_force_bytes_moved']} bytes moved)"
    )
    print(f"  peak RSS of the registry import            {f['peak_rss_mib']:7.1f} MiB (goal < 100 MiB)")
    print(f"  containerd: fogwire engine import          {f['containerd_fogwire_s']:7.2f} s")
    print(f"    of which the plugin's own load_image_archive {f['containerd_plugin_alone_s']:5.2f} s (measured apart)")
    print(f"  containerd: ctr images import              {f['containerd_ctr_import_s']:7.2f} s")
    print(f"  ratio fogwire/ctr                          {f['containerd_ratio']:7.2f}")
    print(
        f"  bundle vs sum of docker save               {mib:.1f} / {f['docker_save_sum_bytes'] / MIB:.1f} MiB = {f['bundle_vs_docker_save']}"
    )


if __name__ == "__main__":
    sys.exit(main())
