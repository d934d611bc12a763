"""What a ladder call says and the TwiML it says it with (services/alerts/voice_script.py),
the keys it understands, and the speech alerts renders itself for Albanian (espeak-ng)."""

from __future__ import annotations

import shutil
import xml.etree.ElementTree as ET

import pytest
from hypothesis import given
from hypothesis import strategies as st

from services.alerts.speech import Speech
from services.alerts.voice_script import (
    MAX_ETA_MINUTES,
    PARTS,
    CallContext,
    closing,
    eta_minutes,
    line,
    menu,
    menu_choice,
    minutes_prompt,
    part_named,
    speaker,
)

FLOOD = CallContext(
    language="fr", title="Inondation Fier", distance_m=2500, members_needed=5, drill=False
)


def audio(part: str, context: CallContext) -> str:
    return f"https://alerts.test/voice/T/audio/{part}.wav"


def test_the_menu_asks_twice_in_the_members_language_then_says_goodbye() -> None:
    doc = ET.fromstring(menu(FLOOD, speaker(audio), action="https://alerts.test/voice/T/menu"))
    gathers = doc.findall("Gather")
    assert len(gathers) == 2  # it repeats once
    for gather in gathers:
        assert gather.get("numDigits") == "1"
        assert gather.get("action") == "https://alerts.test/voice/T/menu"
        say = gather.find("Say")
        assert say is not None and say.get("language") == "fr-FR"
        assert "Inondation Fier" in (say.text or "") and "2,5 kilomètres" in (say.text or "")
        assert "Appuyez sur 1" in (say.text or "")
    assert [child.tag for child in doc][-2:] == ["Say", "Hangup"]


def test_after_digits_nobody_understands_the_menu_says_so_first() -> None:
    doc = ET.fromstring(menu(FLOOD, speaker(audio), action="a", again=True))
    first = doc.findall("Gather")[0].findall("Say")
    assert first[0].text == "Désolé, je n'ai pas compris."


def test_albanian_is_played_from_alerts_own_speech_or_said_in_english_without_it() -> None:
    albanian = CallContext("sq", "Permbytje", 1200, 3, drill=True)
    played = ET.fromstring(menu(albanian, speaker(audio), action="a"))
    plays = [p.text for p in played.iter("Play")]
    assert plays[:2] == ["https://alerts.test/voice/T/audio/alert.wav"] * 2
    assert not list(played.iter("Say"))
    assert "Kjo është një stërvitje" in line(albanian, "alert")
    fallback = ET.fromstring(menu(albanian, speaker(None), action="a"))
    says = list(fallback.iter("Say"))
    assert says and all(s.get("language") == "en-GB" for s in says)
    assert "This is a drill" in (says[0].text or "") and "Permbytje" in (says[0].text or "")


def test_the_minutes_prompt_ends_with_hash_and_falls_back_to_coming_without_eta() -> None:
    doc = ET.fromstring(minutes_prompt(FLOOD, speaker(audio), action="https://x/minutes"))
    gathers = doc.findall("Gather")
    assert len(gathers) == 2 and all(g.get("finishOnKey") == "#" for g in gathers)
    redirect = doc.find("Redirect")
    assert redirect is not None and redirect.text == "https://x/minutes"


@pytest.mark.parametrize("language", ["en", "fr", "it", "sq", "de"])
def test_every_part_exists_in_every_language(language: str) -> None:
    context = CallContext(language, "Flood", 800, 2, drill=False, eta_minutes=15)
    for part in PARTS:
        assert line(context, part).strip()
    assert "15" in line(context, "accepted")
    doc = ET.fromstring(closing(context, speaker(audio), "accepted"))
    assert doc[-1].tag == "Hangup"


def test_keys() -> None:
    assert menu_choice("1") == "coming" and menu_choice("2") == "not_coming"
    for other in (None, "", "3", "12", "*", "#"):
        assert menu_choice(other) is None
    assert eta_minutes("15") == 15 and eta_minutes("0") == 0
    assert eta_minutes(str(MAX_ETA_MINUTES)) == MAX_ETA_MINUTES
    for bad in (None, "", "*", "1441", "12345", "1a", " 5"):
        assert eta_minutes(bad) is None
    assert part_named("accepted-15") == "accepted" and part_named("nope") is None


@given(st.text(max_size=12))
def test_eta_minutes_never_raises_and_stays_within_a_day(digits: str) -> None:
    minutes = eta_minutes(digits)
    assert minutes is None or 0 <= minutes <= MAX_ETA_MINUTES
    if minutes is not None:
        assert digits.isascii() and digits.isdigit()


@pytest.mark.skipif(shutil.which("espeak-ng") is None, reason="espeak-ng is not installed")
async def test_espeak_renders_albanian_as_wav() -> None:
    speech = Speech("espeak-ng")
    assert speech.available()
    wav = await speech.wav("sq", line(CallContext("sq", "Zjarr", 900, 2, False), "alert"))
    assert wav[:4] == b"RIFF" and wav[8:12] == b"WAVE" and len(wav) > 10_000


def test_without_espeak_speech_is_unavailable() -> None:
    assert not Speech("no-such-espeak-program").available()
