"""The outbox worker: sends queued notifications within Telegram's limits, loses none.

One run (:meth:`DeliveryWorker.drain`) claims the due rows, renders each in its
recipient's language and sends it:

* **Claim.** Due rows (``pending`` and ``not_before`` passed, or ``sending`` whose lease
  ran out: a worker died holding them) become ``sending`` with a lease, in one short
  transaction. On PostgreSQL the rows are locked ``FOR UPDATE SKIP LOCKED``, so two workers
  never take the same row; on SQLite ``BEGIN IMMEDIATE`` serialises the claim and one worker
  runs.
* **Limits.** At most ``rate`` messages a second overall (evenly spaced, no bursts), and
  one message per ``chat_interval`` per chat (``bot.pacing``: this process's own limits, or
  with Redis the same limits shared by every worker). Several digestible messages waiting
  for one chat go out as one digest.
* **Faults.** 429: the row waits ``retry_after`` and the whole worker pauses as long.
  Network errors, timeouts and 5xx: exponential backoff with jitter up to a cap, then the row
  is dead and the admins are told. 403: the client's chat is marked unreachable, the
  manager told, the row dropped. A group upgraded to a supergroup: the new chat id is kept
  and the message sent again.
* **Nothing lost, nothing twice.** A row is committed with the change that caused it; it
  is ``sent`` with Telegram's ``message_id`` right after the send, and a sent row is never
  claimed again. A crash after the claim and before the send leaves it ``sending``: its
  lease runs out and it is sent then. The one window left is a crash after Telegram
  accepted a message and before its ``message_id`` was written: that message may go twice
  (at least once, never lost).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
import random
import time as monotonic_time
from collections import defaultdict
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, time, timedelta
from typing import Any
from zoneinfo import ZoneInfo

from aiogram import Bot
from aiogram.exceptions import (
    TelegramAPIError,
    TelegramBadRequest,
    TelegramForbiddenError,
    TelegramMigrateToChat,
    TelegramNetworkError,
    TelegramRetryAfter,
)
from aiogram.types import InlineKeyboardMarkup
from aiogram.utils.i18n import I18n
from sqlalchemy import and_, or_, select, update
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from bot.config import Settings
from bot.pacing import LocalPacer, Pacer
from handlers import alerts
from services import notify
from services.outbox import Kind, enqueue, quiet_until
from storage.db import write_transaction
from storage.models import Client, Notification, NotificationState, Role, Staff

log = logging.getLogger(__name__)

MAX_ERROR = 500
# Why a client's message is not sent (kept on the row), by services.notify.reach_of.
SKIPPED = {
    notify.Reach.NOT_LINKED: "no linked chat",
    notify.Reach.OPTED_OUT: "opted out",
    notify.Reach.BLOCKED: "chat unreachable",
}


@dataclass(frozen=True)
class DeliveryPolicy:
    rate: float = 25.0  # messages per second, overall
    chat_interval: float = 1.0  # seconds between two messages to one chat
    concurrency: int = 8  # sends in flight
    max_attempts: int = 8  # transient failures before a row is dead
    backoff_base: float = 2.0  # seconds, doubled per attempt
    backoff_cap: float = 600.0
    lease: float = 60.0  # seconds a claim holds a row
    send_timeout: int = 30  # seconds one sendMessage may take
    batch_seconds: float = 2.0  # one claim takes what the rate sends in this long
    quiet: tuple[time, time] | None = None
    tz: ZoneInfo = field(default_factory=lambda: ZoneInfo("Europe/Moscow"))
    default_locale: str = "ru"

    @classmethod
    def from_settings(cls, settings: Settings) -> DeliveryPolicy:
        return cls(
            rate=settings.notify_rate,
            chat_interval=settings.notify_chat_interval,
            concurrency=settings.notify_concurrency,
            max_attempts=settings.notify_max_attempts,
            backoff_cap=settings.notify_backoff_cap,
            lease=settings.notify_lease,
            quiet=settings.quiet_window(),
            tz=settings.tz,
            default_locale=settings.default_locale,
        )

    def backoff(self, attempts: int) -> float:
        """Seconds to wait after the ``attempts``-th failure: exponential, half of it
        jittered, capped."""
        ceiling = min(self.backoff_cap, self.backoff_base * 2 ** max(0, attempts - 1))
        return ceiling / 2 + random.uniform(0, ceiling / 2)  # jitter, not crypto


@dataclass
class _Target:
    """Where a claimed row goes, resolved when sending."""

    row: Notification
    chat_id: int | None = None
    locale: str = "ru"
    is_client: bool = False
    skip: str | None = None  # why it is dropped instead


@dataclass
class _Unit:
    """One message to send: a single row, or a digest of several for one chat."""

    chat_id: int
    locale: str
    rows: list[Notification]
    is_client: bool


@dataclass
class DrainStats:
    sent: int = 0  # messages (a digest is one)
    rows_sent: int = 0
    dropped: int = 0
    dead: int = 0
    retried: int = 0
    deferred: int = 0  # quiet hours, the per-chat limit


def _now() -> datetime:
    return datetime.now(UTC)


def _error(exc: BaseException) -> str:
    return f"{type(exc).__name__}: {exc}"[:MAX_ERROR]


class DeliveryWorker:
    def __init__(
        self,
        bot: Bot,
        session_factory: async_sessionmaker[AsyncSession],
        i18n: I18n,
        policy: DeliveryPolicy,
        *,
        payments: bool = False,
        single: bool = False,
        clock: Callable[[], float] = monotonic_time.monotonic,
        pacer: Pacer | None = None,
    ) -> None:
        self.bot = bot
        self.session_factory = session_factory
        self.i18n = i18n
        self.policy = policy
        self.clock = clock
        # The limits: this process's own, or shared with other workers (bot.pacing).
        self.pacer: Pacer = pacer or LocalPacer(policy.rate)
        self._chat_free_at: dict[int, float] = {}  # monotonic time a chat may get the next
        self._paused_until = 0.0  # monotonic: after a 429
        self._lock = asyncio.Lock()
        self._dialect: str | None = None
        self._stopping = False
        # The only worker (SQLite): what a crash left in flight is its own.
        self.single = single
        self.context = alerts.AlertContext(tz=policy.tz, payments=payments)

    # -- the scheduler's entry points -----------------------------------------------

    async def tick(self, max_seconds: float = 60.0) -> DrainStats | None:
        """The scheduled job: drain unless a drain is already running (that one picks up
        what is new). Returns None when it left the work to the running drain."""
        if self._lock.locked() or self._stopping:
            return None
        async with self._lock:
            return await self.drain(max_seconds)

    async def drain(self, max_seconds: float = 60.0) -> DrainStats:
        """Send what is due, batch by batch, until nothing is or ``max_seconds`` passed."""
        stats = DrainStats()
        deadline = self.clock() + max_seconds
        while self.clock() < deadline and not self._stopping:
            await self._wait_pause()
            limit = max(1, math.ceil(self.policy.rate * self.policy.batch_seconds))
            rows = await self._claim(limit)
            if not rows:
                break
            await self._deliver(rows, stats)
        return stats

    async def stop(self, grace: float = 10.0) -> None:
        """No new batch; wait up to ``grace`` seconds for the messages in flight."""
        self._stopping = True
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(grace), self._lock:
                pass

    async def recover(self) -> int:
        """At the start of the only worker (SQLite): rows left ``sending`` by a crash are due
        again at once instead of after their lease."""
        async with write_transaction(self.session_factory) as session:
            result = await session.execute(
                update(Notification)
                .where(Notification.state == NotificationState.SENDING)
                .values(state=NotificationState.PENDING, lease_until=None, not_before=_now())
                .execution_options(synchronize_session=False)
            )
        return int(getattr(result, "rowcount", 0) or 0)

    # -- claim ------------------------------------------------------------------------

    async def _claim(self, limit: int) -> list[Notification]:
        now = _now()
        lease_until = now + timedelta(seconds=self.policy.lease)
        due = or_(
            and_(Notification.state == NotificationState.PENDING, Notification.not_before <= now),
            and_(Notification.state == NotificationState.SENDING, Notification.lease_until < now),
        )
        async with write_transaction(self.session_factory) as session:
            if self._dialect is None:
                self._dialect = (await session.connection()).dialect.name
            locking = self._dialect == "postgresql"
            pick = (
                select(Notification.id)
                .where(due)
                .order_by(Notification.not_before, Notification.id)
                .limit(limit)
            )
            if locking:
                pick = pick.with_for_update(skip_locked=True)
            ids = list(await session.scalars(pick))
            if not ids:
                return []
            # A digest takes every digestible row due for the same staff member.
            staff_ids = list(
                await session.scalars(
                    select(Notification.staff_id)
                    .where(
                        Notification.id.in_(ids),
                        Notification.digestible.is_(True),
                        Notification.staff_id.is_not(None),
                    )
                    .distinct()
                )
            )
            if staff_ids:
                more = (
                    select(Notification.id)
                    .where(
                        due,
                        Notification.digestible.is_(True),
                        Notification.staff_id.in_(staff_ids),
                        Notification.id.not_in(ids),
                    )
                    .limit(limit * 20)
                )
                if locking:
                    more = more.with_for_update(skip_locked=True)
                ids += list(await session.scalars(more))
            await session.execute(
                update(Notification)
                .where(Notification.id.in_(ids))
                .values(
                    state=NotificationState.SENDING,
                    lease_until=lease_until,
                    attempts=Notification.attempts + 1,
                )
                .execution_options(synchronize_session=False)
            )
            rows = list(
                await session.scalars(
                    select(Notification)
                    .where(Notification.id.in_(ids))
                    .order_by(Notification.not_before, Notification.id)
                )
            )
        return rows

    # -- route ------------------------------------------------------------------------

    async def _targets(self, rows: Sequence[Notification]) -> list[_Target]:
        client_ids = {r.client_id for r in rows if r.client_id is not None}
        staff_ids = {r.staff_id for r in rows if r.staff_id is not None}
        async with self.session_factory() as session:
            clients = {
                c.id: c
                for c in await session.scalars(select(Client).where(Client.id.in_(client_ids)))
            }
            members = await session.scalars(select(Staff).where(Staff.id.in_(staff_ids)))
            staff = {s.id: s for s in members}
        targets = []
        for row in rows:
            target = _Target(row, locale=self.policy.default_locale)
            if row.client_id is not None:
                client = clients.get(row.client_id)
                target.is_client = True
                reach = notify.reach_of(client)
                if client is None:
                    target.skip = "client gone"
                elif reach is not notify.Reach.IN_BOT:
                    target.skip = SKIPPED[reach]
                else:
                    target.chat_id = client.telegram_chat_id
                    target.locale = client.locale or self.policy.default_locale
            elif row.staff_id is not None:
                member = staff.get(row.staff_id)
                if member is None or not member.active:
                    target.skip = "staff member inactive"
                else:
                    target.chat_id = member.telegram_id
                    target.locale = member.locale or self.policy.default_locale
            else:
                target.chat_id = row.chat_id
            targets.append(target)
        return targets

    async def _deliver(self, rows: list[Notification], stats: DrainStats) -> None:
        now = _now()
        by_chat: dict[int, list[_Target]] = defaultdict(list)
        for target in await self._targets(rows):
            row = target.row
            if target.skip is not None:
                await self._finish(row, NotificationState.DROPPED, error=target.skip)
                stats.dropped += 1
                continue
            if target.is_client and not row.urgent:
                until = quiet_until(now, self.policy.quiet, self.policy.tz)
                if until is not None:
                    await self._release(row, until)
                    stats.deferred += 1
                    continue
            assert target.chat_id is not None
            by_chat[target.chat_id].append(target)

        units: list[_Unit] = []
        mono = self.clock()
        for chat_id, targets in by_chat.items():
            free_at = self._chat_free_at.get(chat_id, 0.0)
            plan = self._plan(chat_id, targets)
            # The first message now (or when the chat is free), the rest one interval
            # apart: those go back to wait, so a slow chat never holds a batch.
            first: _Unit | None = plan[0]
            rest = plan[1:]
            if free_at > mono:
                rest = plan
                first = None
            if first is not None:
                units.append(first)
            for index, unit in enumerate(rest, start=1 if first is not None else 0):
                wait = max(free_at - mono, 0.0) + index * self.policy.chat_interval
                for row in unit.rows:
                    await self._release(row, now + timedelta(seconds=wait))
                    stats.deferred += 1

        semaphore = asyncio.Semaphore(self.policy.concurrency)

        async def one(unit: _Unit) -> None:
            async with semaphore:
                await self._send_unit(unit, stats)

        async with asyncio.TaskGroup() as group:
            for unit in units:
                group.create_task(one(unit))
        self._prune(self.clock())

    def _plan(self, chat_id: int, targets: list[_Target]) -> list[_Unit]:
        digestible = [t for t in targets if t.row.digestible]
        single = [t for t in targets if not t.row.digestible]
        locale, is_client = targets[0].locale, targets[0].is_client
        units = [_Unit(chat_id, locale, [t.row], is_client) for t in single]
        if len(digestible) == 1:
            units.append(_Unit(chat_id, locale, [digestible[0].row], is_client))
        elif digestible:
            units.append(_Unit(chat_id, locale, [t.row for t in digestible], is_client))
        return units

    def _prune(self, mono: float) -> None:
        for chat_id in [c for c, at in self._chat_free_at.items() if at <= mono]:
            del self._chat_free_at[chat_id]

    # -- send ---------------------------------------------------------------------------

    async def _render(self, unit: _Unit) -> tuple[str, InlineKeyboardMarkup | None, list[int]]:
        """The text and buttons of a unit; the ids of rows that are out of date."""
        rendered: list[tuple[Notification, alerts.Rendered]] = []
        stale: list[int] = []
        async with self.session_factory() as session:
            with self.i18n.context(), self.i18n.use_locale(unit.locale):
                for row in unit.rows:
                    renderer = alerts.RENDERERS.get(row.kind)
                    if renderer is None:
                        raise LookupError(f"no renderer for {row.kind}")
                    result = await renderer(session, row, self.context)
                    if result is None:
                        stale.append(row.id)
                    else:
                        rendered.append((row, result))
                if not rendered:
                    return "", None, stale
                if len(rendered) == 1:
                    _row, only = rendered[0]
                    return only.text, only.markup, stale
                return alerts.digest([r for _row, r in rendered]), None, stale

    async def _wait_pause(self) -> None:
        delay = self._paused_until - self.clock()
        if delay > 0:
            await asyncio.sleep(delay)

    async def _send_unit(self, unit: _Unit, stats: DrainStats) -> None:
        try:
            text, markup, stale = await self._render(unit)
        except Exception as exc:  # a bug in a renderer must not stop the others
            log.exception("notification %s could not be rendered", [r.id for r in unit.rows])
            for row in unit.rows:
                await self._dead(row, _error(exc))
                stats.dead += 1
            return
        live = [row for row in unit.rows if row.id not in stale]
        for row in unit.rows:
            if row.id in stale:
                await self._finish(row, NotificationState.DROPPED, error="out of date")
                stats.dropped += 1
        if not live:
            return
        chat_id = unit.chat_id
        for _hop in range(2):  # the second time after a migration to a supergroup
            await self._wait_pause()
            await self.pacer.acquire(chat_id)
            self._chat_free_at[chat_id] = self.clock() + self.policy.chat_interval
            try:
                message = await self.bot.send_message(
                    chat_id,
                    text,
                    reply_markup=markup,
                    request_timeout=self.policy.send_timeout,
                )
            except TelegramMigrateToChat as exc:
                await self._migrated(live, exc.migrate_to_chat_id)
                chat_id = exc.migrate_to_chat_id
                continue
            except TelegramRetryAfter as exc:
                self._paused_until = max(self._paused_until, self.clock() + exc.retry_after)
                await self.pacer.pause(exc.retry_after)  # every worker, when shared
                for row in live:
                    await self._release(row, _now() + timedelta(seconds=exc.retry_after))
                stats.retried += len(live)
                return
            except TelegramForbiddenError as exc:
                await self._unreachable(live, unit, _error(exc))
                stats.dropped += len(live)
                return
            except TelegramBadRequest as exc:  # a permanent refusal: chat not found...
                for row in live:
                    await self._dead(row, _error(exc))
                stats.dead += len(live)
                return
            except (TelegramNetworkError, TelegramAPIError, TimeoutError) as exc:
                for row in live:
                    if await self._retry_or_die(row, _error(exc)):
                        stats.retried += 1
                    else:
                        stats.dead += 1
                return
            await self._sent(live, chat_id, message.message_id)
            stats.sent += 1
            stats.rows_sent += len(live)
            return
        for row in live:  # migrated twice in a row: something is wrong
            await self._dead(row, "migrated twice")
        stats.dead += len(live)

    # -- outcomes -------------------------------------------------------------------------

    async def _update(self, ids: Iterable[int], **values: Any) -> None:
        async with self.session_factory() as session, session.begin():
            await session.execute(
                update(Notification)
                .where(Notification.id.in_(list(ids)))
                .values(**values)
                .execution_options(synchronize_session=False)
            )

    async def _sent(self, rows: Sequence[Notification], chat_id: int, message_id: int) -> None:
        await self._update(
            [r.id for r in rows],
            state=NotificationState.SENT,
            sent_at=_now(),
            chat_id=chat_id,
            message_id=message_id,
            lease_until=None,
            last_error=None,
        )

    async def _finish(
        self, row: Notification, state: NotificationState, *, error: str | None = None
    ) -> None:
        await self._update([row.id], state=state, lease_until=None, last_error=error)

    async def _release(self, row: Notification, not_before: datetime) -> None:
        """Back to waiting, without counting an attempt (quiet hours, limits, 429)."""
        await self._update(
            [row.id],
            state=NotificationState.PENDING,
            not_before=not_before,
            lease_until=None,
            attempts=Notification.attempts - 1,
        )

    async def _retry_or_die(self, row: Notification, error: str) -> bool:
        if row.attempts >= self.policy.max_attempts:
            await self._dead(row, error)
            return False
        wait = self.policy.backoff(row.attempts)
        await self._update(
            [row.id],
            state=NotificationState.PENDING,
            not_before=_now() + timedelta(seconds=wait),
            lease_until=None,
            last_error=error,
        )
        return True

    async def _dead(self, row: Notification, error: str) -> None:
        """Given up: the row is dead and every active admin is told (not about a dead
        letter itself, which would loop)."""
        log.warning("notification %s (%s) given up: %s", row.id, row.kind, error)
        async with self.session_factory() as session, session.begin():
            await session.execute(
                update(Notification)
                .where(Notification.id == row.id)
                .values(state=NotificationState.DEAD, lease_until=None, last_error=error)
                .execution_options(synchronize_session=False)
            )
            if row.kind == Kind.DEAD_LETTER:
                return
            admins = await session.scalars(
                select(Staff.id).where(Staff.active.is_(True), Staff.role == Role.ADMIN)
            )
            for admin_id in admins:
                if admin_id == row.staff_id:
                    continue
                await enqueue(
                    session,
                    Kind.DEAD_LETTER,
                    f"dead_letter:{row.id}:{admin_id}",
                    staff_id=admin_id,
                    payload={"notification_id": row.id},
                    urgent=True,
                )

    async def _unreachable(self, rows: Sequence[Notification], unit: _Unit, error: str) -> None:
        """403: the chat blocked the bot (or the account is gone). A client's chat is marked
        and their manager told; nothing more is tried for it."""
        now = _now()
        async with self.session_factory() as session, session.begin():
            await session.execute(
                update(Notification)
                .where(Notification.id.in_([r.id for r in rows]))
                .values(state=NotificationState.DROPPED, lease_until=None, last_error=error)
                .execution_options(synchronize_session=False)
            )
            client_ids = {r.client_id for r in rows if r.client_id is not None}
            for client_id in client_ids:
                marked = await session.execute(
                    update(Client)
                    .where(Client.id == client_id, Client.telegram_blocked_at.is_(None))
                    .values(telegram_blocked_at=now)
                    .execution_options(synchronize_session=False)
                )
                if getattr(marked, "rowcount", 0):
                    await notify.client_unreachable(session, client_id, at=now)
        if not unit.is_client:
            log.warning("chat %s refused a notification: %s", unit.chat_id, error)

    async def _migrated(self, rows: Sequence[Notification], new_chat_id: int) -> None:
        """A group became a supergroup: its new id replaces the old wherever it is kept."""
        async with self.session_factory() as session, session.begin():
            for row in rows:
                if row.client_id is not None:
                    await session.execute(
                        update(Client)
                        .where(Client.id == row.client_id)
                        .values(telegram_chat_id=new_chat_id)
                        .execution_options(synchronize_session=False)
                    )
                elif row.chat_id is not None:
                    await session.execute(
                        update(Notification)
                        .where(
                            Notification.chat_id == row.chat_id,
                            Notification.state.in_(
                                [NotificationState.PENDING, NotificationState.SENDING]
                            ),
                        )
                        .values(chat_id=new_chat_id)
                        .execution_options(synchronize_session=False)
                    )
