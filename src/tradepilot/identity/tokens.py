"""Access tokens (short-lived JWTs) and opaque refresh tokens."""

from __future__ import annotations

import hashlib
import uuid
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone

import jwt

from tradepilot.config import Settings
from tradepilot.core.crypto import random_token, token_hmac

ALGORITHM = "HS256"
ACCESS_TOKEN_TYPE = "at+jwt"  # RFC 9068: a refresh token or any other JWT cannot pass as access
REFRESH_PURPOSE = "refresh-token"


class InvalidToken(Exception):
    pass


@dataclass(frozen=True)
class AccessClaims:
    user_id: uuid.UUID
    session_id: uuid.UUID
    expires_at: datetime


class TokenService:
    def __init__(self, settings: Settings) -> None:
        secret = settings.secret_key.get_secret_value()
        # a key of its own for JWTs, derived from the one secret the operator manages
        self._jwt_key = hashlib.sha256(f"jwt-signing:{secret}".encode()).digest()
        self._secret = secret
        self.issuer = settings.jwt_issuer
        self.audience = settings.jwt_audience
        self.access_ttl = timedelta(seconds=settings.access_token_ttl_seconds)

    def issue_access(self, *, user_id: uuid.UUID, session_id: uuid.UUID, now: datetime) -> str:
        claims = {
            "iss": self.issuer,
            "aud": self.audience,
            "sub": str(user_id),
            "sid": str(session_id),
            "iat": int(now.timestamp()),
            "nbf": int(now.timestamp()),
            "exp": int((now + self.access_ttl).timestamp()),
            "jti": uuid.uuid4().hex,
        }
        return jwt.encode(claims, self._jwt_key, algorithm=ALGORITHM, headers={"typ": ACCESS_TOKEN_TYPE})

    def decode_access(self, token: str, *, now: datetime) -> AccessClaims:
        try:
            header = jwt.get_unverified_header(token)
            if header.get("typ") != ACCESS_TOKEN_TYPE or header.get("alg") != ALGORITHM:
                raise InvalidToken("wrong token type")
            # PyJWT checks exp/nbf against the real time; check against our clock too
            claims = jwt.decode(
                token,
                self._jwt_key,
                algorithms=[ALGORITHM],
                audience=self.audience,
                issuer=self.issuer,
                options={"require": ["exp", "iat", "sub", "sid", "iss", "aud"], "verify_exp": False,
                         "verify_nbf": False, "verify_iat": False},
            )
            if not claims["iat"] - 30 <= now.timestamp() < claims["exp"]:
                raise InvalidToken("token expired or not yet valid")
            return AccessClaims(
                user_id=uuid.UUID(claims["sub"]),
                session_id=uuid.UUID(claims["sid"]),
                expires_at=datetime.fromtimestamp(claims["exp"], tz=timezone.utc),
            )
        except (jwt.PyJWTError, ValueError, KeyError, TypeError) as exc:
            raise InvalidToken(str(exc)) from None

    def new_refresh_token(self) -> tuple[str, str]:
        """A fresh opaque refresh token and the HMAC under which it is stored."""
        token = "rt_" + random_token(32)
        return token, self.hash_refresh(token)

    def hash_refresh(self, token: str) -> str:
        return token_hmac(self._secret, token, purpose=REFRESH_PURPOSE)

    def hash_api_secret(self, secret: str) -> str:
        return token_hmac(self._secret, secret, purpose="api-key")
