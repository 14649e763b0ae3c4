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
from typing import NoReturn

from sqlalchemy import select, update
from sqlalchemy.ext.asyncio import AsyncSession

from services import audit, clients_link
from services import staff as staff_service
from storage.models import Client, Invite, InviteKind, Role, Staff

STAFF_PREFIX = "s_"
CLIENT_PREFIX = "c_"
DEFAULT_TTL = timedelta(hours=24)


class InviteProblem(enum.StrEnum):
    UNKNOWN = "unknown"
    USED = "used"
    EXPIRED = "expired"
    ALREADY_LINKED = "already_linked"  # a client invite opened in another client's chat


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


# --- clients ----------------------------------------------------------------------------


async def create_client_invite(
    session: AsyncSession,
    client_id: int,
    *,
    actor: Staff,
    ttl: timedelta = DEFAULT_TTL,
    now: datetime | None = None,
) -> tuple[str, datetime] | None:
    """A link that links the opener's chat to the client, once; None when the client is
    gone. The caller checks the staff member may (``Permission.LINK_CLIENTS``)."""
    now = now or datetime.now(UTC)
    if await session.get(Client, client_id) is None:
        return None
    token = CLIENT_PREFIX + secrets.token_urlsafe(24)
    invite = Invite(
        token_hash=_hash(token),
        kind=InviteKind.CLIENT,
        client_id=client_id,
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
        details={"client_id": client_id, "expires_at": invite.expires_at.isoformat()},
    )
    return token, invite.expires_at


def _problem(invite: Invite | None) -> InviteProblem:
    if invite is None:
        return InviteProblem.UNKNOWN
    return InviteProblem.USED if invite.used_at is not None else InviteProblem.EXPIRED


async def redeem_client_invite(
    session: AsyncSession,
    token: str,
    *,
    chat_id: int,
    telegram_id: int,
    now: datetime | None = None,
) -> Client:
    """Uses the invite once and links ``chat_id`` to its client (consent recorded). A
    chat that is another client's already is refused, and the link stays unused: the
    shop sorts that out, not whoever holds both."""
    now = now or datetime.now(UTC)
    token_hash = _hash(token)
    invite = await session.scalar(
        select(Invite).where(Invite.token_hash == token_hash, Invite.kind == InviteKind.CLIENT)
    )
    holder = await clients_link.client_by_chat(session, chat_id)
    if invite is not None and holder is not None and holder.id != invite.client_id:
        _refused(session, telegram_id, invite, InviteProblem.ALREADY_LINKED)
    used = await session.execute(
        update(Invite)
        .where(
            Invite.token_hash == token_hash,
            Invite.kind == InviteKind.CLIENT,
            Invite.used_at.is_(None),
            Invite.expires_at > now,
        )
        .values(used_at=now, used_by_telegram_id=telegram_id)
        .returning(Invite.id, Invite.client_id)
    )
    row = used.first()
    if row is None:
        invite = await session.scalar(
            select(Invite)
            .where(Invite.token_hash == token_hash, Invite.kind == InviteKind.CLIENT)
            .execution_options(populate_existing=True)
        )
        _refused(session, telegram_id, invite, _problem(invite))
    client = await session.get(Client, row.client_id) if row.client_id else None
    if client is None:  # a client invite always has its client (deleted with it)
        _refused(session, telegram_id, invite, InviteProblem.UNKNOWN)
    audit.record(
        session,
        "invite.redeem",
        actor_telegram_id=telegram_id,
        entity="invite",
        entity_id=row.id,
        details={"client_id": client.id},
    )
    await clients_link.link_chat(
        session, client, chat_id, via="invite", telegram_user_id=telegram_id, now=now
    )
    return client


def _refused(
    session: AsyncSession, telegram_id: int, invite: Invite | None, problem: InviteProblem
) -> NoReturn:
    audit.record(
        session,
        "invite.refused",
        actor_telegram_id=telegram_id,
        entity="invite",
        entity_id=invite.id if invite else None,
        details={"problem": problem.value},
    )
    raise InviteRefused(problem)
