"""Configuration of the console (every variable is listed in README.md)."""

from __future__ import annotations

from urllib.parse import urlsplit

from pydantic import AliasChoices, Field, field_validator

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

    #: an XYZ tile server the command post runs itself (e.g. an offline MBTiles server:
    #: `http://10.0.0.5:8080/{z}/{x}/{y}.png`); empty: maps show a plain ground with the
    #: area, scale and points, and never fetch anything from outside
    tile_url: str = Field("", max_length=500, validation_alias=AliasChoices("CONSOLE_TILE_URL"))
    tile_attribution: str = Field(
        "", max_length=300, validation_alias=AliasChoices("CONSOLE_TILE_ATTRIBUTION")
    )

    @field_validator("tile_url")
    @classmethod
    def _tile_url_is_a_template(cls, value: str) -> str:
        if value and not (
            value.startswith(("http://", "https://"))
            and all(p in value for p in ["{z}", "{x}", "{y}"])
        ):
            raise ValueError("CONSOLE_TILE_URL must be an http(s) URL with {z}, {x} and {y}")
        return value

    @property
    def tiles(self) -> dict[str, str] | None:
        if not self.tile_url:
            return None
        return {"url": self.tile_url, "attribution": self.tile_attribution}

    @property
    def tile_origin(self) -> str:
        if not self.tile_url:
            return ""
        parts = urlsplit(self.tile_url)
        return f"{parts.scheme}://{parts.netloc}"

    @property
    def jwks_url_of_members(self) -> str:
        return f"{self.members_url.rstrip('/')}/.well-known/jwks.json"
