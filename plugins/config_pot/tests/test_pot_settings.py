"""Start-up checks (identity, token, env parsing), backoff arithmetic and plugin registration."""

from __future__ import annotations

import importlib.metadata
from pathlib import Path

import pytest
from fogwire_config_pot import plugin
from fogwire_config_pot.settings import Backoff, Settings
from fogwire_config_pot.source import LocalApiSource
from fogwire_router.model import ROUTER_DOCUMENT
from potlib import IDENTITY, SourceMaker

from fogwire.errors import SourceError
from fogwire.plugins import PluginHost
from fogwire.sources import SourceContext


def test_missing_identity_names_the_variables(make_source: SourceMaker) -> None:
    with pytest.raises(
        SourceError, match="set EDGELET_MICROSERVICE_UID \\(or the older IOFOG_MICROSERVICE_UID / SELFNAME\\)"
    ):
        make_source(environ={"SKUPPER_PLATFORM": "pot"})


@pytest.mark.parametrize(
    ("environ", "identity", "where"),
    [
        (
            {"EDGELET_MICROSERVICE_UID": "a", "IOFOG_MICROSERVICE_UID": "b", "SELFNAME": "c"},
            "a",
            "EDGELET_MICROSERVICE_UID",
        ),
        ({"IOFOG_MICROSERVICE_UID": "b", "SELFNAME": "c"}, "b", "IOFOG_MICROSERVICE_UID"),
        ({"SELFNAME": "c"}, "c", "SELFNAME"),
        ({"EDGELET_MICROSERVICE_UID": "  ", "SELFNAME": "c"}, "c", "SELFNAME"),
    ],
)
def test_identity_precedence(environ: dict[str, str], identity: str, where: str) -> None:
    settings = Settings.from_context({}, environ)
    assert (settings.identity, settings.identity_source) == (identity, where)


def test_identity_option_wins() -> None:
    settings = Settings.from_context({"id": "from-option"}, {"EDGELET_MICROSERVICE_UID": "env"})
    assert settings.identity == "from-option"


def test_defaults_match_the_sdks() -> None:
    settings = Settings.from_context({}, {"EDGELET_MICROSERVICE_UID": IDENTITY})
    assert settings.api == "auto"
    assert settings.port == 54321
    assert settings.token_path == Path("/var/run/secrets/edgelet.iofog.org/serviceaccount/token")
    assert settings.ca_path == Path("/var/run/secrets/edgelet.iofog.org/serviceaccount/ca.crt")
    assert settings.ssl_for("v1") is True and settings.ssl_for("v2") is False
    assert settings.host_for("v1") == ("edgelet.default.svc.bridge.local", "127.0.0.1")
    assert settings.host_for("v2") == ("iofog", "127.0.0.1")
    assert (settings.backoff.initial, settings.backoff.maximum) == (1.0, 30.0)
    assert settings.request_timeout == 15.0 and settings.handshake_timeout == 10.0


def test_ssl_variable_applies_to_both_generations() -> None:
    on = Settings.from_context({}, {"SELFNAME": "x", "SSL": "TRUE"})
    off = Settings.from_context({}, {"SELFNAME": "x", "SSL": "0"})
    assert on.ssl_for("v2") is True and off.ssl_for("v1") is False


def test_bad_ssl_value_names_the_variable() -> None:
    with pytest.raises(SourceError, match="environment variable SSL must be true or false, got 'maybe'"):
        Settings.from_context({}, {"SELFNAME": "x", "SSL": "maybe"})


def test_host_and_port_overrides_have_no_fallback() -> None:
    settings = Settings.from_context({}, {"SELFNAME": "x", "EDGELET_API_HOST": "10.0.0.5", "EDGELET_API_PORT": "6000"})
    assert settings.host_for("v1") == ("10.0.0.5", None)
    assert settings.port == 6000


@pytest.mark.parametrize(
    ("options", "environ", "message"),
    [
        ({"api": "v3"}, {}, "option 'api' must be v1, v2 or auto"),
        ({}, {"EDGELET_API_PORT": "http"}, "EDGELET_API_PORT must be an integer, got 'http'"),
        ({"port": 70000}, {}, "option 'port' must be a port number 1-65535"),
        ({"colour": "red"}, {}, "unknown option\\(s\\) colour"),
        ({"backoff_jitter": 1.5}, {}, "'backoff_jitter' must be below 1"),
    ],
)
def test_bad_settings_are_named(options: dict[str, object], environ: dict[str, str], message: str) -> None:
    with pytest.raises(SourceError, match=message):
        Settings.from_context(options, {"SELFNAME": "x", **environ})


def test_v1_with_unreadable_token_fails_at_start_naming_the_file(
    make_source: SourceMaker, serviceaccount: Path
) -> None:
    (serviceaccount / "token").unlink()
    with pytest.raises(
        SourceError, match=f"cannot read the EdgeletAPI service-account token {serviceaccount / 'token'}"
    ):
        make_source(api="v1")


def test_v1_with_empty_token_fails_at_start(make_source: SourceMaker, serviceaccount: Path) -> None:
    (serviceaccount / "token").write_text("\n")
    with pytest.raises(SourceError, match=r"service-account token file .* is empty"):
        make_source(api="v1")


def test_backoff_doubles_is_capped_and_jitter_only_shortens() -> None:
    backoff = Backoff(initial=1, maximum=30, jitter=0.2)
    assert [backoff.ceiling(n) for n in range(7)] == [1, 2, 4, 8, 16, 30, 30]
    assert backoff.ceiling(10_000) == 30
    assert backoff.delay(3, 0.0) == 8
    assert backoff.delay(3, 0.999) == pytest.approx(8 * 0.8, rel=1e-3)


def test_plugin_registers_pot_and_its_alias_iofog(tmp_path: Path) -> None:
    host = PluginHost(environ={}, find_entry_points=lambda group: [], extra_plugins=[plugin])
    pot = host.source_factory("pot", ROUTER_DOCUMENT, "test")
    assert host.source_factory("iofog", ROUTER_DOCUMENT, "test") is pot
    source = pot(SourceContext(tmp_path, tmp_path, {"api": "v2"}, {"SELFNAME": "x"}))
    assert isinstance(source, LocalApiSource)


def test_entry_points_are_declared() -> None:
    points = importlib.metadata.entry_points(group="fogwire.config_sources")
    ours = {p.name: p.value for p in points if p.dist is not None and p.dist.name == "fogwire-config-pot"}
    assert ours == {"pot": "fogwire_config_pot.plugin", "iofog": "fogwire_config_pot.plugin"}
