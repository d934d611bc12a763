"""The CloudEvents 1.0 envelope over the Kafka protocol binding.

Muster writes structured mode (the whole event as `application/cloudevents+json` in the
record value, the key as the record key) and reads both structured and binary (`ce_`
headers) records with the official `cloudevents` SDK, so any CloudEvents producer can
talk to Muster and any CloudEvents consumer can read Muster.

Writing is on every hot path (a CSV import encodes one snapshot a row, every event
added to an outbox is encoded in its transaction), and the SDK's path (a validated
`CloudEvent`, then `json.dumps` with a custom encoder class) cost about 60 us of CPU an
event here. `encode` builds the same attributes in the same order, checks them as the
SDK does, and writes them with one `orjson.dumps` call (about 15 us in all, the orjson
call 2 us of it; docs/performance.md). The bytes differ
from the SDK's only in JSON whitespace and in non-ASCII written as UTF-8 instead of
escapes: the same JSON document, read identically by the SDK's `from_kafka` and by
`decode` (tests/shared/test_envelope_encoding.py proves it over arbitrary events).
Whatever orjson cannot write as the SDK would (integers beyond 64 bits, non-string
keys, lone surrogates, values only the SDK's encoder knows) goes through the SDK
itself, which also raises the SDK's own errors for attributes it refuses. Two
differences remain, on values Muster's events never carry: orjson writes a UUID or a
plain Enum in the data where the SDK raised TypeError, and a NaN or infinity as `null`
where the SDK wrote `NaN`, which is not JSON (RFC 8259 section 6) and which strict
readers refuse.
"""

from __future__ import annotations

import base64
import uuid
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import orjson
from cloudevents.core.bindings import kafka as ce_kafka
from cloudevents.core.formats.json import JSONFormat
from cloudevents.core.v1.event import CloudEvent

SPECVERSION = "1.0"
DATACONTENTTYPE = "application/json"
STRUCTURED_CONTENT_TYPE = "application/cloudevents+json"
_FORMAT = JSONFormat()
_CORE_ATTRIBUTES = frozenset(
    {"id", "source", "type", "specversion", "time", "subject", "datacontenttype", "dataschema"}
)
#: the attributes `encode` checks itself; any other (an extension) has the SDK check them all
_CHECKED_ATTRIBUTES = frozenset(
    {"id", "source", "type", "specversion", "time", "subject", "datacontenttype"}
    | {"correlationid", "causationid"}
)
#: the data of these content types is JSON in the document (the SDK's own pattern)
_JSON_CONTENT_TYPE = JSONFormat.JSON_CONTENT_TYPE_PATTERN
_STRUCTURED_HEADERS: tuple[tuple[str, bytes], ...] = (
    ("content-type", STRUCTURED_CONTENT_TYPE.encode()),
)
#: datetimes, dates, times and dataclasses go to `_sdk_json_default` as the SDK's encoder
#: sees them (orjson would write its own format, or write what the SDK refuses)
_ORJSON_OPTIONS = orjson.OPT_PASSTHROUGH_DATETIME | orjson.OPT_PASSTHROUGH_DATACLASS


class EnvelopeError(ValueError):
    """The record is not a CloudEvent Muster can read (not JSON, missing attributes...)."""


@dataclass(frozen=True)
class Envelope:
    """One CloudEvent as Muster sees it: attributes plus JSON data."""

    type: str
    source: str
    subject: str | None
    data: Any
    id: str = field(default_factory=lambda: str(uuid.uuid4()))
    time: datetime = field(default_factory=lambda: datetime.now(UTC))
    correlationid: str | None = None
    causationid: str | None = None
    datacontenttype: str = DATACONTENTTYPE
    extensions: Mapping[str, Any] = field(default_factory=dict)

    def to_cloudevent(self) -> CloudEvent:
        return CloudEvent(attributes=self.attributes(), data=self.data)

    def attributes(self) -> dict[str, Any]:
        """The CloudEvents attributes in the order the document lists them."""
        attributes: dict[str, Any] = {
            "id": self.id,
            "source": self.source,
            "type": self.type,
            "specversion": SPECVERSION,
            "time": self.time,
            "datacontenttype": self.datacontenttype,
        }
        if self.subject is not None:
            attributes["subject"] = self.subject
        if self.correlationid is not None:
            attributes["correlationid"] = self.correlationid
        if self.causationid is not None:
            attributes["causationid"] = self.causationid
        for name, value in self.extensions.items():
            attributes.setdefault(name, value)
        return attributes


@dataclass(frozen=True)
class KafkaRecord:
    """What goes on (or comes off) the wire: key, value, headers, all bytes."""

    key: bytes | None
    value: bytes | None
    headers: tuple[tuple[str, bytes], ...] = ()


