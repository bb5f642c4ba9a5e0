"""The ``fogwire router`` command: run skrouterd under the supervisor (also the container entrypoint).

Options override the environment variables of the original wrapper image:

=====================  ============================  ==========================================
option                 environment                   default
=====================  ============================  ==========================================
``--platform``         ``SKUPPER_PLATFORM``          ``pot`` (``iofog`` is an alias; or ``kubernetes``)
``--conf``             ``QDROUTERD_CONF``            ``/tmp/skrouterd.json``
``--skrouterd``        ``SKROUTERD_BIN``             ``$QDROUTERD_HOME/sbin/skrouterd`` if present, else ``skrouterd``
(none)                 ``QDROUTERD_HOME``            ``/home/skrouterd`` (passed to skrouterd)
``--ssl-profile-path`` ``SSL_PROFILE_PATH``          ``/etc/skupper-router-certs``
``--management-url``   ``SKROUTER_MANAGEMENT_URL``   the config's first plain AMQP listener
=====================  ============================  ==========================================

``--source NAME`` and ``--source-option KEY=VALUE`` pick another config source of
router config (``router-file``, a local file; ``file`` is taken to mean it, since
core's ``file`` source holds ioFog documents). Exit status: skrouterd's own when it stops after a
signal, 1 when no usable config ever arrived, 2 on a usage error.
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
from collections.abc import Mapping
from pathlib import Path

DEFAULT_CONF = "/tmp/skrouterd.json"


def build_parser() -> argparse.ArgumentParser:
    """The parser of ``fogwire router`` (it parses its own argv: it is the container entrypoint)."""
    parser = argparse.ArgumentParser(
        prog="fogwire router",
        description="Supervise skrouterd and apply its config live over AMQP management.",
    )
    parser.add_argument("--platform", help="pot, iofog or kubernetes (default: $SKUPPER_PLATFORM or pot)")
    parser.add_argument(
        "--source", help="config source name (default: chosen by the platform; 'file' means 'router-file')"
    )
    parser.add_argument(
        "--source-option", action="append", default=[], metavar="KEY=VALUE", help="an option for the config source"
    )
    parser.add_argument("--conf", help="skrouterd config file (default: $QDROUTERD_CONF or /tmp/skrouterd.json)")
    parser.add_argument("--skrouterd", help="skrouterd binary (default: $SKROUTERD_BIN)")
    parser.add_argument("--ssl-profile-path", help="SSL profile directories (default: $SSL_PROFILE_PATH)")
    parser.add_argument(
        "--ssl-keep-ordinals", type=int, default=1, help="previous certificate generations kept valid (default 1)"
    )
    parser.add_argument("--management-url", help="router management address (default: from the config)")
    parser.add_argument("--request-timeout", type=float, default=5.0, help="seconds per management request")
    parser.add_argument("--backoff-initial", type=float, default=0.5, help="first restart delay after a crash, seconds")
    parser.add_argument("--backoff-max", type=float, default=30.0, help="longest restart delay, seconds")
    parser.add_argument(
        "--crash-loop-count", type=int, default=5, help="crashes in the window reported as a crash loop"
    )
    parser.add_argument(
        "--stop-timeout", type=float, default=10.0, help="seconds skrouterd gets to stop before SIGKILL"
    )
    parser.add_argument("--poll-interval", type=float, default=0.5, help="SSL profile directory poll interval, seconds")
    parser.add_argument("--log-level", default=os.environ.get("FOGWIRE_LOG_LEVEL", "INFO"))
    return parser


def settings_from(args: argparse.Namespace, environ: Mapping[str, str]) -> object:
    """Build :class:`~fogwire_router.supervisor.RouterSettings` from parsed options and the environment."""
    from fogwire_router.supervisor import PLATFORM_SOURCES, RouterSettings

    platform = (args.platform or environ.get("SKUPPER_PLATFORM") or "pot").strip().lower()
    if platform not in PLATFORM_SOURCES:
        raise ValueError(f"SKUPPER_PLATFORM={platform!r} is not one of pot, iofog, kubernetes")
    options: dict[str, str] = {}
    for item in args.source_option:
        key, sep, value = item.partition("=")
        if not sep:
            raise ValueError(f"--source-option {item!r}: expected KEY=VALUE")
        options[key] = value
    conf = Path(args.conf or environ.get("QDROUTERD_CONF") or DEFAULT_CONF)
    home = environ.get("QDROUTERD_HOME") or "/home/skrouterd"
    binary = args.skrouterd or environ.get("SKROUTERD_BIN")
    if not binary:
        candidate = Path(home) / "sbin" / "skrouterd"
        binary = str(candidate) if candidate.is_file() else "skrouterd"
    return RouterSettings(
        platform=platform,
        source={"file": "router-file"}.get(args.source, args.source) or PLATFORM_SOURCES[platform],
        source_options=options,
        conf=conf,
        write_conf=platform != "kubernetes",
        skrouterd=binary,
        home=home,
        ssl_profile_path=Path(args.ssl_profile_path or environ.get("SSL_PROFILE_PATH") or "/etc/skupper-router-certs"),
        ssl_keep_ordinals=args.ssl_keep_ordinals,
        management_url=args.management_url or environ.get("SKROUTER_MANAGEMENT_URL") or None,
        request_timeout=args.request_timeout,
        backoff_initial=args.backoff_initial,
        backoff_max=args.backoff_max,
        crash_loop_count=args.crash_loop_count,
        stop_timeout=args.stop_timeout,
        poll_interval=args.poll_interval,
        environ=dict(environ),
    )


def main(argv: list[str]) -> int:
    """Run ``fogwire router`` with ``argv`` (without the command words); return the exit status."""
    import asyncio

    parser = build_parser()
    args = parser.parse_args(argv)
    logging.basicConfig(
        level=getattr(logging, str(args.log_level).upper(), logging.INFO),
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        stream=sys.stderr,
    )
    try:
        settings = settings_from(args, os.environ)
    except ValueError as error:
        parser.error(str(error))
    from fogwire.errors import FogwireError
    from fogwire_router.supervisor import RouterSettings, RouterSupervisor

    assert isinstance(settings, RouterSettings)
    try:
        return asyncio.run(RouterSupervisor(settings).run())
    except FogwireError as error:
        logging.getLogger("fogwire.router").error("%s", error)
        return 1


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
