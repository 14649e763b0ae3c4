"""``ccbot import``: clients and cars from CSV, on SQLite and PostgreSQL."""

from __future__ import annotations

import csv
from pathlib import Path

import pytest
from sqlalchemy import event, func, select
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker

from services.importer import ImportFailed, ImportReport, import_files, inn_problem
from services.search import Box, SearchService
from storage.models import (
    AuditLog,
    Car,
    CarRole,
    Client,
    ClientCar,
    ClientKind,
    ClientRelation,
    ContactInfo,
    ContactKind,
    DiscountCard,
    PriceType,
)

CLIENTS = (
    "id,name,kind,inn,phone,email,discount_card,price_type\n"
    "C1,Иван Петров,person,500100732259,8 945 123-10-10,ivan@example.ru,1001,Розничная\n"
    'C2,"ООО ""Ромашка""",company,7707083893,"+7 495 123-45-67; +7 916 000-11-22",'
    "office@romashka.ru,,wholesale\n"
    "C3,Анна Смирнова,физ,,89161234567,,1003,retail\n"
)
CARS = """\
id,client_id,make,model,body,plate,vin,body_number,year,mileage
A1,C1,TOYOTA,COROLLA,седан,А123ВС77,JTDBR32E720012345,,2008,120 000
A2,C2,NISSAN,NOTE,хэтчбек,Н456ОР199,,E11-123456,2010,
A3,C3,LADA,VESTA,,n123ap 77,XTA210990Y1234567,,2019,15000
"""
RU_CLIENTS = (
    "Код;Наименование;Вид контрагента;Юр./физ. лицо;ИНН;Основной телефон;"
    "Адрес электронной почты;Дисконтная карта;Тип цен\n"
    """\
000001;Сидоров Пётр;Покупатель;Физ. лицо;;+7 (945) 555-66-77;petr@mail.ru;2001;Розничная
000002;ИП Козлов;Покупатель;ИП;500100732259;8 (495) 765-43-21;;;Оптовая
"""
)
RU_CARS = """\
Код;Код владельца;Марка;Модель;Кузов;Гос. номер;VIN;Номер кузова;Год выпуска;Пробег
00-01;000001;TOYOTA;COROLLA;седан (_E12J_,_E12T_);К777ММ77;;NZE121-0123456;2003;250 000
00-02;000002;КАМАЗ;5490;тягач;Т001ТТ116;XTC549005K2512345;;2019;300000
"""


def write(path: Path, text: str, encoding: str = "utf-8") -> Path:
    path.write_bytes(text.encode(encoding))
    return path


async def run(
    factory: async_sessionmaker[AsyncSession],
    clients: Path,
    cars: Path | None = None,
    **kwargs: object,
) -> ImportReport:
    kwargs.setdefault("skip_bad", False)
    kwargs.setdefault("rejects_path", None)
    return await import_files(factory, clients, cars, **kwargs)  # type: ignore[arg-type]


async def count(session: AsyncSession, model: type) -> int:
    return int(await session.scalar(select(func.count()).select_from(model)) or 0)


async def client_by_ext(session: AsyncSession, ext: str) -> Client:
    client = await session.scalar(select(Client).where(Client.external_id == ext))
    assert client is not None, ext
    return client


