"""The outbox worker's test bench, shared by tests/test_delivery.py and tests/test_pacing.py:
the app's own worker against ``FakeBotAPI``, its policy tightened where a test would
otherwise wait minutes (backoff, lease), and a kind of notification that says its payload."""

from __future__ import annotations

import asyncio
import dataclasses
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

import pytest
from sqlalchemy import func, select

from bot.app import App, build
from bot.delivery import DeliveryWorker
from handlers import alerts
from storage.models import Notification, NotificationState
from tests.botapi import FakeBotAPI
from tests.e2e_support import TOKEN, make_settings

PING = "test_ping"  # a kind that says its payload: the tests of the mechanics use it


@dataclass
class Shop:
    api: FakeBotAPI
    app: App
    worker: DeliveryWorker

    def with_policy(self, **changes: Any) -> DeliveryWorker:
        return DeliveryWorker(
            self.app.bot,
            self.app.session_factory,
            self.app.i18n,
            dataclasses.replace(self.worker.policy, **changes),
            single=self.worker.single,
        )

    async def ping(
        self, chat_id: int, text: str, *, key: str | None = None, **columns: Any
    ) -> None:
        async with self.app.session_factory() as session, session.begin():
            session.add(
                Notification(
                    key=key or f"ping:{chat_id}:{text}",
                    kind=PING,
                    chat_id=chat_id,
                    payload={"text": text},
                    **columns,
                )
            )

    async def rows(self) -> list[Notification]:
        async with self.app.session_factory() as session:
            return list(await session.scalars(select(Notification).order_by(Notification.id)))

    async def deliver_all(self, worker: DeliveryWorker | None = None, within: float = 20) -> None:
        """Drain until no row waits to be sent (rows waiting for a retry included)."""
        worker = worker or self.worker
        async with asyncio.timeout(within):
            while True:
                await worker.drain(within)
                async with self.app.session_factory() as session:
                    waiting = await session.scalar(
                        select(func.count())
                        .select_from(Notification)
                        .where(
                            Notification.state.in_(
                                [NotificationState.PENDING, NotificationState.SENDING]
                            )
                        )
                    )
                if not waiting:
                    return
                await asyncio.sleep(0.05)


async def render_ping(
    session: Any, row: Notification, ctx: alerts.AlertContext
) -> alerts.Rendered:
    return alerts.Rendered(str(row.payload["text"]), digest_line=str(row.payload["text"]))


@pytest.fixture
async def shop(db_url: str, monkeypatch: pytest.MonkeyPatch) -> AsyncIterator[Shop]:
    monkeypatch.setitem(alerts.RENDERERS, PING, render_ping)
    async with FakeBotAPI(TOKEN) as api:
        app = build(make_settings(db_url, api, quiet_hours=""))
        assert app.delivery is not None
        policy = dataclasses.replace(app.delivery.policy, rate=200.0, backoff_base=0.05)
        worker = DeliveryWorker(
            app.bot, app.session_factory, app.i18n, policy, single=app.delivery.single
        )
        try:
            yield Shop(api, app, worker)
        finally:
            await app.close()
