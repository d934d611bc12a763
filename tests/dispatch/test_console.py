"""The coordinator console: one static page, served with a strict per-response CSP nonce,
that holds no data (the data comes from the API with the coordinator's token)."""

from __future__ import annotations

import asyncio
import json
import os
import re
import shutil
import subprocess
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import httpx
import pytest
import websockets

from shared.events.topics import ALERTS, RESPONSES
from tests.conftest import Topics
from tests.dispatch.conftest import Script, Staff, emergency_body
from tests.shared.flow import wait_for
from tests.support.kafka import publish
from tests.support.processes import ServiceProcess

NONCE = re.compile(r"script-src 'nonce-([A-Za-z0-9_-]{16,})'")


def csp_nonce(response: httpx.Response) -> str:
    csp = response.headers["content-security-policy"]
    match = NONCE.search(csp)
    assert match, csp
    nonce = match.group(1)
    directives = {d.strip().split(" ", 1)[0]: d.strip() for d in csp.split(";")}
    assert directives["default-src"] == "default-src 'none'"
    assert directives["script-src"] == f"script-src 'nonce-{nonce}'"
    assert directives["style-src"] == f"style-src 'nonce-{nonce}'"
    assert directives["connect-src"] == "connect-src 'self'"
    assert directives["frame-ancestors"] == "frame-ancestors 'none'"
    assert directives["base-uri"] == "base-uri 'none'"
    assert "unsafe-inline" not in csp and "unsafe-eval" not in csp and "*" not in csp
    return nonce


async def test_console_page(dispatch: ServiceProcess, staff: Staff) -> None:
    async with httpx.AsyncClient(base_url=dispatch.url, timeout=10) as client:
        created = await client.post(
            "/emergencies",
            json=emergency_body(title="Console secret title 7Q"),
            headers=staff.coordinator(),
        )
        assert created.status_code == 201, created.text
        emergency = created.json()

        # no token needed: the page itself holds nothing
        page = await client.get(f"/console/{emergency['id']}")
        assert page.status_code == 200
        assert page.headers["content-type"].startswith("text/html")
        assert page.headers["x-frame-options"] == "DENY"
        assert page.headers["cache-control"] == "no-store"
        assert page.headers["x-content-type-options"] == "nosniff"
        nonce = csp_nonce(page)
        html = page.text

        # every script and style element carries this response's nonce; nothing external
        scripts = re.findall(r"<script\b[^>]*>", html)
        styles = re.findall(r"<style\b[^>]*>", html)
        assert scripts and styles
        for tag in scripts + styles:
            assert f'nonce="{nonce}"' in tag, tag
        assert not re.search(r"\b(src|href)\s*=\s*[\"']?(https?:)?//", html)
        assert not re.search(r"\son[a-z]+\s*=", html)  # no inline handlers (CSP blocks them)
        # data goes into the DOM as text only
        assert "innerHTML" not in html and "insertAdjacentHTML" not in html
        assert "document.write" not in html
        # the script uses the API it is meant to
        for needle in ("/stream-ticket", "/board", "EventSource", "sessionStorage"):
            assert needle in html
        assert '"board"' in html and '"row"' in html  # the SSE event names dispatch emits

        # no data: not the emergency's id, title or reply code, nor anything it depends on
        for secret in (emergency["id"], "Console secret title 7Q", emergency["reply_code"]):
            assert secret not in html
        other = await client.get(f"/console/{uuid.uuid4()}")
        assert other.status_code == 200
        other_nonce = csp_nonce(other)
        assert other_nonce != nonce  # a new nonce per response
        assert other.text.replace(other_nonce, "N") == html.replace(nonce, "N")

        assert (await client.get("/console/not-a-uuid")).status_code == 422


CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")

STATE_JS = """JSON.stringify({
  ready: document.body.dataset.consoleReady || null,
  conn: document.getElementById("conn").textContent,
  title: document.getElementById("title").textContent,
  injected: document.getElementById("injected") !== null,
  filled: document.getElementById("c-filled").textContent,
  noAnswer: document.getElementById("c-no_answer").textContent,
  rows: Array.from(document.querySelectorAll("#rows tr"))
    .map((tr) => Array.from(tr.cells).map((td) => td.textContent)),
  overflow: document.documentElement.scrollWidth > window.innerWidth,
  width: window.innerWidth
})"""


class Page:
    """One headless Chromium tab driven over the DevTools protocol (no extra packages)."""

    def __init__(self, process: subprocess.Popen[str], socket: Any) -> None:
        self.process = process
        self.socket = socket
        self.next_id = 0

    async def call(self, method: str, **params: Any) -> dict[str, Any]:
        self.next_id += 1
        await self.socket.send(json.dumps({"id": self.next_id, "method": method, "params": params}))
        while True:
            message = json.loads(await asyncio.wait_for(self.socket.recv(), 15))
            if message.get("id") == self.next_id:
                assert "error" not in message, message
                return dict(message["result"])

    async def state(self) -> dict[str, Any]:
        result = await self.call("Runtime.evaluate", expression=STATE_JS, returnByValue=True)
        value = result.get("result", {}).get("value")
        # while the page is still loading (or navigating) there is no value yet: poll again
        return dict(json.loads(value)) if isinstance(value, str) else {}


