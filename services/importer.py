"""``ccbot import``: clients and cars from CSV files (an export of 1C or a spreadsheet).

The whole import is one write transaction. Every row is read and checked before anything
is written, so that by default one bad row fails the import with every problem listed
(``file:line: reason``) and nothing is committed; with ``skip_bad`` the good rows are
imported and the bad ones written aside with their reasons.

Records are matched by the CSV id (``external_id``): importing the same file twice updates
and never duplicates. An empty cell leaves the stored value as it is; phones, e-mails and
addresses are merged into the client's contacts (a value already there is not added again);
discount cards are created or moved to the client; client-car links are added or get the
role of the file. See ``docs/import.md`` for the columns.
"""

from __future__ import annotations

import os
import re
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from datetime import date
from pathlib import Path
from typing import Any, TypeVar, cast

import phonenumbers
from sqlalchemy import Insert, Table, insert, select, text, update
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from services import audit, contacts
from services.csv_import import (
    Column,
    CsvTable,
    ImportFailed,
    PriceTypes,
    Record,
    Rejects,
    check_rejects_path,
    fold,
    read_table,
    write_rejects,
)
from services.normalize import (
    VIN_RE,
    InvalidPhone,
    car_terms,
    client_terms,
    normalize_code,
    normalize_email,
    normalize_name,
    parse_phone,
)
from storage import search_index
from storage.db import write_transaction
from storage.models import (
    AuditLog,
    Base,
    Car,
    CarRole,
    Client,
    ClientCar,
    ClientKind,
    ClientRelation,
    ContactInfo,
    ContactKind,
    DiscountCard,
    SearchTerm,
    utcnow,
)

CHUNK = 2000  # records written per batch of statements; also the size of the id lookups
Progress = Callable[[str, int], None]
T = TypeVar("T")


@dataclass(slots=True)
class Counts:
    created: int = 0
    updated: int = 0
    unchanged: int = 0
    rejected: int = 0

    def __str__(self) -> str:
        return (
            f"{self.created} created, {self.updated} updated, {self.unchanged} unchanged, "
            f"{self.rejected} rejected"
        )


@dataclass(slots=True)
class ImportReport:
    clients: Counts = field(default_factory=Counts)
    cars: Counts = field(default_factory=Counts)
    rejects_path: Path | None = None
    with_cars: bool = False  # a cars file was given
    # Every rejected row as ``file:line: reason`` (empty unless skip_bad).
    problems: list[str] = field(default_factory=list)

    @property
    def rejected(self) -> int:
        return self.clients.rejected + self.cars.rejected

    def __str__(self) -> str:
        lines = [f"clients: {self.clients}"]
        if self.with_cars:
            lines.append(f"cars: {self.cars}")
        rows = f"{self.rejected} rejected row" + ("" if self.rejected == 1 else "s")
        if self.rejected and self.rejects_path is not None:
            lines.append(f"{rows} written to {self.rejects_path}")
        elif self.rejected:
            lines.append(f"{rows} not written anywhere (no rejects file given)")
        return "\n".join(lines)


# --- columns ------------------------------------------------------------------------


CLIENT_COLUMNS = (
    Column("id", ("id", "external_id", "Код", "Код контрагента"), required=True),
    Column("name", ("name", "Наименование", "ФИО", "Полное наименование"), required=True),
    Column(
        "kind",
        (
            "kind",
            "relation",
            "Вид контрагента",
            "Вид",
            "Юр./физ. лицо",
            "Физ./юр. лицо",
            "Юр. лицо / физ. лицо",
            "Тип контрагента",
        ),
        many=True,
    ),
    Column("inn", ("inn", "ИНН")),
    Column(
        "phone",
        (
            "phone",
            "phones",
            "mobile",
            "Телефон",
            "Телефоны",
            "Основной телефон",
            "Мобильный телефон",
        ),
        many=True,
    ),
    Column(
        "email",
        ("email", "e-mail", "Электронная почта", "Адрес электронной почты", "Почта"),
        many=True,
    ),
    Column("address", ("address", "Адрес", "Фактический адрес"), many=True),
    Column(
        "discount_card",
        ("discount_card", "card", "Дисконтная карта", "Дисконтные карты", "Номер карты"),
    ),
    Column("price_type", ("price_type", "Тип цен", "Вид цен")),
)
CAR_COLUMNS = (
    Column("id", ("id", "external_id", "Код"), required=True),
    Column(
        "client_id",
        (
            "client_id",
            "owner_id",
            "Владелец",
            "Код владельца",
            "Контрагент",
            "Код контрагента",
            "Клиент",
            "Код клиента",
        ),
        required=True,
    ),
    Column("role", ("role", "Роль")),
    Column("name", ("name", "Наименование", "Автомобиль")),
    Column("make", ("make", "brand", "Марка")),
    Column("model", ("model", "Модель")),
    Column("body", ("body", "Кузов", "Тип кузова")),
    Column("configuration", ("configuration", "Комплектация")),
    Column("plate", ("plate", "Гос. номер", "Госномер", "Государственный номер")),
    Column("vin", ("vin", "VIN-код")),
    Column("body_number", ("body_number", "frame_number", "Номер кузова", "Номер рамы")),
    Column("year", ("year", "Год выпуска", "Год")),
    Column("mileage", ("mileage", "odometer", "Пробег")),
)

