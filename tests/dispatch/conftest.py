"""Dispatch under test: a real process on the test's own topics and schema, verifying
tokens minted with a throwaway key, plus helpers to script alert and response events."""

from __future__ import annotations

import uuid
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from shared.events.alerts import (
    AlertCallEnded,
    AlertCallPlaced,
    AlertDelivered,
    AlertFailed,
    AlertSent,
    AlertStoodDown,
)
from shared.events.catalog import EventData, make_envelope
from shared.events.envelope import Envelope
from shared.events.responses import ResponseReceived, RollCallConfirmed
from tests.support.processes import ServiceProcess, run_migrations, start_service
from tests.support.tokens import TestKey, bearer

SECTION = "AL"
OTHER_SECTION = "XK"
#: a roll call id for scripts that do not start one through the API
ROLL_CALL = uuid.UUID("00000000-0000-4000-8000-00000000a11c")


@pytest.fixture
def key() -> TestKey:
    return TestKey()


@pytest.fixture
def dispatch_env(service_env: dict[str, str], tmp_path: Path, key: TestKey) -> dict[str, str]:
    return {
        **service_env,
        "MUSTER_JWKS_URL": key.write_jwks(tmp_path / "jwks.json"),
        "DISPATCH_ESCALATION_DELAY_S": "3600",
        "DISPATCH_ESCALATION_DELAY_EXTREME_S": "3600",
        "DISPATCH_SUMMARY_MIN_INTERVAL_S": "0.3",
        "DISPATCH_SCHEDULER_POLL_S": "0.2",
        "MUSTER_OUTBOX_POLL_INTERVAL_S": "0.05",
    }


StartDispatch = Callable[..., ServiceProcess]


@pytest.fixture
def start_dispatch(dispatch_env: dict[str, str], tmp_path: Path) -> Iterator[StartDispatch]:
    """Start dispatch (migrating its schema first) with env overrides; stopped afterwards."""
    started: list[ServiceProcess] = []
    migrated = False

    def start(**overrides: str) -> ServiceProcess:
        nonlocal migrated
        env = {**dispatch_env, **overrides}
        if not migrated:
            run_migrations("dispatch", env)
            migrated = True
        service = start_service("dispatch", env, tmp_path)
        started.append(service)
        return service

    yield start
    for service in started:
        service.stop(timeout_s=20)


@pytest.fixture
def dispatch(start_dispatch: StartDispatch) -> ServiceProcess:
    return start_dispatch()


class Staff:
    """Tokens for the usual cast of a test."""

    def __init__(self, key: TestKey) -> None:
        self.key = key
        self.coordinator_id = str(uuid.uuid4())
        self.second_id = str(uuid.uuid4())

    def coordinator(self, section: str = SECTION) -> dict[str, str]:
        return bearer(self.key.token("coordinator", [section], subject=self.coordinator_id))

    def second_coordinator(self) -> dict[str, str]:
        return bearer(self.key.token("coordinator", [SECTION], subject=self.second_id))

    def other_coordinator(self) -> dict[str, str]:
        return bearer(self.key.token("coordinator", [OTHER_SECTION]))

    def authority(self, section: str = SECTION) -> dict[str, str]:
        return bearer(self.key.token("authority", [section]))

    def admin(self) -> dict[str, str]:
        return bearer(self.key.token("admin", []))


@pytest.fixture
def staff(key: TestKey) -> Staff:
    return Staff(key)


def emergency_body(**overrides: Any) -> dict[str, Any]:
    body: dict[str, Any] = {
        "section": SECTION,
        "title": "Flooding, Fier centre",
        "description": "River over its banks near the centre",
        "category": "Rescue",
        "severity": "Severe",
        "urgency": "Immediate",
        "drill": False,
        "area": {"lat": 40.7239, "lon": 19.5561, "radius_m": 3000},
        "required_qualifications": ["FIRST_AID"],
        "members_needed": 2,
        "assisting_sections": [],
    }
    body.update(overrides)
    return body


