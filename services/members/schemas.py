"""Request and response bodies of the members API (validation names the field)."""

from __future__ import annotations

from datetime import date, datetime, time
from typing import Annotated, Any, Literal
from uuid import UUID
from zoneinfo import ZoneInfo, available_timezones

from pydantic import (
    BaseModel,
    ConfigDict,
    EmailStr,
    Field,
    ValidationInfo,
    field_validator,
    model_validator,
)

from services.members.phones import PhoneError, to_e164
from services.members.quiet_hours import QuietHoursError, check_window, parse_clock

#: the languages Muster writes alerts in; anything else is refused with a 422
Language = Literal["en", "fr", "it", "sq", "de", "es"]
LANGUAGES: tuple[str, ...] = ("en", "fr", "it", "sq", "de", "es")
MemberStatus = Literal["active", "suspended", "expelled"]
AvailabilityState = Literal["available", "unavailable"]
Role = Literal["admin", "coordinator", "authority"]

SectionCode = Annotated[str, Field(pattern=r"^[A-Z][A-Z0-9_-]{1,15}$")]
QualificationCode = Annotated[str, Field(pattern=r"^[A-Z][A-Z0-9_]{1,31}$")]
Latitude = Annotated[float, Field(ge=-90, le=90)]
Longitude = Annotated[float, Field(ge=-180, le=180)]


class _In(BaseModel):
    model_config = ConfigDict(extra="forbid", str_strip_whitespace=True)


class SectionIn(_In):
    code: SectionCode
    name: str = Field(min_length=1, max_length=200)
    country: str = Field(pattern=r"^[A-Z]{2}$")
    timezone: str = Field("UTC", max_length=64)
    language: Language = "en"

    @field_validator("timezone")
    @classmethod
    def _known_zone(cls, value: str) -> str:
        if value not in _zones():
            raise ValueError("unknown time zone: use an IANA name such as Europe/Tirane")
        ZoneInfo(value)
        return value


_ZONES: set[str] = set()


def _zones() -> set[str]:
    if not _ZONES:
        _ZONES.update(available_timezones())
    return _ZONES


class SectionPatch(_In):
    """`PATCH /sections/{code}`: only the fields given change (the code and country stay)."""

    name: str | None = Field(None, min_length=1, max_length=200)
    timezone: str | None = Field(None, max_length=64)
    language: Language | None = None

    @field_validator("timezone")
    @classmethod
    def _known_zone(cls, value: str | None) -> str | None:
        if value is not None and value not in _zones():
            raise ValueError("unknown time zone: use an IANA name such as Europe/Tirane")
        return value

    @model_validator(mode="after")
    def _no_null(self) -> SectionPatch:
        for name in ("name", "timezone", "language"):
            if name in self.model_fields_set and getattr(self, name) is None:
                raise ValueError(f"{name} cannot be null")
        return self


class SectionOut(BaseModel):
    code: str
    name: str
    country: str
    timezone: str
    language: str


class QualificationTypeIn(_In):
    code: QualificationCode
    name: str = Field(min_length=1, max_length=200)


class QualificationTypeOut(BaseModel):
    code: str
    name: str


class QualificationIn(_In):
    code: QualificationCode
    issued_at: date | None = None
    expires_at: date | None = None

    @field_validator("expires_at")
    @classmethod
    def _not_before_issue(cls, value: date | None, info: ValidationInfo) -> date | None:
        issued = info.data.get("issued_at")
        if value is not None and issued is not None and value < issued:
            raise ValueError("the qualification expires before it was issued")
        return value


class QualificationOut(BaseModel):
    code: str
    issued_at: date | None
    expires_at: date | None


class PositionIn(_In):
    lat: Latitude
    lon: Longitude


class LocationIn(_In):
    """`PUT /members/{id}/location`: a live position (default) or a new home position."""

    lat: Latitude
    lon: Longitude
    source: Literal["home", "live"] = "live"
    #: when the position was taken; defaults to now; never in the future
    at: datetime | None = None

    @field_validator("at")
    @classmethod
    def _aware(cls, value: datetime | None) -> datetime | None:
        if value is not None and value.tzinfo is None:
            raise ValueError("give a time zone, e.g. 2026-11-23T10:00:00Z")
        return value


class QuietHoursIn(_In):
    start: time
    end: time

    @field_validator("start", "end", mode="before")
    @classmethod
    def _clock(cls, value: Any) -> Any:
        if isinstance(value, str):
            try:
                return parse_clock(value)
            except QuietHoursError as exc:
                raise ValueError(str(exc)) from exc
        return value

    @field_validator("end")
    @classmethod
    def _distinct(cls, value: time, info: ValidationInfo) -> time:
        start = info.data.get("start")
        if start is not None:
            try:
                check_window(start, value)
            except QuietHoursError as exc:
                raise ValueError(str(exc)) from exc
        return value


class ConsentIn(_In):
    alerts: bool


class AvailabilityIn(_In):
    availability: AvailabilityState
    #: for `unavailable`: when the member is available again (none: until changed)
    until: datetime | None = None

    @field_validator("until")
    @classmethod
    def _aware(cls, value: datetime | None) -> datetime | None:
        if value is not None and value.tzinfo is None:
            raise ValueError("give a time zone, e.g. 2026-11-23T10:00:00Z")
        return value

    @model_validator(mode="after")
    def _until_only_when_unavailable(self) -> AvailabilityIn:
        if self.availability == "available" and self.until is not None:
            raise ValueError("`until` only goes with `unavailable`")
        return self


