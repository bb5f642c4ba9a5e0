"""Which HTTP proxy a request of fogwire's own goes through: ``HTTP_PROXY``, ``HTTPS_PROXY``, ``NO_PROXY``.

fogwire's registry client reads the same variables as curl, Go (dockerd, containerd)
and Python's ``urllib``, so a node behind a proxy needs nothing of its own:

* ``https_proxy`` / ``HTTPS_PROXY`` for ``https://`` URLs (a ``CONNECT`` tunnel),
  ``http_proxy`` / ``HTTP_PROXY`` for ``http://`` ones (the absolute URI sent to the
  proxy); the lower-case name wins when both are set. A proxy URL may carry
  ``user:password@``: it is sent as ``Proxy-Authorization: Basic``. A URL without a
  scheme is taken as ``http://``, as curl and Go do.
* ``no_proxy`` / ``NO_PROXY``: comma- (or space-) separated entries, each ``*`` (no
  proxy at all), a domain (``example.com``, ``.example.com`` and ``*.example.com``
  all match the domain and every name below it), an IP address, a CIDR range
  (``10.0.0.0/8``), or any of these with ``:port`` (then only that port).
* Loopback (``localhost``, ``127.0.0.0/8``, ``::1``) never goes through a proxy,
  whatever the variables say, as Go's ``net/http`` decides: a proxy elsewhere could
  not reach this host's loopback anyway.

Nothing here connects; :mod:`fogwire.registry_client` does. Proxy passwords are never
shown in a repr or a message.
"""

from __future__ import annotations

import base64
import ipaddress
import os
import re
import urllib.parse
from collections.abc import Mapping

import attrs

DEFAULT_PROXY_PORT = 80
"""The port of a proxy URL that names none (``http://proxy`` is port 80, as curl and Go take it)."""


def is_loopback(server: str) -> bool:
    """True for ``localhost`` and loopback addresses, given as a host or ``host:port`` (``[::1]:5000`` too)."""
    host = split_host_port(server)[0]
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def split_host_port(server: str) -> tuple[str, int | None]:
    """``host[:port]`` (``[v6]:port`` too) as ``(host, port or None)``; the host lower-case and unbracketed."""
    text = server.strip().lower()
    if text.startswith("["):
        host, _, rest = text[1:].partition("]")
        port = rest[1:] if rest.startswith(":") else ""
    elif text.count(":") == 1:
        host, port = text.split(":")
    else:
        host, port = text, ""
    return host.rstrip("."), int(port) if port.isdigit() else None


@attrs.frozen
class Proxy:
    """One HTTP proxy: where it listens and the credentials it is sent (the password never in a repr)."""

    host: str
    port: int
    username: str = ""
    password: str = attrs.field(default="", repr=False)

    @property
    def address(self) -> str:
        """``host:port`` (``[v6]:port``), for connecting and for messages: it never holds the credentials."""
        return f"[{self.host}]:{self.port}" if ":" in self.host else f"{self.host}:{self.port}"

    @property
    def authorization(self) -> str | None:
        """The ``Proxy-Authorization`` value for the URL's credentials, or ``None`` without any."""
        if not self.username and not self.password:
            return None
        return "Basic " + base64.b64encode(f"{self.username}:{self.password}".encode()).decode()


def parse_proxy_url(text: str, variable: str) -> Proxy:
    """The :class:`Proxy` a proxy variable's value names; :class:`ValueError` (naming ``variable``) if unusable.

    The message never repeats the value: it may hold a password.
    """
    value = text.strip()
    if "://" not in value:
        value = "http://" + value
    parts = urllib.parse.urlsplit(value)
    if parts.scheme.lower() != "http":
        raise ValueError(
            f"{variable} names a {parts.scheme}:// proxy; fogwire speaks to proxies over http:// only "
            "(HTTPS is tunnelled through them with CONNECT)"
        )
    try:
        port = parts.port or DEFAULT_PROXY_PORT
    except ValueError:
        raise ValueError(f"{variable} names a proxy with an invalid port") from None
    if not parts.hostname:
        raise ValueError(f"{variable} names no proxy host")
    return Proxy(
        parts.hostname,
        port,
        urllib.parse.unquote(parts.username or ""),
        urllib.parse.unquote(parts.password or ""),
    )


