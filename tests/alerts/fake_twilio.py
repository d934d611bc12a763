"""A local Twilio-compatible Messages API for the tests: records every SMS it accepts.

`POST /2010-04-01/Accounts/{sid}/Messages.json` with basic auth, form fields `To`,
`From` / `MessagingServiceSid`, `Body`, `StatusCallback`; answers 201 with a `sid` as
Twilio does. `script(to, [500, 500])` makes the next requests for a number fail with
those statuses first; `reject(to, 400)` refuses a number for good (invalid number).
It runs in its own thread and event loop, so a test that blocks its own loop (starting a
service process) never stalls the service's sends.

The voice side (the channel ladder): `POST /2010-04-01/Accounts/{sid}/Calls.json` with
`To`, `From`, `Url`, `StatusCallback` answers 201 with a `CA...` sid and records the
call. With `route(public_base, actual_base)` the fake then plays the member picking up:
it fetches the call's TwiML `Url` as Twilio does (POST, `X-Twilio-Signature` over the
public URL it was given, sent to the service's real address). A test then presses keys
(`press`: signed `Digits` to a `<Gather>` action) and ends the call (`end`: the signed
status callback). `script_calls([500])` makes the next call requests fail first.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import dataclasses
import subprocess
import sys
import threading
import time
import uuid
from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path

import httpx
from aiohttp import web
from twilio.request_validator import RequestValidator

from tests.support.processes import free_port

ACCOUNT_SID = "AC" + "0" * 32
AUTH_TOKEN = "test-auth-token-0123456789abcdef"
VOICE_FROM = "+15005550006"


@dataclass
class Sms:
    to: str
    body: str
    sender: str
    status_callback: str
    sid: str
    at: float


@dataclass
class Call:
    to: str
    caller: str
    url: str
    status_callback: str
    sid: str
    #: the TwiML documents the service answered, in order (fetch, then each key press)
    twiml: list[str] = field(default_factory=list)


@dataclass
class FakeTwilio:
    port: int = field(default_factory=free_port)
    messages: list[Sms] = field(default_factory=list)
    requests: list[tuple[str, int]] = field(default_factory=list)
    _scripts: dict[str, list[int]] = field(default_factory=lambda: defaultdict(list))
    _rejected: dict[str, int] = field(default_factory=dict)
    _lock: threading.Lock = field(default_factory=threading.Lock)
    calls: list[Call] = field(default_factory=list)
    call_requests: list[tuple[str, int]] = field(default_factory=list)
    _call_scripts: list[int] = field(default_factory=list)
    #: public base URL -> the address the service really listens on
    _routes: dict[str, str] = field(default_factory=dict)

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
            "TWILIO_VOICE_FROM_NUMBER": VOICE_FROM,
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

    # --- the voice side -----------------------------------------------------------------

    def route(self, public_base: str, actual_base: str) -> None:
        """Webhooks to `public_base` reach `actual_base` (as through a reverse proxy);
        calls to it are picked up at once (their TwiML fetched)."""
        self._routes[public_base.rstrip("/")] = actual_base.rstrip("/")

    def script_calls(self, statuses: list[int]) -> None:
        with self._lock:
            self._call_scripts.extend(statuses)

    def calls_to(self, phone: str) -> list[Call]:
        return [c for c in list(self.calls) if c.to == phone]

    def _actual(self, url: str) -> str:
        for public, actual in self._routes.items():
            if url.startswith(public + "/"):
                return actual + url[len(public) :]
        raise AssertionError(f"no route to {url}")

    def _routed(self, url: str) -> bool:
        return any(url.startswith(public + "/") for public in self._routes)

    def _params(self, call: Call, **more: str) -> dict[str, str]:
        return {
            "CallSid": call.sid,
            "AccountSid": ACCOUNT_SID,
            "From": call.caller,
            "To": call.to,
            "Direction": "outbound-api",
            "ApiVersion": "2010-04-01",
            **more,
        }

    async def webhook(self, url: str, params: dict[str, str]) -> httpx.Response:
        """POST `params` to `url` signed as Twilio signs (over the public URL)."""
        signature = RequestValidator(AUTH_TOKEN).compute_signature(url, params)
        async with httpx.AsyncClient(timeout=30) as client:
            return await client.post(
                self._actual(url), data=params, headers={"X-Twilio-Signature": signature}
            )

    async def pick_up(self, call: Call) -> str:
        """The member answers: Twilio fetches the call's TwiML."""
        response = await self.webhook(call.url, self._params(call, CallStatus="in-progress"))
        assert response.status_code == 200, (response.status_code, response.text)
        call.twiml.append(response.text)
        return response.text

    async def press(self, call: Call, action: str, digits: str | None) -> httpx.Response:
        """Keys pressed at a `<Gather>` whose action is `action` (None: the gather ran
        out and the TwiML's `<Redirect>` was followed, no `Digits`)."""
        params = self._params(call, CallStatus="in-progress")
        if digits is not None:
            params["Digits"] = digits
        response = await self.webhook(action, params)
        if response.status_code == 200:
            call.twiml.append(response.text)
        return response

    async def end(self, call: Call, status: str = "completed") -> httpx.Response:
        """The call's final status to its StatusCallback."""
        return await self.webhook(
            call.status_callback, self._params(call, CallStatus=status, CallDuration="20")
        )

    async def wait_for_calls(self, count: int, timeout_s: float = 60.0) -> list[Call]:
        deadline = time.monotonic() + timeout_s
        while len(self.calls) < count and time.monotonic() < deadline:
            await asyncio.sleep(0.05)
        return list(self.calls)

    async def wait_for_twiml(self, call: Call, timeout_s: float = 30.0) -> str:
        deadline = time.monotonic() + timeout_s
        while not call.twiml and time.monotonic() < deadline:
            await asyncio.sleep(0.05)
        assert call.twiml, "the call's TwiML was never fetched"
        return call.twiml[0]

    async def _create_call(self, request: web.Request) -> web.Response:
        expected = "Basic " + base64.b64encode(f"{ACCOUNT_SID}:{AUTH_TOKEN}".encode()).decode()
        if request.headers.get("Authorization") != expected:
            return web.json_response({"code": 20003, "message": "Authenticate"}, status=401)
        if request.match_info["sid"] != ACCOUNT_SID:
            return web.json_response({"code": 20404, "message": "not found"}, status=404)
        form = await request.post()
        to = str(form.get("To", ""))
        missing = [f for f in ("To", "From", "Url") if not form.get(f)]
        if missing:
            return web.json_response(
                {"code": 21205, "message": f"{missing[0]} is required"}, status=400
            )
        with self._lock:
            status = self._call_scripts.pop(0) if self._call_scripts else 201
        self.call_requests.append((to, status))
        if status != 201:
            return web.json_response({"code": 20500, "message": "Error"}, status=status)
        call = Call(
            to=to,
            caller=str(form.get("From", "")),
            url=str(form.get("Url", "")),
            status_callback=str(form.get("StatusCallback", "")),
            sid="CA" + uuid.uuid4().hex,
        )
        self.calls.append(call)
        if self._routed(call.url):
            # the member picks up once Twilio has answered the request
            asyncio.get_running_loop().create_task(self._pick_up_later(call))
        return web.json_response({"sid": call.sid, "status": "queued", "to": to}, status=201)

    async def _pick_up_later(self, call: Call) -> None:
        await asyncio.sleep(0.05)
        try:
            await self.pick_up(call)
        except Exception as exc:  # the test sees no TwiML and says so
            call.twiml.append(f"ERROR {exc!r}")

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
            app.router.add_post("/2010-04-01/Accounts/{sid}/Calls.json", self._create_call)
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


