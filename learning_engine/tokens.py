"""JWTs bound to one login and to the user's credentials (simplejwt's tokens, two claims more).

- ``auth_time`` (OpenID Connect's name): when the user gave the password. Rotation keeps it, and
  no token, refresh or access, expires later than ``auth_time + JWT_SESSION_LIFETIME``: however
  often a refresh token is rotated, the session ends and the user logs in again.
- ``cfp``: a fingerprint of what the user's access rests on: password hash, active, staff and
  superuser flags, the set of role groups and the token permissions held (``perms``). An HMAC
  under SECRET_KEY, so a token tells nothing about the hash. Refresh and every request
  authenticated by an access token compare it with the user's fingerprint now: a password change,
  a deactivation, a change of roles or of the permissions a role grants ends every token issued
  before it. (A password rehash after a hasher upgrade also does; the user logs in again.)
- ``perms``: the serving permissions the user held at the login (``TOKEN_PERMISSIONS``, a bitmask;
  a superuser holds all), which the stateless predict authentication
  (``learning_engine.stateless_auth``) trusts once the fingerprint is current. The fingerprint
  covers it, so a token whose ``perms`` no longer hold is refused as a whole.
- ``sid``: the login session, kept by rotation, so that a logout (the session's refresh token
  blacklisted) ends the session's access tokens at the predict endpoints too.

Tokens without these claims (simplejwt's own ``RefreshToken.for_user``) are refused.
"""

from __future__ import annotations

import functools
import uuid
from collections.abc import Callable
from datetime import timedelta
from typing import Any

from django.conf import settings
from django.contrib.auth import get_user_model
from django.contrib.auth.models import Group, Permission
from django.contrib.contenttypes.models import ContentType
from django.db import connection, transaction
from django.db.models import IntegerField, QuerySet
from django.db.models.expressions import RawSQL
from django.utils.crypto import constant_time_compare, salted_hmac
from drf_spectacular.contrib.rest_framework_simplejwt import SimpleJWTScheme
from rest_framework.exceptions import AuthenticationFailed
from rest_framework_simplejwt import tokens
from rest_framework_simplejwt.authentication import JWTAuthentication
from rest_framework_simplejwt.serializers import TokenObtainPairSerializer, TokenRefreshSerializer
from rest_framework_simplejwt.settings import api_settings
from rest_framework_simplejwt.token_blacklist.models import OutstandingToken
from rest_framework_simplejwt.utils import aware_utcnow, datetime_from_epoch, datetime_to_epoch

from learning_engine.roles import PERM_GIVE_FEEDBACK, PERM_PREDICT, ROLES

AUTH_TIME_CLAIM = "auth_time"
FINGERPRINT_CLAIM = "cfp"
PERMISSIONS_CLAIM = "perms"
SESSION_CLAIM = "sid"
# The annotations that carry a user's role and permission bitmasks on the authentication query.
ROLE_MASK = "token_role_mask"
PERMISSION_MASK = "token_permission_mask"
# The permissions a token carries (bit i: holds TOKEN_PERMISSIONS[i]); append only, never reorder.
TOKEN_PERMISSIONS = (PERM_PREDICT, PERM_GIVE_FEEDBACK)
ALL_TOKEN_PERMISSIONS = (1 << len(TOKEN_PERMISSIONS)) - 1


def permission_bit(permission: str) -> int:
    return 1 << TOKEN_PERMISSIONS.index(permission)


def session_lifetime() -> timedelta:
    return settings.JWT_SESSION_LIFETIME  # type: ignore[no-any-return]


# --- The credential fingerprint -------------------------------------------------------------------


