"""`python -m shared.dlq redrive` sends dead letters back to their topic once the bug is
fixed: the record is applied exactly once, and a second redrive sends nothing."""

from __future__ import annotations

import asyncio
import os
import sys
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime

from hypothesis import given
from hypothesis import strategies as st

from shared.consumer import Delivery
from shared.db import make_engine
from shared.dlq import original_headers, topic_pair
from shared.events import make_envelope
from shared.events.envelope import KafkaRecord, decode, encode
from shared.events.responses import ResponseReceived
from shared.events.topics import RESPONSES, dead_letter_topic
from shared.outbox import PARKED_REASON
from tests.shared.flow import (
    applied_counts,
    create_tables,
    record_applied,
    running_consumer,
    wait_for,
)
from tests.support.infra import REPO
from tests.support.kafka import publish, read_records

# --- pure parts -----------------------------------------------------------------------

topic_names = st.from_regex(r"[a-z][a-z.]{0,30}[a-z]", fullmatch=True).filter(
    lambda name: not name.endswith(".dlq")
)
prefixes = st.one_of(st.just(""), st.from_regex(r"t[0-9a-f]{10}\.", fullmatch=True))


@given(name=topic_names, prefix=prefixes)
def test_the_operator_may_type_the_topic_with_or_without_prefix_and_suffix(
    name: str, prefix: str
) -> None:
    expected = topic_pair(name, prefix)
    assert expected.source == f"{prefix}{name}"
    assert expected.dead_letters == f"{prefix}{name}.dlq"
    assert topic_pair(f"{name}.dlq", prefix) == expected
    assert topic_pair(f"{prefix}{name}", prefix) == expected
    assert topic_pair(f"{prefix}{name}.dlq", prefix) == expected


header_names = st.text(min_size=1, max_size=20)


@given(
    kept=st.lists(st.tuples(header_names, st.binary(max_size=8)), max_size=6).map(
        lambda hs: [(k, v) for k, v in hs if not k.startswith("muster.dlq.")]
    ),
    added=st.lists(st.tuples(header_names.map("muster.dlq.".__add__), st.binary(max_size=8))),
)
def test_only_the_dead_letter_headers_are_removed(
    kept: list[tuple[str, bytes]], added: list[tuple[str, bytes]]
) -> None:
    assert original_headers([*kept, *added]) == kept
    assert original_headers([*added, *kept]) == kept


# --- the command, as a process, against real Kafka and PostgreSQL ---------------------


@dataclass
class Run:
    code: int
    out: str
    err: str


async def dlq_command(*args: str, prefix: str, bootstrap: str) -> Run:
    env = {**os.environ, "MUSTER_TOPIC_PREFIX": prefix, "KAFKA_BOOTSTRAP_SERVERS": bootstrap}
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "shared.dlq",
        *args,
        cwd=REPO,
        env=env,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    out, err = await asyncio.wait_for(process.communicate(), timeout=120)
    assert process.returncode is not None
    return Run(process.returncode, out.decode(), err.decode())


def _response(emergency_id: uuid.UUID, answer: str) -> ResponseReceived:
    return ResponseReceived(
        emergency_id=emergency_id,
        member_id=uuid.uuid4(),
        alert_id=uuid.uuid4(),
        answer=answer,  # type: ignore[arg-type]
        channel="sms",
        responded_at=datetime.now(UTC),
    )


