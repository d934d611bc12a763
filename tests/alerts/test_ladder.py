"""The channel ladder's planner (services/alerts/ladder.py), pure: when a call is due,
held for quiet hours, not yet due, or never."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from hypothesis import given
from hypothesis import strategies as st

from services.alerts.calling import emergency_state
from services.alerts.ladder import AlertFacts, LadderDelays, plan_call

NOW = datetime(2026, 11, 30, 3, 0, tzinfo=UTC)
DELAYS = LadderDelays()
SEVERITIES = ["Extreme", "Severe", "Moderate", "Minor", "Unknown"]


def facts(**overrides: object) -> AlertFacts:
    values: dict[str, object] = {
        "sms_sent_at": NOW - timedelta(minutes=30),
        "answered": False,
        "severity": "Severe",
        "emergency": "open",
        "stood_down": False,
        "quiet_hours_now": False,
        "already_called": False,
        "has_phone": True,
    }
    values.update(overrides)
    return AlertFacts(**values)  # type: ignore[arg-type]


def test_the_delay_follows_the_severity() -> None:
    assert DELAYS.for_severity("Extreme") == timedelta(minutes=2)
    assert DELAYS.for_severity("Severe") == timedelta(minutes=5)
    for other in ("Moderate", "Minor", "Unknown"):
        assert DELAYS.for_severity(other) == timedelta(minutes=10)


def test_an_unanswered_sms_is_followed_by_a_call_after_its_delay() -> None:
    sent = NOW - timedelta(minutes=4, seconds=59)
    waiting = plan_call(facts(sms_sent_at=sent, severity="Severe"), NOW, DELAYS)
    assert waiting.decision == "wait" and waiting.at == sent + timedelta(minutes=5)
    assert plan_call(facts(sms_sent_at=sent, severity="Extreme"), NOW, DELAYS).decision == "due"
    at_delay = plan_call(facts(sms_sent_at=NOW - timedelta(minutes=5)), NOW, DELAYS)
    assert at_delay.decision == "due"


def test_each_stop_prevents_the_call() -> None:
    assert plan_call(facts(answered=True), NOW, DELAYS).reason == "answered"
    assert plan_call(facts(emergency="staffed"), NOW, DELAYS).reason == "emergency staffed"
    assert plan_call(facts(emergency="closed"), NOW, DELAYS).reason == "emergency closed"
    assert plan_call(facts(emergency="cancelled"), NOW, DELAYS).reason == "emergency cancelled"
    assert plan_call(facts(already_called=True), NOW, DELAYS).reason == "already called"
    assert plan_call(facts(stood_down=True), NOW, DELAYS).reason == "stood down"
    assert plan_call(facts(has_phone=False), NOW, DELAYS).reason == "no number"
    assert plan_call(facts(sms_sent_at=None), NOW, DELAYS).reason == "sms not sent"


def test_quiet_hours_hold_the_call_unless_extreme() -> None:
    assert plan_call(facts(quiet_hours_now=True), NOW, DELAYS).decision == "held"
    extreme = facts(quiet_hours_now=True, severity="Extreme")
    assert plan_call(extreme, NOW, DELAYS).decision == "due"
    # not yet due: waiting, quiet hours or not
    early = facts(quiet_hours_now=True, sms_sent_at=NOW)
    assert plan_call(early, NOW, DELAYS).decision == "wait"


def test_the_emergency_state_alerts_keeps() -> None:
    assert emergency_state("active", False, None) == "open"
    assert emergency_state("active", True, None) == "staffed"
    assert emergency_state("closed", False, "cancelled") == "cancelled"
    assert emergency_state("closed", True, "resolved") == "closed"
    assert emergency_state("closed", False, "false_alarm") == "closed"


alert_facts = st.builds(
    AlertFacts,
    sms_sent_at=st.none() | st.integers(0, 3600).map(lambda s: NOW - timedelta(seconds=s)),
    answered=st.booleans(),
    severity=st.sampled_from(SEVERITIES),
    emergency=st.sampled_from(["open", "staffed", "closed", "cancelled"]),
    stood_down=st.booleans(),
    quiet_hours_now=st.booleans(),
    already_called=st.booleans(),
    has_phone=st.booleans(),
)


@given(alert_facts, st.integers(0, 7200))
def test_a_call_is_due_exactly_when_every_rule_allows_it(f: AlertFacts, later_s: int) -> None:
    now = NOW + timedelta(seconds=later_s)
    plan = plan_call(f, now, DELAYS)
    stopped = (
        f.answered
        or f.emergency != "open"
        or f.stood_down
        or f.already_called
        or not f.has_phone
        or f.sms_sent_at is None
    )
    if stopped:
        assert plan.decision == "never"
        return
    assert f.sms_sent_at is not None
    due_at = f.sms_sent_at + DELAYS.for_severity(f.severity)
    if now < due_at:
        assert plan.decision == "wait" and plan.at == due_at
    elif f.quiet_hours_now and f.severity != "Extreme":
        assert plan.decision == "held"
    else:
        assert plan.decision == "due"


@given(alert_facts, st.integers(0, 7200), st.integers(0, 7200))
def test_a_due_call_stays_due_as_time_passes(f: AlertFacts, a: int, b: int) -> None:
    earlier, later = sorted((a, b))
    first = plan_call(f, NOW + timedelta(seconds=earlier), DELAYS)
    then = plan_call(f, NOW + timedelta(seconds=later), DELAYS)
    if first.decision == "due":
        assert then.decision == "due"
    if first.decision == "never":
        assert then.decision == "never"
