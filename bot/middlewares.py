"""Outer middlewares: what every handler gets in its data.

Order on ``dp.update`` (after aiogram's own errors and user-context middlewares):

1. :class:`DbSessionMiddleware` — ``session``: one ``AsyncSession`` per update, closed (and
   so rolled back, unless a handler committed) when the update is done, even on error;
2. :class:`StaffMiddleware` — ``staff``: the active staff member behind the update, or None
   for anyone else (strangers, deactivated staff, updates without a user);
3. :class:`ClientMiddleware` — ``client``: the client whose chat this private chat is, for
   anyone who is not staff (staff always see the staff's bot), else None.

Handlers commit what they change (``await session.commit()``); a service never does.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

from aiogram import BaseMiddleware
from aiogram.enums import ChatType
from aiogram.types import Chat, TelegramObject, User
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from bot.i18n import LANGUAGES
from services import clients_link
from services import staff as staff_service
from storage.db import begin_reads

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
            # one SELECT, so on SQLite it needs no BEGIN.
            await begin_reads(session)
            data["staff"] = await staff_service.get_active(session, user.id)
            # End the read transaction now: a handler that writes then starts its own,
            # and on SQLite can take the write lock first (storage.db.begin_immediate).
            # Commit, not rollback: a rollback would expire the staff member just loaded.
            await session.commit()
        return await handler(event, data)


class ClientMiddleware(BaseMiddleware):
    async def __call__(self, handler: Handler, event: TelegramObject, data: dict[str, Any]) -> Any:
        chat: Chat | None = data.get("event_chat")
        data["client"] = None
        if data.get("staff") is None and chat is not None and chat.type == ChatType.PRIVATE:
            session: AsyncSession = data["session"]
            client = await clients_link.client_by_chat(session, chat.id)
            user: User | None = data.get("event_from_user")
            if client is not None and user is not None:
                clients_link.remember_locale(client, user.language_code, LANGUAGES)
            data["client"] = client
            await session.commit()  # as above: end the transaction, keep the object
        return await handler(event, data)
