"""Answers held at a steady rate (issue 9 item 4): signed Twilio webhooks to
`/sms/inbound` and POSTs to the `/r/{token}` page, open loop at R answers/s for D seconds,
with a console on the board's SSE stream timing each reply to its `row` event.

Alerts and dispatch run as real processes on one prefix of topics, the local
Twilio-compatible gateway in a process of its own. N member snapshots are published to
`members.state`, an emergency is declared through dispatch's `POST /emergencies`
(`members_needed` = N, over-alert factor 1, so every member is alerted and the
emergency is never staffed), alerts texts all N and the board shows their rows: the
phones and tokens the load uses are those of the SMS the gateway received.

The load generator runs in a process of its own (its CPU does not share a GIL with the
console's listener; `time.monotonic()` is the system's clock in both). Send i is due
at t0 + i / R whatever the earlier ones are doing (open loop: a slow service makes
requests queue, and their wait counts; but with a second's answers in flight, or the
oldest waiting more than BACKLOG_S, an answer due is counted as not sent rather than
queued); it goes to member i mod N, alternately by SMS
("YES 15" / "NO") and on the page ("15" / "no"), each member's answers alternating
between yes and no (half start with yes), so every answer changes the member's row.
Reply -> SSE is from when the request was sent to when the console received the row
event showing it. A row event showing a member's later answer also shows the earlier
ones it folded in (a batch may apply a run of a member's answers in one row change):
`shown_by`.

Sizes: R = BENCH_ANSWERS_RATE (500/s, the issue's; quick 50/s, already more than alerts
handles on the shared 2-core machine, so the quick run reads its ceiling),
D = BENCH_ANSWERS_SECONDS (60 s; quick 10 s), N = BENCH_ANSWERS_MEMBERS (1,000; quick
150); BENCH_FULL=1 runs the default sizes (they are the issue's).
BENCH_ANSWERS_CHANNEL=sms or web sends every answer that way. BENCH_PROFILE=1 records
alerts and dispatch with py-spy during the load (CPU samples only, 100 a second: raw
collapsed stacks in bench/results/answers-profile-*).
The rate limits of the answer page are lifted for this run's own alerts process: it
measures the answers, not the limiter (a 429, like any 4xx, stops the benchmark: it is
its own mistake; an overloaded service's 503s and timeouts are counted as HTTP errors).
"""

from __future__ import annotations

import asyncio
import json
import os
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from collections import Counter, defaultdict
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import redis.asyncio as redis
from aiokafka import AIOKafkaProducer
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine, create_async_engine

from bench import results
from shared.events.catalog import make_envelope
from shared.events.envelope import encode
from shared.events.provision import provision
from shared.events.topics import MEMBERS_STATE, all_topics
from shared.settings import MusterSettings
from tests.alerts.fake_twilio import AUTH_TOKEN, GatewayProcess
from tests.alerts.members import CENTRE, member, wait_indexed
from tests.support.processes import ServiceProcess, run_migrations, start_service
from tests.support.tokens import TestKey, bearer

MODULE = "answers"
QUICK = bool(os.environ.get("BENCH_QUICK"))
PUBLIC_BASE = "https://alerts.muster.test"
#: connections of the generator's pool: more than it ever has in flight (at most a
#: second's answers, at least 64), so no answer waits for a connection on the client
CONNECTIONS = 1024
#: with a second's answers in flight, or once the oldest request has waited this long,
#: answers due are not sent (counted as not sent: the achieved rate falls below the
#: offered one) rather than queued for minutes on a machine others share; 3 s in quick
BACKLOG_S = 10.0
#: the status the generator records for an answer it did not send (backlog full)
NOT_SENT = -1


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(len(ordered) * q))]


# --- what is sent, and what the console saw: pure ----------------------------------------


@dataclass(frozen=True)
class Sent:
    index: int
    member: int
    channel: str
    yes: bool
    sent_at: float
    status: int
    done_at: float


@dataclass(frozen=True)
class Seen:
    """A row event on the console: the member's row now says yes (accepted or standby)
    or no (declined), answered at `answered_at` (as alerts recorded it), which is
    `answered` on this machine's monotonic clock; the console received it at `at`."""

    member: int
    yes: bool
    answered_at: str
    answered: float
    at: float


