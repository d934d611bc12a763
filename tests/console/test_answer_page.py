"""Issue 8, test 5: a member answers on `/r/{token}` on a phone (360 × 640), with the
keyboard alone, in their own language; the page names the qualification, says how far
it is in a form people read and links to the map; the answer reaches the board."""

from __future__ import annotations

import re

import pytest
from playwright.sync_api import Page, expect

from tests.console.conftest import ConsolePlatform, axe_check, screenshot


@pytest.mark.viewport(360, 640)
def test_member_answers_on_the_phone_page(platform: ConsolePlatform, page: Page) -> None:
    api = platform.api
    api.section("AL")
    coordinator = api.bearer(
        api.account("coord.answer@console-tests.example.org", "coordinator", ["AL"])
    )
    member = api.member(coordinator, north_m=250.0)  # Albanian, first aid, 250 m from the centre
    api.wait_indexed([member])
    emergency = api.declare(coordinator, title="Përmbytje, qendra e Fierit", members_needed=1)
    sms = platform.eventually(
        lambda: platform.sms_to(member.phone), bool, "the member got the alert"
    )
    found = re.search(r"https?://\S+/r/[A-Za-z0-9_-]+", sms[0].body)
    assert found, sms[0].body

    response = page.goto(found.group(0))
    assert response is not None and response.status == 200
    expect(page.locator("html")).to_have_attribute("lang", "sq")
    expect(page.locator("h1")).to_have_text("Përmbytje, qendra e Fierit")
    main = page.locator("main")
    # the qualification by name in Albanian, never the raw code; the distance as people say it
    expect(main).to_contain_text("Ndihma e parë")
    expect(main).not_to_contain_text("FIRST_AID")
    expect(main).to_contain_text("250\u00a0m")
    # where to go: the phone's map app (geo:) and OpenStreetMap, at the area's centre
    expect(page.locator("a[href^='geo:']")).to_have_attribute("href", "geo:40.723900,19.556100")
    expect(page.locator("a[href^='https://www.openstreetmap.org/']")).to_have_attribute(
        "href",
        "https://www.openstreetmap.org/?mlat=40.723900&mlon=19.556100#map=16/40.723900/19.556100",
    )
    # fits a 360 px screen: nothing scrolls sideways
    assert page.evaluate("document.documentElement.scrollWidth") <= 360
    axe_check(page)
    screenshot(page, "answer-page", full_page=True)

    # the keyboard alone: Tab to "coming in 10 minutes" and press Enter
    for _ in range(20):
        page.keyboard.press("Tab")
        if page.evaluate("document.activeElement && document.activeElement.value") == "10":
            break
    else:
        raise AssertionError("Tab never reached the 10-minute button")
    with page.expect_navigation():
        page.keyboard.press("Enter")
    expect(page.locator("[role=status]")).to_contain_text("Pergjigja u regjistrua")

    board = platform.eventually(
        lambda: api.board(coordinator, emergency["id"]),
        lambda b: [(r["status"], r["eta_minutes"]) for r in b["rows"]] == [("accepted", 10)],
        "the board shows the web answer",
    )
    assert board["rows"][0]["member_id"] == member.id
