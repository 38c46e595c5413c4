"""A record system's keys: which JWK Sets are taken, which JWKS URLs are fetched (SSRF), and how
often keys are fetched again."""

from __future__ import annotations

import socket
from types import SimpleNamespace

import pytest
from cryptography.hazmat.primitives.asymmetric import rsa
from django.core.exceptions import ValidationError

from cds_hooks import keys
from cds_hooks.keys import KeyCache, KeySetError, check_jwks_url, fetch_jwks, parse_jwks
from cds_hooks.models import TrustedClient
from learning_engine import roles
from tests.cds_hooks.factories import private_key, public_jwk


def jwks(*items):
    return {"keys": list(items)}


def test_an_ec_and_an_rsa_public_key_are_taken():
    parsed = parse_jwks(
        jwks(public_jwk(private_key("ES384"), kid="ec", alg="ES384"), public_jwk(private_key("RS384"), kid="rsa"))
    )
    assert parsed["ec"].takes("ES384")
    assert not parsed["ec"].takes("ES256")
    assert not parsed["ec"].takes("RS384")
    assert parsed["rsa"].takes("RS384")
    assert parsed["rsa"].takes("PS256")
    assert not parsed["rsa"].takes("HS384")


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"d": "AAAA"}, "private"),
        ({"kty": "oct", "k": "c2VjcmV0"}, "private or symmetric"),
        ({"kid": None}, '"kid"'),
        ({"use": "enc"}, "signing key"),
        ({"alg": "HS384"}, "algorithm not taken"),
        ({"alg": "RS384"}, "does not fit"),
        ({"x": "not base64 of a point"}, "not a valid EC public key"),
    ],
)
def test_a_key_that_cannot_sign_cds_hooks_tokens_is_refused(change, message):
    jwk = public_jwk(private_key("ES384"), kid="k", alg="ES384")
    jwk.update(change)
    jwk = {name: value for name, value in jwk.items() if value is not None}
    with pytest.raises(KeySetError, match=message):
        parse_jwks(jwks(jwk))


def test_a_short_rsa_key_and_a_repeated_kid_are_refused():
    short = rsa.generate_private_key(public_exponent=65537, key_size=1024)
    with pytest.raises(KeySetError, match="2048"):
        parse_jwks(jwks(public_jwk(short, kid="short")))
    key = public_jwk(private_key("ES384"), kid="same")
    with pytest.raises(KeySetError, match="twice"):
        parse_jwks(jwks(key, key))


@pytest.mark.parametrize("raw", [None, [], {}, {"keys": []}, {"keys": "x"}, "not json"])
def test_what_is_no_jwk_set_is_refused(raw):
    with pytest.raises(KeySetError):
        parse_jwks(raw)


@pytest.mark.parametrize(
    ("url", "message"),
    [
        ("http://ehr.example.org/jwks", "https"),
        ("https://user:pw@ehr.example.org/jwks", "credentials"),
        ("https://127.0.0.1/jwks", "loopback"),
        ("https://[::1]/jwks", "loopback"),
        ("https://169.254.169.254/latest/meta-data", "link-local"),
        ("https://[::ffff:127.0.0.1]/jwks", "loopback"),
        ("https://0.0.0.0/jwks", "reserved"),
        ("https://10.1.2.3/jwks", "private network"),
        # Shared address space (RFC 6598): neither private nor public; a cloud's metadata service lives there.
        ("https://100.100.100.200/jwks", "not public"),
        ("https://ehr.example.org:notaport/jwks", "port"),
    ],
)
def test_a_jwks_url_this_server_must_not_fetch_is_refused(url, message):
    with pytest.raises(KeySetError, match=message):
        check_jwks_url(url)


def test_private_networks_can_be_allowed_for_a_record_system_inside_the_hospital(settings):
    settings.CDS_HOOKS_JWKS_PRIVATE_NETWORKS = True
    assert check_jwks_url("https://10.1.2.3/jwks") == ("10.1.2.3", 443, "/jwks")
    with pytest.raises(KeySetError, match="loopback"):  # never the server itself
        check_jwks_url("https://127.0.0.1/jwks")
    with pytest.raises(KeySetError, match="not public"):  # a private network is no shared address space
        check_jwks_url("https://100.64.0.1/jwks")


def test_a_host_that_resolves_to_a_forbidden_address_is_never_connected_to(monkeypatch):
    monkeypatch.setattr(
        socket,
        "getaddrinfo",
        lambda host, port, **kw: [(socket.AF_INET, socket.SOCK_STREAM, 6, "", ("169.254.169.254", port))],
    )

    def no_connection(*args, **kwargs):
        raise AssertionError("connected")

    monkeypatch.setattr(socket, "create_connection", no_connection)
    with pytest.raises(KeySetError, match="resolves to a loopback, link-local"):
        fetch_jwks("https://rebinding.example.org/jwks")


def test_a_refused_key_set_url_is_a_form_error_in_the_admin(db, make_user):
    client = TrustedClient(
        name="EHR",
        issuer="https://ehr.example.org/",
        audience="https://cds.example.org",
        jwks_url="https://169.254.169.254/keys",
        user=make_user(roles.PREDICTION_CLIENT),
    )
    with pytest.raises(ValidationError) as raised:
        client.full_clean()
    assert "link-local" in str(raised.value.message_dict["jwks_url"])


