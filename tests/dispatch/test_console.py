"""The coordinator console: one static page, served with a strict per-response CSP nonce,
that holds no data (the data comes from the API with the coordinator's token)."""

from __future__ import annotations

import re
import shutil
import subprocess
import uuid

import httpx
import pytest

from tests.dispatch.conftest import Staff, emergency_body
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


async def test_console_runs_in_a_browser(dispatch: ServiceProcess) -> None:
    """Optional: a real headless Chromium loads the page under its CSP and the inline script
    runs (it marks the body and shows the token form). Skipped where there is no Chromium."""
    if CHROMIUM is None:
        pytest.skip("chromium is not installed")
    url = f"{dispatch.url}/console/{uuid.uuid4()}"
    result = subprocess.run(
        [CHROMIUM, "--headless=new", "--no-sandbox", "--disable-gpu", "--no-first-run",
         "--virtual-time-budget=3000", "--dump-dom", url],
        capture_output=True, text=True, timeout=60, check=False,
    )  # fmt: skip
    dom = result.stdout
    assert 'data-console-ready="1"' in dom, result.stderr[-2000:]
    assert 'id="login"' in dom and 'id="login" class="hidden"' not in dom  # asks for a token
