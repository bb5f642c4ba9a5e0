"""Test images for fogwire's engine tests, built by code from Debian's busybox-static.

Nothing is pulled from the internet: :func:`build_busybox_layout` writes an OCI
image layout (``oci-layout``, ``index.json``, ``blobs/sha256/…``) holding one
gzip layer with ``/bin/busybox``, applet symlinks, ``/www/index.html``, ``/tmp``
and a root-only ``/etc/passwd`` + ``/etc/group``. The build is deterministic:
fixed mtimes, owners and gzip header, so the same input always gives the same
digest. ``marker`` changes the content of ``/www/index.html`` (and so the
digest), which is how tests get an "image changed" second tag.

:func:`ensure_test_images` pushes ``fogwire/busybox:1`` and ``:2`` to the
harness registry with skopeo and writes an OCI-archive and a docker-archive
tarball, all cached under the harness directory.
"""

from __future__ import annotations

import base64
import fcntl
import gzip
import hashlib
import io
import json
import os
import platform
import shutil
import subprocess
import tarfile
import tempfile
import urllib.error
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from fogwire.testing import ContractTlsRegistry
    from harness.services import Registry, TlsRegistry

BUSYBOX = Path("/bin/busybox")
REPOSITORY = "fogwire/busybox"
TAGS = ("1", "2")
MARKERS = {"1": "", "2": "2"}

#: Fixed mtime of every entry (2024-01-01T00:00:00Z) and the config's ``created``.
EPOCH = 1704067200
CREATED = "2024-01-01T00:00:00Z"
PATH_ENV = "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"

APPLETS = (
    "sh ash httpd sleep cat echo env wget ls mkdir touch true false id ps kill rm cp mv "
    "grep sed head tail hostname nc printf test [ date uname whoami chmod ln pwd df du "
    "mount umount nslookup ping top vi sort wc tr cut seq stat find xargs tee awk expr "
    "dd basename dirname readlink realpath timeout yes sync free uptime ip ifconfig "
    "netstat mkfifo rmdir tar gzip gunzip md5sum sha256sum which nproc pidof killall "
    "setsid usleep hexdump od base64 less more"
).split()

MT_LAYER = "application/vnd.oci.image.layer.v1.tar+gzip"
MT_CONFIG = "application/vnd.oci.image.config.v1+json"
MT_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
MT_INDEX = "application/vnd.oci.image.index.v1+json"
REF_NAME = "org.opencontainers.image.ref.name"


@dataclass(frozen=True)
class LayoutImage:
    """One tag written into an OCI image layout by :func:`build_busybox_layout`."""

    layout: Path
    tag: str
    digest: str
    """The manifest digest, ``sha256:…``: what a registry reports after a push."""
    config_digest: str
    """The image ID as docker and podman show it (``sha256:…`` of the config)."""
    layer_digest: str
    diff_id: str


@dataclass(frozen=True)
class TestImages:
    """Everything :func:`ensure_test_images` made, with the references to use."""

    __test__ = False  # not a pytest test class, despite the name

    registry: str
    """``127.0.0.1:5001``."""
    repository: str
    """``127.0.0.1:5001/fogwire/busybox``."""
    ref_v1: str
    """``127.0.0.1:5001/fogwire/busybox:1``."""
    ref_v2: str
    """``127.0.0.1:5001/fogwire/busybox:2``, a different digest from ``:1``."""
    digest_v1: str
    digest_v2: str
    config_digest_v1: str
    config_digest_v2: str
    layout: Path
    """The OCI image layout holding tags ``1`` and ``2``."""
    oci_archive: Path
    """``busybox-oci.tar``: an OCI layout tarball of tag 1; its index names the
    manifest ``fogwire/busybox:1`` (ref.name) for ``podman load``/``ctr import``."""
    docker_archive: Path
    """``busybox-docker.tar``: a docker-archive of ``fogwire/busybox:1`` for
    ``docker load`` (dockerd 20.10 can't load an OCI tarball)."""
    username: str
    password: str

    def registry_document(self, registry_id: int = 3) -> dict[str, object]:
        """An ioFog ``Registry`` document for this registry, with its credentials (plain http)."""
        return {
            "apiVersion": "iofog.org/v3",
            "kind": "Registry",
            "spec": {
                "id": registry_id,
                "url": self.registry,
                "username": self.username,
                "password": self.password,
                "insecure": True,
            },
        }

    def push_variant(self, repository: str, tag: str, *, marker: str, user: str = "") -> str:
        """Build a busybox variant (``marker``, image ``User``) and push it as ``repository:tag``; its reference."""
        reference = f"{self.registry}/{repository}:{tag}"
        with tempfile.TemporaryDirectory(prefix="fwvariant-") as tmp:
            build_busybox_layout(tmp, tag, marker=marker, user=user)
            _push_layout(tmp, tag, reference, f"{self.username}:{self.password}")
        return reference