def shown_by(sent: list[Sent], seen: list[Seen]) -> dict[int, Seen]:
    """Send index -> the row event that showed it on the console.

    Per member, answers are recorded and applied in order (one emergency: one
    partition, one board transaction after another), and a row event shows the last
    answer its transaction applied: the last pending answer of that member, yes or no as
    the row says, sent before alerts recorded it (`answered`). It and every pending answer
    before it (folded into the same row change) are shown by that event. A repeated event
    (same answered_at: a snapshot after a reconnect) shows nothing new.

    A member's answers alternate yes / no, N / R seconds apart: the rule is exact while
    alerts records an answer within twice that of its request (then the next answer of
    the same kind was not yet sent); past that the service is seconds behind anyway."""
    pending: dict[int, list[Sent]] = defaultdict(list)
    for item in sorted(sent, key=lambda s: s.index):
        if item.status == 200:
            pending[item.member].append(item)
    last: dict[int, str] = {}
    shown: dict[int, Seen] = {}
    for event in sorted(seen, key=lambda e: e.at):
        if last.get(event.member) == event.answered_at:
            continue
        last[event.member] = event.answered_at
        queue = pending[event.member]
        match = None
        for j, item in enumerate(queue):
            if item.sent_at > min(event.answered, event.at):
                break
            if item.yes == event.yes:
                match = j
        if match is not None:
            for earlier in queue[: match + 1]:
                shown[earlier.index] = event
            del queue[: match + 1]
    return shown


def reply_latencies(sent: list[Sent], seen: list[Seen]) -> dict[int, float]:
    """Send index -> seconds from its request to the row event that showed it."""
    by_index = {s.index: s for s in sent}
    return {i: e.at - by_index[i].sent_at for i, e in shown_by(sent, seen).items()}


# --- the load generator, in a process of its own ------------------------------------------
#
# A script of its own (as bench.floors runs its HTTP client): it imports only aiohttp and
# Twilio's validator, so it starts in a moment, and it shares no GIL with the console's
# listener here. It reads its plan from a JSON file and writes one JSON line per answer.