@functools.cache
def _role_mask_sql() -> str:
    """SQL for the outer user's roles as a bitmask (bit i: member of ``ROLES[i]``). A user is in a
    group at most once, so the sum of the bits is exact. Raw SQL like the serving flags (an ORM
    subquery costs milliseconds of query building on every request)."""
    quote = connection.ops.quote_name
    user_model = get_user_model()
    user_table = quote(user_model._meta.db_table)
    user_pk = quote(str(user_model._meta.pk.column))  # type: ignore[union-attr]
    user_groups = quote(str(user_model._meta.get_field("groups").remote_field.through._meta.db_table))  # type: ignore[union-attr]
    bits = " ".join(f"WHEN %s THEN {1 << index}" for index in range(len(ROLES)))
    # Only quoted table and column names of our own models are formatted in; role names are parameters.
    return (
        f"(SELECT COALESCE(SUM(CASE g.{quote('name')} {bits} ELSE 0 END), 0) "  # noqa: S608
        f"FROM {user_groups} ug JOIN {quote(Group._meta.db_table)} g ON g.{quote('id')} = ug.{quote('group_id')} "
        f"WHERE ug.{quote('user_id')} = {user_table}.{user_pk})"
    )


def _through_table(model: Any, name: str) -> str:
    """The table of a many-to-many field's through model."""
    return str(model._meta.get_field(name).remote_field.through._meta.db_table)


@functools.cache
def _holds_sql() -> str:
    """SQL for "the outer user holds (app label, codename) directly or through a group".

    ModelBackend's rule (without its active and superuser shortcuts, which the fingerprint and
    ``credential_claims`` add) as raw SQL: an ``Exists`` annotation costs the ORM ~5 ms of query
    building per request; a ``RawSQL`` one almost nothing. Table names come from the models.
    """
    user_model = get_user_model()
    quote = connection.ops.quote_name
    user_table = quote(user_model._meta.db_table)
    user_pk = quote(str(user_model._meta.get_field("id").column))
    user_groups = _through_table(user_model, "groups")
    user_perms = _through_table(user_model, "user_permissions")
    group_perms = _through_table(Group, "permissions")
    permission, content_type = Permission._meta.db_table, ContentType._meta.db_table
    matches = (
        f"JOIN {quote(permission)} p ON p.{quote('id')} = x.{quote('permission_id')} "
        f"JOIN {quote(content_type)} ct ON ct.{quote('id')} = p.{quote('content_type_id')} "
        f"WHERE p.{quote('codename')} = %s AND ct.{quote('app_label')} = %s"
    )
    # Only quoted table and column names of our own models are formatted in; values are parameters.
    return (
        f"(EXISTS (SELECT 1 FROM {quote(user_groups)} ug "  # noqa: S608
        f"JOIN {quote(group_perms)} x ON x.{quote('group_id')} = ug.{quote('group_id')} {matches} "
        f"AND ug.{quote('user_id')} = {user_table}.{user_pk}) "
        f"OR EXISTS (SELECT 1 FROM {quote(user_perms)} x {matches} "
        f"AND x.{quote('user_id')} = {user_table}.{user_pk}))"
    )


@functools.cache
def _permission_mask_sql() -> str:
    """SQL for the outer user's ``TOKEN_PERMISSIONS`` held, as a bitmask."""
    bits = (f"(CASE WHEN {_holds_sql()} THEN {1 << i} ELSE 0 END)" for i in range(len(TOKEN_PERMISSIONS)))
    return "(" + " + ".join(bits) + ")"


def _permission_params() -> list[str]:
    params: list[str] = []
    for permission in TOKEN_PERMISSIONS:
        app_label, codename = permission.split(".", 1)
        params += [codename, app_label, codename, app_label]
    return params


def with_credential_masks(users: QuerySet) -> QuerySet:
    """``users`` with each one's role and token-permission bitmasks, computed by the same query."""
    return users.annotate(
        **{
            ROLE_MASK: RawSQL(_role_mask_sql(), ROLES, output_field=IntegerField()),  # noqa: S611
            PERMISSION_MASK: RawSQL(_permission_mask_sql(), _permission_params(), output_field=IntegerField()),  # noqa: S611
        }
    )


