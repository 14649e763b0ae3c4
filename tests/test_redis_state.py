"""With REDIS_URL set, each chat's search context and screen trail live in Redis and
survive a restart of the bot."""

from __future__ import annotations

from storage.models import Role
from tests.e2e_support import running_bot
from tests.factories import make_client

USER = 100


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
