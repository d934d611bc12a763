"""Create Muster's topics (idempotent): `python -m shared.events.provision`.

Used by the local stack, the compose one-shot job and the Kubernetes job, so the
topic list lives in exactly one place (`shared.events.topics`).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import sys

from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from aiokafka.errors import KafkaConnectionError, TopicAlreadyExistsError

from shared.events.topics import TopicSpec, all_topics


async def provision(
    bootstrap: str, specs: list[TopicSpec], replication: int = 1, timeout_s: float = 60.0
) -> list[str]:
    """Create the topics that do not exist yet; return the names created."""
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap, request_timeout_ms=15000)
    deadline = asyncio.get_running_loop().time() + timeout_s
    while True:
        try:
            await admin.start()
            break
        except KafkaConnectionError:
            if asyncio.get_running_loop().time() > deadline:
                raise
            await asyncio.sleep(1)
    try:
        existing = set(await admin.list_topics())
        wanted = [s for s in specs if s.name not in existing]
        if not wanted:
            return []
        new = [
            NewTopic(
                name=s.name,
                num_partitions=s.partitions,
                replication_factor=replication,
                topic_configs=dict(s.config),
            )
            for s in wanted
        ]
        # another provisioner may race us; the topics are there either way
        with contextlib.suppress(TopicAlreadyExistsError):
            await admin.create_topics(new, validate_only=False)
        return [s.name for s in wanted]
    finally:
        await admin.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument(
        "--bootstrap", default=os.environ.get("KAFKA_BOOTSTRAP_SERVERS", "127.0.0.1:9092")
    )
    parser.add_argument("--replication", type=int, default=1)
    parser.add_argument("--prefix", default="", help="topic name prefix (test isolation)")
    args = parser.parse_args()
    try:
        created = asyncio.run(provision(args.bootstrap, all_topics(args.prefix), args.replication))
    except KafkaConnectionError:
        print(
            f"Kafka at {args.bootstrap} did not answer: start it with `make up` "
            "or set KAFKA_BOOTSTRAP_SERVERS.",
            file=sys.stderr,
        )
        sys.exit(1)
    print(f"topics: {len(created)} created, {len(all_topics(args.prefix)) - len(created)} present")


if __name__ == "__main__":
    main()
