"""Linking a client's Telegram chat to the client, and the client's consent.

Three ways in, each recorded (audit) with the consent the client was shown:

- **their own phone**: the user shares their contact (Telegram vouches that it is theirs);
  the phone is matched to the clients' phones. Exactly one client who is not linked to
  another chat: linked at once. Several, or one already linked elsewhere: a
  :class:`LinkRequest` for a manager to decide — we never guess whose data to show. None:
  nothing is linked and nothing of any client is told.
- **a manager's decision** on such a request (:func:`decide`), one-shot: the second manager
  deciding the same request is told it is decided already.
- **an invite link** made by staff from the client card (``services.invites``).

Consent: linking grants it (the text the client was shown has :data:`CONSENT_VERSION`);
``/stop`` withdraws it, ``/start`` grants it again. Every change is a :class:`Consent` row;
``Client.notifications_off`` is the current state the delivery worker reads.

Callers start the transaction with the write lock (``storage.db.begin_immediate``) and
commit; nothing here commits.
"""

from __future__ import annotations

import enum
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, datetime

from sqlalchemy import or_, select, update
from sqlalchemy.ext.asyncio import AsyncSession

from services import audit, notify
from services.access import Permission, can
from services.normalize import InvalidPhone, parse_phone
from storage.models import (
    Client,
    Consent,
    ContactInfo,
    ContactKind,
    LinkRequest,
    LinkRequestState,
    Staff,
)

# The version of the consent text shown to a client when linking (bump it when the text
# of "what you will receive" changes: the log says which text each client agreed to).
CONSENT_VERSION = "2026-12-1"
CHANNEL = "telegram"
PHONE_KINDS = (ContactKind.MOBILE, ContactKind.PHONE)
MAX_CANDIDATES = 10  # a phone shared by more clients than this is a manager's job anyway


def _now(now: datetime | None) -> datetime:
    return now or datetime.now(UTC)


def contact_phone(phone_number: str, region: str = "RU") -> str | None:
    """A shared contact's phone as E.164 digits, or None. Telegram gives it in
    international form, with or without the ``+``."""
    raw = phone_number.strip()
    if raw and not raw.startswith("+") and raw.isdigit():
        raw = "+" + raw
    try:
        return parse_phone(raw, region)
    except InvalidPhone:
        return None


def remember_locale(client: Client, language_code: str | None, available: Iterable[str]) -> bool:
    """Keep the client's language in step with their Telegram's (what notifications are
    written in); True when it changed."""
    code = (language_code or "").split("-")[0].lower()
    if code not in set(available) or client.locale == code:
        return False
    client.locale = code
    return True


async def client_by_chat(session: AsyncSession, chat_id: int) -> Client | None:
    """The client linked to this chat, if any."""
    return await session.scalar(
        select(Client)
        .where(Client.telegram_chat_id == chat_id)
        .execution_options(populate_existing=True)
    )


async def matching_clients(session: AsyncSession, phone: str) -> list[Client]:
    """Clients with ``phone`` (E.164 digits) as main phone or a phone contact, by name."""
    has_contact = (
        select(ContactInfo.client_id)
        .where(ContactInfo.value == phone, ContactInfo.kind.in_(PHONE_KINDS))
        .scalar_subquery()
    )
    rows = await session.scalars(
        select(Client)
        .where(or_(Client.main_phone == phone, Client.id.in_(has_contact)))
        .order_by(Client.name, Client.id)
        .limit(MAX_CANDIDATES)
        .execution_options(populate_existing=True)
    )
    return list(rows)


# --- consent ------------------------------------------------------------------------