def _masks(user: Any) -> tuple[int, int]:
    """(role mask, permission mask) of ``user``: from its annotations, else one query."""
    roles, permissions = getattr(user, ROLE_MASK, None), getattr(user, PERMISSION_MASK, None)
    if roles is None or permissions is None:
        found = with_credential_masks(get_user_model().objects.filter(pk=user.pk))
        roles, permissions = found.values_list(ROLE_MASK, PERMISSION_MASK).first() or (0, 0)
    return int(roles), int(permissions)


def role_mask(user: Any) -> int:
    return _masks(user)[0]


def credential_claims(user: Any) -> tuple[str, int]:
    """The ``cfp`` and ``perms`` claims of ``user``, from one reading of its masks: the
    fingerprint covers exactly the permissions the claim states."""
    roles, permissions = _masks(user)
    flags = f"{int(user.is_active)}{int(user.is_staff)}{int(user.is_superuser)}"
    material = f"{user.pk}|{user.password}|{flags}|{roles}|{permissions}"
    fingerprint = salted_hmac("learning_engine.tokens.credential_fingerprint", material, algorithm="sha256")
    # A superuser holds every permission (ModelBackend's rule), whatever the grants say.
    return fingerprint.hexdigest()[:32], ALL_TOKEN_PERMISSIONS if user.is_superuser else permissions


def credential_fingerprint(user: Any) -> str:
    return credential_claims(user)[0]


def session_fingerprint(token: tokens.Token) -> str:
    """The token's fingerprint claim, after checking that its login session is still on: raises
    ``AuthenticationFailed`` for a token of no session (``token_not_valid``) or an ended one."""
    auth_time, fingerprint = token.get(AUTH_TIME_CLAIM), token.get(FINGERPRINT_CLAIM)
    if type(auth_time) is not int or not isinstance(fingerprint, str):
        raise AuthenticationFailed("The token belongs to no login session; log in again.", code="token_not_valid")
    if datetime_to_epoch(aware_utcnow()) >= auth_time + int(session_lifetime().total_seconds()):
        raise AuthenticationFailed("The login session is over; log in again.", code="session_expired")
    return fingerprint


def check_fingerprint(claimed: str, current: str) -> None:
    if not constant_time_compare(claimed, current):
        raise AuthenticationFailed(
            "The password, status or roles of this user changed after this login; log in again.",
            code="credentials_changed",
        )


def check_token_session(token: tokens.Token, user: Any) -> None:
    """Raise ``AuthenticationFailed`` (401 with a code) unless ``token`` still speaks for ``user``."""
    if not user.is_active:
        raise AuthenticationFailed("User is inactive.", code="user_inactive")
    check_fingerprint(session_fingerprint(token), credential_fingerprint(user))


# --- Tokens ---------------------------------------------------------------------------------------


class _EndsWithSession:
    payload: dict[str, Any]

    def cap_to_session(self) -> None:
        auth_time = self.payload.get(AUTH_TIME_CLAIM)
        if isinstance(auth_time, int) and "exp" in self.payload:
            end = auth_time + int(session_lifetime().total_seconds())
            self.payload["exp"] = min(self.payload["exp"], end)

    def set_exp(self, claim: str = "exp", from_time: Any = None, lifetime: Any = None) -> None:
        super().set_exp(claim, from_time, lifetime)  # type: ignore[misc]
        self.cap_to_session()


class AccessToken(_EndsWithSession, tokens.AccessToken):
    pass


