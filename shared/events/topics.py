"""Kafka topics of the contract: names, partition counts, configuration.

One place for every topic so that provisioning (local stack, compose job, k8s job),
producers and consumers agree. Partition counts are sized for a single organisation:
keys (member id, emergency id) spread well over a dozen partitions, and more
partitions than alerts instances lets the group scale out.
"""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass(frozen=True)
class TopicSpec:
    name: str
    partitions: int
    config: dict[str, str] = field(default_factory=dict)

    @property
    def dlq(self) -> str:
        return dead_letter_topic(self.name)


MEMBERS_STATE = "muster.members.state"
EMERGENCIES = "muster.emergencies"
ALERTS = "muster.alerts"
RESPONSES = "muster.responses"
AVAILABILITY = "muster.availability"
#: what a member asked for themselves (SMS command or personal page), published by alerts
#: and applied by members, which alone writes member data (issue 11, self-service)
MEMBERS_REQUESTS = "muster.members.requests"

DLQ_SUFFIX = ".dlq"


def dead_letter_topic(topic: str) -> str:
    return f"{topic}{DLQ_SUFFIX}"


TOPICS: tuple[TopicSpec, ...] = (
    # Compacted: the latest snapshot per member is the alerts service's source of truth,
    # and a tombstone erases a member for good once compaction runs.
    TopicSpec(
        MEMBERS_STATE,
        12,
        {
            "cleanup.policy": "compact",
            "min.compaction.lag.ms": "0",
            "delete.retention.ms": "86400000",
            "segment.ms": "3600000",
        },
    ),
    TopicSpec(EMERGENCIES, 12, {"retention.ms": str(90 * 24 * 3600 * 1000)}),
    TopicSpec(ALERTS, 12, {"retention.ms": str(90 * 24 * 3600 * 1000)}),
    TopicSpec(RESPONSES, 12, {"retention.ms": str(90 * 24 * 3600 * 1000)}),
    TopicSpec(AVAILABILITY, 6, {"retention.ms": str(30 * 24 * 3600 * 1000)}),
    TopicSpec(MEMBERS_REQUESTS, 12, {"retention.ms": str(30 * 24 * 3600 * 1000)}),
)


def all_topics(prefix: str = "", max_partitions: int | None = None) -> list[TopicSpec]:
    """Every topic with its dead-letter topic; `prefix` isolates test runs, and
    `max_partitions` keeps a test's throwaway topics small."""

    def count(n: int) -> int:
        return min(n, max_partitions) if max_partitions else n

    specs: list[TopicSpec] = []
    for spec in TOPICS:
        specs.append(TopicSpec(prefix + spec.name, count(spec.partitions), dict(spec.config)))
        dlq_config = {"retention.ms": str(30 * 24 * 3600 * 1000)}
        specs.append(TopicSpec(prefix + spec.dlq, count(3), dlq_config))
    return specs
