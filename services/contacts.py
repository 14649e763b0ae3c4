"""The client's contact information (Контактная информация): add, edit, delete.

Values are checked and stored in one canonical form per kind:

- ``mobile`` and ``phone``: a real phone number (``services.normalize.parse_phone``, the
  shop's region for numbers typed without ``+``), stored as E.164 digits without ``+``;
- ``email``: the syntax of an address (``email-validator``, no DNS look-up), stored as the
  validator normalises it (the domain in lower case);
- ``address`` and ``other``: free text, trimmed, not empty.

A bad value raises :class:`InvalidContact`, a ``ValueError`` with a reason code
(:class:`ContactProblem`) and the validator's detail, for the handler to translate.

**The main phone** (``clients.main_phone``, «Основной телефон») is always the value of one
of the client's phone contacts (kind ``mobile`` or ``phone``), or None when there is none:

- adding a phone makes it the main one when the client has no main phone yet, or when asked
  (``make_main``);
- editing the contact that holds the main phone carries the main phone along to the new
  value; if the contact stops being a phone, the main phone passes to the first remaining
  phone contact (in the order they were added) or becomes None;
- deleting it passes the main phone the same way (unless another contact has the same
  number);
- :func:`make_main` makes any phone contact the main one.

Every change is one audit row with the values before and after. Search sees the change as
soon as it is flushed: the flush hook of ``storage.search_index`` rewrites the client's
terms whenever a contact row changes.
"""

from __future__ import annotations

import enum
from types import EllipsisType
from typing import Any

from email_validator import EmailNotValidError, validate_email
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import selectinload

from services import audit
from services.access import Permission, can
from services.normalize import InvalidPhone, parse_phone
from storage.db import begin_immediate
from storage.models import Client, ContactInfo, ContactKind, Staff

PHONE_KINDS = frozenset({ContactKind.MOBILE, ContactKind.PHONE})
MAX_VALUE = 300  # contact_info.value
MAX_COMMENT = 200  # contact_info.comment


class ContactProblem(enum.StrEnum):
    FORBIDDEN = "forbidden"  # the role may not edit client data
    CLIENT_NOT_FOUND = "client_not_found"
    CONTACT_NOT_FOUND = "contact_not_found"
    EMPTY = "empty"
    TOO_LONG = "too_long"
    BAD_PHONE = "bad_phone"  # detail: why (services.normalize.InvalidPhone)
    BAD_EMAIL = "bad_email"  # detail: the validator's explanation
    DUPLICATE = "duplicate"  # the client already has this value
    NOT_A_PHONE = "not_a_phone"  # make_main on an e-mail, an address...


class InvalidContact(ValueError):
    """A contact change refused; ``problem`` says why, ``detail`` adds the specifics."""

    def __init__(self, problem: ContactProblem, detail: str = "") -> None:
        super().__init__(f"{problem.value}: {detail}" if detail else problem.value)
        self.problem = problem
        self.detail = detail


def normalize_value(kind: ContactKind, value: str, *, region: str = "RU") -> str:
    """The value in the form it is stored in, or :class:`InvalidContact` saying why not."""
    kind = ContactKind(kind)
    text = (value or "").strip()
    if not text:
        raise InvalidContact(ContactProblem.EMPTY)
    if len(text) > MAX_VALUE:
        raise InvalidContact(ContactProblem.TOO_LONG, f"at most {MAX_VALUE} characters")
    if kind in PHONE_KINDS:
        try:
            return parse_phone(text, region)
        except InvalidPhone as exc:
            raise InvalidContact(ContactProblem.BAD_PHONE, str(exc)) from None
    if kind is ContactKind.EMAIL:
        try:
            checked = validate_email(text, check_deliverability=False)
        except EmailNotValidError as exc:
            raise InvalidContact(ContactProblem.BAD_EMAIL, str(exc)) from None
        return str(checked.normalized)
    return " ".join(text.split())


