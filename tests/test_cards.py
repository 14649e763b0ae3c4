"""The client and car cards, the car history, document lines and the customer documents
tab, on SQLite and PostgreSQL."""

from __future__ import annotations

import dataclasses

import pytest

from services import cards
from services.normalize import format_phone
from storage.models import (
    CarRole,
    ClientKind,
    ClientRelation,
    ContactKind,
    DocState,
    DocType,
)
from tests.factories import (
    count_queries,
    goods,
    make_car,
    make_client,
    make_document,
    make_event,
    make_organization,
    make_payment,
    make_price_type,
    make_staff,
    moscow,
    work,
)

SEED_TIME = moscow(2020, 10, 20, 10, 59, 20)


async def _seed_ivanov(session):
    """The seed's example: Иванов Иван, his Corolla and its repair plan."""
    wholesale = await make_price_type(session, "Оптовая")
    ivanov = await make_client(
        session, "Иванов Иван", "+7 (945) 123-10-10", email="ivanov@mail.ru", price_type=wholesale
    )
    corolla = await make_car(session, ivanov)
    plan = await make_document(
        session,
        ivanov,
        DocType.REPAIR_PLAN,
        car=corolla,
        date=SEED_TIME,
        lines=[work("Панель боковая", price=1_500_00, norm_hours_milli=2000)],
    )
    await make_event(session, ivanov, car=corolla, at=SEED_TIME, processed=True)
    return ivanov, corolla, plan


async def test_the_seed_example(session):
    ivanov, corolla, plan = await _seed_ivanov(session)
    assert plan.number == "ЦОА0000001"

    card = await cards.client_card(session, ivanov.id)
    assert card is not None
    assert (card.name, card.kind, card.relation, card.inn) == (
        "Иванов Иван",
        ClientKind.PERSON,
        ClientRelation.BUYER,
        None,
    )
    assert format_phone(card.main_phone) == "+7 (945) 123-10-10"
    assert [(c.kind, c.value) for c in card.contacts] == [
        (ContactKind.EMAIL, "ivanov@mail.ru"),
        (ContactKind.MOBILE, "79451231010"),
    ]
    assert card.last_contact_at == SEED_TIME
    assert (card.debt, card.open_work_orders_debt) == (0, 0)
    assert card.price_type == "Оптовая"
    assert (card.discount_cards, card.masters, card.manager) == ((), (), None)
    assert [(c.id, c.name, c.plate, c.vin, c.role) for c in card.cars] == [
        (
            corolla.id,
            "TOYOTA, COROLLA седан (_E12J_,_E12T_)",
            "n123ap",
            "NMTBM28E80R058037",
            CarRole.OWNER,
        )
    ]
    assert card.counts == cards.TabCounts(new_events=0, cart=0, open_orders=0, documents=1)

    car = await cards.car_card(session, corolla.id)
    assert car is not None
    assert car.model_title == "TOYOTA COROLLA седан (_E12J_,_E12T_)"
    assert (car.configuration, car.vin, car.plate) == (None, "NMTBM28E80R058037", "n123ap")
    assert [(c.id, c.role) for c in car.clients] == [(ivanov.id, CarRole.OWNER)]

    history, total = await cards.car_history(session, corolla.id)
    assert total == 1
    [row] = history
    assert (row.doc_type, row.number, row.date, row.repair_type, row.state) == (
        DocType.REPAIR_PLAN,
        "ЦОА0000001",
        SEED_TIME,
        None,
        DocState.POSTED,
    )

    view = await cards.document_lines(session, plan.id)
    assert view is not None
    assert view.document == row
    assert view.goods == ()
    assert view.works == (
        cards.WorkLine(
            line_no=1,
            item="Панель боковая",
            article=None,
            qty_milli=1000,
            norm_hours_milli=2000,
            price_per_hour=1_500_00,
            price=3_000_00,
            amount=3_000_00,
            discount_bp=0,
        ),
    )
    assert view.works_amount == 3_000_00


