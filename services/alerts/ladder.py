"""The channel ladder's decision, pure: after an unanswered SMS alert, is a call due?

`plan_call` looks at one alert's facts and the time, and answers with one of:

- `due`: phone the member now;
- `wait`: not yet (`at` says when the SMS will have gone unanswered long enough);
- `held`: it would be due, but it is the member's quiet hours and the severity does not
  override them (as for SMS, only `Extreme` does): asked again at the next round;
- `never`: this alert is never followed by a call (answered on any channel, the
  emergency staffed, closed or cancelled, stood down, already called, the SMS never
  sent, no number).

The runner (calling.py) gathers the facts, asks, and claims the call; the webhooks and
the runner never decide on their own.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Literal

#: what alerts knows of the emergency: `open` (still needs people), `staffed` (enough
#: accepted), `closed` (resolved or a false alarm), `cancelled`
EmergencyState = Literal["open", "staffed", "closed", "cancelled"]
Decision = Literal["due", "wait", "held", "never"]

#: as for SMS (selection.admits): only this severity is sent in quiet hours
QUIET_HOURS_OVERRIDE = "Extreme"


@dataclass(frozen=True)
class LadderDelays:
    """How long an SMS alert goes unanswered before the member is phoned, per severity."""

    extreme: timedelta = timedelta(minutes=2)
    severe: timedelta = timedelta(minutes=5)
    other: timedelta = timedelta(minutes=10)

    def for_severity(self, severity: str) -> timedelta:
        if severity == "Extreme":
            return self.extreme
        if severity == "Severe":
            return self.severe
        return self.other


@dataclass(frozen=True)
class AlertFacts:
    """One alert as the ladder sees it."""

    #: when the provider took the SMS alert (None: not sent, failed or suppressed)
    sms_sent_at: datetime | None
    #: the member answered on any channel (SMS, web, voice)
    answered: bool
    severity: str
    emergency: EmergencyState
    #: the member was told they are not needed, or stood down
    stood_down: bool
    #: it is the member's quiet hours now, in their time zone
    quiet_hours_now: bool
    #: a call was claimed for this alert already (placed, failed, or lost in a crash)
    already_called: bool
    #: alerts still holds a number for the member (none once they are erased)
    has_phone: bool


@dataclass(frozen=True)
class CallPlan:
    decision: Decision
    reason: str
    #: for `wait`: when the call becomes due
    at: datetime | None = None


def plan_call(facts: AlertFacts, now: datetime, delays: LadderDelays) -> CallPlan:
    if facts.already_called:
        return CallPlan("never", "already called")
    if facts.answered:
        return CallPlan("never", "answered")
    if facts.emergency != "open":
        return CallPlan("never", f"emergency {facts.emergency}")
    if facts.stood_down:
        return CallPlan("never", "stood down")
    if not facts.has_phone:
        return CallPlan("never", "no number")
    if facts.sms_sent_at is None:
        # an SMS refused for good (invalid number) or suppressed (STOP) is no reason to
        # phone; one still waiting to be sent starts its delay once it is sent
        return CallPlan("never", "sms not sent")
    due_at = facts.sms_sent_at + delays.for_severity(facts.severity)
    if now < due_at:
        return CallPlan("wait", "sms unanswered for less than the delay", at=due_at)
    if facts.quiet_hours_now and facts.severity != QUIET_HOURS_OVERRIDE:
        return CallPlan("held", "quiet hours")
    return CallPlan("due", "sms unanswered")
