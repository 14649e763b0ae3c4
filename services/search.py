"""Search for clients and cars: the seed's three boxes and one box that takes anything.

A query is folded once per field (``services.normalize.query_probes``), looked up through
the indexes (``storage.search_repo``), then ranked: exact, then prefix, then substring,
then the most recent activity. Each index lookup is capped, so a query that matches half
the database costs the same as one that matches ten rows; the result then says it has
"more than" its count.
"""

from __future__ import annotations

import enum
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import datetime

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from services.filters import ClientFilter, FilterContext
from services.normalize import CAR_FIELDS, CLIENT_FIELDS, SEARCH_FIELDS, query_probes
from storage import search_repo
from storage.filters import filters_condition
from storage.models import Client

MAX_QUERY_CHARS = 100
MIN_SUBSTRING = 3  # trigram indexes need three characters
MIN_PHONE_SUBSTRING = 4
DEFAULT_CAP = 200  # candidates per lookup: 20 pages, and the ranking stays cheap
DEFAULT_BOXES: dict[str, tuple[str, ...]] = {
    "client": ("name", "card"),
    "contact": ("phone", "email", "contact"),
    "car": ("plate", "vin", "body"),
}


class Box(enum.StrEnum):
    ANY = "any"
    CLIENT = "client"
    CONTACT = "contact"
    CAR = "car"


class Tier(enum.IntEnum):
    EXACT = 0
    PREFIX = 1
    SUBSTRING = 2


class Problem(enum.StrEnum):
    EMPTY = "empty"
    TOO_LONG = "too_long"
    NOTHING_TO_SEARCH = "nothing_to_search"  # only punctuation, say


@dataclass(frozen=True, slots=True)
class ClientHit:
    id: int
    name: str
    kind: str
    inn: str | None
    main_phone: str | None
    field: str
    tier: Tier
    last_activity_at: datetime


@dataclass(frozen=True, slots=True)
class CarHit:
    id: int
    name: str
    plate: str | None
    vin: str | None
    body_number: str | None
    year: int | None
    field: str
    tier: Tier
    last_activity_at: datetime


@dataclass(slots=True)
class SearchResult:
    query: str
    clients: list[ClientHit] = field(default_factory=list)
    cars: list[CarHit] = field(default_factory=list)
    clients_total: int = 0
    cars_total: int = 0
    # True when a lookup hit its cap: there are more matches than the totals say.
    more: bool = False
    problem: Problem | None = None

    @property
    def found(self) -> bool:
        return bool(self.clients_total or self.cars_total)


