"""Webhook signing secrets sealed at rest: Fernet (AES-128-CBC and HMAC-SHA256) under a key derived
from ``SECRET_KEY`` by HKDF-SHA256 (its own ``info``, so the derived key is used for nothing else).

A database dump alone does not yield a secret: the key lives only in the environment. Rotation
(docs/deployment.md): put the old ``SECRET_KEY`` in ``SECRET_KEY_FALLBACKS`` with the new one in
``SECRET_KEY``; stored secrets still open (``MultiFernet`` tries every key), and ``manage.py
reseal_webhook_secrets`` re-encrypts them under the new key, after which the fallback can go.
"""

from __future__ import annotations

import base64
import functools

from cryptography.fernet import Fernet, InvalidToken, MultiFernet
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.kdf.hkdf import HKDF
from django.conf import settings

PREFIX = "fernet1:"
_INFO = b"learning-engine alerts: webhook signing secrets v1"


class SecretUnreadable(ValueError):
    """A stored secret opens under none of the keys (``SECRET_KEY`` changed without a fallback)."""


@functools.lru_cache(maxsize=8)
def _fernet(key: str) -> Fernet:
    derived = HKDF(algorithm=hashes.SHA256(), length=32, salt=None, info=_INFO).derive(key.encode())
    return Fernet(base64.urlsafe_b64encode(derived))


def _keys() -> MultiFernet:
    fallbacks = getattr(settings, "SECRET_KEY_FALLBACKS", None) or []
    return MultiFernet([_fernet(settings.SECRET_KEY), *(_fernet(str(key)) for key in fallbacks)])


def is_sealed(stored: str) -> bool:
    return stored.startswith(PREFIX)


def seal(secret: str) -> str:
    """The stored form of ``secret`` (empty stays empty: an e-mail receiver has none)."""
    if not secret:
        return ""
    return PREFIX + _keys().encrypt(secret.encode()).decode("ascii")


def unseal(stored: str) -> str:
    """The secret ``stored`` holds; ``SecretUnreadable`` when no key opens it."""
    if not stored:
        return ""
    if not is_sealed(stored):
        raise SecretUnreadable("The stored webhook secret is not sealed (run the alerts migrations).")
    try:
        return _keys().decrypt(stored.removeprefix(PREFIX).encode("ascii")).decode()
    except (InvalidToken, UnicodeError):
        raise SecretUnreadable(
            "The stored webhook secret opens under neither SECRET_KEY nor SECRET_KEY_FALLBACKS; "
            "rotate the receiver's secret."
        ) from None


def needs_resealing(stored: str) -> bool:
    """Whether ``stored`` is sealed under a fallback key rather than the current ``SECRET_KEY``."""
    if not stored:
        return False
    try:
        _fernet(settings.SECRET_KEY).decrypt(stored.removeprefix(PREFIX).encode("ascii"))
    except (InvalidToken, UnicodeError):
        return True
    return False


def reseal(stored: str) -> str:
    """``stored`` sealed again under the current ``SECRET_KEY`` (``SecretUnreadable`` if it does not open)."""
    return seal(unseal(stored))
