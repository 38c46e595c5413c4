"""Stateless JWT authentication for the predict endpoints: no user query per request.

The access token carries what a prediction needs (``user_id``, the ``perms`` claim, the
credential fingerprint ``cfp`` and the login session ``sid``: ``learning_engine.tokens``); what the
token cannot know, whether its user's credentials changed or its session was logged out since it
was signed, is read from the shared cache (Redis with ``REDIS_URL``, else the file cache the
machine's processes share): one entry per user, ``CredentialState``, a mirror of the database.

- Each entry is tagged with the user's credential version, a counter of its own in the cache;
  a request reads both (one ``get_many``: one round trip to Redis) and trusts the entry only when
  the tags agree. Otherwise it reads the database (one query, two when the user has blacklisted
  tokens) and stores the entry under the version it read before the database.
- Every change that moves a fingerprint or ends a session (a user saved or deleted, group or
  permission membership, a group's permissions, a refresh token blacklisted) bumps the version at
  once and again on commit (``credentials_changed``, connected in ``LearningEngineConfig.ready``):
  an entry read from the database before the commit carries an older version and is never
  trusted, whatever order the processes write in. If the cache cannot be read, every request
  reads the database.
- What no signal sees (a ``QuerySet.update()`` of users, raw SQL) and two changes of one user
  racing on the file cache (whose ``incr`` is not atomic) last at most ``STATE_SECONDS``: the
  entry expires and the database answers.

A token string's signature and claims are checked once per process and taken again until its
``exp`` (``VerifiedTokens``); the checks above run on every request.

The request's user is a ``TokenClient``: the id and the token's permissions, nothing else; it can
predict and nothing more (no superuser or staff power, no ``save``). Every other endpoint keeps the
database lookup of ``SessionJWTAuthentication``.
"""

from __future__ import annotations

import base64
import binascii
import json
import threading
import time
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from django.contrib.auth import get_user_model
from django.contrib.auth.models import Group, Permission
from django.core.cache import cache
from django.db import transaction
from django.db.models.signals import m2m_changed, post_delete, post_save, pre_delete
from django.utils import timezone
from rest_framework.exceptions import AuthenticationFailed
from rest_framework_simplejwt import tokens
from rest_framework_simplejwt.exceptions import InvalidToken
from rest_framework_simplejwt.settings import api_settings
from rest_framework_simplejwt.token_blacklist.models import BlacklistedToken, OutstandingToken

from learning_engine.tokens import (
    ALL_TOKEN_PERMISSIONS,
    PERMISSION_MASK,
    PERMISSIONS_CLAIM,
    SESSION_CLAIM,
    TOKEN_PERMISSIONS,
    SessionJWTAuthentication,
    check_fingerprint,
    credential_fingerprint,
    permission_bit,
    session_fingerprint,
    with_credential_masks,
)

STATE_KEY = "auth:credentials:{}"
VERSION_KEY = "auth:credentials-version:{}"
# How long a cached state is trusted without a change having written it: the bound on what no
# signal sees. One query per user and this many seconds; a shorter bound costs little more.
STATE_SECONDS = 60


@dataclass(frozen=True, slots=True)
class CredentialState:
    """What the database says about a user's tokens (cached as a plain tuple: cheap to unpickle)."""

    exists: bool
    active: bool
    fingerprint: str
    revoked_sessions: frozenset[str]

    def cached(self) -> tuple[bool, bool, str, tuple[str, ...]]:
        return (self.exists, self.active, self.fingerprint, tuple(sorted(self.revoked_sessions)))

    @classmethod
    def from_cache(cls, value: Any) -> CredentialState | None:
        if not (isinstance(value, tuple) and len(value) == 4):
            return None
        exists, active, fingerprint, revoked = value
        return cls(bool(exists), bool(active), str(fingerprint), frozenset(revoked))


GONE = CredentialState(exists=False, active=False, fingerprint="", revoked_sessions=frozenset())


