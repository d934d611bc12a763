"""The two-person rule in the browser (a large emergency is held; its declarer cannot
approve it, even by forging the form; a second coordinator approves it from the queue
with the same reach preview), and the coordinator pages in French and Albanian."""

from __future__ import annotations

import re
from collections.abc import Callable

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


def test_a_large_emergency_waits_for_a_second_coordinator(
    platform: ConsolePlatform, new_page: Callable[..., Page]
) -> None:
    api = platform.api
    api.section("AL")
    declarer_email = api.account("approval.declarer@example.org", "coordinator", ["AL"])
    second_email = api.account("approval.second@example.org", "coordinator", ["AL"])
    declarer = api.bearer(declarer_email)
    member = api.member(declarer, north_m=1_000)
    api.wait_indexed([member])

    page = new_page()
    sign_in(page, platform, declarer_email, STAFF_PASSWORD)
    page.goto(f"{platform.console_url}/emergencies/new")
    page.fill("#title", "Forest fire above Fier")
    page.fill("#members_needed", "1")
    page.check("input[name=required_qualifications][value=FIRST_AID]")
    # typed coordinates: the way in without the map; 15 km is over the 10 km threshold
    page.fill("#lat", str(FIER[0]))
    page.fill("#lon", str(FIER[1]))
    page.fill("#radius_m", "15000")
    page.click("#review")
    expect(page.locator(".preview-eligible")).to_have_text("1", timeout=WAIT_MS)
    with page.expect_navigation():
        page.click("#confirm-send")
    expect(page.locator("h1")).to_have_text("Waiting for approval")
    expect(page.locator("main")).to_contain_text("Another coordinator of section AL")
    expect(page.locator("main")).to_contain_text("cannot approve your own")

    pending = api.dispatch.get(
        "/emergencies", params={"status": "pending_approval", "section": "AL"}, headers=declarer
    ).json()
    emergency_id = next(e["id"] for e in pending if e["title"] == "Forest fire above Fier")

    page.goto(f"{platform.console_url}/approvals")
    item = page.locator(f"article[aria-labelledby='approval-{emergency_id}']")
    expect(item).to_contain_text("You declared this emergency")
    expect(page.locator(f"#approve-{emergency_id}")).to_have_count(0)
    # the declarer forges the approval form: dispatch refuses, the console says why
    token = page.locator("input[name=csrf_token]").first.input_value()
    forged = page.request.post(
        f"{platform.console_url}/emergencies/{emergency_id}/approve",
        form={"csrf_token": token},
        headers={"Origin": platform.console_url},
    )
    assert forged.ok and "/approvals" in forged.url
    assert "declarer cannot approve" in forged.text()
    status = api.dispatch.get(f"/emergencies/{emergency_id}", headers=declarer).json()["status"]
    assert status == "pending_approval"
    assert not platform.sms_to(member.phone), "nobody is alerted before the approval"

    second = new_page()
    sign_in(second, platform, second_email, STAFF_PASSWORD)
    second.goto(f"{platform.console_url}/approvals")
    item = second.locator(f"article[aria-labelledby='approval-{emergency_id}']")
    expect(item.locator(".preview-eligible")).to_have_text("1")
    screenshot(second, "approvals", full_page=True)
    with second.expect_navigation():
        second.click(f"#approve-{emergency_id}")
    assert second.url.endswith(f"/emergencies/{emergency_id}"), second.url
    expect(second.locator(".meta")).to_contain_text("Active")
    approved = api.dispatch.get(f"/emergencies/{emergency_id}", headers=declarer).json()
    assert approved["status"] == "active"
    assert approved["approved_by"] != approved["created_by"]
    platform.eventually(lambda: platform.sms_to(member.phone), bool, "the member is alerted")


def test_the_pages_in_french_then_albanian(
    platform: ConsolePlatform, new_page: Callable[..., Page]
) -> None:
    api = platform.api
    api.section("AL")
    email = api.account("languages.coordinator@example.org", "coordinator", ["AL"])
    emergency = api.declare(api.bearer(email), title="Inondation, Fier")

    page = new_page(locale="fr-FR")  # Chromium sends Accept-Language: fr-FR
    page.goto(f"{platform.console_url}/login")
    expect(page.locator("h1")).to_have_text("Se connecter")
    expect(page.locator("label[for=password]")).to_have_text("Mot de passe")
    axe_check(page)
    sign_in(page, platform, email, STAFF_PASSWORD)
    expect(page.locator("h1")).to_have_text("Urgences")
    expect(page.locator(".whoami")).to_contain_text("Rôle: coordinateur")

    page.goto(f"{platform.console_url}/emergencies/new")
    expect(page.locator("h1")).to_have_text("Déclarer une urgence")
    expect(page.locator("label[for=members_needed]")).to_have_text("Membres nécessaires")
    expect(page.locator("label[for=radius_m]")).to_have_text("Rayon (mètres)")
    screenshot(page, "declare-fr")

    page.goto(f"{platform.console_url}/emergencies/{emergency['id']}")
    expect(page.locator("#rows-title")).to_have_text("Membres alertés")
    expect(page.locator("#connection")).to_have_text("En direct", timeout=WAIT_MS)
    expect(page.locator("#actions-title")).to_have_text("Actions")
    expect(page.locator("#escalate")).to_have_text("Élargir maintenant")

    # the switcher: Albanian from now on, whatever the browser asks for
    page.select_option("#language-select", "sq")
    with page.expect_navigation():
        page.click("form.language-form button[type=submit]")
    expect(page.locator("html")).to_have_attribute("lang", "sq")
    expect(page.locator("#rows-title")).to_have_text("Anëtarët e lajmëruar")
    expect(page.locator("#escalate")).to_have_text("Zgjero tani")
    expect(page.locator(".site-nav")).to_contain_text("Emergjencat")
    screenshot(page, "board-sq", full_page=True)
    page.goto(f"{platform.console_url}/emergencies/new")
    expect(page.locator("h1")).to_have_text("Shpall një emergjencë")
    expect(page.locator("label[for=members_needed]")).to_have_text("Anëtarë të nevojshëm")
    assert re.search(r"Dil\b", page.locator(".header-forms").inner_text())
