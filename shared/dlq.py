"""Dead letters: look at them, and send them back to their topic once the cause is fixed.

    python -m shared.dlq list TOPIC
    python -m shared.dlq redrive TOPIC [--limit N] [--dry-run]

TOPIC is a topic of the contract (`muster.emergencies`); `MUSTER_TOPIC_PREFIX` is added
and `.dlq` may be given or not. `redrive` reads `<prefix><TOPIC>.dlq` from where its own
consumer group (`<prefix>muster.dlq.redrive`) stopped last time, re-publishes each
record to `<prefix><TOPIC>` with its original key, value and headers (the
`muster.dlq.*` ones removed) through an idempotent producer, and commits its offset on
the dead-letter topic, so a second run does not send the same records again.

A crash between publishing and committing sends those records once more on the next
run; that is harmless: every consumer skips an event id it has applied (and a record
that several consumer groups dead-lettered is sent once per run). The consumer groups
that applied the event the first time skip it too: only the ones that failed apply it.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import time
from collections.abc import AsyncIterator, Iterable, Sequence
from dataclasses import dataclass

from aiokafka import AIOKafkaConsumer, ConsumerRecord, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient
from aiokafka.errors import KafkaConnectionError, KafkaError

from shared.consumer import (
    DLQ_HEADER_CONSUMER,
    DLQ_HEADER_ERROR,
    DLQ_HEADER_OFFSET,
    DLQ_HEADER_PARTITION,
    DLQ_HEADER_PREFIX,
    DLQ_HEADER_REASON,
    DLQ_HEADER_TOPIC,
)
from shared.events.topics import DLQ_SUFFIX, dead_letter_topic
from shared.kafka import new_producer
from shared.outbox import PARKED_REASON
from shared.settings import MusterSettings

REDRIVE_GROUP = "muster.dlq.redrive"
#: how long the end of the dead-letter topic may take to come in before giving up
READ_IDLE_TIMEOUT_S = 30.0


class RedriveError(Exception):
    """Something the operator must act on; the message says what."""


@dataclass(frozen=True)
class TopicPair:
    source: str
    dead_letters: str


def topic_pair(topic: str, prefix: str) -> TopicPair:
    """The source topic and its dead-letter topic for what the operator typed: with or
    without the prefix, with or without `.dlq`."""
    name = topic.strip().removesuffix(DLQ_SUFFIX)
    if not name:
        raise RedriveError("name a topic, e.g. muster.emergencies")
    source = name if prefix and name.startswith(prefix) else f"{prefix}{name}"
    return TopicPair(source, dead_letter_topic(source))


def original_headers(headers: Iterable[tuple[str, bytes]]) -> list[tuple[str, bytes]]:
    """The record's headers as they were before it was dead-lettered."""
    return [(k, v) for k, v in headers if not k.startswith(DLQ_HEADER_PREFIX)]


def parked_by_relay(headers: Iterable[tuple[str, bytes]]) -> bool:
    """Dead-lettered by the outbox relay because the broker can never take it."""
    return dict(headers).get(DLQ_HEADER_REASON) == PARKED_REASON.encode()


def origin(headers: Iterable[tuple[str, bytes]]) -> tuple[str, str, str] | None:
    """Where the dead letter was read from (topic, partition, offset), if it says."""
    found = dict(headers)
    parts = (found.get(DLQ_HEADER_TOPIC), found.get(DLQ_HEADER_PARTITION))
    offset = found.get(DLQ_HEADER_OFFSET)
    if parts[0] is None or parts[1] is None or offset is None:
        return None
    return parts[0].decode(errors="replace"), parts[1].decode(), offset.decode()


def describe(record: ConsumerRecord[bytes, bytes], *, state: str = "") -> str:
    headers = dict(record.headers or ())
    text = {
        name: headers.get(header, b"?").decode(errors="replace")
        for name, header in (
            ("reason", DLQ_HEADER_REASON),
            ("consumer", DLQ_HEADER_CONSUMER),
            ("error", DLQ_HEADER_ERROR),
        )
    }
    source = origin(record.headers or ())
    where = f"{source[0]}[{source[1]}]@{source[2]}" if source else "?"
    key = record.key.decode(errors="replace") if record.key is not None else "-"
    error = text["error"] if len(text["error"]) <= 160 else text["error"][:157] + "..."
    prefix = f"{state:8} " if state else ""
    return (
        f"{prefix}dlq[{record.partition}]@{record.offset} key={key} reason={text['reason']}"
        f" consumer={text['consumer']} from={where} error={error}"
    )


