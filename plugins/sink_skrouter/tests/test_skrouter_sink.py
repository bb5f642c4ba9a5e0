"""The skrouter sink against the management peer over real AMQP."""

from __future__ import annotations

import socket
from typing import Any

import attrs
import pytest
from fogwire_router.model import RouterConfig, TcpListener, structure_skrouterd_list
from fogwire_sink_skrouter.management import ManagementClient, ManagementError
from fogwire_sink_skrouter.sink import SkrouterSink
from skrouterlib import Peer, base_sections, free_port

from fogwire.errors import ConfigError
from fogwire.sinks import Outcome

PROFILE = [
    "sslProfile",
    {"name": "p1", "caCertFile": "/certs/ca.crt", "certFile": "/certs/tls.crt", "privateKeyFile": "/certs/tls.key"},
]
PROFILE2 = [
    "sslProfile",
    {"name": "p2", "caCertFile": "/certs2/ca.crt", "certFile": "/certs2/tls.crt", "privateKeyFile": "/certs2/tls.key"},
]


def full_sections(listener_port: int) -> list[Any]:
    """One entity of every live type."""
    return [
        PROFILE,
        PROFILE2,
        ["listener", {"name": "l2", "host": "127.0.0.1", "port": listener_port, "role": "normal"}],
        ["connector", {"name": "c1", "host": "127.0.0.1", "port": "45671", "role": "inter-router", "sslProfile": "p1"}],
        [
            "tcpConnector",
            {
                "name": "svc-connector",
                "host": "127.0.0.1",
                "port": "8080",
                "address": "svc",
                "siteId": "s1",
                "processId": "proc-1",
            },
        ],
        ["tcpListener", {"name": "svc-listener", "port": "9000", "address": "svc", "siteId": "s1", "sslProfile": "p1"}],
        ["address", {"prefix": "mc", "distribution": "multicast"}],
        ["log", {"module": "ROUTER_CORE", "enable": "error+"}],
    ]


def config(peer: Peer, sections: list[Any]) -> RouterConfig:
    return structure_skrouterd_list(base_sections(peer.port) + sections, "test")


def entities(peer: Peer, short: str) -> dict[str, dict[str, Any]]:
    long = "io.skupper.router." + ("router.config.address" if short == "address" else short)
    found = peer.state.snapshot()[long]
    if short == "address":
        return {e["prefix"]: e for e in found.values()}
    return found


def changes(peer: Peer) -> list[tuple[str, str]]:
    """The (operation, short type) of every request but QUERY since the last clear."""
    return [(op, (t or "").removeprefix("io.skupper.router.")) for op, t, _ in peer.state.requests if op != "QUERY"]


def accepts(port: int) -> bool:
    with socket.socket() as probe:
        probe.settimeout(1)
        return probe.connect_ex(("127.0.0.1", port)) == 0


async def test_every_entity_type_is_created_and_deleted_live(peer: Peer, sink: SkrouterSink) -> None:
    port = free_port()
    base, full = config(peer, []), config(peer, full_sections(port))
    report = await sink.apply(full, base)
    assert report.ok and not report.restart_needed, report
    assert {i.key for i in report.items if i.outcome is Outcome.APPLIED} == {
        "sslProfile/p1", "sslProfile/p2", "listener/l2", "connector/c1", "tcpConnector/svc-connector",
        "tcpListener/svc-listener", "address/mc", "log/ROUTER_CORE",
    }  # fmt: skip
    assert entities(peer, "sslProfile")["p1"]["certFile"] == "/certs/tls.crt"
    assert entities(peer, "listener")["l2"]["port"] == str(port) and accepts(port)
    assert entities(peer, "connector")["c1"]["sslProfile"] == "p1"
    tcp_connector = entities(peer, "tcpConnector")["svc-connector"]
    assert (tcp_connector["siteId"], tcp_connector["processId"], tcp_connector["port"]) == ("s1", "proc-1", "8080")
    tcp_listener = entities(peer, "tcpListener")["svc-listener"]
    assert (tcp_listener["siteId"], tcp_listener["sslProfile"], tcp_listener["operStatus"]) == ("s1", "p1", "up")
    assert entities(peer, "address")["mc"]["distribution"] == "multicast"
    assert entities(peer, "log")["log/ROUTER_CORE"]["enable"] == "error+"

    report = await sink.apply(base, full)
    assert not [i for i in report.items if i.outcome is Outcome.FAILED], report
    for short in ("sslProfile", "connector", "tcpConnector", "tcpListener", "address"):
        assert entities(peer, short) == {}, short
    assert set(entities(peer, "listener")) == {"amqp"} and not accepts(port)
    assert [(i.key, i.outcome) for i in report.items if i.outcome is Outcome.RESTART_NEEDED] == [
        ("log/ROUTER_CORE", Outcome.RESTART_NEEDED)
    ]


