"""Drills and readiness in the browser (issue 12): a coordinator schedules a drill for
now on the drills page, members answer OK by SMS and by the link, the drill's page shows
the 5/15/60-minute results and names the member whose SMS failed; the page in French; a
bad recurrence comes back on the form naming the field. An authority's readiness page
shows counts only (no name, phone or member id in the page), with small counts as
"< 5". Every page passes axe-core."""

from __future__ import annotations

import re
from collections.abc import Callable

import httpx
import pytest
from playwright.sync_api import Page, expect

from services.alerts import messages
from tests.console.conftest import (
    STAFF_PASSWORD,
    ConsolePlatform,
    axe_check,
    screenshot,
    sign_in,
)

WAIT_MS = 30_000


@pytest.fixture(scope="module")
def service_overrides() -> dict[str, dict[str, str]]:
    return {"alerts": {"ALERTS_DRILL_CHECK_INTERVAL_S": "0.5"}}


def drill_texts(platform: ConsolePlatform, phone: str) -> list[str]:
    return [m.body for m in platform.sms_to(phone) if "MUSTER TEST" in m.body]


def test_a_drill_from_the_console_and_the_readiness_an_authority_sees(
    platform: ConsolePlatform, new_page: Callable[..., Page]
) -> None:
    api = platform.api
    api.section("AL")
    coordinator = api.account("drills.coordinator@example.org", "coordinator", ["AL"])
    authority = api.account("drills.authority@example.org", "authority", ["AL"])
    staff = api.bearer(coordinator)
    people = [api.member(staff, north_m=40_000 + i * 100) for i in range(6)]
    sar = api.member(
        staff,
        north_m=41_000,
        qualifications=[
            {"code": "FIRST_AID", "expires_at": "2030-05-01"},
            {"code": "SAR", "expires_at": "2030-05-01"},
        ],
    )
    unreachable = api.member(staff, north_m=42_000)
    platform.twilio.reject(unreachable.phone, 400)
    everyone = [*people, sar, unreachable]
    api.wait_indexed(everyone)

    page = new_page()
    sign_in(page, platform, coordinator, STAFF_PASSWORD)
    page.goto(f"{platform.console_url}/drills")
    expect(page.locator("h1")).to_have_text("Reachability drills")
    axe_check(page)

    # a custom rule every minute is refused, and the form says which field
    page.select_option("#recurrence", "custom")
    page.fill("#rule", "FREQ=MINUTELY")
    with page.expect_navigation():
        page.click("#schedule")
    expect(page.locator(".form-errors")).to_contain_text("recurrence")
    expect(page.locator(".form-errors")).to_contain_text("DAILY, WEEKLY, MONTHLY or YEARLY")

    # calls to members who have not answered: alerts checks the range, the form names it
    page.select_option("#recurrence", "none")
    page.fill("#rule", "")
    page.fill("#call_after", "500")
    with page.expect_navigation():
        page.click("#schedule")
    expect(page.locator(".form-errors")).to_contain_text("call_unanswered_after_min")

    # now, once, calling who has not answered after 10 minutes
    page.fill("#call_after", "10")
    with page.expect_navigation():
        page.click("#schedule")
    expect(page.locator(".flash-success")).to_contain_text("Drill scheduled.")
    drill_url = page.url
    assert re.search(r"/drills/[0-9a-f-]{36}$", drill_url), drill_url

    platform.eventually(
        lambda: [len(drill_texts(platform, m.phone)) for m in [*people, sar]],
        lambda counts: all(c == 1 for c in counts),
        "every member got the drill SMS",
    )
    # four OKs by SMS, one by the link, two never
    for m in people[:4]:
        thanks = messages.text(m.body["language"], "drill_ok")
        assert api.sms_reply(m.phone, "OK") == thanks
    (body,) = drill_texts(platform, sar.phone)
    token = re.search(r"/d/([A-Za-z0-9_-]+)$", body)
    assert token, body
    answered = httpx.post(f"{platform.alerts.url}/d/{token.group(1)}", data={"answer": "ok"})
    assert answered.status_code == 200

    page.goto(drill_url)
    overall = page.locator("tbody tr").filter(has=page.locator("th", has_text="All")).first
    expect(overall).to_contain_text("8")  # asked
    expect(overall).to_contain_text("5 (62 %)")  # within 5 minutes: 5 of 8
    expect(page.locator("main")).to_contain_text("after 10 minutes")
    expect(page.locator("main")).to_contain_text("Answers by channel: SMS 4, link 1, phone 0.")
    attention = page.locator("section[aria-labelledby='attention-heading']")
    expect(attention).to_contain_text(unreachable.body["full_name"])
    expect(attention).to_contain_text("SMS failed")
    axe_check(page)
    screenshot(page, "drill-results", full_page=True)

    french = new_page(locale="fr-FR")
    sign_in(french, platform, coordinator, STAFF_PASSWORD)
    french.goto(f"{platform.console_url}/drills")
    expect(french.locator("h1")).to_have_text("Exercices de joignabilité")
    expect(french.locator("label[for='call_after']")).to_contain_text(
        "Appeler les membres qui n'ont pas répondu"
    )

    # the authority: counts only
    watcher = new_page()
    sign_in(watcher, platform, authority, STAFF_PASSWORD)
    watcher.goto(f"{platform.console_url}/readiness")
    expect(watcher.locator("h1")).to_have_text("Readiness of your sections")
    figure = watcher.locator("section[aria-labelledby='readiness-AL']")
    expect(figure.locator(".readiness-active")).to_have_text("8")
    expect(figure.locator(".readiness-answered")).to_contain_text("5 / 8")
    sar_row = figure.locator("tbody tr").filter(has=watcher.locator("th", has_text="SAR"))
    expect(sar_row).to_contain_text("< 5")
    html = watcher.content()
    for m in everyone:
        assert m.id not in html and m.phone not in html
        assert m.body["full_name"] not in html
    axe_check(watcher)
    screenshot(watcher, "readiness")
    # the drills pages are not for authorities
    watcher.goto(drill_url)
    expect(watcher.locator("main")).not_to_contain_text(unreachable.body["full_name"])
