"""The safety loop on the console's board, in the browser, against the services as real
processes (issue 11): members accept and report on scene by signed SMS, a coordinator
sets another on scene with the row's button, starts a roll call and sees who has not
confirmed (then, after the deadline, who is missing), releases everyone on scene at
once; a member who does not report home safe is flagged overdue without a reload; the
channel of each member's last word is on the row. The page passes axe-core, and the
safety loop's words are in the coordinator's language."""

from __future__ import annotations

from collections.abc import Callable

import pytest
from playwright.sync_api import Page, expect

from services.console.authority import summary_view
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
    return {
        "dispatch": {
            "DISPATCH_ROLL_CALL_MISSING_AFTER_S": "12",
            "DISPATCH_OVERDUE_AFTER_S": "8",
        }
    }


def test_roll_call_release_and_overdue_on_the_live_board(
    platform: ConsolePlatform, page: Page, new_page: Callable[..., Page]
) -> None:
    api = platform.api
    api.section("AL")
    email = api.account("safety.coordinator@example.org", "coordinator", ["AL"])
    coordinator = api.bearer(email)
    texting, by_button, waiting = (api.member(coordinator, north_m=d) for d in (0, 200, 400))
    api.wait_indexed([texting, by_button, waiting])
    emergency = api.declare(coordinator, title="Landslide above Fier", members_needed=3)
    emergency_id = emergency["id"]
    for member, eta in ((texting, 5), (by_button, 10), (waiting, 15)):
        platform.eventually(lambda m=member: platform.sms_to(m.phone), bool, "the alert SMS")
        api.sms_reply(member.phone, f"YES {eta}")
    api.sms_reply(texting.phone, "ARRIVED")

    sign_in(page, platform, email, STAFF_PASSWORD)
    page.goto(f"{platform.console_url}/emergencies/{emergency_id}")
    expect(page.locator("#connection")).to_have_text("Live", timeout=WAIT_MS)
    row = {m.id: page.locator(f"#rows tr[data-member='{m.id}']") for m in (texting, by_button,
                                                                             waiting)}  # fmt: skip
    expect(row[texting.id].locator("[data-status]")).to_have_attribute(
        "data-status", "on_scene", timeout=WAIT_MS
    )
    expect(row[texting.id]).to_contain_text("SMS")
    expect(row[waiting.id].locator("[data-status]")).to_have_attribute(
        "data-status", "accepted", timeout=WAIT_MS
    )
    expect(page.locator("#c-filled")).to_have_text("3")

    # the row's button: on scene, set by the coordinator (the page reloads with the row)
    with page.expect_navigation():
        row[by_button.id].get_by_role("button", name="On scene").click()
    expect(row[by_button.id].locator("[data-status]")).to_have_attribute(
        "data-status", "on_scene", timeout=WAIT_MS
    )
    expect(row[by_button.id]).to_contain_text("set by a coordinator")
    expect(page.locator("#c-on_scene")).to_have_text("2")

    # roll call: both on scene are asked; the texting member replies OK, the other not.
    # A second coordinator's board, open meanwhile, shows it without a reload.
    other = new_page()
    sign_in(other, platform, email, STAFF_PASSWORD)
    other.goto(f"{platform.console_url}/emergencies/{emergency_id}")
    expect(other.locator("#connection")).to_have_text("Live", timeout=WAIT_MS)
    expect(other.locator("#rc-none")).to_be_visible()
    other.evaluate("window.__sameDocument = true")
    texted = len(platform.sms_to(texting.phone))
    with page.expect_navigation():
        page.click("#roll-call")
    expect(page.locator("#rc-unconfirmed")).to_have_text("2")
    expect(other.locator("#rc-unconfirmed")).to_have_text("2", timeout=WAIT_MS)
    expect(other.locator("#rc-started")).to_contain_text("Started at")
    expect(other.locator("#rc-none")).to_be_hidden()
    assert other.evaluate("window.__sameDocument === true"), "the other board reloaded"
    other.close()
    page.evaluate("window.__sameDocument = true")
    platform.eventually(lambda: platform.sms_to(texting.phone)[texted:], bool, "the roll-call SMS")
    api.sms_reply(texting.phone, "OK")
    expect(page.locator("#rc-confirmed")).to_have_text("1", timeout=WAIT_MS)
    unconfirmed = page.locator("#rc-list li")
    expect(unconfirmed).to_have_count(1)
    expect(unconfirmed).to_have_attribute("data-member", by_button.id)
    expect(unconfirmed).to_have_class("rc-waiting")
    # the deadline passes with no event at all: the page itself marks them missing
    expect(unconfirmed).to_have_class("rc-missing", timeout=WAIT_MS)
    expect(unconfirmed).to_contain_text("missing")
    assert page.evaluate("window.__sameDocument === true"), "the board reloaded"
    axe_check(page)
    screenshot(page, "board-safety-loop", full_page=True)

    # release everyone on scene; one texts SAFE, the other becomes overdue, live
    with page.expect_navigation():
        page.click("#release-all")
    expect(page.locator("#c-released")).to_have_text("2", timeout=WAIT_MS)
    page.evaluate("window.__sameDocument = true")
    api.sms_reply(texting.phone, "SAFE")
    expect(row[texting.id].locator("[data-status]")).to_have_attribute(
        "data-status", "home_safe", timeout=WAIT_MS
    )
    expect(row[by_button.id].locator(".overdue-flag")).to_be_visible(timeout=WAIT_MS)
    expect(page.locator("#c-overdue")).to_have_text("1")
    expect(row[texting.id].locator(".overdue-flag")).to_have_count(0)
    assert page.evaluate("window.__sameDocument === true"), "the board reloaded"
    # the overdue member's row still offers the last step
    expect(row[by_button.id].get_by_role("button", name="Home safe")).to_be_visible()
    axe_check(page)

    audit = api.dispatch.get(f"/emergencies/{emergency_id}/audit", headers=coordinator)
    actions = [a["action"] for a in audit.json()]
    for action in ("responder_status_set", "roll_call_started", "released_all",
                   "responder_overdue"):  # fmt: skip
        assert action in actions, actions


