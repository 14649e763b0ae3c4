"""The staff workstation end to end: the real aiogram client in its polling loop, talking
HTTP to the local Bot API stand-in, on a real database."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest
from sqlalchemy import select

from handlers.callbacks import OpenDocument, OrdersView
from storage.models import AuditLog, DocState, DocType, EventKind, Role
from tests.e2e_support import BotHarness, running_bot
from tests.factories import (
    goods,
    make_car,
    make_client,
    make_document,
    make_event,
    make_payment,
    work,
)

MASTER, MANAGER, CASHIER, STRANGER, FORMER = 100, 200, 300, 999, 400


@pytest.fixture
async def bot(db_url: str) -> AsyncIterator[BotHarness]:
    async with running_bot(db_url) as harness:
        yield harness


@pytest.fixture
async def shop(bot: BotHarness) -> dict[str, int]:
    await bot.add_staff(MASTER, "Пётр Мастер", Role.MASTER)
    await bot.add_staff(MANAGER, "Анна Менеджер", Role.MANAGER)
    await bot.add_staff(CASHIER, "Ольга Кассир", Role.CASHIER)
    await bot.add_staff(FORMER, "Бывший", Role.MANAGER, active=False)
    async with bot.app.session_factory() as s:
        ivanov = await make_client(s, "Иванов Иван", "+7 (945) 123-10-10", email="ivanov@mail.ru")
        car = await make_car(s, ivanov, plate="Н123АР77", vin="NMTBM28E80R058037")
        plan = await make_document(
            s,
            ivanov,
            DocType.REPAIR_PLAN,
            car=car,
            number="ЦОА0000001",
            lines=[work("Панель боковая", price=150_000, norm_hours_milli=2000)],
        )
        order = await make_document(
            s,
            ivanov,
            DocType.CUSTOMER_ORDER,
            state=DocState.OPEN,
            lines=[
                goods(
                    "Амортизатор задней подвески",
                    price=13_000,
                    catalogue_number="2108-2915004",
                    discount_bp=1000,
                )
            ],
        )
        await make_payment(s, order, 5_000)
        await make_event(s, ivanov, kind=EventKind.CALL, text="Перезвонить насчёт амортизатора")
        evil = await make_client(s, '<b>Tom & "Jerry"</b>', "+7 916 854-56-78")
        await s.commit()
        return {
            "ivanov": ivanov.id,
            "car": car.id,
            "plan": plan.id,
            "order": order.id,
            "evil": evil.id,
        }


def screen(bot: BotHarness, user: int):
    return bot.api.bot_messages(user)[-1]


def seen(bot: BotHarness, user: int) -> str:
    """What the user reads on the current screen (no-break spaces as spaces)."""
    return (screen(bot, user).plain_text or "").replace("\xa0", " ")


async def test_master_types_a_plate_in_latin_and_gets_the_car(bot, shop):
    out = await bot.send(MASTER, "n123ap")
    assert "TOYOTA" in out.text and "Н123АР77" in out.text and "NMTBM28E80R058037" in out.text
    assert "ЦОА0000001" in out.text  # the history of the car
    card = screen(bot, MASTER)
    out = await bot.press(MASTER, card.button("Иванов Иван")["callback_data"], card.message_id)
    assert out.of("sendMessage") == []  # edited in place, no new message
    text = screen(bot, MASTER).plain_text
    assert "Иванов Иван" in text and "+7 (945) 123-10-10" in text and "ivanov@mail.ru" in text
    # a master sees no money tabs
    buttons = str(screen(bot, MASTER).buttons)
    assert "Заказы" not in buttons and "Документы" not in buttons and "События" in buttons


async def test_works_and_goods_of_a_document_and_back(bot, shop):
    await bot.send(MASTER, "н 123 ар 77")
    card = screen(bot, MASTER)
    await bot.press(MASTER, card.button("ЦОА0000001")["callback_data"], card.message_id)
    text = seen(bot, MASTER)
    assert "Панель боковая" in text and "3 000,00" in text and "2,000" in text
    back = screen(bot, MASTER).button("Назад")["callback_data"]
    await bot.press(MASTER, back, card.message_id)
    assert "История" in screen(bot, MASTER).plain_text


async def test_phone_and_shared_contact_find_the_client(bot, shop):
    out = await bot.send(MANAGER, "8 945 123-10-10")
    assert "Иванов Иван" in out.text
    out = await bot.send(MANAGER, contact={"phone_number": "79451231010", "first_name": "И"})
    assert "Иванов Иван" in out.text


async def test_manager_sees_orders_debt_and_documents(bot, shop):
    await bot.send(MANAGER, "/client иванов")
    card = screen(bot, MANAGER)
    # the order: 130,00 less 10 % = 117,00, of which 50,00 paid
    assert "Долг клиента: 67,00 ₽" in seen(bot, MANAGER)
    out = await bot.press(MANAGER, card.button("Заказы")["callback_data"], card.message_id)
    text = seen(bot, MANAGER)
    assert "сумма 117,00 ₽ · оплачено 50,00 ₽ · долг 67,00 ₽" in text, text
    assert out.of("sendMessage") == []
    await bot.press(
        MANAGER, screen(bot, MANAGER).button("Назад")["callback_data"], card.message_id
    )
    card = screen(bot, MANAGER)
    await bot.press(MANAGER, card.button("Документы")["callback_data"], card.message_id)
    docs = screen(bot, MANAGER)
    assert "Документы: 3" in docs.plain_text
    type_filter = next(b for row in docs.buttons for b in row if b["text"] == "Заказ покупателя")
    await bot.press(MANAGER, type_filter["callback_data"], card.message_id)
    assert "Документы: 1" in screen(bot, MANAGER).plain_text


async def test_stranger_and_former_staff_get_nothing(bot, shop):
    for user in (STRANGER, FORMER):
        out = await bot.send(user, "n123ap")
        assert out.text == "Этот бот — для сотрудников автосервиса." or "сотрудник" in out.text
        assert "Иванов" not in out.text and "Н123АР" not in out.text


async def test_forged_button_for_an_order_is_refused_and_audited(bot, shop):
    await bot.send(MASTER, "/client иванов")
    card = screen(bot, MASTER)
    for forged in (
        OrdersView(client_id=shop["ivanov"]).pack(),
        OpenDocument(document_id=shop["order"]).pack(),
        "cl:not-a-number:i:0",
        "zz:1",
        OpenDocument(document_id=999_999).pack(),
    ):
        out = await bot.press(MASTER, forged, card.message_id)
        answers = out.of("answerCallbackQuery")
        assert answers and answers[0].params.get("text") == "Эта кнопка устарела."
        assert out.of("editMessageText") == []
    async with bot.app.session_factory() as s:
        rows = (await s.scalars(select(AuditLog).where(AuditLog.action == "button.refused"))).all()
    assert [r.details["reason"] for r in rows] == [
        "forbidden",
        "forbidden",
        "malformed",
        "malformed",
        "stale",
    ]
    assert all(r.actor_telegram_id == MASTER for r in rows)
    # the stranger's press is refused too, without data
    out = await bot.press(
        STRANGER, OpenDocument(document_id=shop["order"]).pack(), card.message_id
    )
    assert "Амортизатор" not in str(out.calls)


async def test_database_values_are_escaped(bot, shop):
    out = await bot.send(MANAGER, "tom")
    raw = out.sent[0].params["text"]
    assert '<b>&lt;b&gt;Tom &amp; "Jerry"&lt;/b&gt;</b>' in raw, raw
    # the user reads the name literally, as typed
    assert out.text.splitlines()[0] == '<b>Tom & "Jerry"</b>'


async def test_paging_through_many_results(bot, shop):
    async with bot.app.session_factory() as s:
        for i in range(23):
            await make_client(s, f"Сидоров {i:02d}", f"+7 903 100-00-{i:02d}")
        await s.commit()
    await bot.send(MANAGER, "сидоров")
    first = screen(bot, MANAGER)
    assert "Клиенты: 23" in first.plain_text
    names = [b["text"] for row in first.buttons for b in row if b["text"].startswith("👤")]
    assert len(names) == 10
    await bot.press(MANAGER, first.button("▶")["callback_data"], first.message_id)
    await bot.press(MANAGER, screen(bot, MANAGER).button("▶")["callback_data"], first.message_id)
    third = screen(bot, MANAGER)
    assert "3/3" in str(third.buttons)
    assert len([b for row in third.buttons for b in row if b["text"].startswith("👤")]) == 3


async def test_nothing_found_gives_a_hint(bot, shop):
    out = await bot.send(MASTER, "zzzz9999")
    assert "Ничего не найдено" in out.text


async def test_filters_toggle_and_list(bot, shop):
    await bot.send(MANAGER, "/filters")
    menu = screen(bot, MANAGER)
    await bot.press(MANAGER, menu.button("С заказами")["callback_data"], menu.message_id)
    assert "✓ С заказами" in str(screen(bot, MANAGER).buttons)
    await bot.press(MANAGER, menu.button("Показать список")["callback_data"], menu.message_id)
    listing = screen(bot, MANAGER)
    assert "Клиенты: 1" in listing.plain_text and "Иванов Иван" in str(listing.buttons)


async def test_english_speaker(bot, shop):
    out = await bot.send(MASTER, "/lang en")
    assert "English" in out.text
    out = await bot.send(MASTER, "n123ap")
    assert "Plate: Н123АР77" in out.text and "History (1)" in out.text


async def test_long_screens_fit_telegram_and_long_documents_are_paged(bot, shop):
    from storage.models import ContactInfo, ContactKind

    async with bot.app.session_factory() as s:
        big = await make_client(s, "Большаков " + "Б" * 200, "+7 903 555-00-00")
        for i in range(40):
            s.add(
                ContactInfo(
                    client_id=big.id,
                    kind=ContactKind.ADDRESS,
                    value=f"Улица {i} " + "д" * 150,
                    comment="к" * 150,
                )
            )
        for i in range(20):
            await make_car(s, big, plate=f"А{i:03d}ВС77", vin=None, name="LADA " + "X" * 250)
        for _ in range(12):
            await make_event(s, big, text="Очень длинный разговор. " * 100)
        doc = await make_document(
            s,
            big,
            DocType.WORK_ORDER,
            state=DocState.IN_PROGRESS,
            lines=[work(f"Работа {i:03d} " + "р" * 120, price=100_00) for i in range(150)],
        )
        await s.commit()
        big_id, doc_id = big.id, doc.id
    out = await bot.send(MANAGER, "большаков")
    assert len(out.sent[0].params["text"]) <= 4096
    card = screen(bot, MANAGER)
    # the card is paged: every contact is on some page, none cut
    addresses: list[str] = []
    while True:
        page = screen(bot, MANAGER)
        addresses += [ln for ln in (page.plain_text or "").splitlines() if "Улица" in ln]
        try:
            forward = page.button("▶")
        except AssertionError:
            break
        await bot.press(MANAGER, forward["callback_data"], card.message_id)
    assert len(addresses) == 40 and all(ln.endswith("к" * 150 + ")") for ln in addresses)
    out = await bot.press(MANAGER, card.button("События")["callback_data"], card.message_id)
    assert out.of("editMessageText")[0].ok
    # the 150 lines of the work order: pages, each line whole, every line on some page
    await bot.press(MANAGER, OpenDocument(document_id=doc_id).pack(), card.message_id)
    seen_lines: list[str] = []
    while True:
        page = screen(bot, MANAGER)
        assert len(page.text or "") <= 4096
        seen_lines += [ln for ln in (page.plain_text or "").splitlines() if "Работа " in ln]
        try:
            forward = page.button("▶")
        except AssertionError:
            break
        await bot.press(MANAGER, forward["callback_data"], card.message_id)
    assert [ln.split(". ", 1)[1][:10] for ln in seen_lines] == [
        f"Работа {i:03d}" for i in range(150)
    ]
    assert big_id


async def test_documents_by_organization_and_department(bot, shop):
    from tests.factories import make_organization

    async with bot.app.session_factory() as s:
        from storage.models import Client

        ivanov = await s.get(Client, shop["ivanov"])
        alfa = await make_organization(s, "Альфа", ["Сервис", "Магазин"])
        beta = await make_organization(s, "Бета", ["Склад"])
        service, shop_dept = alfa.departments
        for org, dept in ((alfa, service), (alfa, shop_dept), (alfa, shop_dept), (beta, None)):
            await make_document(s, ivanov, DocType.INVOICE, organization=org, department=dept)
        await s.commit()
    await bot.send(MANAGER, "/client иванов")
    card = screen(bot, MANAGER)
    await bot.press(MANAGER, card.button("Документы")["callback_data"], card.message_id)
    assert "Документы: 7" in seen(bot, MANAGER)
    await bot.press(
        MANAGER, screen(bot, MANAGER).button("Альфа")["callback_data"], card.message_id
    )
    assert "Документы: 3" in seen(bot, MANAGER)
    await bot.press(
        MANAGER, screen(bot, MANAGER).button("Магазин")["callback_data"], card.message_id
    )
    assert "Документы: 2" in seen(bot, MANAGER)
    assert "✓ Магазин" in str(screen(bot, MANAGER).buttons)


async def test_main_menu_buttons(bot, shop):
    out = await bot.send(MASTER, "/start")
    menu = screen(bot, MASTER)
    assert "Сотрудники" not in str(menu.buttons)  # a master manages no staff
    await bot.press(MASTER, menu.button("Отборы")["callback_data"], menu.message_id)
    assert "Только мои" in str(screen(bot, MASTER).buttons)
    assert out.sent


async def test_selection_history_and_oem_catalogue_on_the_car_card(db_url):
    from services.selections import SelectionSource, record_pick
    from storage.models import LineKind, Staff

    async with running_bot(
        db_url, oem_catalogue_url="https://oem.example/catalog?vin={vin}"
    ) as bot:
        await bot.add_staff(MASTER, "Пётр Мастер", Role.MASTER)
        async with bot.app.session_factory() as s:
            client = await make_client(s, "Иванов Иван", "+7 (945) 123-10-10")
            car = await make_car(s, client, plate="Н123АР77", vin="NMTBM28E80R058037")
            master = (await s.scalars(select(Staff))).one()
            await record_pick(
                s,
                car_id=car.id,
                client_id=client.id,
                staff=master,
                kind=LineKind.GOODS,
                item="Колодки тормозные",
                catalogue_number="04465-12610",
                maker="TOYOTA",
                source=SelectionSource.OEM,
            )
            await s.commit()
        await bot.send(MASTER, "n123ap")
        card = screen(bot, MASTER)
        oem = card.button("OEM каталог")
        assert oem["url"] == "https://oem.example/catalog?vin=NMTBM28E80R058037"
        await bot.press(MASTER, card.button("История подборов")["callback_data"], card.message_id)

        text = seen(bot, MASTER)
        assert "История подборов (1)" in text and "Колодки тормозные [04465-12610]" in text
        assert "OEM каталог" in text and "oem" not in text  # the source in words, translated


async def test_a_shop_outside_russia_finds_phones_written_its_own_way(db_url):
    """settings' ``default_region`` reaches the search: a German shop types its clients'
    numbers with the trunk 0, as a whole or in part."""
    async with running_bot(db_url, default_region="DE") as bot:
        await bot.add_staff(MASTER, "Hans Meister", Role.MASTER)
        async with bot.app.session_factory() as s:
            await make_client(s, "Müller Hans", "+49 30 12345678")
            await s.commit()
        for typed in ("030 1234 5678", "030 12"):
            out = await bot.send(MASTER, typed)
            assert "Müller Hans" in out.text, typed
