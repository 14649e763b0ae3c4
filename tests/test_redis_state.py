"""With REDIS_URL set, each chat's search context and screen trail live in Redis and
survive a restart of the bot."""

from __future__ import annotations

import os

import pytest

from storage.models import Role
from tests.e2e_support import running_bot
from tests.factories import make_client

REDIS_URL = os.environ.get("TEST_REDIS_URL", "redis://127.0.0.1:6379/15")
USER = 100


@pytest.fixture
async def redis_url():
    import redis.asyncio as redis

    client = redis.Redis.from_url(REDIS_URL, socket_connect_timeout=2)
    try:
        await client.flushdb()
    except Exception as exc:  # any failure means "not reachable here"
        await client.aclose()
        pytest.skip(f"Redis not reachable at {REDIS_URL}: {exc!r}")
    yield REDIS_URL
    await client.flushdb()
    await client.aclose()


async def test_search_pages_survive_a_restart(sqlite_url, redis_url):
    async with running_bot(sqlite_url, redis_url=redis_url) as bot:
        await bot.add_staff(USER, "Анна", Role.MANAGER)
        async with bot.app.session_factory() as s:
            for i in range(15):
                await make_client(s, f"Сидоров {i:02d}", f"+7 903 100-00-{i:02d}")
            await s.commit()
        await bot.send(USER, "сидоров")
        first = bot.api.bot_messages(USER)[-1]
        next_page = first.button("▶")["callback_data"]

    async with running_bot(sqlite_url, redis_url=redis_url) as bot:
        bot.api.known_chat(USER)
        out = await bot.press(USER, next_page, first.message_id)
        assert "Клиенты: 15" in out.text
        assert "2/2" in str(bot.api.bot_messages(USER)[-1].buttons)