async def test_import_clients_and_cars(
    session_factory: async_sessionmaker[AsyncSession], tmp_path: Path
) -> None:
    seen: list[tuple[str, int]] = []
    report = await run(
        session_factory,
        write(tmp_path / "clients.csv", CLIENTS),
        write(tmp_path / "cars.csv", CARS),
        progress=lambda label, n: seen.append((label, n)),
    )
    assert (report.clients.created, report.clients.updated, report.clients.rejected) == (3, 0, 0)
    assert (report.cars.created, report.cars.updated, report.cars.rejected) == (3, 0, 0)
    assert "clients: 3 created" in str(report) and "cars: 3 created" in str(report)
    assert ("clients", 3) in seen and ("cars", 3) in seen

    async with session_factory() as s:
        ivan = await client_by_ext(s, "C1")
        assert (ivan.name, ivan.kind, ivan.inn, ivan.main_phone) == (
            "Иван Петров",
            ClientKind.PERSON,
            "500100732259",
            "79451231010",
        )
        contacts = (
            await s.execute(
                select(ContactInfo.kind, ContactInfo.value)
                .where(ContactInfo.client_id == ivan.id)
                .order_by(ContactInfo.id)
            )
        ).all()
        assert contacts == [
            (ContactKind.MOBILE, "79451231010"),
            (ContactKind.EMAIL, "ivan@example.ru"),
        ]
        romashka = await client_by_ext(s, "C2")
        assert romashka.name == 'ООО "Ромашка"' and romashka.kind == ClientKind.COMPANY
        phones = (
            await s.execute(
                select(ContactInfo.kind, ContactInfo.value)
                .where(ContactInfo.client_id == romashka.id, ContactInfo.kind != "email")
                .order_by(ContactInfo.id)
            )
        ).all()
        # a Moscow landline is a "phone", a 916 number a "mobile"
        assert phones == [(ContactKind.PHONE, "74951234567"), (ContactKind.MOBILE, "79160001122")]
        assert romashka.main_phone == "74951234567"
        price_types = {pt.id: pt.code for pt in await s.scalars(select(PriceType))}
        assert sorted(price_types.values()) == ["retail", "wholesale"]
        assert price_types[romashka.price_type_id] == "wholesale"
        anna = await client_by_ext(s, "C3")
        assert price_types[anna.price_type_id] == "retail"  # "retail" and "Розничная" are one
        assert price_types[ivan.price_type_id] == "retail"
        card = await s.scalar(select(DiscountCard).where(DiscountCard.number == "1001"))
        assert card is not None and card.client_id == ivan.id

        corolla = await s.scalar(select(Car).where(Car.external_id == "A1"))
        assert corolla is not None
        assert (corolla.name, corolla.plate, corolla.vin, corolla.year, corolla.mileage) == (
            "TOYOTA, COROLLA седан",
            "А123ВС77",
            "JTDBR32E720012345",
            2008,
            120000,
        )
        vesta = await s.scalar(select(Car).where(Car.external_id == "A3"))
        assert vesta is not None and vesta.plate == "N123AP 77"  # as typed, upper case
        link = await s.scalar(select(ClientCar).where(ClientCar.car_id == corolla.id))
        assert link is not None and (link.client_id, link.role) == (ivan.id, CarRole.OWNER)


async def test_imported_records_are_searchable(
    session_factory: async_sessionmaker[AsyncSession], tmp_path: Path
) -> None:
    await run(
        session_factory,
        write(tmp_path / "clients.csv", CLIENTS),
        write(tmp_path / "cars.csv", CARS),
    )
    service = SearchService()
    async with session_factory() as s:
        # a Cyrillic plate typed in Latin letters
        result = await service.search(s, "a123bc77", box=Box.CAR)
        assert [c.plate for c in result.cars] == ["А123ВС77"]
        # a phone written the way people say it
        result = await service.search(s, "8 945 123-10-10", box=Box.CONTACT)
        assert [c.name for c in result.clients] == ["Иван Петров"]
        # the landline, the discount card, the VIN, the frame number
        result = await service.search(s, "+7 (495) 123-45-67", box=Box.CONTACT)
        assert [c.name for c in result.clients] == ['ООО "Ромашка"']
        result = await service.search(s, "1003", box=Box.CLIENT)
        assert [c.name for c in result.clients] == ["Анна Смирнова"]
        result = await service.search(s, "XTA210990Y1234567", box=Box.CAR)
        assert [c.plate for c in result.cars] == ["N123AP 77"]
        result = await service.search(s, "E11123456", box=Box.CAR)
        assert [c.plate for c in result.cars] == ["Н456ОР199"]


