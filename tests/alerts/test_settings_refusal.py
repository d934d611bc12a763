"""Issue 10, defect 16: with the Twilio provider, an empty account SID or auth token (an
unchecked webhook signature, every send a 401) refuses to start, saying what is missing."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from tests.alerts.fake_twilio import FakeTwilio
from tests.support.infra import REPO


@pytest.mark.parametrize("emptied", ["TWILIO_AUTH_TOKEN", "TWILIO_ACCOUNT_SID"])
def test_twilio_without_credentials_refuses_to_start(emptied: str) -> None:
    env = {**os.environ, **FakeTwilio().env(), emptied: "", "ALERTS_PORT": "1"}
    done = subprocess.run(
        [sys.executable, "-m", "services.alerts"],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode != 0
    assert f"MUSTER_SMS_PROVIDER=twilio needs {emptied}" in done.stderr, done.stderr
    assert "Traceback" not in done.stderr


def test_whitespace_is_as_empty_and_console_needs_nothing() -> None:
    from pydantic import ValidationError

    from services.alerts.settings import Settings

    with pytest.raises(ValidationError, match="TWILIO_AUTH_TOKEN"):
        Settings(sms_provider="twilio", twilio_account_sid="AC1", twilio_auth_token="  ",
                 twilio_from_number="+15005550006")  # fmt: skip
    Settings(sms_provider="console", twilio_auth_token="")
    Settings(sms_provider="twilio", twilio_account_sid="AC1", twilio_auth_token="t",
             twilio_messaging_service_sid="MG1")  # fmt: skip