# --- checking values ----------------------------------------------------------------


_PERSON = {
    "person",
    "individual",
    "private",
    "физ",
    "физлицо",
    "физическоелицо",
    "фл",
    "частноелицо",
}
_COMPANY = {
    "company",
    "organization",
    "organisation",
    "legal",
    "business",
    "юр",
    "юрлицо",
    "юридическоелицо",
    "юл",
    "организация",
    "ип",
    "индивидуальныйпредприниматель",
    "entrepreneur",
}
_BUYER = {
    "buyer",
    "customer",
    "покупатель",
    "клиент",
    "покупательипоставщик",
    "поставщикипокупатель",
}
_SUPPLIER = {"supplier", "vendor", "поставщик"}
_OTHER = {"other", "прочее", "прочие", "другое"}
_OWNER = {"owner", "владелец", "собственник"}
_DRIVER = {"driver", "водитель"}

_SPLIT = re.compile(r"[;,]")
_INTEGER = re.compile(r"^\d+(?:[.,]0+)?$")
_NUMBER_SPACES = re.compile(r"[\s\u00a0\u202f\u2009']+")
_MILEAGE_UNIT = re.compile(r"(км|km)\.?$", re.IGNORECASE)
_INN_10 = (2, 4, 10, 3, 5, 9, 4, 6, 8)
_INN_11 = (7, 2, 4, 10, 3, 5, 9, 4, 6, 8)
_INN_12 = (3, 7, 2, 4, 10, 3, 5, 9, 4, 6, 8)
_MOBILE_TYPES = {
    phonenumbers.PhoneNumberType.MOBILE,
    phonenumbers.PhoneNumberType.FIXED_LINE_OR_MOBILE,
}


def _inn_digit(digits: str, weights: tuple[int, ...]) -> int:
    return sum(int(d) * w for d, w in zip(digits, weights, strict=False)) % 11 % 10


def inn_problem(inn: str) -> str | None:
    """Why ``inn`` (digits) is not a valid Russian INN, or None when it is."""
    if not inn.isdigit() or not inn.isascii() or len(inn) not in (10, 12):
        return "must be 10 or 12 digits"
    if len(inn) == 10:
        ok = _inn_digit(inn, _INN_10) == int(inn[9])
    else:
        ok = _inn_digit(inn, _INN_11) == int(inn[10]) and _inn_digit(inn, _INN_12) == int(inn[11])
    return None if ok else "wrong check digit"


def _phone_kind(digits: str) -> ContactKind:
    if digits.startswith("79"):
        return ContactKind.MOBILE  # every valid Russian +7 9xx number is a mobile one
    number = phonenumbers.parse("+" + digits, None)
    return (
        ContactKind.MOBILE
        if phonenumbers.number_type(number) in _MOBILE_TYPES
        else (ContactKind.PHONE)
    )


def _integer(text: str) -> int | None:
    compact = _NUMBER_SPACES.sub("", text)
    return int(re.split(r"[.,]", compact)[0]) if _INTEGER.match(compact) else None


def _too_long(errors: list[str], label: str, value: str | None, limit: int) -> None:
    if value is not None and len(value) > limit:
        errors.append(f"{label} is longer than {limit} characters")


@dataclass(slots=True)
class _ClientRow:
    line: int
    external_id: str
    name: str
    kind: ClientKind | None
    relation: ClientRelation | None
    inn: str | None
    phones: list[tuple[str, ContactKind]]
    emails: list[str]
    addresses: list[str]
    cards: list[str]
    price_type: str | None


