"""The console's session, sign-in, CSRF and Content-Security-Policy.

The console runs in-process (httpx's ASGI transport) but signs in against a real
members process with a bootstrap admin, as `make up` runs it.
"""

from __future__ import annotations

import re
from collections.abc import AsyncIterator

import httpx
import pytest
from hypothesis import given
from hypothesis import strategies as st

from services.console import pages
from services.console.app import build
from services.console.session import negotiate_language, preferred_languages, safe_next
from services.console.settings import Settings
from services.console.upstream import field_errors
from tests.members.conftest import (  # noqa: F401  (fixtures, imported to be used here)
    ADMIN_EMAIL,
    ADMIN_PASSWORD,
    MembersUnderTest,
    members_service,
    module_tmp,
)
from tests.support.processes import free_port

ORIGIN = "http://console.test"
NONCE = re.compile(r"'nonce-([A-Za-z0-9_-]{16,})'")


def console_settings(members: MembersUnderTest, **overrides: object) -> Settings:
    # alerts and dispatch are not running for these tests: a closed port stands for them
    nowhere = f"http://127.0.0.1:{free_port()}"
    return Settings(
        members_url=members.url,
        alerts_url=nowhere,
        dispatch_url=nowhere,
        session_secret="a test secret that is long enough to sign cookies",
        **overrides,
    )


@pytest.fixture
async def console(members_service: MembersUnderTest) -> AsyncIterator[httpx.AsyncClient]:  # noqa: F811
    app = build(console_settings(members_service))
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url=ORIGIN) as client:
            yield client


def csrf_of(html: str) -> str:
    match = re.search(r'name="csrf_token" value="([^"]+)"', html)
    assert match, "the page has no CSRF field"
    return match.group(1)


async def sign_in(client: httpx.AsyncClient, email: str, password: str) -> httpx.Response:
    page = await client.get("/login")
    return await client.post(
        "/login",
        data={"email": email, "password": password, "csrf_token": csrf_of(page.text)},
        headers={"Origin": ORIGIN},
    )


async def header_text(client: httpx.AsyncClient) -> str:
    """A signed-in page's header (the 404 page has the same header as every page)."""
    return (await client.get("/no-such-page")).text


async def test_wrong_password_shows_an_error_and_signs_nobody_in(console: httpx.AsyncClient):
    response = await sign_in(console, ADMIN_EMAIL, "not the password")
    assert response.status_code == 401
    assert "Wrong email or password." in response.text
    assert 'role="alert"' in response.text
    assert ADMIN_EMAIL in response.text  # the email is kept in the field
    assert "Sign out" not in await header_text(console)


async def test_a_locked_out_sign_in_says_when_to_try_again(console: httpx.AsyncClient):
    # members locks an account out after a few failures (unknown emails too, so accounts
    # cannot be probed); the page says so instead of "wrong password" or a server error
    answers = [await sign_in(console, "nobody@example.org", "guess") for _ in range(8)]
    assert answers[0].status_code == 401
    assert answers[-1].status_code == 429
    assert "Too many failed sign-ins. Try again in" in answers[-1].text
    assert 'role="alert"' in answers[-1].text


async def test_sign_in_shows_email_role_and_sections_then_sign_out(console: httpx.AsyncClient):
    before = csrf_of((await console.get("/login")).text)
    response = await sign_in(console, ADMIN_EMAIL, ADMIN_PASSWORD)
    assert response.status_code == 303
    page = await header_text(console)
    assert ADMIN_EMAIL in page
    assert "Role: admin" in page
    assert "Sections: all" in page
    after = csrf_of(page)
    assert after != before, "signing in must start a new session (no fixation)"

    signed_out = await console.post(
        "/logout", data={"csrf_token": after}, headers={"Origin": ORIGIN}
    )
    assert signed_out.status_code == 303
    assert signed_out.headers["location"] == "/login"
    assert ADMIN_EMAIL not in await header_text(console)