def _check_comment(comment: str | None) -> str | None:
    if comment is None:
        return None
    comment = " ".join(comment.split())
    if len(comment) > MAX_COMMENT:
        raise InvalidContact(ContactProblem.TOO_LONG, f"a comment is at most {MAX_COMMENT}")
    return comment or None


def _same_value(kind_a: ContactKind, value_a: str, kind_b: ContactKind, value_b: str) -> bool:
    """Two contacts hold the same thing: phones by number whatever their kind, e-mails
    whatever the case, other kinds as written (case-insensitively)."""
    if kind_a in PHONE_KINDS and kind_b in PHONE_KINDS:
        return value_a == value_b
    return kind_a == kind_b and value_a.casefold() == value_b.casefold()


def _snapshot(contact: ContactInfo) -> dict[str, Any]:
    return {"kind": str(contact.kind), "value": contact.value, "comment": contact.comment}


def _require(actor: Staff | None) -> None:
    if not can(actor, Permission.EDIT_CLIENT):
        raise InvalidContact(ContactProblem.FORBIDDEN)


async def _start(session: AsyncSession) -> None:
    # Read-then-write: on SQLite take the write lock before the first read.
    if not session.in_transaction():
        await begin_immediate(session)


async def _load_client(session: AsyncSession, client_id: int) -> Client:
    """The client with its contacts, locked against concurrent edits (PostgreSQL)."""
    client = await session.scalar(
        select(Client)
        .where(Client.id == client_id)
        .options(selectinload(Client.contacts))
        .with_for_update(of=Client)
        .execution_options(populate_existing=True)
    )
    if client is None:
        raise InvalidContact(ContactProblem.CLIENT_NOT_FOUND, str(client_id))
    return client


async def _load_contact(session: AsyncSession, contact_id: int) -> tuple[Client, ContactInfo]:
    client_id = await session.scalar(
        select(ContactInfo.client_id).where(ContactInfo.id == contact_id)
    )
    if client_id is None:
        raise InvalidContact(ContactProblem.CONTACT_NOT_FOUND, str(contact_id))
    client = await _load_client(session, client_id)
    for contact in client.contacts:
        if contact.id == contact_id:
            return client, contact
    raise InvalidContact(ContactProblem.CONTACT_NOT_FOUND, str(contact_id))  # pragma: no cover


def _first_phone(client: Client, *, besides: ContactInfo | None = None) -> str | None:
    for contact in sorted(client.contacts, key=lambda c: c.id or 0):
        if contact is not besides and ContactKind(contact.kind) in PHONE_KINDS:
            return contact.value
    return None


def _holds_main(client: Client, contact: ContactInfo) -> bool:
    return (
        client.main_phone is not None
        and ContactKind(contact.kind) in PHONE_KINDS
        and contact.value == client.main_phone
    )


def _check_duplicate(
    client: Client, kind: ContactKind, value: str, *, besides: ContactInfo | None = None
) -> None:
    for other in client.contacts:
        if other is not besides and _same_value(ContactKind(other.kind), other.value, kind, value):
            raise InvalidContact(ContactProblem.DUPLICATE, value)


def _set_main(client: Client, value: str | None, changes: dict[str, Any]) -> None:
    if client.main_phone != value:
        changes["main_phone"] = {"before": client.main_phone, "after": value}
        client.main_phone = value


async def add_contact(
    session: AsyncSession,
    client_id: int,
    kind: ContactKind,
    value: str,
    *,
    actor: Staff,
    comment: str | None = None,
    make_main: bool = False,
    region: str = "RU",
) -> ContactInfo:
    """Adds a contact row to the client (see the module doc for the main phone)."""
    _require(actor)
    kind = ContactKind(kind)
    stored = normalize_value(kind, value, region=region)
    comment = _check_comment(comment)
    if make_main and kind not in PHONE_KINDS:
        raise InvalidContact(ContactProblem.NOT_A_PHONE, str(kind))
    await _start(session)
    client = await _load_client(session, client_id)
    _check_duplicate(client, kind, stored)
    contact = ContactInfo(kind=kind, value=stored, comment=comment)
    client.contacts.append(contact)
    changes: dict[str, Any] = {}
    if kind in PHONE_KINDS and (make_main or client.main_phone is None):
        _set_main(client, stored, changes)
    await session.flush()
    audit.record(
        session,
        "contact.add",
        actor=actor,
        entity="client",
        entity_id=client.id,
        details={"contact_id": contact.id, "before": None, "after": _snapshot(contact), **changes},
    )
    return contact


