"""The price list, the cart and estimates, against both databases."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import pytest
from sqlalchemy import func, select

from services import cards, cart, estimates, pricelist
from services.cart import CartProblem, CartRefused, Target
from services.estimates import EstimateProblem, EstimateRefused
from services.importer import ImportFailed
from services.selections import car_selections
from storage.models import (
    AuditLog,
    CartLine,
    DocState,
    DocType,
    Document,
    EstimateState,
    LineDecision,
    LineKind,
    Notification,
    PriceItem,
    Role,
)
from tests.factories import (
    PREFIX,
    goods,
    make_car,
    make_client,
    make_document,
    make_price_type,
    make_staff,
    work,
)


async def _shop(session):
    retail = await make_price_type(session, "Розничная", "retail")
    wholesale = await make_price_type(session, "Оптовая", "wholesale")
    filt = await pricelist.save_item(
        session,
        pricelist.ItemDraft(
            LineKind.GOODS,
            "Фильтр масляный",
            {retail.id: 65_000, wholesale.id: 55_250},
            catalogue_number="W 712/75",
            maker="MANN-FILTER",
        ),
    )
    oil = await pricelist.save_item(
        session,
        pricelist.ItemDraft(
            LineKind.WORK,
            "Замена масла в двигателе",
            {retail.id: 240_000, wholesale.id: 200_000},
            catalogue_number="Р-0001",
            norm_hours_milli=500,
            unit="н/ч",
        ),
    )
    manager = await make_staff(session, "Анна Менеджер", Role.MANAGER)
    client = await make_client(
        session, "ООО Ромашка", price_type=wholesale, cards=[("DK-1", 500), ("DK-0", 0)]
    )
    car = await make_car(session, client)
    return {"filter": filt, "oil": oil, "manager": manager, "client": client, "car": car}


async def test_price_list_search_by_name_and_catalogue_number(session):
    shop = await _shop(session)
    assert [i.id for i in await pricelist.search(session, "фильтр")] == [shop["filter"].id]
    assert [i.id for i in await pricelist.search(session, "w712-75")] == [shop["filter"].id]
    assert [i.id for i in await pricelist.search(session, "МАСЛА")] == [shop["oil"].id]
    assert await pricelist.search(session, "%") == []
    assert await pricelist.search(session, "x") == []


async def test_cart_priced_by_price_type_and_card_becomes_an_order(session):
    shop = await _shop(session)
    client, car, manager = shop["client"], shop["car"], shop["manager"]
    await cart.add_from_price_list(
        session, staff=manager, client_id=client.id, car_id=car.id, item_id=shop["filter"].id
    )
    await cart.add_from_price_list(
        session,
        staff=manager,
        client_id=client.id,
        car_id=car.id,
        item_id=shop["filter"].id,
        qty_milli=1500,
    )
    view = await cart.view(session, client.id, car.id)
    assert [(line.qty_milli, line.price, line.discount_bp) for line in view.lines] == [
        (2500, 55_250, 500)
    ]
    # 552,50 × 2,5 = 1381,25, less 5 % = 1312,1875 -> 1312,19
    assert view.total == 131_219
    assert view.terms.card_number == "DK-1"
    doc = await cart.to_document(
        session,
        staff=manager,
        client_id=client.id,
        car_id=car.id,
        target=Target.CUSTOMER_ORDER,
        prefix=PREFIX,
    )
    await session.commit()
    assert (doc.doc_type, doc.state, doc.amount) == (
        DocType.CUSTOMER_ORDER,
        DocState.OPEN,
        131_219,
    )
    assert doc.lines[0].discount_bp == 500 and doc.lines[0].price == 55_250
    assert await cart.counts(session, client.id) == {}
    picks, total = await car_selections(session, car.id)
    assert total == 2 and {p.source for p in picks} == {"price_list"}
    actions = set(await session.scalars(select(AuditLog.action)))
    assert {"cart.add", "cart.to_document", "document.create"} <= actions


async def test_works_make_a_work_order_not_a_customer_order(session):
    shop = await _shop(session)
    client, car, manager = shop["client"], shop["car"], shop["manager"]
    await cart.add_from_price_list(
        session, staff=manager, client_id=client.id, car_id=car.id, item_id=shop["oil"].id
    )
    await session.commit()
    client_id, car_id = client.id, car.id
    with pytest.raises(CartRefused) as refused:
        await cart.to_document(
            session,
            staff=manager,
            client_id=client_id,
            car_id=car_id,
            target=Target.CUSTOMER_ORDER,
            prefix=PREFIX,
        )
    assert refused.value.problem is CartProblem.WORKS_IN_ORDER
    await session.rollback()
    await session.refresh(manager)
    doc = await cart.to_document(
        session,
        staff=manager,
        client_id=client_id,
        car_id=car_id,
        target=Target.WORK_ORDER,
        prefix=PREFIX,
    )
    # 0,5 h × 2 000 ₽ = 1 000 ₽, less 5 %
    assert (doc.doc_type, doc.state, doc.amount) == (DocType.WORK_ORDER, DocState.REQUEST, 95_000)


async def test_master_takes_works_of_the_repair_plan_only(session):
    shop = await _shop(session)
    client, car = shop["client"], shop["car"]
    master = await make_staff(session, "Пётр Мастер", Role.MASTER)
    cashier = await make_staff(session, "Ольга Кассир", Role.CASHIER)
    plan = await make_document(
        session,
        client,
        DocType.REPAIR_PLAN,
        car=car,
        lines=[
            work("Замена масла в двигателе", price=999, norm_hours_milli=500, article="Р-0001"),
            goods("Свеча", price=42_000, qty_milli=4000),
        ],
    )
    oil, plug = plan.lines
    listed = await cart.plan_lines(session, client.id, car.id)
    assert [(p.item, p.in_cart) for p in listed] == [(oil.item, False), (plug.item, False)]
    with pytest.raises(CartRefused) as refused:
        await cart.add_from_plan(
            session, staff=master, client_id=client.id, car_id=car.id, plan_line_id=plug.id
        )
    assert refused.value.problem is CartProblem.FORBIDDEN
    with pytest.raises(CartRefused):
        await cart.add_from_plan(
            session, staff=cashier, client_id=client.id, car_id=car.id, plan_line_id=oil.id
        )
    line = await cart.add_from_plan(
        session, staff=master, client_id=client.id, car_id=car.id, plan_line_id=oil.id
    )
    with pytest.raises(CartRefused) as again:
        await cart.add_from_plan(
            session, staff=master, client_id=client.id, car_id=car.id, plan_line_id=oil.id
        )
    assert again.value.problem is CartProblem.ALREADY_IN_CART
    view = await cart.view(session, client.id, car.id)
    # the price list knows Р-0001: the wholesale rate, not the plan's
    assert [(v.price, v.amount) for v in view.lines] == [(200_000, 95_000)]
    await cart.set_quantity(session, staff=master, line_id=line.id, qty_milli=2000)
    assert (await cart.view(session, client.id, car.id)).total == 190_000
    picks, _ = await car_selections(session, car.id)
    assert [p.source for p in picks] == ["repair_plan"]
    await cart.remove(session, staff=master, line_id=line.id)
    assert await cart.counts(session, client.id) == {}


async def test_cart_of_another_clients_car_is_refused(session):
    shop = await _shop(session)
    stranger = await make_client(session, "Петров", "+7 900 000-00-01")
    with pytest.raises(CartRefused) as refused:
        await cart.add_from_price_list(
            session,
            staff=shop["manager"],
            client_id=stranger.id,
            car_id=shop["car"].id,
            item_id=shop["filter"].id,
        )
    assert refused.value.problem is CartProblem.CAR_NOT_LINKED


async def _sent_estimate(session, shop, chat=7_000_001):
    client, car, manager = shop["client"], shop["car"], shop["manager"]
    client.telegram_chat_id = chat
    client.manager_id = manager.id
    for item in (shop["oil"], shop["filter"]):
        await cart.add_from_price_list(
            session, staff=manager, client_id=client.id, car_id=car.id, item_id=item.id
        )
    estimate = await estimates.from_cart(
        session, staff=manager, client_id=client.id, car_id=car.id
    )
    await estimates.send(session, staff=manager, estimate_id=estimate.id, version=1)
    await session.commit()
    return estimate


async def test_estimate_decided_line_by_line(session):
    shop = await _shop(session)
    estimate = await _sent_estimate(session, shop)
    assert await cart.counts(session, shop["client"].id) == {}
    lines = await estimates.lines_of(session, estimate.id, 1)
    assert [(x.item, x.amount) for x in lines] == [
        ("Замена масла в двигателе", 95_000),
        ("Фильтр масляный", 52_488),  # 552,50 less 5 % = 524,875 -> 524,88
    ]
    sent = await session.scalar(select(Notification).where(Notification.kind == "estimate"))
    assert sent.key == f"estimate:{estimate.id}:1" and sent.urgent
    assert sent.client_id == shop["client"].id

    def press(line, approve, chat=7_000_001, version=1):
        return estimates.decide(
            session,
            estimate_id=estimate.id,
            version=version,
            line_id=line.id,
            approve=approve,
            chat_id=chat,
            prefix=PREFIX,
        )

    with pytest.raises(EstimateRefused) as other:
        await press(lines[0], True, chat=666)
    assert other.value.problem is EstimateProblem.NOT_THE_CLIENT
    first = await press(lines[0], True)
    assert first.changed and not first.finished
    again = await press(lines[0], False)  # a second tap changes nothing
    assert not again.changed
    last = await press(lines[1], False)
    await session.commit()
    assert last.finished
    view = await estimates.get_view(session, estimate.id)
    assert view.estimate.state is EstimateState.DECIDED
    assert view.approved_total == 95_000
    [decision] = view.decisions
    assert (decision.version, decision.approved, decision.declined, decision.chat_id) == (
        1,
        1,
        1,
        7_000_001,
    )
    plan = await session.get(Document, view.estimate.plan_id)
    assert plan.doc_type is DocType.REPAIR_PLAN and plan.car_id == shop["car"].id
    told = await session.scalar(
        select(Notification).where(Notification.kind == "estimate_decided")
    )
    assert told.staff_id == shop["manager"].id and told.digestible
    order = await estimates.to_work_order(
        session, staff=shop["manager"], estimate_id=estimate.id, version=1, prefix=PREFIX
    )
    assert (order.doc_type, order.state, order.amount) == (
        DocType.WORK_ORDER,
        DocState.REQUEST,
        95_000,
    )
    with pytest.raises(EstimateRefused) as twice:
        await estimates.to_work_order(
            session, staff=shop["manager"], estimate_id=estimate.id, version=1, prefix=PREFIX
        )
    assert twice.value.problem is EstimateProblem.ALREADY_DONE


async def test_a_change_after_sending_makes_a_new_version(session):
    shop = await _shop(session)
    estimate = await _sent_estimate(session, shop)
    old = await estimates.lines_of(session, estimate.id, 1)
    await estimates.remove_line(
        session, staff=shop["manager"], estimate_id=estimate.id, version=1, line_no=2
    )
    await session.commit()
    view = await estimates.get_view(session, estimate.id)
    assert view.estimate.version == 2 and view.estimate.state is EstimateState.DRAFT
    assert [x.item for x in view.lines] == ["Замена масла в двигателе"]
    assert len(await estimates.lines_of(session, estimate.id, 1)) == 2  # v1 kept
    with pytest.raises(EstimateRefused) as stale:
        await estimates.decide(
            session,
            estimate_id=estimate.id,
            version=1,
            line_id=old[0].id,
            approve=True,
            chat_id=7_000_001,
            prefix=PREFIX,
        )
    assert stale.value.problem is EstimateProblem.OUT_OF_DATE
    estimate_id, manager = estimate.id, shop["manager"]
    await session.rollback()
    await session.refresh(manager)
    await estimates.send(session, staff=manager, estimate_id=estimate_id, version=2)
    keys = set(await session.scalars(select(Notification.key)))
    assert {f"estimate:{estimate_id}:1", f"estimate:{estimate_id}:2"} <= keys


async def test_unlinked_client_gets_no_estimate_and_cashier_cannot_make_one(session):
    shop = await _shop(session)
    manager, client, car = shop["manager"], shop["client"], shop["car"]
    await cart.add_from_price_list(
        session, staff=manager, client_id=client.id, car_id=car.id, item_id=shop["filter"].id
    )
    cashier = await make_staff(session, "Ольга", Role.CASHIER)
    with pytest.raises(EstimateRefused):
        await estimates.from_cart(session, staff=cashier, client_id=client.id, car_id=car.id)
    estimate = await estimates.from_cart(
        session, staff=manager, client_id=client.id, car_id=car.id
    )
    with pytest.raises(EstimateRefused) as refused:
        await estimates.send(session, staff=manager, estimate_id=estimate.id, version=1)
    assert refused.value.problem is EstimateProblem.NOT_LINKED

    # Linked, but the messages are off or the chat blocked the bot: refused too, so the
    # estimate never waits for an answer the client cannot give.
    client.telegram_chat_id = 5550001
    client.notifications_off = True
    await session.flush()
    with pytest.raises(EstimateRefused) as refused:
        await estimates.send(session, staff=manager, estimate_id=estimate.id, version=1)
    assert refused.value.problem is EstimateProblem.OPTED_OUT
    client.notifications_off = False
    client.telegram_blocked_at = datetime.now(UTC)
    await session.flush()
    with pytest.raises(EstimateRefused) as refused:
        await estimates.send(session, staff=manager, estimate_id=estimate.id, version=1)
    assert refused.value.problem is EstimateProblem.UNREACHABLE
    client.telegram_blocked_at = None
    await session.flush()
    sent = await estimates.send(session, staff=manager, estimate_id=estimate.id, version=1)
    assert sent.state == EstimateState.SENT


PRICES_CSV = """\ufeffВид;Наименование;№ кат.;Производитель;Ед.;н/ч;Цена;Цена Оптовая
товар;Колодки тормозные передние;GDB1550;TRW;шт;;3 240,00;2 754
работа;Замена колодок;Р-0010;;н/ч;1,0;2400;2000
товар;Без цены;X1;;;;;
работа;Кривая норма;Р-9;;;абв;100;
"""


async def test_price_list_csv_all_or_nothing_and_skip_bad(tmp_path: Path, session_factory):
    path = tmp_path / "prices.csv"
    path.write_text(PRICES_CSV, encoding="utf-8")
    with pytest.raises(ImportFailed) as failed:
        await pricelist.import_price_list(session_factory, path, skip_bad=False, rejects_path=None)
    assert failed.value.problems == [
        "prices.csv:4: no price",
        'prices.csv:5: norm hours "абв" is not a positive number',
    ]
    async with session_factory() as s:
        assert await s.scalar(select(func.count()).select_from(PriceItem)) == 0
    rejects = tmp_path / "rejects.csv"
    report = await pricelist.import_price_list(
        session_factory, path, skip_bad=True, rejects_path=rejects
    )
    assert (report.created, report.updated, report.rejected) == (2, 0, 2)
    assert "prices.csv" in rejects.read_text(encoding="utf-8-sig")
    again = await pricelist.import_price_list(
        session_factory, path, skip_bad=True, rejects_path=None
    )
    assert (again.created, again.updated) == (0, 2)
    async with session_factory() as s:
        [pads] = await pricelist.search(s, "gdb 1550")
        wholesale = await s.scalar(select(PriceItem.id).where(PriceItem.name == "Замена колодок"))
        assert pads.maker == "TRW" and wholesale is not None
        found = await pricelist.prices(s, [pads.id], None)
        assert found == {pads.id: 324_000}


async def test_cart_counts_per_car(session):
    shop = await _shop(session)
    manager, client, car = shop["manager"], shop["client"], shop["car"]
    await cart.add_from_price_list(
        session, staff=manager, client_id=client.id, car_id=None, item_id=shop["filter"].id
    )
    await cart.add_from_price_list(
        session, staff=manager, client_id=client.id, car_id=car.id, item_id=shop["oil"].id
    )
    assert await cart.counts(session, client.id) == {None: 1, car.id: 1}
    # The card's Cart (N) tab counts every line of the client, with its own statement.
    card = await cards.client_card(session, client.id)
    assert card is not None and card.counts.cart == 2
    assert await session.scalar(select(func.count()).select_from(CartLine)) == 2
    assert LineDecision.APPROVED.value == "approved"