class SearchService:
    def __init__(
        self,
        boxes: Mapping[str, Iterable[str]] | None = None,
        *,
        cap: int = DEFAULT_CAP,
        region: str = "RU",
    ) -> None:
        """``region``: the shop's own (settings' ``default_region``), for phones typed
        without ``+``: a full national number or a fragment starting with its trunk
        prefix."""
        boxes = dict(boxes or DEFAULT_BOXES)
        self.boxes: dict[Box, tuple[str, ...]] = {
            Box(name): tuple(fields) for name, fields in boxes.items()
        }
        all_fields: list[str] = []
        for fields in self.boxes.values():
            all_fields.extend(f for f in fields if f not in all_fields)
        self.boxes[Box.ANY] = tuple(all_fields)
        for fields in self.boxes.values():
            unknown = set(fields) - set(SEARCH_FIELDS)
            if unknown:
                raise ValueError(f"unknown search fields: {sorted(unknown)}")
        self.cap = cap
        self.region = region

    def lookups(self, text: str, box: Box = Box.ANY) -> list[search_repo.Lookup]:
        """The index lookups a search for ``text`` in ``box`` makes: the text folded for
        each field, forms folded alike looked up together."""
        by_term: dict[str, set[str]] = {}
        for probe in query_probes(text, self.boxes[box], self.region):
            by_term.setdefault(probe.term, set()).add(probe.field)
        return [
            search_repo.Lookup(term, frozenset(fields), tuple(_words(term, fields)))
            for term, fields in by_term.items()
        ]

    async def search(
        self,
        session: AsyncSession,
        text: str,
        *,
        box: Box = Box.ANY,
        filters: frozenset[ClientFilter] = frozenset(),
        ctx: FilterContext | None = None,
        offset: int = 0,
        limit: int = 10,
        joined: bool = False,
    ) -> SearchResult:
        """Clients and cars matching ``text`` in the fields of ``box``, ranked, one page
        of each. With filters, only clients passing them and the cars of such clients.
        ``joined``: ``offset`` and ``limit`` cut the list of the clients followed by the cars
        (one page of the search screen) instead of each list on its own.

        One statement whatever the query (``storage.search_repo.search_page``): every
        index lookup, the best match of each client and car, the ranked page and the
        totals; only the page's rows are read."""
        text = text or ""
        result = SearchResult(query=text)
        if not text.strip():
            result.problem = Problem.EMPTY
            return result
        if len(text) > MAX_QUERY_CHARS:
            result.problem = Problem.TOO_LONG
            return result
        lookups = self.lookups(text, box)
        if not lookups:
            # A text that cannot match this box's fields (letters in the car box, say)
            # finds nothing; one without a letter or a digit is not a search at all.
            if not any(ch.isalnum() for ch in text):
                result.problem = Problem.NOTHING_TO_SEARCH
            return result
        condition = None
        if filters:
            if ctx is None:
                raise ValueError("filters need a FilterContext")
            condition = filters_condition(filters, ctx)
        page = await search_repo.search_page(
            session,
            lookups,
            self.cap,
            offset=offset,
            limit=limit,
            joined=joined,
            condition=condition,
        )
        result.clients_total, result.cars_total = page.clients_total, page.cars_total
        result.more = page.capped
        for row in page.rows:
            tier = Tier(row.tier)
            if row.owner_type == "client":
                result.clients.append(
                    ClientHit(
                        row.id,
                        row.name,
                        str(row.a),
                        row.b,
                        row.c,
                        row.field,
                        tier,
                        row.last_activity_at,
                    )
                )
            else:
                result.cars.append(
                    CarHit(
                        row.id,
                        row.name,
                        row.a,
                        row.b,
                        row.c,
                        row.year,
                        row.field,
                        tier,
                        row.last_activity_at,
                    )
                )
        return result


def _words(term: str, fields: set[str]) -> list[str]:
    """The pieces of ``term`` to find anywhere: the whole term, or for names each word
    long enough for the trigram index (so "петров иван" finds "Иван Петров")."""
    minimum = MIN_PHONE_SUBSTRING if fields == {"phone"} else MIN_SUBSTRING
    if fields & {"name", "contact"} and " " in term:
        words = [w for w in term.split(" ") if len(w) >= MIN_SUBSTRING]
        return words
    return [term] if len(term) >= minimum else []


async def list_clients(
    session: AsyncSession,
    filters: frozenset[ClientFilter],
    ctx: FilterContext,
    *,
    offset: int = 0,
    limit: int = 10,
) -> tuple[list[ClientHit], int]:
    """The filtered client list without a search string: most recent activity first."""
    from sqlalchemy import func

    condition = filters_condition(filters, ctx)
    total = await session.scalar(select(func.count()).select_from(Client).where(condition))
    rows = await session.execute(
        select(
            Client.id,
            Client.name,
            Client.kind,
            Client.inn,
            Client.main_phone,
            Client.last_activity_at,
        )
        .where(condition)
        .order_by(Client.last_activity_at.desc(), Client.id.desc())
        .offset(offset)
        .limit(limit)
    )
    hits = [
        ClientHit(cid, name, str(kind), inn, phone, "", Tier.EXACT, activity)
        for cid, name, kind, inn, phone, activity in rows
    ]
    return hits, int(total or 0)


__all__ = [
    "CAR_FIELDS",
    "CLIENT_FIELDS",
    "Box",
    "CarHit",
    "ClientHit",
    "Problem",
    "SearchResult",
    "SearchService",
    "Tier",
    "list_clients",
]
