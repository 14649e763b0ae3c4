"""The shop's price list (прайс-лист): goods and works, with a price per price type.

Goods are priced per unit; a work per norm-hour and carries its norm hours (a work of
1,5 h at 2 400 ₽ per hour costs 3 600 ₽). Items are found by a fragment of the name
(case, ``ё`` and spaces folded as ``services.normalize.normalize_name`` does) or of the
catalogue number (folded as ``normalize_code`` folds codes: ``w712-75`` finds
``W 712/75``).

A client's price is the one of the client's price type; when the client has none, or the
item has no price of that type, the retail price (code ``retail``) is used.

``ccbot import-prices`` loads the list from CSV with the conventions of ``ccbot import``
(UTF-8 or cp1251, ``,`` or ``;``, ``file:line: reason``, all or nothing unless
``--skip-bad``; see ``docs/import.md``). An item is matched by kind, catalogue number and
maker (by kind and name when it has no number): importing a file again updates prices.
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from decimal import Decimal, InvalidOperation
from pathlib import Path

from sqlalchemy import or_, select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from services import audit
from services.csv_import import (
    Column,
    ImportFailed,
    PriceTypes,
    Reject,
    Rejects,
    check_rejects_path,
    fold,
    read_table,
    write_rejects,
)
from services.normalize import normalize_code, normalize_name
from storage.db import write_transaction
from storage.models import LineKind, PriceItem, PriceItemPrice, PriceType

RETAIL = "retail"
MAX_NAME = 300
MAX_NUMBER = 60
MAX_MAKER = 100
MAX_UNIT = 20
MAX_HITS = 10
MIN_FRAGMENT = 2  # characters of a name or number searched for

PRICE_COLUMNS = (
    Column("kind", ("kind", "Вид", "Тип", "Вид номенклатуры"), required=True),
    Column("name", ("name", "Наименование", "Номенклатура", "Работа"), required=True),
    Column(
        "catalogue_number",
        ("catalogue_number", "№ кат.", "Каталожный номер", "Артикул", "article"),
    ),
    Column("maker", ("maker", "Производитель", "manufacturer", "brand")),
    Column("unit", ("unit", "Ед. изм.", "Единица", "Ед.")),
    Column("norm_hours", ("norm_hours", "Норма времени", "Нормочасы", "н/ч")),
)
# Price columns: "price" or "Цена" (retail), "price_<type>" or "Цена <type>" (any other
# price type, by code or name; a new one is created).
_PRICE_HEADS = ("price", "цена")
_GOODS = {"goods", "товар", "товары", "запчасть", "номенклатура", "g"}
_WORKS = {"work", "works", "работа", "работы", "услуга", "w"}


@dataclass(frozen=True, slots=True)
class ItemDraft:
    kind: LineKind
    name: str
    prices: Mapping[int, int]  # price type id -> kopecks (per norm-hour for works)
    catalogue_number: str | None = None
    maker: str | None = None
    unit: str = "шт"
    norm_hours_milli: int | None = None


def _clean(value: str | None) -> str | None:
    text = " ".join((value or "").split())
    return text or None


def _match_key(kind: LineKind, name: str, number: str | None, maker: str | None) -> tuple:
    if number and normalize_code(number):
        return (LineKind(kind).value, "n", normalize_code(number), normalize_name(maker or ""))
    return (LineKind(kind).value, "m", normalize_name(name))


def _key_of(item: PriceItem) -> tuple:
    return _match_key(item.kind, item.name, item.catalogue_number, item.maker)


async def retail_type_id(session: AsyncSession) -> int | None:
    return await session.scalar(select(PriceType.id).where(PriceType.code == RETAIL))


async def save_item(session: AsyncSession, draft: ItemDraft) -> PriceItem:
    """Adds the item, or updates the one with the same kind, number and maker (or name);
    the prices given replace those of their types."""
    name = _clean(draft.name)
    if not name:
        raise ValueError("an item needs a name")
    number, maker = _clean(draft.catalogue_number), _clean(draft.maker)
    key = _match_key(draft.kind, name, number, maker)
    code = normalize_code(number) if number else ""
    same = PriceItem.catalogue_key == code if code else PriceItem.name_key == normalize_name(name)
    candidates = await session.scalars(
        select(PriceItem).where(PriceItem.kind == LineKind(draft.kind), same)
    )
    item = next((c for c in candidates if _key_of(c) == key), None)
    if item is None:
        item = PriceItem(kind=LineKind(draft.kind), prices=[])
        session.add(item)
    item.name, item.name_key = name, normalize_name(name)
    item.catalogue_number = number
    item.catalogue_key = code or None
    item.maker = maker
    item.unit = _clean(draft.unit) or "шт"
    item.norm_hours_milli = (
        draft.norm_hours_milli if LineKind(draft.kind) is LineKind.WORK else None
    )
    item.active = True
    await session.flush()
    existing = {
        p.price_type_id: p
        for p in await session.scalars(
            select(PriceItemPrice).where(PriceItemPrice.item_id == item.id)
        )
    }
    for type_id, price in draft.prices.items():
        if type_id in existing:
            existing[type_id].price = price
        else:
            session.add(PriceItemPrice(item_id=item.id, price_type_id=type_id, price=price))
    await session.flush()
    return item


async def search(session: AsyncSession, text: str, *, limit: int = MAX_HITS) -> list[PriceItem]:
    """Active items whose name or catalogue number contains the text, names first."""
    name = normalize_name(text)
    code = normalize_code(text)
    conditions = []
    if len(name) >= MIN_FRAGMENT:
        conditions.append(PriceItem.name_key.contains(name, autoescape=True))
    if len(code) >= MIN_FRAGMENT:
        conditions.append(PriceItem.catalogue_key.contains(code, autoescape=True))
    if not conditions:
        return []
    rows = await session.scalars(
        select(PriceItem)
        .where(PriceItem.active.is_(True), or_(*conditions))
        .order_by(PriceItem.kind, PriceItem.name_key, PriceItem.id)
        .limit(limit)
    )
    return list(rows)


async def prices(
    session: AsyncSession, item_ids: Iterable[int], price_type_id: int | None
) -> dict[int, int]:
    """item id -> the price of ``price_type_id``, else the retail price (kopecks); items
    with neither are left out."""
    ids = sorted(set(item_ids))
    if not ids:
        return {}
    retail = await retail_type_id(session)
    wanted = {t for t in (price_type_id, retail) if t is not None}
    rows = await session.execute(
        select(PriceItemPrice.item_id, PriceItemPrice.price_type_id, PriceItemPrice.price).where(
            PriceItemPrice.item_id.in_(ids), PriceItemPrice.price_type_id.in_(wanted)
        )
    )
    found: dict[int, int] = {}
    for item_id, type_id, price in rows:
        if type_id == price_type_id or item_id not in found:
            found[item_id] = price
    return found


async def find_by_number(
    session: AsyncSession, kind: LineKind, catalogue_number: str | None
) -> PriceItem | None:
    """The active item of ``kind`` with this catalogue number (any maker), if one."""
    if not catalogue_number or not normalize_code(catalogue_number):
        return None
    return await session.scalar(
        select(PriceItem)
        .where(
            PriceItem.kind == LineKind(kind),
            PriceItem.catalogue_key == normalize_code(catalogue_number),
            PriceItem.active.is_(True),
        )
        .order_by(PriceItem.id)
        .limit(1)
    )


# --- CSV ----------------------------------------------------------------------------


@dataclass(slots=True)
class PriceListReport:
    created: int = 0
    updated: int = 0
    rejected: int = 0
    rejects_path: Path | None = None
    problems: list[str] = field(default_factory=list)

    def __str__(self) -> str:
        text = f"price list: {self.created} created, {self.updated} updated"
        text += f", {self.rejected} rejected"
        if self.rejected and self.rejects_path is not None:
            text += f" (written to {self.rejects_path})"
        return text


def _number(text: str, places: int) -> Decimal | None:
    cleaned = "".join(text.replace("₽", "").replace("руб", "").split()).replace(",", ".")
    try:
        value = Decimal(cleaned)
    except InvalidOperation:
        return None
    if not value.is_finite() or value < 0 or value != value.quantize(Decimal(1).scaleb(-places)):
        return None
    return value


def _price_heads(header: list[str]) -> list[tuple[int, str]]:
    """(position, price type text) of each price column; "" is retail."""
    found = []
    for pos, title in enumerate(header):
        folded = fold(title)
        for head in _PRICE_HEADS:
            if folded.startswith(head):
                rest = title.strip()[len(head) :].strip(" _:-()").strip()
                found.append((pos, rest))
                break
    return found


def _check_row(
    values: list[str], get: dict[str, str], price_cols: list[tuple[int, int]]
) -> ItemDraft | str:
    problems: list[str] = []
    kind_text = fold(get["kind"])
    kind = (
        LineKind.GOODS if kind_text in _GOODS else LineKind.WORK if kind_text in _WORKS else None
    )
    if kind is None:
        problems.append(f'kind "{get["kind"]}" is neither goods nor work')
    name = _clean(get["name"])
    if not name:
        problems.append("no name")
    for label, limit in (
        ("name", MAX_NAME),
        ("catalogue_number", MAX_NUMBER),
        ("maker", MAX_MAKER),
        ("unit", MAX_UNIT),
    ):
        if len(_clean(get[label]) or "") > limit:
            problems.append(f"{label} over {limit} characters")
    hours: int | None = None
    if get["norm_hours"]:
        value = _number(get["norm_hours"], 3)
        if value is None or value == 0:
            problems.append(f'norm hours "{get["norm_hours"]}" is not a positive number')
        else:
            hours = int(value * 1000)
    prices: dict[int, int] = {}
    for pos, type_id in price_cols:
        text = values[pos].strip()
        if not text:
            continue
        price = _number(text, 2)
        if price is None:
            problems.append(f'price "{text}" is not an amount (like 1500 or 1 500,50)')
        else:
            prices[type_id] = int(price * 100)
    if not prices:
        problems.append("no price")
    if problems or kind is None or not name:
        return "; ".join(problems)
    if kind is LineKind.WORK and hours is None:
        hours = 1000  # priced per job: one norm-hour at the price
    return ItemDraft(
        kind=kind,
        name=name,
        prices=prices,
        catalogue_number=_clean(get["catalogue_number"]),
        maker=_clean(get["maker"]),
        unit=_clean(get["unit"]) or "шт",
        norm_hours_milli=hours,
    )


async def import_price_list(
    factory: async_sessionmaker[AsyncSession],
    path: Path,
    *,
    skip_bad: bool,
    rejects_path: Path | None,
) -> PriceListReport:
    """Items and prices from a CSV file, in one transaction (ImportFailed: nothing done)."""
    if skip_bad and rejects_path is not None:
        check_rejects_path(rejects_path, path)
    table = read_table(path, PRICE_COLUMNS)
    heads = _price_heads(table.header)
    if not heads:
        raise ImportFailed([f'{table.name}: no price column ("price", "Цена", "price_wholesale")'])
    report = PriceListReport()
    temp = rejects_path.with_name(rejects_path.name + ".tmp") if rejects_path else None
    try:
        async with write_transaction(factory) as session:
            types = PriceTypes()
            price_cols = [
                (pos, await types.id_for(session, text or RETAIL)) for pos, text in heads
            ]
            rows = Rejects()
            drafts: list[tuple[int, ItemDraft]] = []
            seen: dict[tuple, int] = {}
            for record, values in rows.values(table):
                get = {col.field: table.one(values, col.field) for col in PRICE_COLUMNS}
                checked = _check_row(values, get, price_cols)
                if isinstance(checked, str):
                    rows.reject(table, record, checked)
                    continue
                key = _match_key(
                    checked.kind, checked.name, checked.catalogue_number, checked.maker
                )
                if (first := seen.get(key)) is not None:
                    rows.reject(table, record, f"the same item as line {first}")
                    continue
                seen[key] = record.line
                drafts.append((record.line, checked))
            problems = [r.message for r in rows.rejects]
            if problems and not skip_bad:
                raise ImportFailed(problems)
            report.problems, report.rejected = problems, len(problems)
            before = {_key_of(item): item.id for item in await session.scalars(select(PriceItem))}
            for _line, draft in drafts:
                item = await save_item(session, draft)
                if before.get(_key_of(item)) is None:
                    report.created += 1
                else:
                    report.updated += 1
            audit.record(
                session,
                "import.price_list",
                details={
                    "file": path.name,
                    "created": report.created,
                    "updated": report.updated,
                    "rejected": report.rejected,
                },
            )
            if rows.rejects and temp is not None:
                write_rejects(temp, _sorted(rows.rejects))
                report.rejects_path = rejects_path
    except BaseException:
        if temp is not None:
            temp.unlink(missing_ok=True)
        raise
    if report.rejects_path is not None and temp is not None:
        os.replace(temp, report.rejects_path)
    return report


def _sorted(rejects: list[Reject]) -> list[Reject]:
    return sorted(rejects, key=lambda r: r.record.line)


__all__ = [
    "ItemDraft",
    "PriceListReport",
    "find_by_number",
    "import_price_list",
    "prices",
    "retail_type_id",
    "save_item",
    "search",
]
