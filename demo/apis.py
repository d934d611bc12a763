"""The public HTTP APIs the demo uses, as staff and as Twilio would call them."""

from __future__ import annotations

import uuid
from typing import Any

import httpx
from twilio.request_validator import RequestValidator

from demo.settings import Settings


class DemoError(Exception):
    """Something the person running the demo has to fix; the message says what."""


class Apis:
    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        timeout = httpx.Timeout(60.0, connect=5.0)
        self.members = httpx.Client(base_url=settings.members_url, timeout=timeout)
        self.alerts = httpx.Client(base_url=settings.alerts_url, timeout=timeout)
        self.dispatch = httpx.Client(base_url=settings.dispatch_url, timeout=timeout)

    def close(self) -> None:
        for client in (self.members, self.alerts, self.dispatch):
            client.close()

    def check_running(self) -> None:
        for name, client in (
            ("members", self.members),
            ("alerts", self.alerts),
            ("dispatch", self.dispatch),
        ):
            try:
                client.get("/healthz", timeout=5.0).raise_for_status()
            except httpx.HTTPError as exc:
                raise DemoError(
                    f"the stack is not running ({name} does not answer at {client.base_url}): "
                    "run `make up`, then `make demo` again"
                ) from exc

    def console_answers(self) -> bool:
        try:
            return httpx.get(f"{self.settings.console_url}/healthz", timeout=5.0).is_success
        except httpx.HTTPError:
            return False

    @staticmethod
    def expect(response: httpx.Response, *ok: int) -> Any:
        if response.status_code not in ok:
            request = response.request
            raise DemoError(
                f"{request.method} {request.url.path} answered {response.status_code}: "
                f"{response.text[:500]}"
            )
        if not response.content or "json" not in response.headers.get("content-type", ""):
            return None
        return response.json()

    # staff ----------------------------------------------------------------------------

    def sign_in(self, email: str, password: str) -> dict[str, str]:
        response = self.members.post("/auth/token", data={"username": email, "password": password})
        if response.status_code == 401:
            raise DemoError(f"{email} cannot sign in with the password the demo has for it")
        token = self.expect(response, 200)["access_token"]
        return {"Authorization": f"Bearer {token}"}

    def all_members(
        self, staff: dict[str, str], section: str | None = None
    ) -> list[dict[str, Any]]:
        found: list[dict[str, Any]] = []
        while True:
            params: dict[str, Any] = {"limit": 1000, "offset": len(found)}
            if section:
                params["section"] = section
            page = self.expect(self.members.get("/members", params=params, headers=staff), 200)
            found.extend(page["items"])
            if not page["items"] or len(found) >= page["total"]:
                return found

    def member_count(self, staff: dict[str, str]) -> int:
        page = self.expect(self.members.get("/members", params={"limit": 1}, headers=staff), 200)
        return int(page["total"])

    # members texting back -------------------------------------------------------------

    def sms_from(self, phone: str, body: str) -> str:
        """POST alerts /sms/inbound as Twilio does, signed with the account's auth token."""
        params = {
            "From": phone,
            "To": "+15005550006",
            "Body": body,
            "MessageSid": f"SM{uuid.uuid4().hex}",
            "AccountSid": "AC" + "0" * 32,
        }
        url = self.settings.public_base_url.rstrip("/") + "/sms/inbound"
        signature = RequestValidator(self.settings.twilio_auth_token).compute_signature(url, params)
        response = self.alerts.post(
            "/sms/inbound", data=params, headers={"X-Twilio-Signature": signature}
        )
        if response.status_code == 403:
            raise DemoError(
                "alerts refused the SMS webhook's signature: the demo signs with TWILIO_AUTH_TOKEN "
                f"from {self.settings.secrets_file} against {url}. Restart the stack "
                "(`make down && make up`) so alerts uses the same token, or set "
                "TWILIO_AUTH_TOKEN and MUSTER_PUBLIC_BASE_URL as alerts has them"
            )
        self.expect(response, 200)
        return response.text
