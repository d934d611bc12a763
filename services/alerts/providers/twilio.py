"""Twilio's Messages REST API, exactly as documented, at `TWILIO_API_BASE`.

`POST {base}/2010-04-01/Accounts/{AccountSid}/Messages.json` with form fields `To`,
`From` (or `MessagingServiceSid`, which spreads the load over a pool of numbers),
`Body` and `StatusCallback`, HTTP basic auth (account SID, auth token). 201 returns the
message with its `sid`. A 4xx other than 429 is permanent (invalid number, opted out:
retrying cannot help); 429, 5xx and timeouts are transient. A 5xx, a read timeout or
a dropped connection may come after Twilio took the message (`maybe_accepted`): the
sender counts the resend as a possible duplicate.
"""

from __future__ import annotations

import itertools

import httpx

from services.alerts.providers import Accepted, ProviderError
from services.alerts.settings import Settings

#: failures before the request left: Twilio cannot have taken the message
_NEVER_SENT = (
    httpx.ConnectError,
    httpx.ConnectTimeout,
    httpx.PoolTimeout,
    httpx.UnsupportedProtocol,
)


class TwilioProvider:
    name = "twilio"

    def __init__(self, settings: Settings) -> None:
        self._sid = settings.twilio_account_sid
        self._url = (
            f"{settings.twilio_api_base.rstrip('/')}/2010-04-01/Accounts/{self._sid}/Messages.json"
        )
        self._from = settings.twilio_from_number
        self._service = settings.twilio_messaging_service_sid
        self._callback = f"{settings.public_base_url.rstrip('/')}/sms/status"
        # httpcore scans every pooled connection on each request: several small pools
        # keep that cheap at a high concurrency
        per_pool = 8
        self._clients = [
            httpx.AsyncClient(
                auth=(settings.twilio_account_sid, settings.twilio_auth_token),
                timeout=settings.sms_timeout_s,
                limits=httpx.Limits(max_connections=per_pool, max_keepalive_connections=per_pool),
            )
            for _ in range(max(1, -(-settings.sender_concurrency // per_pool)))
        ]
        self._next = itertools.count()

    async def send(self, to: str, body: str) -> Accepted:
        form = {"To": to, "Body": body, "StatusCallback": self._callback}
        if self._service:
            form["MessagingServiceSid"] = self._service
        else:
            form["From"] = self._from
        try:
            client = self._clients[next(self._next) % len(self._clients)]
            response = await client.post(self._url, data=form)
        except httpx.TimeoutException as exc:
            raise ProviderError(
                f"timeout: {type(exc).__name__}",
                permanent=False,
                maybe_accepted=not isinstance(exc, _NEVER_SENT),
            ) from exc
        except httpx.TransportError as exc:
            raise ProviderError(
                f"transport: {type(exc).__name__}",
                permanent=False,
                maybe_accepted=not isinstance(exc, _NEVER_SENT),
            ) from exc
        if response.status_code in (200, 201):
            return Accepted(str(response.json()["sid"]))
        reason = _reason(response)
        permanent = 400 <= response.status_code < 500 and response.status_code != 429
        # a 5xx may come from a gateway after Twilio took the message; a 429 refused it
        raise ProviderError(reason, permanent=permanent, maybe_accepted=response.status_code >= 500)

    async def aclose(self) -> None:
        for client in self._clients:
            await client.aclose()


def _reason(response: httpx.Response) -> str:
    try:
        payload = response.json()
        return (
            f"{response.status_code} {payload.get('code', '')} {payload.get('message', '')}".strip()
        )
    except ValueError:
        return f"{response.status_code} {response.text[:200]}"
