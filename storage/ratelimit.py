"""Per-key request rate limits: a token bucket in Redis, refilled and spent in one Lua script.

Each key may burst ``burst`` requests, then ``rate`` per second. The bucket lives in one hash
(tokens, time of the last refill) that expires once it would be full again; the time is Redis's own
(``TIME``), so several API processes share one clock.
"""

from __future__ import annotations

from dataclasses import dataclass

import redis
import redis.asyncio as aioredis

from storage import keys

# KEYS: bucket   ARGV: rate (tokens/s), burst   -> {allowed 0|1, seconds until one token (string)}
_TAKE = """
if redis.replicate_commands then redis.replicate_commands() end
local rate, burst = tonumber(ARGV[1]), tonumber(ARGV[2])
local t = redis.call('TIME')
local now = tonumber(t[1]) + tonumber(t[2]) / 1000000
local state = redis.call('HMGET', KEYS[1], 'tokens', 'ts')
local tokens = tonumber(state[1]) or burst
local last = tonumber(state[2]) or now
tokens = math.min(burst, tokens + math.max(0, now - last) * rate)
local allowed, wait = 0, 0
if tokens >= 1 then
  tokens = tokens - 1
  allowed = 1
else
  wait = (1 - tokens) / rate
end
redis.call('HSET', KEYS[1], 'tokens', string.format('%.6f', tokens), 'ts', string.format('%.6f', now))
redis.call('EXPIRE', KEYS[1], math.ceil((burst - tokens) / rate) + 1)
return {allowed, string.format('%.3f', wait)}
"""


@dataclass(frozen=True)
class Decision:
    allowed: bool
    retry_after_s: float


class RateLimiter:
    def __init__(self, client: redis.Redis, rate_per_s: float, burst: int,
                 async_client: aioredis.Redis | None = None) -> None:
        self.rate_per_s = rate_per_s
        self.burst = burst
        self._take = client.register_script(_TAKE)
        self._take_async = async_client.register_script(_TAKE) if async_client is not None else None

    @property
    def enabled(self) -> bool:
        return self.rate_per_s > 0

    def take(self, key_id: str) -> Decision:
        """Spend one token of ``key_id``'s bucket; when none is left, say how long until one is."""
        if not self.enabled:
            return Decision(True, 0.0)
        allowed, wait = self._take(keys=[keys.rate_limit(key_id)], args=[self.rate_per_s, self.burst])
        return Decision(bool(int(allowed)), float(wait))

    async def take_async(self, key_id: str) -> Decision:
        """:meth:`take` over the asyncio client."""
        if not self.enabled:
            return Decision(True, 0.0)
        if self._take_async is None:
            raise RuntimeError("this RateLimiter was built without an asyncio client")
        bucket = [keys.rate_limit(key_id)]
        allowed, wait = await self._take_async(keys=bucket, args=[self.rate_per_s, self.burst])
        return Decision(bool(int(allowed)), float(wait))