async def test_russian_headers_cp1251_and_semicolons(
    session_factory: async_sessionmaker[AsyncSession], tmp_path: Path
) -> None:
    clients = write(tmp_path / "контрагенты.csv", RU_CLIENTS, "cp1251")
    cars = write(tmp_path / "автомобили.csv", RU_CARS, "cp1251")
    report = await run(session_factory, clients, cars)
    assert (report.clients.created, report.cars.created) == (2, 2)
    async with session_factory() as s:
        petr = await client_by_ext(s, "000001")
        assert (petr.name, petr.kind, petr.relation, petr.main_phone) == (
            "Сидоров Пётр",
            ClientKind.PERSON,
            ClientRelation.BUYER,
            "79455556677",
        )
        kozlov = await client_by_ext(s, "000002")
        assert kozlov.kind == ClientKind.COMPANY and kozlov.inn == "500100732259"
        price_types = {pt.id: pt.name for pt in await s.scalars(select(PriceType))}
        assert price_types[kozlov.price_type_id] == "Оптовая"
        corolla = await s.scalar(select(Car).where(Car.external_id == "00-01"))
        assert corolla is not None
        assert corolla.name == "TOYOTA, COROLLA седан (_E12J_,_E12T_)"
        assert (corolla.body_number, corolla.plate, corolla.mileage) == (
            "NZE121-0123456",
            "К777ММ77",
            250000,
        )
        result = await SearchService().search(s, "k777mm", box=Box.CAR)
        assert [c.id for c in result.cars] == [corolla.id]


@pytest.mark.parametrize("encoding", ["utf-8", "utf-8-sig", "cp1251"])
@pytest.mark.parametrize("delimiter", [",", ";"])
async def test_encodings_and_delimiters(
    session_factory: async_sessionmaker[AsyncSession],
    tmp_path: Path,
    encoding: str,
    delimiter: str,
) -> None:
    text = (
        f"Код{delimiter}Наименование{delimiter}Телефон{delimiter}Email\r\n"
        f'7{delimiter}"Ёлкин{delimiter} Ёж"{delimiter}8 945 123-10-10{delimiter}yo@ёлки.рф\r\n'
    )
    report = await run(session_factory, write(tmp_path / "c.csv", text, encoding))
    assert report.clients.created == 1
    async with session_factory() as s:
        client = await client_by_ext(s, "7")
        assert client.name == f"Ёлкин{delimiter} Ёж"
        assert client.main_phone == "79451231010"
        emails = await s.scalars(select(ContactInfo.value).where(ContactInfo.kind == "email"))
        assert list(emails) == ["yo@ёлки.рф"]


async def test_bad_row_fails_everything(
    session_factory: async_sessionmaker[AsyncSession], tmp_path: Path
) -> None:
    clients = write(
        tmp_path / "clients.csv",
        CLIENTS
        + "C4,Плохой Телефон,person,,12-34,,,\n"
        + "C5,Плохой ИНН,company,7707083894,,,,\n"
        + "C6,Плохая почта,person,,,not-an-email,,\n",
    )
    cars = write(
        tmp_path / "cars.csv",
        CARS
        + "A4,C1,BMW,X5,,,WBA123,,2008,\n"
        + "A5,C1,BMW,X5,,,,,1899,-5\n"
        + "A6,NOBODY,BMW,X5,,,,,,\n",
    )
    with pytest.raises(ImportFailed) as failed:
        await run(session_factory, clients, cars)
    problems = failed.value.problems
    assert problems[0] == 'clients.csv:5: phone "12-34": wrong number of digits'
    assert problems[1] == 'clients.csv:6: inn "7707083894": wrong check digit'
    assert problems[2].startswith('clients.csv:7: email "not-an-email"')
    assert problems[3].startswith('cars.csv:5: vin "WBA123": must be 17 characters')
    assert problems[4].startswith('cars.csv:6: year "1899"') and 'mileage "-5"' in problems[4]
    assert problems[5] == (
        'cars.csv:7: client_id "NOBODY": no such client in clients.csv or in the database'
    )
    assert len(problems) == 6
    async with session_factory() as s:
        for model in (Client, Car, ContactInfo, DiscountCard, PriceType, AuditLog):
            assert await count(s, model) == 0, model


