"""The targeting index: Redis GEO sets per section plus one hash per member.

Built only from `muster.members.state`. Every write is a Lua script, so it is atomic and
idempotent by the snapshot's `version`: an older or equal version changes nothing, a
tombstone removes the member and leaves a `gone` marker so that a stale snapshot read
later (a rebuild racing the live consumer) cannot bring an erased member back.

Keys (all under the service's Redis prefix):
- `alerts:member:<id>`: hash `v` (version), `s` (section)
- `alerts:snapshots`: hash member id → the snapshot (JSON), fetched many at once
- `alerts:geo:home:<section>` / `alerts:geo:live:<section>`: GEO sets of home and last
  live positions (selection decides which one counts, by the live position's age)
- `alerts:gone:<id>`: the member was erased
- `alerts:phones`: hash E.164 number → member id (whose SMS command this is; the member
  hash keeps its number as `p` so a changed number leaves the map)
- `alerts:index:ready`: the marker; missing means Redis lost the index: rebuild first
"""

from __future__ import annotations

import asyncio
import json
import math
import time
import uuid
from collections.abc import AsyncIterator, Iterable, Sequence
from dataclasses import dataclass
from typing import Any

import redis.asyncio as redis
from aiokafka import AIOKafkaConsumer, TopicPartition
from prometheus_client import Counter, Gauge
from shapely.geometry import shape

from services.alerts.settings import Settings
from shared.events.envelope import decode
from shared.events.members import MemberChanged
from shared.events.topics import MEMBERS_STATE
from shared.observability import get_logger

#: the index's key layout; a marker from an older layout makes the next start rebuild
#: (2: `alerts:phones`, the number → member map SMS commands need)
INDEX_LAYOUT = 2

log = get_logger(__name__)

INDEX_REBUILDS = Counter("muster_alerts_index_rebuilds_total", "Targeting index rebuilds")
INDEX_REBUILD_SECONDS = Gauge(
    "muster_alerts_index_rebuild_seconds", "Duration of the last targeting index rebuild"
)

_UPSERT = """
if redis.call('EXISTS', KEYS[2]) == 1 then return 0 end
local cur = redis.call('HGET', KEYS[1], 'v')
if cur and tonumber(cur) > tonumber(ARGV[1]) then return 0 end
-- the same version again changes nothing, unless it was indexed before the phone map
-- existed: then it fills the map in (a rebuild-index after the upgrade)
if cur and tonumber(cur) == tonumber(ARGV[1]) then
  if ARGV[12] == '' or redis.call('HEXISTS', KEYS[1], 'p') == 1 then return 0 end
end
local oldp = redis.call('HGET', KEYS[1], 'p')
if oldp and oldp ~= ARGV[12] and redis.call('HGET', ARGV[11], oldp) == ARGV[10] then
  redis.call('HDEL', ARGV[11], oldp)
end
if ARGV[12] ~= '' then
  redis.call('HSET', ARGV[11], ARGV[12], ARGV[10])
  redis.call('HSET', KEYS[1], 'p', ARGV[12])
else
  redis.call('HDEL', KEYS[1], 'p')
end
local old = redis.call('HGET', KEYS[1], 's')
if old and old ~= ARGV[2] then
  redis.call('ZREM', ARGV[8] .. old, ARGV[10])
  redis.call('ZREM', ARGV[9] .. old, ARGV[10])
end
if ARGV[4] ~= '' then
  redis.call('GEOADD', KEYS[3], ARGV[4], ARGV[5], ARGV[10])
else
  redis.call('ZREM', KEYS[3], ARGV[10])
end
if ARGV[6] ~= '' then
  redis.call('GEOADD', KEYS[4], ARGV[6], ARGV[7], ARGV[10])
else
  redis.call('ZREM', KEYS[4], ARGV[10])
end
redis.call('HSET', KEYS[1], 'v', ARGV[1], 's', ARGV[2])
redis.call('HSET', KEYS[5], ARGV[10], ARGV[3])
return 1
"""