@dataclass(slots=True)
class _CarRow:
    line: int
    external_id: str
    client_id: str
    role: CarRole
    name: str | None
    make: str | None
    model: str | None
    body: str | None
    configuration: str | None
    vin: str | None
    body_number: str | None
    plate: str | None
    year: int | None
    mileage: int | None


def _check_client(t: CsvTable, values: list[str], line: int, region: str) -> _ClientRow | str:
    errors: list[str] = []
    external_id = t.one(values, "id")
    if not external_id:
        errors.append("id is empty")
    _too_long(errors, "id", external_id, 64)
    name = " ".join(t.one(values, "name").split())
    if not name:
        errors.append("name is empty")
    _too_long(errors, "name", name, 300)

    kind: ClientKind | None = None
    relation: ClientRelation | None = None
    for raw in t.many(values, "kind"):
        word = fold(raw)
        if word in _PERSON:
            kind = ClientKind.PERSON
        elif word in _COMPANY:
            kind = ClientKind.COMPANY
        elif word in _BUYER:
            relation = ClientRelation.BUYER
        elif word in _SUPPLIER:
            relation = ClientRelation.SUPPLIER
        elif word in _OTHER:
            relation = ClientRelation.OTHER
        else:
            errors.append(
                f'kind "{raw}": expected person/company (физ. лицо, юр. лицо, ИП) '
                "or buyer/supplier/other (покупатель, поставщик, прочее)"
            )

    inn = _NUMBER_SPACES.sub("", t.one(values, "inn")) or None
    if inn is not None and (why := inn_problem(inn)):
        errors.append(f'inn "{inn}": {why}')
    if kind is None and inn is not None and len(inn) == 10:
        kind = ClientKind.COMPANY  # a 10-digit INN is an organisation's

    phones: list[tuple[str, ContactKind]] = []
    for cell in t.many(values, "phone"):
        for part in _SPLIT.split(cell):
            if not (part := part.strip()):
                continue
            try:
                digits = parse_phone(part, region)
            except InvalidPhone as exc:
                errors.append(f'phone "{part}": {exc}')
                continue
            if all(digits != p for p, _ in phones):
                phones.append((digits, _phone_kind(digits)))

    emails: list[str] = []
    for cell in t.many(values, "email"):
        for part in _SPLIT.split(cell):
            if not (part := part.strip()):
                continue
            try:
                email = contacts.normalize_value(ContactKind.EMAIL, part)
            except contacts.InvalidContact as exc:
                errors.append(f'email "{part}": {exc.detail or exc.problem.value}')
                continue
            if all(normalize_email(email) != normalize_email(e) for e in emails):
                emails.append(email)

    addresses: list[str] = []
    for cell in t.many(values, "address"):
        try:
            addresses.append(contacts.normalize_value(ContactKind.ADDRESS, cell))
        except contacts.InvalidContact as exc:
            errors.append(f'address "{cell[:40]}": {exc.detail or exc.problem.value}')

    cards: list[str] = []
    for part in _SPLIT.split(t.one(values, "discount_card")):
        if (part := part.strip()) and part not in cards:
            _too_long(errors, f'discount card "{part[:20]}"', part, 40)
            cards.append(part)

    price_type = t.one(values, "price_type") or None
    _too_long(errors, "price type", price_type, 100)

    if any("\x00" in v for v in values):
        errors.append("contains a NUL character")
    if errors:
        return "; ".join(errors)
    return _ClientRow(
        line,
        external_id,
        name,
        kind,
        relation,
        inn,
        phones,
        emails,
        addresses,
        cards,
        price_type,
    )