async def test_skip_bad_imports_the_rest_and_writes_rejects(
    session_factory: async_sessionmaker[AsyncSession], tmp_path: Path
) -> None:
    clients = write(
        tmp_path / "clients.csv",
        CLIENTS + "C4,Плохой Телефон,person,,12-34,,,\nC5,,person,,,,,\n",
    )
    cars = write(
        tmp_path / "cars.csv",
        CARS + "A4,C4,BMW,X5,,Е001КХ77,,,2008,\nA5,C1,BMW,X5,,,,,3000,\n",
    )
    rejects = tmp_path / "rejects.csv"
    report = await run(session_factory, clients, cars, skip_bad=True, rejects_path=rejects)
    assert (report.clients.created, report.clients.rejected) == (3, 2)
    assert (report.cars.created, report.cars.rejected) == (3, 2)
    assert f"4 rejected rows written to {rejects}" in str(report)
    assert report.problems[0] == 'clients.csv:5: phone "12-34": wrong number of digits'

    with rejects.open(encoding="utf-8-sig", newline="") as f:
        written = list(csv.DictReader(f))
    assert [(r["file"], r["line"]) for r in written] == [
        ("clients.csv", "5"),
        ("clients.csv", "6"),
        ("cars.csv", "5"),
        ("cars.csv", "6"),
    ]
    assert written[0]["name"] == "Плохой Телефон" and written[0]["phone"] == "12-34"
    assert written[1]["error"] == "name is empty"
    assert written[2]["plate"] == "Е001КХ77"
    assert written[2]["error"] == 'client_id "C4": that client was rejected (clients.csv:5)'
    assert written[3]["error"].startswith('year "3000"')
    assert not (tmp_path / "rejects.csv.tmp").exists()

    async with session_factory() as s:
        assert await count(s, Client) == 3
        assert await count(s, Car) == 3


async def test_importing_twice_updates_and_never_duplicates(
    session_factory: async_sessionmaker[AsyncSession], tmp_path: Path
) -> None:
    clients = write(tmp_path / "clients.csv", CLIENTS)
    cars = write(tmp_path / "cars.csv", CARS)
    await run(session_factory, clients, cars)

    async def totals() -> dict[str, int]:
        async with session_factory() as s:
            return {
                m.__name__: await count(s, m)
                for m in (Client, Car, ContactInfo, DiscountCard, ClientCar, PriceType)
            }

    before = await totals()
    again = await run(session_factory, clients, cars)
    assert (again.clients.created, again.clients.updated, again.clients.unchanged) == (0, 0, 3)
    assert (again.cars.created, again.cars.updated, again.cars.unchanged) == (0, 0, 3)
    assert await totals() == before

    # Changes are applied: a new name, the same phone written differently plus a new
    # one, the card moved to another client, a new plate and a second owner.
    write(
        clients,
        CLIENTS.replace("Иван Петров", "Иван Петрович Петров")
        .replace("8 945 123-10-10", '"+7 (945) 123-10-10, 8 999 111-22-33"')
        .replace(",1003,", ",1001,"),
    )
    write(cars, CARS.replace("А123ВС77", "А124ВС77") + "A1,C3,,,,,,,,,\n")
    # The card cannot stay with Ivan in the same file: give Ivan none.
    write(clients, clients.read_text().replace("ivan@example.ru,1001,", "ivan@example.ru,,"))
    third = await run(session_factory, clients, cars)
    assert (third.clients.created, third.clients.updated, third.clients.unchanged) == (0, 2, 1)
    assert (third.cars.created, third.cars.updated, third.cars.unchanged) == (0, 1, 2)
    after = await totals()
    assert after["ContactInfo"] == before["ContactInfo"] + 1
    assert after["ClientCar"] == before["ClientCar"] + 1
    assert after["Client"] == before["Client"] and after["Car"] == before["Car"]

    async with session_factory() as s:
        ivan = await client_by_ext(s, "C1")
        anna = await client_by_ext(s, "C3")
        assert ivan.name == "Иван Петрович Петров"
        assert ivan.main_phone == "79451231010"
        card = await s.scalar(select(DiscountCard).where(DiscountCard.number == "1001"))
        assert card is not None and card.client_id == anna.id
        corolla = await s.scalar(select(Car).where(Car.external_id == "A1"))
        assert corolla is not None and corolla.plate == "А124ВС77"
        owners = await s.scalars(select(ClientCar.client_id).where(ClientCar.car_id == corolla.id))
        assert sorted(owners) == sorted([ivan.id, anna.id])
        service = SearchService()
        # The moved card finds its new holder only; the old plate is gone.
        result = await service.search(s, "1001", box=Box.CLIENT)
        assert [c.id for c in result.clients] == [anna.id]
        assert not (await service.search(s, "A123BC77", box=Box.CAR)).cars
        result = await service.search(s, "89991112233", box=Box.CONTACT)
        assert [c.id for c in result.clients] == [ivan.id]

        async def changes(client: Client) -> list[object]:
            details = await s.scalars(
                select(AuditLog.details)
                .where(AuditLog.action == "import.client", AuditLog.entity_id == client.id)
                .order_by(AuditLog.id)
            )
            return [d.get("changed") for d in details if d is not None]

        assert await changes(ivan) == [None, ["contacts", "name"]]
        assert await changes(anna) == [None, ["cards"]]
        moved = await s.scalar(
            select(AuditLog.details)
            .where(AuditLog.action == "import.client", AuditLog.entity_id == anna.id)
            .order_by(AuditLog.id.desc())
            .limit(1)
        )
        assert moved is not None and moved["cards_taken_from"] == {"1001": ivan.id}