class RefreshToken(_EndsWithSession, tokens.RefreshToken):
    access_token_class = AccessToken

    def __init__(self, token: Any = None, verify: bool = True) -> None:
        super().__init__(token, verify)
        if token is None:  # a new login; a rotated token keeps the claims it was read with
            self.payload[AUTH_TIME_CLAIM] = datetime_to_epoch(self.current_time)
            self.payload[SESSION_CLAIM] = uuid.uuid4().hex
            self.cap_to_session()

    @property
    def access_token(self) -> AccessToken:
        access = super().access_token
        access.cap_to_session()  # type: ignore[attr-defined]
        return access  # type: ignore[return-value]

    @classmethod
    def for_user(cls, user: Any) -> RefreshToken:  # type: ignore[override]
        token = cls()
        token[api_settings.USER_ID_CLAIM] = str(getattr(user, api_settings.USER_ID_FIELD))
        token[FINGERPRINT_CLAIM], token[PERMISSIONS_CLAIM] = credential_claims(user)
        OutstandingToken.objects.create(
            user=user,
            jti=token[api_settings.JTI_CLAIM],
            token=str(token),
            created_at=token.current_time,
            expires_at=datetime_from_epoch(token["exp"]),
        )
        return token


# --- Serializers and authentication ---------------------------------------------------------------


class TokenObtainSerializer(TokenObtainPairSerializer):
    token_class = RefreshToken


class TokenRotateSerializer(TokenRefreshSerializer):
    """simplejwt's refresh with rotation and blacklisting, after ``check_token_session``."""

    token_class = RefreshToken

    def validate(self, attrs: dict[str, Any]) -> dict[str, str]:
        refresh = RefreshToken(attrs["refresh"])  # signature, expiry, blacklist
        user_id = refresh.get(api_settings.USER_ID_CLAIM)
        users = with_credential_masks(get_user_model().objects.all())
        user = users.filter(**{api_settings.USER_ID_FIELD: user_id}).first()
        if user is None:
            raise AuthenticationFailed(self.error_messages["no_active_account"], "no_active_account")
        check_token_session(refresh, user)
        data = {"access": str(refresh.access_token)}
        # One transaction: a session whose only refresh token is blacklisted is logged out
        # (``stateless_auth.revoked_sessions``), which this one is not while it rotates.
        with transaction.atomic():
            refresh.blacklist()
            refresh.set_jti()
            refresh.set_exp()
            refresh.set_iat()
            refresh.outstand()
        data["refresh"] = str(refresh)
        return data


class _RoleMaskedUsers:
    """What ``JWTAuthentication.get_user`` needs of the user model (``objects.get`` and
    ``DoesNotExist``), with the role and permission masks annotated onto its one query."""

    def __init__(self, queryset: Callable[[], QuerySet]) -> None:
        self.DoesNotExist = get_user_model().DoesNotExist
        self._queryset = queryset

    @property
    def objects(self) -> QuerySet:
        return with_credential_masks(self._queryset())


class SessionJWTAuthentication(JWTAuthentication):
    """simplejwt's access-token authentication, refusing tokens whose login session is over or
    whose user's credentials changed since (``check_token_session``); no query more."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.user_model = _RoleMaskedUsers(self.user_queryset)  # type: ignore[assignment]

    def user_queryset(self) -> QuerySet:
        """The users to look the token's user up in (a subclass may annotate more)."""
        return get_user_model().objects.all()

    def get_user(self, validated_token: tokens.Token) -> Any:
        user = super().get_user(validated_token)
        check_token_session(validated_token, user)
        return user


class SessionJWTScheme(SimpleJWTScheme):
    """OpenAPI: the bearer JWT, the one scheme a client needs, described in the Authorize dialog."""

    target_class = "learning_engine.tokens.SessionJWTAuthentication"
    name = "jwtAuth"

    def get_security_definition(self, auto_schema: Any) -> dict[str, Any]:
        definition = dict(super().get_security_definition(auto_schema))
        definition["description"] = (
            "The access token from POST /api/v1/auth/token/ (username and password), sent as "
            "`Authorization: Bearer <access>`. Paste the token only. It lasts 5 minutes; "
            "POST /api/v1/auth/token/refresh/ gives a new one."
        )
        return definition