async def test_operations_are_ordered_so_nothing_dangles(peer: Peer, sink: SkrouterSink) -> None:
    base, full = config(peer, []), config(peer, full_sections(free_port()))
    await sink.apply(base, None)
    peer.state.requests.clear()
    await sink.apply(full, base)
    created = [t for op, t in changes(peer) if op == "CREATE"]
    assert created.index("sslProfile") < min(
        created.index(t) for t in ("listener", "connector", "tcpListener", "tcpConnector")
    )
    assert created.index("tcpConnector") < created.index("tcpListener")
    peer.state.requests.clear()
    await sink.apply(base, full)
    deleted = [t for op, t in changes(peer) if op == "DELETE"]
    assert deleted == [
        "tcpListener",
        "tcpConnector",
        "listener",
        "connector",
        "router.config.address",
        "sslProfile",
        "sslProfile",
    ]


CHANGES = [
    ("sslProfile", "p1", {"caCertFile": "/other/ca.crt"}, ["UPDATE"]),
    ("tcpListener", "svc-listener", {"observer": "none"}, ["UPDATE"]),
    ("tcpListener", "svc-listener", {"port": "9001"}, ["DELETE", "CREATE"]),
    ("tcpListener", "svc-listener", {"sslProfile": "p2"}, ["DELETE", "CREATE"]),
    ("tcpConnector", "svc-connector", {"sslProfile": "p2"}, ["DELETE", "CREATE"]),
    ("tcpConnector", "svc-connector", {"host": "127.0.0.2"}, ["DELETE", "CREATE"]),
    ("listener", "l2", {"cost": 5}, ["DELETE", "CREATE"]),
    ("connector", "c1", {"port": "45672"}, ["DELETE", "CREATE"]),
    ("address", "mc", {"distribution": "closest"}, ["DELETE", "CREATE"]),
    ("log", "ROUTER_CORE", {"enable": "debug+"}, ["UPDATE"]),
]


@pytest.mark.parametrize(
    ("type_name", "key", "change", "expected"), CHANGES, ids=[f"{c[0]}-{next(iter(c[2]))}" for c in CHANGES]
)
async def test_update_where_allowed_else_delete_and_create(
    peer: Peer, sink: SkrouterSink, type_name: str, key: str, change: dict[str, Any], expected: list[str]
) -> None:
    sections = full_sections(free_port())
    before = config(peer, sections)
    await sink.apply(before, None)
    key_attr = {"address": "prefix", "log": "module"}.get(type_name, "name")
    changed = [[t, dict(a, **change) if t == type_name and a[key_attr] == key else a] for t, a in sections]
    peer.state.requests.clear()
    report = await sink.apply(config(peer, changed), before)
    assert report.ok, report
    wire_type = "router.config.address" if type_name == "address" else type_name
    assert [op for op, t in changes(peer) if t == wire_type] == expected
    assert [t for _, t in changes(peer)] == [wire_type] * len(expected), "only the changed entity is touched"
    entity = entities(peer, type_name)["log/" + key if type_name == "log" else key]
    for attribute, value in change.items():
        assert entity[attribute] == value


