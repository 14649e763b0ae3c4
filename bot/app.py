"""The composition root: settings in, a running bot out.

:func:`build` makes every app-scoped object once (engine, session factory, Bot, Dispatcher,
search service, texts) and returns them in an :class:`App`; nothing lives at module level.
The dispatcher gets its dependencies as ``Dispatcher(**deps)``: handlers ask for
``settings``, ``session_factory``, ``search_service`` or ``i18n`` by name, and for the
per-update ``session`` and ``staff`` (see ``bot.middlewares``).

Two ways to run: :func:`run_polling` (``ccbot run``) and :func:`run_webhook`
(``ccbot webhook``); both upgrade the database first and stop cleanly on SIGTERM/SIGINT,
letting the updates in hand finish before the engine and the HTTP session are closed.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import re
import signal
import traceback
from collections import Counter, OrderedDict
from collections.abc import AsyncIterator, Callable, Iterable
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any

import aiohttp
from aiogram import Bot, Dispatcher, Router
from aiogram.client.default import DefaultBotProperties
from aiogram.client.telegram import TelegramAPIServer
from aiogram.enums import ParseMode
from aiogram.exceptions import (
    TelegramAPIError,
    TelegramNetworkError,
    TelegramUnauthorizedError,
)
from aiogram.fsm.storage.base import BaseStorage
from aiogram.fsm.storage.memory import MemoryStorage
from aiogram.types import Update
from aiogram.utils.i18n import I18n
from aiogram.utils.token import TokenValidationError
from aiogram.webhook.aiohttp_server import SimpleRequestHandler, setup_application
from aiohttp import web
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker

from bot import middlewares
from bot.api_session import JsonBodySession
from bot.config import Settings, SettingsError, exit_on_settings_error
from bot.delivery import DeliveryPolicy, DeliveryWorker
from bot.i18n import StaffI18nMiddleware, make_i18n
from bot.pacing import Pacer, RedisPacer
from bot.scheduler import scheduled
from handlers import (
    booking,
    cart,
    client,
    common,
    contact,
    errors,
    estimate,
    gate,
    linking,
    navigation,
    payments,
    search,
    staff_admin,
    tires,
    work_orders,
)
from services.messaging import (
    HttpSmsGateway,
    RecordingSmsGateway,
    SmsGateway,
    SmsResult,
    SmtpSettings,
    TlsMode,
)
from services.search import SearchService
from storage.db import make_engine, make_session_factory

logger = logging.getLogger(__name__)

RouterFactory = Callable[[], Router]

# The routers, in the order an update tries them. Errors first; then what anyone may do
# (invite links, paying an invoice); then linked clients (their own router ends with
# catch-alls); then strangers: sharing their phone, and the strangers' stop (anyone who is
# neither staff nor a linked client gets what this is and the share-phone button, and goes
# no further); then the staff's features; the catch-all text search LAST. Add a feature by
# adding its ``make_router`` here, before the search.
ROUTERS: tuple[RouterFactory, ...] = (
    errors.make_router,
    staff_admin.make_invite_router,  # invite links are opened by people not yet staff
    linking.make_invite_router,  # client invite links: anyone, before the client's router
    payments.make_client_router,  # clients pay invoices: checkout and payment
    estimate.make_client_router,  # clients approve or decline estimate lines
    client.make_router,  # linked clients: their cars, orders, bookings; messages to the shop
    linking.make_router,  # strangers share their phone
    common.make_strangers_router,
    common.make_router,
    staff_admin.make_router,
    linking.make_staff_router,  # link requests, client invites
    contact.make_router,
    payments.make_router,
    work_orders.make_router,
    cart.make_router,
    estimate.make_router,
    booking.make_router,  # repair booking and car arrival
    tires.make_router,  # tire hotel
    navigation.make_router,
    search.make_router,  # the catch-all for text: keep it after every message handler
    navigation.make_fallback_router,  # presses nobody understood: last
)

FSM_TTL = timedelta(days=7)  # a screen trail older than this is forgotten
POLLING_TIMEOUT = 30  # seconds a getUpdates long poll waits on Telegram's side
SHUTDOWN_GRACE = 20.0  # seconds the updates in hand get to finish on SIGTERM


@dataclass
class App:
    settings: Settings
    engine: AsyncEngine
    session_factory: async_sessionmaker[AsyncSession]
    bot: Bot
    dp: TrackingDispatcher
    search_service: SearchService
    i18n: I18n
    sms_gateway: SmsGateway = field(default_factory=RecordingSmsGateway)
    smtp: SmtpSettings | None = None
    delivery: DeliveryWorker | None = None

    async def close(self) -> None:
        try:
            await self.bot.session.close()
            await self.dp.storage.close()
            if self.delivery is not None:
                await self.delivery.pacer.close()
            if isinstance(self.sms_gateway, LazyHttpSmsGateway):
                await self.sms_gateway.close()
        finally:
            await self.engine.dispose()


# pydantic keeps parametrised generic models in a cache of weak references, and aiogram
# parametrises ``Response[T]`` for every Bot API reply: without a strong reference the
# model class was built again (and collected again) on most calls, a millisecond or more
# of CPU each, the largest single cost of a card press. Held here for the bot's lifetime.
_RESPONSE_MODELS: list[Any] = []


def pin_response_models() -> None:
    """Keep ``Response[T]`` alive for the return type of every Bot API method."""
    if _RESPONSE_MODELS:
        return
    from aiogram import methods
    from aiogram.methods.base import Response, TelegramMethod

    returning: dict[str, Any] = {}
    for value in vars(methods).values():
        if isinstance(value, type) and issubclass(value, TelegramMethod):
            if value is not TelegramMethod:
                returning.setdefault(repr(value.__returning__), value.__returning__)
    _RESPONSE_MODELS.extend(Response[t] for t in returning.values())  # type: ignore[valid-type]


def build(settings: Settings, *, routers: Iterable[RouterFactory] = ROUTERS) -> App:
    """Everything the bot needs, built from ``settings``; raises SettingsError on a bad one."""
    pin_response_models()
    bot = make_bot(settings)
    sms_gateway = make_sms_gateway(settings)
    smtp = make_smtp(settings)
    i18n = make_i18n(settings.default_locale)
    search_service = SearchService(settings.search_boxes(), region=settings.default_region)
    engine = make_engine(settings.database_url)
    session_factory = make_session_factory(engine)
    dp = build_dispatcher(
        settings=settings,
        session_factory=session_factory,
        search_service=search_service,
        i18n=i18n,
        routers=routers,
        sms_gateway=sms_gateway,
        smtp=smtp,
    )
    policy = DeliveryPolicy.from_settings(settings)
    delivery = DeliveryWorker(
        bot,
        session_factory,
        i18n,
        policy,
        payments=settings.payments_provider_token is not None,
        single=settings.database_url.startswith("sqlite"),
        pacer=make_pacer(settings, policy, bot_id=str(bot.id)),
    )
    return App(
        settings,
        engine,
        session_factory,
        bot,
        dp,
        search_service,
        i18n,
        sms_gateway=sms_gateway,
        smtp=smtp,
        delivery=delivery,
    )


def make_pacer(settings: Settings, policy: DeliveryPolicy, *, bot_id: str) -> Pacer | None:
    """Telegram's limits shared through Redis by every worker of this bot when Redis is
    configured; else each worker keeps its own (``bot.pacing``)."""
    if not settings.redis_url:
        return None
    return RedisPacer.from_url(
        settings.redis_url, bot_id=bot_id, rate=policy.rate, chat_interval=policy.chat_interval
    )


def make_fsm_storage(settings: Settings) -> BaseStorage:
    """Where each chat's screen trail and search context live: Redis when configured (kept
    across restarts, shared by webhook workers), else memory."""
    if settings.redis_url:
        from aiogram.fsm.storage.redis import RedisStorage

        return RedisStorage.from_url(settings.redis_url, state_ttl=FSM_TTL, data_ttl=FSM_TTL)
    return MemoryStorage()


SMTP_PORTS = {TlsMode.NONE: 25, TlsMode.STARTTLS: 587, TlsMode.TLS: 465}


def make_smtp(settings: Settings) -> SmtpSettings | None:
    """How e-mail to clients is sent (``SMTP_*``); None when ``SMTP_HOST`` is not set."""
    if not settings.smtp_host:
        return None
    user = settings.smtp_user or None
    sender = settings.smtp_from or (user if user and "@" in user else None)
    if not sender:
        raise SettingsError("SMTP_FROM", "is not set (the address e-mails to clients come from)")
    tls = TlsMode(settings.smtp_tls)
    password = settings.smtp_password.get_secret_value() if settings.smtp_password else ""
    return SmtpSettings(
        host=settings.smtp_host,
        port=settings.smtp_port or SMTP_PORTS[tls],
        from_address=sender,
        username=user,
        password=password or None,
        tls=tls,
    )


def make_sms_gateway(settings: Settings) -> SmsGateway:
    """The HTTP gateway of ``SMS_GATEWAY_URL``; without one, SMS are only recorded."""
    if not settings.sms_gateway_url:
        return RecordingSmsGateway()
    key = settings.sms_api_key.get_secret_value() if settings.sms_api_key else ""
    if not key.strip():
        raise SettingsError("SMS_API_KEY", "is not set (the key of SMS_GATEWAY_URL)")
    return LazyHttpSmsGateway(settings.sms_gateway_url, key, sender=settings.sms_sender)


class LazyHttpSmsGateway:
    """:class:`HttpSmsGateway` on one aiohttp session for the whole app: opened with the
    first SMS (a session needs the running loop), closed by :meth:`App.close`."""

    def __init__(self, url: str, api_key: str, *, sender: str | None = None) -> None:
        self.url = url
        self._api_key = api_key
        self.sender = sender
        self._http: aiohttp.ClientSession | None = None
        self._gateway: HttpSmsGateway | None = None

    def __repr__(self) -> str:
        return f"LazyHttpSmsGateway(url={self.url!r})"

    async def send(self, phone_e164: str, text: str) -> SmsResult:
        if self._gateway is None or self._http is None or self._http.closed:
            self._http = aiohttp.ClientSession()
            self._gateway = HttpSmsGateway(self.url, self._api_key, self._http, sender=self.sender)
        return await self._gateway.send(phone_e164, text)

    async def close(self) -> None:
        if self._http is not None:
            await self._http.close()


def make_bot(settings: Settings) -> Bot:
    token = settings.require_token()
    redact_token_in_logs(token)
    session = (
        JsonBodySession(api=TelegramAPIServer.from_base(settings.telegram_api_url))
        if settings.telegram_api_url
        else JsonBodySession()
    )
    try:
        return Bot(token, session=session, default=DefaultBotProperties(parse_mode=ParseMode.HTML))
    except TokenValidationError:
        raise SettingsError("BOT_TOKEN", "is not a bot token (123456:ABC...)") from None


def build_dispatcher(
    *,
    settings: Settings,
    session_factory: async_sessionmaker[AsyncSession],
    search_service: SearchService,
    i18n: I18n,
    routers: Iterable[RouterFactory] = ROUTERS,
    **extra_deps: Any,
) -> TrackingDispatcher:
    """The dispatcher with its middlewares and routers; tests run it with the real polling
    loop or feed it updates (``dp.feed_update(bot, update)``)."""
    dp = TrackingDispatcher(
        storage=make_fsm_storage(settings),
        settings=settings,
        session_factory=session_factory,
        search_service=search_service,
        i18n=i18n,
        **extra_deps,
    )
    middlewares.install(dp, session_factory)
    # On every event observer, errors included: the error handler answers in the user's
    # language too.
    StaffI18nMiddleware(i18n).setup(dp)
    for make_router in routers:
        dp.include_router(gate(make_router()))
    dp.startup.register(set_commands)
    return dp


async def set_commands(bot: Bot, i18n: I18n) -> None:
    """The command menu in each language we speak, and in the default one for the rest."""
    try:
        for code in (*sorted(i18n.available_locales), None):
            with i18n.context(), i18n.use_locale(code or i18n.default_locale):
                commands = common.bot_commands()
            await bot.set_my_commands(commands, language_code=code)
    except (TelegramAPIError, TelegramNetworkError) as exc:  # a menu is not worth not starting
        logger.warning("could not set the command menu: %s", exc)


# --- running ---------------------------------------------------------------------------------


async def run_polling(settings: Settings) -> None:
    """``ccbot run``: long polling until SIGTERM/SIGINT."""
    async with _running(settings) as app:
        await serve_polling(app)


async def serve_polling(
    app: App, *, handle_signals: bool = True, polling_timeout: int = POLLING_TIMEOUT
) -> None:
    """Upgrade the database, drop a webhook if one is set, poll until stopped (a signal or
    ``app.dp.stop_polling()``), then let the updates in hand finish."""
    await upgrade_database(app)
    await app.bot.delete_webhook(drop_pending_updates=False)
    async with notifications(app):
        try:
            await app.dp.start_polling(
                app.bot,
                polling_timeout=polling_timeout,
                handle_signals=handle_signals,
                close_bot_session=False,  # App.close does it, after the updates in hand finish
            )
        finally:
            await app.dp.tracker.drain(SHUTDOWN_GRACE)


@contextlib.asynccontextmanager
async def notifications(app: App, *, alone: bool = False) -> AsyncIterator[None]:
    """The scheduler (outbox delivery, timed alerts) for the body: inside the bot unless
    ``NOTIFY_IN_BOT=false``; ``alone`` for ``ccbot worker``."""
    if app.delivery is None or not (alone or app.settings.notify_in_bot):
        yield
        return
    async with scheduled(app.settings, app.delivery):
        yield


async def run_worker(settings: Settings) -> None:
    """``ccbot worker``: only the scheduler (outbox delivery and timed alerts), for a shop
    that runs the bot in webhook mode, or several workers on PostgreSQL."""
    async with _running(settings) as app:
        await upgrade_database(app)
        await app.bot.get_me()  # a wrong token or an unreachable Bot API: say so now
        async with notifications(app, alone=True):
            logger.info("worker: delivering notifications until stopped")
            await _until_signal()


async def run_webhook(settings: Settings) -> None:
    """``ccbot webhook``: an HTTP server for Telegram's webhook until SIGTERM/SIGINT."""
    try:
        settings.require_token()
        webhook_target(settings)
    except SettingsError as exc:
        exit_on_settings_error(exc)
    async with _running(settings) as app:
        await upgrade_database(app)
        runner = web.AppRunner(make_webhook_app(app, settings), handle_signals=False)
        await runner.setup()
        try:
            site = web.TCPSite(runner, settings.webhook_host, settings.webhook_port)
            await site.start()
            logger.info(
                "webhook: listening on %s:%s%s",
                settings.webhook_host,
                settings.webhook_port,
                settings.webhook_path,
            )
            async with notifications(app):
                await _until_signal()
        finally:
            await runner.cleanup()


