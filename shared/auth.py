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

from shared.observability import get_logger
from shared.settings import MusterSettings

log = get_logger(__name__)

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
    """Verifies tokens against a JWKS fetched from `jwks_url` (http(s):// or file://).

    Staff must keep working while the members service (which publishes the JWKS) is
    down or slow, and junk tokens must not be able to flood it or hold up real ones:

    - a token whose `kid` is cached is verified at once, never waiting for a fetch;
      once the keys are older than `refresh_interval_s` a refresh starts in the
      background;
    - if refreshing fails, the cached keys stay in use for up to `stale_max_s` after
      the last successful fetch (tokens live an hour, so a day covers a long outage
      without trusting a withdrawn key for ever); past that, tokens are refused;
    - a token naming an unknown `kid` (a key rotation, or junk) triggers at most one
      fetch per `min_fetch_interval_s`; concurrent checks share the fetch in flight
      instead of queueing on a lock.
    """

    def __init__(
        self,
        jwks_url: str,
        *,
        refresh_interval_s: float = 300.0,
        stale_max_s: float = 86400.0,
        min_fetch_interval_s: float = 30.0,
        fetch_timeout_s: float = 5.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._url = jwks_url
        self._keys: dict[str, Any] = {}
        self._refresh_interval_s = refresh_interval_s
        self._stale_max_s = stale_max_s
        self._min_fetch_interval_s = min_fetch_interval_s
        self._fetch_timeout_s = fetch_timeout_s
        self._clock = clock
        #: when the keys were last fetched successfully (clock time)
        self._fetched_at: float | None = None
        #: when the last fetch started, successful or not: the throttle's reference
        self._attempted_at: float | None = None
        self._fetch: asyncio.Task[None] | None = None
        #: fetches started (tests and metrics read it)
        self.fetches = 0

    @classmethod
    def from_settings(cls, settings: MusterSettings) -> TokenVerifier:
        return cls(
            settings.jwks_url,
            refresh_interval_s=settings.jwks_refresh_interval_s,
            stale_max_s=settings.jwks_stale_max_s,
            min_fetch_interval_s=settings.jwks_min_fetch_interval_s,
        )

    def load_jwks(self, jwks: dict[str, Any]) -> None:
        keys = {}
        for jwk in jwks.get("keys", []):
            if jwk.get("kty") == "RSA":
                keys[jwk.get("kid", "")] = jwt.PyJWK(jwk, algorithm="RS256").key
        self._keys = keys
        self._fetched_at = self._clock()

    async def _refresh(self, force: bool = False) -> None:
        """Fetch the JWKS and load it (a subclass that has its keys locally overrides
        this with a no-op)."""
        if self._url.startswith("file://"):
            text = await asyncio.to_thread(Path(self._url[7:]).read_text)
            self.load_jwks(json.loads(text))
            return
        async with httpx.AsyncClient(timeout=self._fetch_timeout_s) as client:
            response = await client.get(self._url)
            response.raise_for_status()
            self.load_jwks(response.json())

    async def _fetch_once(self) -> None:
        try:
            await self._refresh(force=True)
        except (httpx.HTTPError, OSError, ValueError) as exc:
            log.warning(
                "cannot fetch token signing keys; cached keys stay in use",
                url=self._url,
                error_class=type(exc).__name__,
                cached_keys=len(self._keys),
            )
            raise
        self._fetched_at = self._clock()

    def _start_fetch(self) -> asyncio.Task[None]:
        if self._fetch is None or self._fetch.done():
            self._attempted_at = self._clock()
            self.fetches += 1
            self._fetch = asyncio.create_task(self._fetch_once(), name="jwks-fetch")
            # a background refresh nobody awaits must not log "exception never retrieved"
            self._fetch.add_done_callback(
                lambda task: None if task.cancelled() else task.exception()
            )
        return self._fetch

    def _may_fetch(self, now: float) -> bool:
        return self._attempted_at is None or now - self._attempted_at >= self._min_fetch_interval_s

    def _age(self, now: float) -> float:
        return float("inf") if self._fetched_at is None else now - self._fetched_at

    async def signing_key(self, kid: str) -> Any:
        """The public key for `kid`, fetching the JWKS only when the rules above allow."""
        now = self._clock()
        key = self._keys.get(kid)
        if key is not None and self._age(now) <= self._stale_max_s:
            if self._age(now) > self._refresh_interval_s and self._may_fetch(now):
                self._start_fetch()
            return key
        if self._fetch is not None and not self._fetch.done():
            fetch = self._fetch
        elif self._may_fetch(now):
            fetch = self._start_fetch()
        elif key is None and self._keys:
            raise TokenError("token signed with an unknown key")
        elif key is None:
            raise TokenError("no signing keys yet (members unreachable): try again shortly")
        else:
            raise TokenError("signing keys are out of date and cannot be fetched now")
        try:
            # shielded: a client that gives up must not cancel the fetch others wait on
            await asyncio.shield(fetch)
        except (httpx.HTTPError, OSError, ValueError) as exc:
            raise TokenError(f"cannot fetch signing keys: {exc}") from exc
        key = self._keys.get(kid)
        if key is None:
            raise TokenError("token signed with an unknown key")
        if self._age(self._clock()) > self._stale_max_s:
            raise TokenError("signing keys are out of date and cannot be fetched now")
        return key

    async def verify(self, token: str) -> Principal:
        try:
            header = jwt.get_unverified_header(token)
        except jwt.PyJWTError as exc:
            raise TokenError(f"malformed token: {exc}") from exc
        if header.get("alg") != "RS256":
            raise TokenError("token must be signed with RS256")
        kid = header.get("kid", "")
        if not isinstance(kid, str):
            raise TokenError("token kid must be a string")
        key = await self.signing_key(kid)
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