async def test_redrive_applies_a_fixed_record_once_and_only_once(infra, topics, schema) -> None:
    engine = make_engine(infra.database_url, schema, pool_size=2)
    await create_tables(engine)
    emergency = uuid.uuid4()
    failed = make_envelope(_response(emergency, "declined"), source="test")
    good = make_envelope(_response(emergency, "accepted"), source="test")
    fixed = asyncio.Event()

    async def handler(delivery: Delivery) -> None:
        if delivery.envelope.id == failed.id and not fixed.is_set():
            raise RuntimeError("declined answers crash the board")  # the bug
        await record_applied(delivery)

    source = topics(RESPONSES)
    await publish(infra.kafka_bootstrap, source, [failed, good])
    command = {"prefix": topics.prefix, "bootstrap": infra.kafka_bootstrap}
    async with running_consumer(
        infra.kafka_bootstrap,
        infra.database_url,
        schema,
        source,
        {ResponseReceived.event_type: handler},
        f"g-{uuid.uuid4().hex[:8]}",
    ) as (_, sessions):

        async def good_applied() -> bool:
            return good.id in await applied_counts(sessions)

        assert await wait_for(good_applied, timeout_s=60)
        dead = await read_records(
            infra.kafka_bootstrap, [dead_letter_topic(source)], until=lambda rs: len(rs) >= 1
        )
        assert len(dead) == 1

        listed = await dlq_command("list", RESPONSES, **command)
        assert listed.code == 0, listed.err
        assert "pending" in listed.out and "reason=handler_failed" in listed.out
        assert "1 dead letters, 1 not yet redriven" in listed.out

        dry = await dlq_command("redrive", RESPONSES, "--dry-run", **command)
        assert dry.code == 0, dry.err
        assert "1 dead letters would go back" in dry.out

        fixed.set()  # the bug is fixed and deployed
        first = await dlq_command("redrive", RESPONSES, **command)
        assert first.code == 0, first.err
        assert f"done: 1 dead letters sent back to {source}" in first.out

        async def failed_applied() -> bool:
            return failed.id in await applied_counts(sessions)

        assert await wait_for(failed_applied, timeout_s=60)

        second = await dlq_command("redrive", f"{RESPONSES}.dlq", **command)
        assert second.code == 0, second.err
        assert "nothing to redrive" in second.out
        await asyncio.sleep(2.0)  # a second copy, had one been sent, would be applied now
        assert await applied_counts(sessions) == {failed.id: 1, good.id: 1}

    on_source = await read_records(
        infra.kafka_bootstrap, [source], until=lambda rs: len(rs) >= 4, timeout_s=5
    )
    # the original two and one redriven copy: the dry run and the second redrive sent nothing
    assert [decode(r.value, r.headers, r.key).id for r in on_source] == [
        failed.id,
        good.id,
        failed.id,
    ]
    original, copy = on_source[0], on_source[2]
    assert copy.key == original.key and copy.value == original.value
    assert list(copy.headers) == list(original.headers)
    assert not any(k.startswith("muster.dlq.") for k, _ in copy.headers)
    listed_after = await dlq_command("list", RESPONSES, **command)
    assert "1 dead letters, 0 not yet redriven" in listed_after.out
    await engine.dispose()


async def test_a_missing_topic_says_what_to_check(infra, topics) -> None:
    run = await dlq_command(
        "redrive", "muster.no.such.topic", prefix=topics.prefix, bootstrap=infra.kafka_bootstrap
    )
    assert run.code == 1
    assert "MUSTER_TOPIC_PREFIX" in run.err and "muster.no.such.topic.dlq" in run.err


async def test_an_unreachable_broker_says_what_to_check() -> None:
    run = await dlq_command("list", RESPONSES, prefix="", bootstrap="127.0.0.1:1")
    assert run.code == 1
    assert "KAFKA_BOOTSTRAP_SERVERS" in run.err


async def test_a_record_the_relay_parked_is_not_sent_back(infra, topics) -> None:
    """The outbox relay dead-letters what the broker can never take (too large): sending
    it back would fail the same way, so redrive leaves it and says where the row is."""
    source = topics(RESPONSES)
    parked = encode(make_envelope(_response(uuid.uuid4(), "declined"), source="test"))
    await publish(
        infra.kafka_bootstrap,
        dead_letter_topic(source),
        [
            KafkaRecord(
                key=parked.key,
                value=parked.value,
                headers=(
                    *parked.headers,
                    ("muster.dlq.reason", PARKED_REASON.encode()),
                    ("muster.dlq.topic", source.encode()),
                ),
            )
        ],
    )
    run = await dlq_command(
        "redrive", RESPONSES, prefix=topics.prefix, bootstrap=infra.kafka_bootstrap
    )
    assert run.code == 0, run.err
    assert "outbox_parked" in run.out
    assert "nothing to redrive" in run.out
    on_source = await read_records(
        infra.kafka_bootstrap, [source], until=lambda rs: len(rs) >= 1, timeout_s=3
    )
    assert on_source == []
