"""The fuzz run's platform: members, alerts and dispatch as real processes (the console's
`platform` fixture, reused), with the limits that would turn most fuzzed requests into
429s raised, so the fuzzer reaches the handlers rather than the rate limiters (those have
tests of their own: tests/members/test_sign_in_limits.py, test_availability_privacy.py,
tests/alerts/test_answer_limits.py, test_reach_preview.py)."""

from __future__ import annotations

import pytest

from tests.console.conftest import platform  # noqa: F401  (the fixture, reused)

UNLIMITED = "1000000"


@pytest.fixture(scope="module")
def service_overrides() -> dict[str, dict[str, str]]:
    return {
        "members": {
            "MUSTER_SIGNIN_FREE_FAILURES_PER_ADDRESS": UNLIMITED,
            "MUSTER_AVAILABILITY_RATE_PER_MIN": UNLIMITED,
        },
        "alerts": {
            "ALERTS_REACH_PREVIEW_RATE_PER_MIN": UNLIMITED,
            "ALERTS_ANSWER_RATE_PER_TOKEN_PER_MIN": UNLIMITED,
            "ALERTS_ANSWER_RATE_PER_IP_PER_MIN": UNLIMITED,
        },
    }
