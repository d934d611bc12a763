"""Configuration of the members service (every variable is documented in the README)."""

from __future__ import annotations

from pydantic import AliasChoices, Field

from shared.settings import MusterSettings


class Settings(MusterSettings):
    service_name: str = "members"
    host: str = Field("127.0.0.1", validation_alias=AliasChoices("MEMBERS_HOST"))
    port: int = Field(8001, validation_alias=AliasChoices("MEMBERS_PORT"))
