"""What a ladder call says, per language, and the TwiML that says it: pure, no I/O.

A call is a small menu: the alert (title, distance, what is needed), "press 1 if you
are coming, 2 if not"; after 1, "how many minutes, then #". A drill's call (drill_calls.py)
is one prompt: "a test, not an emergency; press 1 if you received this". Each prompt is played twice
(it repeats once) before the call ends without an answer. Digits that mean nothing get
"sorry, I did not understand" and the same prompt again.

Languages: `<Say>` with the provider's voice where Twilio documents one (English,
French, Italian, German). Twilio has no Albanian voice (PITFALLS, "Browsers, voice"), so
Albanian is `<Play>`ed: a WAV alerts renders with espeak-ng (speech.py) and serves at an
unguessable per-call URL. Without espeak-ng the call speaks English with `<Say>`.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass, replace
from typing import Any, Literal

from babel.numbers import format_decimal
from twilio.twiml.voice_response import VoiceResponse

from services.alerts.messages import language_of

#: (the `language` of `<Say>`, the voice) where Twilio has a voice for the language
SAY_VOICES: dict[str, tuple[str, str]] = {
    "en": ("en-GB", "Polly.Amy"),
    "fr": ("fr-FR", "Polly.Celine"),
    "it": ("it-IT", "Polly.Carla"),
    "de": ("de-DE", "Polly.Vicki"),
}
#: the espeak-ng voice of each language alerts speaks itself
ESPEAK_VOICES: dict[str, str] = {"sq": "sq", "en": "en", "fr": "fr", "it": "it", "de": "de"}

#: the most minutes a member may key in (the answer event's bound is a day)
MAX_ETA_MINUTES = 24 * 60
#: how many times a prompt is played before the call gives up
PROMPT_TIMES = 2

Part = Literal[
    "alert",
    "minutes",
    "not_understood",
    "accepted",
    "standby",
    "declined",
    "closed",
    "not_needed",
    "answered",
    "goodbye",
    "drill_test",
    "drill_thanks",
]
PARTS: tuple[Part, ...] = (
    "alert",
    "minutes",
    "not_understood",
    "accepted",
    "standby",
    "declined",
    "closed",
    "not_needed",
    "answered",
    "goodbye",
    "drill_test",
    "drill_thanks",
)

_LINES: dict[str, dict[str, str]] = {
    "en": {
        "alert": "Muster alert.{drill} {title}. {km} kilometres from you. Needed: {needs}. "
        "Press 1 if you are coming. Press 2 if you are not.",
        "drill": " This is a drill.",
        "people": "{n} people",
        "minutes": "In how many minutes can you be there? Key in the minutes, then the hash key.",
        "not_understood": "Sorry, I did not understand.",
        "accepted": "Thank you, you are expected{eta}. Goodbye.",
        "eta": " in {m} minutes",
        "standby": "Thank you. Enough members are on the way: you are on standby. Goodbye.",
        "declined": "Thank you for answering. Goodbye.",
        "closed": "This emergency is over. Thank you. Goodbye.",
        "not_needed": "Enough members are on the way: you are not needed. Thank you. Goodbye.",
        "answered": "Your answer is recorded already. Thank you. Goodbye.",
        "goodbye": "No answer was recorded. You can still answer the text message. Goodbye.",
        "drill_test": "This is a Muster test, a drill, not an emergency. "
        "Press 1 if you received this.",
        "drill_thanks": "Thank you, your answer is recorded. Goodbye.",
    },
    "fr": {
        "alert": "Alerte Muster.{drill} {title}. À {km} kilomètres de vous. Besoin : {needs}. "
        "Appuyez sur 1 si vous venez. Appuyez sur 2 si vous ne venez pas.",
        "drill": " Ceci est un exercice.",
        "people": "{n} personnes",
        "minutes": "Dans combien de minutes pouvez-vous être sur place ? "
        "Tapez les minutes, puis la touche dièse.",
        "not_understood": "Désolé, je n'ai pas compris.",
        "accepted": "Merci, vous êtes attendu{eta}. Au revoir.",
        "eta": " dans {m} minutes",
        "standby": "Merci. Assez de membres sont en route : vous êtes en réserve. Au revoir.",
        "declined": "Merci de votre réponse. Au revoir.",
        "closed": "Cette urgence est terminée. Merci. Au revoir.",
        "not_needed": "Assez de membres sont en route : on n'a plus besoin de vous. Merci. "
        "Au revoir.",
        "answered": "Votre réponse est déjà enregistrée. Merci. Au revoir.",
        "goodbye": "Aucune réponse enregistrée. Vous pouvez encore répondre au SMS. Au revoir.",
        "drill_test": "Ceci est un test de Muster, un exercice, pas une urgence. "
        "Appuyez sur 1 si vous avez reçu cet appel.",
        "drill_thanks": "Merci, votre réponse est enregistrée. Au revoir.",
    },
    "it": {
        "alert": "Allerta Muster.{drill} {title}. A {km} chilometri da te. Servono: {needs}. "
        "Premi 1 se vieni. Premi 2 se non vieni.",
        "drill": " Questa è un'esercitazione.",
        "people": "{n} persone",
        "minutes": "Tra quanti minuti puoi essere sul posto? "
        "Digita i minuti, poi il tasto cancelletto.",
        "not_understood": "Scusa, non ho capito.",
        "accepted": "Grazie, sei atteso{eta}. Arrivederci.",
        "eta": " tra {m} minuti",
        "standby": "Grazie. Abbastanza membri sono in arrivo: sei di riserva. Arrivederci.",
        "declined": "Grazie della risposta. Arrivederci.",
        "closed": "Questa emergenza è chiusa. Grazie. Arrivederci.",
        "not_needed": "Abbastanza membri sono in arrivo: non servi piu. Grazie. Arrivederci.",
        "answered": "La tua risposta è già registrata. Grazie. Arrivederci.",
        "goodbye": "Nessuna risposta registrata. Puoi ancora rispondere all'SMS. Arrivederci.",
        "drill_test": "Questo è un test di Muster, un'esercitazione, non un'emergenza. "
        "Premi 1 se hai ricevuto questa chiamata.",
        "drill_thanks": "Grazie, la tua risposta è registrata. Arrivederci.",
    },
    "sq": {
        "alert": "Alarm nga Muster.{drill} {title}. {km} kilometra larg jush. "
        "Nevojiten: {needs}. Shtypni 1 nëse vini. Shtypni 2 nëse nuk vini.",
        "drill": " Kjo është një stërvitje.",
        "people": "{n} persona",
        "minutes": "Për sa minuta mund të jeni atje? Shtypni minutat, pastaj tastin me kryq.",
        "not_understood": "Më falni, nuk e kuptova.",
        "accepted": "Faleminderit, ju presim{eta}. Mirupafshim.",
        "eta": " për {m} minuta",
        "standby": "Faleminderit. Mjaft anëtarë janë në rrugë: ju jeni në pritje. Mirupafshim.",
        "declined": "Faleminderit për përgjigjen. Mirupafshim.",
        "closed": "Kjo emergjencë ka mbaruar. Faleminderit. Mirupafshim.",
        "not_needed": "Mjaft anëtarë janë në rrugë: nuk nevojiteni më. Faleminderit. Mirupafshim.",
        "answered": "Përgjigjja juaj është regjistruar tashmë. Faleminderit. Mirupafshim.",
        "goodbye": "Asnjë përgjigje nuk u regjistrua. Mund t'i përgjigjeni ende SMS-it. "
        "Mirupafshim.",
        "drill_test": "Ky është një test i Muster, një stërvitje, jo një emergjencë. "
        "Shtypni 1 nëse e morët këtë telefonatë.",
        "drill_thanks": "Faleminderit, përgjigjja juaj u regjistrua. Mirupafshim.",
    },
    "de": {
        "alert": "Muster-Alarm.{drill} {title}. {km} Kilometer von Ihnen entfernt. "
        "Benötigt: {needs}. Drücken Sie 1, wenn Sie kommen. Drücken Sie 2, wenn nicht.",
        "drill": " Dies ist eine Übung.",
        "people": "{n} Personen",
        "minutes": "In wie vielen Minuten können Sie dort sein? "
        "Geben Sie die Minuten ein, dann die Rautetaste.",
        "not_understood": "Entschuldigung, das habe ich nicht verstanden.",
        "accepted": "Danke, Sie werden{eta} erwartet. Auf Wiederhören.",
        "eta": " in {m} Minuten",
        "standby": "Danke. Genug Mitglieder sind unterwegs: Sie sind in Bereitschaft. "
        "Auf Wiederhören.",
        "declined": "Danke für Ihre Antwort. Auf Wiederhören.",
        "closed": "Dieser Einsatz ist beendet. Danke. Auf Wiederhören.",
        "not_needed": "Genug Mitglieder sind unterwegs: Sie werden nicht mehr gebraucht. Danke. "
        "Auf Wiederhören.",
        "answered": "Ihre Antwort ist bereits gespeichert. Danke. Auf Wiederhören.",
        "goodbye": "Keine Antwort gespeichert. Sie können noch auf die SMS antworten. "
        "Auf Wiederhören.",
        "drill_test": "Dies ist ein Test von Muster, eine Übung, kein Notfall. "
        "Drücken Sie 1, wenn Sie diesen Anruf erhalten haben.",
        "drill_thanks": "Danke, Ihre Antwort ist gespeichert. Auf Wiederhören.",
    },
}


@dataclass(frozen=True)
class CallContext:
    """What a call speaks of: the member's language and the alert's facts."""

    language: str
    title: str
    distance_m: int
    members_needed: int
    drill: bool
    #: for `accepted`: the minutes the member keyed in
    eta_minutes: int | None = None


def line(context: CallContext, part: Part) -> str:
    """One prompt's words in the call's language."""
    lang = language_of(context.language)
    texts = _LINES.get(lang, _LINES["en"])
    if part == "alert":
        km = format_decimal(round(context.distance_m / 1000, 1), format="#,##0.#", locale=lang)
        return texts["alert"].format(
            drill=texts["drill"] if context.drill else "",
            title=context.title.strip().rstrip("."),
            km=km,
            needs=texts["people"].format(n=context.members_needed),
        )
    if part == "accepted":
        eta = texts["eta"].format(m=context.eta_minutes) if context.eta_minutes else ""
        return texts["accepted"].format(eta=eta)
    return texts[part]


def part_named(name: str) -> Part | None:
    """A part from an audio URL's last segment (`accepted-15` carries the minutes)."""
    base = name.split("-", 1)[0]
    return base if base in PARTS else None


