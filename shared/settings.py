"""Settings every service shares; each service subclasses `MusterSettings` once.

Variable names follow docs/architecture.md (unprefixed, e.g. `KAFKA_BOOTSTRAP_SERVERS`)
so one environment file can serve the whole stack.
"""

from __future__ import annotations

from pydantic import AliasChoices, Field
from pydantic_settings import BaseSettings, SettingsConfigDict


class MusterSettings(BaseSettings):
    model_config = SettingsConfigDict(extra="ignore", populate_by_name=True)

    #: the service's name: its event `source`, consumer group and default schema
    service_name: str = "muster"

    kafka_bootstrap_servers: str = Field(
        "127.0.0.1:9092", validation_alias=AliasChoices("KAFKA_BOOTSTRAP_SERVERS")
    )
    database_url: str = Field(
        "postgresql+asyncpg://muster@127.0.0.1:5432/muster",
        validation_alias=AliasChoices("DATABASE_URL"),
    )
    #: the PostgreSQL schema this service owns; tests give each run its own
    db_schema: str | None = Field(None, validation_alias=AliasChoices("MUSTER_DB_SCHEMA"))
    #: the longest one SQL statement may wait for PostgreSQL (asyncpg's `command_timeout`):
    #: without it a statement on a connection PostgreSQL dropped, or whose cancelled query
    #: was never acknowledged, waits for ever and its loop (the outbox relay, a consumer,
    #: a scheduler) stops with no error (seen after a PostgreSQL restart)
    db_statement_timeout_s: float = Field(
        30.0, gt=0, validation_alias=AliasChoices("MUSTER_DB_STATEMENT_TIMEOUT_S")
    )
    #: the longest opening a PostgreSQL connection may take
    db_connect_timeout_s: float = Field(
        10.0, gt=0, validation_alias=AliasChoices("MUSTER_DB_CONNECT_TIMEOUT_S")
    )
    redis_url: str = Field("redis://127.0.0.1:6379/0", validation_alias=AliasChoices("REDIS_URL"))
    #: prefix of every Redis key this service writes; unique per test run
    redis_prefix: str = Field("muster:", validation_alias=AliasChoices("MUSTER_REDIS_PREFIX"))
    #: prefix of every topic name; empty in production, unique per test run
    topic_prefix: str = Field("", validation_alias=AliasChoices("MUSTER_TOPIC_PREFIX"))
    #: consumer group id; defaults to `muster.<service>`
    group_id: str | None = Field(None, validation_alias=AliasChoices("MUSTER_GROUP_ID"))
    #: where staff-token signing keys are published (the members service's JWKS)
    jwks_url: str = Field(
        "http://127.0.0.1:8001/.well-known/jwks.json",
        validation_alias=AliasChoices("MUSTER_JWKS_URL"),
    )
    log_level: str = Field("INFO", validation_alias=AliasChoices("MUSTER_LOG_LEVEL"))
    #: JSON logs (production); `false` gives readable console lines for a developer
    log_json: bool = Field(True, validation_alias=AliasChoices("MUSTER_LOG_JSON"))
    #: how many times a failing handler is retried before its record is dead-lettered
    consumer_max_attempts: int = Field(
        4, ge=1, validation_alias=AliasChoices("MUSTER_CONSUMER_MAX_ATTEMPTS")
    )
    #: first retry delay; doubles each attempt, with jitter
    consumer_retry_base_s: float = Field(
        0.2, ge=0, validation_alias=AliasChoices("MUSTER_CONSUMER_RETRY_BASE_S")
    )
    #: during an infrastructure outage a record is retried without limit; the delay
    #: between attempts doubles from `consumer_retry_base_s` up to this
    consumer_transient_retry_max_s: float = Field(
        30.0, gt=0, validation_alias=AliasChoices("MUSTER_CONSUMER_TRANSIENT_RETRY_MAX_S")
    )
    #: how long alerts and dispatch keep verifying tokens with the last signing keys they
    #: fetched while the members service's JWKS cannot be fetched
    jwks_stale_max_s: float = Field(
        86400.0, gt=0, validation_alias=AliasChoices("MUSTER_JWKS_STALE_MAX_S")
    )
    #: cached signing keys older than this are refreshed in the background (requests never
    #: wait for it); the fault tests shorten it to make refreshes fail many times in seconds
    jwks_refresh_interval_s: float = Field(
        300.0, gt=0, validation_alias=AliasChoices("MUSTER_JWKS_REFRESH_INTERVAL_S")
    )
    #: at most one JWKS fetch per this many seconds for tokens naming an unknown key
    jwks_min_fetch_interval_s: float = Field(
        30.0, ge=0, validation_alias=AliasChoices("MUSTER_JWKS_MIN_FETCH_INTERVAL_S")
    )
    #: how often an idle outbox relay looks for new rows
    outbox_poll_interval_s: float = Field(
        0.05, gt=0, validation_alias=AliasChoices("MUSTER_OUTBOX_POLL_INTERVAL_S")
    )
    outbox_batch_size: int = Field(
        500, ge=1, validation_alias=AliasChoices("MUSTER_OUTBOX_BATCH_SIZE")
    )
    #: fault injection for the crash tests only: pause after publishing a batch,
    #: before marking it sent, so a test can SIGKILL the relay in that window
    outbox_fault_pause_after_publish_s: float = Field(
        0.0, ge=0, validation_alias=AliasChoices("MUSTER_OUTBOX_FAULT_PAUSE_AFTER_PUBLISH_S")
    )

    #: the largest request body any endpoint takes (413 above it): every accepted field
    #: must fit in an event, and Kafka refuses a record over 1 MiB
    max_body_bytes: int = Field(
        1_048_576, ge=1024, validation_alias=AliasChoices("MUSTER_MAX_BODY_BYTES")
    )
    #: the largest upload (`text/csv` or `multipart/form-data` body: the members CSV
    #: import, whose rows become one event each); 50,000 rows fit with room to spare
    max_upload_bytes: int = Field(
        33_554_432, ge=1024, validation_alias=AliasChoices("MUSTER_MAX_UPLOAD_BYTES")
    )

    #: the proxies (addresses or CIDR networks, comma-separated) whose `X-Forwarded-For`
    #: and `X-Forwarded-Proto` are believed: behind them the client's address is the one
    #: the proxy forwards (per-address limits key on it); from any other peer the headers
    #: are ignored, so a client cannot choose its own address. Empty: trust no proxy.
    forwarded_allow_ips: str = Field(
        "127.0.0.1,::1", validation_alias=AliasChoices("MUSTER_FORWARDED_ALLOW_IPS")
    )

    @property
    def schema_name(self) -> str:
        return self.db_schema or self.service_name

    @property
    def consumer_group(self) -> str:
        return self.group_id or f"muster.{self.service_name}"

    def topic(self, name: str) -> str:
        return f"{self.topic_prefix}{name}"
