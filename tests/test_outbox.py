"""The outbox: a notification is queued with the change, once per business key."""

from __future__ import annotations

import pytest
from sqlalchemy import func, select

from services import outbox
from storage.models import Notification, NotificationState
from tests.factories import make_client


async def test_a_key_is_queued_once(session):
    client = await make_client(session)
    first = await outbox.enqueue(
        session, outbox.Kind.ORDER_READY, "order_ready:1", client_id=client.id, payload={"a": 1}
    )
    again = await outbox.enqueue(
        session, outbox.Kind.ORDER_READY, "order_ready:1", client_id=client.id, payload={"a": 2}
    )
    await session.commit()
    assert (first, again) == (True, False)
    rows = (await session.scalars(select(Notification))).all()
    assert len(rows) == 1
    assert rows[0].payload == {"a": 1}
    assert rows[0].state is NotificationState.PENDING


async def test_a_rolled_back_change_queues_nothing(session):
    client = await make_client(session)
    await session.commit()
    await outbox.enqueue(session, outbox.Kind.ORDER_READY, "order_ready:2", client_id=client.id)
    await session.rollback()
    assert await session.scalar(select(func.count()).select_from(Notification)) == 0


@pytest.mark.parametrize(
    "recipients",
    [{}, {"client_id": 1, "staff_id": 1}, {"chat_id": 1, "staff_id": 2}],
)
async def test_exactly_one_recipient(session, recipients):
    with pytest.raises(ValueError, match="exactly one recipient"):
        await outbox.enqueue(session, outbox.Kind.NEW_EVENT, "k", **recipients)


async def test_a_key_must_fit(session):
    with pytest.raises(ValueError, match="key"):
        await outbox.enqueue(session, outbox.Kind.NEW_EVENT, "x" * 201, chat_id=1)
