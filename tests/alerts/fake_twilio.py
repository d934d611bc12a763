"""A local Twilio-compatible Messages API for the tests: records every SMS it accepts.

`POST /2010-04-01/Accounts/{sid}/Messages.json` with basic auth, form fields `To`,
`From` / `MessagingServiceSid`, `Body`, `StatusCallback`; answers 201 with a `sid` as
Twilio does. `script(to, [500, 500])` makes the next requests for a number fail with
those statuses first; `reject(to, 400)` refuses a number for good (invalid number).
It runs in its own thread and event loop, so a test that blocks its own loop (starting a
service process) never stalls the service's sends.
"""

from __future__ import annotations

import asyncio
import base64
import threading
import time
import uuid
from collections import defaultdict
from dataclasses import dataclass, field

from aiohttp import web

from tests.support.processes import free_port

ACCOUNT_SID = "AC" + "0" * 32
AUTH_TOKEN = "test-auth-token-0123456789abcdef"


@dataclass
class Sms:
    to: str
    body: str
    sender: str
    status_callback: str
    sid: str
    at: float


@dataclass
class FakeTwilio:
    port: int = field(default_factory=free_port)
    messages: list[Sms] = field(default_factory=list)
    requests: list[tuple[str, int]] = field(default_factory=list)
    _scripts: dict[str, list[int]] = field(default_factory=lambda: defaultdict(list))
    _rejected: dict[str, int] = field(default_factory=dict)
    _lock: threading.Lock = field(default_factory=threading.Lock)

    @property
    def base(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def env(self) -> dict[str, str]:
        return {
            "MUSTER_SMS_PROVIDER": "twilio",
            "TWILIO_API_BASE": self.base,
            "TWILIO_ACCOUNT_SID": ACCOUNT_SID,
            "TWILIO_AUTH_TOKEN": AUTH_TOKEN,
            "TWILIO_MESSAGING_SERVICE_SID": "MG" + "1" * 32,
        }

    def script(self, to: str, statuses: list[int]) -> None:
        with self._lock:
            self._scripts[to].extend(statuses)

    def reject(self, to: str, status: int = 400) -> None:
        self._rejected[to] = status

    def to(self, phone: str) -> list[Sms]:
        return [m for m in list(self.messages) if m.to == phone]

    def attempts(self, phone: str) -> list[int]:
        return [status for to, status in list(self.requests) if to == phone]

    def wait_for(self, count: int, timeout_s: float = 60.0) -> list[Sms]:
        deadline = time.monotonic() + timeout_s
        while len(self.messages) < count and time.monotonic() < deadline:
            time.sleep(0.05)
        return list(self.messages)

    async def wait_for_async(self, predicate, timeout_s: float = 60.0) -> bool:  # type: ignore[no-untyped-def]
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if predicate(list(self.messages)):
                return True
            await asyncio.sleep(0.05)
        return bool(predicate(list(self.messages)))

    # --- the server --------------------------------------------------------------------

    async def _create(self, request: web.Request) -> web.Response:
        expected = "Basic " + base64.b64encode(f"{ACCOUNT_SID}:{AUTH_TOKEN}".encode()).decode()
        if request.headers.get("Authorization") != expected:
            return web.json_response({"code": 20003, "message": "Authenticate"}, status=401)
        if request.match_info["sid"] != ACCOUNT_SID:
            return web.json_response({"code": 20404, "message": "not found"}, status=404)
        form = await request.post()
        to = str(form.get("To", ""))
        with self._lock:
            scripted = self._scripts[to].pop(0) if self._scripts[to] else None
        status = scripted or self._rejected.get(to) or 201
        self.requests.append((to, status))
        if status != 201:
            # Twilio's error 21211 names the number it refused
            message = (
                f"The 'To' number {to} is not a valid phone number." if status == 400 else "Error"
            )
            return web.json_response(
                {"code": 21211 if status == 400 else 20500, "message": message, "status": status},
                status=status,
            )
        sid = "SM" + uuid.uuid4().hex
        self.messages.append(
            Sms(
                to=to,
                body=str(form.get("Body", "")),
                sender=str(form.get("From") or form.get("MessagingServiceSid") or ""),
                status_callback=str(form.get("StatusCallback", "")),
                sid=sid,
                at=time.monotonic(),
            )
        )
        return web.json_response(
            {"sid": sid, "status": "queued", "to": to, "body": form.get("Body")}, status=201
        )

    def start(self) -> FakeTwilio:
        ready = threading.Event()

        def run() -> None:
            loop = asyncio.new_event_loop()
            self._loop = loop
            app = web.Application()
            app.router.add_post("/2010-04-01/Accounts/{sid}/Messages.json", self._create)
            runner = web.AppRunner(app, access_log=None)
            loop.run_until_complete(runner.setup())
            site = web.TCPSite(runner, "127.0.0.1", self.port, backlog=1024)
            loop.run_until_complete(site.start())
            self._runner = runner
            ready.set()
            loop.run_forever()
            loop.run_until_complete(runner.cleanup())
            loop.close()

        self._thread = threading.Thread(target=run, name="fake-twilio", daemon=True)
        self._thread.start()
        ready.wait(10)
        return self

    def stop(self) -> None:
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(10)
