"""API tokens and OAuth access tokens of the emulator.

The neptune client decodes its API token (base64 JSON naming the server) and exchanges it for a JWT
pair that it decodes without verifying; the emulator signs those JWTs with its own secret so a forged
or foreign bearer token is refused with 401 like on a real server.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import secrets
import time
from dataclasses import dataclass
from typing import Any

ACCESS_TOKEN_LIFETIME_S = 3600
OAUTH_CLIENT_ID = "neptune-cli"


def _b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def _b64url_decode(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def make_api_token(api_address: str, api_key: str) -> str:
    """Build a neptune API token: base64 of JSON with the server address and the key."""
    payload = {"api_address": api_address, "api_url": api_address, "api_key": api_key}
    return base64.b64encode(json.dumps(payload).encode("utf-8")).decode("ascii")


def api_key_of(api_token: str) -> str | None:
    """Return the api_key inside a neptune API token, or None when it is not a valid token."""
    try:
        payload = json.loads(base64.b64decode(api_token.strip().encode("ascii")).decode("utf-8"))
    except (ValueError, RecursionError):  # ValueError covers bad base64, UTF-8 and JSON
        return None
    key = payload.get("api_key") if isinstance(payload, dict) else None
    return key if isinstance(key, str) else None


@dataclass(frozen=True)
class TokenIssuer:
    """Issues and checks the emulator's HS256 JWTs (access and refresh tokens)."""

    secret: bytes
    api_key: str
    username: str

    def _sign(self, claims: dict[str, Any]) -> str:
        header = _b64url(json.dumps({"alg": "HS256", "typ": "JWT"}).encode())
        body = _b64url(json.dumps(claims, separators=(",", ":")).encode())
        signature = hmac.new(self.secret, f"{header}.{body}".encode(), hashlib.sha256).digest()
        return f"{header}.{body}.{_b64url(signature)}"

    def verify(self, token: str, kind: str | None = None) -> dict[str, Any] | None:
        """Return the claims of a token this issuer signed (optionally of a kind), else None."""
        parts = token.split(".")
        if len(parts) != 3:
            return None
        expected = hmac.new(self.secret, f"{parts[0]}.{parts[1]}".encode(), hashlib.sha256).digest()
        try:
            if not hmac.compare_digest(expected, _b64url_decode(parts[2])):
                return None
            claims = json.loads(_b64url_decode(parts[1]))
        except (ValueError, RecursionError):  # ValueError covers bad base64, UTF-8 and JSON
            return None
        if not isinstance(claims, dict):
            return None
        if kind is not None and claims.get("typ") != kind:
            return None
        expires = claims.get("exp")
        if expires is not None and (
            isinstance(expires, bool) or not isinstance(expires, int | float) or expires <= time.time()
        ):
            return None  # expired (or a malformed expiry): the client must refresh
        return claims

    def token_pair(self, issuer_url: str) -> dict[str, Any]:
        """A fresh access/refresh pair; `iss` tells the client where to refresh."""
        now = int(time.time())
        common = {"iss": issuer_url, "azp": OAUTH_CLIENT_ID, "sub": self.username, "iat": now}
        access = self._sign(
            {**common, "typ": "Bearer", "exp": now + ACCESS_TOKEN_LIFETIME_S, "jti": secrets.token_hex(8)}
        )
        refresh = self._sign({**common, "typ": "Refresh", "jti": secrets.token_hex(8)})
        return {
            "access_token": access,
            "refresh_token": refresh,
            "expires_in": ACCESS_TOKEN_LIFETIME_S,
            "token_type": "bearer",
        }

    def check_api_key(self, api_token: str | None) -> bool:
        """True when an X-Neptune-Api-Token header carries this emulator's key."""
        if not api_token:
            return False
        key = api_key_of(api_token)
        # Compare bytes: compare_digest refuses str with non-ASCII characters (a forged key may have them).
        return key is not None and hmac.compare_digest(key.encode("utf-8"), self.api_key.encode("utf-8"))

    def check_bearer(self, authorization: str | None) -> bool:
        """True when an Authorization header carries an access token this emulator issued."""
        if not authorization or not authorization.lower().startswith("bearer "):
            return False
        return self.verify(authorization[7:].strip(), kind="Bearer") is not None
