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

    # --- signing in (issue 10, defect 11; docs/security.md) ---------------------------
    #: failed sign-ins of one account (email) before it is locked for a while
    signin_free_failures_per_account: int = Field(
        5, ge=1, validation_alias=AliasChoices("MUSTER_SIGNIN_FREE_FAILURES_PER_ACCOUNT")
    )
    #: failed sign-ins from one client address (any accounts) before it is locked
    signin_free_failures_per_address: int = Field(
        20, ge=1, validation_alias=AliasChoices("MUSTER_SIGNIN_FREE_FAILURES_PER_ADDRESS")
    )
    #: the first lockout; each further failure doubles it...
    signin_lockout_base_s: float = Field(
        30.0, gt=0, validation_alias=AliasChoices("MUSTER_SIGNIN_LOCKOUT_BASE_S")
    )
    #: ...up to this
    signin_lockout_max_s: float = Field(
        900.0, gt=0, validation_alias=AliasChoices("MUSTER_SIGNIN_LOCKOUT_MAX_S")
    )
    #: failures are forgotten this long after the last one (a success forgets an
    #: account's at once, never an address's)
    signin_failure_memory_s: float = Field(
        3600.0, gt=0, validation_alias=AliasChoices("MUSTER_SIGNIN_FAILURE_MEMORY_S")
    )
    #: password checks (argon2, about 64 MiB and a core each) running at once per process
    password_hash_concurrency: int = Field(
        2, ge=1, validation_alias=AliasChoices("MUSTER_PASSWORD_HASH_CONCURRENCY")
    )
    #: sign-ins waiting for a check; one more is answered 503 with Retry-After
    password_hash_queue: int = Field(
        16, ge=0, validation_alias=AliasChoices("MUSTER_PASSWORD_HASH_QUEUE")
    )

    # --- availability counts (issue 10, defect 13; docs/security.md) ------------------
    #: the smallest radius `GET /availability` counts in (422 naming radius_km below it)
    availability_min_radius_km: float = Field(
        1.0, gt=0, validation_alias=AliasChoices("MUSTER_AVAILABILITY_MIN_RADIUS_KM")
    )
    #: counts below this are answered "< k", so a count cannot single a member out
    availability_min_count: int = Field(
        5, ge=1, validation_alias=AliasChoices("MUSTER_AVAILABILITY_MIN_COUNT")
    )
    #: `GET /availability` requests per staff account per minute (then 429)
    availability_rate_per_min: int = Field(
        60, ge=1, validation_alias=AliasChoices("MUSTER_AVAILABILITY_RATE_PER_MIN")
    )
