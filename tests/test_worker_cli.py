"""``ccbot worker``: the scheduler alone, as a shop runs it beside a webhook bot."""

from __future__ import annotations

import asyncio
import os
import signal
import sys

from sqlalchemy import select

from services import outbox
from storage.db import make_engine, make_session_factory
from storage.models import DocState, DocType, Notification, NotificationState
from tests.botapi import FakeBotAPI
from tests.e2e_support import TOKEN
from tests.factories import make_client, make_document


async def test_the_worker_delivers_and_stops_cleanly_on_sigterm(sqlite_url: str):
    engine = make_engine(sqlite_url)
    factory = make_session_factory(engine)
    async with factory() as session, session.begin():
        client = await make_client(session, "Иванов", phone=None)
        client.telegram_chat_id = 7001
        order = await make_document(
            session, client, DocType.WORK_ORDER, state=DocState.COMPLETED, amount=0
        )
        await outbox.enqueue(
            session,
            outbox.Kind.ORDER_READY,
            f"order_ready:{order.id}",
            client_id=client.id,
            payload={"document_id": order.id},
        )
    async with FakeBotAPI(TOKEN) as api:
        api.known_chat(7001)
        env = {
            **os.environ,
            "BOT_TOKEN": TOKEN,
            "TELEGRAM_API_URL": api.base_url,
            "DATABASE_URL": sqlite_url,
            "QUIET_HOURS": "",
        }
        worker = await asyncio.create_subprocess_exec(
            sys.executable,
            "-m",
            "bot",
            "worker",
            env=env,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
        )
        try:
            await api.wait_until(lambda: bool(api.sent(7001)), timeout=30)
        finally:
            worker.send_signal(signal.SIGTERM)
            _out, err = await asyncio.wait_for(worker.communicate(), timeout=30)
    assert worker.returncode == 0, err.decode()
    assert "готово, можно забирать" in (api.sent(7001)[0].text or "")
    async with factory() as session:
        row = await session.scalar(select(Notification))
        assert row is not None and row.state is NotificationState.SENT
    await engine.dispose()