_DELETE = """
local oldp = redis.call('HGET', KEYS[1], 'p')
if oldp and redis.call('HGET', ARGV[4], oldp) == ARGV[3] then
  redis.call('HDEL', ARGV[4], oldp)
end
local old = redis.call('HGET', KEYS[1], 's')
if old then
  redis.call('ZREM', ARGV[1] .. old, ARGV[3])
  redis.call('ZREM', ARGV[2] .. old, ARGV[3])
end
redis.call('DEL', KEYS[1])
redis.call('HDEL', KEYS[3], ARGV[3])
redis.call('SET', KEYS[2], '1')
return 1
"""


@dataclass(frozen=True)
class SearchArea:
    """A circle to search the GEO sets with (a polygon is searched by its bounding circle)."""

    lat: float
    lon: float
    radius_m: float


def search_area(area: Any, radius_m: float | None = None) -> SearchArea:
    """The circle covering an emergency's area (`radius_m` overrides, for escalations)."""
    if area.polygon:
        polygon = shape(area.polygon)
        centre = polygon.centroid
        lat, lon = float(centre.y), float(centre.x)
        corners = list(polygon.exterior.coords)
        cover = max(haversine_m(lat, lon, float(y), float(x)) for x, y in corners)
        return SearchArea(lat, lon, radius_m or cover + 1.0)
    if area.lat is None or area.lon is None:
        raise ValueError("area needs lat/lon or a polygon")
    return SearchArea(float(area.lat), float(area.lon), float(radius_m or area.radius_m or 0))


def haversine_m(lat1: float, lon1: float, lat2: float, lon2: float) -> float:
    r = 6_371_008.8
    p1, p2 = math.radians(lat1), math.radians(lat2)
    dp, dl = p2 - p1, math.radians(lon2 - lon1)
    a = math.sin(dp / 2) ** 2 + math.cos(p1) * math.cos(p2) * math.sin(dl / 2) ** 2
    return 2 * r * math.asin(min(1.0, math.sqrt(a)))


#: Redis measures on a sphere of 6,372,797.56 m (ours: 6,371,008.8 m, the mean radius)
#: from positions rounded to its 52-bit geohash (about 0.6 m): its distances run up to
#: 0.03 % + 1 m longer than ours, so an area is searched that much wider and no member
#: selection would admit at its edge is left unread
_REDIS_METRE_SLACK = 1.001

#: the first circle a page searches: in the densest part of a large index (hundreds of
#: members a square kilometre) it holds a page or less, so Redis reads few boxes; a
#: sparse index widens it by up to 8x a round trip
FIRST_RING_M = 250.0


@dataclass(frozen=True)
class RingPlan:
    """How wide to search for the next nearest members: pure, so tests can drive it.

    `want` is how many members the pages so far should hold in all; the circle widens by
    the density found so far (members within / area), by at least half its radius so a
    lucky dense spot cannot stall it, at most 8x so a sparse one cannot make Redis read
    a whole country at once, and never past the area."""

    area_m: float
    page: int
    want: int = 0

    def __post_init__(self) -> None:
        if self.want < self.page:
            object.__setattr__(self, "want", self.page)

    def first_radius(self) -> float:
        return min(self.area_m, FIRST_RING_M)

    def widen(self, radius: float, *, within: int) -> float:
        factor = 1.25 * math.sqrt(self.want / max(within, 1))
        return min(self.area_m, radius * min(8.0, max(1.5, factor)))

    def next_page(self) -> RingPlan:
        page = self.page * 2
        return RingPlan(self.area_m, page, self.want + page)