GENERATOR = r"""
import asyncio, json, sys, time, uuid
from collections import Counter
import aiohttp
from twilio.request_validator import RequestValidator

config = json.load(open(sys.argv[1]))
validator = RequestValidator(config["auth_token"])


def plan(index, members):
    # member index mod N; a member's k-th answer alternates yes / no (half start with
    # yes, so the emergency is never staffed); the channel alternates with the send and
    # with each round over the members, so each member uses both
    member, round_ = index % members, index // members
    channel = config["channel"] or ("sms" if (index + round_) % 2 == 0 else "web")
    return member, channel, (member + round_) % 2 == 0


async def main():
    url, rate, seconds = config["url"], config["rate"], config["seconds"]
    phones, tokens, backlog_s = config["phones"], config["tokens"], config["backlog_s"]
    connector = aiohttp.TCPConnector(limit=config["connections"])
    lines, errors, in_flight = [], Counter(), {}
    async with aiohttp.ClientSession(
        connector=connector, timeout=aiohttp.ClientTimeout(total=120)
    ) as session:
        # the floor: this client against the same service's cheapest route, 64 in flight
        done, end = 0, time.monotonic() + config["floor_seconds"]

        async def worker():
            nonlocal done
            while time.monotonic() < end:
                async with session.get(url + "/healthz") as response:
                    await response.read()
                done += 1

        started = time.monotonic()
        await asyncio.gather(*(worker() for _ in range(64)))
        floor = done / (time.monotonic() - started)
        print(json.dumps({"floor": floor}), flush=True)
        sys.stdin.readline()  # the benchmark is ready for the load (CPU counters, profiler)

        async def send(index, member, channel, yes):
            if channel == "sms":
                data = {"From": phones[member], "To": "+15005550006",
                        "Body": "YES 15" if yes else "NO", "MessageSid": f"SM{uuid.uuid4().hex}"}
                inbound = config["public_base"] + "/sms/inbound"
                signature = validator.compute_signature(inbound, data)
                path, headers = "/sms/inbound", {"X-Twilio-Signature": signature}
            else:
                data, path, headers = {"choice": "15" if yes else "no"}, f"/r/{tokens[member]}", {}
            sent_at = time.monotonic()
            in_flight[index] = sent_at
            try:
                async with session.post(url + path, data=data, headers=headers) as response:
                    await response.read()
                    status = response.status
            except (aiohttp.ClientError, asyncio.TimeoutError):
                status = 0
            del in_flight[index]
            if status != 200:
                errors[status] += 1
            lines.append([index, member, channel, yes, sent_at, status, time.monotonic()])

        total, tasks, skipped = int(rate * seconds), set(), 0
        limit = max(64, int(rate))
        t0 = last_print = time.monotonic()
        index = 0
        while index < total:
            now = time.monotonic()
            # open loop: send i is due at t0 + i / rate, whatever the earlier ones do; but
            # with a second's answers in flight, or the oldest waiting more than backlog_s,
            # answers due are not sent (the service is that far behind)
            behind = len(in_flight) >= limit or (
                in_flight and now - min(in_flight.values()) > backlog_s
            )
            while index < min(total, int((now - t0) * rate) + 1):
                member, channel, yes = plan(index, len(phones))
                if behind or len(in_flight) >= limit:
                    skipped += 1
                    lines.append([index, member, channel, yes, now, -1, now])
                else:
                    in_flight[index] = now  # counted at once; the send sets its own time
                    task = asyncio.create_task(send(index, member, channel, yes))
                    tasks.add(task)
                    task.add_done_callback(tasks.discard)
                index += 1
            if now - last_print >= 1.0:
                last_print, sent = now, index - skipped
                print(f"  load: {now - t0:5.1f} s, {sent:,} sent ({sent / (now - t0):,.0f}/s), "
                      f"{len(lines) - skipped:,} answered, {len(tasks)} in flight, errors "
                      f"{dict(errors)}, {skipped:,} not sent (backlog full)", flush=True)
            await asyncio.sleep(max(0.0, t0 + index / rate - time.monotonic()))
        if tasks:
            await asyncio.wait(tasks)
    with open(config["out"], "w") as out:
        for line in lines:
            out.write(json.dumps(line) + "\n")


asyncio.run(main())
"""


async def run_load(
    config: dict[str, Any], folder: Path, before_load: Callable[[float], Awaitable[None]]
) -> list[Sent]:
    """Every answer planned (sent or not). `before_load` gets the floor's rate once the
    generator has measured it, and the load starts when it returns."""
    path = folder / "load.json"
    out = folder / "sent.jsonl"
    path.write_text(json.dumps({**config, "out": str(out)}))
    process = await asyncio.create_subprocess_exec(
        sys.executable, "-c", GENERATOR, str(path), cwd=Path(__file__).parent.parent,
        stdin=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.PIPE,
    )  # fmt: skip
    assert process.stdin is not None and process.stdout is not None
    async for raw in process.stdout:
        line = raw.decode().rstrip()
        if line.startswith('{"floor"'):
            await before_load(float(json.loads(line)["floor"]))
            process.stdin.write(b"go\n")
            await process.stdin.drain()
        else:
            print(line, flush=True)
    if await process.wait() != 0:
        raise RuntimeError(f"the load generator exited with {process.returncode}")
    return [Sent(*json.loads(line)) for line in out.read_text().splitlines() if line]


# --- the console ---------------------------------------------------------------------------


