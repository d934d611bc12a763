"""SMS providers: `console` (prints, the default) and `twilio` (Messages REST API)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

from services.alerts.settings import Settings
from shared.observability import mask_phone_numbers


class ProviderError(Exception):
    """A provider refused or failed a message. `reason` is stored on the message row,
    logged and published in `alert.failed`: a provider's text often names the number
    ("The 'To' number +33... is not a valid phone number"), so it is masked here, once,
    for every provider.

    `maybe_accepted`: the request reached the provider and the answer was lost (a read
    timeout, a dropped connection, a 5xx from a gateway in front of it): the provider may
    have taken the message, so sending it again may give the member a second copy.
    """

    def __init__(self, reason: str, *, permanent: bool, maybe_accepted: bool = False) -> None:
        reason = mask_phone_numbers(reason)
        super().__init__(reason)
        self.reason = reason
        self.permanent = permanent
        self.maybe_accepted = maybe_accepted


@dataclass(frozen=True)
class Accepted:
    """The provider took the message; `sid` identifies it in delivery callbacks."""

    sid: str


class Provider(Protocol):
    name: str

    async def send(self, to: str, body: str) -> Accepted:
        """Hand one SMS over; raise ProviderError (permanent or not) when it is refused."""
        ...

    async def aclose(self) -> None: ...


def provider_for(settings: Settings) -> Provider:
    if settings.sms_provider == "twilio":
        from services.alerts.providers.twilio import TwilioProvider

        return TwilioProvider(settings)
    from services.alerts.providers.console import ConsoleProvider

    return ConsoleProvider()