async def test_audit_rows(
    session_factory: async_sessionmaker[AsyncSession], tmp_path: Path
) -> None:
    await run(
        session_factory,
        write(tmp_path / "clients.csv", CLIENTS),
        write(tmp_path / "cars.csv", CARS),
    )
    async with session_factory() as s:
        rows = (await s.scalars(select(AuditLog).order_by(AuditLog.id))).all()
        by_action: dict[str, list[AuditLog]] = {}
        for row in rows:
            by_action.setdefault(row.action, []).append(row)
        assert len(by_action["import.client"]) == 3
        assert len(by_action["import.car"]) == 3
        ivan = await client_by_ext(s, "C1")
        first = next(r for r in by_action["import.client"] if r.entity_id == ivan.id)
        assert first.entity == "client"
        assert first.details == {"external_id": "C1", "file": "clients.csv", "line": 2}
        car_ids = set(await s.scalars(select(Car.id)))
        assert {r.entity_id for r in by_action["import.car"]} == car_ids
        (summary,) = by_action["import"]
        assert summary.details is not None
        assert summary.details["files"] == ["clients.csv", "cars.csv"]
        assert summary.details["clients"]["created"] == 3


async def test_missing_required_column(
    session_factory: async_sessionmaker[AsyncSession], tmp_path: Path
) -> None:
    clients = write(tmp_path / "clients.csv", "id,phone\n1,89451231010\n")
    with pytest.raises(ImportFailed) as failed:
        await run(session_factory, clients, skip_bad=True)
    assert failed.value.problems[0].startswith('clients.csv: missing column "name"')
    assert "Наименование" in failed.value.problems[0]

    cars = write(tmp_path / "cars.csv", "Код;Марка\n1;BMW\n")
    with pytest.raises(ImportFailed) as failed:
        await run(session_factory, write(tmp_path / "ok.csv", CLIENTS), cars)
    assert failed.value.problems == [
        'cars.csv: missing column "client_id" (accepted headers: client_id, owner_id, '
        "Владелец, Код владельца, Контрагент, Код контрагента, Клиент, Код клиента)"
    ]
    with pytest.raises(ImportFailed, match="no such file"):
        await run(session_factory, tmp_path / "nowhere.csv")
    async with session_factory() as s:
        assert await count(s, Client) == 0


async def test_broken_quotes_and_column_counts_are_reported(
    session_factory: async_sessionmaker[AsyncSession], tmp_path: Path
) -> None:
    text = (
        "id,name,phone\n"
        "1,Good One,89451231010\n"
        '2,"Broken "quote" here,89451231011\n'
        "3,Too,many,columns\n"
        "4,Too few\n"
        '5,"Never closed,89451231012\n'
        "6,Good Two,89451231013\n"
        '7,"Two\nlines",89451231014\n'
        "8,Trailing delimiter,89451231015,,\n"
        "\n"
        '9,"Stray ""end,89451231016\n'
    )
    clients = write(tmp_path / "clients.csv", text)
    with pytest.raises(ImportFailed) as failed:
        await run(session_factory, clients)
    assert failed.value.problems == [
        "clients.csv:3: unreadable: broken quotes",
        "clients.csv:4: expected 3 columns, found 4 (a delimiter inside an unquoted value?)",
        "clients.csv:5: expected 3 columns, found 2",
        "clients.csv:6: unreadable: broken quotes",
        "clients.csv:12: unreadable: broken quotes",
    ]
    rejects = tmp_path / "rejects.csv"
    report = await run(session_factory, clients, skip_bad=True, rejects_path=rejects)
    assert (report.clients.created, report.clients.rejected) == (4, 5)
    with rejects.open(encoding="utf-8-sig", newline="") as f:
        written = list(csv.DictReader(f))
    assert written[0]["raw"] == '2,"Broken "quote" here,89451231011'
    assert written[1]["name"] == "Too" and written[1]["raw"] == ""
    async with session_factory() as s:
        names = set(await s.scalars(select(Client.name)))
        assert names == {"Good One", "Good Two", "Two lines", "Trailing delimiter"}


