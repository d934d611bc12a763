"""Fixtures of the alerts tests: a local Twilio-compatible server and the service's env."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.alerts.fake_twilio import FakeTwilio
from tests.support.processes import run_migrations

PUBLIC_BASE = "https://alerts.muster.test"


@pytest.fixture
def twilio() -> Iterator[FakeTwilio]:
    server = FakeTwilio().start()
    yield server
    server.stop()


@pytest.fixture
def alerts_env(service_env: dict[str, str], twilio: FakeTwilio) -> dict[str, str]:
    env = {
        **service_env,
        **twilio.env(),
        "MUSTER_PUBLIC_BASE_URL": PUBLIC_BASE,
        "ALERTS_SMS_RATE_PER_S": "2000",
        "ALERTS_SMS_RETRY_BASE_S": "0.05",
        "ALERTS_SENDER_DEAD_AFTER_S": "3",
    }
    run_migrations("alerts", env)
    return env