async def test_client_card_figures(session):
    manager = await make_staff(session, "Сидорова Анна")
    masters = [await make_staff(session, "Петров Пётр"), await make_staff(session, "Бобров Олег")]
    client = await make_client(
        session,
        "ИЧП Строганов НИ",
        "+7 (916) 854-56-78",
        kind=ClientKind.COMPANY,
        inn="4256836901",
        manager=manager,
        masters=masters,
        cards=[("0001234", 500), ("0005678", 1000)],
    )
    car = await make_car(session, client)
    await make_event(session, client, at=moscow(2024, 3, 1))
    await make_event(session, client, at=moscow(2024, 3, 5), processed=True)
    await make_event(session, client, at=moscow(2024, 2, 1))
    order = await make_document(session, client, amount=1_000_00)
    await make_document(session, client, amount=50_00, state=DocState.CANCELLED)
    await make_payment(session, order, 300_00)
    await make_document(
        session, client, DocType.WORK_ORDER, car=car, state=DocState.COMPLETED, amount=2_000_00
    )
    await make_document(
        session, client, DocType.WORK_ORDER, car=car, state=DocState.CLOSED, amount=500_00
    )

    card = await cards.client_card(session, client.id)
    assert card is not None
    assert (card.kind, card.inn, card.manager) == (ClientKind.COMPANY, "4256836901", manager.name)
    assert card.masters == ("Бобров Олег", "Петров Пётр")
    assert card.discount_cards == (
        cards.DiscountCardInfo("0001234", 500),
        cards.DiscountCardInfo("0005678", 1000),
    )
    assert card.last_contact_at == moscow(2024, 3, 5)
    assert card.debt == 1_000_00 - 300_00 + 2_000_00 + 500_00
    assert card.open_work_orders_debt == 2_000_00
    assert type(card.debt) is int
    assert card.counts == cards.TabCounts(new_events=2, cart=0, open_orders=1, documents=5)


async def test_client_card_takes_a_fixed_number_of_queries(session, engine):
    client = await make_client(session, cards=[("0001", 100), ("0002", 200)])
    for i in range(5):
        await make_car(session, client, vin=None, plate=f"а{i}00аа77")
        await make_event(session, client)
        await make_document(session, client, amount=100)
    with count_queries(engine) as queries:
        card = await cards.client_card(session, client.id)
    assert card is not None
    assert len(card.cars) == 5
    assert len(queries) == 1  # the client, its figures and its lists in one statement


async def test_a_car_with_two_clients_shows_both(session):
    owner = await make_client(session, "Иванов Иван", "+7 945 123-10-10")
    driver = await make_client(session, "Иванова Мария", "+7 903 145-45-56")
    car = await make_car(session, owner, drivers=[driver])

    card = await cards.car_card(session, car.id)
    assert card is not None
    assert [(c.name, c.role) for c in card.clients] == [
        ("Иванов Иван", CarRole.OWNER),
        ("Иванова Мария", CarRole.DRIVER),
    ]
    driver_card = await cards.client_card(session, driver.id)
    assert driver_card is not None
    assert [(c.id, c.role) for c in driver_card.cars] == [(car.id, CarRole.DRIVER)]


async def test_car_history_pages_newest_first(session):
    client = await make_client(session)
    car = await make_car(session, client)
    other = await make_car(session, client, vin=None, plate="о777оо77")
    kinds = [DocType.REPAIR_PLAN, DocType.REPAIR_REQUEST, DocType.WORK_ORDER, DocType.SALE]
    made = []
    for day in range(1, 26):
        doc = await make_document(
            session,
            client,
            kinds[day % len(kinds)],
            car=car,
            date=moscow(2023, 1, day),
            repair_type="ТО" if day % 2 else None,
        )
        made.append(doc)
        # A payment is money, not an operation on the car, even when it names the car.
        await make_document(session, client, DocType.PAYMENT, car=car, base=doc, amount=1_00)
    await make_document(session, client, DocType.WORK_ORDER, car=other)

    page, total = await cards.car_history(session, car.id, offset=10, limit=10)
    assert total == 25
    newest_first = [d.id for d in reversed(made)]
    assert [r.id for r in page] == newest_first[10:20]
    last, _ = await cards.car_history(session, car.id, offset=20, limit=10)
    assert [r.id for r in last] == newest_first[20:]
    assert {r.doc_type for r in page} <= set(kinds)
    assert page[0].repair_type == made[14].repair_type


