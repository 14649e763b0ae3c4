"""The tire hotel (Шинный отель): a client's set stored for the season, found by plate,
phone or place, and issued back.

A set is stored with its size, brand, season, count, wheels (on rims) or tires only, tread
depth, condition, the place (rack and shelf), the fee, and when it is planned to go back.
Places are kept upper case (``A``/``3``); ``"a-3"``, ``"A 3"`` and ``"A/3"`` all name it.
:func:`queue_tire_season_reminders` tells every client with a set of the coming season
stored that it is time to change (once per season and year; the scheduler calls it).

Every change is audited. Services never commit: the caller does.
"""

from __future__ import annotations

import enum
import functools
import re
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import ColumnElement, case, or_, select
from sqlalchemy.ext.asyncio import AsyncSession

from services import audit, outbox
from services.access import Permission, can
from services.documents import start_write
from services.outbox import Kind
from services.search import Box, SearchService
from storage.models import Client, ClientCar, Staff, TireSeason, TireSet, TireSetState, utcnow

MAX_SIZE = 40
MAX_BRAND = 100
MAX_CONDITION = 1000
MAX_PLACE = 20
MAX_COUNT = 8
MAX_TREAD_TENTHS = 300  # 30 mm: no tire has more
MAX_FEE = 100_000_000  # kopecks: a million roubles
FOUND_LIMIT = 20
_PLACE = re.compile(r"^\s*([^\s/\-.]{1,20})\s*[\s/\-.]\s*([^\s/\-.]{1,20})\s*$")
_TREAD = re.compile(r"^\s*(\d{1,2})(?:[.,](\d))?\s*(?:мм|mm)?\s*$", re.I)


@functools.cache
def _finder(region: str) -> SearchService:
    """Plates and phones find a set (names, cards and e-mails would find too much)."""
    return SearchService(
        {"client": ("phone",), "contact": ("phone",), "car": ("plate",)}, region=region
    )


class TireProblem(enum.StrEnum):
    FORBIDDEN = "forbidden"
    CLIENT_NOT_FOUND = "client_not_found"
    CAR_NOT_LINKED = "car_not_linked"
    NOT_FOUND = "not_found"
    ALREADY_ISSUED = "already_issued"
    BAD_SIZE = "bad_size"
    BAD_COUNT = "bad_count"
    BAD_TREAD = "bad_tread"
    BAD_PLACE = "bad_place"
    BAD_FEE = "bad_fee"
    TOO_LONG = "too_long"


class TireRefused(ValueError):
    def __init__(self, problem: TireProblem, detail: str = "") -> None:
        super().__init__(f"{problem.value}: {detail}" if detail else problem.value)
        self.problem = problem
        self.detail = detail


@dataclass(frozen=True, slots=True)
class TireDraft:
    size: str
    season: TireSeason
    count: int
    with_wheels: bool
    rack: str
    shelf: str
    brand: str | None = None
    tread_tenths_mm: int | None = None
    condition: str | None = None
    fee: int = 0
    planned_issue_at: datetime | None = None
    car_id: int | None = None


def parse_place(text: str) -> tuple[str, str] | None:
    """ "a-3", "A 3", "A/3", "A.3" -> ("A", "3"); None when it is not rack and shelf."""
    match = _PLACE.match(text)
    if match is None:
        return None
    return match.group(1).upper(), match.group(2).upper()


def parse_tread(text: str) -> int | None:
    """ "6.5", "6,5 мм", "7" -> tenths of a millimetre (65, 65, 70)."""
    match = _TREAD.match(text)
    if match is None:
        return None
    value = int(match.group(1)) * 10 + int(match.group(2) or 0)
    return value if value <= MAX_TREAD_TENTHS else None


def _text(value: str | None, limit: int, problem: TireProblem) -> str | None:
    cleaned = " ".join((value or "").split())
    if len(cleaned) > limit:
        raise TireRefused(problem, str(limit))
    return cleaned or None


def _check(draft: TireDraft) -> TireDraft:
    size = _text(draft.size, MAX_SIZE, TireProblem.BAD_SIZE)
    if size is None:
        raise TireRefused(TireProblem.BAD_SIZE, "empty")
    if not 1 <= draft.count <= MAX_COUNT:
        raise TireRefused(TireProblem.BAD_COUNT, str(draft.count))
    if draft.tread_tenths_mm is not None and not 0 <= draft.tread_tenths_mm <= MAX_TREAD_TENTHS:
        raise TireRefused(TireProblem.BAD_TREAD, str(draft.tread_tenths_mm))
    rack = _text(draft.rack, MAX_PLACE, TireProblem.BAD_PLACE)
    shelf = _text(draft.shelf, MAX_PLACE, TireProblem.BAD_PLACE)
    if rack is None or shelf is None:
        raise TireRefused(TireProblem.BAD_PLACE, "empty")
    if not 0 <= draft.fee <= MAX_FEE:
        raise TireRefused(TireProblem.BAD_FEE, str(draft.fee))
    return TireDraft(
        size=size,
        season=TireSeason(draft.season),
        count=draft.count,
        with_wheels=draft.with_wheels,
        rack=rack.upper(),
        shelf=shelf.upper(),
        brand=_text(draft.brand, MAX_BRAND, TireProblem.TOO_LONG),
        tread_tenths_mm=draft.tread_tenths_mm,
        condition=_text(draft.condition, MAX_CONDITION, TireProblem.TOO_LONG),
        fee=draft.fee,
        planned_issue_at=draft.planned_issue_at,
        car_id=draft.car_id,
    )


