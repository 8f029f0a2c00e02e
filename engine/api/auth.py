"""JWT verification: one algorithm family pinned by configuration, roles from verified claims.

The algorithm list never comes from the token (RFC 8725 §2.1): ``ENGINE_JWT_SECRET`` pins
HS256, ``ENGINE_JWT_PUBLIC_KEY`` pins RS256 or ES256 by the key's type, and configuring
both is refused, so a token signed with HMAC over the public key can never verify.
"""

from __future__ import annotations

import math
import os
import sys
import time
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import jwt
from cryptography.hazmat.primitives.asymmetric.ec import SECP256R1, EllipticCurvePublicKey
from cryptography.hazmat.primitives.asymmetric.rsa import RSAPublicKey
from cryptography.hazmat.primitives.serialization import load_pem_public_key

MIN_SECRET_BYTES = 32
DEFAULT_LEEWAY_S = 30
MAX_LEEWAY_S = 300
# A stolen token is good until it expires: tokens that live longer than this are refused
# however they were signed (exp - iat, or exp - now without iat).
DEFAULT_MAX_LIFETIME_S = 24 * 3600
MAX_MAX_LIFETIME_S = 366 * 24 * 3600
ADMIN_ROLE = "admin"


def python_command() -> str:
    """How to run this interpreter from the current directory (``.venv/bin/python`` under
    ``make run``): a bare ``python`` outside the virtualenv has no ``engine`` installed."""
    exe = Path(sys.executable)
    try:
        return str(exe.relative_to(Path.cwd()))
    except ValueError:
        return str(exe)


NEW_SECRET = "import secrets; print(secrets.token_hex(32))"


def setup_hint() -> str:
    return (
        "No JWT key is configured, and the API refuses to run without one.\n"
        "For local development, create a secret and mint an admin token:\n"
        f"  export ENGINE_JWT_SECRET=\"$(python3 -c '{NEW_SECRET}')\"\n"
        f"  {python_command()} -m engine token --role admin\n"
        "In production use ENGINE_JWT_PUBLIC_KEY (PEM text or a file path; RS256 or ES256) and\n"
        "optionally ENGINE_JWT_AUDIENCE / ENGINE_JWT_ISSUER."
    )


class AuthNotConfigured(ValueError):
    """Neither ``ENGINE_JWT_SECRET`` nor ``ENGINE_JWT_PUBLIC_KEY`` is set."""


class AuthFailed(Exception):
    """The request carries no usable credentials (HTTP 401). The message is safe to return."""


@dataclass(frozen=True, slots=True)
class Principal:
    """Who made a request, from the verified claims only."""

    subject: str
    roles: frozenset[str]

    @property
    def is_admin(self) -> bool:
        return ADMIN_ROLE in self.roles


def _algorithms_for_public_key(pem: str) -> tuple[str, ...]:
    try:
        key = load_pem_public_key(pem.encode())
    except ValueError:
        raise ValueError("ENGINE_JWT_PUBLIC_KEY is not a PEM public key") from None
    if isinstance(key, RSAPublicKey):
        if key.key_size < 2048:
            raise ValueError("ENGINE_JWT_PUBLIC_KEY: RSA keys must be at least 2048 bits")
        return ("RS256",)
    if isinstance(key, EllipticCurvePublicKey) and isinstance(key.curve, SECP256R1):
        return ("ES256",)
    raise ValueError("ENGINE_JWT_PUBLIC_KEY must be an RSA (RS256) or P-256 (ES256) public key")


