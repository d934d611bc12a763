"""Logs never carry an answer token (`/r/<token>`) or a whole phone number, whichever
logger wrote the line: structlog with the request's bound path, the standard library,
or uvicorn's access log."""

from __future__ import annotations

import json
import subprocess
import sys

from hypothesis import given
from hypothesis import strategies as st

from shared.observability import mask_answer_tokens, mask_phone_numbers, redact
from tests.support.infra import REPO

TOKEN = "Zq3vN0b-7kLm_x2YtR9aWg"
PHONE = "+33612345678"

_SCRIPT = f"""
import logging
from shared.observability import bind_correlation, configure_logging, get_logger

configure_logging("INFO", json=True)
bind_correlation("c1", path="/r/{TOKEN}")
get_logger("answers").info("answer recorded", link="https://alerts.example/r/{TOKEN}?x=1")
get_logger("sending").info("message not sent", reason="400 21211 The 'To' number {PHONE} is bad")
logging.getLogger("uvicorn.access").warning(
    '%s - "%s %s HTTP/%s" %d', "10.0.0.1:5000", "GET", "/r/{TOKEN}", "1.1", 200
)
try:
    raise ValueError("refused {PHONE}")
except ValueError:
    get_logger("sending").exception("sending failed unexpectedly")
"""


def test_a_process_log_masks_tokens_and_numbers() -> None:
    out = subprocess.run(
        [sys.executable, "-c", _SCRIPT], cwd=REPO, capture_output=True, text=True, check=True
    ).stdout
    lines = [json.loads(line) for line in out.splitlines()]
    assert len(lines) == 4, out
    assert TOKEN not in out and PHONE not in out and "12345678" not in out
    assert lines[0]["path"] == "/r/***"
    assert lines[0]["link"] == "https://alerts.example/r/***?x=1"
    assert "+*********78" in lines[1]["reason"]
    assert "GET /r/*** HTTP/1.1" in lines[2]["event"]
    assert "ValueError: refused +*********78" in lines[3]["exception"]


@given(st.from_regex(r"\+[1-9][0-9]{7,14}", fullmatch=True))
def test_every_e164_number_keeps_only_its_last_two_digits(phone: str) -> None:
    masked = mask_phone_numbers(f"The 'To' number {phone} is not valid.")
    assert phone not in masked
    assert f"+{'*' * (len(phone) - 3)}{phone[-2:]} is not valid" in masked


@given(st.text(alphabet=st.characters(categories=["L", "N"], include_characters="-_"), min_size=1))
def test_every_answer_token_is_hidden(token: str) -> None:
    assert mask_answer_tokens(f"GET /r/{token} 200") == "GET /r/*** 200"


def test_ids_times_and_counts_are_left_alone() -> None:
    text = "alert 3f1c2a9e-1b2c-4d5e-8f90-123456789abc at 2025-01-01T10:00:00+00:00, 1234567 rows"
    assert redact(text) == text
