"""Configuration of the dispatch service (every variable is listed in docs/dispatch.md)."""

from __future__ import annotations

from pydantic import AliasChoices, Field

from shared.settings import MusterSettings


class Settings(MusterSettings):
    service_name: str = "dispatch"
    host: str = Field("127.0.0.1", validation_alias=AliasChoices("DISPATCH_HOST"))
    port: int = Field(8003, validation_alias=AliasChoices("DISPATCH_PORT"))

    #: two-person rule: a circle wider than this needs a second coordinator's approval
    approval_radius_m: int = Field(
        10_000, ge=100, validation_alias=AliasChoices("DISPATCH_APPROVAL_RADIUS_M")
    )
    #: two-person rule: more members than this expected to be alerted needs approval
    approval_members: int = Field(
        500, ge=1, validation_alias=AliasChoices("DISPATCH_APPROVAL_MEMBERS")
    )
    #: expected reach = members_needed x this (alerts over-alerts: not everyone says yes)
    over_alert_factor: float = Field(
        3.0, ge=1.0, validation_alias=AliasChoices("DISPATCH_OVER_ALERT_FACTOR")
    )

    escalation_delay_s: float = Field(
        300.0, gt=0, validation_alias=AliasChoices("DISPATCH_ESCALATION_DELAY_S")
    )
    escalation_delay_extreme_s: float = Field(
        120.0, gt=0, validation_alias=AliasChoices("DISPATCH_ESCALATION_DELAY_EXTREME_S")
    )
    #: each wave's radius is the previous one times this, capped at the maximum
    escalation_radius_factor: float = Field(
        2.0, gt=1.0, validation_alias=AliasChoices("DISPATCH_ESCALATION_RADIUS_FACTOR")
    )
    escalation_max_radius_m: int = Field(
        50_000, ge=100, validation_alias=AliasChoices("DISPATCH_ESCALATION_MAX_RADIUS_M")
    )
    #: how often the scheduler looks for due escalation steps
    scheduler_poll_s: float = Field(
        0.5, gt=0, validation_alias=AliasChoices("DISPATCH_SCHEDULER_POLL_S")
    )

    #: the safety loop: a member released and not home safe this long after is overdue
    #: (flagged on the board; alerts sends one reminder)
    overdue_after_s: float = Field(
        3 * 3600.0,
        gt=0,
        validation_alias=AliasChoices("DISPATCH_OVERDUE_AFTER_S", "DISPATCH_OVERDUE_AFTER"),
    )
    #: a roll call's members who have not confirmed after this are shown as missing
    roll_call_missing_after_s: float = Field(
        300.0, gt=0, validation_alias=AliasChoices("DISPATCH_ROLL_CALL_MISSING_AFTER_S")
    )

    #: at most one availability summary per emergency per this many seconds
    summary_min_interval_s: float = Field(
        1.0, ge=0, validation_alias=AliasChoices("DISPATCH_SUMMARY_MIN_INTERVAL_S")
    )

    #: after-action reports: the authority's version shows counts below this as "< k"
    #: (zero too), and a median or p90 only over at least this many members
    report_min_count: int = Field(
        5, ge=1, validation_alias=AliasChoices("DISPATCH_REPORT_MIN_COUNT")
    )

    #: consecutive failed deliveries after which a subscription is paused
    webhook_max_failures: int = Field(
        10, ge=1, validation_alias=AliasChoices("DISPATCH_WEBHOOK_MAX_FAILURES")
    )
    webhook_retry_base_s: float = Field(
        1.0, gt=0, validation_alias=AliasChoices("DISPATCH_WEBHOOK_RETRY_BASE_S")
    )
    webhook_retry_max_s: float = Field(
        300.0, gt=0, validation_alias=AliasChoices("DISPATCH_WEBHOOK_RETRY_MAX_S")
    )
    #: the whole of one delivery (DNS, connect, send, headers, reading the answer): a
    #: total deadline, which a receiver dripping a byte at a time cannot stretch
    webhook_timeout_s: float = Field(
        5.0, gt=0, validation_alias=AliasChoices("DISPATCH_WEBHOOK_TIMEOUT_S")
    )
    #: subscriptions one instance delivers to at once (each in its own order)
    webhook_concurrency: int = Field(
        16, ge=1, le=1000, validation_alias=AliasChoices("DISPATCH_WEBHOOK_CONCURRENCY")
    )
    #: let webhooks reach loopback/private/link-local/... addresses (off: SSRF guard)
    webhook_allow_private: bool = Field(
        False, validation_alias=AliasChoices("DISPATCH_WEBHOOK_ALLOW_PRIVATE")
    )

    #: board changes a console's stream may be behind before it is cut off (it then
    #: reconnects and reloads the whole board)
    board_stream_queue: int = Field(
        1000, ge=10, le=100_000, validation_alias=AliasChoices("DISPATCH_BOARD_STREAM_QUEUE")
    )

    #: the web console: the old board address `/console/{id}` redirects to its board page
    console_url: str = Field(
        "http://127.0.0.1:8000", validation_alias=AliasChoices("DISPATCH_CONSOLE_URL")
    )
    #: the CAP <sender> of the alerts dispatch publishes
    cap_sender: str = Field(
        "dispatch@muster.invalid", validation_alias=AliasChoices("DISPATCH_CAP_SENDER")
    )
    #: members_needed of an emergency declared from a CAP alert that does not say
    cap_members_needed: int = Field(
        5, ge=1, validation_alias=AliasChoices("DISPATCH_CAP_MEMBERS_NEEDED")
    )
