"""Which voice provider alerts uses, and when it refuses to start (services/alerts/settings.py)."""

from __future__ import annotations

from typing import Any

import pytest
from pydantic import ValidationError

from services.alerts.providers.voice import ConsoleVoice, TwilioVoice, voice_provider_for
from services.alerts.settings import Settings

TWILIO: dict[str, Any] = {"twilio_account_sid": "AC1", "twilio_auth_token": "t"}


def test_the_voice_provider_follows_the_sms_provider() -> None:
    assert Settings(sms_provider="console").effective_voice_provider == "console"
    with_number = Settings(sms_provider="twilio", twilio_from_number="+15005550006", **TWILIO)
    assert with_number.effective_voice_provider == "twilio"
    assert isinstance(voice_provider_for(with_number), TwilioVoice)
    # a Messaging Service cannot place calls: without a number, calls are off
    pool_only = Settings(sms_provider="twilio", twilio_messaging_service_sid="MG1", **TWILIO)
    assert pool_only.effective_voice_provider == "off"
    assert voice_provider_for(pool_only) is None
    voice_number = Settings(
        sms_provider="twilio",
        twilio_messaging_service_sid="MG1",
        twilio_voice_from_number="+15005550007",
        **TWILIO,
    )
    assert voice_number.voice_from_number == "+15005550007"
    assert voice_number.effective_voice_provider == "twilio"


def test_a_console_voice_provider_can_be_chosen_beside_twilio_sms() -> None:
    chosen = Settings(
        sms_provider="twilio",
        twilio_messaging_service_sid="MG1",
        voice_provider="console",
        **TWILIO,
    )
    assert isinstance(voice_provider_for(chosen), ConsoleVoice)


def test_twilio_voice_asked_for_without_a_number_refuses_to_start() -> None:
    with pytest.raises(ValidationError, match="TWILIO_VOICE_FROM_NUMBER or TWILIO_FROM_NUMBER"):
        Settings(voice_provider="twilio", **TWILIO)
    with pytest.raises(ValidationError, match="TWILIO_AUTH_TOKEN"):
        Settings(voice_provider="twilio", twilio_account_sid="AC1", twilio_from_number="+1555")


async def test_the_console_voice_provider_prints_the_call_with_the_number_masked(
    capsys: pytest.CaptureFixture[str],
) -> None:
    accepted = await ConsoleVoice().call(
        "+355612345678", twiml_url="https://a.test/voice/T/call", status_url="s"
    )
    printed = capsys.readouterr().out
    assert accepted.sid in printed and "https://a.test/voice/T/call" in printed
    assert "+355612345678" not in printed and printed.count("678") == 1