@dataclass(frozen=True, slots=True)
class AuthConfig:
    """How bearer tokens are verified. Build with :meth:`hs256`, :meth:`public_key` or
    :meth:`from_env`; all of them validate."""

    key: str
    algorithms: tuple[str, ...]
    audience: str | None = None
    issuer: str | None = None
    leeway_s: int = DEFAULT_LEEWAY_S
    max_lifetime_s: int = DEFAULT_MAX_LIFETIME_S

    def __post_init__(self) -> None:
        if not self.algorithms or len({a[:2] for a in self.algorithms}) != 1:
            raise ValueError("JWT algorithms must be one family (HS, RS or ES)")
        if not 0 <= self.leeway_s <= MAX_LEEWAY_S:
            raise ValueError(f"ENGINE_JWT_LEEWAY_S must be between 0 and {MAX_LEEWAY_S}")
        if not 60 <= self.max_lifetime_s <= MAX_MAX_LIFETIME_S:
            raise ValueError(
                f"ENGINE_JWT_MAX_LIFETIME_S must be between 60 and {MAX_MAX_LIFETIME_S}"
            )
        if self.is_symmetric:
            if "-----BEGIN" in self.key:
                # PyJWT refuses PEM keys as HMAC secrets (CVE-2022-29217); say so up front.
                raise ValueError("ENGINE_JWT_SECRET looks like a PEM key; use a random secret")
            if len(self.key.encode()) < MIN_SECRET_BYTES:
                raise ValueError(f"ENGINE_JWT_SECRET must be at least {MIN_SECRET_BYTES} bytes")

    @property
    def is_symmetric(self) -> bool:
        return self.algorithms[0].startswith("HS")

    @classmethod
    def hs256(cls, secret: str, **kwargs: Any) -> AuthConfig:
        return cls(key=secret, algorithms=("HS256",), **kwargs)

    @classmethod
    def public_key(cls, pem: str, **kwargs: Any) -> AuthConfig:
        return cls(key=pem, algorithms=_algorithms_for_public_key(pem), **kwargs)

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> AuthConfig:
        """Read ``ENGINE_JWT_SECRET`` or ``ENGINE_JWT_PUBLIC_KEY`` (PEM text or a path),
        ``ENGINE_JWT_AUDIENCE``, ``ENGINE_JWT_ISSUER``, ``ENGINE_JWT_LEEWAY_S`` and
        ``ENGINE_JWT_MAX_LIFETIME_S``."""
        env = os.environ if env is None else env
        secret = env.get("ENGINE_JWT_SECRET") or ""
        public = env.get("ENGINE_JWT_PUBLIC_KEY") or ""
        if secret and public:
            raise ValueError("set ENGINE_JWT_SECRET or ENGINE_JWT_PUBLIC_KEY, not both")
        common: dict[str, Any] = {
            "audience": env.get("ENGINE_JWT_AUDIENCE") or None,
            "issuer": env.get("ENGINE_JWT_ISSUER") or None,
            "leeway_s": _env_int(env, "ENGINE_JWT_LEEWAY_S", DEFAULT_LEEWAY_S),
            "max_lifetime_s": _env_int(env, "ENGINE_JWT_MAX_LIFETIME_S", DEFAULT_MAX_LIFETIME_S),
        }
        if secret:
            return cls.hs256(secret, **common)
        if public:
            if "-----BEGIN" not in public:
                path = Path(public)
                if not path.is_file():
                    raise ValueError("ENGINE_JWT_PUBLIC_KEY is neither PEM text nor a file")
                public = path.read_text()
            return cls.public_key(public, **common)
        raise AuthNotConfigured(setup_hint())

    def verify(self, token: str) -> Principal:
        """Decode and verify ``token``; ``AuthFailed`` with a safe message otherwise."""
        try:
            claims = jwt.decode(
                token,
                self.key,
                algorithms=list(self.algorithms),
                audience=self.audience,
                issuer=self.issuer,
                leeway=self.leeway_s,
                options={"require": ["exp"]},
            )
        except jwt.ExpiredSignatureError:
            raise AuthFailed("token expired") from None
        except (jwt.PyJWTError, ValueError, TypeError):
            # One message for every other failure: the client learns nothing to iterate on.
            raise AuthFailed("invalid token") from None
        self._check_lifetime(claims)
        return Principal(subject=_subject(claims), roles=_roles(claims))

    def _check_lifetime(self, claims: Mapping[str, Any]) -> None:
        # PyJWT accepts a numeric string ("9999999999") and any float for exp; the RFC
        # says NumericDate, and a finite one.
        times = {name: claims[name] for name in ("exp", "iat", "nbf") if name in claims}
        if not all(_numeric_date(value) for value in times.values()):
            raise AuthFailed("invalid token")
        start = times.get("iat", time.time())
        if times["exp"] - start > self.max_lifetime_s + self.leeway_s:
            raise AuthFailed("token lifetime exceeds the maximum")

    def mint(self, subject: str, role: str | None, ttl_s: int = 3600) -> str:
        """A signed token for development (HS256 only: the service never holds a private
        key)."""
        if not self.is_symmetric:
            raise ValueError("tokens can only be minted with ENGINE_JWT_SECRET (HS256)")
        if not 1 <= ttl_s <= self.max_lifetime_s:
            raise ValueError(
                f"ttl must be between 1 and {self.max_lifetime_s} seconds "
                "(ENGINE_JWT_MAX_LIFETIME_S)"
            )
        now = int(time.time())
        claims: dict[str, Any] = {"sub": subject, "iat": now, "exp": now + ttl_s}
        if role:
            claims["role"] = role
        if self.audience:
            claims["aud"] = self.audience
        if self.issuer:
            claims["iss"] = self.issuer
        return jwt.encode(claims, self.key, algorithm=self.algorithms[0])


def mint_token(config: AuthConfig, subject: str, role: str | None, ttl_s: int = 3600) -> str:
    return config.mint(subject, role, ttl_s)


def _env_int(env: Mapping[str, str], name: str, default: int) -> int:
    raw = env.get(name) or str(default)
    try:
        return int(raw)
    except ValueError:
        raise ValueError(f"{name} must be an integer") from None


def _numeric_date(value: Any) -> bool:
    return (
        isinstance(value, int | float)
        and not isinstance(value, bool)
        and math.isfinite(value)
        and 0 <= value < 2**53
    )


def _subject(claims: Mapping[str, Any]) -> str:
    sub = claims.get("sub")
    return sub[:200] if isinstance(sub, str) and sub else "unknown"


def _roles(claims: Mapping[str, Any]) -> frozenset[str]:
    roles: set[str] = set()
    role = claims.get("role")
    if isinstance(role, str):
        roles.add(role)
    many = claims.get("roles")
    if isinstance(many, list):
        roles.update(r for r in many if isinstance(r, str))
    return frozenset(roles)


def bearer_token(header: str | None) -> str:
    """The token of an ``Authorization: Bearer <token>`` header, or ``AuthFailed``."""
    if not header:
        raise AuthFailed("missing bearer token")
    scheme, _, token = header.partition(" ")
    token = token.strip()
    if scheme.lower() != "bearer" or not token:
        raise AuthFailed("missing bearer token")
    return token
