"""Configuration of the dispatch service (every variable is documented in the README)."""

from __future__ import annotations

from pydantic import AliasChoices, Field

from shared.settings import MusterSettings


class Settings(MusterSettings):
    service_name: str = "dispatch"
    host: str = Field("127.0.0.1", validation_alias=AliasChoices("DISPATCH_HOST"))
    port: int = Field(8003, validation_alias=AliasChoices("DISPATCH_PORT"))