async def test_values(session_factory: async_sessionmaker[AsyncSession], tmp_path: Path) -> None:
    text = (
        "id;name;kind;inn;phone\n"
        "1;ООО Вектор;;7707083893;\n"  # a 10-digit INN makes a company
        "2;Юрий;Физическое лицо;;\n"
        "3;Альфа;Юридическое лицо;;\n"
        "4;Бета;поставщик;;\n"
        "5;Гамма;непонятно;;\n"
    )
    with pytest.raises(ImportFailed) as failed:
        await run(session_factory, write(tmp_path / "c.csv", text))
    assert len(failed.value.problems) == 1
    assert failed.value.problems[0].startswith('c.csv:6: kind "непонятно": expected person')
    await run(session_factory, write(tmp_path / "c.csv", text), skip_bad=True)
    async with session_factory() as s:
        kinds = {c.external_id: (c.kind, c.relation) for c in await s.scalars(select(Client))}
    assert kinds == {
        "1": (ClientKind.COMPANY, ClientRelation.BUYER),
        "2": (ClientKind.PERSON, ClientRelation.BUYER),
        "3": (ClientKind.COMPANY, ClientRelation.BUYER),
        "4": (ClientKind.PERSON, ClientRelation.SUPPLIER),
    }


async def test_cars_of_clients_already_in_the_database(
    session_factory: async_sessionmaker[AsyncSession], tmp_path: Path
) -> None:
    await run(session_factory, write(tmp_path / "clients.csv", CLIENTS))
    other = write(tmp_path / "other.csv", "id,name\nC9,Новый\n")
    report = await run(session_factory, other, write(tmp_path / "cars.csv", CARS))
    assert (report.clients.created, report.cars.created) == (1, 3)
    async with session_factory() as s:
        assert await count(s, ClientCar) == 3


async def test_repeated_ids_and_cards_in_one_file(
    session_factory: async_sessionmaker[AsyncSession], tmp_path: Path
) -> None:
    text = "id,name,discount_card\n1,Первый,77\n2,Второй,77\n1,Снова первый,\n"
    with pytest.raises(ImportFailed) as failed:
        await run(session_factory, write(tmp_path / "c.csv", text))
    assert failed.value.problems == [
        'c.csv:3: discount card "77" is already given to client "1" (line 2)',
        'c.csv:4: id "1" repeats line 2',
    ]


async def test_a_car_on_several_rows_links_each_client(
    session_factory: async_sessionmaker[AsyncSession], tmp_path: Path
) -> None:
    cars = "id;client_id;role;make;model;plate;mileage\nA1;C1;владелец;LADA;;;1000\n"
    cars += "A1;C2;водитель;;GRANTA;;2000 км\n"
    await run(
        session_factory,
        write(tmp_path / "clients.csv", CLIENTS),
        write(tmp_path / "cars.csv", cars),
    )
    async with session_factory() as s:
        car = await s.scalar(select(Car).where(Car.external_id == "A1"))
        assert car is not None
        assert (car.name, car.model, car.mileage) == ("LADA, GRANTA", "GRANTA", 2000)
        links = (
            await s.execute(
                select(Client.external_id, ClientCar.role)
                .join(ClientCar, ClientCar.client_id == Client.id)
                .where(ClientCar.car_id == car.id)
                .order_by(Client.external_id)
            )
        ).all()
        assert links == [("C1", CarRole.OWNER), ("C2", CarRole.DRIVER)]


async def test_empty_cells_keep_stored_values(
    session_factory: async_sessionmaker[AsyncSession], tmp_path: Path
) -> None:
    clients = write(tmp_path / "clients.csv", CLIENTS)
    await run(session_factory, clients)
    write(clients, "id,name,inn,phone,email\nC1,Иван Петров,,,\n")
    report = await run(session_factory, clients)
    assert (report.clients.updated, report.clients.unchanged) == (0, 1)
    async with session_factory() as s:
        ivan = await client_by_ext(s, "C1")
        assert (ivan.inn, ivan.main_phone) == ("500100732259", "79451231010")
        assert await count(s, ContactInfo) == 6


