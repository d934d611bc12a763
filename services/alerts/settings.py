"""Configuration of the alerts service (every variable is documented in the README)."""

from __future__ import annotations

from pydantic import AliasChoices, Field

from shared.settings import MusterSettings


class Settings(MusterSettings):
    service_name: str = "alerts"
    host: str = Field("127.0.0.1", validation_alias=AliasChoices("ALERTS_HOST"))
    port: int = Field(8002, validation_alias=AliasChoices("ALERTS_PORT"))
