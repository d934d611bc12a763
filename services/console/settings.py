"""Configuration of the console (every variable is listed in README.md)."""

from __future__ import annotations

from pydantic import AliasChoices, Field

from shared.settings import MusterSettings


class Settings(MusterSettings):
    service_name: str = "console"
    host: str = Field("127.0.0.1", validation_alias=AliasChoices("CONSOLE_HOST"))
    port: int = Field(8000, validation_alias=AliasChoices("CONSOLE_PORT"))
    members_url: str = Field(
        "http://127.0.0.1:8001", validation_alias=AliasChoices("CONSOLE_MEMBERS_URL")
    )
    alerts_url: str = Field(
        "http://127.0.0.1:8002", validation_alias=AliasChoices("CONSOLE_ALERTS_URL")
    )
    dispatch_url: str = Field(
        "http://127.0.0.1:8003", validation_alias=AliasChoices("CONSOLE_DISPATCH_URL")
    )
    #: signs the session cookie; empty: a random one per process (sessions end on restart)
    session_secret: str = Field("", validation_alias=AliasChoices("CONSOLE_SESSION_SECRET"))
    #: mark the session cookie Secure (set it when the console is served over HTTPS)
    secure_cookies: bool = Field(False, validation_alias=AliasChoices("CONSOLE_SECURE_COOKIES"))
    #: how long one upstream API call may take before the page says the service is down
    upstream_timeout_s: float = Field(
        15.0, gt=0, validation_alias=AliasChoices("CONSOLE_UPSTREAM_TIMEOUT_S")
    )
    #: how often (at most) the console asks members whether a session's account is still
    #: enabled and unchanged (0: on every request)
    account_recheck_s: float = Field(
        10.0, ge=0, validation_alias=AliasChoices("CONSOLE_ACCOUNT_RECHECK_S")
    )

    @property
    def jwks_url_of_members(self) -> str:
        return f"{self.members_url.rstrip('/')}/.well-known/jwks.json"
