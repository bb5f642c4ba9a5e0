"""A blocking AMQP management client for skrouterd, on python-qpid-proton.

One connection, reused for every request and re-opened after it is lost. Every
request carries its own ``correlation_id`` and waits at most ``timeout`` seconds for
the reply that carries it (a late reply to an earlier, timed-out request is
discarded). A non-2xx ``statusCode`` is raised as :class:`ManagementError` with the
router's code and description, never ignored.

The client is not thread-safe: the sink calls it from one dedicated thread.
"""

from __future__ import annotations

import itertools
import logging
import time
from collections.abc import Mapping, Sequence
from typing import Any
from urllib.parse import urlsplit

import attrs

from fogwire.errors import SinkError

log = logging.getLogger(__name__)

TYPE_PREFIX = "io.skupper.router."


def long_type(type_name: str) -> str:
    """``tcpListener`` → ``io.skupper.router.tcpListener`` (``address`` → ``…router.config.address``)."""
    if type_name.startswith(TYPE_PREFIX):
        return type_name
    if type_name == "address":
        return TYPE_PREFIX + "router.config.address"
    return TYPE_PREFIX + type_name


class ManagementError(SinkError):
    """The router answered a management request with a non-2xx status.

    ``status_code`` and ``description`` are the router's own; the message also names
    the operation, the entity type and the entity.
    """

    def __init__(
        self, operation: str, entity_type: str | None, name: str | None, status_code: int | None, description: str
    ) -> None:
        self.operation = operation
        self.entity_type = entity_type
        self.name = name
        self.status_code = status_code
        self.description = description
        what = f"{operation} {entity_type or ''} {name or ''}".strip()
        code = f"status {status_code}: " if status_code is not None else ""
        super().__init__(f"router management {what} failed: {code}{description}")


class ManagementTimeout(ManagementError):
    """No reply within the request timeout (the request may or may not have been applied)."""


class ConnectionLost(SinkError):
    """The management connection could not be opened or was lost; the next request re-opens it."""


@attrs.frozen
class Response:
    """One management reply."""

    status_code: int
    description: str
    body: Any


@attrs.frozen
class ManagementUrl:
    """Where the router's management node is reachable (plain AMQP, no SASL)."""

    host: str
    port: int

    @classmethod
    def parse(cls, url: str) -> ManagementUrl:
        """``amqp://127.0.0.1:5672`` (or ``127.0.0.1:5672``) → host and port."""
        parts = urlsplit(url if "://" in url else f"amqp://{url}")
        return cls(parts.hostname or "127.0.0.1", parts.port or 5672)

    def __str__(self) -> str:
        return f"amqp://{self.host}:{self.port}"