async def test_a_protected_page_sends_to_sign_in_and_back(console: httpx.AsyncClient):
    response = await console.get("/emergencies?status=active")
    assert response.status_code == 303
    assert response.headers["location"] == "/login?next=/emergencies%3Fstatus%3Dactive"
    page = await console.get(response.headers["location"])
    assert 'name="next" value="/emergencies?status=active"' in page.text


async def test_post_without_csrf_token_changes_nothing(console: httpx.AsyncClient):
    await sign_in(console, ADMIN_EMAIL, ADMIN_PASSWORD)
    refused = await console.post("/logout", headers={"Origin": ORIGIN})
    assert refused.status_code == 403
    refused = await console.post(
        "/logout", data={"csrf_token": "forged"}, headers={"Origin": ORIGIN}
    )
    assert refused.status_code == 403
    refused = await console.post(
        "/language", data={"lang": "fr", "next": "/"}, headers={"Origin": ORIGIN}
    )
    assert refused.status_code == 403
    page = await header_text(console)
    assert ADMIN_EMAIL in page, "still signed in"
    assert '<html lang="en">' in page, "the language did not change"


async def test_post_from_another_origin_changes_nothing(console: httpx.AsyncClient):
    await sign_in(console, ADMIN_EMAIL, ADMIN_PASSWORD)
    token = csrf_of(await header_text(console))
    for headers in (
        {"Origin": "http://evil.example"},
        {"Origin": "https://console.test"},  # another scheme is another origin
        {"Referer": "http://evil.example/form"},
        {},  # neither Origin nor Referer
    ):
        refused = await console.post(
            "/language", data={"lang": "fr", "next": "/", "csrf_token": token}, headers=headers
        )
        assert refused.status_code == 403, headers
        assert '<html lang="en">' in await header_text(console)
    # a Referer of our own origin is enough when a browser sends no Origin
    accepted = await console.post(
        "/language",
        data={"lang": "fr", "next": "/", "csrf_token": token},
        headers={"Referer": f"{ORIGIN}/emergencies"},
    )
    assert accepted.status_code == 303
    assert '<html lang="fr">' in await header_text(console)


async def test_sign_in_itself_needs_the_csrf_token(console: httpx.AsyncClient):
    await console.get("/login")
    response = await console.post(
        "/login",
        data={"email": ADMIN_EMAIL, "password": ADMIN_PASSWORD},
        headers={"Origin": ORIGIN},
    )
    assert response.status_code == 403
    assert ADMIN_EMAIL not in await header_text(console)


async def test_every_html_response_has_a_fresh_csp_nonce(console: httpx.AsyncClient):
    nonces = set()
    for path in ("/login", "/login", "/no-such-page"):
        response = await console.get(path)
        assert response.headers["content-type"].startswith("text/html")
        policy = response.headers["content-security-policy"]
        assert "default-src 'none'" in policy
        assert "frame-ancestors 'none'" in policy
        assert "form-action 'self'" in policy
        assert "unsafe-inline" not in policy
        match = NONCE.search(policy)
        assert match, policy
        nonces.add(match.group(1))
        assert response.headers["x-frame-options"] == "DENY"
        assert response.headers["cache-control"] == "no-store"
    assert len(nonces) == 3


async def test_the_session_cookie_is_httponly_and_samesite(console: httpx.AsyncClient):
    response = await console.get("/login")
    cookie = response.headers["set-cookie"].lower()
    assert cookie.startswith("muster_session=")
    assert "httponly" in cookie
    assert "samesite=lax" in cookie
    assert "secure" not in cookie  # plain http by default


async def test_secure_cookies_when_asked(members_service: MembersUnderTest):  # noqa: F811
    app = build(console_settings(members_service, secure_cookies=True))
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="https://console.test") as c:
            cookie = (await c.get("/login")).headers["set-cookie"].lower()
    assert "secure" in cookie and "httponly" in cookie