@asynccontextmanager
async def chromium_page(profile: Path) -> AsyncIterator[Page]:
    assert CHROMIUM is not None
    process = subprocess.Popen(
        [CHROMIUM, "--headless=new", "--no-sandbox", "--disable-gpu", "--no-first-run",
         "--remote-debugging-port=0", f"--user-data-dir={profile}", "--window-size=360,800",
         "about:blank"],
        stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    try:
        assert process.stderr is not None
        port = None
        for _ in range(200):
            line = await asyncio.wait_for(asyncio.to_thread(process.stderr.readline), 30)
            match = re.search(r"DevTools listening on ws://[^:]+:(\d+)/", line)
            if match:
                port = int(match.group(1))
                break
        assert port, "chromium did not open its DevTools port"
        async with httpx.AsyncClient() as client:
            targets = (await client.get(f"http://127.0.0.1:{port}/json/list")).json()
        url = next(t["webSocketDebuggerUrl"] for t in targets if t["type"] == "page")
        async with websockets.connect(url, max_size=None) as socket:
            yield Page(process, socket)
    finally:
        process.kill()
        process.wait(10)


async def test_console_in_a_browser(
    dispatch: ServiceProcess, staff: Staff, topics: Topics, tmp_path: Path
) -> None:
    """Optional: real headless Chromium at phone width. The inline script runs under the
    CSP, takes the token from sessionStorage, shows the board with escaped text, and a
    response published afterwards reaches the table through the SSE stream. Skipped
    where there is no Chromium (it is not a CI requirement)."""
    if CHROMIUM is None:
        pytest.skip("chromium is not installed")
    if not os.environ.get("MUSTER_BROWSER_TESTS"):
        pytest.skip("browser test: set MUSTER_BROWSER_TESTS=1 (needs chromium) to run it")
    title = '<img src=x id="injected">Flood'
    async with httpx.AsyncClient(base_url=dispatch.url, timeout=10) as client:
        created = await client.post(
            "/emergencies",
            json=emergency_body(title=title, members_needed=2),
            headers=staff.coordinator(),
        )
        assert created.status_code == 201, created.text
        emergency_id = created.json()["id"]
        script = Script(uuid.UUID(emergency_id))
        a, b, c = sorted((uuid.uuid4() for _ in range(3)), key=str)
        await publish(topics.bootstrap, topics(ALERTS),
                      [script.sent(a, 0, distance_m=800), script.sent(b, 0, distance_m=2500),
                       script.sent(c, 0)])  # fmt: skip
        await publish(topics.bootstrap, topics(RESPONSES), [script.answer(a, "accepted", 5, 10)])

        async def on_board() -> bool:
            board = await client.get(f"/emergencies/{emergency_id}/board",
                                     headers=staff.coordinator())  # fmt: skip
            return len(board.json()["rows"]) == 3 and board.json()["rows"][0]["status"] == (
                "accepted"
            )

        assert await wait_for(on_board, 30)

    token = staff.coordinator()["Authorization"].removeprefix("Bearer ")
    async with chromium_page(tmp_path / "chromium") as page:
        await page.call("Page.enable")
        await page.call("Emulation.setDeviceMetricsOverride",
                        width=360, height=740, deviceScaleFactor=2, mobile=True)  # fmt: skip
        await page.call("Page.navigate", url=f"{dispatch.url}/console/{emergency_id}")

        async def ready() -> bool:
            return (await page.state()).get("ready") == "1"

        assert await wait_for(ready, 20), "the inline script did not run (CSP?)"
        await page.call(
            "Runtime.evaluate",
            expression=f"sessionStorage.setItem('muster.console.token', {json.dumps(token)});"
            "location.reload();",
        )
        states: list[dict[str, Any]] = []

        async def live(rows: int, filled: str) -> bool:
            state = await page.state()
            states.append(state)
            return (
                str(state.get("conn", "")).startswith("Live")
                and len(state.get("rows", [])) == rows
                and state.get("filled") == filled
            )

        assert await wait_for(lambda: live(3, "1 / 2"), 20), states[-1:]
        state = states[-1]
        assert state["title"] == title and not state["injected"]  # text, not markup
        assert state["rows"][0][:4] == [str(a)[:8], "✓ accepted", "10 min", "800 m"]
        assert state["noAnswer"] == "2"
        assert state["width"] == 360 and not state["overflow"]  # fits a phone

        # a response published now reaches the open page through the stream
        await publish(topics.bootstrap, topics(RESPONSES), [script.answer(b, "accepted", 9, 4)])
        assert await wait_for(lambda: live(3, "2 / 2"), 20), states[-1:]
        first = states[-1]["rows"][0]
        assert first[:4] == [str(b)[:8], "✓ accepted", "4 min", "2.5 km"]
        assert states[-1]["noAnswer"] == "1"
