"""A record system's public keys: a JWK Set given inline or fetched from its https URL.

Only asymmetric signing keys are taken (RSA of 2048 bits or more, EC on P-256, P-384 or P-521):
CDS Hooks forbids ``none`` and every symmetric algorithm, and a JWK with private members (``d``,
``p``, ...) is refused, since whoever pasted it has leaked the record system's signing key.

Fetching a JWKS URL is a request this server makes to an address an administrator typed, so it is
held to what a key fetch needs (SSRF): https only, no credentials in the URL, the host resolved
once and every address it resolves to checked (never loopback, link-local such as the cloud
metadata address 169.254.169.254, multicast, reserved, unspecified, or otherwise not public such
as the shared address space 100.64.0.0/10; private networks only with
``CDS_HOOKS_JWKS_PRIVATE_NETWORKS``, since a hospital's record system often lives on one), the
connection made to the address that was checked (a second DNS answer cannot move it: no
rebinding), the certificate checked against the host name, no redirects, a timeout and a size
limit. The URL comes from the admin, never from a token: a token's ``jku`` header must equal the
configured URL or the token is refused.

Key sets are cached per process: inline ones until the client is edited, fetched ones for
``CDS_HOOKS_JWKS_CACHE_SECONDS``. While the URL is down, the keys in hand are kept at most
``CDS_HOOKS_JWKS_MAX_STALE_SECONDS`` longer; then calls are refused until it answers again.
A token naming a ``kid`` the cached set lacks (the record system rotated its key) fetches again,
at most once per ``REFETCH_INTERVAL_SECONDS`` per client, so tokens with made-up ``kid`` values
cannot make this server hammer anyone's URL.
"""

from __future__ import annotations

import http.client
import ipaddress
import json
import logging
import socket
import ssl
import threading
import time
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

import jwt
from django.conf import settings

logger = logging.getLogger(__name__)

# Signing algorithms taken, with the key type (and curve) each needs. RS384 and ES384 are the ones
# the specification recommends; the others are the same families at other sizes.
ALGORITHMS: dict[str, tuple[str, str | None]] = {
    "RS256": ("RSA", None),
    "RS384": ("RSA", None),
    "RS512": ("RSA", None),
    "PS256": ("RSA", None),
    "PS384": ("RSA", None),
    "PS512": ("RSA", None),
    "ES256": ("EC", "P-256"),
    "ES384": ("EC", "P-384"),
    "ES512": ("EC", "P-521"),
}
MIN_RSA_BITS = 2048
PRIVATE_MEMBERS = frozenset({"d", "p", "q", "dp", "dq", "qi", "oth", "k"})
MAX_KEYS = 20
MAX_JWKS_BYTES = 64 * 1024
FETCH_TIMEOUT_SECONDS = 5.0
REFETCH_INTERVAL_SECONDS = 60.0


class KeySetError(ValueError):
    """A JWK Set (or its URL) that cannot be used; the message says why, for the admin."""


@dataclass(frozen=True, slots=True)
class PublicKey:
    kid: str
    kty: str
    crv: str | None
    alg: str | None  # the JWK's own "alg", when it names one
    key: Any  # a cryptography public key

    def takes(self, alg: str) -> bool:
        """Whether a token signed with ``alg`` may be checked with this key."""
        needed = ALGORITHMS.get(alg)
        if needed is None or (self.alg is not None and self.alg != alg):
            return False
        kty, crv = needed
        return self.kty == kty and (crv is None or self.crv == crv)


