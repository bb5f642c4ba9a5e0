"""The harness itself: registry auth, deterministic test images, idempotent starts."""

from __future__ import annotations

import base64
import json
import tarfile
import urllib.error
import urllib.request
from pathlib import Path

import pytest

from harness import images, runtimes, services


def _get(url: str, auth: tuple[str, str] | None = None) -> int:
    req = urllib.request.Request(url)
    if auth:
        req.add_header("Authorization", "Basic " + base64.b64encode(f"{auth[0]}:{auth[1]}".encode()).decode())
    try:
        with urllib.request.urlopen(req, timeout=10) as resp:
            return int(resp.status)
    except urllib.error.HTTPError as exc:
        exc.close()
        return exc.code


def test_registry_demands_auth(harness_registry: services.Registry) -> None:
    url = f"{harness_registry.base_url}/v2/"
    assert _get(url) == 401
    assert _get(url, (harness_registry.username, "wrong-password")) == 401
    assert _get(url, (harness_registry.username, harness_registry.password)) == 200


def test_registry_start_is_idempotent(harness_registry: services.Registry) -> None:
    again = services.start_registry()
    assert again == harness_registry
    assert services.is_running("registry")


def test_podman_is_reused_while_its_containers_conf_is_unchanged(harness_podman: services.Podman) -> None:
    """The harness restarts podman only when the containers.conf files it read changed (it learns runtimes then)."""
    again = services.start_podman()
    assert again.pid == harness_podman.pid
    assert (services.harness_dir() / "run" / "podman.config").read_text() == services.podman_config()
    assert runtimes.NAME in services.podman_config()


def test_image_digests_are_stable_across_builds(tmp_path: Path) -> None:
    a = images.build_busybox_layout(tmp_path / "a", tag="1")
    b = images.build_busybox_layout(tmp_path / "b", tag="1")
    assert a.digest == b.digest
    assert a.config_digest == b.config_digest
    assert a.digest.startswith("sha256:")
    changed = images.build_busybox_layout(tmp_path / "a", tag="2", marker="2")
    assert changed.digest != a.digest
    index = json.loads((tmp_path / "a" / "index.json").read_text())
    tags = {m["annotations"]["org.opencontainers.image.ref.name"]: m["digest"] for m in index["manifests"]}
    assert tags == {"1": a.digest, "2": changed.digest}
    assert json.loads((tmp_path / "a" / "oci-layout").read_text()) == {"imageLayoutVersion": "1.0.0"}


def test_image_layer_contents(tmp_path: Path) -> None:
    img = images.build_busybox_layout(tmp_path, marker="m")
    manifest = json.loads((tmp_path / "blobs/sha256" / img.digest.removeprefix("sha256:")).read_bytes())
    config = json.loads((tmp_path / "blobs/sha256" / img.config_digest.removeprefix("sha256:")).read_bytes())
    assert config["os"] == "linux"
    assert config["architecture"] == images.machine_arch()
    assert config["config"]["Cmd"] == ["/bin/sh"]
    assert config["rootfs"]["diff_ids"] == [img.diff_id]
    layer = tmp_path / "blobs/sha256" / manifest["layers"][0]["digest"].removeprefix("sha256:")
    with tarfile.open(layer, "r:gz") as tar:
        members = {m.name: m for m in tar.getmembers()}
        assert members["bin/busybox"].isfile()
        for applet in ("sh", "httpd", "sleep", "cat", "wget"):
            assert members[f"bin/{applet}"].issym()
        assert members["tmp"].mode == 0o1777
        www = tar.extractfile("www/index.html")
        assert www is not None and b"marker m" in www.read()
        passwd = tar.extractfile("etc/passwd")
        assert passwd is not None and passwd.read().startswith(b"root:x:0:0:")


def test_test_images_are_pushed(harness_images: images.TestImages, harness_registry: services.Registry) -> None:
    assert harness_images.ref_v1 == "127.0.0.1:5001/fogwire/busybox:1"
    assert harness_images.digest_v1 != harness_images.digest_v2
    for tag, digest in (("1", harness_images.digest_v1), ("2", harness_images.digest_v2)):
        assert images._registry_digest(harness_registry, "fogwire/busybox", tag) == digest
    assert harness_images.docker_archive.stat().st_size > 1_000_000
    with tarfile.open(harness_images.oci_archive) as tar:
        index = json.loads(tar.extractfile("index.json").read())  # type: ignore[union-attr]
    assert index["manifests"][0]["annotations"]["org.opencontainers.image.ref.name"] == "fogwire/busybox:1"
    assert index["manifests"][0]["digest"] == harness_images.digest_v1
    # a second call is a cache hit and returns the same value
    assert images.ensure_test_images(harness_registry) == harness_images


def test_env_lines_name_every_address() -> None:
    text = "\n".join(services.env_lines())
    for key in (
        "FOGWIRE_TEST_REGISTRY=",
        "FOGWIRE_TEST_DOCKER_HOST=",
        "FOGWIRE_TEST_PODMAN_URL=",
        "CONTAINERD_ADDRESS=",
    ):
        assert key in text
    assert all(line.startswith("export ") for line in services.env_lines())


def test_unknown_service_is_an_error() -> None:
    with pytest.raises(services.HarnessError, match="unknown service"):
        services.start(["nope"])
