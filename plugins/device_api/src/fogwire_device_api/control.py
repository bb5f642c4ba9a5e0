"""The control websockets: a microservice is told its config changed, and must say it heard.

Both generations send the same one-byte binary messages: ``0x0C`` (config
changed) from the agent, ``0x0B`` (ack) from the microservice. A signal not acked
within ``ack_timeout_s`` is sent again, up to ``max_tries`` times; then the socket
is dropped (the SDKs reconnect and re-read their config). A quiet socket is
pinged every ``ping_s``; one that answers no ping before the next is dropped too.
wsproto (sans-IO) does the websocket protocol; this module owns the socket.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable

from wsproto import ConnectionType, WSConnection
from wsproto.events import (
    AcceptConnection,
    BytesMessage,
    CloseConnection,
    Ping,
    Pong,
    RejectConnection,
    Request,
)
from wsproto.utilities import RemoteProtocolError

log = logging.getLogger(__name__)

CONFIG_CHANGED = b"\x0c"
ACK = b"\x0b"


class ControlSession:
    """One microservice's control websocket, from the handshake to its end."""

    def __init__(
        self,
        microservice: str,
        reader: asyncio.StreamReader,
        writer: asyncio.StreamWriter,
        *,
        ack_timeout_s: float = 20.0,
        max_tries: int = 10,
        ping_s: float = 30.0,
    ) -> None:
        self.microservice = microservice
        self.reader = reader
        self.writer = writer
        self.ack_timeout_s = ack_timeout_s
        self.max_tries = max_tries
        self.ping_s = ping_s
        self.ws = WSConnection(ConnectionType.SERVER)
        self._signal = asyncio.Event()
        self._acked = asyncio.Event()
        self._pong = asyncio.Event()
        self._closed = asyncio.Event()
        self.signals_sent = 0
        self.acks = 0

    def signal(self) -> None:
        """Tell the microservice its config changed (coalesced with a signal not yet acked)."""
        self._signal.set()

    def _write(self, event: object) -> None:
        data = self.ws.send(event)  # type: ignore[arg-type]
        if data:
            self.writer.write(data)

    async def handshake(self, raw_request: bytes) -> bool:
        """Accept the upgrade carried by ``raw_request`` (the request's bytes as received)."""
        try:
            self.ws.receive_data(raw_request)
            for event in self.ws.events():
                if isinstance(event, Request):
                    self._write(AcceptConnection())
                    await self.writer.drain()
                    return True
        except RemoteProtocolError as error:
            with contextlib.suppress(Exception):
                self._write(RejectConnection(status_code=400))
                await self.writer.drain()
            log.info("control websocket of %s refused: %s", self.microservice, error)
        return False

    async def run(self, on_end: Callable[[ControlSession], None] | None = None) -> None:
        """Serve the socket until either side ends it or it is dropped."""
        tasks = [
            asyncio.create_task(self._read(), name=f"fogwire-control-read-{self.microservice}"),
            asyncio.create_task(self._signals(), name=f"fogwire-control-signal-{self.microservice}"),
            asyncio.create_task(self._pings(), name=f"fogwire-control-ping-{self.microservice}"),
        ]
        try:
            await asyncio.wait(tasks, return_when=asyncio.FIRST_COMPLETED)
        finally:
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
            self._closed.set()
            if on_end is not None:
                on_end(self)
            with contextlib.suppress(Exception):
                self._write(CloseConnection(code=1000))
                await asyncio.wait_for(self.writer.drain(), 1)

    async def _read(self) -> None:
        while True:
            data = await self.reader.read(4096)
            if not data:
                return
            self.ws.receive_data(data)
            for event in self.ws.events():
                if isinstance(event, BytesMessage):
                    if bytes(event.data)[:1] == ACK:
                        self.acks += 1
                        self._acked.set()
                elif isinstance(event, Ping):
                    self._write(event.response())
                elif isinstance(event, Pong):
                    self._pong.set()
                elif isinstance(event, CloseConnection):
                    with contextlib.suppress(Exception):
                        self._write(event.response())
                    return
            await self.writer.drain()

    async def _signals(self) -> None:
        while True:
            await self._signal.wait()
            self._signal.clear()
            for attempt in range(1, self.max_tries + 1):
                self._acked.clear()
                self._write(BytesMessage(data=CONFIG_CHANGED))
                await self.writer.drain()
                self.signals_sent += 1
                try:
                    await asyncio.wait_for(self._acked.wait(), self.ack_timeout_s)
                    break
                except TimeoutError:
                    log.info(
                        "control websocket of %s: config signal %d/%d not acked",
                        self.microservice,
                        attempt,
                        self.max_tries,
                    )
            else:
                log.warning(
                    "control websocket of %s dropped: %d signals never acked", self.microservice, self.max_tries
                )
                return

    async def _pings(self) -> None:
        while True:
            await asyncio.sleep(self.ping_s)
            self._pong.clear()
            self._write(Ping(payload=b"fogwire"))
            await self.writer.drain()
            try:
                await asyncio.wait_for(self._pong.wait(), self.ping_s)
            except TimeoutError:
                log.warning("control websocket of %s dropped: no pong in %.0fs", self.microservice, self.ping_s)
                return