async def test_file_level_problems(
    session_factory: async_sessionmaker[AsyncSession], tmp_path: Path
) -> None:
    # Excel's "sep=" line names the delimiter
    report = await run(
        session_factory, write(tmp_path / "sep.csv", "sep=;\nid;name\nS1;Имя, Фамилия\n")
    )
    assert report.clients.created == 1
    with pytest.raises(ImportFailed, match="UTF-16"):
        await run(session_factory, write(tmp_path / "u16.csv", "id,name\n1,A\n", "utf-16"))
    with pytest.raises(ImportFailed, match="empty"):
        await run(session_factory, write(tmp_path / "empty.csv", "\n\n"))
    bad = write(tmp_path / "clients.csv", CLIENTS + "C4,,,,,,,\n")
    with pytest.raises(ImportFailed, match="folder for the rejected rows does not exist"):
        await run(
            session_factory, bad, skip_bad=True, rejects_path=tmp_path / "no" / "rejects.csv"
        )
    with pytest.raises(ImportFailed, match="would overwrite an input file"):
        await run(session_factory, bad, skip_bad=True, rejects_path=bad)
    async with session_factory() as s:
        assert set(await s.scalars(select(Client.external_id))) == {"S1"}


async def test_statements_grow_with_chunks_not_rows(
    engine: AsyncEngine, session_factory: async_sessionmaker[AsyncSession], tmp_path: Path
) -> None:
    """Thousands of rows are written with a few dozen statements (batched lookups and
    bulk inserts), not one or more per row."""
    n = 2500
    clients = "id,name,phone,email,discount_card\n" + "".join(
        f"C{i},Клиент {i},+7 916 {i:07d},c{i}@example.ru,{100000 + i}\n" for i in range(n)
    )
    cars = "id,client_id,make,plate\n" + "".join(
        f"A{i},C{i},LADA,А{i:03d}ВС77\n" for i in range(n)
    )
    statements = 0

    def count_statement(*_args: object) -> None:
        nonlocal statements
        statements += 1

    event.listen(engine.sync_engine, "before_cursor_execute", count_statement)
    try:
        report = await run(
            session_factory,
            write(tmp_path / "clients.csv", clients),
            write(tmp_path / "cars.csv", cars),
        )
    finally:
        event.remove(engine.sync_engine, "before_cursor_execute", count_statement)
    assert (report.clients.created, report.cars.created) == (n, n)
    assert statements < 100, statements
    async with session_factory() as s:
        result = await SearchService().search(s, "+7 916 000-24-99", box=Box.CONTACT)
        assert [c.name for c in result.clients] == ["Клиент 2499"]


def test_inn_checksum() -> None:
    assert inn_problem("7707083893") is None
    assert inn_problem("500100732259") is None
    assert inn_problem("7707083894") == "wrong check digit"
    assert inn_problem("500100732250") == "wrong check digit"
    assert inn_problem("12345") == "must be 10 or 12 digits"


def test_cli_import(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    from bot.cli import main

    monkeypatch.chdir(tmp_path)  # no stray .env
    monkeypatch.setenv("DATABASE_URL", f"sqlite+aiosqlite:///{tmp_path / 'cli.sqlite3'}")
    clients = write(tmp_path / "clients.csv", CLIENTS + "C4,Плохой,person,,12-34,,,\n")
    cars = write(tmp_path / "cars.csv", CARS)

    assert main(["import", str(clients), str(cars)]) == 1
    err = capsys.readouterr().err
    assert 'ccbot import: clients.csv:5: phone "12-34": wrong number of digits' in err
    assert "nothing was imported" in err

    assert main(["import", str(clients), str(cars), "--skip-bad"]) == 0
    out = capsys.readouterr().out
    assert "clients: 3 created, 0 updated, 0 unchanged, 1 rejected" in out
    assert "cars: 3 created" in out
    assert (tmp_path / "clients.rejects.csv").exists()

    assert main(["search", "a123bc77"]) == 0
    assert "А123ВС77" in capsys.readouterr().out