def _check_car(t: CsvTable, values: list[str], line: int) -> _CarRow | str:
    errors: list[str] = []
    external_id = t.one(values, "id")
    if not external_id:
        errors.append("id is empty")
    _too_long(errors, "id", external_id, 64)
    client_id = t.one(values, "client_id")
    if not client_id:
        errors.append("client_id is empty")

    role = CarRole.OWNER
    if raw_role := t.one(values, "role"):
        if fold(raw_role) in _DRIVER:
            role = CarRole.DRIVER
        elif fold(raw_role) not in _OWNER:
            errors.append(f'role "{raw_role}": expected owner or driver (владелец, водитель)')

    texts: dict[str, str | None] = {}
    for name, limit in (
        ("name", 300),
        ("make", 100),
        ("model", 100),
        ("body", 200),
        ("configuration", 200),
        ("body_number", 40),
    ):
        value = " ".join(t.one(values, name).split()) or None
        _too_long(errors, name, value, limit)
        texts[name] = value

    plate = " ".join(t.one(values, "plate").split()).upper() or None
    _too_long(errors, "plate", plate, 20)

    vin = None
    if raw_vin := t.one(values, "vin"):
        vin = normalize_code(raw_vin)
        if not VIN_RE.match(vin):
            errors.append(f'vin "{raw_vin}": must be 17 characters of A-Z and 0-9 without I, O, Q')

    year = None
    if raw_year := t.one(values, "year"):
        year = _integer(raw_year)
        last = date.today().year + 1
        if year is None or not 1900 <= year <= last:
            errors.append(f'year "{raw_year}": must be a year from 1900 to {last}')

    mileage = None
    if raw_mileage := t.one(values, "mileage"):
        mileage = _integer(_MILEAGE_UNIT.sub("", raw_mileage.strip()))
        if mileage is None or mileage > 100_000_000:
            errors.append(f'mileage "{raw_mileage}": must be a whole number of kilometres')

    if any("\x00" in v for v in values):
        errors.append("contains a NUL character")
    if errors:
        return "; ".join(errors)
    return _CarRow(
        line,
        external_id,
        client_id,
        role,
        texts["name"],
        texts["make"],
        texts["model"],
        texts["body"],
        texts["configuration"],
        vin,
        texts["body_number"],
        plate,
        year,
        mileage,
    )


def _compose_name(make: str | None, model: str | None, body: str | None) -> str | None:
    """«Наименование» as 1C makes it: ``TOYOTA, COROLLA седан``."""
    rest = " ".join(p for p in (model, body) if p)
    name = ", ".join(p for p in (make, rest) if p)
    return name[:300] or None


# --- rows ---------------------------------------------------------------------------


class _Rows(Rejects):
    """The checked rows of both files and the rejected ones."""

    def __init__(self) -> None:
        super().__init__()
        self.clients: list[_ClientRow] = []
        self.cars: list[_CarRow] = []
        self.car_records: dict[int, Record] = {}  # line -> the record, for rejecting


# --- the import ---------------------------------------------------------------------


async def _fresh_plans(session: AsyncSession, on: bool) -> None:
    """PostgreSQL: plan each statement for its values (``on``) or let it reuse plans.

    The batched lookups (``IN`` lists of a chunk of ids) must be planned afresh: a generic
    plan made while a table was still empty would scan the whole table for every chunk.
    The bulk inserts are better off with reusable plans (and so are the foreign key
    checks they run for every row)."""
    if session.get_bind().dialect.name == "postgresql":
        mode = "force_custom_plan" if on else "auto"
        await session.execute(text(f"SET LOCAL plan_cache_mode = {mode}"))


def _bulk_insert(model: type[Base]) -> Insert:
    """A Core INSERT of ``model``'s table: one executemany, without the ORM's per-row work
    (on SQLite the ORM would send one INSERT ... RETURNING per row)."""
    return insert(cast(Table, model.__table__))


def _chunks(items: Sequence[T], size: int = CHUNK) -> Iterator[Sequence[T]]:
    for start in range(0, len(items), size):
        yield items[start : start + size]