def _entry_port(entry: str) -> tuple[str, int | None]:
    """A ``NO_PROXY`` entry without its ``:port``; a bare IPv6 address or range keeps its colons."""
    if entry.startswith("["):
        return split_host_port(entry)
    if entry.count(":") == 1:
        host, port = entry.split(":")
        return host, int(port) if port.isdigit() else None
    return entry, None


def bypasses_proxy(no_proxy: str, host: str, port: int) -> bool:
    """True if ``NO_PROXY`` (its value ``no_proxy``) says ``host:port`` is reached directly.

    See the module's docstring for the entries understood. Loopback is not decided
    here: :meth:`ProxySettings.proxy_for` never proxies it.
    """
    name = host.strip("[]").lower().rstrip(".")
    try:
        address: ipaddress.IPv4Address | ipaddress.IPv6Address | None = ipaddress.ip_address(name)
    except ValueError:
        address = None
    for raw in re.split(r"[\s,]+", no_proxy.lower()):
        if not raw:
            continue
        if raw == "*":
            return True
        entry, entry_port = _entry_port(raw)
        if entry_port is not None and entry_port != port:
            continue
        if "/" in entry:
            try:
                if address is not None and address in ipaddress.ip_network(entry, strict=False):
                    return True
            except ValueError:
                pass
            continue
        try:
            entry_address = ipaddress.ip_address(entry)
        except ValueError:
            entry_address = None
        if entry_address is not None:
            if address == entry_address:
                return True
            continue
        domain = entry.removeprefix("*").lstrip(".").rstrip(".")
        if domain and (name == domain or name.endswith("." + domain)):
            return True
    return False


def _first_set(environ: Mapping[str, str], *names: str) -> tuple[str, str]:
    for name in names:
        value = environ.get(name, "").strip()
        if value:
            return name, value
    return names[-1], ""


@attrs.frozen
class ProxySettings:
    """The proxies to use and the hosts to reach directly; :meth:`from_environment` reads the usual variables.

    The URLs are kept as given (they may hold a password, so no repr shows them) and
    parsed when a request needs them, so a bad variable fails the request that would
    use it, naming the variable, and nothing else.
    """

    http_proxy: str = attrs.field(default="", repr=False)
    https_proxy: str = attrs.field(default="", repr=False)
    no_proxy: str = ""
    http_variable: str = "HTTP_PROXY"
    """The variable ``http_proxy`` came from, named in a message about it."""
    https_variable: str = "HTTPS_PROXY"
    """The variable ``https_proxy`` came from, named in a message about it."""

    @classmethod
    def from_environment(cls, environ: Mapping[str, str] | None = None) -> ProxySettings:
        """The settings ``environ`` (default: this process's environment) holds; lower-case names win."""
        env = os.environ if environ is None else environ
        http_variable, http_proxy = _first_set(env, "http_proxy", "HTTP_PROXY")
        https_variable, https_proxy = _first_set(env, "https_proxy", "HTTPS_PROXY")
        _, no_proxy = _first_set(env, "no_proxy", "NO_PROXY")
        return cls(http_proxy, https_proxy, no_proxy, http_variable, https_variable)

    def proxy_for(self, scheme: str, host: str, port: int) -> Proxy | None:
        """The proxy a request to ``scheme://host:port`` goes through, or ``None`` to connect directly.

        Raises :class:`ValueError` when the variable that applies names an unusable proxy.
        """
        if is_loopback(host) or bypasses_proxy(self.no_proxy, host, port):
            return None
        if scheme == "https":
            return parse_proxy_url(self.https_proxy, self.https_variable) if self.https_proxy else None
        return parse_proxy_url(self.http_proxy, self.http_variable) if self.http_proxy else None
