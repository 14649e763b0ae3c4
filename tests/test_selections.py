"""Selection history and the OEM catalogue link, on SQLite and PostgreSQL."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from services import oem, selections
from services.selections import SelectionProblem, SelectionRefused, SelectionSource
from storage.models import LineKind, Role, Selection
from tests.factories import make_car, make_client, make_staff

# --- selection history --------------------------------------------------------------


async def test_picks_are_listed_newest_first_in_pages(session):
    master = await make_staff(session, "Мастер Михаил", Role.MASTER)
    client = await make_client(session)
    car = await make_car(session, client)
    other_car = await make_car(session, client, plate="В002ВВ77", vin=None)
    for n in range(12):
        await selections.record_pick(
            session,
            staff=master,
            car_id=car.id,
            client_id=client.id,
            kind=LineKind.GOODS,
            item=f"Деталь {n}",
            catalogue_number=f"48510-{n:04d}",
            maker="TOYOTA",
            source=SelectionSource.OEM,
        )
    await selections.record_pick(
        session,
        staff=master,
        car_id=other_car.id,
        kind=LineKind.WORK,
        item="Замена масла",
        source="repair_plan",
    )
    # the same instant for several picks: the id breaks the tie
    await session.commit()

    page, total = await selections.car_selections(session, car.id, limit=5)
    assert total == 12
    assert [row.item for row in page] == [f"Деталь {n}" for n in (11, 10, 9, 8, 7)]
    first = page[0]
    assert (first.kind, first.source, first.staff, first.client_id) == (
        LineKind.GOODS,
        "oem",
        "Мастер Михаил",
        client.id,
    )
    assert (first.catalogue_number, first.maker) == ("48510-0011", "TOYOTA")
    last, _ = await selections.car_selections(session, car.id, offset=10, limit=5)
    assert [row.item for row in last] == ["Деталь 1", "Деталь 0"]
    other, total = await selections.car_selections(session, other_car.id)
    assert total == 1 and other[0].source == "repair_plan" and other[0].client_id is None


async def test_history_orders_by_time(session):
    master = await make_staff(session, "Мастер", Role.MASTER)
    car = await make_car(session, await make_client(session))
    now = datetime.now(UTC)
    # written out of order
    for item, minutes in (("новая", 1), ("старая", 60), ("средняя", 30)):
        session.add(
            Selection(
                car_id=car.id,
                staff_id=master.id,
                kind=LineKind.GOODS,
                item=item,
                source="cart",
                created_at=now - timedelta(minutes=minutes),
            )
        )
    await session.flush()
    page, _ = await selections.car_selections(session, car.id)
    assert [row.item for row in page] == ["новая", "средняя", "старая"]


async def test_bad_picks_are_refused(session):
    master = await make_staff(session, "Мастер", Role.MASTER)
    cashier = await make_staff(session, "Кассир", Role.CASHIER)
    client = await make_client(session)
    car = await make_car(session, client)
    stranger = await make_client(session, "Чужой", phone=None)
    good = {
        "staff": master,
        "car_id": car.id,
        "kind": LineKind.GOODS,
        "item": "Фильтр",
        "source": "price_list",
    }
    cases = [
        ({"staff": cashier}, SelectionProblem.FORBIDDEN),
        ({"car_id": 999_999}, SelectionProblem.CAR_NOT_FOUND),
        ({"client_id": stranger.id}, SelectionProblem.CAR_NOT_LINKED),
        ({"item": "  "}, SelectionProblem.EMPTY),
        ({"item": "x" * 301}, SelectionProblem.TOO_LONG),
        ({"source": "ebay"}, SelectionProblem.BAD_SOURCE),
    ]
    for overrides, problem in cases:
        with pytest.raises(SelectionRefused) as refused:
            await selections.record_pick(session, **{**good, **overrides})
        assert refused.value.problem is problem, overrides
    _, total = await selections.car_selections(session, car.id)
    assert total == 0


# --- the OEM catalogue link ---------------------------------------------------------

TEMPLATE = "https://oem.example.com/vehicles?vin={vin}&lang=ru"


def test_oem_link_puts_the_vin_in_encoded():
    assert oem.oem_link(TEMPLATE, "nmtbm28e80r058037") == (
        "https://oem.example.com/vehicles?vin=NMTBM28E80R058037&lang=ru"
    )
    # anything odd in a VIN field cannot break out of the query
    assert oem.oem_link(TEMPLATE, "AB&C/1 2") == (
        "https://oem.example.com/vehicles?vin=AB%26C%2F12&lang=ru"
    )


@pytest.mark.parametrize(
    ("template", "vin"), [(None, "X"), ("", "X"), (TEMPLATE, None), (TEMPLATE, "  ")]
)
def test_no_link_without_a_template_or_a_vin(template, vin):
    assert oem.oem_link(template, vin) is None


@pytest.mark.parametrize(
    "template",
    [
        "https://oem.example.com/vehicles",  # no {vin}
        "ftp://oem.example.com/{vin}",
        "javascript:alert('{vin}')",
        "oem.example.com/{vin}",
        "https:///{vin}",
    ],
)
def test_bad_templates_are_refused(template):
    with pytest.raises(oem.BadOemTemplate):
        oem.check_template(template)
    with pytest.raises(ValueError):
        oem.oem_link(template, "NMTBM28E80R058037")


async def test_link_for_a_car_in_the_database(session):
    client = await make_client(session)
    with_vin = await make_car(session, client)
    without = await make_car(session, client, vin=None, body_number="NZE121-0123456")
    assert await oem.car_oem_link(session, with_vin.id, TEMPLATE) == (
        "https://oem.example.com/vehicles?vin=NMTBM28E80R058037&lang=ru"
    )
    assert await oem.car_oem_link(session, without.id, TEMPLATE) is None
    assert await oem.car_oem_link(session, with_vin.id, None) is None
