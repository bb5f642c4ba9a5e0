"""The registry client's pure parts: ``WWW-Authenticate`` challenges, proxy variables and ``NO_PROXY`` matching."""

from __future__ import annotations

import pytest

from fogwire.http_proxy import Proxy, ProxySettings, bypasses_proxy, is_loopback, parse_proxy_url
from fogwire.registry_client import Challenge, Credentials, RegistryClient, parse_challenges


def test_a_bearer_challenge_keeps_commas_inside_quotes() -> None:
    header = 'Bearer realm="https://auth.example/token",service="registry.example",scope="repository:a/b:pull,push"'
    assert parse_challenges(header) == [
        Challenge(
            "bearer",
            {"realm": "https://auth.example/token", "service": "registry.example", "scope": "repository:a/b:pull,push"},
        )
    ]


def test_several_challenges_in_one_value_each_with_its_parameters() -> None:
    header = r'Bearer realm="https://a/t?x=1,y=2", error="insufficient_scope", Basic realm="say \"hi\"", charset=UTF-8'
    assert parse_challenges(header) == [
        Challenge("bearer", {"realm": "https://a/t?x=1,y=2", "error": "insufficient_scope"}),
        Challenge("basic", {"realm": 'say "hi"', "charset": "UTF-8"}),
    ]


@pytest.mark.parametrize(
    ("header", "expected"),
    [
        ('Basic realm="Registry Realm"', [Challenge("basic", {"realm": "Registry Realm"})]),
        ("BASIC", [Challenge("basic", {})]),
        ("Negotiate abc==, Basic realm = r", [Challenge("negotiate", {}), Challenge("basic", {"realm": "r"})]),
        (
            'Basic realm="x",, Bearer realm="y"',
            [Challenge("basic", {"realm": "x"}), Challenge("bearer", {"realm": "y"})],
        ),
        ("", []),
    ],
)
def test_basic_token68_and_odd_spacing(header: str, expected: list[Challenge]) -> None:
    assert parse_challenges(header) == expected


@pytest.mark.parametrize(
    ("no_proxy", "host", "port", "bypassed"),
    [
        ("*", "registry.example", 443, True),
        ("example.com", "example.com", 443, True),
        ("example.com", "registry.example.com", 443, True),
        (".example.com", "example.com", 443, True),
        (".example.com", "a.b.example.com", 443, True),
        ("*.example.com", "registry.example.com", 443, True),
        ("example.com", "notexample.com", 443, False),
        ("example.com:5000", "registry.example.com", 5000, True),
        ("example.com:5000", "registry.example.com", 443, False),
        ("10.0.0.0/8", "10.20.30.40", 443, True),
        ("10.0.0.0/8", "11.0.0.1", 443, False),
        ("10.1.2.3", "10.1.2.3", 5000, True),
        ("10.1.2.3:5000", "10.1.2.3", 5001, False),
        ("fd00::/8", "fd00::1", 443, True),
        ("[fd00::1]:5000", "fd00::1", 5000, True),
        ("other.example, registry.example ,10.0.0.1", "REGISTRY.example.", 443, True),
        ("", "registry.example", 443, False),
    ],
)
def test_no_proxy_entries(no_proxy: str, host: str, port: int, bypassed: bool) -> None:
    assert bypasses_proxy(no_proxy, host, port) is bypassed


def test_the_environment_lower_case_wins_and_loopback_is_never_proxied() -> None:
    settings = ProxySettings.from_environment(
        {
            "HTTPS_PROXY": "http://upper:3128",
            "https_proxy": "http://u%40x:p%3Aw@lower:3128",
            "HTTP_PROXY": "plain-proxy:8080",
            "NO_PROXY": "internal.example",
        }
    )
    assert settings.proxy_for("https", "registry.example", 443) == Proxy("lower", 3128, "u@x", "p:w")
    assert settings.proxy_for("http", "registry.example", 80) == Proxy("plain-proxy", 8080)
    assert settings.proxy_for("https", "registry.internal.example", 443) is None
    for loopback in ("localhost", "127.0.0.1", "127.8.9.10", "::1"):
        assert settings.proxy_for("https", loopback, 5000) is None
    assert ProxySettings.from_environment({}).proxy_for("https", "registry.example", 443) is None


def test_proxy_urls_credentials_and_refusals_never_show_the_password() -> None:
    proxy = parse_proxy_url("http://me:s3cret@proxy.example:3128", "HTTPS_PROXY")
    assert proxy.authorization == "Basic bWU6czNjcmV0"
    assert parse_proxy_url("proxy.example", "HTTP_PROXY") == Proxy("proxy.example", 80)
    assert parse_proxy_url("http://proxy.example:3128", "HTTP_PROXY").authorization is None
    assert "s3cret" not in repr(proxy)
    settings = ProxySettings.from_environment({"HTTPS_PROXY": "https://me:s3cret@proxy.example"})
    assert "s3cret" not in repr(settings)
    with pytest.raises(ValueError, match="HTTPS_PROXY names a https:// proxy") as caught:
        settings.proxy_for("https", "registry.example", 443)
    assert "s3cret" not in str(caught.value)


def test_loopback_names() -> None:
    assert all(map(is_loopback, ["localhost", "localhost:5000", "127.0.0.1:5001", "[::1]:5000", "::1"]))
    assert not any(map(is_loopback, ["198.18.77.1:5443", "registry.example", "10.0.0.1"]))


def test_the_client_decides_plain_http_like_dockerd_and_hides_credentials() -> None:
    credentials = Credentials("me", "s3cret")
    none = ProxySettings()
    assert RegistryClient("127.0.0.1:5001", proxies=none).base_url == "http://127.0.0.1:5001"
    assert RegistryClient("localhost:5000", proxies=none, ca_pem="x").base_url == "https://localhost:5000"
    assert RegistryClient("registry.example", credentials, proxies=none).base_url == "https://registry.example"
    assert RegistryClient("registry.example", proxies=none, plain_http=True).base_url == "http://registry.example"
    client = RegistryClient("registry.example", credentials, proxies=none)
    assert "s3cret" not in repr(client) and "s3cret" not in repr(credentials)