async def edit_contact(
    session: AsyncSession,
    contact_id: int,
    *,
    actor: Staff,
    kind: ContactKind | None = None,
    value: str | None = None,
    comment: str | EllipsisType | None = ...,
    make_main: bool = False,
    region: str = "RU",
) -> ContactInfo:
    """Changes a contact row: ``kind`` and ``value`` when given, ``comment`` when given
    (None clears it; ``...`` keeps it). The main phone follows (see the module doc)."""
    _require(actor)
    await _start(session)
    client, contact = await _load_contact(session, contact_id)
    before = _snapshot(contact)
    was_main = _holds_main(client, contact)
    new_kind = ContactKind(kind) if kind is not None else ContactKind(contact.kind)
    raw = value if value is not None else contact.value
    new_value = normalize_value(new_kind, raw, region=region)
    new_comment = contact.comment if isinstance(comment, EllipsisType) else _check_comment(comment)
    if make_main and new_kind not in PHONE_KINDS:
        raise InvalidContact(ContactProblem.NOT_A_PHONE, str(new_kind))
    _check_duplicate(client, new_kind, new_value, besides=contact)
    contact.kind, contact.value, contact.comment = new_kind, new_value, new_comment
    changes: dict[str, Any] = {}
    if new_kind in PHONE_KINDS and (was_main or make_main or client.main_phone is None):
        _set_main(client, new_value, changes)
    elif was_main:
        _set_main(client, _first_phone(client, besides=contact), changes)
    after = _snapshot(contact)
    if after == before and not changes:
        return contact  # nothing changed: nothing to write or log
    await session.flush()
    audit.record(
        session,
        "contact.edit",
        actor=actor,
        entity="client",
        entity_id=client.id,
        details={"contact_id": contact.id, "before": before, "after": after, **changes},
    )
    return contact


async def delete_contact(session: AsyncSession, contact_id: int, *, actor: Staff) -> None:
    """Removes a contact row; the main phone passes on if it was this one."""
    _require(actor)
    await _start(session)
    client, contact = await _load_contact(session, contact_id)
    before = _snapshot(contact)
    changes: dict[str, Any] = {}
    if _holds_main(client, contact):
        twin = any(
            other is not contact
            and ContactKind(other.kind) in PHONE_KINDS
            and other.value == contact.value
            for other in client.contacts
        )
        if not twin:
            _set_main(client, _first_phone(client, besides=contact), changes)
    client.contacts.remove(contact)
    await session.flush()
    audit.record(
        session,
        "contact.delete",
        actor=actor,
        entity="client",
        entity_id=client.id,
        details={"contact_id": contact_id, "before": before, "after": None, **changes},
    )


async def make_main(session: AsyncSession, contact_id: int, *, actor: Staff) -> ContactInfo:
    """Makes this phone contact the client's main phone."""
    _require(actor)
    await _start(session)
    client, contact = await _load_contact(session, contact_id)
    if ContactKind(contact.kind) not in PHONE_KINDS:
        raise InvalidContact(ContactProblem.NOT_A_PHONE, str(contact.kind))
    changes: dict[str, Any] = {}
    _set_main(client, contact.value, changes)
    if changes:
        await session.flush()
        audit.record(
            session,
            "contact.make_main",
            actor=actor,
            entity="client",
            entity_id=client.id,
            details={"contact_id": contact.id, **changes},
        )
    return contact


__all__ = [
    "PHONE_KINDS",
    "ContactProblem",
    "InvalidContact",
    "add_contact",
    "delete_contact",
    "edit_contact",
    "make_main",
    "normalize_value",
]