class TargetingIndex:
    def __init__(self, client: redis.Redis, settings: Settings) -> None:
        self.redis = client
        self.settings = settings
        self._upsert = client.register_script(_UPSERT)
        self._delete = client.register_script(_DELETE)
        self._geo_home = settings.key("geo", "home", "")
        self._geo_live = settings.key("geo", "live", "")
        self._snapshots = settings.key("snapshots")
        self._phones = settings.key("phones")
        self.ready_key = settings.key("index", "ready")
        self._lock_key = settings.key("index", "rebuild-lock")
        self._rebuild_guard = asyncio.Lock()

    def _member_key(self, member_id: str) -> str:
        return self.settings.key("member", member_id)

    def _gone_key(self, member_id: str) -> str:
        return self.settings.key("gone", member_id)

    def _upsert_args(self, member: MemberChanged) -> tuple[list[str], list[Any]]:
        mid = str(member.member_id)
        home = member.home
        live = member.live
        keys = [
            self._member_key(mid),
            self._gone_key(mid),
            self._geo_home + member.section,
            self._geo_live + member.section,
            self._snapshots,
        ]
        args: list[Any] = [
            member.version,
            member.section,
            member.model_dump_json(),
            home.lon if home else "",
            home.lat if home else "",
            live.lon if live else "",
            live.lat if live else "",
            self._geo_home,
            self._geo_live,
            mid,
            self._phones,
            member.phone or "",
        ]
        return keys, args

    async def upsert(self, member: MemberChanged) -> bool:
        """Apply a snapshot; False when the index already has this version or a newer one."""
        keys, args = self._upsert_args(member)
        return bool(await self._upsert(keys=keys, args=args))

    async def upsert_many(self, members: Sequence[MemberChanged]) -> None:
        pipe = self.redis.pipeline(transaction=False)
        for member in members:
            keys, args = self._upsert_args(member)
            await self._upsert(keys=keys, args=args, client=pipe)
        await pipe.execute()

    async def delete(self, member_id: str) -> None:
        await self._delete(
            keys=[self._member_key(member_id), self._gone_key(member_id), self._snapshots],
            args=[self._geo_home, self._geo_live, member_id, self._phones],
        )

    async def member_by_phone(self, phone: str) -> MemberChanged | None:
        """The member whose number this is (an SMS command's sender), if indexed."""
        member_id = await self.redis.hget(self._phones, phone)
        if member_id is None:
            return None
        found = await self.members(
            [member_id.decode() if isinstance(member_id, bytes) else str(member_id)]
        )
        return found[0] if found else None

    async def scan_members(self, batch: int = 2000) -> AsyncIterator[list[MemberChanged]]:
        """Every indexed snapshot, a batch at a time (HSCAN: Redis is never blocked)."""
        cursor = 0
        while True:
            cursor, found = await self.redis.hscan(self._snapshots, cursor, count=batch)
            if isinstance(found, dict) and found:
                yield [MemberChanged.model_validate_json(raw) for raw in found.values()]
            if cursor == 0:
                return

    async def candidates(self, sections: Iterable[str], where: SearchArea) -> list[MemberChanged]:
        """Every indexed member of `sections` whose home or live position is within
        `where` (the selection decides which position counts and applies the rules)."""
        pipe = self.redis.pipeline(transaction=False)
        for section in dict.fromkeys(sections):
            for prefix in (self._geo_home, self._geo_live):
                pipe.geosearch(
                    prefix + section,
                    longitude=where.lon,
                    latitude=where.lat,
                    radius=max(where.radius_m, 1.0),
                    unit="m",
                )
        ids: dict[bytes, None] = {}
        for found in await pipe.execute():
            for member_id in found:
                ids[member_id] = None
        return await self.members([m.decode() for m in ids])

    async def nearest_ids(
        self, sections: Iterable[str], where: SearchArea
    ) -> list[tuple[float, str]]:
        """(distance, member id) of every member of `sections` whose home or live
        position is within `where`, nearest first, each member once at the smaller of
        its two distances: a lower bound of the distance selection will use."""
        pipe = self.redis.pipeline(transaction=False)
        for section in dict.fromkeys(sections):
            for prefix in (self._geo_home, self._geo_live):
                pipe.geosearch(
                    prefix + section,
                    longitude=where.lon,
                    latitude=where.lat,
                    radius=max(where.radius_m, 1.0),
                    unit="m",
                    withdist=True,
                    sort="ASC",
                )
        best: dict[str, float] = {}
        for found in await pipe.execute():
            for raw_id, dist in found:
                mid = raw_id.decode()
                d = float(dist)
                if d < best.get(mid, math.inf):
                    best[mid] = d
        return sorted((d, mid) for mid, d in best.items())

    async def nearest_pages(
        self, sections: Iterable[str], where: SearchArea, first_page: int
    ) -> AsyncIterator[tuple[list[MemberChanged], float]]:
        """Snapshots of the members nearest to the area's centre, in pages of at least
        `first_page` members (then twice as many each page), each page with a lower bound
        (Redis's metres) of the distance of every member not yet returned: inf after the
        last page.

        Redis's GEOSEARCH reads every member of the geohash boxes covering the radius it
        is given, whatever its COUNT: searching a 15 km area for its nearest 100 reads the
        whole area. So each page searches a small circle first and widens it, by the
        density it found so far, until the page is full or the area is covered: a wide
        area costs what its nearest members cost."""
        plan = RingPlan(where.radius_m * _REDIS_METRE_SLACK + 1.0, max(first_page, 1))
        seen: set[str] = set()
        keys = [
            prefix + section
            for section in dict.fromkeys(sections)
            for prefix in (self._geo_home, self._geo_live)
        ]
        radius = plan.first_radius()
        while True:
            fresh: list[tuple[float, str]] = []
            while True:
                # only as many more as the page still lacks: what a ring reads beyond
                # that is decoded and judged for nothing
                wanted = plan.page - len(fresh)
                found, bound = await self._ring(keys, where, radius, wanted, seen)
                fresh.extend(found)
                seen.update(mid for _, mid in found)
                if len(fresh) >= plan.page or bound == math.inf:
                    break
                radius = plan.widen(radius, within=len(seen))
            fresh.sort()
            yield await self.members([mid for _, mid in fresh]), bound
            if bound == math.inf:
                return
            plan = plan.next_page()
            radius = plan.widen(radius, within=len(seen))

    async def _ring(
        self, keys: Sequence[str], where: SearchArea, radius: float, count: int, seen: set[str]
    ) -> tuple[list[tuple[float, str]], float]:
        """(distance, id) of the members within `radius` not in `seen`, each at the
        smaller of its distances in `keys`, at most the nearest `count` + len(seen) of
        each set; and the lower bound of the distance of every member still unseen."""
        pipe = self.redis.pipeline(transaction=False)
        limit = count + len(seen)
        for key in keys:
            pipe.geosearch(
                key,
                longitude=where.lon,
                latitude=where.lat,
                radius=max(radius, 1.0),
                unit="m",
                withdist=True,
                sort="ASC",
                count=limit,
            )
        # every member within the radius was returned, unless a set hit its COUNT: then
        # the unreturned of that set are no nearer than its last
        covers_area = radius >= where.radius_m * _REDIS_METRE_SLACK + 1.0
        bound = math.inf if covers_area else radius
        best: dict[str, float] = {}
        for found in await pipe.execute():
            if len(found) >= limit:
                bound = min(bound, float(found[-1][1]))
            for raw_id, dist in found:
                mid = raw_id.decode()
                if mid not in seen:
                    best[mid] = min(float(dist), best.get(mid, math.inf))
        return [(d, mid) for mid, d in best.items()], bound

    async def members(self, member_ids: Sequence[str]) -> list[MemberChanged]:
        out: list[MemberChanged] = []
        chunk = 5000
        for start in range(0, len(member_ids), chunk):
            found = await self.redis.hmget(self._snapshots, list(member_ids[start : start + chunk]))
            out.extend(MemberChanged.model_validate_json(raw) for raw in found if raw is not None)
        return out

    # --- the marker and the rebuild -------------------------------------------------

    async def is_ready(self) -> bool:
        """The marker is there and was written by a rebuild of the current layout (an
        index built before the number map existed must be rebuilt once, by itself, rather
        than wait for an operator to run `rebuild-index`)."""
        marker = await self.redis.get(self.ready_key)
        if marker is None:
            return False
        try:
            layout = json.loads(marker).get("layout", 1)
        except (ValueError, AttributeError):
            return False
        return isinstance(layout, int) and layout >= INDEX_LAYOUT

    async def ensure_ready(self, timeout_s: float = 600.0) -> None:
        """Return once the index is complete; rebuild it from Kafka if the marker is gone
        (one process rebuilds, the others wait for the marker)."""
        if await self.is_ready():
            return
        async with self._rebuild_guard:
            deadline = time.monotonic() + timeout_s
            while not await self.is_ready():
                owner = uuid.uuid4().hex
                if await self.redis.set(self._lock_key, owner, nx=True, ex=300):
                    try:
                        await self.rebuild()
                    finally:
                        if await self.redis.get(self._lock_key) == owner.encode():
                            await self.redis.delete(self._lock_key)
                    return
                if time.monotonic() > deadline:
                    raise TimeoutError("the targeting index was not rebuilt in time")
                await asyncio.sleep(0.2)

    async def rebuild(self) -> int:
        """Read the compacted member topic from the beginning to its current end and apply
        every snapshot and tombstone; then set the marker. Returns the records applied."""
        started = time.monotonic()
        topic = self.settings.topic(MEMBERS_STATE)
        consumer = AIOKafkaConsumer(
            bootstrap_servers=self.settings.kafka_bootstrap_servers,
            enable_auto_commit=False,
            client_id=f"muster-{self.settings.service_name}-rebuild",
            max_partition_fetch_bytes=4 * 1024 * 1024,
        )
        await consumer.start()
        applied = 0
        try:
            partitions = consumer.partitions_for_topic(topic)
            if partitions is None:
                await consumer._client.force_metadata_update()
                partitions = consumer.partitions_for_topic(topic) or set()
            tps = [TopicPartition(topic, p) for p in sorted(partitions)]
            consumer.assign(tps)
            await consumer.seek_to_beginning(*tps)
            ends = await consumer.end_offsets(tps)
            remaining = {tp for tp in tps if ends[tp] > 0}
            for tp in tps:
                if tp in remaining and await consumer.position(tp) >= ends[tp]:
                    remaining.discard(tp)
            while remaining:
                batch = await consumer.getmany(*remaining, timeout_ms=500, max_records=5000)
                snapshots: list[MemberChanged] = []
                for tp, records in batch.items():
                    for record in records:
                        if record.offset >= ends[tp]:
                            continue
                        applied += 1
                        if record.value is None:
                            if snapshots:
                                await self.upsert_many(snapshots)
                                snapshots = []
                            if record.key:
                                await self.delete(record.key.decode())
                            continue
                        try:
                            envelope = decode(record.value, record.headers, record.key)
                            if envelope.type == MemberChanged.event_type:
                                snapshots.append(MemberChanged.model_validate(envelope.data))
                        except Exception as exc:  # the live consumer dead-letters it
                            log.warning("rebuild skipped a record", error=type(exc).__name__)
                if snapshots:
                    await self.upsert_many(snapshots)
                for tp in list(remaining):
                    if await consumer.position(tp) >= ends[tp]:
                        remaining.discard(tp)
        finally:
            await consumer.stop()
        await self.redis.set(
            self.ready_key, json.dumps({"rebuilt_at": time.time(), "layout": INDEX_LAYOUT})
        )
        elapsed = time.monotonic() - started
        INDEX_REBUILDS.inc()
        INDEX_REBUILD_SECONDS.set(elapsed)
        log.info("targeting index rebuilt", records=applied, seconds=round(elapsed, 3))
        return applied


async def rebuild_index(settings: Settings) -> int:
    """`python -m services.alerts rebuild-index`: rebuild now, whatever the marker says."""
    client = redis.Redis.from_url(settings.redis_url)
    try:
        return await TargetingIndex(client, settings).rebuild()
    finally:
        await client.aclose()
