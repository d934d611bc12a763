"""Voice providers of the channel ladder: `twilio` (the Calls REST API) and `console`.

Twilio, exactly as documented: `POST {TWILIO_API_BASE}/2010-04-01/Accounts/{sid}/Calls.json`,
HTTP basic auth, form fields `To`, `From` (one of the account's numbers), `Url` (where
Twilio fetches the TwiML once the member picks up), `StatusCallback` (where it posts
the call's final status). 201 returns the call with its `sid`. Errors map as for SMS
(providers/twilio.py): a 4xx but 429 is permanent, 429 / 5xx / timeouts are not, and a
5xx or a lost answer may come after Twilio placed the call (`maybe_accepted`).
"""

from __future__ import annotations

import sys
import uuid
from typing import Protocol

import httpx

from services.alerts.providers import Accepted, ProviderError
from services.alerts.providers.twilio import _NEVER_SENT, _reason
from services.alerts.settings import Settings


class VoiceProvider(Protocol):
    name: str

    async def call(self, to: str, *, twiml_url: str, status_url: str) -> Accepted:
        """Place one call; raise ProviderError when it is refused."""
        ...

    async def aclose(self) -> None: ...


class TwilioVoice:
    name = "twilio"

    def __init__(self, settings: Settings) -> None:
        sid = settings.twilio_account_sid
        self._url = f"{settings.twilio_api_base.rstrip('/')}/2010-04-01/Accounts/{sid}/Calls.json"
        self._from = settings.voice_from_number
        self._client = httpx.AsyncClient(
            auth=(sid, settings.twilio_auth_token), timeout=settings.sms_timeout_s
        )

    async def call(self, to: str, *, twiml_url: str, status_url: str) -> Accepted:
        form = {
            "To": to,
            "From": self._from,
            "Url": twiml_url,
            "Method": "POST",
            "StatusCallback": status_url,
            "StatusCallbackMethod": "POST",
        }
        try:
            response = await self._client.post(self._url, data=form)
        except httpx.TransportError as exc:
            raise ProviderError(
                f"transport: {type(exc).__name__}",
                permanent=False,
                maybe_accepted=not isinstance(exc, _NEVER_SENT),
            ) from exc
        if response.status_code in (200, 201):
            return Accepted(str(response.json()["sid"]))
        permanent = 400 <= response.status_code < 500 and response.status_code != 429
        raise ProviderError(
            _reason(response), permanent=permanent, maybe_accepted=response.status_code >= 500
        )

    async def aclose(self) -> None:
        await self._client.aclose()


class ConsoleVoice:
    """Prints each call (local runs): the number masked but for its last digits."""

    name = "console"

    async def call(self, to: str, *, twiml_url: str, status_url: str) -> Accepted:
        sid = f"CONSOLECA{uuid.uuid4().hex}"
        masked = "*" * max(0, len(to) - 3) + to[-3:]
        sys.stdout.write(f"CALL {sid} to {masked}: TwiML at {twiml_url}\n")
        sys.stdout.flush()
        return Accepted(sid)

    async def aclose(self) -> None:
        return None


def voice_provider_for(settings: Settings) -> VoiceProvider | None:
    """The configured provider; None when calls are off (`effective_voice_provider`)."""
    chosen = settings.effective_voice_provider
    if chosen == "twilio":
        return TwilioVoice(settings)
    if chosen == "console":
        return ConsoleVoice()
    return None