@dataclass
class Console:
    """The board's SSE stream as a console reads it; reconnects when cut off."""

    url: str
    headers: dict[str, str]
    member_of: dict[str, int]
    seen: list[Seen] = field(default_factory=list)
    snapshots: int = 0
    ready: asyncio.Event = field(default_factory=asyncio.Event)

    async def listen(self) -> None:
        async with httpx.AsyncClient(timeout=None) as client:
            while True:
                async with client.stream("GET", self.url, headers=self.headers) as response:
                    event = None
                    async for line in response.aiter_lines():
                        if line.startswith("event:"):
                            event = line.split(":", 1)[1].strip()
                        elif line.startswith("data:") and event == "board":
                            self._snapshot(json.loads(line[5:]))
                        elif line.startswith("data:") and event == "row":
                            self._row(json.loads(line[5:]), time.monotonic())

    def _snapshot(self, board: dict[str, Any]) -> None:
        self.snapshots += 1
        at = time.monotonic()
        if self.snapshots > 1:  # after a cut-off: the snapshot shows what the lost events did
            for row in board["rows"]:
                self._row(row, at)
        self.ready.set()

    def _row(self, row: dict[str, Any], at: float) -> None:
        index = self.member_of.get(row["member_id"])
        if index is None or row["status"] not in ("accepted", "standby", "declined"):
            return
        yes = row["status"] != "declined"
        answered_at = str(row["answered_at"])
        # alerts' wall clock onto this machine's monotonic one, the senders' clock
        wall = datetime.fromisoformat(answered_at).timestamp()
        answered = wall - (time.time() - time.monotonic())
        self.seen.append(Seen(index, yes, answered_at, answered, at))


# --- the run -------------------------------------------------------------------------------


@dataclass(frozen=True)
class Hops:
    """One `response.received` on its way, on the database clocks (this machine's)."""

    #: the alerts transaction that recorded the answer began (its outbox row's now())
    recorded: datetime
    #: dispatch's transaction applying it began (its processed_events row's now())
    applied: datetime | None


async def hops(engine: AsyncEngine, alerts: str, dispatch: str) -> dict[tuple[str, datetime], Hops]:
    """(member id, responded_at) -> the hops of that answer's event."""
    async with engine.connect() as conn:
        rows = (
            await conn.execute(
                text(
                    f"SELECT o.value, o.created_at, p.processed_at "
                    f'FROM "{alerts}".outbox o LEFT JOIN "{dispatch}".processed_events p '
                    f"ON p.event_id = o.event_id WHERE o.event_type = :t"
                ),
                {"t": "muster.response.received.v1"},
            )
        ).all()
    found: dict[tuple[str, datetime], Hops] = {}
    for value, created, processed in rows:
        data = json.loads(value)["data"]
        answered = datetime.fromisoformat(data["responded_at"])
        found[(data["member_id"], answered)] = Hops(created, processed)
    return found


