"""Telegram's limits for the delivery worker: at most ``rate`` messages a second overall
and one message per ``chat_interval`` to a chat, for one bot token.

:class:`LocalPacer` keeps them inside one process (an ``aiolimiter`` leaky bucket of one:
evenly spaced, no bursts). :class:`RedisPacer` keeps them in Redis, so that several workers
(``ccbot worker`` processes sharing the PostgreSQL outbox) share one budget instead of each
spending its own: every send reserves its moment in one atomic script on the Redis
server's clock (no clock skew between machines), and a 429 pauses every worker.

If Redis stops answering, the worker does not stop sending: it falls back to the local
limits (logged) until Redis answers again, and Telegram's 429s, which pause the worker,
cover the difference.
"""

from __future__ import annotations

import asyncio
import logging
import time
from typing import Any, Protocol

from aiolimiter import AsyncLimiter

log = logging.getLogger(__name__)


class Pacer(Protocol):
    async def acquire(self, chat_id: int) -> None:
        """Return when one message to ``chat_id`` may be sent now (and count it)."""
        ...

    async def pause(self, seconds: float) -> None:
        """Telegram said 429: nothing is sent for ``seconds``."""
        ...

    async def close(self) -> None: ...


class LocalPacer:
    """The overall rate in this process. The interval per chat is the worker's own
    planning (one message per chat per claim, the rest put back to wait)."""

    def __init__(self, rate: float) -> None:
        self._limiter = AsyncLimiter(1, 1 / rate)

    async def acquire(self, chat_id: int) -> None:
        await self._limiter.acquire()

    async def pause(self, seconds: float) -> None:
        pass  # the worker pauses itself

    async def close(self) -> None:
        pass


# KEYS: the bot's overall key, the chat's key. ARGV: ms between two messages overall, ms
# between two messages to one chat. Returns {ms to wait, 1 when the moment is reserved}:
# with the chat busy nothing is reserved (the caller waits and asks again), so a busy chat
# never holds back the overall budget. Numbers go out as strings: Redis would cut them to
# integers.
_RESERVE = """
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + tonumber(t[2]) / 1000
local chat_free = tonumber(redis.call('GET', KEYS[2]) or '0')
if chat_free > now then
  return {tostring(chat_free - now), '0'}
end
local at = math.max(now, tonumber(redis.call('GET', KEYS[1]) or '0'))
local overall, per_chat = tonumber(ARGV[1]), tonumber(ARGV[2])
redis.call('SET', KEYS[1], tostring(at + overall), 'PX', math.ceil(at + overall - now) + 1000)
redis.call('SET', KEYS[2], tostring(at + per_chat), 'PX', math.ceil(at + per_chat - now) + 1000)
return {tostring(at - now), '1'}
"""

# KEYS: the bot's overall key. ARGV: ms to pause. Nothing is reserved before then.
_PAUSE = """
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + tonumber(t[2]) / 1000
local resume = now + tonumber(ARGV[1])
if resume > tonumber(redis.call('GET', KEYS[1]) or '0') then
  redis.call('SET', KEYS[1], tostring(resume), 'PX', math.ceil(resume - now) + 1000)
end
return 1
"""


class RedisPacer:
    """Both limits shared by every worker that uses the same Redis and bot token."""

    def __init__(
        self,
        redis: Any,
        *,
        bot_id: str,
        rate: float,
        chat_interval: float,
        prefix: str = "ccbot:pace",
        retry_after_failure: float = 30.0,
    ) -> None:
        self.redis = redis
        self.rate = rate
        self.chat_interval = chat_interval
        self._prefix = f"{prefix}:{bot_id}"
        self._reserve = redis.register_script(_RESERVE)
        self._pause = redis.register_script(_PAUSE)
        self._local = LocalPacer(rate)
        self._retry_after_failure = retry_after_failure
        self._down_until = 0.0  # monotonic: Redis failed, local limits until then

    @classmethod
    def from_url(cls, url: str, *, bot_id: str, rate: float, chat_interval: float) -> RedisPacer:
        import redis.asyncio as aioredis

        client = aioredis.Redis.from_url(url, socket_connect_timeout=2, socket_timeout=2)
        return cls(client, bot_id=bot_id, rate=rate, chat_interval=chat_interval)

    def _keys(self, chat_id: int) -> list[str]:
        return [f"{self._prefix}:all", f"{self._prefix}:chat:{chat_id}"]

    async def acquire(self, chat_id: int) -> None:
        args = [1000 / self.rate, 1000 * self.chat_interval]
        while True:
            if time.monotonic() < self._down_until:
                await self._local.acquire(chat_id)
                return
            try:
                wait_ms, reserved = await self._reserve(keys=self._keys(chat_id), args=args)
            except Exception as exc:  # Redis gone: keep sending under the local limits
                self._redis_failed(exc)
                continue
            wait = float(wait_ms) / 1000
            if wait > 0:
                await asyncio.sleep(wait)
            if reserved in (b"1", "1"):
                return

    async def pause(self, seconds: float) -> None:
        try:
            await self._pause(keys=self._keys(0)[:1], args=[1000 * seconds])
        except Exception as exc:
            self._redis_failed(exc)

    def _redis_failed(self, exc: BaseException) -> None:
        log.warning(
            "Redis did not answer (%s): the limits of this worker alone apply for %.0f s",
            type(exc).__name__,
            self._retry_after_failure,
        )
        self._down_until = time.monotonic() + self._retry_after_failure

    async def close(self) -> None:
        await self.redis.aclose()


def busiest_window(moments: list[float], window: float = 1.0) -> int:
    """The most of ``moments`` (seconds) that fall within any ``window`` seconds: what a
    pacer of ``rate`` a second keeps at ``rate`` or under (the tests and
    ``bench/notify_bench.py`` measure the sends with it)."""
    moments = sorted(moments)
    best, start = 0, 0
    for end, at in enumerate(moments):
        while at - moments[start] >= window:
            start += 1
        best = max(best, end - start + 1)
    return best
