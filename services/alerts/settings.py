"""Configuration of the alerts service (every variable is listed in docs/alerts.md)."""

from __future__ import annotations

from typing import Literal

from pydantic import AliasChoices, Field, SecretStr, model_validator

from shared.settings import MusterSettings


def _env(name: str) -> AliasChoices:
    return AliasChoices(name)


class Settings(MusterSettings):
    service_name: str = "alerts"
    host: str = Field("127.0.0.1", validation_alias=_env("ALERTS_HOST"))
    port: int = Field(8002, validation_alias=_env("ALERTS_PORT"))

    #: the public base of links in SMS and of webhook signature checks
    public_base_url: str = Field(
        "http://127.0.0.1:8002", validation_alias=_env("MUSTER_PUBLIC_BASE_URL")
    )
    sms_provider: Literal["console", "twilio"] = Field(
        "console", validation_alias=_env("MUSTER_SMS_PROVIDER")
    )
    twilio_account_sid: str = Field("", validation_alias=_env("TWILIO_ACCOUNT_SID"))
    twilio_auth_token: str = Field("", validation_alias=_env("TWILIO_AUTH_TOKEN"))
    twilio_from_number: str = Field("", validation_alias=_env("TWILIO_FROM_NUMBER"))
    twilio_messaging_service_sid: str = Field(
        "", validation_alias=_env("TWILIO_MESSAGING_SERVICE_SID")
    )
    twilio_api_base: str = Field("https://api.twilio.com", validation_alias=_env("TWILIO_API_BASE"))
    #: seconds before one provider HTTP request is abandoned (and retried)
    sms_timeout_s: float = Field(10.0, gt=0, validation_alias=_env("ALERTS_SMS_TIMEOUT_S"))
    #: messages per second across every alerts process (token bucket in Redis)
    sms_rate_per_s: float = Field(50.0, gt=0, validation_alias=_env("ALERTS_SMS_RATE_PER_S"))
    #: HTTP attempts per message on 5xx / timeouts before it is given up as failed
    sms_max_attempts: int = Field(4, ge=1, validation_alias=_env("ALERTS_SMS_MAX_ATTEMPTS"))
    #: first retry delay; doubles each attempt, with jitter
    sms_retry_base_s: float = Field(0.2, ge=0, validation_alias=_env("ALERTS_SMS_RETRY_BASE_S"))
    #: messages one process sends at once
    sender_concurrency: int = Field(32, ge=1, validation_alias=_env("ALERTS_SENDER_CONCURRENCY"))
    #: a sender whose heartbeat is older than this is dead: its "sending" rows are resent
    sender_dead_after_s: float = Field(
        5.0, gt=0, validation_alias=_env("ALERTS_SENDER_DEAD_AFTER_S")
    )
    #: first wave: members_needed times this
    over_alert_factor: int = Field(3, ge=1, validation_alias=_env("ALERTS_OVER_ALERT_FACTOR"))
    #: a wave's alert rows (and their SMS) are written in chunks, nearest first, each
    #: committed on its own so the sender starts on the first while the rest are written.
    #: The first is selected on its own too: about what one sender has in flight, so the
    #: first SMS waits for a small GEOSEARCH page, not the whole wave's selection
    record_first_chunk: int = Field(50, ge=1, validation_alias=_env("ALERTS_RECORD_FIRST_CHUNK"))
    record_chunk: int = Field(2000, ge=1, validation_alias=_env("ALERTS_RECORD_CHUNK"))
    #: a live position older than this is ignored (home is used)
    live_position_max_age_s: int = Field(
        1800, ge=0, validation_alias=_env("ALERTS_LIVE_POSITION_MAX_AGE_S")
    )
    #: answer page requests allowed per token and per client address, each minute
    answer_rate_per_token_per_min: int = Field(
        30, ge=1, validation_alias=_env("ALERTS_ANSWER_RATE_PER_TOKEN_PER_MIN")
    )
    answer_rate_per_ip_per_min: int = Field(
        120, ge=1, validation_alias=_env("ALERTS_ANSWER_RATE_PER_IP_PER_MIN")
    )
    #: reach previews (POST /reach/preview) allowed per staff account each minute
    reach_preview_rate_per_min: int = Field(
        60, ge=1, validation_alias=_env("ALERTS_REACH_PREVIEW_RATE_PER_MIN")
    )
    #: members' self-service (issue 11): how long a personal-page link (`LINK`) works
    member_link_ttl_s: int = Field(1800, ge=60, validation_alias=_env("ALERTS_MEMBER_LINK_TTL_S"))
    #: SMS commands (AWAY, BACK, STATUS, LINK) one number may send per minute; personal
    #: page requests per link and per client address per minute
    member_command_rate_per_min: int = Field(
        10, ge=1, validation_alias=_env("ALERTS_MEMBER_COMMAND_RATE_PER_MIN")
    )
    member_page_rate_per_min: int = Field(
        30, ge=1, validation_alias=_env("ALERTS_MEMBER_PAGE_RATE_PER_MIN")
    )
    #: a qualification expiring within this many days gets its holder one SMS
    expiry_reminder_days: int = Field(
        30, ge=1, le=365, validation_alias=_env("ALERTS_EXPIRY_REMINDER_DAYS")
    )
    #: STATUS lists the qualifications expiring within this many days
    expiry_status_days: int = Field(
        60, ge=1, le=365, validation_alias=_env("ALERTS_EXPIRY_STATUS_DAYS")
    )
    #: how often each alerts process looks for qualifications expiring (and reminders
    #: left unsent by a process that died)
    expiry_check_interval_s: float = Field(
        3600.0, gt=0, validation_alias=_env("ALERTS_EXPIRY_CHECK_INTERVAL_S")
    )
    #: the key of the hashes an erased member's opt-out is kept under (erasure.py);
    #: empty: a random key is generated once and kept in the database
    pseudonym_key: SecretStr = Field(SecretStr(""), validation_alias=_env("ALERTS_PSEUDONYM_KEY"))
    #: fault injection for the crash tests only: pause after the provider accepted a
    #: message, before the row is marked sent
    fault_pause_after_send_s: float = Field(
        0.0, ge=0, validation_alias=_env("ALERTS_FAULT_PAUSE_AFTER_SEND_S")
    )
    #: fault injection for the crash tests only: pause after each chunk of a wave that
    #: commits on its own, before the next one is selected or written
    fault_pause_between_chunks_s: float = Field(
        0.0, ge=0, validation_alias=_env("ALERTS_FAULT_PAUSE_BETWEEN_CHUNKS_S")
    )

    #: the channel ladder's calls (docs/alerts.md, "Voice calls"): `console` prints them,
    #: `twilio` places them with the Calls API; empty: the same as MUSTER_SMS_PROVIDER
    voice_provider: Literal["", "console", "twilio"] = Field(
        "", validation_alias=_env("MUSTER_VOICE_PROVIDER")
    )
    #: the number calls come from (a Messaging Service cannot place calls); empty:
    #: TWILIO_FROM_NUMBER
    twilio_voice_from_number: str = Field("", validation_alias=_env("TWILIO_VOICE_FROM_NUMBER"))
    #: an SMS alert unanswered this long is followed by a call, per CAP severity
    ladder_delay_extreme_s: float = Field(
        120.0, gt=0, validation_alias=_env("ALERTS_LADDER_DELAY_EXTREME_S")
    )
    ladder_delay_severe_s: float = Field(
        300.0, gt=0, validation_alias=_env("ALERTS_LADDER_DELAY_SEVERE_S")
    )
    ladder_delay_other_s: float = Field(
        600.0, gt=0, validation_alias=_env("ALERTS_LADDER_DELAY_OTHER_S")
    )
    #: how often each alerts process looks for calls that are due
    ladder_interval_s: float = Field(5.0, gt=0, validation_alias=_env("ALERTS_LADDER_INTERVAL_S"))
    #: calls one process places per round (the rest wait for the next round)
    ladder_batch: int = Field(50, ge=1, validation_alias=_env("ALERTS_LADDER_BATCH"))
    #: the text-to-speech program that speaks languages the provider has no voice for
    espeak_path: str = Field("espeak-ng", validation_alias=_env("ALERTS_ESPEAK_PATH"))
    #: fault injection for the crash tests only: pause after the provider placed a call,
    #: before it is recorded
    fault_pause_after_call_s: float = Field(
        0.0, ge=0, validation_alias=_env("ALERTS_FAULT_PAUSE_AFTER_CALL_S")
    )

    #: reachability drills (issue 12, docs/alerts.md "Drills"): how often each alerts
    #: process looks for occurrences due and drill SMS to send (held ones included)
    drill_check_interval_s: float = Field(
        15.0, gt=0, validation_alias=_env("ALERTS_DRILL_CHECK_INTERVAL_S")
    )
    #: tests only: a file holding seconds added to the drills' clock (firing, sending,
    #: answer times), so a test moves a month ahead without waiting; empty: the real clock
    drill_clock_offset_file: str = Field(
        "", validation_alias=_env("ALERTS_DRILL_CLOCK_OFFSET_FILE")
    )
    #: how often the readiness figures (`muster.readiness.v1`) are published, by one process
    readiness_interval_s: float = Field(
        3600.0, gt=0, validation_alias=_env("ALERTS_READINESS_INTERVAL_S")
    )
    #: k: readiness counts below it are shown to authorities as "< k"; the same variable,
    #: and so the same k, as members' availability counts
    readiness_min_count: int = Field(
        5, ge=1, validation_alias=_env("MUSTER_AVAILABILITY_MIN_COUNT")
    )

    @model_validator(mode="after")
    def _twilio_needs_credentials(self) -> Settings:
        """With Twilio, an empty account SID or auth token would fail every send (401)
        and, worse, an empty token makes every webhook signature check meaningless: refuse
        to start rather than run in that state."""
        if self.sms_provider == "twilio":
            missing = [
                name
                for name, value in (
                    ("TWILIO_ACCOUNT_SID", self.twilio_account_sid),
                    ("TWILIO_AUTH_TOKEN", self.twilio_auth_token),
                )
                if not value.strip()
            ]
            if not (self.twilio_from_number.strip() or self.twilio_messaging_service_sid.strip()):
                missing.append("TWILIO_FROM_NUMBER or TWILIO_MESSAGING_SERVICE_SID")
            if missing:
                raise ValueError(
                    "MUSTER_SMS_PROVIDER=twilio needs "
                    + ", ".join(missing)
                    + ": set "
                    + ("them" if len(missing) > 1 else "it")
                    + " (from the Twilio console) or use MUSTER_SMS_PROVIDER=console"
                )
        return self

    @model_validator(mode="after")
    def _twilio_voice_needs_a_number(self) -> Settings:
        """Twilio places a call only from one of the account's numbers. Asked for by
        name (MUSTER_VOICE_PROVIDER=twilio) without one, alerts refuses to start; when
        the voice provider only follows MUSTER_SMS_PROVIDER (a Messaging Service and no
        number), calls are off and alerts says so at start (`effective_voice_provider`)."""
        if self.voice_provider == "twilio":
            missing = [
                name
                for name, value in (
                    ("TWILIO_ACCOUNT_SID", self.twilio_account_sid),
                    ("TWILIO_AUTH_TOKEN", self.twilio_auth_token),
                    ("TWILIO_VOICE_FROM_NUMBER or TWILIO_FROM_NUMBER", self.voice_from_number),
                )
                if not value.strip()
            ]
            if missing:
                raise ValueError(
                    "MUSTER_VOICE_PROVIDER=twilio needs "
                    + ", ".join(missing)
                    + " (a Messaging Service cannot place calls), "
                    "or use MUSTER_VOICE_PROVIDER=console"
                )
        return self

    @property
    def voice_from_number(self) -> str:
        return self.twilio_voice_from_number.strip() or self.twilio_from_number.strip()

    @property
    def effective_voice_provider(self) -> Literal["console", "twilio", "off"]:
        """The voice provider in use: MUSTER_VOICE_PROVIDER, else the SMS provider's;
        `off` when that is Twilio with no number to call from."""
        chosen = self.voice_provider or self.sms_provider
        if chosen == "twilio" and not self.voice_from_number:
            return "off"
        return chosen

    def key(self, *parts: str) -> str:
        """A Redis key of this service, under the configured prefix."""
        return self.redis_prefix + "alerts:" + ":".join(parts)