async def record_consent(
    session: AsyncSession,
    client: Client,
    *,
    granted: bool,
    chat_id: int | None,
    actor: Staff | None = None,
    actor_telegram_id: int | None = None,
    now: datetime | None = None,
) -> Consent:
    """A consent row and the client's current state (``notifications_off``), audited."""
    now = _now(now)
    row = Consent(
        client_id=client.id,
        chat_id=chat_id,
        granted=granted,
        text_version=CONSENT_VERSION,
        channel=CHANNEL,
        at=now,
    )
    session.add(row)
    client.notifications_off = not granted
    await session.flush()
    audit.record(
        session,
        "consent.grant" if granted else "consent.withdraw",
        actor=actor,
        actor_telegram_id=actor_telegram_id,
        entity="client",
        entity_id=client.id,
        details={"version": CONSENT_VERSION, "channel": CHANNEL, "chat_id": chat_id},
    )
    return row


async def opt_out(
    session: AsyncSession, client: Client, *, chat_id: int, now: datetime | None = None
) -> bool:
    """``/stop``: no more notifications. False when they were off already."""
    if client.notifications_off:
        return False
    await record_consent(
        session, client, granted=False, chat_id=chat_id, actor_telegram_id=chat_id, now=now
    )
    return True


async def opt_in(
    session: AsyncSession, client: Client, *, chat_id: int, now: datetime | None = None
) -> bool:
    """``/start`` after ``/stop``: notifications again. False when they were on."""
    if not client.notifications_off:
        return False
    await record_consent(
        session, client, granted=True, chat_id=chat_id, actor_telegram_id=chat_id, now=now
    )
    return True


# --- linking ------------------------------------------------------------------------


async def link_chat(
    session: AsyncSession,
    client: Client,
    chat_id: int,
    *,
    via: str,
    telegram_user_id: int | None,
    actor: Staff | None = None,
    now: datetime | None = None,
) -> None:
    """Link ``chat_id`` to ``client`` (replacing a chat linked before), clear the
    unreachable mark, record consent, audit. The chat must not be another client's."""
    now = _now(now)
    previous = client.telegram_chat_id
    client.telegram_chat_id = chat_id
    client.telegram_blocked_at = None
    await session.flush()
    audit.record(
        session,
        "client.link",
        actor=actor,
        actor_telegram_id=telegram_user_id,
        entity="client",
        entity_id=client.id,
        details={"via": via, "chat_id": chat_id, "previous_chat_id": previous},
    )
    await record_consent(
        session,
        client,
        granted=True,
        chat_id=chat_id,
        actor_telegram_id=telegram_user_id,
        now=now,
    )


class LinkOutcome(enum.StrEnum):
    LINKED = "linked"  # exactly one client: linked
    PENDING = "pending"  # a manager decides
    NO_MATCH = "no_match"  # nobody has this phone
    ALREADY_LINKED = "already_linked"  # the chat is a client's already


@dataclass(frozen=True, slots=True)
class LinkResult:
    outcome: LinkOutcome
    client: Client | None = None
    request: LinkRequest | None = None


async def link_by_phone(
    session: AsyncSession,
    *,
    chat_id: int,
    telegram_user_id: int,
    phone: str,
    name: str | None,
    now: datetime | None = None,
) -> LinkResult:
    """The user shared their own phone (E.164 digits): link, ask a manager, or say no."""
    now = _now(now)
    linked = await client_by_chat(session, chat_id)
    if linked is not None:
        return LinkResult(LinkOutcome.ALREADY_LINKED, client=linked)
    clients = await matching_clients(session, phone)
    if not clients:
        audit.record(
            session,
            "client.link_refused",
            actor_telegram_id=telegram_user_id,
            details={"reason": "no_match", "chat_id": chat_id},
        )
        return LinkResult(LinkOutcome.NO_MATCH)
    if len(clients) == 1 and clients[0].telegram_chat_id in (None, chat_id):
        await link_chat(
            session,
            clients[0],
            chat_id,
            via="phone",
            telegram_user_id=telegram_user_id,
            now=now,
        )
        return LinkResult(LinkOutcome.LINKED, client=clients[0])
    request = await session.scalar(
        select(LinkRequest).where(
            LinkRequest.chat_id == chat_id,
            LinkRequest.phone == phone,
            LinkRequest.state == LinkRequestState.PENDING,
        )
    )
    if request is None:  # asking again does not queue the managers again
        request = LinkRequest(
            telegram_user_id=telegram_user_id,
            chat_id=chat_id,
            phone=phone,
            name=(name or "")[:300] or None,
            state=LinkRequestState.PENDING,
            created_at=now,
        )
        session.add(request)
        await session.flush()
        await notify.link_requested(session, request)
        audit.record(
            session,
            "link_request.create",
            actor_telegram_id=telegram_user_id,
            entity="link_request",
            entity_id=request.id,
            details={"candidates": [c.id for c in clients], "chat_id": chat_id},
        )
    return LinkResult(LinkOutcome.PENDING, request=request)


