"""Fixtures: a CA the test makes, a service-account directory, a real local API server."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from fogwire_config_pot.source import LocalApiSource
from fogwire_config_pot.testing import LocalApiServer, Pki, make_pki
from potlib import FAST, IDENTITY, SourceMaker

from fogwire.sources import SourceContext


@pytest.fixture(scope="session")
def pki(tmp_path_factory: pytest.TempPathFactory) -> Pki:
    """The CA and server certificate the local API serves."""
    return make_pki(tmp_path_factory.mktemp("pki"))


@pytest.fixture(scope="session")
def other_pki(tmp_path_factory: pytest.TempPathFactory) -> Pki:
    """An unrelated CA (and a server certificate it signed)."""
    return make_pki(tmp_path_factory.mktemp("other-pki"), prefix="other-")


@pytest.fixture
def serviceaccount(tmp_path: Path, pki: Pki) -> Path:
    """A service-account directory as Edgelet mounts it: ``token`` and ``ca.crt``."""
    directory = tmp_path / "serviceaccount"
    directory.mkdir()
    (directory / "token").write_text("token-one\n")
    (directory / "ca.crt").write_bytes(pki.ca_cert.read_bytes())
    return directory


@pytest.fixture
async def tls_server(pki: Pki) -> AsyncIterator[LocalApiServer]:
    """A local API over HTTPS speaking both generations."""
    server = LocalApiServer(identity=IDENTITY, ssl_context=pki.server_context())
    await server.start()
    yield server
    await server.stop()


@pytest.fixture
async def plain_server() -> AsyncIterator[LocalApiServer]:
    """A legacy agent: v2 only, plain HTTP."""
    server = LocalApiServer(identity=IDENTITY, protocols=("v2",))
    await server.start()
    yield server
    await server.stop()


@pytest.fixture
async def make_source(serviceaccount: Path) -> AsyncIterator[SourceMaker]:
    """Build sources (closed at teardown); ``environ`` defaults to the new SDK's identity variable."""
    made: list[LocalApiSource] = []

    def make(
        server: LocalApiServer | None = None, environ: dict[str, str] | None = None, **options: Any
    ) -> LocalApiSource:
        opts: dict[str, Any] = {**FAST, "token_path": str(serviceaccount / "token")}
        if server is not None:
            opts["port"] = server.port
        opts.update(options)
        env = {"EDGELET_MICROSERVICE_UID": IDENTITY} if environ is None else environ
        source = LocalApiSource(SourceContext(Path("/nonexistent"), Path("/nonexistent"), opts, env))
        made.append(source)
        return source

    yield make
    for source in made:
        await source.close()