def _require(actor: Staff | None) -> Staff:
    if actor is None or not can(actor, Permission.TIRE_HOTEL):
        raise TireRefused(TireProblem.FORBIDDEN)
    return actor


def _summary(row: TireSet) -> dict[str, object]:
    return {
        "client_id": row.client_id,
        "car_id": row.car_id,
        "size": row.size,
        "season": str(row.season),
        "count": row.count,
        "place": f"{row.rack}/{row.shelf}",
        "fee": row.fee,
    }


async def store(
    session: AsyncSession,
    client_id: int,
    draft: TireDraft,
    *,
    actor: Staff,
    now: datetime | None = None,
) -> TireSet:
    """Take a client's set into storage."""
    _require(actor)
    clean = _check(draft)
    await start_write(session)
    if await session.get(Client, client_id) is None:
        raise TireRefused(TireProblem.CLIENT_NOT_FOUND, str(client_id))
    if clean.car_id is not None:
        linked = await session.scalar(
            select(ClientCar.car_id).where(
                ClientCar.client_id == client_id, ClientCar.car_id == clean.car_id
            )
        )
        if linked is None:
            raise TireRefused(TireProblem.CAR_NOT_LINKED, str(clean.car_id))
    row = TireSet(
        client_id=client_id,
        car_id=clean.car_id,
        size=clean.size,
        brand=clean.brand,
        season=clean.season,
        count=clean.count,
        with_wheels=clean.with_wheels,
        tread_tenths_mm=clean.tread_tenths_mm,
        condition=clean.condition,
        rack=clean.rack,
        shelf=clean.shelf,
        fee=clean.fee,
        state=TireSetState.STORED,
        stored_at=now or utcnow(),
        planned_issue_at=clean.planned_issue_at,
        author_id=actor.id,
    )
    session.add(row)
    await session.flush()
    audit.record(
        session,
        "tires.store",
        actor=actor,
        entity="tire_set",
        entity_id=row.id,
        details=_summary(row),
    )
    return row


async def issue(
    session: AsyncSession, set_id: int, *, actor: Staff, now: datetime | None = None
) -> TireSet:
    """Give a stored set back to the client."""
    _require(actor)
    await start_write(session)
    row = await session.scalar(
        select(TireSet)
        .where(TireSet.id == set_id)
        .with_for_update()
        .execution_options(populate_existing=True)
    )
    if row is None:
        raise TireRefused(TireProblem.NOT_FOUND, str(set_id))
    if TireSetState(row.state) is not TireSetState.STORED:
        raise TireRefused(TireProblem.ALREADY_ISSUED, str(set_id))
    row.state = TireSetState.ISSUED
    row.issued_at = now or utcnow()
    row.issued_by_id = actor.id
    await session.flush()
    audit.record(
        session,
        "tires.issue",
        actor=actor,
        entity="tire_set",
        entity_id=row.id,
        details=_summary(row),
    )
    return row


def _order() -> list[ColumnElement[Any]]:
    """Those in storage first, the newest first."""
    return [
        case((TireSet.state == TireSetState.STORED, 0), else_=1),
        TireSet.stored_at.desc(),
        TireSet.id.desc(),
    ]


async def client_sets(session: AsyncSession, client_id: int) -> list[TireSet]:
    """The client's sets, those in storage first, the newest first."""
    rows = await session.scalars(
        select(TireSet).where(TireSet.client_id == client_id).order_by(*_order())
    )
    return list(rows)


async def find_sets(session: AsyncSession, text: str, region: str = "RU") -> list[TireSet]:
    """Sets by place (``A-3``), by a car's plate or by a client's phone; stored first."""
    conditions: list[ColumnElement[bool]] = []
    place = parse_place(text)
    if place is not None:
        conditions.append((TireSet.rack == place[0]) & (TireSet.shelf == place[1]))
    found = await _finder(region).search(session, text, box=Box.ANY, limit=FOUND_LIMIT)
    client_ids = [hit.id for hit in found.clients]
    car_ids = [hit.id for hit in found.cars]
    if client_ids:
        conditions.append(TireSet.client_id.in_(client_ids))
    if car_ids:
        conditions.append(TireSet.car_id.in_(car_ids))
        conditions.append(
            TireSet.client_id.in_(select(ClientCar.client_id).where(ClientCar.car_id.in_(car_ids)))
        )
    if not conditions:
        return []
    rows = await session.scalars(
        select(TireSet).where(or_(*conditions)).order_by(*_order()).limit(FOUND_LIMIT)
    )
    return list(rows)


async def queue_tire_season_reminders(
    session: AsyncSession, now: datetime, season: TireSeason
) -> int:
    """Tell every client with a ``season`` set in storage that it is time to change; how
    many were queued now. Once per client, season and year (the key says which)."""
    season = TireSeason(season)
    client_ids = await session.scalars(
        select(TireSet.client_id)
        .where(TireSet.state == TireSetState.STORED, TireSet.season == season)
        .distinct()
        .order_by(TireSet.client_id)
    )
    queued = 0
    for client_id in list(client_ids):
        queued += await outbox.enqueue(
            session,
            Kind.TIRE_SEASON,
            f"tire_season:{season.value}:{now.year}:{client_id}",
            client_id=client_id,
            payload={"season": season.value, "year": now.year},
        )
    return queued


__all__ = [
    "TireDraft",
    "TireProblem",
    "TireRefused",
    "client_sets",
    "find_sets",
    "issue",
    "parse_place",
    "parse_tread",
    "queue_tire_season_reminders",
    "store",
]