def _session_of(encoded: str) -> str | None:
    """The ``sid`` claim of a token string from our own table (signed by us: no check needed)."""
    try:
        payload = encoded.split(".")[1]
        claims = json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))
    except (IndexError, ValueError, binascii.Error):
        return None
    session = claims.get(SESSION_CLAIM) if isinstance(claims, dict) else None
    return session if isinstance(session, str) else None


def revoked_sessions(user_id: int) -> frozenset[str]:
    """The user's logged-out sessions that may still hold unexpired access tokens.

    A session is logged out when its refresh tokens are all blacklisted: rotation blacklists the
    old token and adds the new one in one transaction (``TokenRotateSerializer``), so a session
    that rotates always has one that is not. Only unexpired refresh tokens count: no access token
    outlives the refresh token it came with (both end with the session at the latest).
    """
    unexpired = OutstandingToken.objects.filter(user_id=user_id, expires_at__gt=timezone.now())
    blacklisted = unexpired.filter(blacklistedtoken__isnull=False).values_list("token", flat=True)
    ended = {_session_of(token) for token in blacklisted}
    ended.discard(None)
    if not ended:
        return frozenset()
    kept = unexpired.filter(blacklistedtoken__isnull=True).values_list("token", flat=True)
    live = {_session_of(token) for token in kept}
    return frozenset(session for session in ended - live if session is not None)


def read_state(user_id: int) -> CredentialState:
    """The user's credential state from the database."""
    user = with_credential_masks(get_user_model().objects.filter(pk=user_id)).first()
    if user is None:
        return GONE
    return CredentialState(
        exists=True,
        active=user.is_active,
        fingerprint=credential_fingerprint(user),
        revoked_sessions=revoked_sessions(user_id),
    )


def credential_state(user_id: int) -> CredentialState:
    """The user's credential state: the cached one if its version is current, else the database's."""
    version_key, state_key = VERSION_KEY.format(user_id), STATE_KEY.format(user_id)
    try:
        found = cache.get_many([version_key, state_key])
    except Exception:  # the cache is down: the database answers every request (slower, never wrong)
        return read_state(user_id)
    version, entry = found.get(version_key), found.get(state_key)
    if version is not None and isinstance(entry, tuple) and len(entry) == 2 and entry[0] == version:
        state = CredentialState.from_cache(entry[1])
        if state is not None:
            return state
    try:
        if version is None:
            cache.add(version_key, _restart(), timeout=None)
            version = cache.get(version_key)
        state = read_state(user_id)  # after reading the version: a change committed since bumped it
        if version is not None:
            cache.set(state_key, (version, state.cached()), timeout=STATE_SECONDS)
    except Exception:  # an unwritable cache: the next request reads the database again
        return read_state(user_id)
    return state


def _restart() -> int:
    # A lost version starts again from the clock, never from a constant: an entry stored under the
    # version before the loss must not find it again (as the serving generation does).
    return time.time_ns() // 1_000


def credentials_changed(user_ids: Iterable[int | None]) -> None:
    """Call when the credentials or sessions of these users change (the signals below do)."""
    ids = {int(pk) for pk in user_ids if pk is not None}
    if not ids:
        return
    # Now: no process trusts its entry, and this process's own transaction reads the change. On
    # commit: again, since another process may have stored the state it read before the commit.
    _bump_versions(ids)
    transaction.on_commit(lambda: _bump_versions(ids))


def _bump_versions(ids: set[int]) -> None:
    for pk in ids:
        key = VERSION_KEY.format(pk)
        try:
            cache.incr(key)
        except ValueError:  # no version yet (or lost): no entry can carry the new one
            cache.set(key, _restart(), timeout=None)


# --- What changes a state -------------------------------------------------------------------------


def _user_saved(sender: Any, instance: Any, update_fields: Any = None, **kwargs: Any) -> None:
    if update_fields is not None and set(update_fields) <= {"last_login"}:
        return  # every login writes it; it is no credential
    credentials_changed([instance.pk])