async def import_files(
    factory: async_sessionmaker[AsyncSession],
    clients_csv: Path,
    cars_csv: Path | None,
    *,
    skip_bad: bool,
    rejects_path: Path | None,
    region: str = "RU",
    progress: Progress | None = None,
) -> ImportReport:
    """Import clients (and their cars) from CSV files in one transaction.

    Raises :class:`ImportFailed` when a file cannot be read or lacks a required column,
    and, unless ``skip_bad``, when any row is bad; nothing is committed then.
    """
    tick = progress or (lambda _label, _count: None)
    if skip_bad and rejects_path is not None:
        check_rejects_path(rejects_path, clients_csv, cars_csv)
    clients_table = read_table(clients_csv, CLIENT_COLUMNS)
    cars_table = read_table(cars_csv, CAR_COLUMNS) if cars_csv is not None else None

    rows = _Rows()
    client_lines: dict[str, int] = {}
    card_holders: dict[str, str] = {}
    for record, values in rows.values(clients_table):
        checked = _check_client(clients_table, values, record.line, region)
        if isinstance(checked, str):
            rows.reject(clients_table, record, checked)
            continue
        if (first := client_lines.get(checked.external_id)) is not None:
            rows.reject(clients_table, record, f'id "{checked.external_id}" repeats line {first}')
            continue
        mine = checked.external_id
        taken = [c for c in checked.cards if card_holders.get(c, mine) != mine]
        if taken:
            holder = card_holders[taken[0]]
            rows.reject(
                clients_table,
                record,
                f'discount card "{taken[0]}" is already given to client "{holder}" '
                f"(line {client_lines[holder]})",
            )
            continue
        client_lines[checked.external_id] = record.line
        card_holders.update(dict.fromkeys(checked.cards, checked.external_id))
        rows.clients.append(checked)
    if cars_table is not None:
        for record, values in rows.values(cars_table):
            checked_car = _check_car(cars_table, values, record.line)
            if isinstance(checked_car, str):
                rows.reject(cars_table, record, checked_car)
            else:
                rows.cars.append(checked_car)
                rows.car_records[checked_car.line] = record
    tick("checked", len(rows.clients) + len(rows.cars) + len(rows.rejects))

    report = ImportReport(with_cars=cars_table is not None)
    temp = rejects_path.with_name(rejects_path.name + ".tmp") if rejects_path else None
    try:
        async with write_transaction(factory) as session:
            good_cars = await _check_owners(session, rows, clients_table, cars_table, client_lines)
            report.clients.rejected = sum(r.table is clients_table for r in rows.rejects)
            report.cars.rejected = len(rows.rejects) - report.clients.rejected
            rows.rejects.sort(key=lambda r: (r.table is not clients_table, r.record.line))
            problems = [r.message for r in rows.rejects]
            if problems and not skip_bad:
                raise ImportFailed(problems)
            report.problems = problems

            ids = await _write_clients(session, rows.clients, clients_table.name, report, tick)
            if cars_table is not None:
                ids.update(
                    await _client_ids(session, {c.client_id for c in good_cars} - ids.keys())
                )
                await _write_cars(session, good_cars, ids, cars_table.name, report, tick)
            audit.record(
                session,
                "import",
                details={
                    "files": [p.name for p in (clients_csv, cars_csv) if p is not None],
                    "clients": _counts(report.clients),
                    "cars": _counts(report.cars),
                },
            )
            if rows.rejects and temp is not None:
                # Written before the commit, so that a rejects file that cannot be written
                # leaves the database as it was; put in place once the commit succeeded.
                try:
                    write_rejects(temp, rows.rejects)
                except OSError as exc:
                    raise ImportFailed(
                        [f"{rejects_path}: cannot write the rejected rows ({exc.strerror})"]
                    ) from None
                report.rejects_path = rejects_path
    except BaseException:
        if temp is not None:
            temp.unlink(missing_ok=True)
        raise
    if report.rejects_path is not None and temp is not None:
        os.replace(temp, report.rejects_path)
    return report


async def _check_owners(
    session: AsyncSession,
    rows: _Rows,
    clients_table: CsvTable,
    cars_table: CsvTable | None,
    client_lines: dict[str, int],
) -> list[_CarRow]:
    """The cars whose client is in the clients file or already in the database; the
    others are rejected."""
    if cars_table is None or not rows.cars:
        return rows.cars
    known = await _client_ids(session, {c.client_id for c in rows.cars} - client_lines.keys())
    rejected_ids: dict[str, int] = {}
    id_pos = clients_table.columns["id"][0]
    for r in rows.rejects:
        if r.table is clients_table and r.record.values and id_pos < len(r.record.values):
            rejected_ids.setdefault(r.record.values[id_pos].strip(), r.record.line)
    good: list[_CarRow] = []
    for car in rows.cars:
        if car.client_id in client_lines or car.client_id in known:
            good.append(car)
            continue
        if car.client_id in rejected_ids:
            why = (
                f'client_id "{car.client_id}": that client was rejected '
                f"({clients_table.name}:{rejected_ids[car.client_id]})"
            )
        else:
            why = (
                f'client_id "{car.client_id}": no such client in {clients_table.name} '
                "or in the database"
            )
        rows.reject(cars_table, rows.car_records[car.line], why)
    return good


def _counts(counts: Counts) -> dict[str, int]:
    return {
        "created": counts.created,
        "updated": counts.updated,
        "unchanged": counts.unchanged,
        "rejected": counts.rejected,
    }


async def _client_ids(session: AsyncSession, external_ids: Iterable[str]) -> dict[str, int]:
    found: dict[str, int] = {}
    await _fresh_plans(session, True)
    for chunk in _chunks(sorted(external_ids)):
        result = await session.execute(
            select(Client.external_id, Client.id).where(Client.external_id.in_(chunk))
        )
        found.update({ext: cid for ext, cid in result if ext is not None})
    return found


