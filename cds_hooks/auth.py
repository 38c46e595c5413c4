"""Authentication of CDS Hooks calls: the record system's signed JWT (CDS Hooks 2.0, "Trusting
CDS Clients").

Every call (discovery, service, feedback) carries ``Authorization: Bearer <JWT>``, signed with the
record system's private key. The token is taken when, in this order:

1. it is at most ``CDS_HOOKS_MAX_TOKEN_BYTES`` long (``token_too_large``) and a compact JWS at all,
   each part in canonical base64url;
2. its header names an asymmetric algorithm we take (``none`` and HMAC are refused before any key
   is looked at, so a public key can never be used as an HMAC secret: ``algorithm_not_allowed``),
   ``typ`` JWT and a ``kid``, and no JWS extension (``crit``, ``b64``);
3. its ``iss`` is an active trusted client (``unknown_issuer``), and a ``jku`` header, if any,
   is that client's configured JWKS URL (``untrusted_jku``; the URL is never taken from a token);
4. the client's key ``kid`` exists and fits the algorithm (``unknown_key``), and the signature
   verifies with it (``invalid_signature``);
5. ``aud`` is the client's configured base URL followed by the endpoint called (``wrong_audience``),
   ``exp``, ``iat`` and ``jti`` are present, ``exp`` is not past and ``iat`` (and ``nbf``, if
   any) not in the future (with ``CDS_HOOKS_CLOCK_SKEW_SECONDS``), and the token lives at most
   ``CDS_HOOKS_MAX_TOKEN_SECONDS`` (``token_expired``, ``token_lifetime_too_long``, ...);
6. its ``jti`` was never used by that client (``token_replayed``): each token authenticates one
   call.

The token is read once and its signature checked with PyJWT's algorithm (``_VERIFIERS``); the
claims are checked here as PyJWT's ``decode`` checked them, which read the whole token again.

Every refusal is 401 with a JSON ``code`` and a sentence, and names no key material. The call then
acts as the client's account (``TrustedClient.user``), whose role decides what it may do (its
serving permission mask read with it: ``learning_engine.tokens.with_credential_masks``).
"""

from __future__ import annotations

import binascii
import json
import logging
import math
import re
import threading
import time
from datetime import UTC, datetime, timedelta
from typing import Any

import jwt
from django.conf import settings
from django.core.cache import cache
from django.db import IntegrityError, connections, transaction
from django.utils import timezone
from jwt.utils import base64url_decode, base64url_encode
from rest_framework import HTTP_HEADER_ENCODING
from rest_framework.authentication import BaseAuthentication
from rest_framework.exceptions import AuthenticationFailed
from rest_framework.request import Request

from cds_hooks.keys import ALGORITHMS, KEYS, KeySetError
from cds_hooks.models import TrustedClient, UsedToken
from learning_engine.bulk_insert import insert_rows
from learning_engine.stateless_auth import STATE_SECONDS, credential_state
from learning_engine.tokens import PERMISSION_MASK, ROLE_MASK, credential_fingerprint, with_credential_masks

logger = logging.getLogger(__name__)

MAX_JTI_LENGTH = 255
# Expired jti rows are swept at most this often per process (one DELETE on an indexed column).
SWEEP_INTERVAL_SECONDS = 60.0
_last_sweep = 0.0
CLIENTS_VERSION_KEY = "cds-hooks:clients-version"
USED_TOKEN_COLUMNS = ("client_id", "jti", "expires_at")


def refused(code: str, message: str) -> AuthenticationFailed:
    return AuthenticationFailed(message, code=code)


def expected_audience(client: TrustedClient, request: Request) -> str:
    """The ``aud`` a token for this call must carry: the client's base URL and the endpoint's path
    (``request.path_info``: the path below any prefix the site is mounted at, which the base URL
    already holds)."""
    return client.base_url + request.path_info.rstrip("/")


