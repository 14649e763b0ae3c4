"""The per-update middlewares: the staff check's transaction of reads, which a handler that
only reads goes on in and every other handler finds ended (``bot.middlewares``)."""

from __future__ import annotations

from datetime import datetime
from typing import Any

import pytest
from aiogram import Bot, Dispatcher, Router
from aiogram.types import Chat, Message, Update, User
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from bot.middlewares import EndReadsMiddleware, install
from handlers import ONLY_READS
from storage.db import begin_reads, in_reads
from storage.models import Role, Staff

TOKEN = "123456:middlewares-test"


def _text(user_id: int, text: str, update_id: int = 1) -> Update:
    user = User(id=user_id, is_bot=False, first_name="A")
    chat = Chat(id=user_id, type="private")
    message = Message(message_id=1, date=datetime.now(), chat=chat, from_user=user, text=text)
    return Update(update_id=update_id, message=message)


@pytest.fixture
async def staff_id(session_factory: async_sessionmaker[AsyncSession]) -> int:
    async with session_factory() as session:
        session.add(Staff(telegram_id=77, name="Master", role=Role.MASTER))
        await session.commit()
    return 77


def _dispatcher(session_factory: async_sessionmaker[AsyncSession], router: Router) -> Dispatcher:
    dp = Dispatcher()
    install(dp, session_factory)
    dp.include_router(router)
    return dp


async def test_a_handler_that_may_write_gets_a_transaction_of_its_own(
    session_factory: async_sessionmaker[AsyncSession], staff_id: int
):
    """Its two writes stand or fall together: had it run in the staff check's transaction
    of reads, the first would have been committed on its own (SQLite) before the crash."""
    seen: dict[str, Any] = {}
    router = Router()

    @router.message()
    async def writes_then_crashes(message: Message, session: AsyncSession, staff: Staff) -> None:
        seen["staff"] = staff.name
        seen["in_reads"] = in_reads(session)
        session.add(Staff(telegram_id=1001, name="One", role=Role.CASHIER))
        await session.flush()
        session.add(Staff(telegram_id=1002, name="Two", role=Role.CASHIER))
        await session.flush()
        raise RuntimeError("crash between the writes and the commit")

    dp = _dispatcher(session_factory, router)
    async with Bot(TOKEN) as bot:
        with pytest.raises(RuntimeError):
            await dp.feed_update(bot, _text(staff_id, "x"))
    assert seen == {"staff": "Master", "in_reads": False}
    async with session_factory() as session:
        added = (await session.scalars(select(Staff).where(Staff.telegram_id > 1000))).all()
    assert added == []


async def test_a_handler_that_only_reads_goes_on_in_the_staff_checks_reads(
    session_factory: async_sessionmaker[AsyncSession], staff_id: int
):
    seen: dict[str, Any] = {}
    router = Router()

    @router.message(flags={ONLY_READS: True})
    async def reads(message: Message, session: AsyncSession, staff: Staff) -> None:
        transaction = session.get_transaction()
        seen["in_reads"] = in_reads(session)
        await begin_reads(session)  # as a search does: nothing more
        seen["same"] = session.get_transaction() is transaction
        seen["count"] = len((await session.scalars(select(Staff))).all())

    dp = _dispatcher(session_factory, router)
    async with Bot(TOKEN) as bot:
        await dp.feed_update(bot, _text(staff_id, "x"))
    assert seen == {"in_reads": True, "same": True, "count": 1}


async def test_a_stranger_gets_a_clean_session_too(
    session_factory: async_sessionmaker[AsyncSession], staff_id: int
):
    seen: dict[str, Any] = {}
    router = Router()

    @router.message()
    async def anyone(message: Message, session: AsyncSession, staff: Staff | None) -> None:
        seen["staff"] = staff
        seen["in_reads"] = in_reads(session)

    dp = _dispatcher(session_factory, router)
    async with Bot(TOKEN) as bot:
        await dp.feed_update(bot, _text(5, "x"))
    assert seen == {"staff": None, "in_reads": False}


def test_every_observer_but_the_dispatchers_own_ends_the_reads():
    """A kind of event whose handlers the inner middleware did not wrap (a payment's
    pre-checkout query, say) would run them in the transaction of reads."""
    dp = Dispatcher()
    install(dp, async_sessionmaker())
    unwrapped = [
        name
        for name, observer in dp.observers.items()
        if name != "update"
        and not any(isinstance(m, EndReadsMiddleware) for m in observer.middleware)
    ]
    assert unwrapped == []
    assert not any(isinstance(m, EndReadsMiddleware) for m in dp.update.middleware)