async def upgrade_database(app: App) -> None:
    # Imported here: Alembic logs at import time, and a settings error must stay one line.
    from storage.migrate import upgrade

    await upgrade(app.engine)


def webhook_target(settings: Settings) -> tuple[str, str]:
    """The public URL and the secret token for setWebhook; SettingsError when missing."""
    if not settings.webhook_url:
        raise SettingsError("WEBHOOK_URL", "is not set (the public https URL Telegram posts to)")
    secret = settings.webhook_secret.get_secret_value() if settings.webhook_secret else ""
    if not secret:
        raise SettingsError("WEBHOOK_SECRET", "is not set (1-256 characters: A-Z a-z 0-9 _ -)")
    return settings.webhook_url, secret


def make_webhook_app(app: App, settings: Settings) -> web.Application:
    """The aiohttp application of webhook mode: POST ``WEBHOOK_PATH`` with the secret header
    is handled; a missing or wrong ``X-Telegram-Bot-Api-Secret-Token`` gets 401 before the
    body is read. On start it calls setWebhook (URL, secret, the update types we handle)."""
    url, secret = webhook_target(settings)
    web_app = web.Application()

    async def on_startup(_: web.Application) -> None:
        await app.bot.set_webhook(
            url,
            secret_token=secret,
            allowed_updates=app.dp.resolve_used_update_types(),
            drop_pending_updates=False,
        )

    async def on_shutdown(_: web.Application) -> None:
        await app.dp.tracker.drain(SHUTDOWN_GRACE)

    web_app.on_startup.append(on_startup)
    web_app.on_shutdown.append(on_shutdown)  # before the handler closes the bot session
    _SecretCheckingHandler(dispatcher=app.dp, bot=app.bot, secret_token=secret).register(
        web_app, path=settings.webhook_path
    )
    setup_application(web_app, app.dp, bot=app.bot)
    return web_app


