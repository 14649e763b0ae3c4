"""Outer middlewares: what every handler gets in its data.

Order on ``dp.update`` (after aiogram's own errors and user-context middlewares):

1. :class:`DbSessionMiddleware` — ``session``: one ``AsyncSession`` per update, closed (and
   so rolled back, unless a handler committed) when the update is done, even on error;
2. :class:`StaffMiddleware` — ``staff``: the active staff member behind the update, or None
   for anyone else (strangers, deactivated staff, updates without a user), read in a
   transaction of reads (``storage.db.begin_reads``) that it leaves open;
3. :class:`ClientMiddleware` — ``client``: the client whose chat this private chat is, for
   anyone who is not staff (staff always see the staff's bot), else None.

and, as an inner middleware on every event observer (:func:`install`), right before the
handler that takes the update:

4. :class:`EndReadsMiddleware` — ends that transaction of reads, unless the handler is
   flagged ``handlers.ONLY_READS``: such a handler (a search, a screen) goes on reading in
   it, without the commit and the new transaction that would cost it (about a tenth of a
   millisecond of CPU on each search message and card press: docs/performance.md); every
   other handler starts from a clean session, in which it may write.

Handlers commit what they change (``await session.commit()``); a service never does.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

from aiogram import BaseMiddleware, Dispatcher
from aiogram.dispatcher.flags import get_flag
from aiogram.enums import ChatType
from aiogram.types import Chat, TelegramObject, User
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from bot.i18n import LANGUAGES
from handlers import ONLY_READS
from services import clients_link
from services import staff as staff_service
from storage.db import begin_reads, in_reads

Handler = Callable[[TelegramObject, dict[str, Any]], Awaitable[Any]]


class DbSessionMiddleware(BaseMiddleware):
    def __init__(self, session_factory: async_sessionmaker[AsyncSession]) -> None:
        self.session_factory = session_factory

    async def __call__(self, handler: Handler, event: TelegramObject, data: dict[str, Any]) -> Any:
        async with self.session_factory() as session:
            data["session"] = session
            return await handler(event, data)


class StaffMiddleware(BaseMiddleware):
    async def __call__(self, handler: Handler, event: TelegramObject, data: dict[str, Any]) -> Any:
        user: User | None = data.get("event_from_user")
        session: AsyncSession = data["session"]
        data["staff"] = None
        if user is not None and not user.is_bot:
            # Re-read on every update (a role change or a deactivation applies at once);
            # one SELECT, so on SQLite it needs no BEGIN. The transaction of reads stays
            # open for the handler: EndReadsMiddleware ends it unless the handler only reads.
            await begin_reads(session)
            data["staff"] = await staff_service.get_active(session, user.id)
        return await handler(event, data)


class ClientMiddleware(BaseMiddleware):
    async def __call__(self, handler: Handler, event: TelegramObject, data: dict[str, Any]) -> Any:
        chat: Chat | None = data.get("event_chat")
        data["client"] = None
        if data.get("staff") is None and chat is not None and chat.type == ChatType.PRIVATE:
            session: AsyncSession = data["session"]
            await _end_reads(session)  # it may write (the client's language)
            client = await clients_link.client_by_chat(session, chat.id)
            user: User | None = data.get("event_from_user")
            if client is not None and user is not None:
                clients_link.remember_locale(client, user.language_code, LANGUAGES)
            data["client"] = client
            await session.commit()  # as above: end the transaction, keep the object
        return await handler(event, data)


class EndReadsMiddleware(BaseMiddleware):
    """Inner: the staff check's transaction of reads ends before a handler that may write,
    so that the handler's writes go in a transaction of their own (on SQLite, a write in
    a transaction of reads would commit at once, statement by statement), which it may
    start with the write lock (``storage.db.begin_immediate``). A handler flagged
    ``ONLY_READS`` keeps it: its ``begin_reads`` then does nothing."""

    async def __call__(self, handler: Handler, event: TelegramObject, data: dict[str, Any]) -> Any:
        if not get_flag(data, ONLY_READS):
            session: AsyncSession | None = data.get("session")
            if session is not None:
                await _end_reads(session)
        return await handler(event, data)


async def _end_reads(session: AsyncSession) -> None:
    # Commit, not rollback: a rollback would expire the staff member just loaded. Nothing
    # was written, so on SQLite it is no trip to the database.
    if in_reads(session):
        await session.commit()


def install(dp: Dispatcher, session_factory: async_sessionmaker[AsyncSession]) -> None:
    """The middlewares above, in their order, on ``dp``: the outer ones on ``update``, the
    inner one on every other observer, so that no handler of any kind of event can run in
    the staff check's transaction of reads unless it is flagged so."""
    dp.update.outer_middleware(DbSessionMiddleware(session_factory))
    dp.update.outer_middleware(StaffMiddleware())
    dp.update.outer_middleware(ClientMiddleware())
    end_reads = EndReadsMiddleware()
    for name, observer in dp.observers.items():
        if name != "update":  # the dispatcher's own handler, which routes the update
            observer.middleware(end_reads)