def parse_jwks(raw: Any) -> dict[str, PublicKey]:
    """The signing keys of a JWK Set by ``kid``; raises ``KeySetError`` naming the key at fault."""
    if isinstance(raw, (str, bytes)):
        try:
            raw = json.loads(raw)
        except ValueError:
            raise KeySetError("Not JSON.") from None
    if not isinstance(raw, dict) or not isinstance(raw.get("keys"), list) or not raw["keys"]:
        raise KeySetError('A JWK Set is an object with a non-empty "keys" list.')
    if len(raw["keys"]) > MAX_KEYS:
        raise KeySetError(f"At most {MAX_KEYS} keys are taken.")
    keys: dict[str, PublicKey] = {}
    for position, jwk in enumerate(raw["keys"], start=1):
        where = f"Key {position}"
        if not isinstance(jwk, dict):
            raise KeySetError(f"{where} is not an object.")
        if PRIVATE_MEMBERS & jwk.keys():
            raise KeySetError(
                f"{where} holds private or symmetric key material: publish only the public key "
                "(and treat this private key as leaked)."
            )
        kid, kty = jwk.get("kid"), jwk.get("kty")
        if not isinstance(kid, str) or not kid or len(kid) > 200:
            raise KeySetError(f'{where} has no "kid" (CDS Hooks tokens name their key by it).')
        if kid in keys:
            raise KeySetError(f'{where}: the "kid" is used twice.')
        if kty not in ("RSA", "EC"):
            raise KeySetError(f"{where}: only RSA and EC keys are taken (CDS Hooks forbids symmetric keys).")
        if jwk.get("use", "sig") != "sig":
            raise KeySetError(f'{where} is not a signing key ("use" is not "sig").')
        alg = jwk.get("alg")
        if alg is not None and alg not in ALGORITHMS:
            raise KeySetError(f"{where}: algorithm not taken; use one of {', '.join(ALGORITHMS)}.")
        crv = jwk.get("crv") if kty == "EC" else None
        if alg is not None and ALGORITHMS[alg] != (kty, ALGORITHMS[alg][1] if kty == "RSA" else crv):
            raise KeySetError(f'{where}: its "alg" does not fit its key type.')
        try:
            key = jwt.PyJWK(jwk, algorithm=alg or ("RS384" if kty == "RSA" else None)).key
        except (jwt.PyJWKError, jwt.InvalidKeyError, ValueError, TypeError, KeyError):
            raise KeySetError(f"{where} is not a valid {kty} public key.") from None
        if kty == "RSA" and key.key_size < MIN_RSA_BITS:
            raise KeySetError(f"{where}: an RSA key needs at least {MIN_RSA_BITS} bits.")
        if kty == "EC" and crv not in ("P-256", "P-384", "P-521"):
            raise KeySetError(f"{where}: EC keys on P-256, P-384 or P-521 only.")
        keys[kid] = PublicKey(kid=kid, kty=kty, crv=crv, alg=alg, key=key)
    return keys


def _forbidden(address: ipaddress.IPv4Address | ipaddress.IPv6Address) -> str | None:
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        address = address.ipv4_mapped
    if address.is_loopback or address.is_link_local or address.is_multicast:
        return "a loopback, link-local or multicast address"
    if address.is_unspecified or address.is_reserved:
        return "a reserved address"
    if address.is_private and not settings.CDS_HOOKS_JWKS_PRIVATE_NETWORKS:
        return "a private network address (set CDS_HOOKS_JWKS_PRIVATE_NETWORKS=1 to allow them)"
    if not address.is_private and not address.is_global:
        # Shared address space (100.64.0.0/10) and the like: not private, not public either.
        return "an address that is not public"
    return None


def check_jwks_url(url: str) -> tuple[str, int, str]:
    """(host, port, path) of a JWKS URL this server may fetch; raises ``KeySetError`` otherwise.
    Checks the URL's form and, when the host is an address, the address (resolution: ``fetch``)."""
    parts = urlsplit(url)
    if parts.scheme != "https":
        raise KeySetError("A JWKS URL must be https.")
    if parts.username or parts.password:
        raise KeySetError("A JWKS URL carries no credentials.")
    if not parts.hostname:
        raise KeySetError("A JWKS URL needs a host.")
    try:
        port = parts.port or 443
    except ValueError:
        raise KeySetError("The JWKS URL's port is not a number.") from None
    try:
        literal = ipaddress.ip_address(parts.hostname)
    except ValueError:
        literal = None
    if literal is not None and (reason := _forbidden(literal)):
        raise KeySetError(f"The JWKS URL points at {reason}.")
    path = parts.path or "/"
    if parts.query:
        path += f"?{parts.query}"
    return parts.hostname, port, path