def _audit_row(action: str, entity: str, entity_id: int, details: dict[str, Any]) -> dict:
    """An audit row as ``audit.record`` makes it, for a bulk insert."""
    return {
        "at": utcnow(),
        "actor_staff_id": None,
        "actor_telegram_id": None,
        "action": action,
        "entity": entity,
        "entity_id": entity_id,
        "details": audit.redact(details),
    }


def _details(external_id: str, file_name: str, line: int, changed: list[str] | None) -> dict:
    details: dict[str, Any] = {"external_id": external_id, "file": file_name, "line": line}
    if changed:
        details["changed"] = sorted(set(changed))
    return details


async def _ids_of(session: AsyncSession, model: type[Client] | type[Car], exts: list[str]) -> dict:
    result = await session.execute(
        select(model.external_id, model.id).where(model.external_id.in_(exts))
    )
    return {ext: oid for ext, oid in result}


_CLIENT_FIELDS = ("name", "kind", "relation", "inn", "main_phone", "price_type_id")


async def _write_clients(
    session: AsyncSession,
    rows: list[_ClientRow],
    file_name: str,
    report: ImportReport,
    tick: Progress,
) -> dict[str, int]:
    """Bulk statements per chunk (the ORM's one INSERT per row with RETURNING is what
    SQLite would get otherwise); search terms are refreshed for every client touched."""
    ids: dict[str, int] = {}
    price_types = PriceTypes()
    done = 0
    for chunk in _chunks(rows):
        await _fresh_plans(session, True)
        exts = [r.external_id for r in chunk]
        cols = [getattr(Client, f) for f in _CLIENT_FIELDS]
        old: dict[str, dict[str, Any]] = {
            r.external_id: dict(r._mapping)
            for r in await session.execute(
                select(Client.id, Client.external_id, *cols).where(Client.external_id.in_(exts))
            )
        }
        stored_contacts: dict[int, list[tuple[str, str]]] = {}
        if old:
            for cid, kind, value in await session.execute(
                select(ContactInfo.client_id, ContactInfo.kind, ContactInfo.value).where(
                    ContactInfo.client_id.in_([o["id"] for o in old.values()])
                )
            ):
                stored_contacts.setdefault(cid, []).append((str(kind), value))
        numbers = sorted({n for r in chunk for n in r.cards})
        cards: dict[str, tuple[int | None, int | None]] = {}
        if numbers:
            for number, known_id, known_holder in await session.execute(
                select(DiscountCard.number, DiscountCard.id, DiscountCard.client_id).where(
                    DiscountCard.number.in_(numbers)
                )
            ):
                cards[number] = (known_id, known_holder)
        price_type_ids = {
            text: await price_types.id_for(session, text)
            for text in sorted({r.price_type for r in chunk if r.price_type})
        }

        now = utcnow()
        fresh = [r for r in chunk if r.external_id not in old]
        if fresh:
            await _fresh_plans(session, False)
            await session.execute(
                insert(Client),
                [
                    {
                        "external_id": r.external_id,
                        "name": r.name,
                        "kind": r.kind or ClientKind.PERSON,
                        "relation": r.relation or ClientRelation.BUYER,
                        "inn": r.inn,
                        "main_phone": r.phones[0][0] if r.phones else None,
                        "price_type_id": price_type_ids.get(r.price_type or ""),
                        "created_at": now,
                        "updated_at": now,
                        "last_activity_at": now,
                    }
                    for r in fresh
                ],
            )
            await _fresh_plans(session, True)
            ids.update(await _ids_of(session, Client, [r.external_id for r in fresh]))

        updates: list[dict[str, Any]] = []
        new_contacts: list[dict[str, Any]] = []
        new_cards: list[dict[str, Any]] = []
        moved_cards: list[dict[str, Any]] = []
        touched: set[int] = set()
        terms: list[dict[str, Any]] = []
        audit_rows: list[dict[str, Any]] = []
        for row in chunk:
            before = old.get(row.external_id)
            changed: list[str] | None = None
            if before is not None:
                cid = ids[row.external_id] = before["id"]
                wanted = {
                    "name": row.name,
                    "kind": row.kind,
                    "relation": row.relation,
                    "inn": row.inn,
                    "main_phone": row.phones[0][0] if row.phones else None,
                    "price_type_id": price_type_ids.get(row.price_type or ""),
                }
                changed = [f for f, v in wanted.items() if v is not None and before[f] != v]
                if changed:
                    after = {f: before[f] if v is None else v for f, v in wanted.items()}
                    updates.append({"id": cid, **after, "updated_at": now})
            else:
                cid = ids[row.external_id]
            added = _new_contacts(cid, stored_contacts.get(cid, []), row)
            new_contacts.extend(added)
            if added and changed is not None:
                changed.append("contacts")
            taken_from: dict[str, int] = {}  # card number -> its former holder
            for number in row.cards:
                card_id, holder = cards.get(number, (None, None))
                if number not in cards:
                    new_cards.append(
                        {"number": number, "client_id": cid, "discount_bp": 0, "active": True}
                    )
                elif holder != cid and card_id is not None:
                    # Moved from its former holder (or given, if it had none).
                    moved_cards.append({"id": card_id, "client_id": cid})
                    if holder is not None:
                        touched.add(holder)
                        taken_from[number] = holder
                else:
                    continue
                cards[number] = (card_id, cid)
                if changed is not None:
                    changed.append("cards")
            if changed is None:
                report.clients.created += 1
                found_by = client_terms(row.name, row.inn, row.cards, _contact_values(row))
                terms.extend(search_index.term_rows("client", cid, found_by))
            elif changed:
                report.clients.updated += 1
            else:
                report.clients.unchanged += 1
                continue
            if changed:
                touched.add(cid)
            details = _details(row.external_id, file_name, row.line, changed)
            if taken_from:
                # The former holders lose a card: say whose it was.
                details["cards_taken_from"] = taken_from
            audit_rows.append(_audit_row("import.client", "client", cid, details))
        await _fresh_plans(session, False)
        if updates:
            await session.execute(update(Client), updates)
        if new_contacts:
            await session.execute(_bulk_insert(ContactInfo), new_contacts)
        if new_cards:
            await session.execute(_bulk_insert(DiscountCard), new_cards)
        if moved_cards:
            await session.execute(update(DiscountCard), moved_cards)
        if audit_rows:
            await session.execute(_bulk_insert(AuditLog), audit_rows)
        # Bulk statements pass the flush hook by: new clients get their search terms
        # here, changed ones (the cards' former holders too) have theirs rewritten.
        if terms:
            await session.execute(_bulk_insert(SearchTerm), terms)
        if touched:
            await _fresh_plans(session, True)
            await session.run_sync(search_index.refresh, touched, set())
        done += len(chunk)
        tick("clients", done)
    return ids


