"""Muster's events: the envelope, the catalog, and one module per topic.

Importing this package registers every event type in the catalog.
"""

from shared.events import alerts, availability, emergencies, members, responses
from shared.events.catalog import (
    EventData,
    InvalidEventData,
    UnknownEventType,
    make_envelope,
    model_for,
    parse_data,
    registered_types,
)
from shared.events.envelope import Envelope, EnvelopeError, KafkaRecord, decode, encode

__all__ = [
    "Envelope",
    "EnvelopeError",
    "EventData",
    "InvalidEventData",
    "KafkaRecord",
    "UnknownEventType",
    "alerts",
    "availability",
    "decode",
    "emergencies",
    "encode",
    "make_envelope",
    "members",
    "model_for",
    "parse_data",
    "registered_types",
    "responses",
]
