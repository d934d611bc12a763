"""The CloudEvents 1.0 envelope over the Kafka protocol binding.

Muster writes structured mode (the whole event as `application/cloudevents+json` in the
record value, the key as the record key) through the official `cloudevents` SDK, and
reads both structured and binary (`ce_` headers) records with it, so any CloudEvents
producer can talk to Muster and any CloudEvents consumer can read Muster.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

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
        return CloudEvent(attributes=attributes, data=self.data)


@dataclass(frozen=True)
class KafkaRecord:
    """What goes on (or comes off) the wire: key, value, headers, all bytes."""

    key: bytes | None
    value: bytes | None
    headers: tuple[tuple[str, bytes], ...] = ()


def encode(envelope: Envelope) -> KafkaRecord:
    """Serialise an envelope to a structured-mode Kafka record keyed by its subject."""
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