# A compact JWS: three base64url segments (padding as some issuers write it; PyJWT takes it too).
_COMPACT = re.compile(r"([A-Za-z0-9_-]+={0,2})\.([A-Za-z0-9_-]+={0,2})\.([A-Za-z0-9_-]*={0,2})")
# PyJWT's signature algorithms (its ``verify`` turns an ECDSA signature from JOSE's r || s into DER).
_VERIFIERS = {alg: jwt.algorithms.get_default_algorithms()[alg] for alg in ALGORITHMS}
_NUMERIC_DATES = ("exp", "iat", "nbf")


def _segment(text: str) -> bytes:
    if "=" in text and len(text) % 4:
        raise ValueError("padding")
    data = base64url_decode(text)
    # One encoding per value (no stray bits in the last character): a signature cannot be written
    # two ways, as PyJWT refuses too.
    if base64url_encode(data) != text.rstrip("=").encode():
        raise ValueError("not canonical")
    return data


def _parsed(token: str) -> tuple[dict[str, Any], dict[str, Any], bytes, bytes]:
    """(header, claims, signing input, signature) of a compact JWS, nothing verified yet.

    Read once, here: PyJWT's ``decode`` read and checked the token a second time (a sixth of the
    call's authentication besides the signature). What it checked is checked in ``verify``.
    """
    match = _COMPACT.fullmatch(token)
    if match is None:
        raise refused("malformed_token", "The bearer token is not a JWT.")
    header_part, payload_part, signature_part = match.groups()
    try:
        header = json.loads(_segment(header_part))
        payload = json.loads(_segment(payload_part))
        signature = _segment(signature_part)
    except (ValueError, binascii.Error, RecursionError):  # JSON's, base64's and UTF-8's errors are ValueErrors
        raise refused("malformed_token", "The bearer token is not a JWT.") from None
    if not isinstance(header, dict) or not isinstance(payload, dict):
        raise refused("malformed_token", "The bearer token is not a JWT.")
    return header, payload, f"{header_part}.{payload_part}".encode("ascii"), signature


def _number(value: Any) -> bool:
    # PyJWT took a numeric string (and a boolean) where JWT wants a NumericDate: refused here.
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


def _check_claims(claims: dict[str, Any], client: TrustedClient, audiences: list[str], audience: str) -> None:
    """The registered claims of a token whose signature verified, as PyJWT's ``decode`` checked them
    (required claims, ``iat`` and ``nbf`` not in the future, ``exp`` not past, ``iss``, ``aud``,
    ``sub`` and ``jti`` strings), then the lifetime and the ``jti``'s form."""
    for name in ("iss", "aud", "exp", "iat", "jti"):
        if claims.get(name) is None:
            raise refused("missing_claim", f"The token has no {name} claim.")
    if not all(_number(claims[name]) for name in _NUMERIC_DATES if name in claims):
        raise refused("invalid_token", "The token's exp, iat and nbf must be numbers (seconds since the epoch).")
    now, leeway = time.time(), settings.CDS_HOOKS_CLOCK_SKEW_SECONDS
    if claims["iat"] > now + leeway:
        raise refused("token_not_yet_valid", "The token was issued in the future (iat); check the clocks.")
    if claims.get("nbf", now) > now + leeway:
        raise refused("token_not_yet_valid", "The token is not valid yet (nbf); check the clocks.")
    if claims["exp"] <= now - leeway:
        raise refused("token_expired", "The token has expired.")
    if claims["iss"] != client.issuer:
        raise refused("invalid_token", "The token is not valid.")
    aud = claims["aud"]
    if not aud:  # "" or []: PyJWT's missing_claim too
        raise refused("missing_claim", "The token has no aud claim.")
    aud = [aud] if isinstance(aud, str) else aud
    if not isinstance(aud, list) or not all(isinstance(item, str) for item in aud):
        raise refused("invalid_token", "The token is not valid.")
    if not any(item in aud for item in audiences):
        raise refused("wrong_audience", f"The token's aud must be {audience}.")
    if "sub" in claims and not isinstance(claims["sub"], str):
        raise refused("invalid_token", "The token is not valid.")
    _check_lifetime(claims)


