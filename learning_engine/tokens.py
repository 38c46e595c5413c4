"""JWTs bound to one login and to the user's credentials (simplejwt's tokens, two claims more).

- ``auth_time`` (OpenID Connect's name): when the user gave the password. Rotation keeps it, and
  no token, refresh or access, expires later than ``auth_time + JWT_SESSION_LIFETIME``: however
  often a refresh token is rotated, the session ends and the user logs in again.
- ``cfp``: a fingerprint of what the user's access rests on: password hash, active, staff and
  superuser flags, and the set of role groups. An HMAC under SECRET_KEY, so a token tells nothing
  about the hash. Refresh and every request authenticated by an access token compare it with the
  user's fingerprint now: a password change, a deactivation or a change of roles ends every token
  issued before it. (A password rehash after a hasher upgrade also does; the user logs in again.)

Tokens without these claims (simplejwt's own ``RefreshToken.for_user``) are refused.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from datetime import timedelta
from typing import Any

from django.conf import settings
from django.contrib.auth import get_user_model
from django.contrib.auth.models import Group
from django.db import connection
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

from learning_engine.roles import ROLES

AUTH_TIME_CLAIM = "auth_time"
FINGERPRINT_CLAIM = "cfp"
# The annotation that carries a user's role bitmask on the authentication query.
ROLE_MASK = "token_role_mask"


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


def with_role_mask(users: QuerySet) -> QuerySet:
    """``users`` with each one's role bitmask computed by the same query (no query more)."""
    return users.annotate(**{ROLE_MASK: RawSQL(_role_mask_sql(), ROLES, output_field=IntegerField())})  # noqa: S611


def role_mask(user: Any) -> int:
    value = getattr(user, ROLE_MASK, None)
    if value is None:
        names = set(user.groups.filter(name__in=ROLES).values_list("name", flat=True))
        value = sum(1 << index for index, role in enumerate(ROLES) if role in names)
    return int(value)


def credential_fingerprint(user: Any) -> str:
    flags = f"{int(user.is_active)}{int(user.is_staff)}{int(user.is_superuser)}"
    material = f"{user.pk}|{user.password}|{flags}|{role_mask(user)}"
    return salted_hmac("learning_engine.tokens.credential_fingerprint", material, algorithm="sha256").hexdigest()[:32]


def check_token_session(token: tokens.Token, user: Any) -> None:
    """Raise ``AuthenticationFailed`` (401 with a code) unless ``token`` still speaks for ``user``."""
    if not user.is_active:
        raise AuthenticationFailed("User is inactive.", code="user_inactive")
    auth_time, fingerprint = token.get(AUTH_TIME_CLAIM), token.get(FINGERPRINT_CLAIM)
    if not isinstance(auth_time, int) or not isinstance(fingerprint, str):
        raise AuthenticationFailed("The token belongs to no login session; log in again.", code="token_not_valid")
    if datetime_to_epoch(aware_utcnow()) >= auth_time + int(session_lifetime().total_seconds()):
        raise AuthenticationFailed("The login session is over; log in again.", code="session_expired")
    if not constant_time_compare(fingerprint, credential_fingerprint(user)):
        raise AuthenticationFailed(
            "The password, status or roles of this user changed after this login; log in again.",
            code="credentials_changed",
        )


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
        if token is None:  # a new login; a rotated token keeps the claim it was read with
            self.payload[AUTH_TIME_CLAIM] = datetime_to_epoch(self.current_time)
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
        token[FINGERPRINT_CLAIM] = credential_fingerprint(user)
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
        user = with_role_mask(get_user_model().objects.all()).filter(**{api_settings.USER_ID_FIELD: user_id}).first()
        if user is None:
            raise AuthenticationFailed(self.error_messages["no_active_account"], "no_active_account")
        check_token_session(refresh, user)
        data = {"access": str(refresh.access_token)}
        refresh.blacklist()
        refresh.set_jti()
        refresh.set_exp()
        refresh.set_iat()
        refresh.outstand()
        data["refresh"] = str(refresh)
        return data


class _RoleMaskedUsers:
    """What ``JWTAuthentication.get_user`` needs of the user model (``objects.get`` and
    ``DoesNotExist``), with the role mask annotated onto its one query."""

    def __init__(self, queryset: Callable[[], QuerySet]) -> None:
        self.DoesNotExist = get_user_model().DoesNotExist
        self._queryset = queryset

    @property
    def objects(self) -> QuerySet:
        return with_role_mask(self._queryset())


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