def _contact_values(row: _ClientRow) -> list[tuple[str, str]]:
    """The row's contacts as (kind, value) pairs, as they are stored."""
    return (
        [(str(kind), digits) for digits, kind in row.phones]
        + [(str(ContactKind.EMAIL), e) for e in row.emails]
        + [(str(ContactKind.ADDRESS), a) for a in row.addresses]
    )


def _new_contacts(
    client_id: int, have: list[tuple[str, str]], row: _ClientRow
) -> list[dict[str, Any]]:
    """The row's phones, e-mails and addresses the client does not have yet."""
    phones = {v for k, v in have if k in (ContactKind.MOBILE, ContactKind.PHONE)}
    emails = {normalize_email(v) for k, v in have if k == ContactKind.EMAIL}
    addresses = {normalize_name(v) for k, v in have if k == ContactKind.ADDRESS}
    new: list[tuple[ContactKind, str]] = []
    for digits, kind in row.phones:
        if digits not in phones:
            new.append((kind, digits))
    for email in row.emails:
        if normalize_email(email) not in emails:
            new.append((ContactKind.EMAIL, email))
    for address in row.addresses:
        if normalize_name(address) not in addresses:
            addresses.add(normalize_name(address))
            new.append((ContactKind.ADDRESS, address))
    return [
        {"client_id": client_id, "kind": kind, "value": value, "comment": None}
        for kind, value in new
    ]


_CAR_FIELDS = (
    "name",
    "make",
    "model",
    "body",
    "configuration",
    "vin",
    "body_number",
    "plate",
    "year",
    "mileage",
)