def verify(
    token: str, request: Request, *, audiences: tuple[str, ...] = (), record: bool = True
) -> tuple[TrustedClient, dict[str, Any]]:
    """(client, claims) of a token that passes every check of the module docstring, else
    ``AuthenticationFailed``. ``audiences``: further endpoint paths whose URL the ``aud`` may be.
    ``record=False``: the jti is not written here; the caller must ``use_once`` it on every answer."""
    if len(token) > settings.CDS_HOOKS_MAX_TOKEN_BYTES:
        raise refused("token_too_large", f"The bearer token is longer than {settings.CDS_HOOKS_MAX_TOKEN_BYTES} bytes.")
    header, claims, signing_input, signature = _parsed(token)
    alg = header.get("alg")
    if alg not in ALGORITHMS:
        raise refused(
            "algorithm_not_allowed",
            f"Tokens must be signed with an asymmetric algorithm ({', '.join(ALGORITHMS)}; ES384 or RS384 "
            "recommended); none and HMAC are refused.",
        )
    if str(header.get("typ", "")).upper() != "JWT":
        raise refused("malformed_token", 'The token header must say "typ": "JWT".')
    kid = header.get("kid")
    if not isinstance(kid, str) or not kid:
        raise refused("malformed_token", 'The token header must name its key ("kid").')
    if "crit" in header or header.get("b64", True) is not True:
        # No JWS extension is understood here (RFC 7515: a critical one must then be refused), and an
        # unencoded payload (RFC 7797) is no JWT.
        raise refused("malformed_token", "The token header names an extension this service does not take.")
    issuer = claims.get("iss")
    client = CLIENTS.get(issuer) if isinstance(issuer, str) else None
    if client is None:
        raise refused("unknown_issuer", "The token's issuer (iss) is not a trusted CDS Hooks client.")
    jku = header.get("jku")
    if jku is not None and jku != client.jwks_url:
        raise refused("untrusted_jku", "The token's jku is not the JWKS URL configured for its issuer.")
    try:
        key = KEYS.key(client, kid)
    except KeySetError:
        raise refused("keys_unavailable", "The issuer's public keys could not be read; try again later.") from None
    if key is None or not key.takes(alg):
        raise refused("unknown_key", "The issuer has no key with this kid for this algorithm.")
    verifier = _VERIFIERS[alg]
    if not verifier.verify(signing_input, verifier.prepare_key(key.key), signature):
        raise refused("invalid_signature", "The token's signature does not verify with the issuer's key.")
    audience = expected_audience(client, request)
    _check_claims(claims, client, [audience, *(client.base_url + path for path in audiences)], audience)
    if record:
        use_once(client, claims)
    return client, claims


def _read_client(issuer: str) -> TrustedClient | None:
    """The active client of ``issuer``, its account and the account's role and permission masks:
    one query."""
    clients = with_credential_masks(TrustedClient.objects.select_related("user"))
    client = clients.filter(issuer=issuer, is_active=True).first()
    if client is not None:
        # The masks the client query computed: serving's permission check reads them on the user
        # (no has_perm query), and so does the credential fingerprint.
        for mask in (ROLE_MASK, PERMISSION_MASK):
            setattr(client.user, mask, getattr(client, mask))
    return client


