"""The docker engine's options, and its registration through the real plugin host."""

from __future__ import annotations

from pathlib import Path

import pytest
from fogwire_engine_docker.engine import DockerEngine, parse_options

from fogwire.engine import EngineContext
from fogwire.errors import ConfigError
from fogwire.plugins import PluginHost


def test_tls_options() -> None:
    opts = parse_options({"tlsCa": "/etc/fw/ca.pem", "tlsCert": "/etc/fw/cert.pem", "tlsKey": "/etc/fw/key.pem"})
    assert (opts.tls_ca, opts.tls_cert, opts.tls_key) == ("/etc/fw/ca.pem", "/etc/fw/cert.pem", "/etc/fw/key.pem")
    with pytest.raises(ConfigError, match="tlsCert and tlsKey must be given together"):
        parse_options({"tlsCert": "/etc/fw/cert.pem"})
    with pytest.raises(ConfigError, match="tls_verify"):
        parse_options({"tls_verify": True})


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"tls_cert": "/c", "tls_key": "/k"}, "engineOptions.tls_cert: unknown field: it is spelled 'tlsCert'"),
        ({"workers": 0}, "engineOptions.workers: expected an integer ≥ 1, got 0"),
        ({"timeoutS": "2m"}, "engineOptions.timeoutS: expected an integer ≥ 1, got '2m'"),
    ],
)
def test_a_bad_option_names_its_camel_case_path(options: dict[str, object], message: str) -> None:
    with pytest.raises(ConfigError) as caught:
        parse_options(options)
    assert str(caught.value).startswith(f"engineOptions (docker):DOC#1: {message}")


async def test_an_unreachable_daemon_is_a_clear_engine_error(tmp_path: Path) -> None:
    from fogwire.errors import EngineError

    context = EngineContext("a", tmp_path, tmp_path, tmp_path, url=f"unix://{tmp_path}/none.sock")
    engine = DockerEngine(context)
    with pytest.raises(EngineError, match="none.sock"):
        await engine.start()
    await engine.close()


def test_the_engine_is_registered_under_docker() -> None:
    registration = PluginHost(environ={}).resolve("engine", "docker")
    assert registration.owner == "fogwire-engine-docker"
    engine = registration.factory(EngineContext("a", Path("/tmp"), Path("/tmp"), Path("/tmp")))
    assert isinstance(engine, DockerEngine)
