"""Verifying staff tokens: RS256 JWTs issued by the members service, checked against
its JWKS, so alerts and dispatch verify tokens without sharing a secret.

Claims: `sub` (account id), `email`, `role` (admin / coordinator / authority),
`sections` (codes a coordinator or authority acts for), `iss`, `aud`, `exp`, `iat`.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import httpx
import jwt
from fastapi import Depends, HTTPException, Request, status
from fastapi.security import OAuth2PasswordBearer

Role = Literal["admin", "coordinator", "authority"]
ROLES: frozenset[str] = frozenset({"admin", "coordinator", "authority"})
ISSUER = "muster-members"
AUDIENCE = "muster"

oauth2_scheme = OAuth2PasswordBearer(tokenUrl="/auth/token", auto_error=False)


@dataclass(frozen=True)
class Principal:
    """The staff member behind a request."""

    account_id: str
    email: str
    role: Role
    sections: frozenset[str] = field(default_factory=frozenset)

    @property
    def is_admin(self) -> bool:
        return self.role == "admin"

    def can_act_for(self, section: str) -> bool:
        """Admins act for every section; others only for their own."""
        return self.is_admin or section in self.sections


class TokenError(Exception):
    """The token is missing, malformed, badly signed, expired or lacks a claim."""


class TokenVerifier:
    """Verifies tokens against a JWKS fetched from `jwks_url` (http(s):// or file://),
    refreshed when a token names a key it has not seen (key rotation)."""

    def __init__(self, jwks_url: str, *, refresh_interval_s: float = 300.0) -> None:
        self._url = jwks_url
        self._keys: dict[str, Any] = {}
        self._fetched_at = 0.0
        self._refresh_interval_s = refresh_interval_s
        self._lock = asyncio.Lock()

    def load_jwks(self, jwks: dict[str, Any]) -> None:
        keys = {}
        for jwk in jwks.get("keys", []):
            if jwk.get("kty") == "RSA":
                keys[jwk.get("kid", "")] = jwt.PyJWK(jwk, algorithm="RS256").key
        self._keys = keys
        self._fetched_at = time.monotonic()

    async def _refresh(self, force: bool = False) -> None:
        async with self._lock:
            fresh = time.monotonic() - self._fetched_at < self._refresh_interval_s
            if self._keys and fresh and not force:
                return
            if self._url.startswith("file://"):
                text = await asyncio.to_thread(Path(self._url[7:]).read_text)
                self.load_jwks(json.loads(text))
                return
            async with httpx.AsyncClient(timeout=5.0) as client:
                response = await client.get(self._url)
                response.raise_for_status()
                self.load_jwks(response.json())

    async def verify(self, token: str) -> Principal:
        try:
            header = jwt.get_unverified_header(token)
        except jwt.PyJWTError as exc:
            raise TokenError(f"malformed token: {exc}") from exc
        if header.get("alg") != "RS256":
            raise TokenError("token must be signed with RS256")
        kid = header.get("kid", "")
        try:
            await self._refresh()
            if kid not in self._keys:
                await self._refresh(force=True)
        except (httpx.HTTPError, OSError, ValueError) as exc:
            raise TokenError(f"cannot fetch signing keys: {exc}") from exc
        key = self._keys.get(kid)
        if key is None:
            raise TokenError("token signed with an unknown key")
        try:
            claims = jwt.decode(
                token,
                key,
                algorithms=["RS256"],
                audience=AUDIENCE,
                issuer=ISSUER,
                options={"require": ["exp", "sub", "iss", "aud"]},
            )
        except jwt.PyJWTError as exc:
            raise TokenError(str(exc)) from exc
        return principal_from_claims(claims)


def principal_from_claims(claims: dict[str, Any]) -> Principal:
    role = claims.get("role")
    if role not in ROLES:
        raise TokenError("token carries no valid role")
    sections = claims.get("sections") or []
    if not isinstance(sections, list) or not all(isinstance(s, str) for s in sections):
        raise TokenError("token sections must be a list of section codes")
    return Principal(
        account_id=str(claims["sub"]),
        email=str(claims.get("email", "")),
        role=role,
        sections=frozenset(sections),
    )


def _unauthorized(detail: str) -> HTTPException:
    return HTTPException(
        status_code=status.HTTP_401_UNAUTHORIZED,
        detail=detail,
        headers={"WWW-Authenticate": "Bearer"},
    )


def principal_dependency(
    get_verifier: Callable[[Request], TokenVerifier],
) -> Callable[..., Awaitable[Principal]]:
    """A FastAPI dependency returning the verified principal (401 otherwise)."""

    async def current_principal(
        request: Request, token: str | None = Depends(oauth2_scheme)
    ) -> Principal:
        if not token:
            raise _unauthorized("missing bearer token: log in at POST /auth/token")
        try:
            return await get_verifier(request).verify(token)
        except TokenError as exc:
            raise _unauthorized(f"invalid token: {exc}") from exc

    return current_principal


def require_role(principal: Principal, *roles: Role) -> None:
    """403 unless the principal has one of `roles`."""
    if principal.role not in roles:
        raise HTTPException(
            status_code=status.HTTP_403_FORBIDDEN,
            detail=f"this action needs the role {' or '.join(roles)}",
        )