class ClientCache:
    """Active clients by issuer, per process, as long as nothing they depend on changed.

    The client query (the account's role and permission masks computed in SQL) was the largest
    part of a call's authentication. An entry is trusted while (1) the clients' version in the
    shared cache is the one read before the entry's query: every save or deletion of a client
    bumps it, at once and on commit (``clients_changed``), so an entry read before a change
    committed is never trusted after; and (2) the account's credential fingerprint
    (``learning_engine.stateless_auth.credential_state``, the predict endpoints' own cached
    mirror of the database, bumped by every change of a user, its groups or permissions) is the
    one the entry was read with: a deactivated account or a lost role refuses the next call. If
    the shared cache cannot be read, every call reads the database. What no signal sees (a
    ``QuerySet.update()``) lasts at most ``STATE_SECONDS``, as for the predict endpoints.
    """

    def __init__(self) -> None:
        self._entries: dict[str, tuple[Any, TrustedClient, str, float]] = {}  # ..., read at (monotonic)
        self._lock = threading.Lock()

    def clear(self) -> None:
        with self._lock:
            self._entries.clear()

    def get(self, issuer: str) -> TrustedClient | None:
        try:
            version = cache.get(CLIENTS_VERSION_KEY)
            if version is None:
                cache.add(CLIENTS_VERSION_KEY, time.time_ns() // 1_000, timeout=None)
                version = cache.get(CLIENTS_VERSION_KEY)
        except Exception:  # the cache is down: the database answers every call
            return _read_client(issuer)
        with self._lock:
            entry = self._entries.get(issuer)
        # An entry older than STATE_SECONDS is read again: what no signal sees lasts no longer.
        if (
            entry is not None
            and version is not None
            and entry[0] == version
            and time.monotonic() - entry[3] < STATE_SECONDS
        ):
            _version, client, fingerprint, _read_at = entry
            state = credential_state(client.user_id)
            if state.exists and state.active and state.fingerprint == fingerprint:
                return _fresh(client)
        found = _read_client(issuer)
        if found is None or version is None:
            return found
        with self._lock:
            self._entries[issuer] = (version, found, credential_fingerprint(found.user), time.monotonic())
        return _fresh(found)


def _copy(instance: Any) -> Any:
    """``copy.copy`` of a model instance without pickling's detour (``__reduce_ex__``, the Django
    version stamped and checked): its ``__dict__`` and its state as ``Model.__getstate__`` copies
    them (a state of its own, with its own cache of related objects)."""
    fresh = instance.__class__.__new__(instance.__class__)
    values = instance.__dict__.copy()
    state = values["_state"]
    fresh_state = state.__class__.__new__(state.__class__)
    fresh_state.__dict__.update(state.__getstate__())
    fresh_state.fields_cache = state.fields_cache.copy()
    values["_state"] = fresh_state
    fresh.__dict__.update(values)
    return fresh


def _fresh(client: TrustedClient) -> TrustedClient:
    """A copy per request: no two requests share a mutable client or user."""
    fresh = _copy(client)
    fresh.user = _copy(client.user)
    return fresh


CLIENTS = ClientCache()


def clients_changed(**_kwargs: Any) -> None:
    """Receiver of a client's save or deletion: no process trusts its cached clients after this,
    nor after the change commits (another process may have read the row before the commit)."""
    _bump_clients()
    transaction.on_commit(_bump_clients)


def _bump_clients() -> None:
    try:
        cache.incr(CLIENTS_VERSION_KEY)
    except ValueError:  # no version yet (or lost): no entry can carry the new one
        cache.set(CLIENTS_VERSION_KEY, time.time_ns() // 1_000, timeout=None)
    except Exception:  # noqa: S110  # the cache is down: entries cannot be trusted from it either
        pass


def _check_lifetime(claims: dict[str, Any]) -> None:
    exp, iat, jti = claims["exp"], claims["iat"], claims["jti"]
    if not isinstance(jti, str) or not jti or len(jti) > MAX_JTI_LENGTH:
        raise refused("invalid_token", f"The token's jti must be a string of 1 to {MAX_JTI_LENGTH} characters.")
    if exp - iat > settings.CDS_HOOKS_MAX_TOKEN_SECONDS:
        raise refused(
            "token_lifetime_too_long",
            f"The token lives {int(exp - iat)} s; at most {settings.CDS_HOOKS_MAX_TOKEN_SECONDS} s are taken "
            "(a short-lived token per call).",
        )


def use_once(client: TrustedClient, claims: dict[str, Any], *, savepoint: bool = True) -> None:
    """Record the token's jti; a second use is refused (the unique constraint decides, whichever
    process comes first). Kept until the token expires, clock skew included.

    ``savepoint=False`` inside a transaction (``serve``'s ``extra_writes``): a replay's refusal
    propagates and rolls the whole transaction back, the prediction's log rows with it."""
    expires = datetime.fromtimestamp(claims["exp"], tz=UTC) + timedelta(seconds=settings.CDS_HOOKS_CLOCK_SKEW_SECONDS)
    using = UsedToken.objects.db
    row = [(client.pk, claims["jti"], expires)]
    try:
        if savepoint and connections[using].in_atomic_block:
            # A savepoint: a replay's IntegrityError must not break the caller's transaction.
            with transaction.atomic(using=using):
                insert_rows(UsedToken, USED_TOKEN_COLUMNS, row, using=using, returning=False)
        else:
            # In autocommit one INSERT is its own transaction, durable when it returns: no BEGIN
            # and COMMIT around it (two round trips on PostgreSQL), and no model instance.
            insert_rows(UsedToken, USED_TOKEN_COLUMNS, row, using=using, returning=False)
    except IntegrityError:
        raise refused("token_replayed", "This token was used already; sign a new one for every call.") from None
    _sweep()


def _sweep() -> None:
    global _last_sweep
    now = time.monotonic()
    if now - _last_sweep < SWEEP_INTERVAL_SECONDS:
        return
    _last_sweep = now
    UsedToken.objects.filter(expires_at__lt=timezone.now()).delete()


class TokenUse:
    """A verified token whose jti is not yet recorded: ``write`` records it (once; a replay is
    ``token_replayed``); ``write_in_transaction`` is the same without a savepoint, for the caller's
    transaction (``serve``'s ``extra_writes``), so a replay rolls back what was written with it,
    and ``written`` once that transaction has committed."""

    __slots__ = ("pending",)

    def __init__(self) -> None:
        self.pending: tuple[TrustedClient, dict[str, Any]] | None = None

    def write(self) -> None:
        pending, self.pending = self.pending, None
        if pending is not None:
            use_once(*pending)

    def write_in_transaction(self) -> None:
        # Still pending after it: the transaction may be rolled back and written again (``serve``
        # does when an observer fails); the caller calls ``written`` once it has committed.
        if self.pending is not None:
            use_once(*self.pending, savepoint=False)

    def written(self) -> None:
        self.pending = None


class CdsHooksAuthentication(BaseAuthentication):
    """DRF authentication by a CDS Client's JWT; ``request.auth`` is the ``TrustedClient``."""

    def authenticate(self, request: Request) -> tuple[Any, TrustedClient] | None:
        # The header as DRF's get_authorization_header reads it, without building request.headers.
        header = request.META.get("HTTP_AUTHORIZATION", b"")
        parts = (header.encode(HTTP_HEADER_ENCODING) if isinstance(header, str) else header).split()
        if not parts:
            return None
        if parts[0].lower() != b"bearer" or len(parts) != 2:
            raise refused("malformed_token", "Send Authorization: Bearer <JWT>.")
        try:
            token = parts[1].decode("ascii")
        except UnicodeDecodeError:
            raise refused("malformed_token", "The bearer token is not a JWT.") from None
        # A view may take further audiences (feedback also takes its service's path).
        view = (request.parser_context or {}).get("view")
        token_audiences = getattr(view, "token_audiences", None)
        audiences: tuple[str, ...] = token_audiences(request) if token_audiences is not None else ()
        # A view that writes in one transaction (the services: the prediction's log) records the
        # jti itself: in that transaction on success, on its own on any other answer (``TokenUse``).
        deferred = getattr(view, "token_use", None)
        client, claims = verify(token, request, audiences=audiences, record=deferred is None)
        if deferred is not None:
            deferred.pending = (client, claims)
        user = client.user
        if not user.is_active:
            raise refused("inactive_client", "The account of this CDS Hooks client is inactive.")
        return user, client

    def authenticate_header(self, request: Request) -> str:
        return 'Bearer realm="cds-hooks"'