class DeadLetterReader:
    """Reads a dead-letter topic up to its end as it was when the reader started (dead
    letters written meanwhile, e.g. by a consumer still failing, wait for the next run)."""

    def __init__(self, bootstrap: str, topic: str, group: str) -> None:
        self.bootstrap = bootstrap
        self.topic = topic
        self.consumer = AIOKafkaConsumer(
            bootstrap_servers=bootstrap,
            group_id=group,
            enable_auto_commit=False,
            auto_offset_reset="earliest",
            client_id="muster-dlq",
        )
        self.partitions: list[TopicPartition] = []
        self.committed: dict[TopicPartition, int] = {}
        self.end: dict[TopicPartition, int] = {}

    async def start(self, *, from_beginning: bool) -> None:
        admin = AIOKafkaAdminClient(bootstrap_servers=self.bootstrap, client_id="muster-dlq")
        try:
            await admin.start()
            if self.topic not in await admin.list_topics():
                raise RedriveError(
                    f"there is no topic {self.topic} on {self.bootstrap}: check the name (a "
                    "topic of the contract, e.g. muster.emergencies) and MUSTER_TOPIC_PREFIX"
                )
            (described,) = await admin.describe_topics([self.topic])
            await self.consumer.start()
        except KafkaConnectionError as exc:
            raise RedriveError(
                f"cannot reach Kafka at {self.bootstrap} ({exc}): check "
                "KAFKA_BOOTSTRAP_SERVERS and that the broker is up, then run this again"
            ) from exc
        finally:
            await admin.close()
        numbers = sorted(p["partition"] for p in described["partitions"])
        self.partitions = [TopicPartition(self.topic, n) for n in numbers]
        self.consumer.assign(self.partitions)
        for partition in self.partitions:
            self.committed[partition] = await self.consumer.committed(partition) or 0
        self.end = await self.consumer.end_offsets(self.partitions)
        if from_beginning:
            await self.consumer.seek_to_beginning(*self.partitions)
        else:
            for partition in self.partitions:
                self.consumer.seek(partition, self.committed[partition])

    async def stop(self) -> None:
        await self.consumer.stop()

    async def batches(self) -> AsyncIterator[list[ConsumerRecord[bytes, bytes]]]:
        """Batches of records, each in partition order, until the start-time end."""
        idle_since = time.monotonic()
        while True:
            open_partitions = [
                p for p in self.partitions if await self.consumer.position(p) < self.end.get(p, 0)
            ]
            if not open_partitions:
                return
            fetched = await self.consumer.getmany(*open_partitions, timeout_ms=1000)
            batch = [
                record
                for partition, records in sorted(fetched.items())
                for record in records
                if record.offset < self.end.get(partition, 0)
            ]
            if batch:
                yield batch
                idle_since = time.monotonic()
            elif time.monotonic() - idle_since > READ_IDLE_TIMEOUT_S:
                raise RedriveError(
                    f"{self.topic} stopped answering before its end: check the broker, "
                    "then run this again (what was committed stays done)"
                )


async def list_dead_letters(settings: MusterSettings, topic: str, group: str) -> int:
    pair = topic_pair(topic, settings.topic_prefix)
    reader = DeadLetterReader(settings.kafka_bootstrap_servers, pair.dead_letters, group)
    try:
        await reader.start(from_beginning=True)
        total = pending = 0
        async for batch in reader.batches():
            for record in batch:
                done = (
                    record.offset < reader.committed[TopicPartition(record.topic, record.partition)]
                )
                total += 1
                pending += not done
                print(describe(record, state="redriven" if done else "pending"))
        print(f"{pair.dead_letters}: {total} dead letters, {pending} not yet redriven")
    finally:
        await reader.stop()
    return 0


