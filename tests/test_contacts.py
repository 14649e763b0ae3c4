"""Editing a client's contact information, on SQLite and PostgreSQL."""

from __future__ import annotations

import pytest
from sqlalchemy import select

from services import contacts
from services.contacts import ContactProblem, InvalidContact
from services.search import Box, SearchService
from storage.models import AuditLog, Client, ContactInfo, ContactKind, Role
from tests.factories import make_client, make_staff

search = SearchService()


@pytest.fixture
async def manager(session):
    return await make_staff(session, "Менеджер Мария", Role.MANAGER)


async def _contacts(session, client_id):
    rows = await session.execute(
        select(ContactInfo.kind, ContactInfo.value)
        .where(ContactInfo.client_id == client_id)
        .order_by(ContactInfo.id)
    )
    return [(str(kind), value) for kind, value in rows]


async def _main_phone(session, client_id):
    return await session.scalar(
        select(Client.main_phone)
        .where(Client.id == client_id)
        .execution_options(populate_existing=True)
    )


async def _audit(session, action):
    await session.flush()  # sessions here do not autoflush
    return list(
        await session.scalars(
            select(AuditLog).where(AuditLog.action == action).order_by(AuditLog.id)
        )
    )


async def _found_ids(session, text, box=Box.CONTACT):
    result = await search.search(session, text, box=box)
    return [hit.id for hit in result.clients]


# --- checks -------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("kind", "typed", "stored"),
    [
        (ContactKind.MOBILE, "8 (916) 854-56-78", "79168545678"),
        (ContactKind.PHONE, "+7 495 123-45-67", "74951234567"),
        (ContactKind.EMAIL, "Ivanov@MAIL.RU", "Ivanov@mail.ru"),
        (ContactKind.ADDRESS, "  Москва,   ул. Ленина, 1 ", "Москва, ул. Ленина, 1"),
        (ContactKind.OTHER, "ВК: ivanov", "ВК: ivanov"),
    ],
)
def test_values_are_stored_in_canonical_form(kind, typed, stored):
    assert contacts.normalize_value(kind, typed) == stored


@pytest.mark.parametrize(
    ("kind", "typed", "problem"),
    [
        (ContactKind.MOBILE, "12345", ContactProblem.BAD_PHONE),
        (ContactKind.MOBILE, "позвонить", ContactProblem.BAD_PHONE),
        (ContactKind.PHONE, "+7 999 000", ContactProblem.BAD_PHONE),
        (ContactKind.EMAIL, "ivanov@", ContactProblem.BAD_EMAIL),
        (ContactKind.EMAIL, "ivanov mail.ru", ContactProblem.BAD_EMAIL),
        (ContactKind.EMAIL, "a@b@c.ru", ContactProblem.BAD_EMAIL),
        (ContactKind.ADDRESS, "   ", ContactProblem.EMPTY),
        (ContactKind.OTHER, "x" * 301, ContactProblem.TOO_LONG),
    ],
)
def test_bad_values_are_refused_with_the_reason(kind, typed, problem):
    with pytest.raises(InvalidContact) as refused:
        contacts.normalize_value(kind, typed)
    assert refused.value.problem is problem
    assert isinstance(refused.value, ValueError)
    if problem in (ContactProblem.BAD_PHONE, ContactProblem.BAD_EMAIL):
        assert refused.value.detail  # the validator's explanation comes along


def test_e_mail_check_needs_no_dns():
    # a domain that does not exist is fine: only the syntax is checked
    stored = contacts.normalize_value(ContactKind.EMAIL, "client@no-such-domain-zz9.ru")
    assert stored == "client@no-such-domain-zz9.ru"


# --- add, edit, delete --------------------------------------------------------------


async def test_add_contact_is_stored_audited_and_searchable_at_once(session, manager):
    client = await make_client(session, "Иванов Иван", phone="+7 (945) 123-10-10")
    added = await contacts.add_contact(
        session, client.id, ContactKind.EMAIL, "ivanov@mail.ru", actor=manager
    )
    assert added.id is not None
    # visible to search in the same transaction, through the flush hook
    assert await _found_ids(session, "ivanov@mail") == [client.id]
    await session.commit()
    assert await _contacts(session, client.id) == [
        ("mobile", "79451231010"),
        ("email", "ivanov@mail.ru"),
    ]
    [row] = await _audit(session, "contact.add")
    assert row.actor_staff_id == manager.id
    assert row.entity == "client" and row.entity_id == client.id
    assert row.details["before"] is None
    assert row.details["after"] == {"kind": "email", "value": "ivanov@mail.ru", "comment": None}


async def test_first_phone_becomes_the_main_phone(session, manager):
    client = await make_client(session, "Без телефона", phone=None)
    await contacts.add_contact(session, client.id, ContactKind.PHONE, "84951234567", actor=manager)
    assert await _main_phone(session, client.id) == "74951234567"
    # a second phone does not take over unless asked
    second = await contacts.add_contact(
        session, client.id, ContactKind.MOBILE, "+7 916 854 56 78", actor=manager
    )
    assert await _main_phone(session, client.id) == "74951234567"
    await contacts.make_main(session, second.id, actor=manager)
    assert await _main_phone(session, client.id) == "79168545678"
    [row] = await _audit(session, "contact.make_main")
    assert row.details["main_phone"] == {"before": "74951234567", "after": "79168545678"}


