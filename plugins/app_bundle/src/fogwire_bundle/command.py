"""``fogwire bundle``: create, import and watch offline image bundles.

A bundle carries container images to a node that never sees a registry: an OCI
image layout (each blob once) in a tar, a zstd-compressed tar or a squashfs image,
with ``fogwire-bundle.json`` listing every image and blob. See ``docs/bundles.md``.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import logging
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from collections.abc import AsyncIterator

    from fogwire_bundle.importer import ImportResult, Target
    from fogwire_bundle.registry import Credentials, RegistryClient

log = logging.getLogger("fogwire.bundle")

EXAMPLES = """\
examples:
  fogwire bundle create -o site.tar.zst --compress zstd \\
      --registry-user me --registry-password-file pw.txt registry.example.com/app:1.2
  fogwire bundle create -o site.sqfs --format squashfs --platform linux/arm64 app:1.2 db:16
  fogwire bundle import site.tar.zst --engine docker
  fogwire bundle import koffer-bundle.apps.tar --registry http://127.0.0.1:5000 --insecure
  fogwire bundle watch /var/lib/fogwire/bundles --engine containerd
"""


def _add_registry_options(parser: argparse.ArgumentParser) -> None:
    group = parser.add_argument_group("registry credentials")
    group.add_argument("--registry-user", metavar="USER", help="user name for the registry")
    group.add_argument(
        "--registry-password-file", metavar="FILE", help="file holding the registry password (first line)"
    )
    group.add_argument(
        "--registry-file", metavar="FILE", help="a Registry document (kind: Registry) with url, username, password"
    )
    group.add_argument(
        "--insecure",
        action="store_true",
        help="skip TLS verification, or plain http for a registry without TLS (a lab LAN registry; loopback is plain http anyway)",
    )


def _add_target_options(parser: argparse.ArgumentParser) -> None:
    target = parser.add_mutually_exclusive_group()
    target.add_argument(
        "--engine", metavar="NAME", help="load into this container engine plugin (docker, containerd, …)"
    )
    target.add_argument("--registry", metavar="URL", help="push to this registry: [http(s)://]host[:port][/prefix]")
    parser.add_argument("--engine-url", metavar="URL", help="the engine's socket/URL (default: the engine's own)")
    parser.add_argument(
        "--platform", metavar="OS/ARCH", help="variant to load into an engine (default: this machine's)"
    )
    parser.add_argument(
        "--work-dir", metavar="DIR", help="where the bundle is staged and verified (default: STATE_DIR/bundles/work)"
    )
    parser.add_argument("--json", action="store_true", help="print a JSON summary on stdout")
    parser.add_argument(
        "--force",
        action="store_true",
        help="verify and import even if this unchanged file was imported into this target before",
    )
    _add_registry_options(parser)


def add_arguments(name: str, parser: argparse.ArgumentParser) -> None:
    """Sub-commands ``create``, ``import`` and ``watch``."""
    parser.epilog = EXAMPLES
    sub = parser.add_subparsers(dest="bundle_command", metavar="ACTION", required=True)

    create = sub.add_parser(
        "create", help="write a bundle of images from registries", formatter_class=argparse.RawDescriptionHelpFormatter
    )
    create.add_argument("images", nargs="+", metavar="IMAGE", help="image reference (registry/repo:tag or @digest)")
    create.add_argument("-o", "--output", required=True, metavar="FILE", help="the bundle file to write")
    create.add_argument("--format", choices=("tar", "squashfs"), default="tar", help="archive format (default tar)")
    create.add_argument(
        "--compress",
        choices=("none", "zstd"),
        default="none",
        help="compress a tar bundle with zstd (the zstd command)",
    )
    create.add_argument(
        "--platform",
        action="append",
        default=[],
        metavar="OS/ARCH",
        help="keep only this variant of multi-architecture images (repeatable; default: keep all)",
    )
    create.add_argument(
        "--engine", metavar="NAME", help="take images from a local engine (not possible yet: see docs/bundles.md)"
    )
    create.add_argument("--json", action="store_true", help="print a JSON summary on stdout")
    _add_registry_options(create)

    imp = sub.add_parser("import", help="verify a bundle and load it into an engine or push it to a registry")
    imp.add_argument("file", metavar="FILE", help="a bundle: .tar, .tar.zst, squashfs, or a Koffer .tar")
    _add_target_options(imp)

    watch = sub.add_parser("watch", help="import every bundle dropped into a directory")
    watch.add_argument("directory", metavar="DIR", help="the drop directory (done/ and failed/ are made inside)")
    watch.add_argument("--interval", type=float, default=2.0, metavar="S", help="seconds between scans (default 2)")
    watch.add_argument(
        "--settle", type=float, default=2.0, metavar="S", help="size/mtime must be stable this long (default 2)"
    )
    watch.add_argument("--once", action="store_true", help="import what is there (once settled), then exit")
    _add_target_options(watch)


# ---------------------------------------------------------------------- credentials


def _credentials(args: argparse.Namespace) -> tuple[str | None, Credentials | None, bool]:
    """``(server or None for any, credentials, insecure)`` from the flags."""
    from fogwire_bundle.errors import BundleError
    from fogwire_bundle.registry import Credentials

    insecure = bool(args.insecure)
    if args.registry_file:
        return _registry_document(Path(args.registry_file), insecure)
    if args.registry_password_file and not args.registry_user:
        raise BundleError("--registry-password-file needs --registry-user")
    if args.registry_user:
        if not args.registry_password_file:
            raise BundleError("--registry-user needs --registry-password-file (a password is never a flag)")
        path = Path(args.registry_password_file)
        try:
            lines = path.read_text().splitlines()
        except OSError as error:
            raise BundleError(f"{path}: cannot read the password file: {error.strerror or error}") from None
        password = lines[0] if lines else ""
        return None, Credentials(args.registry_user, password), insecure
    return None, None, insecure


def _registry_document(path: Path, insecure: bool) -> tuple[str | None, Credentials | None, bool]:
    from fogwire.builtin.file_source import load_documents
    from fogwire.convert import make_converter, structure
    from fogwire.model.iofog import Registry
    from fogwire_bundle.errors import BundleError
    from fogwire_bundle.registry import Credentials, parse_server

    try:
        text = path.read_text(encoding="utf-8")
    except OSError as error:
        raise BundleError(f"{path}: cannot read the Registry document: {error.strerror or error}") from None
    documents = [d for d in load_documents(text, str(path)) if isinstance(d, dict) and d.get("kind") == "Registry"]
    if not documents:
        raise BundleError(f"{path}: holds no document of kind Registry")
    registry = structure(make_converter(), documents[0], Registry, str(path), 1)
    server, _, scheme_insecure = parse_server(registry.spec.url)
    credentials = Credentials(registry.spec.username, registry.spec.password) if registry.spec.username else None
    return server, credentials, insecure or registry.spec.insecure or bool(scheme_insecure)


def _client_factory(args: argparse.Namespace) -> Any:
    from fogwire_bundle.registry import RegistryClient, is_loopback

    only, credentials, insecure = _credentials(args)
    cache: dict[str, RegistryClient] = {}

    def clients(server: str) -> RegistryClient:
        if not server:
            server = "registry-1.docker.io"
        if server not in cache:
            creds = credentials if only is None or only == server else None
            if insecure and not is_loopback(server):
                log.warning(
                    "not verifying the TLS certificate of %s, or plain http if it has none (--insecure)", server
                )
            cache[server] = RegistryClient(server, creds, insecure=insecure)
        return cache[server]

    return clients


# ---------------------------------------------------------------------- commands


def _create(args: argparse.Namespace) -> int:
    from fogwire.cli.common import print_json
    from fogwire_bundle.archive import Format
    from fogwire_bundle.create import create_bundle
    from fogwire_bundle.errors import BundleError
    from fogwire_bundle.oci import Platform
    from fogwire_bundle.progress import Progress

    if args.engine:
        raise BundleError(
            f"--engine {args.engine}: the engine contract has no image export method yet, so bundles are "
            "created from registries; push the image to a registry (or run one on loopback) and name it there"
        )
    fmt = Format.SQUASHFS if args.format == "squashfs" else Format.TAR_ZSTD if args.compress == "zstd" else Format.TAR
    platforms = [Platform.parse(p) for p in args.platform]
    progress = Progress(sys.stderr, quiet=bool(args.json))
    result = create_bundle(
        Path(args.output), args.images, _client_factory(args), fmt=fmt, platforms=platforms, progress=progress
    )
    if args.json:
        print_json(
            {
                "bundle": str(result.path),
                "format": fmt.value,
                "bytes": result.bytes,
                "images": [
                    {"reference": i.reference, "digest": i.digest, "platforms": list(i.platforms)}
                    for i in result.images
                ],
                "blobs": len(result.blobs),
                "blobBytes": sum(b.size for b in result.blobs),
            }
        )
    else:
        print(f"wrote {result.path}: {len(result.images)} image(s), {len(result.blobs)} blob(s), {result.bytes} bytes")
    return 0


def _work_dir(args: argparse.Namespace) -> Path:
    from fogwire.cli.common import paths_from

    if args.work_dir:
        return Path(args.work_dir)
    return paths_from(args).state_dir / "bundles" / "work"


def _cache_file(args: argparse.Namespace) -> Path | None:
    from fogwire.cli.common import paths_from

    return None if args.force else paths_from(args).state_dir / "bundles" / "imported.json"


@contextlib.asynccontextmanager
async def _target(args: argparse.Namespace) -> AsyncIterator[Target]:
    """The engine or registry target the flags name (an engine is started and closed)."""
    from fogwire.cli.common import paths_from
    from fogwire_bundle.errors import BundleError
    from fogwire_bundle.importer import EngineTarget, RegistryTarget
    from fogwire_bundle.oci import Platform, machine_platform
    from fogwire_bundle.registry import parse_server

    paths = paths_from(args)
    if args.registry:
        server, prefix, scheme_insecure = parse_server(args.registry)
        if scheme_insecure:
            args.insecure = True
        client: RegistryClient = _client_factory(args)(server)
        resume = paths.state_dir / "bundles" / "uploads.json"
        yield RegistryTarget(client, prefix, resume)
        return
    if not args.engine:
        raise BundleError("say where to import: --engine NAME (docker, containerd, …) or --registry URL")
    from fogwire.engine import EngineContext
    from fogwire.plugins import PluginHost

    factory = PluginHost().engine_factory(args.engine)
    url, options, agent_id = _engine_settings(args, paths.config_file)
    context = EngineContext(
        agent_id=agent_id,
        data_dir=paths.state_dir / "engine",
        run_dir=paths.run_dir,
        log_dir=paths.log_dir,
        url=url,
        options=options,
    )
    engine = factory(context)
    await engine.start()
    try:
        platform = Platform.parse(args.platform) if args.platform else machine_platform()
        yield EngineTarget(engine, platform)
    finally:
        await engine.close()


def _engine_settings(args: argparse.Namespace, config_file: Path) -> tuple[str | None, dict[str, Any], str]:
    """URL, options and agent id of the engine: the agent config's when it selects the same engine.

    So ``fogwire bundle import FILE --engine containerd`` loads into the socket and
    namespace the daemon uses; ``--engine-url`` still wins.
    """
    from fogwire.config import load_agent_config
    from fogwire.errors import ConfigError

    url: str | None = args.engine_url
    try:
        profile = load_agent_config(config_file).profile if config_file.exists() else None
    except ConfigError as error:
        log.warning("ignoring the agent config %s for the engine settings: %s", config_file, error)
        profile = None
    if profile is None or (profile.container_engine or "containerd") != args.engine:
        return url, {}, "fogwire-bundle"
    return url or profile.container_engine_url, dict(profile.engine_options), profile.agent_id


def _print_result(result: ImportResult, as_json: bool) -> None:
    from fogwire.cli.common import print_json
    from fogwire_bundle.progress import human

    if as_json:
        print_json(result.to_json())
        return
    for image in result.images:
        print(f"{image.reference}: {image.status} as {image.target}")
    if result.cached:
        print(f"{result.bundle}: this unchanged file was imported before and {result.target} still holds it all")
    print(
        f"imported {result.bundle} ({result.kind}, {result.format}) into {result.target}: "
        f"{human(result.bytes_moved)} moved, {human(result.bytes_skipped)} already there, {result.seconds:.1f}s"
    )


def _import(args: argparse.Namespace) -> int:
    from fogwire_bundle.importer import import_bundle
    from fogwire_bundle.progress import Progress

    async def main() -> ImportResult:
        async with _target(args) as target:
            progress = Progress(sys.stderr, quiet=bool(args.json))
            return await import_bundle(
                Path(args.file), target, work_dir=_work_dir(args), progress=progress, cache_file=_cache_file(args)
            )

    _print_result(asyncio.run(main()), bool(args.json))
    return 0


def _watch(args: argparse.Namespace) -> int:
    from fogwire_bundle.importer import import_bundle
    from fogwire_bundle.progress import Progress
    from fogwire_bundle.watch import BundleWatcher, WatchOutcome

    failures = 0

    def report(outcome: WatchOutcome) -> None:
        nonlocal failures
        if outcome.ok and outcome.result is not None:
            _print_result(outcome.result, bool(args.json))
        else:
            failures += 1
            print(f"fogwire bundle watch: {outcome.bundle} failed: {outcome.reason}", file=sys.stderr)

    async def main() -> None:
        async with _target(args) as target:
            work = _work_dir(args)

            async def importer(path: Path) -> ImportResult:
                progress = Progress(sys.stderr, quiet=bool(args.json))
                return await import_bundle(path, target, work_dir=work, progress=progress, cache_file=_cache_file(args))

            watcher = BundleWatcher(
                Path(args.directory), importer, interval=args.interval, settle=args.settle, on_done=report
            )
            await watcher.run(once=bool(args.once))

    asyncio.run(main())
    return 1 if args.once and failures else 0


def run(args: argparse.Namespace) -> int:
    """Dispatch to ``create``, ``import`` or ``watch``."""
    if args.bundle_command == "create":
        return _create(args)
    if args.bundle_command == "import":
        return _import(args)
    return _watch(args)