async def redrive(
    settings: MusterSettings, topic: str, group: str, *, limit: int | None, dry_run: bool
) -> int:
    pair = topic_pair(topic, settings.topic_prefix)
    reader = DeadLetterReader(settings.kafka_bootstrap_servers, pair.dead_letters, group)
    producer = new_producer(settings.kafka_bootstrap_servers, "muster-dlq-redrive")
    sent = skipped = unpublishable = 0
    sent_origins: set[tuple[str, str, str]] = set()
    try:
        await reader.start(from_beginning=False)
        if not dry_run:
            await producer.start()
        async for batch in reader.batches():
            if limit is not None and sent >= limit:
                break
            if limit is not None:
                batch = batch[: limit - sent]
            futures = []
            done: dict[TopicPartition, int] = {}
            for record in batch:
                done[TopicPartition(record.topic, record.partition)] = record.offset + 1
                source = origin(record.headers or ())
                if parked_by_relay(record.headers or ()):
                    # too large or malformed for the topic: sending it back would fail the
                    # same way; the whole row waits in the service's outbox_parked table
                    unpublishable += 1
                    print(describe(record, state="unpublishable, left in outbox_parked"))
                    continue
                if source is not None and source in sent_origins:
                    skipped += 1  # dead-lettered by several consumer groups: send once
                    continue
                if source is not None:
                    sent_origins.add(source)
                sent += 1
                if dry_run:
                    print(describe(record, state="would"))
                    continue
                futures.append(
                    await producer.send(
                        pair.source,
                        value=record.value,
                        key=record.key,
                        headers=original_headers(record.headers or ()),
                    )
                )
            if dry_run:
                continue
            try:
                await asyncio.gather(*futures)
            except KafkaError as exc:
                raise RedriveError(
                    f"publishing to {pair.source} failed ({exc!r}); nothing after the last "
                    "progress line was committed: run this again (a record sent twice is "
                    "skipped by the idempotent consumers)"
                ) from exc
            await reader.consumer.commit(done)
            print(f"redriven {sent} so far ({skipped} duplicates skipped) to {pair.source}")
    finally:
        await reader.stop()
        if not dry_run:
            await producer.stop()
    if unpublishable:
        print(
            f"{unpublishable} records were set aside by the outbox relay (too large or malformed"
            " for the topic): fix them from the service's outbox_parked table, not by redrive"
        )
    if dry_run:
        print(f"dry run: {sent} dead letters would go back to {pair.source}; nothing sent")
    elif sent == 0:
        print(f"nothing to redrive: {pair.dead_letters} holds no dead letter not sent before")
    else:
        print(f"done: {sent} dead letters sent back to {pair.source}")
    return 0


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m shared.dlq",
        description="List dead letters, or send them back to their topic after a fix.",
    )
    parser.add_argument(
        "--group",
        default=None,
        help=f"consumer group remembering what was redriven (default <prefix>{REDRIVE_GROUP})",
    )
    commands = parser.add_subparsers(dest="command", required=True)
    listing = commands.add_parser("list", help="show every dead letter of TOPIC")
    listing.add_argument("topic", metavar="TOPIC", help="e.g. muster.emergencies")
    again = commands.add_parser("redrive", help="re-publish TOPIC's dead letters to TOPIC")
    again.add_argument("topic", metavar="TOPIC", help="e.g. muster.emergencies")
    again.add_argument("--limit", type=int, default=None, help="send at most N records")
    again.add_argument("--dry-run", action="store_true", help="show, send nothing")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    if getattr(args, "limit", None) is not None and args.limit < 1:
        print("--limit must be 1 or more", file=sys.stderr)
        return 2
    settings = MusterSettings()
    group = args.group or f"{settings.topic_prefix}{REDRIVE_GROUP}"
    try:
        if args.command == "list":
            return asyncio.run(list_dead_letters(settings, args.topic, group))
        return asyncio.run(
            redrive(settings, args.topic, group, limit=args.limit, dry_run=args.dry_run)
        )
    except RedriveError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