def _phone(value: str, info: ValidationInfo) -> str:
    section = info.data.get("section")
    region = section if isinstance(section, str) and len(section) == 2 else None
    try:
        return to_e164(value, region)
    except PhoneError as exc:
        raise ValueError(str(exc)) from exc


class MemberIn(_In):
    section: SectionCode
    full_name: str = Field(min_length=1, max_length=200)
    phone: str = Field(max_length=40)
    email: EmailStr | None = None
    #: defaults to the section's language
    language: Language | None = None
    status: MemberStatus = "active"
    qualifications: list[QualificationIn] = Field(default_factory=list, max_length=64)
    location: PositionIn | None = None
    availability: AvailabilityState = "available"
    unavailable_until: datetime | None = None
    quiet_hours: QuietHoursIn | None = None
    consent: ConsentIn = Field(default_factory=lambda: ConsentIn(alerts=False))

    @field_validator("phone")
    @classmethod
    def _e164(cls, value: str, info: ValidationInfo) -> str:
        return _phone(value, info)

    @field_validator("qualifications")
    @classmethod
    def _distinct_codes(cls, value: list[QualificationIn]) -> list[QualificationIn]:
        codes = [q.code for q in value]
        if len(codes) != len(set(codes)):
            raise ValueError("a qualification code is listed twice")
        return value


class MemberPatch(_In):
    """Only the fields given change; `quiet_hours: null` removes the quiet hours."""

    section: SectionCode | None = None
    full_name: str | None = Field(None, min_length=1, max_length=200)
    phone: str | None = Field(None, max_length=40)
    email: EmailStr | None = None
    language: Language | None = None
    status: MemberStatus | None = None
    quiet_hours: QuietHoursIn | None = None
    consent: ConsentIn | None = None

    @field_validator("phone")
    @classmethod
    def _e164(cls, value: str | None, info: ValidationInfo) -> str | None:
        return None if value is None else _phone(value, info)

    @model_validator(mode="after")
    def _no_null_required(self) -> MemberPatch:
        for name in ("section", "full_name", "phone", "language", "status", "consent"):
            if name in self.model_fields_set and getattr(self, name) is None:
                raise ValueError(f"{name} cannot be null")
        return self


class PositionOut(BaseModel):
    lat: float
    lon: float
    at: datetime | None = None


class LocationOut(BaseModel):
    home: PositionOut | None
    live: PositionOut | None


class QuietHoursOut(BaseModel):
    start: time
    end: time


class ConsentOut(BaseModel):
    alerts: bool
    at: datetime | None


class MemberOut(BaseModel):
    id: UUID
    section: str
    status: str
    full_name: str
    phone: str
    email: str | None
    language: str
    qualifications: list[QualificationOut]
    location: LocationOut
    availability: str
    unavailable_until: datetime | None
    quiet_hours: QuietHoursOut | None
    consent: ConsentOut
    version: int
    created_at: datetime
    updated_at: datetime


class MemberPage(BaseModel):
    items: list[MemberOut]
    total: int


class AccountIn(_In):
    email: EmailStr
    password: str = Field(min_length=12, max_length=256)
    role: Role
    sections: list[SectionCode] = Field(default_factory=list, max_length=64, validate_default=True)

    @field_validator("sections")
    @classmethod
    def _sections_for_role(cls, value: list[str], info: ValidationInfo) -> list[str]:
        # a field validator (not a model one) so the 422 names `sections`
        if info.data.get("role") == "coordinator" and not value:
            raise ValueError("a coordinator acts for at least one section")
        return value


class AccountPatch(_In):
    """`PATCH /accounts/{id}`: only the fields given change."""

    role: Role | None = None
    sections: list[SectionCode] | None = Field(None, max_length=64)
    disabled: bool | None = None

    @model_validator(mode="after")
    def _no_null(self) -> AccountPatch:
        for name in ("role", "sections", "disabled"):
            if name in self.model_fields_set and getattr(self, name) is None:
                raise ValueError(f"{name} cannot be null")
        return self


class AccountOut(BaseModel):
    id: UUID
    email: str
    role: str
    sections: list[str]
    created_at: datetime
    disabled: bool = False
    disabled_at: datetime | None = None


class TokenOut(BaseModel):
    access_token: str
    token_type: str = "bearer"  # noqa: S105
    expires_in: int


class AvailabilityCounts(BaseModel):
    """Counts only: no member id, name, phone or position."""

    lat: float
    lon: float
    radius_km: float
    qualifications: list[str]
    #: active, consenting, available members in the radius holding every asked
    #: qualification; "< k" (k = smallest_count_shown) when fewer than k
    available: int | str
    #: of those, how many hold each valid qualification (each "< k" when fewer than k)
    by_qualification: dict[str, int | str]
    #: k: a count below it is shown as "< k", so no count singles out a member
    smallest_count_shown: int
    at: datetime


class RowError(BaseModel):
    row: int
    line: int
    column: str
    reason: str


class ImportReport(BaseModel):
    imported: int
    errors: list[RowError] = []


ImportJobStatus = Literal["validating", "importing", "done", "refused", "failed"]


class ImportJobOut(BaseModel):
    """A background import (`POST /members/imports`) and how far it got.

    `total` is the number of rows in the file (0 until it is parsed); `processed` counts
    rows validated, then rows inserted; `errors` is the same per-row report as the
    synchronous import's; `imported` is the number of members written (0 unless done and
    not a dry run)."""

    id: UUID
    status: ImportJobStatus
    dry_run: bool
    total: int
    processed: int
    imported: int
    errors: list[RowError]
    detail: str | None
    sections: list[str]
    created_at: datetime
    finished_at: datetime | None
    #: 0-100 over the whole job, never going back (validation is half of a real import)
    percent: int