# --- digits -----------------------------------------------------------------------------


def menu_choice(digits: str | None) -> Literal["coming", "not_coming"] | None:
    """The first menu's key: 1 coming, 2 not; anything else is not understood."""
    if digits == "1":
        return "coming"
    if digits == "2":
        return "not_coming"
    return None


def eta_minutes(digits: str | None) -> int | None:
    """Minutes keyed in before `#` (at most four digits, at most a day); None when they
    do not read as minutes."""
    if digits is None or not re.fullmatch(r"[0-9]{1,4}", digits):
        return None
    minutes = int(digits)
    return minutes if minutes <= MAX_ETA_MINUTES else None


# --- TwiML ------------------------------------------------------------------------------

#: speaks one part into a TwiML node (`<Say>` or `<Play>`); see `speaker`
Speak = Callable[[Any, CallContext, Part], None]


def speaker(audio_url: Callable[[Part, CallContext], str] | None) -> Speak:
    """`<Say>` in the member's language where the provider has a voice for it; else
    `<Play>` of alerts' own rendering (`audio_url`), or, without one, `<Say>` in English."""

    def speak(node: Any, context: CallContext, part: Part) -> None:
        lang = language_of(context.language)
        if lang in SAY_VOICES:
            language, voice = SAY_VOICES[lang]
            node.say(line(context, part), language=language, voice=voice)
        elif audio_url is not None:
            node.play(audio_url(part, context))
        else:
            english = replace(context, language="en")
            language, voice = SAY_VOICES["en"]
            node.say(line(english, part), language=language, voice=voice)

    return speak