class _SecretCheckingHandler(SimpleRequestHandler):
    """aiogram's handler answers 401 to a wrong secret; this one also says so in the log.
    Updates are handled in the background (Telegram gets its 200 at once), except the
    critical ones: a successful payment is answered only once it is committed, and with a
    500 when it was not, so that Telegram delivers it again."""

    async def _handle_request_background(self, bot: Bot, request: web.Request) -> web.Response:
        data = await request.json(loads=bot.session.json_loads)
        update = Update.model_validate(data, context={"bot": bot})
        if not is_critical(update):
            return await super()._handle_request_background(bot, request)
        dp: TrackingDispatcher = self.dispatcher  # type: ignore[assignment]
        if await dp.feed_critical(bot, update, **self.data):
            return web.json_response({}, dumps=bot.session.json_dumps)
        return web.Response(status=500, text="not committed, send it again")

    def verify_secret(self, telegram_secret_token: str, bot: Bot) -> bool:
        if super().verify_secret(telegram_secret_token, bot):
            return True
        logger.warning("webhook: refused a request without the right secret token")
        return False


@contextlib.asynccontextmanager
async def _running(settings: Settings) -> AsyncIterator[App]:
    """Build the app, close it at the end; a bad setting exits 2, a crash logs (token
    redacted) and exits 1 instead of printing a traceback that could carry the token."""
    try:
        app = build(settings)
    except SettingsError as exc:
        exit_on_settings_error(exc)
    try:
        yield app
    except (KeyboardInterrupt, SystemExit, asyncio.CancelledError):
        raise
    except TelegramUnauthorizedError:
        logger.error("Telegram refused the bot token: check BOT_TOKEN")
        raise SystemExit(1) from None
    except TelegramNetworkError as exc:
        where = settings.telegram_api_url or "api.telegram.org"
        logger.error("cannot reach the Bot API at %s (TELEGRAM_API_URL): %s", where, exc.message)
        raise SystemExit(1) from None
    except Exception:
        logger.exception("the bot stopped on an error")
        raise SystemExit(1) from None
    finally:
        await app.close()


