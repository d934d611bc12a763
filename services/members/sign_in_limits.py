"""What keeps `POST /auth/token` from being a password oracle or a CPU amplifier.

- **Lockout with backoff, by account and by client address.** Failed sign-ins are
  counted in Redis (shared by every members process) per email and per address. Once a
  subject has had its free failures, each further failure locks it for
  `base x 2^(failures - free)` seconds, capped: a locked subject is answered 429 with
  `Retry-After` before any password is checked. Unknown emails are counted like real
  ones, so a lockout does not tell whether an account exists. A success forgets the
  account's failures, never the address's (one valid account must not reset a guesser's
  count). Redis keys hold a hash of the email or address, not the email or address.
- **Bounded password checking.** argon2 costs ~64 MiB and a core per check, in a
  thread; at most `concurrency` run at once, at most `queue` more wait, and the next
  sign-in is answered 503 with `Retry-After` at once instead of piling up threads and
  memory.

When Redis cannot be reached, sign-ins are not locked out (staff must be able to sign
in during an outage) and the bounded checking still caps the cost; a warning is logged.
"""

from __future__ import annotations

import asyncio
import hashlib
import math
import time
from collections.abc import AsyncIterator, Callable, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import TypeVar

import redis.asyncio as redis
from prometheus_client import Counter

from shared.observability import get_logger

log = get_logger(__name__)
T = TypeVar("T")

SIGN_IN_REFUSED = Counter(
    "muster_sign_in_refused_total",
    "Sign-ins answered without checking the password, by reason (locked, busy)",
    ["reason"],
)


def lockout_s(failures: int, *, free: int, base_s: float, max_s: float) -> float:
    """How long a subject is locked after its `failures`-th failure in a row: nothing
    while failures are fewer than `free`, then base, 2 x base, 4 x base ... up to max."""
    if failures < free:
        return 0.0
    doublings = failures - free
    if doublings >= 64:  # 2**64 x base is past any cap; avoid the overflow
        return max_s
    return float(min(max_s, base_s * 2**doublings))


@dataclass(frozen=True)
class Subject:
    """Something sign-ins are counted for: an account (by email) or a client address."""

    kind: str  # "account" or "address"
    value: str
    free_failures: int

    def key(self, prefix: str) -> str:
        # a digest, so Redis never holds a staff email or a client address
        digest = hashlib.sha256(f"{self.kind}:{self.value}".encode()).hexdigest()[:32]
        return f"{prefix}members:sign-in:{self.kind}:{digest}"


@dataclass(frozen=True)
class Locked:
    subject: Subject
    retry_after_s: int


class SignInLimits:
    def __init__(
        self,
        client: redis.Redis,
        *,
        prefix: str,
        base_s: float,
        max_s: float,
        memory_s: float,
    ) -> None:
        self._redis = client
        self._prefix = prefix
        self._base_s = base_s
        self._max_s = max_s
        # the memory must outlast the longest lockout, or the count restarts mid-lock
        self._memory_ms = int(max(memory_s, max_s) * 1000)

    async def locked(self, subjects: Sequence[Subject]) -> Locked | None:
        """The subject locked the longest, if any is."""
        try:
            pipe = self._redis.pipeline(transaction=False)
            for subject in subjects:
                pipe.hget(subject.key(self._prefix), "locked_until")
            until = await pipe.execute()
        except redis.RedisError as exc:
            log.warning("sign-in lockouts unavailable, not enforced", error=type(exc).__name__)
            return None
        now = time.time()
        worst: Locked | None = None
        for subject, value in zip(subjects, until, strict=True):
            remaining = float(value or 0) - now
            if remaining > 0 and (worst is None or remaining > worst.retry_after_s):
                worst = Locked(subject, max(1, math.ceil(remaining)))
        return worst

    async def failed(self, subjects: Sequence[Subject]) -> None:
        """Count one failure for each subject and lock those past their free failures."""
        try:
            pipe = self._redis.pipeline(transaction=False)
            for subject in subjects:
                key = subject.key(self._prefix)
                pipe.hincrby(key, "failures", 1)
                pipe.pexpire(key, self._memory_ms)
            counts = (await pipe.execute())[::2]
            now = time.time()
            pipe = self._redis.pipeline(transaction=False)
            for subject, failures in zip(subjects, counts, strict=True):
                delay = lockout_s(
                    int(failures),
                    free=subject.free_failures,
                    base_s=self._base_s,
                    max_s=self._max_s,
                )
                if delay > 0:
                    pipe.hset(subject.key(self._prefix), "locked_until", str(now + delay))
            await pipe.execute()
        except redis.RedisError as exc:
            log.warning("sign-in failure not counted", error=type(exc).__name__)

    async def succeeded(self, account: Subject) -> None:
        try:
            await self._redis.delete(account.key(self._prefix))
        except redis.RedisError as exc:
            log.warning("sign-in failures not reset", error=type(exc).__name__)


class HashingBusy(Exception):
    """Every password-checking slot is taken and the queue is full."""


class PasswordCheckGate:
    """At most `concurrency` password checks at once, at most `queue` waiting."""

    def __init__(self, *, concurrency: int, queue: int) -> None:
        self._slots = asyncio.Semaphore(concurrency)
        self._queue = queue
        self._waiting = 0

    @asynccontextmanager
    async def _slot(self) -> AsyncIterator[None]:
        if self._slots.locked():
            if self._waiting >= self._queue:
                SIGN_IN_REFUSED.labels("busy").inc()
                raise HashingBusy
            self._waiting += 1
            try:
                await self._slots.acquire()
            finally:
                self._waiting -= 1
        else:
            await self._slots.acquire()
        try:
            yield
        finally:
            self._slots.release()

    async def run(self, check: Callable[[], T]) -> T:
        """Run the blocking `check` in a thread once a slot is free (HashingBusy if the
        queue is full)."""
        async with self._slot():
            return await asyncio.to_thread(check)
