"""Health checks of containerd workloads: run the image's or spec's check with ``Tasks.Exec``.

containerd has no health checks of its own (dockerd and podman run them), so the
engine runs each workload's check itself, on the loop, every ``interval_s``: the
check process is exec'd in the workload's task, waited for up to ``timeout_s``,
then deleted; ``retries`` failures in a row (after ``start_period_s``) make the
workload unhealthy. A change of health is emitted as a ``HEALTH`` event.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import signal
import threading
import time
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from typing import Any, TypeVar

from google.protobuf import any_pb2

from fogwire.engine import EngineEvent, EventKind, Health, HealthCheck
from fogwire.errors import EngineError
from fogwire_engine_containerd._client import Client, RpcError, containers_pb2, tasks_pb2
from fogwire_engine_containerd._spec import PROCESS_TYPE_URL, exec_process

log = logging.getLogger(__name__)

T = TypeVar("T")

Runner = Callable[..., Awaitable[Any]]
"""Runs a blocking function on the engine's thread pool: ``await run(fn, *args)``."""


class HealthChecks:
    """Each workload's health and the task checking it.

    :param run: the engine's thread-pool runner (checks block on gRPC calls).
    :param client: the engine's started client (a callable: it exists only after start).
    :param closing: set when the engine closes; every check loop ends.
    :param emit: hands a ``HEALTH`` event to the engine's subscribers.
    """

    def __init__(
        self,
        run: Runner,
        client: Callable[[], Client],
        closing: threading.Event,
        emit: Callable[[EngineEvent], None],
    ) -> None:
        self._run = run
        self._client = client
        self._closing = closing
        self._emit = emit
        self._tasks: dict[str, asyncio.Task[None]] = {}
        self._health: dict[str, Health] = {}

    def of(self, name: str) -> Health:
        """The workload's current health (``none`` when it has no check)."""
        return self._health.get(name, Health.NONE)

    def checking(self, name: str) -> bool:
        """True while a check loop runs for ``name``."""
        return name in self._tasks

    def start(self, name: str, check: HealthCheck) -> None:
        """(Re)start checking ``name``; it is ``starting`` until the first result."""
        self.stop(name)
        self._health[name] = Health.STARTING
        self._tasks[name] = asyncio.ensure_future(self._loop(name, check))

    def stop(self, name: str) -> None:
        """Stop checking ``name`` (its last health is kept until :meth:`forget`)."""
        task = self._tasks.pop(name, None)
        if task is not None and task is not asyncio.current_task():
            task.cancel()

    def forget(self, name: str) -> None:
        """Drop ``name``'s health (the workload is gone)."""
        self._health.pop(name, None)

    def tasks(self) -> list[asyncio.Task[None]]:
        """Every running check loop (the engine cancels them when it closes)."""
        return list(self._tasks.values())

    def _set(self, name: str, health: Health) -> None:
        if self._health.get(name) is not health:
            self._health[name] = health
            self._emit(EngineEvent(EventKind.HEALTH, name, datetime.now(UTC), health=health))

    async def _loop(self, name: str, check: HealthCheck) -> None:
        """Run the check every ``interval_s``; ``retries`` failures → unhealthy."""
        test = list(check.test)
        if not test or test[0] == "NONE":
            return
        if test[0] == "CMD-SHELL":
            args = ["/bin/sh", "-c", " ".join(test[1:])]
        elif test[0] == "CMD":
            args = test[1:]
        else:
            args = test
        started = time.monotonic()
        failures = 0
        with contextlib.suppress(asyncio.CancelledError):
            while not self._closing.is_set():
                try:
                    ok = await self._run(self._exec_check, name, args, check.timeout_s)
                except (RpcError, EngineError) as error:
                    log.debug("health check of %s could not run: %s", name, error)
                    ok = False
                if ok:
                    failures = 0
                    self._set(name, Health.HEALTHY)
                elif time.monotonic() - started >= check.start_period_s:
                    failures += 1
                    if failures >= max(1, check.retries):
                        self._set(name, Health.UNHEALTHY)
                await asyncio.sleep(check.interval_s)

    def _exec_check(self, name: str, args: list[str], timeout_s: float) -> bool:
        c = self._client()
        container = c.containers.Get(containers_pb2.GetContainerRequest(id=name), metadata=c.md(), timeout=30).container
        base = json.loads(container.spec.value)
        exec_id = f"health-{os.urandom(6).hex()}"
        c.tasks.Exec(
            tasks_pb2.ExecProcessRequest(
                container_id=name,
                exec_id=exec_id,
                spec=any_pb2.Any(type_url=PROCESS_TYPE_URL, value=exec_process(args, base)),
            ),
            metadata=c.md(),
            timeout=30,
        )
        try:
            waiter = c.tasks.Wait.future(tasks_pb2.WaitRequest(container_id=name, exec_id=exec_id), metadata=c.md())
            c.tasks.Start(tasks_pb2.StartRequest(container_id=name, exec_id=exec_id), metadata=c.md(), timeout=30)
            try:
                status = int(waiter.result(timeout=timeout_s).exit_status)
            except TimeoutError:
                with contextlib.suppress(RpcError):
                    c.tasks.Kill(
                        tasks_pb2.KillRequest(container_id=name, exec_id=exec_id, signal=signal.SIGKILL),
                        metadata=c.md(),
                        timeout=30,
                    )
                return False
            return status == 0
        finally:
            with contextlib.suppress(RpcError):
                c.tasks.DeleteProcess(
                    tasks_pb2.DeleteProcessRequest(container_id=name, exec_id=exec_id), metadata=c.md(), timeout=30
                )