def _user_deleted(sender: Any, instance: Any, **kwargs: Any) -> None:
    credentials_changed([instance.pk])


def _users_of_groups(group_ids: Iterable[int]) -> list[int]:
    through = get_user_model().groups.through
    return list(through.objects.filter(group_id__in=list(group_ids)).values_list("user_id", flat=True))


def _memberships_changed(sender: Any, instance: Any, action: str, reverse: bool, pk_set: Any, **kwargs: Any) -> None:
    """``User.groups``: a user's groups (forward) or a group's users (reverse)."""
    if not action.startswith("pre_"):
        return  # acted on before the change, when a clear still knows who it touches
    if not reverse:
        credentials_changed([instance.pk])
    elif action == "pre_clear":
        credentials_changed(_users_of_groups([instance.pk]))
    else:
        credentials_changed(pk_set or ())


def _user_permissions_changed(
    sender: Any, instance: Any, action: str, reverse: bool, pk_set: Any, **kwargs: Any
) -> None:
    """``User.user_permissions``: a user's permissions (forward) or a permission's users (reverse)."""
    if not action.startswith("pre_"):
        return
    if not reverse:
        credentials_changed([instance.pk])
    elif action == "pre_clear":
        credentials_changed(instance.user_set.values_list("pk", flat=True))
    else:
        credentials_changed(pk_set or ())


def _group_permissions_changed(
    sender: Any, instance: Any, action: str, reverse: bool, pk_set: Any, **kwargs: Any
) -> None:
    """``Group.permissions``: every member of the groups concerned."""
    if not action.startswith("pre_"):
        return
    if not reverse:
        groups: Iterable[int] = [instance.pk]
    elif action == "pre_clear":
        groups = instance.group_set.values_list("pk", flat=True)
    else:
        groups = pk_set or ()
    credentials_changed(_users_of_groups(groups))


def _group_deleted(sender: Any, instance: Any, **kwargs: Any) -> None:
    credentials_changed(_users_of_groups([instance.pk]))  # the membership rows go without a signal


def _permission_deleted(sender: Any, instance: Any, **kwargs: Any) -> None:
    groups = instance.group_set.values_list("pk", flat=True)
    credentials_changed([*instance.user_set.values_list("pk", flat=True), *_users_of_groups(groups)])


def _blacklist_changed(sender: Any, instance: Any, **kwargs: Any) -> None:
    credentials_changed([instance.token.user_id])


def connect_signals() -> None:
    user_model = get_user_model()
    post_save.connect(_user_saved, sender=user_model, dispatch_uid="stateless_auth.user_saved")
    post_delete.connect(_user_deleted, sender=user_model, dispatch_uid="stateless_auth.user_deleted")
    m2m_changed.connect(
        _memberships_changed, sender=user_model.groups.through, dispatch_uid="stateless_auth.memberships"
    )
    m2m_changed.connect(
        _user_permissions_changed,
        sender=user_model.user_permissions.through,
        dispatch_uid="stateless_auth.user_permissions",
    )
    m2m_changed.connect(
        _group_permissions_changed, sender=Group.permissions.through, dispatch_uid="stateless_auth.group_permissions"
    )
    pre_delete.connect(_group_deleted, sender=Group, dispatch_uid="stateless_auth.group_deleted")
    pre_delete.connect(_permission_deleted, sender=Permission, dispatch_uid="stateless_auth.permission_deleted")
    post_save.connect(_blacklist_changed, sender=BlacklistedToken, dispatch_uid="stateless_auth.blacklisted")
    post_delete.connect(_blacklist_changed, sender=BlacklistedToken, dispatch_uid="stateless_auth.unblacklisted")


# --- The authentication ---------------------------------------------------------------------------