class ManagementClient:
    """Request/response over the router's ``$management`` node."""

    def __init__(self, url: str, *, timeout: float = 5.0, connect_timeout: float | None = None) -> None:
        self.url = ManagementUrl.parse(url)
        self.timeout = timeout
        self.connect_timeout = connect_timeout if connect_timeout is not None else timeout
        self.generation = 0
        """Counts the connections opened; a change means the router may have restarted."""
        self._connection: Any = None
        self._sender: Any = None
        self._receiver: Any = None
        self._reply_to: str | None = None
        self._ids = itertools.count(1)
        self._suspect = False

    @property
    def connected(self) -> bool:
        """True while a connection is open."""
        return self._connection is not None

    def connect(self) -> None:
        """Open the connection, the ``$management`` sender and the dynamic reply receiver."""
        if self._connection is not None:
            return
        from proton.utils import BlockingConnection

        try:
            connection = BlockingConnection(str(self.url), timeout=self.connect_timeout, reconnect=False)
        except Exception as error:
            raise ConnectionLost(f"cannot connect to router management at {self.url}: {error}") from error
        try:
            self._sender = connection.create_sender("$management")
            self._receiver = connection.create_receiver(None, dynamic=True, credit=100)
            self._reply_to = self._receiver.remote_source.address
        except Exception as error:
            self._close(connection)
            raise ConnectionLost(f"cannot open management links at {self.url}: {error}") from error
        self._connection = connection
        self.generation += 1
        log.info("connected to router management at %s (connection %d)", self.url, self.generation)

    @staticmethod
    def _close(connection: Any, *, force: bool = True) -> None:
        # BlockingConnection.close() waits for the peer's close frame and then runs the
        # reactor until idle, which never ends on a hung or half-open socket; a lost
        # connection's transport is therefore shut first, so close() can't block.
        try:
            transport = connection.conn.transport if force and connection.conn is not None else None
            if transport is not None:
                transport.close_tail()
                transport.close_head()
            connection.close()
        except Exception:
            pass

    def close(self) -> None:
        """Close the connection (the next request opens a new one)."""
        connection, self._connection = self._connection, None
        self._sender = self._receiver = self._reply_to = None
        if connection is not None:
            self._close(connection, force=self._suspect)
        self._suspect = False

    def request(
        self,
        operation: str,
        *,
        entity_type: str | None = None,
        name: str | None = None,
        identity: str | None = None,
        body: Any = None,
        properties: Mapping[str, Any] | None = None,
        timeout: float | None = None,
    ) -> Response:
        """Send one request and return its reply, whatever the status.

        Raises :class:`ManagementTimeout` when no reply arrives in time and
        :class:`ConnectionLost` when the connection fails (it is closed, and the next
        request re-opens it).
        """
        from proton import ConnectionException, Message, Timeout
        from proton.utils import LinkDetached, SendException

        self.connect()
        cid = f"fogwire-{next(self._ids)}"
        props: dict[str, Any] = {"operation": operation}
        if entity_type is not None:
            key = "entityType" if operation == "QUERY" else "type"
            props[key] = long_type(entity_type)
        if name is not None:
            props["name"] = name
        if identity is not None:
            props["identity"] = identity
        props.update(properties or {})
        message = Message(
            address="$management", reply_to=self._reply_to, correlation_id=cid, properties=props, body=body
        )
        limit = self.timeout if timeout is None else timeout
        deadline = time.monotonic() + limit
        try:
            self._sender.send(message, timeout=limit)
            while True:
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    raise Timeout("no reply")
                reply = self._receiver.receive(timeout=remaining)
                if reply.correlation_id == cid:
                    break
                log.debug("discarding a late management reply %r", reply.correlation_id)
        except Timeout:
            self._suspect = True
            raise ManagementTimeout(operation, entity_type, name, None, f"no reply within {limit:g} s") from None
        except (ConnectionException, LinkDetached, SendException, OSError) as error:
            self._suspect = True
            self.close()
            raise ConnectionLost(
                f"router management connection to {self.url} lost during {operation}: {error}"
            ) from error
        self._suspect = False
        reply_props = reply.properties or {}
        code = reply_props.get("statusCode")
        return Response(
            int(code) if code is not None else 0, str(reply_props.get("statusDescription") or ""), reply.body
        )

    def call(self, operation: str, **kwargs: Any) -> Any:
        """:meth:`request`, raising :class:`ManagementError` unless the status is 2xx; returns the body."""
        response = self.request(operation, **kwargs)
        if not 200 <= response.status_code < 300:
            raise ManagementError(
                operation,
                kwargs.get("entity_type"),
                kwargs.get("name") or kwargs.get("identity"),
                response.status_code,
                response.description,
            )
        return response.body

    def query(self, entity_type: str, attribute_names: Sequence[str] = ()) -> list[dict[str, Any]]:
        """Every entity of ``entity_type`` as an attribute map (all attributes unless names are given)."""
        body = self.call("QUERY", entity_type=entity_type, body={"attributeNames": list(attribute_names)})
        names = body.get("attributeNames", []) if isinstance(body, Mapping) else []
        rows = body.get("results", []) if isinstance(body, Mapping) else []
        return [dict(zip(names, row, strict=False)) for row in rows]

    def create(self, entity_type: str, name: str | None, attributes: Mapping[str, Any]) -> Any:
        """CREATE an entity (``name`` goes in the application properties, where the router takes it from)."""
        return self.call("CREATE", entity_type=entity_type, name=name, body=dict(attributes))

    def update(
        self, entity_type: str, attributes: Mapping[str, Any], *, name: str | None = None, identity: str | None = None
    ) -> Any:
        """UPDATE the named (or identified) entity with ``attributes``."""
        return self.call("UPDATE", entity_type=entity_type, name=name, identity=identity, body=dict(attributes))

    def delete(self, entity_type: str, *, name: str | None = None, identity: str | None = None) -> None:
        """DELETE the named (or identified) entity."""
        self.call("DELETE", entity_type=entity_type, name=name, identity=identity, body={})
