"""The management peer answers as skrouterd 3.5.1 was observed to (skrouterd-management.md)."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from fogwire_sink_skrouter.management import ManagementClient, ManagementTimeout
from mgmt_peer import ManagementState, PeerThread
from skrouterlib import Peer, base_sections, free_port


@pytest.fixture
def client(peer: Peer) -> Iterator[ManagementClient]:
    made = ManagementClient(peer.url, timeout=2)
    yield made
    made.close()


@pytest.fixture(scope="module")
def shared_client() -> Iterator[ManagementClient]:
    """One peer and client for the error cases, which change nothing (a peer costs ~1 s to start)."""
    port = free_port()
    state = ManagementState()
    state.configure(base_sections(port))
    thread = PeerThread(state).start()
    made = ManagementClient(f"amqp://127.0.0.1:{port}", timeout=2)
    yield made
    made.close()
    thread.stop()


LISTENER = "io.skupper.router.listener"
TCP_LISTENER = "io.skupper.router.tcpListener"


@pytest.mark.parametrize(
    ("props", "body", "code", "text"),
    [
        ({"operation": "QUERY", "entityType": "io.skupper.router.bogus"}, {}, 400, "No such entity type 'io.skupper.router.bogus'"),
        ({"operation": "CREATE", "type": "bogus", "name": "x"}, {}, 400, "No such entity type 'bogus'"),
        ({"operation": "CREATE", "name": "x"}, {"host": "127.0.0.1"}, 400, "No 'type' attribute in {'host': '127.0.0.1', 'type': None, 'name': 'x'}"),
        ({"operation": "CREATE", "type": TCP_LISTENER, "name": "t"}, {"port": "25674"}, 500, "CError: Configuration: Exactly one of the 'address' or 'multiAddressStrategy' field must be set"),
        ({"operation": "CREATE", "type": TCP_LISTENER, "name": "t"}, {"address": "a"}, 500, "CError: Python: KeyError: ('port',)"),
        ({"operation": "CREATE", "type": "io.skupper.router.tcpConnector", "name": "t"}, {"port": "1"}, 500, "CError: Configuration: Address must be set"),
        ({"operation": "CREATE", "type": LISTENER, "name": "l"}, {"port": "1", "sslProfile": "no-such-profile"}, 500, "CError: Not found: sslProfile 'no-such-profile' not found"),
        ({"operation": "CREATE", "type": "io.skupper.router.router.config.address", "name": "a"}, {"distribution": "closest"}, 400, "Either a 'prefix' or 'pattern' attribute must be provided"),
        ({"operation": "CREATE", "type": LISTENER, "name": "l"}, {"role": "bogus"}, 400, "io.skupper.router.listener: Invalid value for enum['normal', 'inter-router', 'route-container', 'edge', 'inter-edge', 'inter-network']: 'bogus'"),
        ({"operation": "CREATE", "type": LISTENER, "name": "l"}, {"noSuchAttr": 1}, 400, "Unknown attribute 'noSuchAttr' for 'io.skupper.router.listener'"),
        ({"operation": "CREATE", "type": LISTENER, "name": "l"}, {"identity": "x"}, 400, "Cannot set attribute 'identity' in CREATE"),
        ({"operation": "CREATE", "type": LISTENER, "name": "l"}, {"name": "m"}, 400, "Conflicting values for 'name'"),
        ({"operation": "CREATE", "type": "io.skupper.router.log", "name": "x"}, {}, 501, "Operation 'CREATE' not implemented for 'io.skupper.router.log' ['UPDATE', 'READ']"),
        ({"operation": "UPDATE", "type": LISTENER, "name": "amqp"}, {"cost": 2}, 501, "Operation 'UPDATE' not implemented for 'io.skupper.router.listener' ['CREATE', 'DELETE', 'READ']"),
        ({"operation": "BOGUS-OP", "type": LISTENER, "name": "amqp"}, {}, 501, "Operation 'BOGUS-OP' not implemented for 'io.skupper.router.listener' ['CREATE', 'DELETE', 'READ']"),
        ({"operation": "READ", "name": "no-such"}, {}, 404, "No entity with name=no-such"),
        ({"operation": "DELETE", "type": LISTENER, "name": "no-such"}, {}, 404, "No entity with name=no-such"),
        ({"operation": "READ", "type": LISTENER}, {}, 400, "io.skupper.router.listener: No name or identity provided"),
        ({"operation": "DELETE", "type": TCP_LISTENER, "name": "amqp"}, {}, 400, "Entity type 'io.skupper.router.listener' does not extend requested type 'io.skupper.router.tcpListener'"),
        ({"operation": "QUERY", "entityType": LISTENER}, {"attributeNames": ["nope"]}, 404, "Unknown attributes ['nope'] for type io.skupper.router.listener."),
    ],
)  # fmt: skip
def test_error_answers_match_the_router(
    shared_client: ManagementClient, props: dict[str, Any], body: Any, code: int, text: str
) -> None:
    response = shared_client.request(props.pop("operation"), properties=props, body=body)
    assert (response.status_code, response.description) == (code, text)
    c_agent = props.get("type", "").endswith("router.config.address")
    assert response.body is None if c_agent else response.body == {}


def test_success_answers_identities_ports_and_names(client: ManagementClient, peer: Peer) -> None:
    created = client.request(
        "CREATE", entity_type="tcpListener", name="t", body={"host": "127.0.0.1", "port": 25674, "address": "a"}
    )
    assert (created.status_code, created.description) == (201, "Created")
    assert created.body["identity"] == "tcpListener/127.0.0.1:25674:t" and created.body["port"] == "25674"
    assert created.body["type"] == TCP_LISTENER and created.body["operStatus"] == "down"
    unnamed = client.request("CREATE", entity_type="sslProfile", body={"name": "ignored"})
    assert unnamed.body["name"] == "sslProfile/None"  # the name is taken from the properties only
    duplicate = client.request("CREATE", entity_type="tcpListener", name="t", body={"port": "25675", "address": "a"})
    assert duplicate.status_code == 400 and duplicate.description.startswith("adding TcpListenerEntity(")
    assert "duplicates unique attribute 'name' from existing TcpListenerEntity(" in duplicate.description
    updated = client.request("UPDATE", entity_type="tcpListener", name="t", body={"observer": "none"})
    assert (updated.status_code, updated.body["observer"]) == (200, "none")
    refused = client.request("UPDATE", entity_type="tcpListener", name="t", body={"port": "1"})
    assert (refused.status_code, refused.description) == (400, "Cannot update attribute 'port' in UPDATE")
    deleted = client.request("DELETE", entity_type="tcpListener", name="t")
    assert (deleted.status_code, deleted.description, deleted.body) == (204, "No Content", {})
    query = client.request("QUERY", entity_type="listener", body={"attributeNames": []})
    names = query.body["attributeNames"]
    assert names[-3:] == ["name", "identity", "type"]
    row = dict(zip(names, query.body["results"][0], strict=True))
    assert row["identity"] == f"listener/127.0.0.1:{peer.port}:amqp" and row["port"] == str(peer.port)


def test_no_reply_without_reply_to_and_correlation_id_is_copied(client: ManagementClient, peer: Peer) -> None:
    from proton import Message

    client.connect()
    client._sender.send(
        Message(address="$management", properties={"operation": "QUERY", "entityType": LISTENER}, body={})
    )
    with pytest.raises(ManagementTimeout):
        client.request("QUERY", entity_type="router", properties={}, timeout=0.0)
    reply = client._receiver.receive(timeout=2)  # the answer to the timed-out request, not to the one without reply_to
    assert reply.correlation_id.startswith("fogwire-") and reply.properties["statusCode"] == 200
    assert any(entry[2] == "no reply_to" for entry in peer.state.requests)
    client._sender.send(
        Message(
            address="$management",
            reply_to=client._reply_to,
            correlation_id=1,
            properties={"operation": "GET-MGMT-NODES"},
        )
    )
    reply = client._receiver.receive(timeout=2)
    assert (reply.correlation_id, reply.body) == (1, [])
