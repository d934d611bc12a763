"""Issue 8, test 3 (and test 7's summary page): an authority signs in, sees its sections'
emergencies with counts only, watches the summary change live when a member answers by
signed SMS, manages its webhooks, and never reaches the board, members, names, phones
or member ids."""

from __future__ import annotations

import re

import pytest
from playwright.sync_api import Page, expect

from tests.console.conftest import ConsolePlatform, axe_check, screenshot, sign_in

AUTHORITY = "authority.al@console-tests.example.org"
STAFF_PASSWORD = "console tests staff password"


@pytest.fixture(scope="module")
def service_overrides() -> dict[str, dict[str, str]]:
    # the test's webhook receiver address is on loopback, which the SSRF guard refuses
    return {"dispatch": {"DISPATCH_WEBHOOK_ALLOW_PRIVATE": "true"}}


def test_authority_sees_summaries_live_and_nothing_personal(
    platform: ConsolePlatform, page: Page
) -> None:
    api = platform.api
    for code in ("AL", "IT"):
        api.section(code)
    coordinator = api.bearer(
        api.account("coord.al@console-tests.example.org", "coordinator", ["AL"])
    )
    italian = api.bearer(api.account("coord.it@console-tests.example.org", "coordinator", ["IT"]))
    api.account(AUTHORITY, "authority", ["AL"])
    members = [api.member(coordinator, north_m=100.0 * i) for i in range(3)]
    api.wait_indexed(members)
    emergency = api.declare(coordinator, title="Flooding, Fier centre", members_needed=2)
    elsewhere = api.declare(
        italian,
        section="IT",
        title="Landslide near Rome",
        area={"lat": 41.9, "lon": 12.5, "radius_m": 2000},
    )
    platform.eventually(
        lambda: [bool(platform.sms_to(m.phone)) for m in members],
        all,
        "every member got the alert",
    )

    sign_in(page, platform, AUTHORITY, STAFF_PASSWORD)
    # an authority lands on its summaries: its own section's emergency, not Italy's
    expect(page).to_have_url(re.compile(r"/authority$"))
    expect(page.locator("main")).to_contain_text("Flooding, Fier centre")
    expect(page.locator("main")).not_to_contain_text("Landslide near Rome")
    list_html = page.content()

    page.click(f"a[href='/authority/emergencies/{emergency['id']}']")
    expect(page.locator("h1")).to_contain_text("Flooding, Fier centre")
    accepted = page.locator('#staffing [data-field="accepted"]')
    expect(accepted).to_have_text("0")
    expect(page.locator('#staffing [data-field="needed"]')).to_have_text("2")
    expect(page.locator("#summary-connection")).to_have_text("Updating live", timeout=15_000)
    axe_check(page)
    # a marker that a reload would wipe: the change below must arrive without one
    page.evaluate("window.__sameDocument = true")

    reply = api.sms_reply(members[0].phone, "PO 10")
    assert "10" in reply, reply

    expect(accepted).to_have_text("1", timeout=30_000)
    expect(page.locator('[data-count="accepted"]')).to_have_text("1")
    expect(page.locator('[data-eta="0-10"]')).to_have_text("1")
    assert page.evaluate("window.__sameDocument") is True
    screenshot(page, "authority-summary", full_page=True)

    # nothing personal in either page: no member id, phone or name
    summary_html = page.content()
    for html in (list_html, summary_html):
        for member in members:
            assert member.id not in html
            assert member.phone not in html and member.phone.lstrip("+") not in html
            assert member.body["full_name"] not in html
    # the summary JSON the page polls is counts only too
    polled = page.evaluate(
        "async (url) => await (await fetch(url, {headers: {Accept: 'application/json'}})).text()",
        f"/authority/emergencies/{emergency['id']}/summary.json",
    )
    assert all(m.id not in polled and m.phone not in polled for m in members)
    assert '"accepted":1' in polled.replace(" ", "")

    # the board, the members and another section's summary are out of reach
    for path in (
        f"/emergencies/{emergency['id']}",
        f"/emergencies/{emergency['id']}/stream",
        "/emergencies",
        "/emergencies/new",
        "/members",
        f"/members/{members[0].id}",
        f"/authority/emergencies/{elsewhere['id']}",
    ):
        response = page.goto(f"{platform.console_url}{path}")
        assert response is not None and response.status in (403, 404), (
            path,
            response and response.status,
        )
        body = page.content()
        assert members[0].phone not in body and members[0].body["full_name"] not in body
    # and the APIs refuse the authority's own token as well
    authority = api.bearer(AUTHORITY)
    assert api.dispatch.get(
        f"/emergencies/{emergency['id']}/board", headers=authority
    ).status_code in (403, 404)
    assert api.members.get(f"/members/{members[0].id}", headers=authority).status_code in (403, 404)


def test_authority_manages_its_webhooks(platform: ConsolePlatform, page: Page) -> None:
    api = platform.api
    api.section("AL")
    api.account(AUTHORITY, "authority", ["AL"])
    sign_in(page, platform, AUTHORITY, STAFF_PASSWORD)
    page.goto(f"{platform.console_url}/authority/subscriptions")
    expect(page.locator("h1")).to_have_text("Webhook subscriptions")

    # a bad address: the error next to the field, nothing created
    page.fill("#url", "ftp://not-a-web-address")
    page.click("form[action='/authority/subscriptions'] button[type=submit]")
    expect(page.locator("#url-error")).to_be_visible()
    expect(page.locator("#url")).to_have_attribute("aria-invalid", "true")
    assert api.dispatch.get("/subscriptions", headers=api.bearer(AUTHORITY)).json() == []

    receiver = "http://127.0.0.1:9/muster-summaries"
    page.fill("#url", receiver)
    page.click("form[action='/authority/subscriptions'] button[type=submit]")
    secret = page.locator("#new-secret").input_value()
    assert len(secret) >= 32
    expect(page.locator("table")).to_contain_text(receiver)
    axe_check(page)
    # shown once: the list page never shows it again
    page.goto(f"{platform.console_url}/authority/subscriptions")
    assert secret not in page.content()
    expect(page.locator("table")).to_contain_text(receiver)

    page.click("form[action$='/delete'] button")
    expect(page.locator("main")).to_contain_text("The webhook was deleted.")
    expect(page.locator("main")).not_to_contain_text(receiver)
    assert api.dispatch.get("/subscriptions", headers=api.bearer(AUTHORITY)).json() == []