async def _until_signal() -> None:
    loop = asyncio.get_running_loop()
    stop = asyncio.Event()
    signals = (signal.SIGTERM, signal.SIGINT)
    for sig in signals:
        loop.add_signal_handler(sig, stop.set)
    try:
        await stop.wait()
    finally:
        for sig in signals:
            loop.remove_signal_handler(sig)


# --- updates in hand ---------------------------------------------------------------------------


class UpdateTracker:
    """Which updates are being handled, and which were: for a clean shutdown (wait for the
    ones in hand) and for tests (wait until a given update was handled)."""

    def __init__(self, remember: int = 1024) -> None:
        self.in_flight: Counter[int] = Counter()
        self._done: OrderedDict[int, None] = OrderedDict()
        self._remember = remember
        self._waiters: dict[int, asyncio.Event] = {}
        self._idle = asyncio.Event()
        self._idle.set()

    def begin(self, update_id: int) -> None:
        self.in_flight[update_id] += 1
        self._idle.clear()

    def end(self, update_id: int) -> None:
        self.in_flight[update_id] -= 1
        if self.in_flight[update_id] <= 0:
            del self.in_flight[update_id]
        self._done[update_id] = None
        self._done.move_to_end(update_id)
        while len(self._done) > self._remember:
            self._done.popitem(last=False)
        waiter = self._waiters.pop(update_id, None)
        if waiter is not None:
            waiter.set()
        if not self.in_flight:
            self._idle.set()

    def handled(self, update_id: int) -> bool:
        return update_id in self._done and update_id not in self.in_flight

    async def wait_handled(self, update_id: int) -> None:
        while not self.handled(update_id):
            await self._waiters.setdefault(update_id, asyncio.Event()).wait()

    async def drain(self, grace: float) -> bool:
        """Wait (up to ``grace`` seconds) until no update is in hand; False if some remain."""
        await asyncio.sleep(0)  # let handling tasks created just now start and register
        try:
            async with asyncio.timeout(grace):
                await self._idle.wait()
        except TimeoutError:
            logger.warning("shutdown: %d update(s) still in hand, stopping anyway", len(self))
            return False
        return True

    def __len__(self) -> int:
        return sum(self.in_flight.values())


