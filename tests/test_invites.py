"""Staff invites: one-time, expiring, role carried, every step audited."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import select

from services import invites
from services import staff as staff_service
from storage.db import write_transaction
from storage.models import AuditLog, Invite, Role

NOW = datetime(2026, 12, 3, 12, 0, tzinfo=UTC)


@pytest.fixture
async def admin(session):
    member = await staff_service.add_or_update(
        session, telegram_id=1, name="Админ", role=Role.ADMIN, actor=None
    )
    await session.commit()
    return member


async def test_invite_makes_staff_with_the_role_once(session, admin):
    token, expires = await invites.create_staff_invite(session, Role.MASTER, actor=admin, now=NOW)
    await session.commit()
    assert len(token) <= 64 and expires == NOW + invites.DEFAULT_TTL
    assert await session.scalar(select(Invite.token_hash)) != token  # only the hash is kept
    member = await invites.redeem_staff_invite(
        session, token, telegram_id=500, name="Пётр", now=NOW + timedelta(hours=1)
    )
    await session.commit()
    assert member.role is Role.MASTER and member.active
    with pytest.raises(invites.InviteRefused) as refused:
        await invites.redeem_staff_invite(session, token, telegram_id=501, name="Чужой", now=NOW)
    assert refused.value.problem is invites.InviteProblem.USED
    await session.commit()
    assert await staff_service.get_active(session, 501) is None
    actions = (await session.scalars(select(AuditLog.action).order_by(AuditLog.id))).all()
    assert actions[-4:] == ["invite.create", "staff.add", "invite.redeem", "invite.refused"]


async def test_expired_and_unknown_invites_are_refused(session, admin):
    token, _ = await invites.create_staff_invite(
        session, Role.CASHIER, actor=admin, ttl=timedelta(minutes=5), now=NOW
    )
    await session.commit()
    with pytest.raises(invites.InviteRefused) as refused:
        await invites.redeem_staff_invite(
            session, token, telegram_id=9, name="X", now=NOW + timedelta(minutes=6)
        )
    assert refused.value.problem is invites.InviteProblem.EXPIRED
    with pytest.raises(invites.InviteRefused) as refused:
        await invites.redeem_staff_invite(session, "s_forged", telegram_id=9, name="X", now=NOW)
    assert refused.value.problem is invites.InviteProblem.UNKNOWN


async def test_two_people_racing_with_one_link(session_factory, session, admin):
    token, _ = await invites.create_staff_invite(session, Role.MANAGER, actor=admin, now=NOW)
    await session.commit()

    async def attempt(telegram_id: int) -> bool:
        try:
            async with write_transaction(session_factory) as s:
                await invites.redeem_staff_invite(
                    s, token, telegram_id=telegram_id, name="N", now=NOW
                )
            return True
        except invites.InviteRefused:
            return False

    results = await asyncio.gather(*(attempt(1000 + i) for i in range(5)))
    assert sum(results) == 1