class Script:
    """Builds alert and response events for one emergency, as the alerts service would."""

    def __init__(self, emergency_id: uuid.UUID, t0: datetime | None = None) -> None:
        self.emergency_id = emergency_id
        self.t0 = t0 or datetime.now(UTC)
        self.alert_ids: dict[uuid.UUID, uuid.UUID] = {}

    def _alert(self, member: uuid.UUID) -> uuid.UUID:
        return self.alert_ids.setdefault(member, uuid.uuid4())

    def envelope(self, data: EventData) -> Envelope:
        return make_envelope(data, source="alerts", correlationid=str(self.emergency_id))

    def sent(self, member: uuid.UUID, at: float, *, distance_m: int = 1000, wave: int = 1,
             qualifications: tuple[str, ...] = ("FIRST_AID",)) -> Envelope:  # fmt: skip
        return self.envelope(
            AlertSent(
                emergency_id=self.emergency_id,
                member_id=member,
                alert_id=self._alert(member),
                wave=wave,
                channel="sms",
                distance_m=distance_m,
                language="sq",
                qualifications=list(qualifications),
                sent_at=self.t0 + timedelta(seconds=at),
            )
        )

    def delivered(self, member: uuid.UUID, at: float) -> Envelope:
        return self.envelope(
            AlertDelivered(
                emergency_id=self.emergency_id,
                member_id=member,
                alert_id=self._alert(member),
                delivered_at=self.t0 + timedelta(seconds=at),
            )
        )

    def failed(self, member: uuid.UUID, at: float) -> Envelope:
        return self.envelope(
            AlertFailed(
                emergency_id=self.emergency_id,
                member_id=member,
                alert_id=self._alert(member),
                reason="invalid number",
                failed_at=self.t0 + timedelta(seconds=at),
            )
        )

    def stood_down(self, member: uuid.UUID, at: float) -> Envelope:
        return self.envelope(
            AlertStoodDown(
                emergency_id=self.emergency_id,
                member_id=member,
                alert_id=self._alert(member),
                reason="not_needed",
                stood_down_at=self.t0 + timedelta(seconds=at),
            )
        )

    def answer(
        self, member: uuid.UUID, answer: str, at: float, eta: int | None = None,
        channel: str = "sms",
    ) -> Envelope:  # fmt: skip
        return self.envelope(
            ResponseReceived(
                emergency_id=self.emergency_id,
                member_id=member,
                alert_id=self._alert(member),
                answer=answer,  # type: ignore[arg-type]
                eta_minutes=eta,
                channel=channel,  # type: ignore[arg-type]
                responded_at=self.t0 + timedelta(seconds=at),
            )
        )

    def call_placed(self, member: uuid.UUID, at: float) -> Envelope:
        return self.envelope(
            AlertCallPlaced(
                emergency_id=self.emergency_id,
                member_id=member,
                alert_id=self._alert(member),
                placed_at=self.t0 + timedelta(seconds=at),
            )
        )

    def call_ended(self, member: uuid.UUID, at: float, outcome: str = "no_answer") -> Envelope:
        return self.envelope(
            AlertCallEnded(
                emergency_id=self.emergency_id,
                member_id=member,
                alert_id=self._alert(member),
                outcome=outcome,  # type: ignore[arg-type]
                ended_at=self.t0 + timedelta(seconds=at),
            )
        )

    def roll_call_confirmed(
        self, member: uuid.UUID, at: float, roll_call_id: uuid.UUID | None = None,
        channel: str = "sms",
    ) -> Envelope:  # fmt: skip
        return self.envelope(
            RollCallConfirmed(
                emergency_id=self.emergency_id,
                member_id=member,
                alert_id=self._alert(member),
                roll_call_id=roll_call_id or ROLL_CALL,
                channel=channel,  # type: ignore[arg-type]
                confirmed_at=self.t0 + timedelta(seconds=at),
            )
        )
