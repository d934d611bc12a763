"""Members' SMS commands (issue 11): `AWAY`, `AWAY 3`, `AWAY 25/12`, `BACK`, `STATUS`,
`LINK`, answered in TwiML by the SMS webhook (inbound.py asks here first, before the
reply parser).

Alerts never writes member data: AWAY and BACK become a `MemberSelfServiceRequested`
event in the outbox, in the webhook's transaction (so a replayed MessageSid publishes
nothing twice), which members applies; its new snapshot then reaches this service's
index and selection. The answer says what was asked ("Marked away until 03/12"), the
change itself lands a moment later. STATUS reads the member's snapshot in the index.

The sender is known by their number in the index (`alerts:phones`); an unknown number
gets a reply that says nothing about anyone.
"""

from __future__ import annotations

import hashlib
import secrets
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import redis.asyncio as redis
from sqlalchemy.ext.asyncio import AsyncSession

from services.alerts import member_commands, messages
from services.alerts.index import TargetingIndex
from services.alerts.member_commands import MemberCommand
from services.alerts.models import member_links
from services.alerts.ratelimit import WindowLimit
from services.alerts.settings import Settings
from shared.events.members import MemberChanged, MemberSelfServiceRequested
from shared.observability import get_logger
from shared.outbox import add_event

log = get_logger(__name__)

SOURCE = "muster.alerts"

#: kept in GSM-7 (no accents) like the other SMS texts, so an answer fits one segment
TEXTS: dict[str, dict[str, str]] = {
    "en": {
        "away_open": "Marked away until you reply BACK.",
        "away_until": "Marked away until {date}. Reply BACK when available.",
        "back": "Marked available. Thank you.",
        "status": "MUSTER: {availability}. Quiet hours: {quiet}. {expiring}",
        "available": "available",
        "away_status_until": "away until {date}",
        "away_status_open": "away until BACK",
        "no_quiet": "none",
        "expiring": "Expiring: {list}.",
        "none_expiring": "No qualification expires within {days} days.",
        "link": "Your Muster page (valid {minutes} min, once): {link}",
        "unknown_sender": "MUSTER: this number is not registered. Ask your section.",
        "away_days": "AWAY takes 1 to 366 days: AWAY 3. Or a date: AWAY 25/12. Or AWAY alone.",
        "away_date": "No such date. Write day/month: AWAY 25/12. Or days: AWAY 3.",
        "away_form": "Write AWAY, AWAY 3 (days) or AWAY 25/12 (a date). BACK when available.",
        "too_many": "MUSTER: too many messages. Try again in a minute.",
        "expiry": "MUSTER: your qualification {name} expires on {date}. "
        "Please renew it with your section.",
    },
    "fr": {
        "away_open": "Absence notee jusqu'a ce que vous repondiez RETOUR.",
        "away_until": "Absence notee jusqu'au {date}. Repondez RETOUR si disponible.",
        "back": "Vous etes disponible. Merci.",
        "status": "MUSTER: {availability}. Heures calmes: {quiet}. {expiring}",
        "available": "disponible",
        "away_status_until": "absent jusqu'au {date}",
        "away_status_open": "absent jusqu'a RETOUR",
        "no_quiet": "aucune",
        "expiring": "Expirent: {list}.",
        "none_expiring": "Aucune qualification n'expire dans les {days} jours.",
        "link": "Votre page Muster (valide {minutes} min, une fois): {link}",
        "unknown_sender": "MUSTER: ce numero n'est pas enregistre. Demandez a votre section.",
        "away_days": "ABSENT prend 1 a 366 jours: ABSENT 3. Ou une date: ABSENT 25/12.",
        "away_date": "Date inexistante. Ecrivez jour/mois: ABSENT 25/12. Ou des jours: ABSENT 3.",
        "away_form": "Ecrivez ABSENT, ABSENT 3 (jours) ou ABSENT 25/12 (date). RETOUR ensuite.",
        "too_many": "MUSTER: trop de messages. Reessayez dans une minute.",
        "expiry": "MUSTER: votre qualification {name} expire le {date}. "
        "Renouvelez-la aupres de votre section.",
    },
    "it": {
        "away_open": "Assenza registrata finche non rispondi RIENTRO.",
        "away_until": "Assenza registrata fino al {date}. Rispondi RIENTRO se disponibile.",
        "back": "Sei disponibile. Grazie.",
        "status": "MUSTER: {availability}. Ore di quiete: {quiet}. {expiring}",
        "available": "disponibile",
        "away_status_until": "assente fino al {date}",
        "away_status_open": "assente fino a RIENTRO",
        "no_quiet": "nessuna",
        "expiring": "In scadenza: {list}.",
        "none_expiring": "Nessuna qualifica scade entro {days} giorni.",
        "link": "La tua pagina Muster (valida {minutes} min, una volta): {link}",
        "unknown_sender": "MUSTER: questo numero non e registrato. Chiedi alla tua sezione.",
        "away_days": "ASSENTE va da 1 a 366 giorni: ASSENTE 3. O una data: ASSENTE 25/12.",
        "away_date": "Data inesistente. Scrivi giorno/mese: ASSENTE 25/12. O giorni: ASSENTE 3.",
        "away_form": "Scrivi ASSENTE, ASSENTE 3 (giorni) o ASSENTE 25/12 (data). Poi RIENTRO.",
        "too_many": "MUSTER: troppi messaggi. Riprova tra un minuto.",
        "expiry": "MUSTER: la tua qualifica {name} scade il {date}. Rinnovala con la tua sezione.",
    },
    "sq": {
        "away_open": "U shenuat larg derisa te pergjigjeni KTHIM.",
        "away_until": "U shenuat larg deri me {date}. Pergjigju KTHIM kur te jeni gati.",
        "back": "U shenuat i disponueshem. Faleminderit.",
        "status": "MUSTER: {availability}. Oret e qeta: {quiet}. {expiring}",
        "available": "i disponueshem",
        "away_status_until": "larg deri me {date}",
        "away_status_open": "larg deri ne KTHIM",
        "no_quiet": "asnje",
        "expiring": "Skadojne: {list}.",
        "none_expiring": "Asnje kualifikim nuk skadon brenda {days} diteve.",
        "link": "Faqja juaj Muster (e vlefshme {minutes} min, nje here): {link}",
        "unknown_sender": "MUSTER: ky numer nuk eshte i regjistruar. Pyesni seksionin tuaj.",
        "away_days": "LARG merr 1 deri 366 dite: LARG 3. Ose nje date: LARG 25/12.",
        "away_date": "Kjo date nuk ekziston. Shkruani dite/muaj: LARG 25/12. Ose dite: LARG 3.",
        "away_form": "Shkruani LARG, LARG 3 (dite) ose LARG 25/12 (date). Pastaj KTHIM.",
        "too_many": "MUSTER: shume mesazhe. Provoni pas nje minute.",
        "expiry": "MUSTER: kualifikimi juaj {name} skadon me {date}. "
        "Ju lutem rinovojeni me seksionin tuaj.",
    },
}


