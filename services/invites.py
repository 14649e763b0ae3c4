"""One-time, expiring invite links: staff join with a role; a client links their chat.

The token travels in ``t.me/<bot>?start=<token>``; only its SHA-256 is stored, so the
database alone cannot be used to join. Redeeming is one conditional UPDATE: two people
racing with the same link cannot both get in.
"""

from __future__ import annotations

import enum
import hashlib
import secrets
from datetime import UTC, datetime, timedelta

from sqlalchemy import select, update
from sqlalchemy.ext.asyncio import AsyncSession

from services import audit
from services import staff as staff_service
from storage.models import Invite, InviteKind, Role, Staff

STAFF_PREFIX = "s_"
CLIENT_PREFIX = "c_"
DEFAULT_TTL = timedelta(hours=24)


class InviteProblem(enum.StrEnum):
    UNKNOWN = "unknown"
    USED = "used"
    EXPIRED = "expired"


class InviteRefused(Exception):
    def __init__(self, problem: InviteProblem) -> None:
        super().__init__(problem.value)
        self.problem = problem


def _hash(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def is_invite_payload(payload: str) -> bool:
    return payload.startswith((STAFF_PREFIX, CLIENT_PREFIX))


async def create_staff_invite(
    session: AsyncSession,
    role: Role,
    *,
    actor: Staff,
    ttl: timedelta = DEFAULT_TTL,
    now: datetime | None = None,
) -> tuple[str, datetime]:
    """A new invite for ``role``: the deep-link payload (≤ 64 characters) and its expiry."""
    now = now or datetime.now(UTC)
    token = STAFF_PREFIX + secrets.token_urlsafe(24)
    invite = Invite(
        token_hash=_hash(token),
        kind=InviteKind.STAFF,
        role=role,
        created_by_id=actor.id,
        created_at=now,
        expires_at=now + ttl,
    )
    session.add(invite)
    await session.flush()
    audit.record(
        session,
        "invite.create",
        actor=actor,
        entity="invite",
        entity_id=invite.id,
        details={"role": role.value, "expires_at": invite.expires_at.isoformat()},
    )
    return token, invite.expires_at


async def redeem_staff_invite(
    session: AsyncSession,
    token: str,
    *,
    telegram_id: int,
    name: str,
    locale: str | None = None,
    now: datetime | None = None,
) -> Staff:
    """Uses the invite once and makes (or reactivates) the staff member with its role."""
    now = now or datetime.now(UTC)
    token_hash = _hash(token)
    used = await session.execute(
        update(Invite)
        .where(
            Invite.token_hash == token_hash,
            Invite.kind == InviteKind.STAFF,
            Invite.used_at.is_(None),
            Invite.expires_at > now,
        )
        .values(used_at=now, used_by_telegram_id=telegram_id)
        .returning(Invite.id, Invite.role, Invite.created_by_id)
    )
    row = used.first()
    if row is None:
        invite = await session.scalar(
            select(Invite).where(Invite.token_hash == token_hash, Invite.kind == InviteKind.STAFF)
        )
        problem = (
            InviteProblem.UNKNOWN
            if invite is None
            else InviteProblem.USED
            if invite.used_at is not None
            else InviteProblem.EXPIRED
        )
        audit.record(
            session,
            "invite.refused",
            actor_telegram_id=telegram_id,
            entity="invite",
            entity_id=invite.id if invite else None,
            details={"problem": problem.value},
        )
        raise InviteRefused(problem)
    invite_id, role, _creator = row
    member = await staff_service.add_or_update(
        session,
        telegram_id=telegram_id,
        name=name or str(telegram_id),
        role=Role(str(role)),
        locale=locale,
        actor=None,
    )
    audit.record(
        session,
        "invite.redeem",
        actor=member,
        entity="invite",
        entity_id=invite_id,
        details={"role": str(role)},
    )
    return member
