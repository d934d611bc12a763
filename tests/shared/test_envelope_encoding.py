"""`encode` writes, with one orjson call, the CloudEvents document the official SDK writes:
same key, same headers, same attributes in the same order, the same data, read identically
by the SDK's `from_kafka` and by Muster's `decode`, for arbitrary events of every type in
the catalogue (arbitrary data, subjects, extensions, unicode, time zones), and the SDK's
own error where the SDK refuses an event."""

from __future__ import annotations

import json
import math
import uuid
from datetime import UTC, date, datetime, timedelta, timezone
from typing import Any

import orjson
import pytest
from cloudevents.core.bindings import kafka as ce_kafka
from cloudevents.core.formats.json import JSONFormat
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from services.members.snapshots import build_snapshot
from shared.events import decode, encode, make_envelope, registered_types
from shared.events.envelope import Envelope, KafkaRecord
from shared.events.responses import ResponseReceived

_FORMAT = JSONFormat()


def sdk_record(envelope: Envelope) -> KafkaRecord:
    """What the SDK writes for the envelope: the encoder Muster used before orjson."""
    message = ce_kafka.to_structured(
        envelope.to_cloudevent(), _FORMAT, key_mapper=lambda event: event.get_subject()
    )
    key = message.key.encode() if isinstance(message.key, str) else message.key
    return KafkaRecord(key=key, value=message.value, headers=tuple(message.headers.items()))


def read_by_sdk(record: KafkaRecord) -> tuple[dict[str, Any], Any]:
    message = ce_kafka.KafkaMessage(
        headers=dict(record.headers), key=record.key, value=record.value or b""
    )
    event = ce_kafka.from_kafka(message, _FORMAT)
    return event.get_attributes(), event.get_data()


def assert_same_document(new: KafkaRecord, old: KafkaRecord) -> None:
    assert new.key == old.key
    assert new.headers == old.headers
    assert new.value is not None and old.value is not None
    # the same JSON document, attribute order and nested key order included
    assert json.loads(new.value, object_pairs_hook=list) == json.loads(
        old.value, object_pairs_hook=list
    )
    assert read_by_sdk(new) == read_by_sdk(old)
    assert decode(new.value, new.headers, new.key) == decode(old.value, old.headers, old.key)


# JSON values as event data: every unicode string but lone surrogates (tested apart),
# integers beyond 64 bits (orjson refuses them: the SDK writes them), finite floats (NaN
# is not JSON: see test_non_finite_floats_are_written_as_json_null)
_text = st.text(max_size=20)
_scalars = (
    st.none()
    | st.booleans()
    | st.integers(min_value=-(2**70), max_value=2**70)
    | st.floats(allow_nan=False, allow_infinity=False)
    | _text
)
_json_values = st.recursive(
    _scalars,
    lambda children: st.lists(children, max_size=4) | st.dictionaries(_text, children, max_size=4),
    max_leaves=20,
)
_times = st.datetimes(
    min_value=datetime(1970, 1, 2), max_value=datetime(2100, 1, 1), timezones=st.timezones()
) | st.datetimes(timezones=st.just(UTC))
_extension_names = st.from_regex(r"\A[a-z0-9]{1,12}\Z")


@st.composite
def envelopes(draw: st.DrawFn) -> Envelope:
    event_type = draw(st.sampled_from(sorted(registered_types())))
    return Envelope(
        type=event_type,
        source=draw(st.text(min_size=1, max_size=20)),
        subject=draw(st.none() | st.text(min_size=1, max_size=30)),
        data=draw(
            st.dictionaries(_text, _json_values | _times, max_size=6)
            | _json_values
            | st.binary(max_size=20)
        ),
        id=draw(st.uuids().map(str) | st.text(min_size=1, max_size=20)),
        time=draw(_times),
        correlationid=draw(st.none() | st.text(min_size=1, max_size=20)),
        causationid=draw(st.none() | st.text(min_size=1, max_size=20)),
        datacontenttype=draw(
            st.sampled_from(
                ["application/json", "text/json", "application/vnd.muster+json", "text/plain"]
            )
        ),
        extensions=draw(
            st.dictionaries(
                _extension_names, _text | st.integers(-1000, 1000) | st.booleans(), max_size=3
            )
        ),
    )


