"""Calling the members, alerts and dispatch APIs with the signed-in user's token.

One `httpx.AsyncClient` per process (connection pooling); `Api(request, user)` gives a
page `api.members`, `api.alerts` and `api.dispatch`, each with `get/post/put/patch/
delete` returning the decoded JSON body. What goes wrong becomes an `UpstreamError`:

- 401: the token expired or was revoked → `SignInRequired` (the session ends);
- 403 / 404: shown as the console's own 403 / 404 page (`app.py`'s handler);
- 422 (and other 4xx): the page catches it and shows `field_errors()` next to the
  fields FastAPI's `detail[].loc` names; uncaught, it is shown as an error page;
- 5xx, timeouts, refused connections: a 502 page saying which service is down.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Annotated, Any

import httpx
from fastapi import Depends, Request

from services.console.session import CurrentUser, SignInRequired, User
from services.console.settings import Settings

SERVICES = ("members", "alerts", "dispatch")


class WrongCredentials(Exception):
    """Members refused the email and password."""


class SignInHeld(Exception):
    """Members holds sign-ins for a while: too many failures (429), or too many password
    checks at once (503)."""

    def __init__(self, retry_after_s: int, locked: bool) -> None:
        self.retry_after_s = retry_after_s
        self.locked = locked


class UpstreamError(Exception):
    """An API answered with an error (or did not answer: status 502)."""

    def __init__(self, service: str, status_code: int, detail: Any) -> None:
        super().__init__(f"{service}: {status_code}")
        self.service = service
        self.status_code = status_code
        self.detail = detail

    def field_errors(self) -> dict[str, str]:
        """{field path: message} from FastAPI's `detail` list, e.g. `area.radius_m`; the
        request's own wrapper (`body`, `query`) is dropped. Messages without a field go
        under "" (shown at the top of the form)."""
        return field_errors(self.detail)

    def message(self) -> str:
        """One line a person can read."""
        if isinstance(self.detail, str):
            return self.detail
        errors = field_errors(self.detail)
        if errors:
            return "; ".join(f"{k}: {v}" if k else v for k, v in errors.items())
        return f"{self.service} answered {self.status_code}"


def field_errors(detail: Any) -> dict[str, str]:
    if isinstance(detail, str):
        return {"": detail}
    errors: dict[str, str] = {}
    if not isinstance(detail, list):
        return errors
    for item in detail:
        if not isinstance(item, dict):
            continue
        loc = [str(p) for p in item.get("loc", []) if p not in ("body", "query", "path")]
        message = str(item.get("msg", "invalid"))
        # pydantic prefixes model-validator messages with "Value error, "
        message = message.removeprefix("Value error, ")
        key = ".".join(loc)
        errors[key] = f"{errors[key]}; {message}" if key in errors else message
    return errors


def settings_of(request: Request) -> Settings:
    settings: Settings = request.app.state.settings
    return settings


def client_of(request: Request) -> httpx.AsyncClient:
    client: httpx.AsyncClient = request.app.state.http
    return client


def base_url(request: Request, service: str) -> str:
    settings = settings_of(request)
    url: str = getattr(settings, f"{service}_url")
    return url.rstrip("/")


def _detail(response: httpx.Response) -> Any:
    try:
        body = response.json()
    except ValueError:
        return response.text[:500] or response.reason_phrase
    return body.get("detail", body) if isinstance(body, dict) else body


class ServiceClient:
    """One API, called as the signed-in user."""

    def __init__(self, request: Request, service: str, user: User | None) -> None:
        self._request = request
        self.service = service
        self._user = user
        self.url = base_url(request, service)

    def _headers(self) -> dict[str, str]:
        headers = {"Accept": "application/json"}
        if self._user is not None:
            headers["Authorization"] = f"Bearer {self._user.token}"
        correlation = self._request.headers.get("x-correlation-id")
        if correlation:
            headers["X-Correlation-Id"] = correlation[:64]
        return headers

    def raise_for(self, response: httpx.Response) -> None:
        if response.status_code < 400:
            return
        if response.status_code == 401 and self._user is not None:
            self._request.session.pop("user", None)
            raise SignInRequired("/", "Your session has ended. Please sign in again.")
        status_code = response.status_code if response.status_code < 500 else 502
        raise UpstreamError(self.service, status_code, _detail(response))

    async def request(self, method: str, path: str, **kwargs: Any) -> Any:
        try:
            response = await client_of(self._request).request(
                method, self.url + path, headers=self._headers(), **kwargs
            )
        except httpx.HTTPError as exc:
            raise UpstreamError(self.service, 502, f"{self.service} did not answer") from exc
        self.raise_for(response)
        if response.status_code == 204 or not response.content:
            return None
        try:
            return response.json()
        except ValueError:
            return response.text

    async def get(self, path: str, **kwargs: Any) -> Any:
        return await self.request("GET", path, **kwargs)

    async def post(self, path: str, **kwargs: Any) -> Any:
        return await self.request("POST", path, **kwargs)

    async def put(self, path: str, **kwargs: Any) -> Any:
        return await self.request("PUT", path, **kwargs)

    async def patch(self, path: str, **kwargs: Any) -> Any:
        return await self.request("PATCH", path, **kwargs)

    async def delete(self, path: str, **kwargs: Any) -> Any:
        return await self.request("DELETE", path, **kwargs)

    @asynccontextmanager
    async def stream(self, method: str, path: str, **kwargs: Any) -> AsyncIterator[httpx.Response]:
        """A streamed response (SSE), raised for errors like `request`."""
        request = client_of(self._request).build_request(
            method, self.url + path, headers=self._headers(), timeout=None, **kwargs
        )
        try:
            response = await client_of(self._request).send(request, stream=True)
        except httpx.HTTPError as exc:
            raise UpstreamError(self.service, 502, f"{self.service} did not answer") from exc
        try:
            if response.status_code >= 400:
                await response.aread()
                self.raise_for(response)
            yield response
        finally:
            await response.aclose()


class Api:
    """The three APIs as `user`."""

    def __init__(self, request: Request, user: User | None) -> None:
        self.user = user
        self.members = ServiceClient(request, "members", user)
        self.alerts = ServiceClient(request, "alerts", user)
        self.dispatch = ServiceClient(request, "dispatch", user)


def api_of(request: Request, user: CurrentUser) -> Api:
    return Api(request, user)


#: a route parameter `api: UserApi` gets the APIs as the signed-in user
UserApi = Annotated[Api, Depends(api_of)]


async def sign_in(request: Request, email: str, password: str) -> str:
    """Members' access token for these credentials (WrongCredentials if refused)."""
    # members locks sign-ins out per client address too: name the person's address, or
    # everyone signing in through the console would share one lockout (members believes
    # this header only from addresses in its MUSTER_FORWARDED_ALLOW_IPS)
    client = request.client.host if request.client else ""
    try:
        answer = await client_of(request).post(
            base_url(request, "members") + "/auth/token",
            data={"username": email, "password": password},
            headers={"X-Forwarded-For": client} if client else {},
        )
    except httpx.HTTPError as exc:
        raise UpstreamError("members", 502, "members did not answer") from exc
    if answer.status_code in (400, 401, 422):
        raise WrongCredentials
    if answer.status_code in (429, 503):
        retry = answer.headers.get("retry-after", "")
        raise SignInHeld(int(retry) if retry.isdigit() else 30, answer.status_code == 429)
    if answer.status_code >= 400:
        raise UpstreamError("members", 502, _detail(answer))
    return str(answer.json()["access_token"])