class _PinnedHTTPSConnection(http.client.HTTPSConnection):
    """HTTPS to one checked address, with SNI and certificate checks against the host name."""

    def __init__(self, host: str, port: int, address: str, *, timeout: float) -> None:
        super().__init__(host, port, timeout=timeout, context=ssl.create_default_context())
        self._address = address

    def connect(self) -> None:
        sock = socket.create_connection((self._address, self.port), self.timeout)
        self.sock = self._context.wrap_socket(sock, server_hostname=self.host)  # type: ignore[attr-defined]


def fetch_jwks(url: str) -> dict[str, PublicKey]:
    """Fetch and parse a JWK Set under the rules of the module docstring; raises ``KeySetError``."""
    host, port, path = check_jwks_url(url)
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except OSError:
        raise KeySetError("The JWKS URL's host does not resolve.") from None
    addresses = {str(info[4][0]) for info in infos}
    for address in addresses:
        reason = _forbidden(ipaddress.ip_address(address.split("%", 1)[0]))
        if reason:
            raise KeySetError(f"The JWKS URL's host resolves to {reason}.")
    connection = _PinnedHTTPSConnection(host, port, sorted(addresses)[0], timeout=FETCH_TIMEOUT_SECONDS)
    try:
        connection.request("GET", path, headers={"Accept": "application/json", "User-Agent": "cds-hooks-service"})
        response = connection.getresponse()
        if response.status != 200:
            raise KeySetError(f"The JWKS URL answered HTTP {response.status}.")
        body = response.read(MAX_JWKS_BYTES + 1)
    except (OSError, http.client.HTTPException) as exc:
        raise KeySetError(f"The JWKS URL could not be read ({type(exc).__name__}).") from None
    finally:
        connection.close()
    if len(body) > MAX_JWKS_BYTES:
        raise KeySetError(f"The JWK Set is larger than {MAX_JWKS_BYTES} bytes.")
    return parse_jwks(body)


@dataclass
class _Cached:
    stamp: Any  # the client's updated_at: an edit in the admin drops the entry
    keys: dict[str, PublicKey]
    fetched: float  # when these keys were read
    attempted: float  # when a read was last tried (a failed one included)
    error: str = ""  # why the first read failed (no keys yet)


class KeyCache:
    """Key sets per client and process (see the module docstring)."""

    def __init__(self) -> None:
        self._entries: dict[int, _Cached] = {}
        self._lock = threading.Lock()

    def clear(self) -> None:
        with self._lock:
            self._entries.clear()

    def key(self, client: Any, kid: str) -> PublicKey | None:
        """The client's key ``kid``, or None; raises ``KeySetError`` when its keys cannot be had."""
        now = time.monotonic()
        with self._lock:
            entry = self._entries.get(client.pk)
        if entry is None or entry.stamp != client.updated_at:
            entry = self._load(client, now, previous=None)
        elif client.jwks_url and now - entry.attempted > REFETCH_INTERVAL_SECONDS:
            stale = now - entry.fetched > settings.CDS_HOOKS_JWKS_CACHE_SECONDS
            if stale or kid not in entry.keys:
                entry = self._load(client, now, previous=entry)
        if entry.error:
            raise KeySetError(entry.error)
        return entry.keys.get(kid)

    def _load(self, client: Any, now: float, *, previous: _Cached | None) -> _Cached:
        try:
            keys = fetch_jwks(client.jwks_url) if client.jwks_url else parse_jwks(client.jwks)
            entry = _Cached(stamp=client.updated_at, keys=keys, fetched=now, attempted=now)
        except KeySetError as exc:
            logger.warning("The keys of CDS Hooks client %s could not be read: %s", client.pk, exc)
            kept_until = (
                previous.fetched + settings.CDS_HOOKS_JWKS_CACHE_SECONDS + settings.CDS_HOOKS_JWKS_MAX_STALE_SECONDS
                if previous is not None
                else now
            )
            if previous is not None and previous.keys and now <= kept_until:
                # Keep the keys we have rather than refuse every call while the URL is down, for a
                # bounded time: a key the record system withdrew must not stay trusted for as long
                # as its URL stays down.
                entry = _Cached(stamp=previous.stamp, keys=previous.keys, fetched=previous.fetched, attempted=now)
            else:
                entry = _Cached(stamp=client.updated_at, keys={}, fetched=now, attempted=now, error=str(exc))
        with self._lock:
            self._entries[client.pk] = entry
        return entry


KEYS = KeyCache()