async def _write_cars(
    session: AsyncSession,
    rows: list[_CarRow],
    client_ids: dict[str, int],
    file_name: str,
    report: ImportReport,
    tick: Progress,
) -> None:
    # A car repeated in the file (one row per owner or driver) is one record: its rows
    # are applied in order (a later value wins) and each adds its link.
    order: dict[str, list[_CarRow]] = {}
    for row in rows:
        order.setdefault(row.external_id, []).append(row)
    groups = list(order.values())
    done = 0
    for chunk in _chunks(groups):
        await _fresh_plans(session, True)
        exts = [g[0].external_id for g in chunk]
        cols = [getattr(Car, f) for f in _CAR_FIELDS]
        old: dict[str, dict[str, Any]] = {
            r.external_id: dict(r._mapping)
            for r in await session.execute(
                select(Car.id, Car.external_id, *cols).where(Car.external_id.in_(exts))
            )
        }
        links: dict[int, dict[int, CarRole]] = {}
        if old:
            for link in await session.execute(
                select(ClientCar.client_id, ClientCar.car_id, ClientCar.role).where(
                    ClientCar.car_id.in_([o["id"] for o in old.values()])
                )
            ):
                links.setdefault(link.car_id, {})[link.client_id] = link.role

        wanted: dict[str, dict[str, Any]] = {}
        for group in chunk:
            values: dict[str, Any] = dict.fromkeys(_CAR_FIELDS)
            for row in group:
                values.update({f: v for f in _CAR_FIELDS if (v := getattr(row, f)) is not None})
            if values["name"] is None and (values["make"] or values["model"] or values["body"]):
                # No name in the file: made from make, model and body, the stored ones
                # standing in for those the file leaves empty.
                stored = old.get(group[0].external_id, {})
                parts = [values[f] or stored.get(f) for f in ("make", "model", "body")]
                values["name"] = _compose_name(*parts)
            wanted[group[0].external_id] = values

        now = utcnow()
        fresh = [g[0] for g in chunk if g[0].external_id not in old]
        ids: dict[str, int] = {}
        if fresh:
            inserts = []
            for first in fresh:
                values = dict(wanted[first.external_id])
                values["name"] = (
                    values["name"]
                    or values["plate"]
                    or values["vin"]
                    or values["body_number"]
                    or first.external_id
                )
                inserts.append(
                    {
                        "external_id": first.external_id,
                        **values,
                        "created_at": now,
                        "last_activity_at": now,
                    }
                )
            await _fresh_plans(session, False)
            await session.execute(_bulk_insert(Car), inserts)
            await _fresh_plans(session, True)
            ids.update(await _ids_of(session, Car, [f.external_id for f in fresh]))

        updates: list[dict[str, Any]] = []
        new_links: list[dict[str, Any]] = []
        role_changes: list[dict[str, Any]] = []
        touched: set[int] = set()
        terms: list[dict[str, Any]] = []
        audit_rows: list[dict[str, Any]] = []
        for group in chunk:
            first = group[0]
            before = old.get(first.external_id)
            changed: list[str] | None = None
            if before is not None:
                car_id = before["id"]
                values = wanted[first.external_id]
                changed = [f for f, v in values.items() if v is not None and before[f] != v]
                if changed:
                    after = {f: before[f] if v is None else v for f, v in values.items()}
                    updates.append({"id": car_id, **after})
            else:
                car_id = ids[first.external_id]
            have = links.setdefault(car_id, {})
            for row in group:
                client_id = client_ids[row.client_id]
                role = have.get(client_id)
                if role is None:
                    new_links.append({"client_id": client_id, "car_id": car_id, "role": row.role})
                elif role != row.role:
                    role_changes.append(
                        {"client_id": client_id, "car_id": car_id, "role": row.role}
                    )
                else:
                    continue
                have[client_id] = row.role
                if changed is not None:
                    changed.append("clients")
            if changed is None:
                report.cars.created += 1
                values = wanted[first.external_id]
                found_by = car_terms(values["plate"], values["vin"], values["body_number"])
                terms.extend(search_index.term_rows("car", car_id, found_by))
            elif changed:
                report.cars.updated += 1
                touched.add(car_id)
            else:
                report.cars.unchanged += 1
                continue
            audit_rows.append(
                _audit_row(
                    "import.car",
                    "car",
                    car_id,
                    _details(first.external_id, file_name, first.line, changed),
                )
            )
        await _fresh_plans(session, False)
        if updates:
            await session.execute(update(Car), updates)
        if new_links:
            await session.execute(_bulk_insert(ClientCar), new_links)
        if role_changes:
            await session.execute(update(ClientCar), role_changes)
        if audit_rows:
            await session.execute(_bulk_insert(AuditLog), audit_rows)
        if terms:
            await session.execute(_bulk_insert(SearchTerm), terms)
        if touched:
            await _fresh_plans(session, True)
            await session.run_sync(search_index.refresh, set(), touched)
        done += sum(len(g) for g in chunk)
        tick("cars", done)