def is_critical(update: Update) -> bool:
    """An update that must not be lost: Telegram is told it arrived only once it is
    committed. A successful payment is the one: Telegram will not send it again."""
    message = update.message
    return message is not None and message.successful_payment is not None


class CriticalUpdateError(RuntimeError):
    """A critical update could not be committed: polling stops without confirming it, so
    that Telegram delivers it again when the bot is back."""


class TrackingDispatcher(Dispatcher):
    """aiogram's Dispatcher, counting the updates it handles (see :class:`UpdateTracker`),
    and holding back the confirmation of critical updates until they are committed."""

    CRITICAL_RETRIES = (0.5, 2.0, 5.0)  # seconds before each new try

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.tracker = UpdateTracker()

    async def feed_critical(self, bot: Bot, update: Update, **kwargs: Any) -> bool:
        """Handle ``update`` now, trying again a few times; True once its handler says it
        committed (it sets ``critical["committed"]``)."""
        for delay in (0.0, *self.CRITICAL_RETRIES):
            if delay:
                await asyncio.sleep(delay)
            critical = {"committed": False}
            try:
                await self.feed_update(bot, update, critical=critical, **kwargs)
            except Exception:
                logger.exception("critical update %s failed", update.update_id)
            if critical["committed"]:
                return True
        logger.critical("critical update %s could not be committed", update.update_id)
        return False

    # aiogram's is a classmethod; polling calls it on the instance, and this one needs it.
    async def _listen_updates(self, bot: Bot, *args: Any, **kwargs: Any) -> Any:  # type: ignore[override]
        # Long polling confirms a batch when it asks for the next one. A critical update is
        # handled here, before that happens; the rest go on as tasks.
        async for update in super()._listen_updates(bot, *args, **kwargs):
            if is_critical(update):
                if not await self.feed_critical(bot, update, **self.workflow_data):
                    raise CriticalUpdateError(f"update {update.update_id} not committed")
                continue
            yield update

    async def feed_update(self, bot: Bot, update: Update, **kwargs: Any) -> Any:
        self.tracker.begin(update.update_id)
        try:
            return await super().feed_update(bot, update, **kwargs)
        finally:
            self.tracker.end(update.update_id)


