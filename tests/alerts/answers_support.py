"""Signed Twilio webhooks and TwiML reading for the alerts tests."""

from __future__ import annotations

import re
import uuid

import httpx
from twilio.request_validator import RequestValidator

from tests.alerts.conftest import PUBLIC_BASE
from tests.alerts.fake_twilio import AUTH_TOKEN


def signed(path: str, params: dict[str, str]) -> dict[str, str]:
    signature = RequestValidator(AUTH_TOKEN).compute_signature(PUBLIC_BASE + path, params)
    return {"X-Twilio-Signature": signature}


async def sms(client: httpx.AsyncClient, phone: str, body: str) -> httpx.Response:
    params = {
        "From": phone,
        "To": "+15005550006",
        "Body": body,
        "MessageSid": f"SM{uuid.uuid4().hex}",
    }
    return await client.post("/sms/inbound", data=params, headers=signed("/sms/inbound", params))


def message_of(response: httpx.Response) -> str:
    found = re.search(r"<Message>(.*)</Message>", response.text, re.S)
    return found.group(1) if found else ""


def token_in(body: str) -> str:
    found = re.search(r"/r/([A-Za-z0-9_-]+)", body)
    assert found, body
    return found.group(1)
