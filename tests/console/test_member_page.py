"""A member's personal page on a phone (issue 11, self-service): texted LIDHJE (LINK in
Albanian), they open the link at 360 × 640, in Albanian; the page passes axe; the
browser's geolocation fills their position, they tick the consent box, choose Italian and
quiet hours and save; the members service then holds it; the link is used up."""

from __future__ import annotations

import re
import time

from playwright.sync_api import Browser, expect

from tests.console.conftest import ConsolePlatform, axe_check, screenshot

POSITION = {"latitude": 40.73, "longitude": 19.56}


def test_member_sets_availability_and_location_on_the_phone(
    platform: ConsolePlatform, browser: Browser
) -> None:
    api = platform.api
    api.section("AL")
    coordinator = api.bearer(
        api.account("coord.memberpage@console-tests.example.org", "coordinator", ["AL"])
    )
    member = api.member(coordinator, north_m=300.0)  # Albanian by the section
    api.wait_indexed([member])
    said = api.sms_reply(member.phone, "LIDHJE")
    found = re.search(r"https?://\S+/me/[A-Za-z0-9_-]+", said)
    assert found, said

    context = browser.new_context(
        viewport={"width": 360, "height": 640},
        locale="sq-AL",
        geolocation=POSITION,
        permissions=["geolocation"],
    )
    try:
        page = context.new_page()
        response = page.goto(found.group(0))
        assert response is not None and response.status == 200
        expect(page.locator("html")).to_have_attribute("lang", "sq")
        expect(page.locator("h1")).to_have_text("Disponueshmëria ime")
        axe_check(page)
        screenshot(page, "member-page", full_page=True)

        page.click("#locate")
        expect(page.locator("#lat")).to_have_value("40.73000")
        expect(page.locator("#lon")).to_have_value("19.56000")
        page.check("input[name=location_consent]")
        page.select_option("#language", "it")
        page.fill("#quiet_start", "22:00")
        page.fill("#quiet_end", "07:00")
        with page.expect_navigation():
            page.click("button.save")
        expect(page.locator("[role=status]")).to_contain_text("Salvato")

        deadline = time.monotonic() + 30
        while True:
            seen = api.members.get(f"/members/{member.id}", headers=coordinator).json()
            if seen["language"] == "it" or time.monotonic() > deadline:
                break
            time.sleep(0.2)
        assert seen["language"] == "it", seen
        assert seen["quiet_hours"] == {"start": "22:00:00", "end": "07:00:00"}
        assert seen["location"]["live"]["lat"] == 40.73
        assert seen["location"]["live"]["lon"] == 19.56

        again = page.goto(found.group(0))
        assert again is not None and again.status == 410
        expect(page.locator("[role=alert]")).to_be_visible()
    finally:
        context.close()