def test_the_safety_loop_speaks_the_coordinators_language(
    platform: ConsolePlatform, new_page: Callable[..., Page]
) -> None:
    api = platform.api
    api.section("AL")
    email = api.account("safety.fr@example.org", "coordinator", ["AL"])
    coordinator = api.bearer(email)
    emergency = api.declare(coordinator, title="Exercice", members_needed=1)
    for locale, words in (
        ("fr-FR", ("Appel", "Libérer tous ceux sur place", "Dernier contact")),
        ("it-IT", ("Appello", "Congeda tutti quelli sul posto", "Ultimo contatto")),
        ("sq-AL", ("Apeli", "Liro të gjithë ata në vend", "Kontakti i fundit")),
    ):
        page = new_page(locale=locale)
        sign_in(page, platform, email, STAFF_PASSWORD)
        page.goto(f"{platform.console_url}/emergencies/{emergency['id']}")
        for word in words:
            expect(page.locator("main")).to_contain_text(word)
        page.close()


def test_the_authority_counts_everyone_on_the_loop_as_coming() -> None:
    view = summary_view(
        {
            "needed": 4,
            "counts": {"accepted": 1, "en_route": 1, "on_scene": 1, "released": 1,
                       "home_safe": 1, "declined": 2},
            "by_qualification": {"SAR": {"accepted": 1, "on_scene": 2, "declined": 3}},
        }
    )  # fmt: skip
    assert view["accepted"] == 5
    assert view["by_qualification"] == {"SAR": 3}
    assert [view["counts"][s] for s in ("en_route", "on_scene", "released", "home_safe")] == [
        1, 1, 1, 1,
    ]  # fmt: skip
    # a summary published before the safety loop named on_scene `arrived`
    old = summary_view({"needed": 2, "counts": {"accepted": 1, "arrived": 1}})
    assert (old["accepted"], old["counts"]["on_scene"]) == (2, 1)
