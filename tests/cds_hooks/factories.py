"""A record system for the CDS Hooks tests: its key pair, its JWK Set, its registration as a trusted
client, and calls signed as CDS Hooks 2.0 says (a fresh short-lived JWT per call)."""

from __future__ import annotations

import json
import time
import uuid
from typing import Any

import jwt
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from rest_framework.test import APIClient

from cds_hooks.models import TrustedClient

ISSUER = "https://ehr.example-hospital.org/"
BASE = "https://cds.example-hospital.org"
# One key per algorithm for the whole run: RSA key generation costs ~50 ms.
_KEYS: dict[str, Any] = {}


def private_key(alg: str) -> Any:
    if alg not in _KEYS:
        if alg.startswith("ES"):
            curve = {"ES256": ec.SECP256R1(), "ES384": ec.SECP384R1(), "ES512": ec.SECP521R1()}[alg]
            _KEYS[alg] = ec.generate_private_key(curve)
        else:
            _KEYS[alg] = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    return _KEYS[alg]


def public_jwk(key: Any, *, kid: str, alg: str | None = None) -> dict[str, Any]:
    algorithm = jwt.algorithms.ECAlgorithm if hasattr(key, "curve") else jwt.algorithms.RSAAlgorithm
    jwk = json.loads(algorithm.to_jwk(key.public_key()))
    jwk.update({"kid": kid, "use": "sig"})
    if alg:
        jwk["alg"] = alg
    return jwk


class RecordSystem:
    """Plays a hospital's record system (a CDS Client)."""

    def __init__(self, *, alg: str = "ES384", issuer: str = ISSUER, base: str = BASE, kid: str = "ehr-key-1") -> None:
        self.alg, self.issuer, self.base, self.kid = alg, issuer, base, kid
        self.key = private_key(alg)
        self.client: TrustedClient | None = None  # set by the tests that register it

    def jwks(self) -> dict[str, Any]:
        return {"keys": [public_jwk(self.key, kid=self.kid, alg=self.alg)]}

    def register(self, user: Any, **fields: Any) -> TrustedClient:
        values: dict[str, Any] = {"name": f"EHR {self.issuer}", "audience": self.base, "jwks": self.jwks()}
        values.update(fields)
        client = TrustedClient(issuer=self.issuer, user=user, **values)
        client.full_clean()
        client.save()
        return client

    def token(
        self, path: str, *, claims: dict[str, Any] | None = None, headers: dict[str, Any] | None = None, key: Any = None
    ) -> str:
        now = int(time.time())
        payload = {"iss": self.issuer, "aud": self.base + path, "iat": now, "exp": now + 60, "jti": str(uuid.uuid4())}
        payload.update(claims or {})
        payload = {name: value for name, value in payload.items() if value is not None}
        header = {"kid": self.kid, "typ": "JWT", **(headers or {})}
        header = {name: value for name, value in header.items() if value is not None}
        return jwt.encode(payload, key or self.key, algorithm=self.alg, headers=header)

    def api(self, token: str | None) -> APIClient:
        client = APIClient()
        if token is not None:
            client.credentials(HTTP_AUTHORIZATION=f"Bearer {token}")
        return client

    def get(self, path: str, **token: Any) -> Any:
        return self.api(self.token(path, **token)).get(path)

    def post(self, path: str, body: Any, **token: Any) -> Any:
        return self.api(self.token(path, **token)).post(path, body, format="json")
