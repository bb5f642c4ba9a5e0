"""The skrouterd router config model: both input forms, keys, strictness, the file form."""

from __future__ import annotations

import json
from typing import Any

import pytest
from fogwire_router.model import (
    LogModule,
    Role,
    RouterMode,
    entities_of,
    router_config_from_payload,
    structure_controller_config,
    structure_skrouterd_list,
    unstructure_skrouterd_list,
)

from fogwire.errors import ConfigError

CONTROLLER: dict[str, Any] = {
    "addresses": {"mc": {"prefix": "mc", "distribution": "multicast"}},
    "bridges": {
        "tcpConnectors": {
            "svc-connector": {"name": "svc-connector", "host": "10.0.0.5", "port": "80", "address": "svc", "siteId": "fog-1", "processId": "p-1"}
        },
        "tcpListeners": {"svc-listener": {"name": "svc-listener", "port": "9000", "address": "svc", "siteId": "fog-1"}},
    },
    "connectors": {
        "up": {"name": "up", "role": "edge", "host": "upstream.example", "port": "45671", "sslProfile": "router-site-server-fog-1"}
    },
    "listeners": {
        "fog-1-amqp": {"host": "0.0.0.0", "name": "fog-1-amqp", "port": 5672, "role": "normal"},
        "fog-1-amqps": {"host": "0.0.0.0", "name": "fog-1-amqps", "port": 5671, "role": "normal", "authenticatePeer": True, "saslMechanisms": "EXTERNAL", "sslProfile": "router-local-server-fog-1"},
    },
    "logConfig": {"ROUTER_CORE": {"enable": "error+", "module": "ROUTER_CORE"}},
    "metadata": {"helloMaxAgeSeconds": "3", "id": "fog-1", "mode": "edge"},
    "siteConfig": {"name": "fog-1", "namespace": "default", "platform": "docker", "version": "pot"},
    "sslProfiles": {
        "system-default": {"name": "system-default", "caCertFile": "/etc/pki/tls/certs/ca-bundle.crt"},
        "router-site-server-fog-1": {"name": "router-site-server-fog-1", "caCertFile": "/c/s/ca.crt", "certFile": "/c/s/tls.crt", "privateKeyFile": "/c/s/tls.key"},
        "router-local-server-fog-1": {"caCertFile": "/c/l/ca.crt"},
    },
}  # fmt: skip


def test_controller_form_converts_every_section() -> None:
    config = structure_controller_config(CONTROLLER, "controller")
    assert config.router is not None and config.router.mode is RouterMode.EDGE
    assert config.router.hello_max_age_seconds == 3
    assert config.site is not None and config.site.platform == "docker"
    assert [p.name for p in config.ssl_profiles] == [
        "router-local-server-fog-1",
        "router-site-server-fog-1",
        "system-default",
    ]
    listener = entities_of(config, "listener")["fog-1-amqp"]
    assert (listener.port, listener.role) == ("5672", Role.NORMAL)
    assert entities_of(config, "tcpConnector")["svc-connector"].site_id == "fog-1"
    assert entities_of(config, "address")["mc"].prefix == "mc"
    assert entities_of(config, "log")["ROUTER_CORE"].module is LogModule.ROUTER_CORE


def test_file_form_is_written_in_type_order_with_siteId_and_read_back_equal() -> None:
    config = structure_controller_config(CONTROLLER, "controller")
    listed = unstructure_skrouterd_list(config)
    assert [t for t, _ in listed] == [
        "router", "sslProfile", "sslProfile", "sslProfile", "listener", "listener", "connector",
        "tcpListener", "tcpConnector", "address", "log", "site",
    ]  # fmt: skip
    text = json.dumps(listed)
    assert '"siteId": "fog-1"' in text and "siteID" not in text
    assert structure_skrouterd_list(json.loads(text), "file") == config
    assert router_config_from_payload([listed], "file source") == config
    assert router_config_from_payload(listed, "kubernetes") == config
    assert router_config_from_payload([CONTROLLER], "pot") == config


@pytest.mark.parametrize(
    ("sections", "expected"),
    [
        (
            [["tcpListener", {"name": "t", "port": "1", "address": "a", "siteID": "x"}]],
            "[0].tcpListener.siteID: unknown field",
        ),
        ([["linkRoute", {"name": "x"}]], "[0]: unknown entity type 'linkRoute'"),
        ([["listener", {"name": "l", "port": True}]], "[0].listener.port: expected a port"),
        ([["listener", {"name": "l", "role": "bogus"}]], "[0].listener.role: expected one of 'normal'"),
        ([["listener", {"name": "l", "sslProfile": "nope"}]], "listener[l].sslProfile: no sslProfile named 'nope'"),
        ([["tcpConnector", {"name": "c", "port": "1"}]], "tcpConnector[c].address: required field is missing"),
        ([["address", {"distribution": "closest"}]], "exactly one of 'prefix' or 'pattern'"),
        (
            [["sslProfile", {"name": "p", "ordinal": 1, "oldestValidOrdinal": 2}]],
            "sslProfile[p].ordinal: must be ≥ oldestValidOrdinal",
        ),
        ([["listener", {"name": "l"}], ["listener", {"name": "l"}]], "[1]: duplicate listener 'l' (also at [0])"),
        ([["listener", {"host": "h"}]], "[0].listener.name: required field is missing"),
    ],
)
def test_invalid_file_forms_are_errors_with_paths(sections: list[Any], expected: str) -> None:
    with pytest.raises(ConfigError) as raised:
        structure_skrouterd_list(sections, "skrouterd.json")
    assert expected in str(raised.value)


def test_controller_form_rejects_unknown_sections_and_attributes() -> None:
    bad = dict(CONTROLLER, bogus={}, listeners={"l": {"name": "l", "port": 1, "colour": "red"}})
    with pytest.raises(ConfigError) as raised:
        structure_controller_config(bad, "controller")
    message = str(raised.value)
    assert "bogus: unknown field" in message and "listeners.l.colour: unknown field" in message


def test_keys_are_name_prefix_and_module() -> None:
    config = structure_skrouterd_list(
        [
            ["address", {"prefix": "a", "distribution": "closest"}],
            ["address", {"pattern": "b/*"}],
            ["log", {"module": "DEFAULT", "enable": "info+"}],
            ["tcpListener", {"name": "t", "port": 9, "address": "x"}],
        ],
        "f",
    )
    assert set(entities_of(config, "address")) == {"a", "pattern:b/*"}
    assert set(entities_of(config, "log")) == {"DEFAULT"}
    assert set(entities_of(config, "tcpListener")) == {"t"}


def test_secrets_stay_out_of_repr() -> None:
    config = structure_skrouterd_list(
        [["sslProfile", {"name": "p", "password": "hunter2"}], ["connector", {"name": "c", "saslPassword": "s3cret"}]],
        "f",
    )
    assert "hunter2" not in repr(config) and "s3cret" not in repr(config)