# no deadline: several engineers share the machine, and a test never asserts a time
@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(envelopes())
def test_encode_writes_the_document_the_sdk_writes(envelope: Envelope) -> None:
    assert_same_document(encode(envelope), sdk_record(envelope))


@settings(deadline=None)
@given(st.text(alphabet=st.characters(categories=["Cs", "Lo", "So", "Ll"]), min_size=1))
def test_lone_surrogates_are_written_as_the_sdk_writes_them(subject_text: str) -> None:
    envelope = Envelope(
        type="muster.member.changed.v1", source="members", subject="k", data={"note": subject_text}
    )
    assert_same_document(encode(envelope), sdk_record(envelope))


def _catalogue_events() -> list[Any]:
    member = {
        "id": uuid.uuid4(),
        "home_lat": 41.3275,
        "home_lon": 19.8187,
        "live_lat": 41.33,
        "live_lon": 19.82,
        "live_at": datetime(2026, 11, 30, 9, 15, 0, 123456, tzinfo=UTC),
        "quiet_start": "23:00",
        "quiet_end": "06:30",
        "section": "AL",
        "status": "active",
        "language": "sq",
        "phone": "+355691234567",
        "consent_alerts": True,
        "availability": "available",
        "unavailable_until": None,
    }
    snapshot = build_snapshot(
        member,
        [{"code": "FIRST_AID", "issued_at": date(2024, 1, 1), "expires_at": date(2030, 1, 1)}],
        timezone="Europe/Tirane",
        version=3,
        changed_at=datetime.now(UTC),
    )
    response = ResponseReceived(
        emergency_id=uuid.uuid4(),
        member_id=uuid.uuid4(),
        alert_id=uuid.uuid4(),
        answer="accepted",
        eta_minutes=12,
        channel="sms",
        responded_at=datetime.now(timezone(timedelta(hours=1))),
    )
    return [snapshot, response]


@pytest.mark.parametrize("data", _catalogue_events(), ids=lambda data: data.event_type)
def test_make_envelope_of_real_events_reads_back_the_same(data: Any) -> None:
    envelope = make_envelope(data, source="members", correlationid="ç-1", causationid="ev-0")
    record = encode(envelope)
    assert_same_document(record, sdk_record(envelope))
    assert type(data).model_validate(decode(record.value, record.headers, record.key).data) == data


@pytest.mark.parametrize(
    "envelope",
    [
        Envelope(type="", source="x", subject="k", data={}),
        Envelope(type="t", source="", subject="k", data={}),
        Envelope(type="t", source="x", subject="", data={}),
        Envelope(type="t", source="x", subject="k", data={}, id=""),
        Envelope(type="t", source="x", subject="k", data={}, time=datetime(2026, 1, 1)),
        Envelope(type="t", source="x", subject="k", data={}, datacontenttype=""),
        Envelope(type="t", source="x", subject="k", data={}, extensions={"Bad_Name": 1}),
        Envelope(type="t", source="x", subject="k", data={}, extensions={"data": 1}),
        Envelope(type="t", source="x", subject=None, data={}, extensions={"subject": ""}),
        Envelope(type="t", source="x", subject="k", data={"when": date(2026, 1, 1)}),
        Envelope(type="t", source="x", subject="k", data={"many": {1, 2}}),
    ],
)
def test_what_the_sdk_refuses_is_refused_with_the_sdks_error(envelope: Envelope) -> None:
    with pytest.raises(Exception) as sdk_error:
        sdk_record(envelope)
    with pytest.raises(type(sdk_error.value)):
        encode(envelope)


def test_an_extension_may_supply_the_subject_and_so_the_key() -> None:
    envelope = Envelope(type="t", source="x", subject=None, data={}, extensions={"subject": "k"})
    record = encode(envelope)
    assert record.key == b"k"
    assert_same_document(record, sdk_record(envelope))


def test_non_finite_floats_are_written_as_json_null() -> None:
    # the SDK writes `NaN`, which is not JSON (RFC 8259 section 6): strict readers (orjson,
    # JavaScript, Go) refuse the whole record. Muster's events never carry one on purpose.
    envelope = Envelope(type="t", source="x", subject="k", data={"share": math.nan})
    record = encode(envelope)
    assert record.value is not None
    assert orjson.loads(record.value)["data"] == {"share": None}
    assert decode(record.value, record.headers, record.key).data == {"share": None}
