"""Staff members: who may use the workstation, with which role."""

from __future__ import annotations

from sqlalchemy import bindparam, select
from sqlalchemy.ext.asyncio import AsyncSession

from services import audit
from storage.models import Role, Staff


class StaffNotFound(LookupError):
    pass


# Built once: every update looks its staff member up.
_BY_TELEGRAM_ID = select(Staff).where(Staff.telegram_id == bindparam("telegram_id"))


async def get_by_telegram_id(session: AsyncSession, telegram_id: int) -> Staff | None:
    return await session.scalar(_BY_TELEGRAM_ID, {"telegram_id": telegram_id})


async def get_active(session: AsyncSession, telegram_id: int) -> Staff | None:
    """The staff member behind a Telegram user, or None when unknown or deactivated."""
    member = await get_by_telegram_id(session, telegram_id)
    return member if member is not None and member.active else None


async def add_or_update(
    session: AsyncSession,
    *,
    telegram_id: int,
    name: str,
    role: Role,
    locale: str | None = None,
    actor: Staff | None,
) -> Staff:
    name = name.strip()
    if not name:
        raise ValueError("the name is empty")
    member = await get_by_telegram_id(session, telegram_id)
    if member is None:
        member = Staff(telegram_id=telegram_id, name=name, role=role, locale=locale, active=True)
        session.add(member)
        await session.flush()
        action = "staff.add"
    else:
        member.name, member.role, member.active = name, role, True
        if locale is not None:
            member.locale = locale
        action = "staff.update"
    audit.record(
        session,
        action,
        actor=actor,
        entity="staff",
        entity_id=member.id,
        details={"telegram_id": telegram_id, "role": role.value, "name": name},
    )
    return member


async def deactivate(session: AsyncSession, telegram_id: int, *, actor: Staff | None) -> Staff:
    member = await get_by_telegram_id(session, telegram_id)
    if member is None:
        raise StaffNotFound(telegram_id)
    member.active = False
    audit.record(
        session,
        "staff.deactivate",
        actor=actor,
        entity="staff",
        entity_id=member.id,
        details={"telegram_id": telegram_id},
    )
    return member


async def list_staff(session: AsyncSession) -> list[Staff]:
    return list(await session.scalars(select(Staff).order_by(Staff.active.desc(), Staff.name)))


async def set_locale(session: AsyncSession, member: Staff, locale: str | None) -> Staff:
    """Save the language the staff member chose in the bot (None: follow Telegram's)."""
    member.locale = locale
    await session.flush()
    return member
