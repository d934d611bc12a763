"""The twilio provider against a local Twilio-compatible server: a 500 is retried and the
member gets one SMS; a 400 (invalid number) is not retried and gives `alert.failed`."""

from __future__ import annotations

from pathlib import Path

from shared.events.topics import ALERTS
from tests.alerts.fake_twilio import FakeTwilio
from tests.alerts.members import (
    EMERGENCIES,
    MEMBERS_STATE,
    declared,
    member,
    publish_emergency_event,
    publish_members,
)
from tests.conftest import Topics
from tests.support.kafka import read_events
from tests.support.processes import start_service


async def test_500_is_retried_and_400_fails_without_retry(
    alerts_env: dict[str, str], twilio: FakeTwilio, topics: Topics, tmp_path: Path
) -> None:
    flaky = member(lat=40.7240, lon=19.5562)
    invalid = member(lat=40.7250, lon=19.5570)
    fine = member(lat=40.7260, lon=19.5580)
    twilio.script(flaky.phone or "", [500])
    twilio.reject(invalid.phone or "", 400)
    await publish_members(topics.bootstrap, topics(MEMBERS_STATE), [flaky, invalid, fine])
    service = start_service("alerts", alerts_env, tmp_path)
    try:
        emergency = declared(members_needed=1)
        await publish_emergency_event(topics.bootstrap, topics(EMERGENCIES), emergency)
        events = await read_events(topics.bootstrap, [topics(ALERTS)], count=3, settle_s=1.0)
    finally:
        service.stop()
    log = service.log()
    by_member = {e.data["member_id"]: e for e in events}
    assert len(events) == 3, [e.type for e in events]
    assert by_member[str(flaky.member_id)].type == "muster.alert.sent.v1"
    assert by_member[str(fine.member_id)].type == "muster.alert.sent.v1"
    # the member's own section travels with the send (after-action reports by section)
    assert by_member[str(fine.member_id)].data["section"] == fine.section
    failed = by_member[str(invalid.member_id)]
    assert failed.type == "muster.alert.failed.v1"
    assert "400" in failed.data["reason"] and "valid phone number" in failed.data["reason"]
    assert failed.data["permanent"] is True
    # issue 10, defect 16: the provider's text names the number; events and logs do not
    refused = invalid.phone or ""
    assert refused not in failed.data["reason"] and refused[-2:] in failed.data["reason"]
    assert "message not sent" in log and refused not in log and refused[1:] not in log
    assert twilio.attempts(flaky.phone or "") == [500, 201]
    assert len(twilio.to(flaky.phone or "")) == 1
    assert twilio.attempts(invalid.phone or "") == [400]
    assert twilio.to(invalid.phone or "") == []
    sms = twilio.to(fine.phone or "")[0]
    assert sms.status_callback == "https://alerts.muster.test/sms/status"
    assert "/r/" in sms.body and sms.body.startswith("MUSTER Flooding")


async def test_console_provider_prints_the_sms_with_a_masked_number(capsys) -> None:  # type: ignore[no-untyped-def]
    from services.alerts.providers import provider_for
    from services.alerts.settings import Settings

    provider = provider_for(Settings())
    assert provider.name == "console"
    accepted = await provider.send("+355691234567", "MUSTER test")
    printed = capsys.readouterr().out
    assert accepted.sid in printed and "MUSTER test" in printed
    assert "+355691234567" not in printed and printed.count("*") == 10 and "567" in printed
