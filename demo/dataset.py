"""The demo's data set: sections, members and staff, generated without any I/O.

Deterministic: the same size gives the same members with the same phone numbers, so a
second run can tell what is there already (members are matched by phone) and adds only
what is missing. Expiry dates and quiet hours are relative to `today`, so the mix of
expired and soon-expiring qualifications looks the same whichever day the demo runs.

Phone numbers: France reserves 06 39 98 xx xx for fiction, but libphonenumber (and so the
members API) rejects that range as unassigned, as it does the UK's 07700 900xxx; Italy and
Albania publish no fiction range. So every number here is a syntactically valid mobile
number in one block per country (+33 6 99…, +39 347 9…, +355 69 9…), arbitrary, not known
to belong to anyone. The local stack sends SMS to its log (console provider), never to a
phone; never run the demo against a stack wired to a real SMS account.
"""

from __future__ import annotations

import csv
import io
import math
import random
from dataclasses import dataclass
from datetime import date, timedelta

#: the seed of the whole data set (changing it changes every name and number)
SEED = 20261130


@dataclass(frozen=True)
class Section:
    code: str
    name: str
    country: str
    timezone: str
    language: str


SECTIONS = (
    Section("FR", "Protection civile — France", "FR", "Europe/Paris", "fr"),
    Section("IT", "Protezione civile — Italia", "IT", "Europe/Rome", "it"),
    Section("AL", "Mbrojtja civile — Shqipëri", "AL", "Europe/Tirane", "sq"),
)


@dataclass(frozen=True)
class Place:
    """Where some of the members live: a centre and how far they spread (metres)."""

    name: str
    section: str
    lat: float
    lon: float
    spread_m: float
    share: float


PLACES = (
    Place("Paris", "FR", 48.8566, 2.3522, 6000, 0.25),
    Place("Rome", "IT", 41.9028, 12.4964, 6000, 0.25),
    Place("Tirana", "AL", 41.3275, 19.8187, 4000, 0.25),
    Place("Fier", "AL", 40.7239, 19.5561, 2500, 0.25),
)
FIER = PLACES[3]

FIRST_NAMES = {
    "FR": ("Camille", "Louis", "Léa", "Hugo", "Chloé", "Jules", "Manon", "Lucas", "Inès",
           "Arthur", "Zoé", "Gabriel", "Sarah", "Nathan", "Julie", "Théo"),
    "IT": ("Giulia", "Marco", "Sofia", "Luca", "Chiara", "Matteo", "Francesca", "Andrea",
           "Martina", "Davide", "Elena", "Alessandro", "Sara", "Lorenzo", "Anna", "Paolo"),
    "AL": ("Arta", "Besnik", "Elira", "Dritan", "Ilir", "Fatos", "Gentiana", "Erion", "Blerta",
           "Arben", "Jonida", "Klodian", "Mirela", "Sokol", "Anisa", "Ledio"),
}  # fmt: skip
LAST_NAMES = {
    "FR": ("Martin", "Bernard", "Durand", "Petit", "Moreau", "Laurent", "Garnier", "Faure",
           "Rousseau", "Blanc", "Guérin", "Muller", "Henry", "Roussel", "Perrin", "Morel"),
    "IT": ("Rossi", "Russo", "Ferrari", "Esposito", "Bianchi", "Romano", "Colombo", "Ricci",
           "Marino", "Greco", "Bruno", "Gallo", "Conti", "De Luca", "Costa", "Giordano"),
    "AL": ("Hoxha", "Krasniqi", "Leka", "Gjoka", "Berisha", "Dema", "Shehu", "Kola", "Basha",
           "Çela", "Marku", "Prifti", "Dervishi", "Lami", "Meta", "Zeneli"),
}  # fmt: skip
#: a block of valid mobile numbers per country (see the module's note), 6 digits follow
PHONE_BLOCKS = {"FR": "+33699", "IT": "+393479", "AL": "+355699"}

#: qualification code -> share of members holding it (codes from GET /qualifications)
QUALIFICATION_SHARES = {
    "FIRST_AID": 0.70,
    "CPR": 0.40,
    "DRIVER": 0.25,
    "ICS_100": 0.20,
    "SAR": 0.15,
    "ICS_200": 0.10,
    "SCHOOL_SAFETY": 0.08,
}
EXPIRED_SHARE = 0.08
EXPIRING_SOON_SHARE = 0.05
SUSPENDED_SHARE = 0.04
UNAVAILABLE_SHARE = 0.08
#: night-time quiet hours, and some day-time ones (at work), so some are quiet whenever
NIGHT_QUIET_SHARE = 0.08
DAY_QUIET_SHARE = 0.06
NO_CONSENT_SHARE = 0.04
ENGLISH_SHARE = 0.05