# --- logs never carry the token ---------------------------------------------------------------

_TOKEN_LIKE = re.compile(r"\b\d{5,}:[A-Za-z0-9_-]{30,}")
REDACTED = "<BOT_TOKEN>"


class _RedactingRecordFactory:
    """Wraps the log record factory: the token is replaced in every record's message and
    traceback, whatever logger or handler it goes to. aiogram's messages can carry the
    request URL — and the token is in its path — e.g. "Failed to fetch updates -
    TelegramNetworkError: ... NonHttpUrlClientError: htp://host/bot<token>/getUpdates"."""

    def __init__(self, previous: Callable[..., logging.LogRecord]) -> None:
        self.previous = previous
        self.secrets: set[str] = set()

    def redact(self, text: str) -> str:
        for secret in self.secrets:
            text = text.replace(secret, REDACTED)
        return _TOKEN_LIKE.sub(REDACTED, text)

    def __call__(self, *args: Any, **kwargs: Any) -> logging.LogRecord:
        record = self.previous(*args, **kwargs)
        try:
            message = record.getMessage()
        except Exception:  # a bad format string: leave it to logging to complain
            return record
        record.msg, record.args = self.redact(message), ()
        if record.exc_info and record.exc_info[1] is not None:
            record.exc_text = self.redact("".join(traceback.format_exception(*record.exc_info)))
            record.exc_text = record.exc_text.rstrip("\n")
        if record.stack_info:
            record.stack_info = self.redact(record.stack_info)
        return record


def redact_token_in_logs(token: str) -> None:
    """From now on no log record carries ``token`` (nor anything shaped like a token)."""
    factory = logging.getLogRecordFactory()
    if not isinstance(factory, _RedactingRecordFactory):
        factory = _RedactingRecordFactory(factory)
        logging.setLogRecordFactory(factory)
    factory.secrets.add(token)