async def test_editing_the_main_phone_keeps_the_client_in_step(session, manager):
    client = await make_client(session, "Иванов Иван", phone="+7 (945) 123-10-10")
    await session.commit()
    [mobile] = [c for c in await _all(session, client.id) if c.kind == ContactKind.MOBILE]

    await contacts.edit_contact(session, mobile.id, value="8 903 145 45 56", actor=manager)
    await session.commit()

    assert await _main_phone(session, client.id) == "79031454556"
    assert await _found_ids(session, "903 145") == [client.id]
    assert await _found_ids(session, "945 123") == []  # the old number is gone from search
    # the search result shows the new main phone
    result = await search.search(session, "Иванов", box=Box.CLIENT)
    assert result.clients[0].main_phone == "79031454556"
    [row] = await _audit(session, "contact.edit")
    assert row.details["before"]["value"] == "79451231010"
    assert row.details["after"]["value"] == "79031454556"
    assert row.details["main_phone"] == {"before": "79451231010", "after": "79031454556"}


async def test_a_bad_edit_changes_nothing(session, manager):
    client = await make_client(session, "Иванов Иван", phone="+7 (945) 123-10-10")
    client_id = client.id
    await session.commit()
    [mobile] = await _all(session, client_id)
    with pytest.raises(InvalidContact) as refused:
        await contacts.edit_contact(session, mobile.id, value="12", actor=manager)
    assert refused.value.problem is ContactProblem.BAD_PHONE
    await session.rollback()
    assert await _contacts(session, client_id) == [("mobile", "79451231010")]
    assert await _audit(session, "contact.edit") == []


async def test_a_phone_turned_into_something_else_hands_the_main_phone_on(session, manager):
    client = await make_client(session, "Иванов Иван", phone="+7 (945) 123-10-10")
    home = await contacts.add_contact(
        session, client.id, ContactKind.PHONE, "+7 495 123-45-67", actor=manager
    )
    [mobile] = [c for c in await _all(session, client.id) if c.kind == ContactKind.MOBILE]
    await contacts.edit_contact(
        session, mobile.id, kind=ContactKind.OTHER, value="Telegram @ivanov", actor=manager
    )
    assert await _main_phone(session, client.id) == home.value


async def test_deleting_the_main_phone_hands_it_on_or_clears_it(session, manager):
    client = await make_client(session, "Иванов Иван", phone="+7 (945) 123-10-10")
    home = await contacts.add_contact(
        session, client.id, ContactKind.PHONE, "+7 495 123-45-67", actor=manager
    )
    [mobile] = [c for c in await _all(session, client.id) if c.kind == ContactKind.MOBILE]
    await contacts.delete_contact(session, mobile.id, actor=manager)
    assert await _main_phone(session, client.id) == "74951234567"
    assert await _found_ids(session, "945 123") == []
    await contacts.delete_contact(session, home.id, actor=manager)
    assert await _main_phone(session, client.id) is None
    await session.commit()
    assert await _contacts(session, client.id) == []
    rows = await _audit(session, "contact.delete")
    assert [r.details["before"]["value"] for r in rows] == ["79451231010", "74951234567"]
    assert all(r.details["after"] is None for r in rows)
    assert rows[1].details["main_phone"] == {"before": "74951234567", "after": None}


async def test_duplicates_are_refused(session, manager):
    client = await make_client(session, "Иванов Иван", phone="+7 (945) 123-10-10")
    with pytest.raises(InvalidContact) as refused:
        # the same number as a landline is still the same number
        await contacts.add_contact(
            session, client.id, ContactKind.PHONE, "89451231010", actor=manager
        )
    assert refused.value.problem is ContactProblem.DUPLICATE


async def test_only_managers_and_admins_edit_contacts(session):
    master = await make_staff(session, "Мастер", Role.MASTER)
    cashier = await make_staff(session, "Кассир", Role.CASHIER)
    client = await make_client(session)
    for who in (master, cashier):
        with pytest.raises(InvalidContact) as refused:
            await contacts.add_contact(session, client.id, ContactKind.EMAIL, "a@b.ru", actor=who)
        assert refused.value.problem is ContactProblem.FORBIDDEN
    admin = await make_staff(session, "Админ", Role.ADMIN)
    await contacts.add_contact(session, client.id, ContactKind.EMAIL, "a@b.ru", actor=admin)


async def test_make_main_refuses_a_non_phone(session, manager):
    client = await make_client(session, email="ivanov@mail.ru")
    [email] = [c for c in await _all(session, client.id) if c.kind == ContactKind.EMAIL]
    with pytest.raises(InvalidContact) as refused:
        await contacts.make_main(session, email.id, actor=manager)
    assert refused.value.problem is ContactProblem.NOT_A_PHONE


async def test_unknown_contact_and_client(session, manager):
    with pytest.raises(InvalidContact) as refused:
        await contacts.delete_contact(session, 999, actor=manager)
    assert refused.value.problem is ContactProblem.CONTACT_NOT_FOUND
    with pytest.raises(InvalidContact) as refused:
        await contacts.add_contact(session, 999, ContactKind.OTHER, "x", actor=manager)
    assert refused.value.problem is ContactProblem.CLIENT_NOT_FOUND


async def _all(session, client_id):
    return list(
        await session.scalars(
            select(ContactInfo)
            .where(ContactInfo.client_id == client_id)
            .order_by(ContactInfo.id)
            .execution_options(populate_existing=True)
        )
    )
