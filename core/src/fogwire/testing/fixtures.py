"""Fixtures of the engine contract suite, registered by :mod:`fogwire.testing.plugin`.

Every name starts with ``fogwire_`` so it never clashes with a host's fixtures.
The host overrides ``fogwire_registry`` and ``fogwire_image_archives`` (they have
no default) and may override the others.
"""

from __future__ import annotations

import secrets
import tempfile
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator, Mapping
from pathlib import Path
from typing import Any

import pytest
import pytest_asyncio

from fogwire.engine import Engine, EngineContext
from fogwire.errors import EngineError
from fogwire.plugins import PluginHost
from fogwire.testing import (
    ContractArchives,
    ContractRegistry,
    ContractRuntime,
    ContractTlsRegistry,
    UnmanagedContainers,
)

EngineMaker = Callable[[str], Awaitable[Engine]]
"""``await make(agent_id)``: a started engine of the plugin under test for that agent."""


@pytest.fixture(scope="session")
def fogwire_engine_name(request: pytest.FixtureRequest) -> str:
    """The engine under test: ``--fogwire-engine NAME``; override it to test several engines."""
    name: str | None = request.config.getoption("fogwire_engine")
    if not name:
        pytest.fail(
            "no engine selected for the fogwire contract suite: run pytest with --fogwire-engine NAME, "
            "or override the fogwire_engine_name fixture in the test module",
            pytrace=False,
        )
    return name


@pytest.fixture(scope="session")
def fogwire_engine_url(request: pytest.FixtureRequest) -> str | None:
    """``EngineContext.url`` for the engine under test: ``--fogwire-engine-url`` or ``None``."""
    url: str | None = request.config.getoption("fogwire_engine_url")
    return url


@pytest.fixture(scope="session")
def fogwire_engine_options() -> Mapping[str, Any]:
    """``EngineContext.options`` for the engine under test; empty unless overridden."""
    return {}


@pytest.fixture(scope="session")
def fogwire_runtime() -> ContractRuntime | None:
    """A named OCI runtime the engine knows (engines with the ``runtime`` feature need one); ``None``: none."""
    return None


@pytest.fixture(scope="session")
def fogwire_registry() -> ContractRegistry:
    """The test registry; the host must provide this fixture (see ``fogwire.testing``)."""
    pytest.fail(
        "the fogwire contract suite needs a 'fogwire_registry' fixture returning "
        "fogwire.testing.ContractRegistry (a loopback registry with auth and two busybox images); "
        "define it in your conftest.py",
        pytrace=False,
    )


@pytest.fixture(scope="session")
def fogwire_tls_registry() -> ContractTlsRegistry:
    """A registry on HTTPS with a CA of its own; a host provides it, else the tests of a registry's CA skip."""
    pytest.skip(
        "no 'fogwire_tls_registry' fixture: the tests of a registry with its own CA need one returning "
        "fogwire.testing.ContractTlsRegistry; define it in your conftest.py"
    )


@pytest.fixture(scope="session")
def fogwire_image_archives() -> ContractArchives:
    """The image tarballs; the host must provide this fixture (see ``fogwire.testing``)."""
    pytest.fail(
        "the fogwire contract suite needs a 'fogwire_image_archives' fixture returning "
        "fogwire.testing.ContractArchives (a docker-archive and an OCI-layout tarball); define it in your conftest.py",
        pytrace=False,
    )


@pytest.fixture(scope="session")
def fogwire_plugin_host() -> PluginHost:
    """One plugin host for the session (engines are resolved through it by name)."""
    return PluginHost()


@pytest.fixture
def fogwire_engine_factory(
    fogwire_plugin_host: PluginHost, fogwire_engine_name: str
) -> Callable[[EngineContext], Engine]:
    """The factory the engine plugin registered, found through the real plugin host.

    Function-scoped on purpose: ``fogwire_engine_name`` may be overridden per
    directory, so one session can test several engines.
    """
    return fogwire_plugin_host.engine_factory(fogwire_engine_name)


@pytest.fixture
def fogwire_workdir() -> Iterator[Path]:
    """A short-pathed scratch directory (unix socket paths must stay under 108 bytes)."""
    with tempfile.TemporaryDirectory(prefix="fwc-") as d:
        yield Path(d)


@pytest_asyncio.fixture
async def fogwire_make_engine(
    fogwire_engine_factory: Callable[[EngineContext], Engine],
    fogwire_engine_url: str | None,
    fogwire_engine_options: Mapping[str, Any],
    fogwire_workdir: Path,
) -> AsyncIterator[EngineMaker]:
    """Make started engines for given agent ids; each is emptied and closed at teardown."""
    made: list[Engine] = []

    async def make(agent_id: str) -> Engine:
        base = fogwire_workdir / agent_id
        context = EngineContext(
            agent_id=agent_id,
            data_dir=base / "data",
            run_dir=base / "run",
            log_dir=base / "log",
            url=fogwire_engine_url,
            options=dict(fogwire_engine_options),
        )
        for d in (context.data_dir, context.run_dir, context.log_dir):
            d.mkdir(parents=True, exist_ok=True)
        engine = fogwire_engine_factory(context)
        await engine.start()
        made.append(engine)
        return engine

    yield make
    for engine in reversed(made):
        try:
            for workload in await engine.list_managed():
                await engine.remove(workload.name)
        finally:
            await engine.close()


@pytest_asyncio.fixture
async def fogwire_engine(fogwire_make_engine: EngineMaker) -> Engine:
    """A started engine of the plugin under test, for a fresh agent id."""
    return await fogwire_make_engine(f"contract-{secrets.token_hex(4)}")


class OtherAgentContainers:
    """The default :class:`UnmanagedContainers`: containers of another agent on the same engine.

    An engine plugin should override the ``fogwire_unmanaged`` fixture with one
    that creates containers without any fogwire label through its own client.
    """

    def __init__(self, make_engine: EngineMaker) -> None:
        self._make = make_engine
        self._engine: Engine | None = None

    async def _other(self) -> Engine:
        if self._engine is None:
            self._engine = await self._make(f"other-agent-{secrets.token_hex(4)}")
        return self._engine

    async def create(self, name: str, image: str) -> None:
        """Create and start ``name`` as another agent's workload."""
        from fogwire.engine import WorkloadSpec

        other = await self._other()
        await other.create(WorkloadSpec(name=name, image=image, command=("sleep", "3600")))
        await other.start_workload(name)

    async def state(self, name: str) -> str | None:
        """The other agent's view of ``name``."""
        info = await (await self._other()).inspect(name)
        return None if info is None else info.state.value

    async def remove(self, name: str) -> None:
        """Remove ``name`` as the other agent."""
        try:
            await (await self._other()).remove(name)
        except EngineError:
            pass


@pytest.fixture
def fogwire_unmanaged(fogwire_make_engine: EngineMaker) -> UnmanagedContainers:
    """Makes containers the agent under test must never see; see :class:`OtherAgentContainers`."""
    return OtherAgentContainers(fogwire_make_engine)