# --- the gateway in a process of its own (benchmarks) --------------------------------------
#
# In a thread, the fake shares the GIL with whatever the test or benchmark process does
# (polling, building events): a benchmark of the send path then measures that contention,
# for the raw HTTP floor and the fan-out alike. `GatewayProcess` runs the same handlers in
# a separate Python process; the benchmark reads what arrived over HTTP.

STATS_PATH = "/_muster/messages"


@dataclass
class GatewayProcess:
    """`FakeTwilio` served by `python -m tests.alerts.fake_twilio` in its own process."""

    port: int = field(default_factory=free_port)
    #: run the gateway's event loop on uvloop; measured no faster than asyncio's own loop
    #: here (docs/performance.md, issue 9 second pass), so off unless asked for
    uvloop: bool = False
    _process: subprocess.Popen[bytes] | None = None

    @property
    def base(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def env(self) -> dict[str, str]:
        return FakeTwilio(port=self.port).env()

    def start(self, timeout_s: float = 30.0) -> GatewayProcess:
        args = [sys.executable, "-m", "tests.alerts.fake_twilio", "--port", str(self.port)]
        if self.uvloop:
            args.append("--uvloop")
        self._process = subprocess.Popen(args, cwd=Path(__file__).resolve().parents[2])
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if self._process.poll() is not None:
                raise RuntimeError(f"the gateway process exited ({self._process.returncode})")
            try:
                httpx.get(self.base + STATS_PATH + "?count=1", timeout=1).raise_for_status()
                return self
            except httpx.HTTPError:
                time.sleep(0.05)
        raise TimeoutError("the gateway process did not answer")

    async def count(self, client: httpx.AsyncClient) -> int:
        response = await client.get(self.base + STATS_PATH, params={"count": "1"})
        return int(response.json()["count"])

    async def messages(self, client: httpx.AsyncClient) -> list[Sms]:
        """Every SMS accepted so far (`at` is the gateway's `time.monotonic()`: the
        system's monotonic clock, the same in every process of this machine)."""
        response = await client.get(self.base + STATS_PATH)
        return [Sms(**m) for m in response.json()["messages"]]

    def stop(self) -> None:
        if self._process is not None and self._process.poll() is None:
            self._process.terminate()
            try:
                self._process.wait(10)
            except subprocess.TimeoutExpired:
                self._process.kill()
                self._process.wait(10)


def serve(port: int, *, use_uvloop: bool) -> None:
    """The fake's Messages and Calls API, and what arrived, in this process's main loop."""
    fake = FakeTwilio(port=port)

    async def arrived(request: web.Request) -> web.Response:
        messages = list(fake.messages)
        if request.query.get("count"):
            return web.json_response({"count": len(messages)})
        return web.json_response(
            {"count": len(messages), "messages": [dataclasses.asdict(m) for m in messages]}
        )

    app = web.Application()
    app.router.add_post("/2010-04-01/Accounts/{sid}/Messages.json", fake._create)
    app.router.add_post("/2010-04-01/Accounts/{sid}/Calls.json", fake._create_call)
    app.router.add_get(STATS_PATH, arrived)
    loop: asyncio.AbstractEventLoop
    if use_uvloop:
        import uvloop

        loop = uvloop.new_event_loop()
    else:
        loop = asyncio.new_event_loop()
    web.run_app(
        app, host="127.0.0.1", port=port, backlog=1024, access_log=None, print=None, loop=loop
    )


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=serve.__doc__)
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--uvloop", action="store_true")
    options = parser.parse_args()
    serve(options.port, use_uvloop=options.uvloop)
