"""SSRF: a webhook URL reaches only public addresses, checked after DNS, and the checked address is used."""

from __future__ import annotations

import socket

import pytest

from alerts import webhooks
from alerts.webhooks import RefusedURL, check_url_shape, resolve


def answers(*addresses):
    """A getaddrinfo that answers ``addresses`` for any name."""

    def getaddrinfo(host, port, *args, **kwargs):
        found = []
        for address in addresses:
            family = socket.AF_INET6 if ":" in address else socket.AF_INET
            sockaddr = (address, port, 0, 0) if family == socket.AF_INET6 else (address, port)
            found.append((family, socket.SOCK_STREAM, 6, "", sockaddr))
        return found

    return getaddrinfo


@pytest.mark.parametrize(
    ("url", "why"),
    [
        ("http://hooks.example.org/x", "https only"),
        ("ftp://hooks.example.org/x", "https only"),
        ("https://user:pw@hooks.example.org/x", "user name or password"),
        ("https:///x", "no host"),
        ("https://hooks.example.org:99999/x", "port"),
        ("https://localhost/x", "this machine"),
        ("https://api.localhost/x", "this machine"),
        ("https://127.0.0.1/x", "not public"),
        ("https://10.1.2.3/x", "not public"),
        ("https://172.16.0.1/x", "not public"),
        ("https://192.168.1.10/x", "not public"),
        ("https://169.254.169.254/latest/meta-data/", "not public"),
        ("https://100.64.0.1/x", "not public"),
        ("https://0.0.0.0/x", "not public"),
        ("https://[::1]/x", "not public"),
        ("https://[fe80::1]/x", "not public"),
        ("https://[fd00::1]/x", "not public"),
        ("https://[::ffff:127.0.0.1]/x", "not public"),
        ("https://[::ffff:a9fe:a9fe]/x", "not public"),
    ],
)
def test_urls_that_could_reach_inside_are_refused(url, why):
    with pytest.raises(RefusedURL, match=why):
        check_url_shape(url)


def test_a_public_https_url_passes_the_shape_check():
    check_url_shape("https://hooks.example.org:8443/services/T0/B0/xyz?channel=ml")
    check_url_shape("https://93.184.215.14/hook")
    check_url_shape("https://[::ffff:5db8:d70e]/hook")  # 93.184.215.14 written inside IPv6: judged as IPv4


def test_settings_allow_http_and_private_addresses_on_purpose(settings):
    settings.ALERTS_WEBHOOK_ALLOW_HTTP = True
    settings.ALERTS_WEBHOOK_ALLOW_PRIVATE = True
    check_url_shape("http://10.1.2.3/x")
    check_url_shape("http://localhost:8080/x")


@pytest.mark.parametrize(
    "resolved",
    [("10.0.0.5",), ("93.184.215.14", "127.0.0.1"), ("169.254.169.254",), ("::1",), ("::ffff:10.0.0.1",)],
)
def test_a_name_that_resolves_to_any_inside_address_is_refused(monkeypatch, resolved):
    monkeypatch.setattr(socket, "getaddrinfo", answers(*resolved))
    with pytest.raises(RefusedURL, match="not public"):
        resolve("hooks.example.org", 443)


def test_a_name_that_does_not_resolve_is_refused(monkeypatch):
    def fail(*args, **kwargs):
        raise socket.gaierror(socket.EAI_NONAME, "Name or service not known")

    monkeypatch.setattr(socket, "getaddrinfo", fail)
    with pytest.raises(RefusedURL, match="did not resolve"):
        resolve("nowhere.invalid", 443)


def test_a_refused_address_is_never_connected_to(monkeypatch):
    monkeypatch.setattr(socket, "getaddrinfo", answers("10.0.0.5"))

    def connect(*args, **kwargs):
        raise AssertionError("connected")

    monkeypatch.setattr(socket, "create_connection", connect)
    answer = webhooks.post("https://hooks.example.org/x", body=b"{}", headers={})
    assert answer.status_code is None
    assert answer.error.startswith("refused: The host resolves to 10.0.0.5")
    assert "hooks.example.org" not in answer.error


def test_the_request_goes_to_the_checked_address_with_the_name_as_host(webhook_server, monkeypatch):
    """DNS rebinding: the name is resolved once, and the connection goes to the address checked then."""
    calls = []
    fake, system = answers("127.0.0.1"), socket.getaddrinfo

    def getaddrinfo(host, port, *args, **kwargs):
        calls.append(host)
        # urllib3 passes the checked address through getaddrinfo again: a literal, no DNS.
        return fake(host, port) if host == "hooks.example.org" else system(host, port, *args, **kwargs)

    monkeypatch.setattr(socket, "getaddrinfo", getaddrinfo)
    answer = webhooks.post(f"http://hooks.example.org:{webhook_server.port}/in?x=1", body=b"{}", headers={})

    assert answer.status_code == 200
    assert calls == ["hooks.example.org", "127.0.0.1"]
    request = webhook_server.requests[-1]
    assert request["path"] == "/in?x=1"
    assert request["headers"]["Host"] == f"hooks.example.org:{webhook_server.port}"
