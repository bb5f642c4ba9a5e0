"""The agent service contract: work a plugin runs inside the agent's daemon.

A service runs beside the agent's own loops for as long as the agent runs (the
offline-bundle watch folder is one: it imports bundles dropped into a directory
into the agent's engine). The agent config selects services by name
(``services: [{name: ..., options: {...}}]``); only the selected ones are loaded.
A service sees the agent only through :class:`AgentHandle`, the few things a
service may ask of it.
"""

from __future__ import annotations

import abc
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar, Protocol

import attrs

from fogwire._defaults import core_converter

if TYPE_CHECKING:
    from collections.abc import Callable, Collection

    import cattrs

    from fogwire.api.app import ApiApp
    from fogwire.api.metrics import Metrics
    from fogwire.engine import Engine, ResourceUsage
    from fogwire.model.desired import DesiredState
    from fogwire.reconcile import MicroserviceStatus, SpecAmender


class AgentHandle(Protocol):
    """What a running agent offers its services."""

    @property
    def engine(self) -> Engine:
        """The agent's started engine (load images into it, list workloads, …)."""

    async def retry_failed(self) -> list[str]:
        """Clear the backoff of every failed microservice and wake a pass; return their names."""

    async def add_event(self, kind: str, detail: str) -> None:
        """Record an event that ``fogwire status`` shows (``kind`` is a short word such as ``bundle-imported``)."""

    def statuses(self) -> list[MicroserviceStatus]:
        """Each microservice as the last pass and engine listing left it (no engine call: cheap to poll)."""

    async def prune(self) -> list[str]:
        """Remove images no microservice uses, now; return the removed references."""

    async def usage(self, names: Collection[str]) -> dict[str, ResourceUsage]:
        """CPU and memory of the running workloads among ``names``, where the engine can measure them."""

    def set_pruning_frequency(self, hours: int) -> None:
        """Prune every ``hours`` hours from now on (0: never), replacing the agent config's ``pruningFrequency``."""

    @property
    def api(self) -> ApiApp:
        """The agent API's route table: add routes, set the workload authenticator, serve it elsewhere."""

    @property
    def metrics(self) -> Metrics:
        """The agent's metrics (``GET /metrics``): add the service's own counters."""

    @property
    def desired(self) -> DesiredState:
        """The desired state the agent works towards now."""

    def add_desired_listener(self, listener: Callable[[DesiredState], None]) -> None:
        """Call ``listener`` (on the loop; it must not block) with every desired state the agent adopts."""

    def add_spec_amender(self, amender: SpecAmender) -> None:
        """Pass every resolved workload spec through ``amender`` before it is hashed and run.

        Call it while the service is built (in its constructor), so the first pass
        already runs amended specs; an amender must be a pure function of its inputs
        and of what the service knows, or every pass would see a change.
        """

    def respecify(self) -> None:
        """Say an amender's output changed (the host address moved): resolve again and reconcile."""


@attrs.frozen
class ServiceContext:
    """What the agent hands a service at construction.

    ``options`` are the service's own settings from the agent config, plain data to
    structure with :func:`fogwire.convert.structure_options` on ``converter``.
    """

    state_dir: Path
    run_dir: Path
    agent: AgentHandle
    options: Mapping[str, Any] = attrs.field(factory=dict)
    environ: Mapping[str, str] = attrs.field(factory=dict)
    converter: cattrs.Converter = attrs.field(factory=core_converter, repr=False, eq=False)


class AgentService(abc.ABC):
    """Base class of every agent service plugin."""

    name: ClassVar[str] = ""

    def __init__(self, context: ServiceContext) -> None:
        self.context = context

    async def start(self) -> None:  # noqa: B027 - optional hook with a default
        """Prepare before the agent's first pass (the engine is started). Default: nothing.

        What a spec amender needs from the engine (the device API's bridge address)
        is learnt here, so the first pass already runs the final specs.
        """

    @abc.abstractmethod
    async def run(self) -> None:
        """Do the service's work until cancelled.

        An exception ends this run: the agent logs it, records an event and runs the
        service again after a backoff, so a service need not guard every failure.
        """

    async def close(self) -> None:  # noqa: B027 - optional hook with a default
        """Release resources when the agent stops. Default: nothing."""
