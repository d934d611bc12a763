"""Rate limits kept in Redis, so they hold across every alerts process.

`TokenBucket`: the provider's messages per second (a long code sends about one segment a
second; a Messaging Service pool more). `WindowLimit`: requests per minute per answer
token and per client address on the web answer page.
"""

from __future__ import annotations

import asyncio
import time

import redis.asyncio as redis

_TAKE = """
local rate = tonumber(ARGV[1])
local burst = tonumber(ARGV[2])
local want = tonumber(ARGV[3])
local now_parts = redis.call('TIME')
local now = tonumber(now_parts[1]) * 1000 + math.floor(tonumber(now_parts[2]) / 1000)
local state = redis.call('HMGET', KEYS[1], 'tokens', 'ts')
local tokens = tonumber(state[1]) or burst
local ts = tonumber(state[2]) or now
tokens = math.min(burst, tokens + math.max(0, now - ts) * rate / 1000)
local granted = 0
local wait = 0
if tokens >= 1 then
  granted = math.min(want, math.floor(tokens))
  tokens = tokens - granted
else
  wait = math.ceil((1 - tokens) * 1000 / rate)
end
redis.call('HSET', KEYS[1], 'tokens', tostring(tokens), 'ts', now)
redis.call('PEXPIRE', KEYS[1], 60000)
return {granted, wait}
"""


class TokenBucket:
    """A token bucket shared by every process. Each process takes tokens in small
    chunks (a tenth of a second's worth at most) so a message costs no Redis round trip
    of its own; the global rate holds to within one chunk per process."""

    def __init__(self, client: redis.Redis, key: str, rate_per_s: float) -> None:
        self._key = key
        self._rate = rate_per_s
        # one second's worth of burst, at least one message
        self._burst = max(1.0, rate_per_s)
        self._chunk = max(1, min(50, int(rate_per_s / 10)))
        self._take = client.register_script(_TAKE)
        self._local = 0
        self._lock = asyncio.Lock()

    async def acquire(self) -> None:
        """Wait until a message may go."""
        async with self._lock:
            while self._local <= 0:
                granted, wait_ms = await self._take(
                    keys=[self._key], args=[self._rate, self._burst, self._chunk]
                )
                self._local += int(granted)
                if self._local <= 0:
                    await asyncio.sleep(max(int(wait_ms), 1) / 1000)
            self._local -= 1


class WindowLimit:
    def __init__(self, client: redis.Redis, key_prefix: str, per_minute: int) -> None:
        self._redis = client
        self._prefix = key_prefix
        self._limit = per_minute

    async def allow(self, subject: str) -> bool:
        window = int(time.time() // 60)
        key = f"{self._prefix}{subject}:{window}"
        pipe = self._redis.pipeline(transaction=True)
        pipe.incr(key)
        pipe.expire(key, 120)
        count, _ = await pipe.execute()
        return int(count) <= self._limit
