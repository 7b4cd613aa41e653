"""Access tokens (short-lived JWTs) and refresh tokens (opaque, stored only as digests)."""

from __future__ import annotations

import hashlib
import secrets
import time
import uuid
from collections import OrderedDict

import jwt
import msgspec

ALGORITHM = "HS256"
ACCESS_TOKEN_TTL_S = 15 * 60
REFRESH_TOKEN_TTL_S = 14 * 24 * 3600
_ISSUER = "aiplatform"


class AccessClaims(msgspec.Struct, frozen=True, kw_only=True):
    sub: str  # user id
    sid: str  # session: the refresh-token family this token was issued in
    exp: int
    iat: int
    jti: str


class InvalidTokenError(Exception):
    pass


def issue_access_token(secret_key: str, user_id: str, session_id: str) -> str:
    now = int(time.time())
    claims = {
        "sub": user_id,
        "sid": session_id,
        "iat": now,
        "exp": now + ACCESS_TOKEN_TTL_S,
        "jti": uuid.uuid4().hex,
        "iss": _ISSUER,
    }
    return jwt.encode(claims, secret_key, algorithm=ALGORITHM)


def decode_access_token(secret_key: str, token: str) -> AccessClaims:
    """Only HS256 with our key is accepted: `alg: none`, other algorithms, another key, an
    expired or tampered token all fail the same way."""
    try:
        claims = jwt.decode(
            token,
            secret_key,
            algorithms=[ALGORITHM],
            issuer=_ISSUER,
            options={"require": ["sub", "sid", "exp", "iat", "jti", "iss"]},
        )
        return msgspec.convert(
            {k: claims[k] for k in ("sub", "sid", "exp", "iat", "jti")}, AccessClaims
        )
    except (jwt.PyJWTError, msgspec.ValidationError) as error:
        raise InvalidTokenError(str(error)) from None


class VerifiedTokens:
    """Tokens already verified, kept until they expire: a client sends the same access token
    with every request for its 15 minutes, and checking its signature again each time costs
    more than the rest of authentication. Bounded, oldest first out."""

    def __init__(self, secret_key: str, max_entries: int = 10_000):
        self.secret_key = secret_key
        self.max_entries = max_entries
        self._claims: OrderedDict[str, AccessClaims] = OrderedDict()

    def decode(self, token: str) -> AccessClaims:
        claims = self._claims.get(token)
        if claims is not None and claims.exp > time.time():
            return claims
        claims = decode_access_token(self.secret_key, token)
        self._claims[token] = claims
        if len(self._claims) > self.max_entries:
            self._claims.popitem(last=False)
        return claims


def new_refresh_token() -> str:
    return secrets.token_urlsafe(32)


def token_digest(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()