def menu(
    context: CallContext,
    speak: Speak,
    *,
    action: str,
    again: bool = False,
    prompt: Part = "alert",
) -> str:
    """The alert and "press 1 or 2" (or, for a drill's call, `drill_test`: "press 1 if
    you received this"), played twice; then goodbye."""
    response = VoiceResponse()
    for time in range(PROMPT_TIMES):
        gather = response.gather(num_digits=1, action=action, method="POST", timeout=6)
        if again and time == 0:
            speak(gather, context, "not_understood")
        speak(gather, context, prompt)
    speak(response, context, "goodbye")
    response.hangup()
    return str(response)


def minutes_prompt(context: CallContext, speak: Speak, *, action: str, again: bool = False) -> str:
    """ "How many minutes, then #", played twice; with no minutes the member is taken at
    their "1": the redirect reaches `action` without Digits (coming, no ETA)."""
    response = VoiceResponse()
    for time in range(PROMPT_TIMES):
        gather = response.gather(finish_on_key="#", action=action, method="POST", timeout=8)
        if again and time == 0:
            speak(gather, context, "not_understood")
        speak(gather, context, "minutes")
    response.redirect(action, method="POST")
    return str(response)


def closing(context: CallContext, speak: Speak, part: Part) -> str:
    """One last sentence, then the call ends."""
    response = VoiceResponse()
    speak(response, context, part)
    response.hangup()
    return str(response)