CSV_COLUMNS = (
    "section", "full_name", "phone", "email", "language", "qualifications", "lat", "lon",
    "availability", "quiet_hours", "consent_alerts",
)  # fmt: skip


@dataclass(frozen=True)
class DemoMember:
    index: int
    place: str
    section: str
    full_name: str
    phone: str
    email: str
    language: str
    #: (code, expiry date)
    qualifications: tuple[tuple[str, date], ...]
    lat: float
    lon: float
    available: bool
    quiet_hours: str
    consent: bool
    #: suspended after the import (the CSV has no status column)
    suspended: bool

    def csv_row(self) -> dict[str, str]:
        return {
            "section": self.section,
            "full_name": self.full_name,
            "phone": self.phone,
            "email": self.email,
            "language": self.language,
            "qualifications": ";".join(f"{c}:{d.isoformat()}" for c, d in self.qualifications),
            "lat": f"{self.lat:.6f}",
            "lon": f"{self.lon:.6f}",
            "availability": "available" if self.available else "unavailable",
            "quiet_hours": self.quiet_hours,
            "consent_alerts": "yes" if self.consent else "no",
        }


def place_of(index: int, total: int) -> Place:
    """Places take consecutive index ranges in proportion to their share."""
    edge = 0.0
    for place in PLACES:
        edge += place.share * total
        if index < round(edge):
            return place
    return PLACES[-1]


def offset(lat: float, lon: float, north_m: float, east_m: float) -> tuple[float, float]:
    return (
        lat + north_m / 111_195.0,
        lon + east_m / (111_195.0 * math.cos(math.radians(lat))),
    )


def member(index: int, total: int, today: date) -> DemoMember:
    """The `index`-th member of a data set of `total`: the same every time."""
    place = place_of(index, total)
    rng = random.Random(f"{SEED}:{index}")
    section = place.section
    first = rng.choice(FIRST_NAMES[section])
    last = rng.choice(LAST_NAMES[section])
    lat, lon = offset(
        place.lat, place.lon, rng.gauss(0, place.spread_m), rng.gauss(0, place.spread_m)
    )
    qualifications: list[tuple[str, date]] = []
    for code, share in QUALIFICATION_SHARES.items():
        if rng.random() >= share:
            continue
        roll = rng.random()
        if roll < EXPIRED_SHARE:
            expires = today - timedelta(days=rng.randint(10, 700))
        elif roll < EXPIRED_SHARE + EXPIRING_SOON_SHARE:
            expires = today + timedelta(days=rng.randint(3, 30))
        else:
            expires = today + timedelta(days=rng.randint(60, 1100))
        qualifications.append((code, expires))
    quiet = rng.random()
    if quiet < NIGHT_QUIET_SHARE:
        quiet_hours = "22:00-07:00"
    elif quiet < NIGHT_QUIET_SHARE + DAY_QUIET_SHARE:
        quiet_hours = "09:00-17:30"
    else:
        quiet_hours = ""
    language = "en" if rng.random() < ENGLISH_SHARE else _language(section)
    slug = f"{first}.{last}".lower().replace(" ", "").replace("é", "e").replace("ç", "c")
    return DemoMember(
        index=index,
        place=place.name,
        section=section,
        full_name=f"{first} {last}",
        phone=phone(section, index),
        email=f"{slug}.{index}@example.org",
        language=language,
        qualifications=tuple(qualifications),
        lat=round(lat, 6),
        lon=round(lon, 6),
        available=rng.random() >= UNAVAILABLE_SHARE,
        quiet_hours=quiet_hours,
        consent=rng.random() >= NO_CONSENT_SHARE,
        suspended=rng.random() < SUSPENDED_SHARE,
    )


def _language(section: str) -> str:
    return next(s.language for s in SECTIONS if s.code == section)


def phone(section: str, index: int) -> str:
    if not 0 <= index < 1_000_000:
        raise ValueError("at most a million demo members")
    return f"{PHONE_BLOCKS[section]}{index:06d}"


def members(total: int, today: date) -> list[DemoMember]:
    return [member(i, total, today) for i in range(total)]


def to_csv(rows: list[DemoMember]) -> str:
    """The members API's import format (header row, the columns it documents)."""
    out = io.StringIO()
    writer = csv.DictWriter(out, fieldnames=CSV_COLUMNS, lineterminator="\n")
    writer.writeheader()
    for row in rows:
        writer.writerow(row.csv_row())
    return out.getvalue()


def members_needed(total: int) -> int:
    """The drill asks for a number in proportion to the data set (20 for 3,000)."""
    return max(3, round(total / 150))
