"""End-to-end harness: the real bot (real aiogram client, real polling loop or real webhook
server, real database) against :class:`tests.botapi.FakeBotAPI`.

Typical use, in a test module::

    from tests.e2e_support import running_bot

    @pytest.fixture
    async def bot(sqlite_url: str) -> AsyncIterator[BotHarness]:  # or db_url: both databases
        async with running_bot(sqlite_url) as harness:
            yield harness

    async def test_menu(bot: BotHarness) -> None:
        await bot.add_staff(100, "Иван", Role.MASTER)
        outcome = await bot.send(100, "/start")          # waits until the update was handled
        assert "Иван" in outcome.text                    # the one message the bot sent back
        screen = bot.api.bot_messages(100)[-1]                # what the user sees now
        await bot.press(100, screen.button("English")["callback_data"], screen.message_id)

``send``/``press`` return an :class:`Outcome`: the Bot API calls the bot made while handling
that update. ``bot.api`` is the fake server (``chat()``, ``wait_for()``, ``script()`` for
faults), ``bot.app`` the built application (``session_factory`` for seeding and checking
the database).
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
from collections.abc import AsyncIterator, Iterable
from dataclasses import dataclass
from typing import Any

from aiohttp import web

from bot.app import (
    ROUTERS,
    App,
    RouterFactory,
    build,
    make_webhook_app,
    serve_polling,
    upgrade_database,
)
from bot.config import Settings
from services import staff as staff_service
from storage.models import Role, Staff
from tests.botapi import Call, FakeBotAPI

TOKEN = "123456789:AAE-ccbot-e2e-test-token_0123456789ab"
WEBHOOK_SECRET = "e2e-webhook-secret_0123456789"
WEBHOOK_PATH = "/telegram/webhook"
POLLING_TIMEOUT = 2  # the fake answers a long poll as soon as an update is queued anyway
_IGNORED = frozenset({"getupdates", "getme"})


@dataclass
class Outcome:
    """What the bot did with one update."""

    update_id: int
    calls: list[Call]

    @property
    def sent(self) -> list[Call]:
        """The messages it sent (successful sendMessage calls)."""
        return [c for c in self.calls if c.method == "sendMessage" and c.ok]

    @property
    def texts(self) -> list[str]:
        """The texts the user got, as they read them: new messages and edits."""
        return [
            c.text
            for c in self.calls
            if c.ok and c.method in ("sendMessage", "editMessageText") and c.text is not None
        ]

    @property
    def text(self) -> str:
        """The one text the user got (AssertionError when not exactly one)."""
        assert len(self.texts) == 1, f"expected one text, got {self.texts!r} from {self.calls}"
        return self.texts[0]

    def of(self, method: str) -> list[Call]:
        return [c for c in self.calls if c.method.lower() == method.lower()]


class BotHarness:
    def __init__(self, api: FakeBotAPI, app: App, *, webhook_url: str | None = None) -> None:
        self.api = api
        self.app = app
        self.webhook_url = webhook_url  # the local URL of the webhook server (webhook mode)
        self.webhook_secret = WEBHOOK_SECRET

    @property
    def settings(self) -> Settings:
        return self.app.settings

    # -- talking to the bot --

    async def send(
        self,
        user_id: int,
        text: str | None = None,
        *,
        chat_id: int | None = None,
        language_code: str | None = "ru",
        contact: dict[str, Any] | str | None = None,
        within: float = 5.0,
    ) -> Outcome:
        """A message from ``user_id``; returns once the bot has handled it."""
        mark = self.api.mark()
        update_id = self.api.message(
            user_id, text, chat_id=chat_id, language_code=language_code, contact=contact
        )
        return await self._outcome(update_id, mark, within)

    async def press(
        self,
        user_id: int,
        data: str,
        message_id: int,
        *,
        chat_id: int | None = None,
        language_code: str | None = None,
        within: float = 5.0,
    ) -> Outcome:
        """A press on an inline button of the bot's message; returns once handled."""
        mark = self.api.mark()
        update_id = self.api.callback(
            user_id, data, message_id, chat_id=chat_id, language_code=language_code
        )
        return await self._outcome(update_id, mark, within)

    async def handled(self, update_id: int, within: float = 5.0) -> None:
        """Wait until the dispatcher has finished with ``update_id`` (any update)."""
        try:
            async with asyncio.timeout(within):
                await self.app.dp.tracker.wait_handled(update_id)
        except TimeoutError:
            raise AssertionError(
                f"update {update_id} not handled within {within}s; pending:"
                f" {[u['update_id'] for u in self.api.pending]}, deliveries:"
                f" {self.api.deliveries[-3:]}"
            ) from None

    async def _outcome(self, update_id: int, mark: int, within: float) -> Outcome:
        await self.handled(update_id, within)
        calls = [c for c in self.api.calls[mark:] if c.method.lower() not in _IGNORED]
        return Outcome(update_id, calls)

    # -- the database --

    async def add_staff(
        self,
        telegram_id: int,
        name: str = "Staff Member",
        role: Role = Role.MASTER,
        *,
        locale: str | None = None,
        active: bool = True,
    ) -> Staff:
        async with self.app.session_factory() as session:
            member = await staff_service.add_or_update(
                session, telegram_id=telegram_id, name=name, role=role, locale=locale, actor=None
            )
            if not active:
                await staff_service.deactivate(session, telegram_id, actor=None)
            await session.commit()
            return member

    async def staff(self, telegram_id: int) -> Staff | None:
        """The staff row as the database holds it now."""
        async with self.app.session_factory() as session:
            return await staff_service.get_by_telegram_id(session, telegram_id)