def test_a_client_needs_exactly_one_source_of_keys(db, make_user):
    user = make_user(roles.PREDICTION_CLIENT)
    both = TrustedClient(
        name="EHR",
        issuer="https://ehr.example.org/",
        audience="https://cds.example.org",
        jwks_url="https://ehr.example.org/jwks",
        jwks=jwks(public_jwk(private_key("ES384"), kid="k")),
        user=user,
    )
    neither = TrustedClient(
        name="EHR2", issuer="https://ehr2.example.org/", audience="https://cds.example.org", user=user
    )
    for client in (both, neither):
        with pytest.raises(ValidationError, match="either a JWKS URL or an inline JWKS"):
            client.full_clean()


def test_an_inline_private_key_is_a_form_error(db, make_user):
    jwk = public_jwk(private_key("ES384"), kid="k")
    jwk["d"] = "AAAA"
    client = TrustedClient(
        name="EHR",
        issuer="https://ehr.example.org/",
        audience="https://cds.example.org",
        jwks=jwks(jwk),
        user=make_user(roles.PREDICTION_CLIENT),
    )
    with pytest.raises(ValidationError) as raised:
        client.full_clean()
    assert "leaked" in str(raised.value.message_dict["jwks"])


class TestKeyCache:
    """Fetched keys are reused; an unknown kid fetches again at most once a minute."""

    @pytest.fixture
    def fetches(self, monkeypatch):
        calls = []
        key_set = {"k1": "KEY-1"}

        def fetch(url):
            calls.append(url)
            return dict(key_set)

        monkeypatch.setattr(keys, "fetch_jwks", fetch)
        clock = SimpleNamespace(now=1000.0)
        monkeypatch.setattr(keys.time, "monotonic", lambda: clock.now)
        return SimpleNamespace(calls=calls, key_set=key_set, clock=clock)

    def client(self):
        return SimpleNamespace(pk=1, updated_at=1, jwks_url="https://ehr.example.org/jwks", jwks=None)

    def test_known_kids_are_served_from_the_cache(self, fetches):
        cache, client = KeyCache(), self.client()
        assert cache.key(client, "k1") == "KEY-1"
        assert cache.key(client, "k1") == "KEY-1"
        assert len(fetches.calls) == 1

    def test_unknown_kids_fetch_again_at_most_once_per_interval(self, fetches):
        cache, client = KeyCache(), self.client()
        cache.key(client, "k1")
        for _ in range(50):  # made-up kids cannot make the server hammer the URL
            assert cache.key(client, "made-up") is None
        assert len(fetches.calls) == 1
        fetches.key_set["k2"] = "KEY-2"  # the record system rotates its key
        fetches.clock.now += keys.REFETCH_INTERVAL_SECONDS + 1
        assert cache.key(client, "k2") == "KEY-2"
        assert len(fetches.calls) == 2

    def test_an_edit_in_the_admin_drops_the_cached_keys(self, fetches):
        cache, client = KeyCache(), self.client()
        cache.key(client, "k1")
        client.updated_at = 2
        cache.key(client, "k1")
        assert len(fetches.calls) == 2

    def test_keys_in_hand_are_kept_while_the_url_is_down(self, fetches, monkeypatch, settings):
        cache, client = KeyCache(), self.client()
        cache.key(client, "k1")

        def down(url):
            raise KeySetError("The JWKS URL could not be read (TimeoutError).")

        monkeypatch.setattr(keys, "fetch_jwks", down)
        fetches.clock.now += settings.CDS_HOOKS_JWKS_CACHE_SECONDS + 1
        assert cache.key(client, "k1") == "KEY-1"

    def test_keys_in_hand_are_not_kept_past_the_stale_bound_while_the_url_is_down(self, fetches, monkeypatch, settings):
        cache, client = KeyCache(), self.client()
        cache.key(client, "k1")

        def down(url):
            raise KeySetError("The JWKS URL could not be read (TimeoutError).")

        monkeypatch.setattr(keys, "fetch_jwks", down)
        lifetime = settings.CDS_HOOKS_JWKS_CACHE_SECONDS + settings.CDS_HOOKS_JWKS_MAX_STALE_SECONDS
        fetches.clock.now += lifetime  # the last moment the keys in hand are kept
        assert cache.key(client, "k1") == "KEY-1"
        fetches.clock.now += keys.REFETCH_INTERVAL_SECONDS + 1  # past it: a withdrawn key is not trusted
        with pytest.raises(KeySetError, match="TimeoutError"):
            cache.key(client, "k1")
        monkeypatch.setattr(keys, "fetch_jwks", lambda url: {"k2": "KEY-2"})  # the URL answers again
        fetches.clock.now += keys.REFETCH_INTERVAL_SECONDS + 1
        assert cache.key(client, "k1") is None
        assert cache.key(client, "k2") == "KEY-2"

    def test_a_url_that_never_answered_is_refused_without_a_fetch_per_call(self, monkeypatch):
        calls = []

        def down(url):
            calls.append(url)
            raise KeySetError("The JWKS URL answered HTTP 503.")

        monkeypatch.setattr(keys, "fetch_jwks", down)
        cache, client = KeyCache(), self.client()
        for _ in range(5):
            with pytest.raises(KeySetError, match="503"):
                cache.key(client, "k1")
        assert len(calls) == 1