async def test_non_2xx_is_a_failure_with_the_routers_code_and_text(peer: Peer, sink: SkrouterSink) -> None:
    base = config(peer, [])
    no_cert = ["sslProfile", {"name": "pca", "caCertFile": "/certs/ca.crt"}]
    tls = ["tcpListener", {"name": "tls-listener", "port": "9443", "address": "tls", "sslProfile": "pca"}]
    report = await sink.apply(config(peer, [no_cert, tls]), base)
    assert not report.ok
    failed = [i for i in report.items if i.outcome is Outcome.FAILED]
    assert [(i.key, i.action, i.detail) for i in failed] == [
        (
            "tcpListener/tls-listener",
            "create",
            "status 500: CError: Configuration: Listener requires a self-identifying certificate (sslProfile: pca)",
        )
    ]
    client = ManagementClient(peer.url, timeout=2)
    try:
        with pytest.raises(ManagementError) as raised:
            client.delete("listener", name="no-such")
        assert (raised.value.status_code, raised.value.description) == (404, "No entity with name=no-such")
    finally:
        client.close()


async def test_mid_apply_failure_rolls_back_to_the_exact_previous_state(peer: Peer, sink: SkrouterSink) -> None:
    sections = full_sections(free_port())
    good = config(peer, sections)
    assert (await sink.apply(good, None)).ok
    before = peer.state.snapshot()
    broken = [s for s in sections if s[0] != "connector"]
    broken = [
        [t, dict(a, caCertFile="/rotated/ca.crt") if a.get("name") == "p1" and t == "sslProfile" else a]
        for t, a in broken
    ]
    broken += [
        ["sslProfile", {"name": "pca", "caCertFile": "/certs/ca.crt"}],
        ["tcpConnector", {"name": "tls-connector", "host": "127.0.0.1", "port": "8443", "address": "tls"}],
        ["tcpListener", {"name": "tls-listener", "port": "9443", "address": "tls", "sslProfile": "pca"}],
    ]
    peer.state.requests.clear()
    report = await sink.apply(config(peer, broken), good)
    assert not report.ok
    assert [(op, t) for op, t in changes(peer)] == [
        ("DELETE", "connector"),
        ("UPDATE", "sslProfile"),
        ("CREATE", "sslProfile"),
        ("CREATE", "tcpConnector"),
        ("CREATE", "tcpListener"),
        ("DELETE", "tcpConnector"),
        ("DELETE", "sslProfile"),
        ("UPDATE", "sslProfile"),
        ("CREATE", "connector"),
    ]
    assert [(i.key, i.outcome) for i in report.items] == [
        ("tcpListener/tls-listener", Outcome.FAILED),
        ("tcpConnector/tls-connector", Outcome.ROLLED_BACK),
        ("sslProfile/pca", Outcome.ROLLED_BACK),
        ("sslProfile/p1", Outcome.ROLLED_BACK),
        ("connector/c1", Outcome.ROLLED_BACK),
    ]
    assert "CError: Configuration: Listener requires a self-identifying certificate" in report.items[0].detail
    assert peer.state.snapshot() == before
    # The last good config is still the base: the next change applies from it without a QUERY.
    peer.state.requests.clear()
    better = [[t, dict(a, observer="none") if t == "tcpListener" else a] for t, a in sections]
    assert (await sink.apply(config(peer, better), good)).ok
    assert changes(peer) == [("UPDATE", "tcpListener")]


async def test_an_invalid_config_is_never_applied(peer: Peer, sink: SkrouterSink) -> None:
    base = config(peer, [])
    await sink.apply(base, None)
    peer.state.requests.clear()
    dangling = attrs.evolve(base, tcp_listeners=(TcpListener(name="x", port="1", address="a", ssl_profile="missing"),))
    with pytest.raises(ConfigError, match="no sslProfile named 'missing'"):
        await sink.apply(dangling, base)
    with pytest.raises(ConfigError, match=r"siteID: unknown field"):
        config(peer, [["tcpListener", {"name": "x", "port": "1", "address": "a", "siteID": "s"}]])
    assert peer.state.requests == []