def machine_arch() -> str:
    """The OCI architecture name of this machine (``amd64``, ``arm64``, …)."""
    m = platform.machine().lower()
    return {
        "x86_64": "amd64",
        "amd64": "amd64",
        "aarch64": "arm64",
        "arm64": "arm64",
        "armv7l": "arm",
        "armv6l": "arm",
        "ppc64le": "ppc64le",
        "s390x": "s390x",
        "riscv64": "riscv64",
    }.get(m, m)


def _tarinfo(name: str, kind: bytes, mode: int, size: int = 0, link: str = "") -> tarfile.TarInfo:
    ti = tarfile.TarInfo(name)
    ti.type = kind
    ti.mode = mode
    ti.size = size
    ti.linkname = link
    ti.mtime = EPOCH
    ti.uid = ti.gid = 0
    ti.uname = ti.gname = "root"
    return ti


def _layer_tar(marker: str, with_staff: bool = False) -> bytes:
    """The uncompressed layer: deterministic entry order, owners and mtimes."""
    busybox = BUSYBOX.read_bytes()
    html = "<html><body><h1>fogwire busybox</h1>"
    if marker:
        html += f"<p>marker {marker}</p>"
    html += "</body></html>\n"
    files: list[tuple[tarfile.TarInfo, bytes | None]] = []

    def add_dir(name: str, mode: int = 0o755) -> None:
        files.append((_tarinfo(name, tarfile.DIRTYPE, mode), None))

    def add_file(name: str, data: bytes, mode: int = 0o644) -> None:
        files.append((_tarinfo(name, tarfile.REGTYPE, mode, len(data)), data))

    add_dir("bin")
    add_file("bin/busybox", busybox, 0o755)
    for applet in sorted(set(APPLETS)):
        files.append((_tarinfo(f"bin/{applet}", tarfile.SYMTYPE, 0o777, link="busybox"), None))
    add_dir("etc")
    add_file("etc/passwd", b"root:x:0:0:root:/root:/bin/sh\nnobody:x:65534:65534:nobody:/:/bin/false\n")
    add_file("etc/group", b"root:x:0:\nnogroup:x:65534:\n" + (b"staff:x:50:nobody\n" if with_staff else b""))
    add_file("etc/fogwire-image", f"fogwire busybox test image{(' ' + marker) if marker else ''}\n".encode())
    for d in ("dev", "proc", "sys", "var", "run"):
        add_dir(d)
    add_dir("root", 0o700)
    add_dir("tmp", 0o1777)
    add_dir("www")
    add_file("www/index.html", html.encode())

    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.PAX_FORMAT) as tar:
        for ti, data in files:
            tar.addfile(ti, io.BytesIO(data) if data is not None else None)
    return buf.getvalue()


def _gzip(data: bytes) -> bytes:
    buf = io.BytesIO()
    with gzip.GzipFile(filename="", mode="wb", fileobj=buf, mtime=0, compresslevel=6) as gz:
        gz.write(data)
    return buf.getvalue()