async def test_the_car_card_brings_a_page_of_its_history(session):
    """One statement for the card and a page of its history: the same as asking for each."""
    client = await make_client(session)
    car = await make_car(session, client)
    bare = await make_car(session, client, vin=None, plate="о777оо77")
    for day in range(1, 13):
        await make_document(
            session, client, DocType.WORK_ORDER, car=car, date=moscow(2023, 1, day)
        )
    plain = await cards.car_card(session, car.id)
    for offset in (0, 10, 20):
        card = await cards.car_card(session, car.id, history=(offset, 10))
        assert card is not None and card.history is not None
        assert dataclasses.replace(card, history=None) == plain
        rows, total = card.history
        assert (rows, total) == await cards.car_history(session, car.id, offset=offset, limit=10)
        assert total == 12 and len(rows) == [10, 2, 0][offset // 10]
    empty = await cards.car_card(session, bare.id, history=(0, 10))
    assert empty is not None and empty.history == ([], 0) and empty.plate == bare.plate
    assert await cards.car_card(session, 424242, history=(0, 10)) is None
    with pytest.raises(ValueError):
        await cards.car_card(session, car.id, history=(-1, 10))


async def test_same_date_documents_keep_a_stable_order(session):
    client = await make_client(session)
    car = await make_car(session, client)
    docs = [
        await make_document(session, client, DocType.WORK_ORDER, car=car, date=SEED_TIME)
        for _ in range(3)
    ]
    rows, _ = await cards.car_history(session, car.id, limit=2)
    assert [r.id for r in rows] == [docs[2].id, docs[1].id]


async def test_customer_documents_filter_by_type_organization_department(session):
    alfa = await make_organization(session, "Альфа", departments=["Сервис", "Магазин"])
    beta = await make_organization(session, "Бета")
    service, shop = alfa.departments
    client = await make_client(session)
    stranger = await make_client(session, "Петров Пётр", "+7 916 854-56-78")
    order = await make_document(
        session,
        client,
        organization=alfa,
        department=shop,
        date=moscow(2020, 10, 20, 10),
        lines=[
            goods(
                "Амортизатор задней подвески",
                price=130_00,
                catalogue_number="2108-2915004",
                discount_bp=1000,
            )
        ],
    )
    invoice = await make_document(
        session,
        client,
        DocType.INVOICE,
        base=order,
        amount=order.amount,
        organization=alfa,
        department=shop,
        date=moscow(2020, 10, 20, 11),
    )
    work_order = await make_document(
        session,
        client,
        DocType.WORK_ORDER,
        organization=alfa,
        department=service,
        date=moscow(2020, 10, 21),
    )
    beta_sale = await make_document(
        session, client, DocType.SALE, organization=beta, date=moscow(2020, 10, 22)
    )
    await make_document(session, stranger, DocType.INVOICE, organization=alfa)

    rows, total = await cards.client_documents(session, client.id)
    assert total == 4
    assert [r.id for r in rows] == [beta_sale.id, work_order.id, invoice.id, order.id]
    assert [r.amount for r in rows[2:]] == [117_00, 117_00]

    rows, total = await cards.client_documents(session, client.id, doc_types={DocType.INVOICE})
    assert ([r.id for r in rows], total) == ([invoice.id], 1)
    rows, total = await cards.client_documents(
        session, client.id, doc_types=[DocType.INVOICE, DocType.SALE]
    )
    assert ([r.id for r in rows], total) == ([beta_sale.id, invoice.id], 2)
    assert await cards.client_documents(session, client.id, doc_types=()) == ([], 0)

    rows, total = await cards.client_documents(session, client.id, organization_id=alfa.id)
    assert ([r.id for r in rows], total) == ([work_order.id, invoice.id, order.id], 3)
    rows, total = await cards.client_documents(
        session, client.id, organization_id=alfa.id, department_id=shop.id
    )
    assert ([r.id for r in rows], total) == ([invoice.id, order.id], 2)
    rows, total = await cards.client_documents(
        session, client.id, organization_id=alfa.id, limit=1, offset=1
    )
    assert ([r.id for r in rows], total) == ([invoice.id], 3)

    view = await cards.document_lines(session, order.id)
    assert view is not None
    assert view.works == ()
    assert view.goods == (
        cards.GoodsLine(
            line_no=1,
            item="Амортизатор задней подвески",
            catalogue_number="2108-2915004",
            maker=None,
            qty_milli=1000,
            price=130_00,
            amount=117_00,
            discount_bp=1000,
            shipped_qty_milli=0,
        ),
    )


async def test_works_and_goods_are_split_and_ordered(session):
    client = await make_client(session)
    doc = await make_document(
        session,
        client,
        DocType.WORK_ORDER,
        lines=[
            work("Снятие колеса", price=1_234_57, norm_hours_milli=333, article="W-1"),
            goods("Масло 5W-30", price=899_99, qty_milli=4500, maker="Shell"),
            work("Диагностика", price=1_000_00, norm_hours_milli=None),
        ],
    )
    view = await cards.document_lines(session, doc.id)
    assert view is not None
    assert [(w.line_no, w.item) for w in view.works] == [(1, "Снятие колеса"), (3, "Диагностика")]
    wheel, diagnostics = view.works
    # 1 234,57 × 0,333 = 411,11181 -> 411,11
    assert (wheel.price_per_hour, wheel.price, wheel.amount) == (1_234_57, 411_11, 411_11)
    assert (diagnostics.price_per_hour, diagnostics.price) == (None, 1_000_00)
    [oil] = view.goods
    assert (oil.qty_milli, oil.amount, oil.maker) == (4500, 4_049_96, "Shell")
    assert view.works_amount + view.goods_amount == doc.amount


async def test_missing_ids_give_nothing(session):
    assert await cards.client_card(session, 424242) is None
    assert await cards.car_card(session, 424242) is None
    assert await cards.document_lines(session, 424242) is None
    assert await cards.car_history(session, 424242) == ([], 0)
    assert await cards.client_documents(session, 424242) == ([], 0)


async def test_bad_page_is_refused(session):
    with pytest.raises(ValueError, match="bad page"):
        await cards.car_history(session, 1, offset=-1)
    with pytest.raises(ValueError, match="bad page"):
        await cards.client_documents(session, 1, limit=0)