def make_settings(database_url: str, api: FakeBotAPI, **overrides: Any) -> Settings:
    values: dict[str, Any] = {
        "bot_token": TOKEN,
        "telegram_api_url": api.base_url,
        "database_url": database_url,
        "default_locale": "ru",
        # The outbox worker runs only where a test asks for it (its messages would mix
        # with the ones a test counts); the notification tests turn it on.
        "notify_in_bot": False,
        **overrides,
    }
    return Settings(_env_file=None, **values)  # type: ignore[call-arg]


@contextlib.asynccontextmanager
async def running_bot(
    database_url: str,
    *,
    webhook: bool = False,
    routers: Iterable[RouterFactory] = ROUTERS,
    **settings: Any,
) -> AsyncIterator[BotHarness]:
    """The bot running against a fresh FakeBotAPI: long polling (the real loop,
    ``dp.start_polling``), or with ``webhook=True`` the webhook server of ``ccbot webhook``
    to which the fake delivers the updates. Stopped cleanly at the end."""
    async with FakeBotAPI(TOKEN) as api:
        if webhook:
            async with _webhook_mode(database_url, api, routers, settings) as harness:
                yield harness
        else:
            async with _polling_mode(database_url, api, routers, settings) as harness:
                yield harness


@contextlib.asynccontextmanager
async def _polling_mode(
    database_url: str,
    api: FakeBotAPI,
    routers: Iterable[RouterFactory],
    overrides: dict[str, Any],
) -> AsyncIterator[BotHarness]:
    app = build(make_settings(database_url, api, **overrides), routers=routers)
    try:
        polling = asyncio.create_task(
            serve_polling(app, handle_signals=False, polling_timeout=POLLING_TIMEOUT),
            name="e2e-polling",
        )
        try:
            await _started(api, polling)
            yield BotHarness(api, app)
        finally:
            if not polling.done():
                await app.dp.stop_polling()
            await polling
    finally:
        await app.close()


async def _started(api: FakeBotAPI, polling: asyncio.Task[None]) -> None:
    """Wait until the loop waits in a getUpdates (it is up), or for the start to fail."""
    first_poll = asyncio.create_task(api.wait_polling(timeout=10))
    await asyncio.wait({first_poll, polling}, return_when=asyncio.FIRST_COMPLETED)
    if polling.done():
        first_poll.cancel()
        with contextlib.suppress(asyncio.CancelledError, AssertionError):
            await first_poll
        await polling  # raises what stopped it
        raise AssertionError("polling stopped before it started")
    await first_poll


@contextlib.asynccontextmanager
async def _webhook_mode(
    database_url: str,
    api: FakeBotAPI,
    routers: Iterable[RouterFactory],
    overrides: dict[str, Any],
) -> AsyncIterator[BotHarness]:
    # Bind first, so that the URL given to setWebhook (on start) is the one listening.
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.bind(("127.0.0.1", 0))
    url = f"http://127.0.0.1:{sock.getsockname()[1]}{WEBHOOK_PATH}"
    settings = make_settings(
        database_url,
        api,
        webhook_url=url,
        webhook_secret=WEBHOOK_SECRET,
        webhook_path=WEBHOOK_PATH,
        **overrides,
    )
    app = build(settings, routers=routers)
    runner: web.AppRunner | None = None
    try:
        await upgrade_database(app)
        runner = web.AppRunner(make_webhook_app(app, settings), handle_signals=False)
        await runner.setup()
        await web.SockSite(runner, sock).start()
        yield BotHarness(api, app, webhook_url=url)
    finally:
        if runner is not None:
            await runner.cleanup()
        sock.close()
        await app.close()