# --- managers decide ----------------------------------------------------------------


class DecideProblem(enum.StrEnum):
    FORBIDDEN = "forbidden"
    NOT_FOUND = "not_found"
    DECIDED = "decided"  # someone decided it first
    NOT_A_CANDIDATE = "not_a_candidate"  # a forged or stale client
    CHAT_TAKEN = "chat_taken"  # the chat got linked to another client meanwhile


class DecideRefused(Exception):
    def __init__(self, problem: DecideProblem) -> None:
        super().__init__(problem.value)
        self.problem = problem


async def pending_requests(session: AsyncSession, limit: int = 20) -> list[LinkRequest]:
    """The oldest pending requests first: they waited longest."""
    rows = await session.scalars(
        select(LinkRequest)
        .where(LinkRequest.state == LinkRequestState.PENDING)
        .order_by(LinkRequest.created_at, LinkRequest.id)
        .limit(limit)
    )
    return list(rows)


async def get_request(session: AsyncSession, request_id: int) -> LinkRequest | None:
    return await session.scalar(
        select(LinkRequest)
        .where(LinkRequest.id == request_id)
        .execution_options(populate_existing=True)
    )


async def decide(
    session: AsyncSession,
    request_id: int,
    client_id: int | None,
    *,
    staff: Staff,
    now: datetime | None = None,
) -> tuple[LinkRequest, Client | None]:
    """Link the request's chat to ``client_id`` (one of the phone's clients now), or
    reject it (``client_id`` None). Raises :class:`DecideRefused`."""
    now = _now(now)
    if not can(staff, Permission.LINK_CLIENTS):
        raise DecideRefused(DecideProblem.FORBIDDEN)
    request = await get_request(session, request_id)
    if request is None:
        raise DecideRefused(DecideProblem.NOT_FOUND)
    if request.state != LinkRequestState.PENDING:
        raise DecideRefused(DecideProblem.DECIDED)
    client: Client | None = None
    if client_id is not None:
        candidates = {c.id: c for c in await matching_clients(session, request.phone)}
        client = candidates.get(client_id)
        if client is None:
            raise DecideRefused(DecideProblem.NOT_A_CANDIDATE)
        holder = await client_by_chat(session, request.chat_id)
        if holder is not None and holder.id != client.id:
            raise DecideRefused(DecideProblem.CHAT_TAKEN)
    # One-shot even between two databases sessions racing past the checks above.
    decided = await session.execute(
        update(LinkRequest)
        .where(LinkRequest.id == request.id, LinkRequest.state == LinkRequestState.PENDING)
        .values(
            state=LinkRequestState.LINKED if client else LinkRequestState.REJECTED,
            client_id=client.id if client else None,
            decided_at=now,
            decided_by_id=staff.id,
        )
        .returning(LinkRequest.id)
    )
    if decided.first() is None:
        raise DecideRefused(DecideProblem.DECIDED)
    audit.record(
        session,
        "link_request.decide",
        actor=staff,
        entity="link_request",
        entity_id=request.id,
        details={"client_id": client.id if client else None, "chat_id": request.chat_id},
    )
    if client is not None:
        await link_chat(
            session,
            client,
            request.chat_id,
            via="request",
            telegram_user_id=request.telegram_user_id,
            actor=staff,
            now=now,
        )
    await session.refresh(request)
    return request, client