def text(language: str | None, which: str, **values: object) -> str:
    """A self-service text in the member's language (English where it has none)."""
    lang = messages.language_of(language)
    return TEXTS.get(lang, TEXTS["en"])[which].format(**values)


def zone_of(member: MemberChanged) -> ZoneInfo:
    try:
        return ZoneInfo(member.timezone)
    except (ZoneInfoNotFoundError, ValueError):
        return ZoneInfo("UTC")


def day_month(moment: datetime | date, zone: ZoneInfo) -> str:
    """`03/12`, as Europeans write a day (in the member's time zone)."""
    day = moment.astimezone(zone).date() if isinstance(moment, datetime) else moment
    return f"{day.day:02d}/{day.month:02d}"


def away_until(command: MemberCommand, *, now: datetime, zone: ZoneInfo) -> datetime | None:
    """When an `AWAY` ends: N days from now, or the start of the named day in the
    member's time zone (available again that morning: a shorter absence risks a needless
    SMS, a longer one a member not called who could have come); None: until BACK."""
    if command.days is not None:
        return now + timedelta(days=command.days)
    if command.until is not None:
        return datetime.combine(command.until, time(0), tzinfo=zone).astimezone(UTC)
    return None


def is_away(member: MemberChanged, now: datetime) -> bool:
    return member.availability == "unavailable" and (
        member.unavailable_until is None or member.unavailable_until > now
    )


