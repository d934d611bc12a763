"""Configuration of the members service (every variable is listed in docs/members.md)."""

from __future__ import annotations

from pydantic import AliasChoices, Field, SecretStr

from shared.settings import MusterSettings


class Settings(MusterSettings):
    service_name: str = "members"
    host: str = Field("127.0.0.1", validation_alias=AliasChoices("MEMBERS_HOST"))
    port: int = Field(8001, validation_alias=AliasChoices("MEMBERS_PORT"))

    #: the first admin, created at start when no admin account exists yet
    bootstrap_admin_email: str | None = Field(
        None, validation_alias=AliasChoices("MUSTER_BOOTSTRAP_ADMIN_EMAIL")
    )
    bootstrap_admin_password: SecretStr | None = Field(
        None, validation_alias=AliasChoices("MUSTER_BOOTSTRAP_ADMIN_PASSWORD")
    )
    #: a PEM file holding the RSA signing key (created there at first start when missing);
    #: unset: the key is generated at first start and kept in the service's database
    signing_key_path: str | None = Field(
        None, validation_alias=AliasChoices("MUSTER_SIGNING_KEY_PATH")
    )
    #: lifetime of a staff token
    token_ttl_s: int = Field(3600, ge=60, validation_alias=AliasChoices("MUSTER_TOKEN_TTL_S"))
    #: a live position older than this falls back to the home position
    live_location_max_age_s: int = Field(
        1800, ge=1, validation_alias=AliasChoices("MUSTER_LIVE_LOCATION_MAX_AGE_S")
    )
    #: live-location coalescing: no new snapshot while the member moved less than this...
    location_min_move_m: float = Field(
        100.0, ge=0, validation_alias=AliasChoices("MUSTER_LOCATION_MIN_MOVE_M")
    )
    #: ...and the last published live position is younger than this
    location_refresh_s: float = Field(
        300.0, ge=0, validation_alias=AliasChoices("MUSTER_LOCATION_REFRESH_S")
    )
    #: the most rows one CSV import may hold
    import_max_rows: int = Field(
        50_000, ge=1, validation_alias=AliasChoices("MUSTER_IMPORT_MAX_ROWS")
    )
