"""One place that maps event types to models, topics and keys.

Every event model subclasses `EventData` and declares its `event_type`, `topic` and the
field whose value is the Kafka key (and the CloudEvents `subject`). Importing
`shared.events` registers them all.
"""

from __future__ import annotations

from typing import Any, ClassVar

from pydantic import BaseModel, ConfigDict, ValidationError

from shared.events.envelope import Envelope

_REGISTRY: dict[str, type[EventData]] = {}


class UnknownEventType(LookupError):
    """The record's `type` is not one Muster knows (yet): dead-letter it, do not crash."""


class InvalidEventData(ValueError):
    """The record's `data` does not validate against its type's model."""


class EventData(BaseModel):
    """The `data` of a Muster event. Unknown fields are kept (compatible additions)."""

    model_config = ConfigDict(extra="allow", frozen=True)

    event_type: ClassVar[str]
    topic: ClassVar[str]
    key_field: ClassVar[str]

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        event_type = cls.__dict__.get("event_type")
        if event_type:
            if event_type in _REGISTRY and _REGISTRY[event_type] is not cls:
                raise RuntimeError(f"event type {event_type} registered twice")
            _REGISTRY[event_type] = cls

    @property
    def key(self) -> str:
        return str(getattr(self, self.key_field))


def model_for(event_type: str) -> type[EventData]:
    try:
        return _REGISTRY[event_type]
    except KeyError:
        raise UnknownEventType(f"unknown event type {event_type!r}") from None


def registered_types() -> dict[str, type[EventData]]:
    return dict(_REGISTRY)


def parse_data(envelope: Envelope) -> EventData:
    """Validate an envelope's data against its type; raise UnknownEventType / InvalidEventData."""
    model = model_for(envelope.type)
    try:
        return model.model_validate(envelope.data)
    except ValidationError as exc:
        fields = ", ".join(".".join(str(p) for p in err["loc"]) or "data" for err in exc.errors())
        raise InvalidEventData(
            f"{envelope.type}: invalid data ({fields}): {exc.error_count()} error(s)"
        ) from exc


def make_envelope(
    data: EventData,
    *,
    source: str,
    correlationid: str | None = None,
    causationid: str | None = None,
) -> Envelope:
    """Wrap event data in an envelope: type, subject (the key) and JSON data filled in."""
    return Envelope(
        type=data.event_type,
        source=source,
        subject=data.key,
        data=data.model_dump(mode="json", exclude_none=False),
        correlationid=correlationid,
        causationid=causationid,
    )
