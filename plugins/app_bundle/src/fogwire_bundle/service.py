"""The ``bundle-watch`` agent service: the daemon imports bundles dropped into a folder.

Selected in the agent config::

    services:
      - name: bundle-watch
        options: {dir: /var/lib/fogwire/bundles-inbox}

A bundle that lands is imported into the agent's engine (verified first; a partial
upload is waited for), moved to ``done/`` (or ``failed/`` with the reason), and the
microservices that failed (typically waiting for an image from registry ``local``)
are retried at once. Import state lives under ``<state dir>/bundles``.
"""

from __future__ import annotations

from pathlib import Path

import attrs

from fogwire.convert import structure_options
from fogwire.services import AgentService, ServiceContext
from fogwire_bundle.importer import EngineTarget, ImportResult, import_bundle
from fogwire_bundle.oci import machine_platform
from fogwire_bundle.watch import BundleWatcher, WatchOutcome


@attrs.frozen
class BundleWatchOptions:
    """``services[].options`` of ``bundle-watch``: ``dir`` is the folder bundles are dropped into."""

    dir: str


class BundleWatchService(AgentService):
    """Runs a :class:`~fogwire_bundle.watch.BundleWatcher` on the agent's engine."""

    name = "bundle-watch"

    def __init__(self, context: ServiceContext) -> None:
        super().__init__(context)
        options = structure_options(
            context.converter, context.options, BundleWatchOptions, plugin="bundle-watch", key="options"
        )
        self.directory = Path(options.dir)
        self.state = context.state_dir / "bundles"

    async def run(self) -> None:
        """Watch the folder until cancelled."""
        agent = self.context.agent
        target = EngineTarget(agent.engine, machine_platform())

        async def importer(path: Path) -> ImportResult:
            return await import_bundle(
                path, target, work_dir=self.state / "staging", cache_file=self.state / "imported.json"
            )

        async def landed(outcome: WatchOutcome) -> None:
            if not outcome.ok:
                return
            cleared = await agent.retry_failed()
            await agent.add_event("bundle-imported", f"{outcome.bundle}: retrying {', '.join(cleared) or 'nothing'}")

        await BundleWatcher(self.directory, importer, on_done=landed).run()