def cpu_seconds(pid: int) -> float:
    """User + system CPU the process has used (Linux /proc)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


async def _board_rows(engine: AsyncEngine, schema: str, emergency_id: str) -> int:
    async with engine.connect() as conn:
        found = await conn.execute(
            text(f'SELECT count(*) FROM "{schema}".board_rows WHERE emergency_id = :e'),
            {"e": emergency_id},
        )
        return int(found.scalar_one())


def start_profiles(services: list[ServiceProcess], out_dir: Path) -> list[subprocess.Popen[bytes]]:
    spy = shutil.which("py-spy") or str(Path(sys.executable).parent / "py-spy")
    if not Path(spy).exists():
        print("BENCH_PROFILE: py-spy not installed; no profile")
        return []
    out_dir.mkdir(exist_ok=True)
    return [
        subprocess.Popen(
            [
                spy,
                "record",
                "--pid",
                str(s.process.pid),
                "--rate",
                "100",
                "--format",
                "raw",
                # no --idle: what the processes compute per answer, not what they wait for
                "--output",
                str(out_dir / f"answers-profile-{s.name}.txt"),
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        for s in services
    ]


async def main() -> None:
    rate = float(os.environ.get("BENCH_ANSWERS_RATE", "50" if QUICK else "500"))
    seconds = float(os.environ.get("BENCH_ANSWERS_SECONDS", "10" if QUICK else "60"))
    n = int(os.environ.get("BENCH_ANSWERS_MEMBERS", "150" if QUICK else "1000"))
    # one channel only (sms or web), to read each one's CPU per answer on its own
    channel = os.environ.get("BENCH_ANSWERS_CHANNEL", "")
    if channel not in ("", "sms", "web"):
        raise SystemExit("BENCH_ANSWERS_CHANNEL: sms, web or empty (both, alternating)")
    settings = MusterSettings()
    run = uuid.uuid4().hex[:8]
    prefix = f"bench{run}."
    schemas = {name: f"bench_{name}_{run}" for name in ("alerts", "dispatch")}
    await provision(settings.kafka_bootstrap_servers, all_topics(prefix))
    key = TestKey()
    logs = Path(tempfile.mkdtemp(prefix="bench-answers-"))
    jwks = key.write_jwks(logs / "jwks.json")
    gateway = GatewayProcess().start()
    base = {
        "KAFKA_BOOTSTRAP_SERVERS": settings.kafka_bootstrap_servers,
        "DATABASE_URL": settings.database_url,
        "REDIS_URL": settings.redis_url,
        "MUSTER_TOPIC_PREFIX": prefix,
        "MUSTER_LOG_LEVEL": os.environ.get("MUSTER_LOG_LEVEL", "WARNING"),
        "MUSTER_JWKS_URL": jwks,
    }
    envs = {
        name: {
            **base,
            "MUSTER_DB_SCHEMA": schema,
            "MUSTER_GROUP_ID": f"bench-{run}-{name}",
            "MUSTER_REDIS_PREFIX": prefix,
        }
        for name, schema in schemas.items()
    }
    envs["alerts"] |= {
        **gateway.env(),
        "MUSTER_PUBLIC_BASE_URL": PUBLIC_BASE,
        "ALERTS_SMS_RATE_PER_S": "100000",
        "ALERTS_OVER_ALERT_FACTOR": "1",
        # the page's limits (30 a token, 120 an address a minute) would refuse the
        # benchmark's own answers, all from 127.0.0.1
        "ALERTS_ANSWER_RATE_PER_TOKEN_PER_MIN": "1000000",
        "ALERTS_ANSWER_RATE_PER_IP_PER_MIN": "100000000",
    }
    envs["dispatch"] |= {
        "DISPATCH_OVER_ALERT_FACTOR": "1",
        "DISPATCH_APPROVAL_MEMBERS": "1000000",
        "DISPATCH_ESCALATION_DELAY_S": "3600",
        "DISPATCH_ESCALATION_DELAY_EXTREME_S": "3600",
        # the console must see every change to time it: a real console that falls this
        # far behind is cut off and reloads (counted below if it happens all the same)
        "DISPATCH_BOARD_STREAM_QUEUE": "100000",
    }
    engine = create_async_engine(settings.database_url, pool_size=1)
    client = redis.Redis.from_url(settings.redis_url)
    people = [
        member(lat=CENTRE[0] + (i % 100) * 0.0002, lon=CENTRE[1] + (i // 100) * 0.0002)
        for i in range(n)
    ]
    started: list[ServiceProcess] = []
    profilers: list[subprocess.Popen[bytes]] = []
    listener: asyncio.Task[None] | None = None
    setup_started = time.monotonic()

    def step(what: str) -> None:
        print(f"  setup: {what} ({time.monotonic() - setup_started:.1f} s)", flush=True)

    try:
        async with engine.begin() as conn:
            for schema in schemas.values():
                await conn.execute(text(f'CREATE SCHEMA "{schema}"'))
        await asyncio.gather(
            *(asyncio.to_thread(run_migrations, name, env) for name, env in envs.items())
        )
        producer = AIOKafkaProducer(
            bootstrap_servers=settings.kafka_bootstrap_servers,
            acks="all",
            enable_idempotence=True,
            linger_ms=10,
        )
        await producer.start()
        try:
            futures = []
            for m in people:
                record = encode(make_envelope(m, source="bench"))
                futures.append(
                    await producer.send(prefix + MEMBERS_STATE, value=record.value, key=record.key)
                )
            await asyncio.gather(*futures)
        finally:
            await producer.stop()
        step("migrated, members published")
        started.extend(
            await asyncio.gather(
                *(asyncio.to_thread(start_service, name, env, logs) for name, env in envs.items())
            )
        )
        alerts, dispatch = started
        step("alerts and dispatch ready")
        await wait_indexed(client, prefix, people, timeout_s=300)
        step(f"{n} members indexed")
        headers = bearer(key.token("coordinator", ["AL"]))
        async with httpx.AsyncClient(base_url=dispatch.url, timeout=60) as http:
            created = await http.post(
                "/emergencies",
                json={
                    "section": "AL",
                    "title": "Answers bench",
                    "severity": "Severe",
                    "area": {"lat": CENTRE[0], "lon": CENTRE[1], "radius_m": 5000},
                    "required_qualifications": ["FIRST_AID"],
                    "members_needed": n,
                },
                headers=headers,
            )
            if created.status_code != 201:
                raise SystemExit(f"POST /emergencies: {created.status_code} {created.text}")
            emergency_id = created.json()["id"]
        step("declared")
        deadline = time.monotonic() + 300
        async with httpx.AsyncClient(timeout=60) as http:
            while await gateway.count(http) < n:
                if time.monotonic() > deadline:
                    raise SystemExit(f"fewer than {n} SMS at the gateway: see {logs}")
                await asyncio.sleep(0.1)
            texted = await gateway.messages(http)
        token_of = {}
        for sms in texted:
            found = re.search(r"/r/([A-Za-z0-9_-]+)", sms.body)
            if found:
                token_of[sms.to] = found.group(1)
        phones = [m.phone or "" for m in people]
        missing = [p for p in phones if p not in token_of]
        if missing:
            raise SystemExit(f"{len(missing)} members got no SMS with a link: see {logs}")
        step(f"{n} SMS at the gateway")
        while await _board_rows(engine, schemas["dispatch"], emergency_id) < n:
            if time.monotonic() > deadline:
                raise SystemExit(f"the board never showed the {n} members: see {logs}")
            await asyncio.sleep(0.1)
        console = Console(
            url=f"{dispatch.url}/emergencies/{emergency_id}/stream",
            headers=headers,
            member_of={str(m.member_id): i for i, m in enumerate(people)},
        )
        listener = asyncio.create_task(console.listen())
        await asyncio.wait_for(console.ready.wait(), 60)
        print(
            f"{n} members alerted, on the board and on the console "
            f"(setup {time.monotonic() - setup_started:.1f} s)",
            flush=True,
        )

        floor_rate = 0.0
        load_started = 0.0
        cpu_before: dict[str, float] = {}
        idle: dict[str, float] = {}

        async def before_load(rate_measured: float) -> None:
            nonlocal floor_rate, load_started, cpu_before, profilers, idle
            floor_rate = rate_measured
            print(f"floor: the generator's client against alerts' GET /healthz: "
                  f"{floor_rate:,.0f} requests/s", flush=True)  # fmt: skip
            if os.environ.get("BENCH_PROFILE"):
                profilers = start_profiles(started, Path(__file__).parent / "results")
                await asyncio.sleep(2.0)  # py-spy attaches
            print(f"answering at {rate:,.0f}/s for {seconds:.0f} s, half by SMS, half on the "
                  "page", flush=True)  # fmt: skip
            # what each service spends with no answers at all (its timers, relays and
            # consumers' polls): taken out of the CPU per answer below
            quiet_started = time.monotonic()
            quiet = {s.name: cpu_seconds(s.process.pid) for s in started}
            await asyncio.sleep(1.0 if QUICK else 3.0)
            cpu_before = {s.name: cpu_seconds(s.process.pid) for s in started}
            load_started = time.monotonic()
            idle = {
                name: (cpu_before[name] - used) / (load_started - quiet_started)
                for name, used in quiet.items()
            }

        backlog_s = 3.0 if QUICK else BACKLOG_S
        config = {
            "url": alerts.url, "rate": rate, "seconds": seconds, "phones": phones,
            "tokens": [token_of[p] for p in phones], "public_base": PUBLIC_BASE,
            "auth_token": AUTH_TOKEN, "connections": CONNECTIONS, "channel": channel,
            "backlog_s": backlog_s, "floor_seconds": 1.0 if QUICK else 3.0,
        }  # fmt: skip
        sent = await run_load(config, logs, before_load)
        ok = [s for s in sent if s.status == 200]
        # the answers still on their way: until every one is on the console, or 15 s (5 s
        # in quick mode); one never shown is counted as such, not as a latency
        settle = time.monotonic() + (5 if QUICK else 15)
        while time.monotonic() < settle:
            if len(reply_latencies(sent, console.seen)) >= len(ok):
                break
            await asyncio.sleep(0.25)
        window = time.monotonic() - load_started
        cpu = {s.name: cpu_seconds(s.process.pid) - cpu_before[s.name] for s in started}
        print("  CPU while the answers ran: " + ", ".join(
            f"{name} {used:.1f} s, of which {idle[name] * window:.1f} s its idle rate "
            f"({idle[name] * 100:.0f} % of a core) over the {window:.0f} s"
            for name, used in cpu.items()
        ))  # fmt: skip
        cpu = {name: max(0.0, used - idle[name] * window) for name, used in cpu.items()}
        for profiler in profilers:
            profiler.send_signal(2)  # SIGINT: py-spy writes what it recorded
            profiler.wait(timeout=60)
        profilers = []
        on_the_way = await hops(engine, schemas["alerts"], schemas["dispatch"])
    finally:
        if listener is not None:
            listener.cancel()
        for profiler in profilers:
            profiler.send_signal(2)
            profiler.wait(timeout=60)
        # both at once: each waits for its graceful shutdown
        await asyncio.gather(*(asyncio.to_thread(service.stop, 20) for service in started))
        gateway.stop()
        async with engine.begin() as conn:
            for schema in schemas.values():
                await conn.execute(text(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE'))
        await engine.dispose()
        keys = [k async for k in client.scan_iter(match=f"{prefix}*", count=5000)]
        for i in range(0, len(keys), 5000):
            await client.delete(*keys[i : i + 5000])
        await client.aclose()

    measured = Run(
        rate,
        seconds,
        n,
        [str(m.member_id) for m in people],
        floor_rate,
        load_started,
        backlog_s,
    )
    report(measured, sent, console, cpu, on_the_way)


@dataclass(frozen=True)
class Run:
    rate: float
    seconds: float
    n: int
    member_ids: list[str]
    floor_rate: float
    load_started: float
    backlog_s: float


def report(
    run: Run,
    sent: list[Sent],
    console: Console,
    cpu: dict[str, float],
    on_the_way: dict[tuple[str, datetime], Hops],
) -> None:
    rate, seconds, n = run.rate, run.seconds, run.n
    floor_rate, load_started = run.floor_rate, run.load_started
    planned = len(sent)
    not_sent = sum(1 for s in sent if s.status == NOT_SENT)
    sent = [s for s in sent if s.status != NOT_SENT]
    first = min(s.sent_at for s in sent)
    last = max(s.sent_at for s in sent)
    achieved = len(sent) / max(last - first, seconds)
    statuses = Counter(s.status for s in sent)
    errors = len(sent) - statuses[200]
    latencies = reply_latencies(sent, console.seen)
    ms = sorted(v * 1000 for v in latencies.values())
    events = [e for e in console.seen if e.at >= first]
    # answers on the board per second while the load ran: every answer whose row event
    # came, from the first send to the last such event
    applied = len(latencies) / max(max(e.at for e in events) - first, 1e-9) if events else 0.0
    per_second = Counter(int(e.at - first) for e in events)
    busiest = max(per_second.values()) if per_second else 0
    handled = sorted((s.done_at - s.sent_at) * 1000 for s in sent if s.status == 200)
    by_channel = {
        ch: sorted(
            latencies[s.index] * 1000 for s in sent if s.index in latencies and s.channel == ch
        )
        for ch in ("sms", "web")
    }
    print(
        f"answers: offered {rate:,.0f}/s for {seconds:.0f} s to {n} members ({planned:,}); "
        f"{len(sent):,} sent, achieved {achieved:,.0f}/s; {not_sent:,} not sent (the oldest "
        f"request waiting more than {run.backlog_s:.0f} s, or a second's answers in flight); "
        f"first send "
        f"{(first - load_started) * 1000:.0f} ms after the start"
    )
    print(
        f"  HTTP: {dict(statuses)} ({errors} errors); request -> response p50 "
        f"{statistics.median(handled):.1f} ms, p99 {percentile(handled, 0.99):.1f} ms"
        if handled
        else f"  HTTP: {dict(statuses)} ({errors} errors)"
    )
    print(
        f"  board: {len(latencies):,} of {statuses[200]:,} answers shown on the console, "
        f"{applied:,.0f} answers/s applied, {len(events):,} row events "
        f"(busiest second {busiest:,}); console snapshots {console.snapshots} "
        f"(1 = never cut off)"
    )
    if ms:
        print(
            f"  reply -> SSE row event: p50 {statistics.median(ms):.1f} ms, "
            f"p95 {percentile(ms, 0.95):.1f} ms, p99 {percentile(ms, 0.99):.1f} ms, "
            f"max {ms[-1]:.1f} ms"
        )
        for ch, values in by_channel.items():
            if values:
                print(
                    f"    {ch}: p50 {statistics.median(values):.1f} ms, "
                    f"p99 {percentile(values, 0.99):.1f} ms ({len(values):,})"
                )
    answered = statuses[200]
    if answered:
        print(
            "  CPU per answer handled (net of the idle rate): "
            + ", ".join(f"{name} {used / answered * 1000:.1f} ms" for name, used in cpu.items())
            + f" ({', '.join(f'{name} {used:.1f} s' for name, used in cpu.items())} in all)"
        )
    print_hops(run, sent, console, on_the_way)
    results.floor(MODULE, "answers_client_rate", floor_rate, "req/s", better="higher")
    label = f"{rate:,.0f}/s offered"
    results.figure(MODULE, "answers offered", rate, "answers/s", better="higher")
    results.figure(
        MODULE,
        "answers sent (achieved)",
        achieved,
        "answers/s",
        better="higher",
        floor="answers_client_rate",
    )
    results.figure(
        MODULE,
        f"answers applied on the board ({label})",
        applied,
        "answers/s",
        better="higher",
        goal=2000,
    )
    results.figure(MODULE, "HTTP errors", errors, "requests", better="lower", goal=0)
    for name, used in cpu.items():
        if answered:
            per_answer = used / answered * 1000
            results.figure(
                MODULE, f"{name} CPU per answer (net of idle)", per_answer, "ms", better="lower"
            )
    if ms:
        goal = 100 if rate >= 500 else None
        results.figure(
            MODULE,
            f"reply -> SSE p50 ({label})",
            statistics.median(ms),
            "ms",
            better="lower",
            floor="kafka_rtt_p50",
        )
        results.figure(
            MODULE,
            f"reply -> SSE p99 ({label})",
            percentile(ms, 0.99),
            "ms",
            better="lower",
            floor="kafka_rtt_p99",
            goal=goal,
        )
    refused = {status: count for status, count in statuses.items() if 400 <= status < 500}
    if refused:
        # a signature, a token or a limit the benchmark got wrong: its own fault, not a
        # figure (an overloaded service's 503s and timeouts are: "HTTP errors" above)
        raise SystemExit(f"answers refused: {refused}")


def print_hops(
    run: Run, sent: list[Sent], console: Console, on_the_way: dict[tuple[str, datetime], Hops]
) -> None:
    """Where an answer's time goes, hop by hop: the request's send and the console's
    arrival on this process's monotonic clock, the rest on PostgreSQL's now() (the same
    machine's wall clock)."""
    offset = time.time() - time.monotonic()

    def wall(monotonic: float) -> datetime:
        return datetime.fromtimestamp(monotonic + offset, UTC)

    by_index = {s.index: s for s in sent}
    stages: dict[str, list[float]] = defaultdict(list)
    for index, event in shown_by(sent, console.seen).items():
        answered = datetime.fromisoformat(event.answered_at)
        found = on_the_way.get((run.member_ids[event.member], answered))
        if found is None or found.applied is None:
            continue
        request = wall(by_index[index].sent_at)
        for name, start, end in (
            ("request sent -> alerts' transaction began", request, found.recorded),
            (
                "-> dispatch's transaction began (commit, relay, Kafka)",
                found.recorded,
                found.applied,
            ),
            ("-> row event at the console", found.applied, wall(event.at)),
        ):
            stages[name].append((end - start) / timedelta(milliseconds=1))
    if stages:
        print("  where the time goes, per answer (ms, p50 / p99):")
        for name, values in stages.items():
            print(
                f"    {name:45s} {statistics.median(values):8.1f} / "
                f"{percentile(values, 0.99):8.1f} ({len(values):,})"
            )


if __name__ == "__main__":
    asyncio.run(main())