async def test_maps_fetch_nothing_from_outside_unless_a_local_tile_server_is_named(
    console: httpx.AsyncClient,
    members_service: MembersUnderTest,  # noqa: F811
):
    plain = await console.get("/login")
    policy = plain.headers["content-security-policy"]
    assert re.search(r"img-src 'self' data: blob:;", policy), policy
    assert "muster-tiles" not in plain.text

    tiles = "http://tiles.command-post.test:8080/{z}/{x}/{y}.png"
    app = build(console_settings(members_service, tile_url=tiles, tile_attribution="© OSM"))
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://console.test") as c:
            page = await c.get("/login")
    policy = page.headers["content-security-policy"]
    assert "img-src 'self' data: blob: http://tiles.command-post.test:8080;" in policy
    assert f'<meta name="muster-tiles" content="{tiles}"' in page.text
    with pytest.raises(ValueError, match="CONSOLE_TILE_URL"):
        console_settings(members_service, tile_url="javascript:alert(1)")


async def test_language_follows_accept_language_then_the_switcher(console: httpx.AsyncClient):
    page = await console.get("/login", headers={"Accept-Language": "sq-AL,sq;q=0.9,en;q=0.5"})
    assert '<html lang="sq">' in page.text
    assert "Fjalëkalimi" in page.text
    chosen = await console.post(
        "/language",
        data={"lang": "it", "next": "/login", "csrf_token": csrf_of(page.text)},
        headers={"Origin": ORIGIN},
    )
    assert chosen.headers["location"] == "/login"
    page = await console.get("/login", headers={"Accept-Language": "sq"})
    assert '<html lang="it">' in page.text  # the choice wins over the header


async def test_vendored_leaflet_is_served_locally(console: httpx.AsyncClient):
    script = await console.get("/static/vendor/leaflet/leaflet.js")
    assert script.status_code == 200
    assert "Leaflet" in script.text[:2000]
    assert (await console.get("/static/vendor/leaflet/leaflet.css")).status_code == 200
    assert (await console.get("/static/console.css")).status_code == 200


async def test_health_and_metrics(console: httpx.AsyncClient):
    assert (await console.get("/healthz")).json() == {"status": "ok"}
    ready = await console.get("/readyz")
    # members answers; alerts and dispatch are not running in this test
    assert ready.status_code == 503
    assert ready.json()["checks"]["members"] == "ok"
    assert (await console.get("/metrics")).status_code == 200


# --- the pure parts -------------------------------------------------------------------


def test_accept_language_negotiation():
    assert negotiate_language("fr-CA,fr;q=0.9,en;q=0.8") == "fr"
    assert negotiate_language("de-DE,it;q=0.5") == "it"
    assert negotiate_language("en;q=0.1,sq;q=0.9") == "sq"
    assert negotiate_language("de, es") == "en"
    assert negotiate_language("fr;q=0, it") == "it"
    assert negotiate_language("") == "en"
    assert preferred_languages("a;q=0.2, b, c;q=0.9") == ["b", "c", "a"]


@given(st.text(max_size=200))
def test_any_accept_language_gives_a_console_language(header: str):
    assert negotiate_language(header) in pages.LANGUAGES


@given(st.text(max_size=100))
def test_next_is_always_a_local_path(value: str):
    target = safe_next(value)
    assert target.startswith("/")
    assert not target.startswith(("//", "/\\"))


def test_field_errors_name_the_field():
    detail = [
        {"loc": ["body", "area", "radius_m"], "msg": "Input should be greater than 99"},
        {"loc": ["body", "area"], "msg": "Value error, invalid polygon: Self-intersection"},
        {"loc": ["body", "members_needed"], "msg": "too small"},
    ]
    assert field_errors(detail) == {
        "area.radius_m": "Input should be greater than 99",
        "area": "invalid polygon: Self-intersection",
        "members_needed": "too small",
    }
    assert field_errors("no such emergency") == {"": "no such emergency"}


def test_distances_read_like_people_say_them():
    assert pages.format_distance(0) == "0 m"
    assert pages.format_distance(247) == "250 m"
    assert pages.format_distance(1340) == "1.3 km"
    assert pages.format_distance(23_400) == "23 km"
    assert pages.format_distance(None) == "—"