class TokenClient:
    """The user of a statelessly authenticated request: an id and the token's permissions.

    Enough to be throttled, to be named as a prediction's requester and to pass the serving
    permission check; nothing else (no superuser or staff power, no groups, no ``save``)."""

    is_active = True
    is_authenticated = True
    is_anonymous = False
    is_staff = False
    is_superuser = False

    def __init__(self, user_id: int, permissions: int) -> None:
        self.pk = self.id = user_id
        setattr(self, PERMISSION_MASK, permissions)

    def __str__(self) -> str:
        return f"user {self.pk}"

    def has_perm(self, perm: str, obj: Any = None) -> bool:
        return obj is None and perm in TOKEN_PERMISSIONS and bool(getattr(self, PERMISSION_MASK) & permission_bit(perm))

    def save(self, *args: Any, **kwargs: Any) -> None:
        raise TypeError("A token client is no database row.")

    delete = save


class VerifiedTokens:
    """Access tokens this process has verified (signature, type, claims), until they expire.

    A prediction client sends the same access token for minutes; checking its HMAC signature and
    claims again on each request cost 5-8% of a predict request's CPU. What verification depends on
    never changes for a given token string except the time, so a token verified once is taken again
    until its ``exp`` (plus simplejwt's leeway), checked on every use; everything that can change
    (the login session's end, the user's credentials, a logout) is still checked per request by
    ``get_user``. Bounded: the oldest entry goes when ``size`` are held.
    """

    def __init__(self, size: int = 1024) -> None:
        self.size = size
        self._tokens: dict[bytes, tuple[tokens.Token, float]] = {}
        self._lock = threading.Lock()

    def get(self, raw: bytes) -> tokens.Token | None:
        found = self._tokens.get(raw)
        if found is None:
            return None
        if _now() < found[1]:
            return found[0]
        with self._lock:
            self._tokens.pop(raw, None)
        return None

    def add(self, raw: bytes, token: tokens.Token) -> None:
        expires = token.get("exp")
        if type(expires) not in (int, float):
            return
        until = expires + token.get_token_backend().get_leeway().total_seconds()
        with self._lock:
            while len(self._tokens) >= self.size:
                del self._tokens[next(iter(self._tokens))]
            self._tokens[raw] = (token, until)

    def clear(self) -> None:
        with self._lock:
            self._tokens.clear()

    def __len__(self) -> int:
        return len(self._tokens)


def _now() -> float:
    return time.time()  # a function of its own: tests move this clock, not the process's


VERIFIED_TOKENS = VerifiedTokens()


class StatelessJWTAuthentication(SessionJWTAuthentication):
    """The predict endpoints' JWT authentication: the token and the cached credential state, no
    user query (see the module docstring). Refuses exactly what ``SessionJWTAuthentication``
    refuses, and the access tokens of a logged-out session too. A token's signature is checked
    once per process (``VerifiedTokens``)."""

    def get_validated_token(self, raw_token: bytes) -> tokens.Token:
        token = VERIFIED_TOKENS.get(raw_token)
        if token is None:
            token = super().get_validated_token(raw_token)
            VERIFIED_TOKENS.add(raw_token, token)
        return token

    def get_user(self, validated_token: tokens.Token) -> Any:
        try:
            user_id = int(validated_token[api_settings.USER_ID_CLAIM])
        except (KeyError, TypeError, ValueError):
            raise InvalidToken("Token contained no recognizable user identification") from None
        fingerprint = session_fingerprint(validated_token)
        permissions, session = validated_token.get(PERMISSIONS_CLAIM), validated_token.get(SESSION_CLAIM)
        if type(permissions) is not int or not isinstance(session, str):
            raise AuthenticationFailed("The token belongs to no login session; log in again.", code="token_not_valid")
        state = credential_state(user_id)
        if not state.exists:
            raise AuthenticationFailed("User not found", code="user_not_found")
        if not state.active:
            raise AuthenticationFailed("User is inactive.", code="user_inactive")
        check_fingerprint(fingerprint, state.fingerprint)
        if session in state.revoked_sessions:
            raise AuthenticationFailed("This login session was logged out; log in again.", code="session_ended")
        return TokenClient(user_id, permissions & ALL_TOKEN_PERMISSIONS)
