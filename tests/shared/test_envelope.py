"""The envelope speaks CloudEvents 1.0 over Kafka: the official SDK reads what Muster
writes, and Muster reads what the SDK writes (structured and binary mode)."""

from __future__ import annotations

import contextlib
import uuid
from datetime import UTC, datetime

import pytest
from cloudevents.core.bindings import kafka as ce_kafka
from cloudevents.core.formats.json import JSONFormat
from cloudevents.core.v1.event import CloudEvent
from hypothesis import given
from hypothesis import strategies as st

from shared.events import (
    EnvelopeError,
    InvalidEventData,
    UnknownEventType,
    decode,
    encode,
    make_envelope,
    parse_data,
    registered_types,
)
from shared.events.envelope import Envelope
from shared.events.responses import ResponseReceived
from shared.events.topics import ALERTS, EMERGENCIES, MEMBERS_STATE, RESPONSES


def _response() -> ResponseReceived:
    return ResponseReceived(
        emergency_id=uuid.uuid4(),
        member_id=uuid.uuid4(),
        alert_id=uuid.uuid4(),
        answer="accepted",
        eta_minutes=15,
        channel="sms",
        responded_at=datetime.now(UTC),
    )


def test_sdk_parses_what_muster_writes() -> None:
    data = _response()
    envelope = make_envelope(data, source="alerts", correlationid="em-1", causationid="ev-0")
    record = encode(envelope)

    event = ce_kafka.from_kafka(
        ce_kafka.KafkaMessage(headers=dict(record.headers), key=record.key, value=record.value),
        JSONFormat(),
    )

    assert event.get_type() == "muster.response.received.v1"
    assert event.get_id() == envelope.id
    assert event.get_source() == "alerts"
    assert event.get_subject() == str(data.emergency_id)
    assert event.get_extension("correlationid") == "em-1"
    assert event.get_extension("causationid") == "ev-0"
    assert event.get_data()["eta_minutes"] == 15
    assert record.key == str(data.emergency_id).encode()
    assert dict(record.headers)["content-type"] == b"application/cloudevents+json"


@pytest.mark.parametrize("mode", ["structured", "binary"])
def test_muster_parses_what_the_sdk_writes(mode: str) -> None:
    data = _response()
    event = CloudEvent(
        attributes={
            "id": str(uuid.uuid4()),
            "source": "prefecture-gateway",
            "type": data.event_type,
            "subject": str(data.emergency_id),
            "datacontenttype": "application/json",
            "correlationid": "req-7",
        },
        data=data.model_dump(mode="json"),
    )
    to_kafka = ce_kafka.to_structured_event if mode == "structured" else ce_kafka.to_binary_event
    message = to_kafka(event)

    envelope = decode(message.value, list(message.headers.items()), message.key)

    assert envelope.id == event.get_id()
    assert envelope.correlationid == "req-7"
    assert parse_data(envelope) == data


def test_every_contract_type_is_registered_with_its_topic() -> None:
    types = registered_types()
    expected = {
        "muster.member.changed.v1": MEMBERS_STATE,
        "muster.emergency.declared.v1": EMERGENCIES,
        "muster.emergency.updated.v1": EMERGENCIES,
        "muster.emergency.escalated.v1": EMERGENCIES,
        "muster.emergency.closed.v1": EMERGENCIES,
        "muster.alert.sent.v1": ALERTS,
        "muster.alert.delivered.v1": ALERTS,
        "muster.alert.failed.v1": ALERTS,
        "muster.alert.stood_down.v1": ALERTS,
        "muster.response.received.v1": RESPONSES,
        "muster.availability.summary.v1": "muster.availability",
    }
    assert {t: types[t].topic for t in expected} == expected


def test_unknown_type_and_invalid_data_are_errors_not_crashes() -> None:
    unknown = Envelope(type="muster.nothing.v9", source="x", subject="k", data={})
    with pytest.raises(UnknownEventType):
        parse_data(unknown)
    invalid = Envelope(
        type="muster.response.received.v1", source="x", subject="k", data={"answer": "maybe"}
    )
    with pytest.raises(InvalidEventData) as error:
        parse_data(invalid)
    assert "answer" in str(error.value)


@given(st.binary(max_size=200))
def test_arbitrary_bytes_never_crash_the_decoder(value: bytes) -> None:
    # anything but a readable CloudEvent must be an EnvelopeError, never another exception
    with contextlib.suppress(EnvelopeError):
        envelope = decode(value)
        assert envelope.id and envelope.type and envelope.source


def test_compatible_addition_is_accepted() -> None:
    payload = _response().model_dump(mode="json") | {"note_added_in_a_later_version": 1}
    envelope = Envelope(type=ResponseReceived.event_type, source="x", subject="k", data=payload)
    assert isinstance(parse_data(envelope), ResponseReceived)