async def test_a_request_without_reply_times_out_and_the_next_apply_converges(peer: Peer, tmp_path: Any) -> None:
    from fogwire.sinks import SinkContext

    sink = SkrouterSink(SinkContext(tmp_path, tmp_path, options={"url": peer.url, "timeout": 0.3}))
    try:
        base, full = config(peer, []), config(peer, full_sections(free_port()))
        await sink.apply(base, None)
        peer.state.silent_rules.append(
            lambda p: p.get("operation") == "CREATE" and p.get("type", "").endswith("tcpListener")
        )
        report = await sink.apply(full, base)
        failed = [i for i in report.items if i.outcome is Outcome.FAILED]
        assert [(i.key, i.detail) for i in failed] == [("tcpListener/svc-listener", "no reply within 0.3 s")]
        assert entities(peer, "tcpConnector") == {} and entities(peer, "sslProfile") == {}
        peer.state.silent_rules.clear()
        peer.state.requests.clear()
        report = await sink.apply(full, base)
        assert report.ok, report
        assert ("QUERY", "io.skupper.router.tcpListener", None) in peer.state.requests, (
            "converged from the actual state"
        )
        assert set(entities(peer, "tcpListener")) == {"svc-listener"}
    finally:
        await sink.close()


async def test_router_restart_loses_live_entities_and_the_sink_converges(peer: Peer, sink: SkrouterSink) -> None:
    full = config(peer, full_sections(free_port()))
    assert (await sink.apply(full, config(peer, []))).ok
    assert sink.client.generation == 1
    peer.restart()
    assert entities(peer, "tcpListener") == {}
    report = await sink.apply(full, full)
    assert report.ok, report
    assert sink.client.generation == 2
    assert set(entities(peer, "tcpListener")) == {"svc-listener"}
    assert set(entities(peer, "sslProfile")) == {"p1", "p2"}
    assert entities(peer, "log")["log/ROUTER_CORE"]["enable"] == "error+"
    assert (await sink.apply(full, full)).items[0].outcome is Outcome.UNCHANGED


async def test_a_dropped_connection_is_reopened(peer: Peer, sink: SkrouterSink) -> None:
    sections = full_sections(free_port())
    first = config(peer, sections)
    assert (await sink.apply(first, None)).ok
    peer.thread.drop_connections()
    second = config(peer, [[t, dict(a, observer="http1") if t == "tcpListener" else a] for t, a in sections])
    report = await sink.apply(second, first)
    assert report.ok, report
    assert sink.client.generation == 2
    assert entities(peer, "tcpListener")["svc-listener"]["observer"] == "http1"


async def test_changes_that_need_a_restart_are_reported_not_applied(peer: Peer, sink: SkrouterSink) -> None:
    base = config(peer, [])
    await sink.apply(base, None)
    peer.state.requests.clear()
    sections = base_sections(peer.port)
    moved = [["router", {"id": "r1", "mode": "interior"}], [sections[1][0], dict(sections[1][1], cost=3)]]
    report = await sink.apply(structure_skrouterd_list(moved, "test"), base)
    assert report.ok and report.restart_needed
    assert {(i.key, i.outcome) for i in report.items} == {
        ("router/router", Outcome.RESTART_NEEDED),
        ("listener/amqp", Outcome.RESTART_NEEDED),
    }
    assert changes(peer) == []


async def test_site_id_is_sent_as_siteId(peer: Peer, sink: SkrouterSink) -> None:
    tcp = ["tcpListener", {"name": "t", "port": "9100", "address": "a", "siteId": "site-7"}]
    assert (await sink.apply(config(peer, [tcp]), config(peer, []))).ok
    assert entities(peer, "tcpListener")["t"]["siteId"] == "site-7"
    client = ManagementClient(peer.url, timeout=2)
    try:
        with pytest.raises(ManagementError, match="Unknown attribute 'siteID' for 'io.skupper.router.tcpListener'"):
            client.create("tcpListener", "u", {"port": "9101", "address": "a", "siteID": "site-7"})
    finally:
        client.close()


async def test_converging_compares_the_singletons_on_what_the_config_sets(peer: Peer, sink: SkrouterSink) -> None:
    site = ["site", {"name": "fog-1", "platform": "docker", "namespace": "default"}]
    peer.restart(base_sections(peer.port) + [site])
    desired = config(peer, [site])
    report = await sink.apply(desired, None)
    assert report.ok and not report.restart_needed, report
    other = config(peer, [["site", {"name": "fog-1", "platform": "podman", "namespace": "default"}]])
    report = await sink.apply(other, None)
    assert [(i.key, i.outcome) for i in report.items] == [("site/site", Outcome.RESTART_NEEDED)]