def encode(envelope: Envelope) -> KafkaRecord:
    """Serialise an envelope to a structured-mode Kafka record keyed by its subject."""
    attributes = envelope.attributes()
    if not _attributes_pass_sdk_checks(attributes):
        return _encode_with_sdk(envelope)
    time = attributes["time"]
    attributes["time"] = _rfc3339(time)
    data = envelope.data
    if isinstance(data, bytes | bytearray):
        attributes["data_base64"] = base64.b64encode(data).decode()
    elif data is not None:
        json_data = _JSON_CONTENT_TYPE.match(attributes["datacontenttype"])
        attributes["data"] = data if json_data else str(data)
    try:
        value = orjson.dumps(attributes, default=_sdk_json_default, option=_ORJSON_OPTIONS)
    except orjson.JSONEncodeError:
        return _encode_with_sdk(envelope)
    subject = attributes.get("subject")
    return KafkaRecord(
        key=subject.encode() if isinstance(subject, str) else subject,
        value=value,
        headers=_STRUCTURED_HEADERS,
    )


def _attributes_pass_sdk_checks(attributes: Mapping[str, Any]) -> bool:
    """What `CloudEvent` (v1.0) checks of the attributes, without building one."""
    if not attributes.keys() <= _CHECKED_ATTRIBUTES:
        # an extension (rare): the SDK checks the names and the attributes they may shadow
        try:
            CloudEvent(attributes=dict(attributes))
        except Exception:  # the SDK's validation error: let `_encode_with_sdk` raise it
            return False
        return True
    for name in ("id", "source", "type", "datacontenttype"):
        value = attributes.get(name)
        if not (isinstance(value, str) and value):
            return False
    subject = attributes.get("subject")
    time = attributes["time"]
    return (
        attributes["specversion"] == SPECVERSION
        and (subject is None or (isinstance(subject, str) and bool(subject)))
        and isinstance(time, datetime)
        and bool(time.tzinfo)
    )


def _rfc3339(moment: datetime) -> str:
    """The SDK's time format: `isoformat()`, with `Z` for a zero offset."""
    text = moment.isoformat()
    return text[:-6] + "Z" if text.endswith("+00:00") else text


def _sdk_json_default(value: Any) -> Any:
    """What the SDK's JSON encoder adds to `json.dumps`: datetimes as RFC 3339."""
    if isinstance(value, datetime):
        return _rfc3339(value)
    raise TypeError(f"{type(value).__name__} is not JSON serialisable")


def _encode_with_sdk(envelope: Envelope) -> KafkaRecord:
    """The SDK's own structured record (and its own errors) for what `encode` leaves it."""
    message = ce_kafka.to_structured(
        envelope.to_cloudevent(),
        _FORMAT,
        key_mapper=lambda event: event.get_subject(),
    )
    key = message.key.encode() if isinstance(message.key, str) else message.key
    return KafkaRecord(key=key, value=message.value, headers=tuple(message.headers.items()))


def decode(
    value: bytes | None,
    headers: Iterable[tuple[str, bytes]] = (),
    key: bytes | None = None,
) -> Envelope:
    """Parse a structured or binary CloudEvents Kafka record; raise EnvelopeError if unreadable."""
    if value is None:
        raise EnvelopeError("tombstone (null value) is not an event")
    header_map: dict[str, bytes] = {}
    for name, raw in headers:
        header_map[name] = raw if isinstance(raw, bytes) else str(raw).encode()
    try:
        event = ce_kafka.from_kafka(
            ce_kafka.KafkaMessage(headers=header_map, key=key, value=value), _FORMAT
        )
    except Exception as exc:  # the SDK raises several types for bad input; all mean "unreadable"
        raise EnvelopeError(f"not a CloudEvents record: {type(exc).__name__}: {exc}") from exc
    attributes = event.get_attributes()
    missing = [name for name in ("id", "source", "type") if not attributes.get(name)]
    if missing:
        raise EnvelopeError(f"CloudEvent is missing {', '.join(missing)}")
    if str(attributes.get("specversion", "")) != SPECVERSION:
        raise EnvelopeError(f"unsupported specversion {attributes.get('specversion')!r}")
    time = attributes.get("time") or datetime.now(UTC)
    if isinstance(time, str):
        time = datetime.fromisoformat(time)
    extensions = {
        name: val
        for name, val in attributes.items()
        if name not in _CORE_ATTRIBUTES
        and name not in {"correlationid", "causationid", "partitionkey"}
    }
    return Envelope(
        id=str(attributes["id"]),
        source=str(attributes["source"]),
        type=str(attributes["type"]),
        subject=attributes.get("subject"),
        data=event.get_data(),
        time=time,
        correlationid=attributes.get("correlationid"),
        causationid=attributes.get("causationid"),
        datacontenttype=str(attributes.get("datacontenttype") or DATACONTENTTYPE),
        extensions=extensions,
    )