def status_text(member: MemberChanged, *, now: datetime, within_days: int) -> str:
    """What Muster knows of the member: availability, quiet hours, and the qualifications
    expiring within `within_days` (by name, in their language). Pure."""
    lang = member.language
    zone = zone_of(member)
    if not is_away(member, now):
        availability = text(lang, "available")
    elif member.unavailable_until is None:
        availability = text(lang, "away_status_open")
    else:
        availability = text(
            lang, "away_status_until", date=day_month(member.unavailable_until, zone)
        )
    quiet = (
        f"{member.quiet_hours.start:%H:%M}-{member.quiet_hours.end:%H:%M}"
        if member.quiet_hours
        else text(lang, "no_quiet")
    )
    today = now.astimezone(zone).date()
    soon = sorted(
        (q.expires_at, q.code)
        for q in member.qualifications
        if q.expires_at is not None and today <= q.expires_at <= today + timedelta(within_days)
    )
    expiring = (
        text(
            lang,
            "expiring",
            list=", ".join(
                f"{messages.qualification_name(code, lang)} {day_month(d, zone)}"
                for d, code in soon
            ),
        )
        if soon
        else text(lang, "none_expiring", days=within_days)
    )
    return text(lang, "status", availability=availability, quiet=quiet, expiring=expiring)


def token_hash(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


@dataclass(frozen=True)
class CommandAnswer:
    outcome: str
    #: the SMS answer
    answer: str
    #: what inbound_messages keeps of it (and answers a replayed MessageSid with): the
    #: answer, but a link's token is never stored in clear
    kept: str


class MemberCommands:
    """Answers SMS commands (inbound.py calls `answer` before the reply parser)."""

    def __init__(
        self, settings: Settings, index: TargetingIndex, client: Callable[[], redis.Redis]
    ) -> None:
        self.settings = settings
        self.index = index
        self.client = client

    async def answer(
        self, session: AsyncSession, phone: str, body: str, now: datetime
    ) -> CommandAnswer | None:
        """The answer when `body` is a command, else None (a reply)."""
        # a first reading decides whether this is a command at all; the member's own
        # date (for AWAY 25/12) is known only once we know who they are
        first = member_commands.parse(body, now.date())
        if first is None:
            return None
        limit = WindowLimit(
            self.client(),
            self.settings.key("rl", "cmd", ""),
            self.settings.member_command_rate_per_min,
        )
        # the number itself never becomes a Redis key
        if not await limit.allow(hashlib.sha256(phone.encode()).hexdigest()[:32]):
            return _plain("too_many", text(first.language, "too_many"))
        member = await self.index.member_by_phone(phone)
        if member is None:
            return _plain("unknown_sender", text(first.language, "unknown_sender"))
        zone = zone_of(member)
        command = member_commands.parse(body, now.astimezone(zone).date()) or first
        lang = member.language
        if command.kind == "invalid":
            assert command.problem is not None
            return _plain("invalid", text(lang, command.problem))
        if command.kind == "status":
            return _plain(
                "status", status_text(member, now=now, within_days=self.settings.expiry_status_days)
            )
        if command.kind == "link":
            token = await create_link(
                session, member, now=now, ttl_s=self.settings.member_link_ttl_s
            )
            base = f"{self.settings.public_base_url.rstrip('/')}/me/"
            minutes = self.settings.member_link_ttl_s // 60
            return CommandAnswer(
                "link",
                text(lang, "link", minutes=minutes, link=base + token),
                text(lang, "link", minutes=minutes, link=base + "[not kept]"),
            )
        if command.kind == "back":
            request = MemberSelfServiceRequested(
                member_id=member.member_id,
                channel="sms",
                availability="available",
                requested_at=now,
            )
            answer = text(lang, "back")
        else:
            until = away_until(command, now=now, zone=zone)
            request = MemberSelfServiceRequested(
                member_id=member.member_id,
                channel="sms",
                availability="unavailable",
                unavailable_until=until,
                requested_at=now,
            )
            answer = (
                text(lang, "away_until", date=day_month(until, zone))
                if until is not None
                else text(lang, "away_open")
            )
        await add_event(session, request, source=SOURCE, correlationid=str(member.member_id))
        log.info("member command", command=command.kind, member_id=str(member.member_id))
        return _plain(command.kind, answer)


def _plain(outcome: str, answer: str) -> CommandAnswer:
    return CommandAnswer(outcome, answer, answer)


async def create_link(
    session: AsyncSession, member: MemberChanged, *, now: datetime, ttl_s: int
) -> str:
    """A new personal-page link for the member; only its token's hash is kept."""
    token = secrets.token_urlsafe(24)
    await session.execute(
        member_links.insert().values(
            token_hash=token_hash(token),
            member_id=member.member_id,
            created_at=now,
            expires_at=now + timedelta(seconds=ttl_s),
        )
    )
    return token
