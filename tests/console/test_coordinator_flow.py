"""A coordinator's emergency from start to end in the browser, against the services as
real processes: sign in, draw a circle on the map, see the reach preview count exactly
the members this test made eligible, declare, watch the board rows arrive; a member
answers by signed SMS and the row turns accepted with its ETA without a reload; closing
sends the stand-down. The declare and board pages pass axe-core."""

from __future__ import annotations

from playwright.sync_api import Page, expect

from tests.console.conftest import (
    FIER,
    STAFF_PASSWORD,
    ConsolePlatform,
    axe_check,
    screenshot,
    sign_in,
)

WAIT_MS = 30_000


def draw_circle(page: Page, drag_px: int) -> None:
    """Click the middle of the map (the circle's centre), then drag the radius handle
    `drag_px` further east, as a coordinator does with a mouse."""
    page.locator("#declare-map").scroll_into_view_if_needed()
    box = page.locator("#declare-map").bounding_box()
    assert box is not None
    page.mouse.click(box["x"] + box["width"] / 2, box["y"] + box["height"] / 2)
    handle = page.locator(".radius-handle")
    expect(handle).to_be_visible()
    spot = handle.bounding_box()
    assert spot is not None
    x, y = spot["x"] + spot["width"] / 2, spot["y"] + spot["height"] / 2
    page.mouse.move(x, y)
    page.mouse.down()
    page.mouse.move(x + drag_px / 2, y, steps=5)
    page.mouse.move(x + drag_px, y, steps=5)
    page.mouse.up()


def test_declare_on_the_map_watch_the_board_and_close(
    platform: ConsolePlatform, page: Page
) -> None:
    api = platform.api
    api.section("AL")
    email = api.account("flow.coordinator@example.org", "coordinator", ["AL"])
    coordinator = api.bearer(email)
    # three eligible members within 400 m of Fier's centre; one too far; one unqualified
    eligible = [api.member(coordinator, north_m=d) for d in (0, 200, 400)]
    far = api.member(coordinator, north_m=40_000)
    unqualified = api.member(coordinator, north_m=100, qualifications=[])
    api.wait_indexed([*eligible, far, unqualified])

    sign_in(page, platform, email, STAFF_PASSWORD)
    expect(page.locator(".whoami")).to_contain_text(email)
    expect(page.locator(".whoami")).to_contain_text("coordinator")
    expect(page.locator(".whoami")).to_contain_text("AL")

    page.goto(f"{platform.console_url}/emergencies/new?centre={FIER[0]},{FIER[1]}")
    expect(page.locator("body[data-declare-ready='1']")).to_be_attached()
    page.fill("#title", "Flooding near the Fier bridge")
    page.fill("#description", "Water over the road; sandbags needed")
    page.check("#drill")
    page.fill("#members_needed", "1")
    page.check("input[name=required_qualifications][value=FIRST_AID]")
    draw_circle(page, drag_px=60)

    radius = int(page.input_value("#radius_m"))
    assert 2_000 < radius < 10_000, radius  # the drag made the 2 km default larger
    lat, lon = float(page.input_value("#lat")), float(page.input_value("#lon"))
    assert abs(lat - FIER[0]) < 0.002 and abs(lon - FIER[1]) < 0.002, (lat, lon)

    expect(page.locator("#pv-eligible")).to_have_text("3", timeout=WAIT_MS)
    expect(page.locator("#pv-outside")).to_have_text("1")
    expect(page.locator("#pv-unqualified")).to_have_text("1")
    axe_check(page)
    screenshot(page, "declare", full_page=True)

    page.click("#review")
    expect(page.locator("h1")).to_have_text("Confirm the declaration")
    expect(page.locator(".preview-eligible")).to_have_text("3")
    with page.expect_navigation():
        page.click("#confirm-send")
    assert "/emergencies/" in page.url and not page.url.endswith("/new"), page.url
    emergency_id = page.url.rstrip("/").rsplit("/", 1)[-1]

    expect(page.locator("#connection")).to_have_text("Live", timeout=WAIT_MS)
    rows = page.locator("#rows tr[data-member]")
    expect(rows).to_have_count(3, timeout=WAIT_MS)
    expect(page.locator("#c-alerted")).to_have_text("3")
    page.evaluate("window.__sameDocument = true")

    member = eligible[1]
    platform.eventually(lambda: platform.sms_to(member.phone), bool, "the alert SMS")
    api.sms_reply(member.phone, "PO 12")

    row = page.locator(f"#rows tr[data-member='{member.id}']")
    expect(row.locator("[data-status]")).to_have_attribute(
        "data-status", "accepted", timeout=WAIT_MS
    )
    expect(row).to_contain_text("accepted")
    expect(row).to_contain_text("12 min")
    expect(page.locator("#c-filled")).to_have_text("1")
    assert page.evaluate("window.__sameDocument === true"), "the board reloaded"
    axe_check(page)
    screenshot(page, "board", full_page=True)

    before = len(platform.sms_to(member.phone))
    page.click("#close-link")
    expect(page.locator("h1")).to_have_text("Close this emergency?")
    with page.expect_navigation():
        page.click("#confirm-action")
    expect(page.locator(".meta")).to_contain_text("Closed")
    stand_down = platform.eventually(
        lambda: platform.sms_to(member.phone)[before:],
        bool,
        "the accepted member got the stand-down",
    )
    assert "Flooding near the Fier bridge" in stand_down[-1].body
    audit = api.dispatch.get(f"/emergencies/{emergency_id}/audit", headers=coordinator)
    assert [a["action"] for a in audit.json()][-1] == "closed"