def _digest(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


def _canonical(obj: object) -> bytes:
    return json.dumps(obj, sort_keys=True, separators=(",", ":")).encode()


def _write_blob(layout: Path, data: bytes) -> str:
    digest = _digest(data)
    path = layout / "blobs" / "sha256" / digest.removeprefix("sha256:")
    if not path.exists():
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(".tmp")
        tmp.write_bytes(data)
        tmp.replace(path)
    return digest


def _read_blob(layout: Path, digest: str) -> bytes:
    return (layout / "blobs" / "sha256" / digest.removeprefix("sha256:")).read_bytes()


def build_busybox_layout(
    dest_dir: str | os.PathLike[str], tag: str = "1", marker: str = "", user: str = ""
) -> LayoutImage:
    """Write (or add to) an OCI image layout at ``dest_dir`` holding ``tag``.

    The image is busybox from the host with ``Cmd ["/bin/sh"]``; its
    ``/www/index.html`` carries ``marker``, so a different marker gives a
    different digest while the same marker always gives the same one. Calling
    this again with another tag adds that tag to the same ``index.json``;
    the same tag is replaced. ``user`` becomes the config's ``User``; the image's
    ``/etc/passwd`` has ``root`` and ``nobody`` (65534), ``/etc/group`` ``root``
    and ``nogroup`` (65534), and with a ``user`` also ``staff`` (50, member ``nobody``).
    """
    layout = Path(dest_dir)
    layout.mkdir(parents=True, exist_ok=True)
    tar = _layer_tar(marker, with_staff=bool(user))
    diff_id = _digest(tar)
    layer = _gzip(tar)
    layer_digest = _write_blob(layout, layer)
    arch = machine_arch()
    config: dict[str, object] = {
        "created": CREATED,
        "architecture": arch,
        "os": "linux",
        "config": {
            "Env": [PATH_ENV],
            "Cmd": ["/bin/sh"],
            "WorkingDir": "/",
            "Labels": {"org.opencontainers.image.title": "fogwire busybox test image"},
            **({"User": user} if user else {}),
        },
        "rootfs": {"type": "layers", "diff_ids": [diff_id]},
        "history": [{"created": CREATED, "created_by": "harness.images.build_busybox_layout"}],
    }
    if arch == "arm64":
        config["variant"] = "v8"
    config_bytes = _canonical(config)
    config_digest = _write_blob(layout, config_bytes)
    manifest = {
        "schemaVersion": 2,
        "mediaType": MT_MANIFEST,
        "config": {"mediaType": MT_CONFIG, "digest": config_digest, "size": len(config_bytes)},
        "layers": [{"mediaType": MT_LAYER, "digest": layer_digest, "size": len(layer)}],
    }
    manifest_bytes = _canonical(manifest)
    manifest_digest = _write_blob(layout, manifest_bytes)

    (layout / "oci-layout").write_text('{"imageLayoutVersion":"1.0.0"}')
    index_path = layout / "index.json"
    entries: list[dict[str, Any]] = []
    if index_path.exists():
        old = json.loads(index_path.read_text())
        entries = [m for m in old.get("manifests", []) if m.get("annotations", {}).get(REF_NAME) != tag]
    platform_: dict[str, str] = {"architecture": arch, "os": "linux"}
    entries.append(
        {
            "mediaType": MT_MANIFEST,
            "digest": manifest_digest,
            "size": len(manifest_bytes),
            "annotations": {REF_NAME: tag},
            "platform": platform_,
        }
    )
    entries.sort(key=lambda m: str(m.get("annotations", {}).get(REF_NAME, "")))
    index = {"schemaVersion": 2, "mediaType": MT_INDEX, "manifests": entries}
    tmp = index_path.with_suffix(".tmp")
    tmp.write_bytes(_canonical(index))
    tmp.replace(index_path)
    return LayoutImage(layout, tag, manifest_digest, config_digest, layer_digest, diff_id)


def _registry_digest(registry: Registry, repository: str, tag: str) -> str | None:
    """The manifest digest the registry holds for ``repository:tag``, or None."""
    req = urllib.request.Request(
        f"http://{registry.url}/v2/{repository}/manifests/{tag}",
        method="HEAD",
        headers={
            "Accept": ", ".join([MT_MANIFEST, MT_INDEX, "application/vnd.docker.distribution.manifest.v2+json"]),
            "Authorization": "Basic " + base64.b64encode(f"{registry.username}:{registry.password}".encode()).decode(),
        },
    )
    try:
        with urllib.request.urlopen(req, timeout=10) as resp:
            digest = resp.headers.get("Docker-Content-Digest")
            return str(digest) if digest else None
    except urllib.error.HTTPError as exc:
        exc.close()
        if exc.code == 404:
            return None
        raise


@dataclass(frozen=True)
class TlsTestImage:
    """``fogwire/busybox:1`` in the TLS registry, and what a pull from it needs."""

    __test__ = False

    registry: str
    """``198.18.77.1:5443``."""
    reference: str
    """``198.18.77.1:5443/fogwire/busybox:1``."""
    digest: str
    config_digest: str
    """The image ID docker, podman and the containerd engine report."""
    username: str
    password: str = field(repr=False)
    ca_pem: str = field(repr=False)
    """The registry's CA (PEM): a Registry document's ``certificate``."""
    cert_dir: Path
    """A directory holding only the CA as ``ca.crt`` (skopeo's ``--cert-dir``)."""

    def copy_to(self, repository: str) -> str:
        """Copy the image to ``repository:1`` in the same registry (one no engine holds yet); its reference."""
        reference = f"{self.registry}/{repository}:1"
        creds = f"{self.username}:{self.password}"
        _skopeo(
            "copy", "--quiet",
            "--src-cert-dir", str(self.cert_dir), "--src-creds", creds,
            "--dest-cert-dir", str(self.cert_dir), "--dest-creds", creds,
            f"docker://{self.reference}", f"docker://{reference}",
        )  # fmt: skip
        return reference

    def registry_document(self, registry_id: int, *, with_ca: bool = True) -> dict[str, object]:
        """An ioFog ``Registry`` document for this registry: credentials and (``with_ca``) its CA."""
        spec: dict[str, object] = {
            "id": registry_id,
            "url": self.registry,
            "username": self.username,
            "password": self.password,
        }
        if with_ca:
            spec.update(requiresCert=True, certificate=self.ca_pem)
        return {"apiVersion": "iofog.org/v3", "kind": "Registry", "spec": spec}


DAEMON_CERTS_DIRS = (Path("/etc/docker/certs.d"), Path("/etc/containers/certs.d"))
"""Where dockerd and podman read a registry's CA (``<dir>/<host:port>/``)."""


def contract_tls_registry(image: TlsTestImage) -> ContractTlsRegistry:
    """The TLS registry as the engine contract suite's ``fogwire_tls_registry`` fixture gives it."""
    from fogwire.engine import RegistryAuth
    from fogwire.testing import ContractTlsRegistry

    auth = RegistryAuth(image.registry, image.username, image.password, ca_pem=image.ca_pem)
    cert_dirs = tuple(root / image.registry for root in DAEMON_CERTS_DIRS)
    return ContractTlsRegistry(image.registry, auth, image.reference, cert_dirs)


def _tls_registry_digest(tls: TlsRegistry, repository: str, tag: str) -> str | None:
    """The manifest digest the TLS registry holds for ``repository:tag`` (checked with its CA), or None."""
    import ssl

    req = urllib.request.Request(
        f"https://{tls.url}/v2/{repository}/manifests/{tag}",
        method="HEAD",
        headers={
            "Accept": ", ".join([MT_MANIFEST, MT_INDEX]),
            "Authorization": "Basic " + base64.b64encode(f"{tls.username}:{tls.password}".encode()).decode(),
        },
    )
    context = ssl.create_default_context(cafile=str(tls.ca_cert))
    try:
        with urllib.request.urlopen(req, timeout=10, context=context) as resp:
            digest = resp.headers.get("Docker-Content-Digest")
            return str(digest) if digest else None
    except urllib.error.HTTPError as exc:
        exc.close()
        if exc.code == 404:
            return None
        raise


def ensure_tls_test_image(tls: TlsRegistry, images: TestImages) -> TlsTestImage:
    """Push ``fogwire/busybox:1`` of ``images`` to the TLS registry unless it holds it (skopeo trusts its CA).

    Idempotent and safe from concurrent processes, like :func:`ensure_test_images`.
    """
    with open(images.layout.parent / ".lock-tls", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if _tls_registry_digest(tls, REPOSITORY, "1") != images.digest_v1:
            reference = f"{tls.url}/{REPOSITORY}:1"
            _push_layout(images.layout, "1", reference, f"{tls.username}:{tls.password}", cert_dir=tls.cert_dir)
            pushed = _tls_registry_digest(tls, REPOSITORY, "1")
            if pushed != images.digest_v1:
                raise RuntimeError(
                    f"pushed {REPOSITORY}:1 to {tls.url} but it reports {pushed}, not {images.digest_v1}"
                )
    return TlsTestImage(
        tls.url,
        f"{tls.url}/{REPOSITORY}:1",
        images.digest_v1,
        images.config_digest_v1,
        tls.username,
        tls.password,
        tls.ca_pem,
        tls.cert_dir,
    )


def _push_layout(layout: str | Path, tag: str, reference: str, creds: str, *, cert_dir: Path | None = None) -> None:
    """Push ``tag`` of the OCI layout to ``reference`` with skopeo: over TLS trusting ``cert_dir``, else plain HTTP."""
    tls = ["--dest-cert-dir", str(cert_dir)] if cert_dir is not None else ["--dest-tls-verify=false"]
    _skopeo("copy", "--quiet", *tls, "--dest-creds", creds, f"oci:{layout}:{tag}", f"docker://{reference}")


def _skopeo(*args: str) -> None:
    proc = subprocess.run(["skopeo", *args], capture_output=True, text=True, timeout=300)
    if proc.returncode != 0:
        # Never echo the argument list: it holds the registry password.
        raise RuntimeError(f"skopeo {args[0]} failed ({proc.returncode}): {proc.stderr.strip()}")


def _tar_layout(layout: Path, dest: Path) -> None:
    """A deterministic tarball of an OCI layout directory."""
    tmp = dest.with_suffix(".tar.tmp")
    with tarfile.open(tmp, "w", format=tarfile.PAX_FORMAT) as tar:
        for path in sorted(layout.rglob("*")):
            rel = path.relative_to(layout).as_posix()
            if path.is_dir():
                tar.addfile(_tarinfo(rel, tarfile.DIRTYPE, 0o755))
            else:
                data = path.read_bytes()
                tar.addfile(_tarinfo(rel, tarfile.REGTYPE, 0o644, len(data)), io.BytesIO(data))
    tmp.replace(dest)


def ensure_test_images(registry: Registry) -> TestImages:
    """Build the busybox test images and push ``fogwire/busybox:1`` and ``:2``.

    Idempotent and cached under ``$FOGWIRE_HARNESS_DIR/images``: the layouts
    are rebuilt only if busybox changed, a tag is pushed only if the registry
    does not already hold its digest, and the tarballs are written only once.
    Safe to call from concurrent processes (a file lock serialises them).
    """
    from harness.services import harness_dir

    root = harness_dir() / "images"
    root.mkdir(parents=True, exist_ok=True)
    with open(root / ".lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        return _ensure_locked(registry, root)


def _ensure_locked(registry: Registry, root: Path) -> TestImages:
    stamp_key = hashlib.sha256(
        BUSYBOX.read_bytes() + _canonical([APPLETS, MARKERS, machine_arch(), Path(__file__).read_bytes().hex()])
    ).hexdigest()
    layout = root / "oci"
    stamp = root / "layout.stamp"
    built: dict[str, LayoutImage] = {}
    if not stamp.exists() or stamp.read_text() != stamp_key:
        shutil.rmtree(layout, ignore_errors=True)
        for name in ("busybox-oci.tar", "busybox-docker.tar"):
            (root / name).unlink(missing_ok=True)
        for tag in TAGS:
            built[tag] = build_busybox_layout(layout, tag, MARKERS[tag])
        stamp.write_text(stamp_key)
    else:
        index = json.loads((layout / "index.json").read_text())
        for m in index["manifests"]:
            tag = m["annotations"][REF_NAME]
            manifest = json.loads(_read_blob(layout, m["digest"]))
            config = json.loads(_read_blob(layout, manifest["config"]["digest"]))
            built[tag] = LayoutImage(
                layout,
                tag,
                m["digest"],
                manifest["config"]["digest"],
                manifest["layers"][0]["digest"],
                config["rootfs"]["diff_ids"][0],
            )

    creds = f"{registry.username}:{registry.password}"
    for tag in TAGS:
        if _registry_digest(registry, REPOSITORY, tag) != built[tag].digest:
            _push_layout(layout, tag, f"{registry.url}/{REPOSITORY}:{tag}", creds)
            pushed = _registry_digest(registry, REPOSITORY, tag)
            if pushed != built[tag].digest:
                raise RuntimeError(
                    f"pushed {REPOSITORY}:{tag} but the registry reports {pushed}, not {built[tag].digest}"
                )

    oci_archive = root / "busybox-oci.tar"
    if not oci_archive.exists():
        single = root / "oci-single"
        shutil.rmtree(single, ignore_errors=True)
        build_busybox_layout(single, f"{REPOSITORY}:1", MARKERS["1"])
        _tar_layout(single, oci_archive)
        shutil.rmtree(single)
    docker_archive = root / "busybox-docker.tar"
    if not docker_archive.exists():
        tmp = root / "busybox-docker.tar.tmp"
        tmp.unlink(missing_ok=True)
        _skopeo("copy", "--quiet", f"oci:{layout}:1", f"docker-archive:{tmp}:{REPOSITORY}:1")
        tmp.replace(docker_archive)

    repo = f"{registry.url}/{REPOSITORY}"
    return TestImages(
        registry=registry.url,
        repository=repo,
        ref_v1=f"{repo}:1",
        ref_v2=f"{repo}:2",
        digest_v1=built["1"].digest,
        digest_v2=built["2"].digest,
        config_digest_v1=built["1"].config_digest,
        config_digest_v2=built["2"].config_digest,
        layout=layout,
        oci_archive=oci_archive,
        docker_archive=docker_archive,
        username=registry.username,
        password=registry.password,
    )
