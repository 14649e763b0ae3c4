"""Telegram's limits shared by several delivery workers through Redis (``bot.pacing``),
against a real Redis; skipped, saying why, where none answers."""

from __future__ import annotations

import asyncio
import dataclasses
import itertools
import time
from collections import Counter
from collections.abc import AsyncIterator

import pytest
import redis.asyncio as aioredis
from hypothesis import given
from hypothesis import strategies as st

from bot.delivery import DeliveryWorker
from bot.pacing import LocalPacer, RedisPacer, busiest_window
from tests.delivery_support import Shop
from tests.delivery_support import shop as shop  # the fixture


@pytest.fixture
async def pacers(redis_url: str) -> AsyncIterator[list[RedisPacer]]:
    """Two pacers of one bot, each with its own connection: two worker processes."""
    made = [
        RedisPacer(aioredis.Redis.from_url(redis_url), bot_id="42", rate=20, chat_interval=0.5)
        for _ in range(2)
    ]
    yield made
    for pacer in made:
        await pacer.close()


async def _acquire_all(pacer: LocalPacer | RedisPacer, chats: list[int]) -> list[float]:
    moments = []
    for chat in chats:
        await pacer.acquire(chat)
        moments.append(time.monotonic())
    return moments


async def test_two_workers_share_the_overall_rate(pacers: list[RedisPacer]):
    """20 a second between them, not 20 each: 30 messages to 30 chats from two workers
    take about 1.5 s, never more than 20 (+1 at a window's edge) in any second."""
    first, second = pacers
    started = time.monotonic()
    a, b = await asyncio.gather(
        _acquire_all(first, list(range(1, 16))), _acquire_all(second, list(range(16, 31)))
    )
    assert busiest_window(a + b) <= 21
    assert time.monotonic() - started >= 1.3

    # The same two workers with limits of their own would each spend 20 a second.
    local = [LocalPacer(20), LocalPacer(20)]
    a, b = await asyncio.gather(
        _acquire_all(local[0], list(range(1, 21))), _acquire_all(local[1], list(range(21, 41)))
    )
    assert busiest_window(a + b) > 25


async def test_two_workers_keep_one_chat_to_one_message_per_interval(pacers: list[RedisPacer]):
    first, second = pacers
    a, b = await asyncio.gather(_acquire_all(first, [7] * 3), _acquire_all(second, [7] * 3))
    moments = sorted(a + b)
    gaps = [later - earlier for earlier, later in itertools.pairwise(moments)]
    assert min(gaps) >= 0.5 * 0.95


async def test_a_429_pauses_every_worker(pacers: list[RedisPacer]):
    first, second = pacers
    await first.pause(0.6)
    started = time.monotonic()
    await second.acquire(99)
    assert time.monotonic() - started >= 0.55


async def test_without_redis_the_worker_keeps_sending_under_its_own_limits(
    caplog: pytest.LogCaptureFixture,
):
    """Redis gone: the send is not refused, the local limits apply and it says so; the
    address (which may carry a password) is not in the log."""
    gone = aioredis.Redis.from_url(
        "redis://:s3cret@127.0.0.1:9/0", socket_connect_timeout=0.2, socket_timeout=0.2
    )
    pacer = RedisPacer(gone, bot_id="42", rate=50, chat_interval=1.0)
    try:
        async with asyncio.timeout(5):
            await pacer.acquire(1)
            await pacer.acquire(2)  # within the fallback window: no second wait for Redis
    finally:
        await pacer.close()
    assert "limits of this worker alone" in caplog.text
    assert "s3cret" not in caplog.text


@pytest.mark.parametrize(
    "db_url", [pytest.param("postgres", marks=pytest.mark.postgres)], indirect=True
)
async def test_two_workers_on_postgresql_send_within_one_budget(shop: Shop, redis_url: str):
    """Two delivery workers share the outbox (``SKIP LOCKED``) and, through Redis, one
    budget: by the Bot API server's own clock never more than the rate in a second, never
    two messages to one chat within the interval, each row sent once."""
    rate, interval = 20.0, 0.5
    chats = list(range(700, 740))
    for chat in chats:
        shop.api.known_chat(chat)
        await shop.ping(chat, f"c{chat}")
    for n in range(3):  # three not digestible messages for one chat
        await shop.ping(chats[0], f"again {n}", key=f"again:{n}", digestible=False)

    def worker() -> DeliveryWorker:
        policy = dataclasses.replace(
            shop.worker.policy, rate=rate, chat_interval=interval, batch_seconds=0.5
        )
        pacer = RedisPacer(
            aioredis.Redis.from_url(redis_url), bot_id="7", rate=rate, chat_interval=interval
        )
        return DeliveryWorker(
            shop.app.bot, shop.app.session_factory, shop.app.i18n, policy, pacer=pacer
        )

    workers = [worker(), worker()]
    try:
        await asyncio.gather(*(shop.deliver_all(w, within=30) for w in workers))
    finally:
        for w in workers:
            await w.pacer.close()
    sent = shop.api.sent()
    assert Counter(c.text for c in sent) == Counter(
        [f"c{chat}" for chat in chats] + [f"again {n}" for n in range(3)]
    )
    # Unshared, two workers would reach 40 in a second; a send's own jitter may add one.
    assert busiest_window([c.wall for c in sent]) <= rate + 2
    to_first = sorted(c.wall for c in sent if int(c.params["chat_id"]) == chats[0])
    assert min(b - a for a, b in itertools.pairwise(to_first)) >= interval * 0.8


async def test_the_app_shares_the_limits_only_when_redis_is_set(sqlite_url: str, redis_url: str):
    from bot.app import build
    from tests.botapi import FakeBotAPI
    from tests.e2e_support import TOKEN, make_settings

    async with FakeBotAPI(TOKEN) as api:
        shared = build(make_settings(sqlite_url, api, redis_url=redis_url))
        alone = build(make_settings(sqlite_url, api))
        try:
            assert shared.delivery is not None and alone.delivery is not None
            assert isinstance(shared.delivery.pacer, RedisPacer)
            assert isinstance(alone.delivery.pacer, LocalPacer)
        finally:
            await shared.close()
            await alone.close()


@given(st.lists(st.floats(min_value=0, max_value=10, allow_nan=False), max_size=40))
def test_the_busiest_window_is_the_most_moments_any_window_holds(moments: list[float]):
    by_brute_force = max(
        (sum(start <= m < start + 1.0 for m in moments) for start in moments), default=0
    )
    assert busiest_window(moments) == by_brute_force
    assert busiest_window([0.0, 0.5, 0.99, 1.0, 1.5]) == 3  # a window is [start, start + 1)
