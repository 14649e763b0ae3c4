"""The search queries, per dialect. Every query here is served by an index: for
substrings, on SQLite an FTS5 trigram index of the free-text fields and a B-tree of the
codes' grams (migration 0010), on PostgreSQL a pg_trgm GIN index (migration 0002); the
B-tree on ``search_terms.term`` for exact and prefix matches."""

from __future__ import annotations

import functools
from collections.abc import Collection, Sequence
from datetime import datetime
from typing import Any, NamedTuple

from sqlalchemy import (
    ColumnElement,
    Integer,
    Select,
    String,
    and_,
    bindparam,
    case,
    cast,
    column,
    func,
    literal_column,
    null,
    or_,
    select,
    table,
    true,
    type_coerce,
    union_all,
)
from sqlalchemy.ext.asyncio import AsyncSession

from storage.db import read
from storage.expr import in_constants
from storage.models import Car, Client, ClientCar, SearchTerm

# SQLite (migration 0010): free text in an FTS5 trigram index whose rowid is the term's id
# negated (its natural order is the newest first); codes and numbers by their grams, the
# (at most) GRAM characters from each position of the term, in a B-tree.
TEXT_FIELDS = frozenset({"name", "contact", "email"})
SEARCH_FTS_TEXT = table("search_fts_text", column("rowid"), column("term"))
SEARCH_GRAMS = table("search_grams", column("gram"), column("term_id"))
GRAM = 8

# Above every character a normalised term can hold: term < prefix + TOP is a prefix range.
TOP = "\U0010ffff"

# The selects of one lookup, tagged ``part = PARTS × lookup + kind``.
PARTS = 3
PREFIX, TEXT, CODES = 0, 1, 2
PART_SPAN = 1 << 16  # more parts than any search has: tier × PART_SPAN + part orders both


class Candidate(NamedTuple):
    owner_type: str
    owner_id: int
    field: str
    term: str


def _fts_phrase(word: str) -> str:
    return '"' + word.replace('"', '""') + '"'


def _like_escape(word: str) -> str:
    return word.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")


class Lookup(NamedTuple):
    """One folded form of a search: its term, the fields it is looked for in, and the
    words to find anywhere (empty: exact and prefix matches only)."""

    term: str
    fields: frozenset[str]
    words: tuple[str, ...]


# How a search's lookups are laid out: per lookup, (number of words, its fields, its
# free-text fields, its code fields). Statements are built once per shape.
Shape = tuple[tuple[int, tuple[str, ...], tuple[str, ...], tuple[str, ...]], ...]


def _split(dialect: str, fields: Collection[str]) -> tuple[list[str], list[str]]:
    """The fields of a substring lookup by index: (free text, codes). PostgreSQL has one
    index for all of them."""
    if dialect != "sqlite":
        return sorted(fields), []
    return sorted(f for f in fields if f in TEXT_FIELDS), sorted(
        f for f in fields if f not in TEXT_FIELDS
    )


def _shape_and_params(
    dialect: str, lookups: Sequence[Lookup], cap: int
) -> tuple[Shape, dict[str, Any]]:
    params: dict[str, Any] = {"cap": cap}
    shape = []
    for i, lookup in enumerate(lookups):
        params[f"t{i}"] = lookup.term
        params[f"u{i}"] = lookup.term + TOP
        text, codes = _split(dialect, lookup.fields) if lookup.words else ([], [])
        shape.append((len(lookup.words), tuple(sorted(lookup.fields)), tuple(text), tuple(codes)))
        for j, word in enumerate(lookup.words):
            params[f"w{i}_{j}"] = word
            if dialect != "sqlite":
                params[f"l{i}_{j}"] = f"%{_like_escape(word)}%"
        if text and dialect == "sqlite":
            params[f"m{i}"] = " AND ".join(_fts_phrase(w) for w in lookup.words)
        if codes:
            longest = max(lookup.words, key=len)
            params[f"g{i}"] = longest[:GRAM]
            params[f"h{i}"] = longest[:GRAM] + TOP
    return tuple(shape), params


def _fields_in(fields: tuple[str, ...]) -> ColumnElement[bool]:
    """``field IN ('name', ...)`` written into the statement: the fields are part of its
    shape."""
    return in_constants(SearchTerm.field, fields)


def _part_selects(
    dialect: str, shape: Shape, *, with_term: bool = True
) -> list[tuple[int, Select]]:
    """Every index lookup of a search, each with its own LIMIT: per folded form, the
    B-tree prefix select and (with words) the substring selects. Each row carries its
    ``part`` (PARTS × lookup + PREFIX, TEXT or CODES) and its tier: 0 the term itself,
    1 a term starting with it, 2 one containing every word (checked here whole: the
    trigram index ignores case, and a gram holds only the first GRAM characters).
    ``with_term``: the rows carry the term too (a search's page does not read it, and
    copying a few hundred names through its grouping was a twentieth of the SQLite work
    of a surname search). Returns each select with its ``part``."""
    cols = (SearchTerm.owner_type, SearchTerm.owner_id, SearchTerm.field, SearchTerm.term)
    cap = bindparam("cap", type_=Integer)
    selects: list[tuple[int, Select]] = []
    for i, (words, fields, text, codes) in enumerate(shape):
        term = bindparam(f"t{i}", type_=String)
        upper = bindparam(f"u{i}", type_=String)
        exact = SearchTerm.term == term
        tier = case(
            (exact, 0), (and_(SearchTerm.term >= term, SearchTerm.term < upper), 1), else_=2
        )
        contains = [
            func.instr(SearchTerm.term, bindparam(f"w{i}_{j}", type_=String)) > 0
            for j in range(words)
        ]
        parts: list[tuple[int, Select]] = [
            (
                PREFIX,
                select(*cols, case((exact, 0), else_=1).label("tier"))
                .where(SearchTerm.term >= term, SearchTerm.term < upper)
                .where(_fields_in(fields))
                .order_by(SearchTerm.term)
                .limit(cap),
            )
        ]
        if text and dialect == "sqlite":
            fts = SEARCH_FTS_TEXT
            parts.append(
                (
                    TEXT,
                    select(*cols, tier.label("tier"))
                    .select_from(fts)
                    .join(SearchTerm, SearchTerm.id == -fts.c.rowid)
                    .where(fts.c.term.op("MATCH")(bindparam(f"m{i}", type_=String)))
                    .where(_fields_in(text), *contains)
                    .limit(cap),  # the index's own order: the newest first
                )
            )
        elif text:
            likes = [
                SearchTerm.term.like(bindparam(f"l{i}_{j}", type_=String), escape="\\")
                for j in range(words)
            ]
            parts.append(
                (
                    TEXT,
                    select(*cols, tier.label("tier"))
                    .where(*likes)
                    .where(_fields_in(text))
                    .limit(cap),
                )
            )
        if codes:
            grams = SEARCH_GRAMS
            parts.append(
                (
                    CODES,
                    select(*cols, tier.label("tier"))
                    .select_from(grams)
                    .join(SearchTerm, SearchTerm.id == grams.c.term_id)
                    .where(
                        grams.c.gram >= bindparam(f"g{i}", type_=String),
                        grams.c.gram < bindparam(f"h{i}", type_=String),
                    )
                    .where(_fields_in(codes), *contains)
                    .limit(cap),
                )
            )
        for kind, stmt in parts:
            sub = stmt.subquery()
            cols_out = [c for c in sub.c if with_term or c.key != "term"]
            part = PARTS * i + kind
            selects.append((part, select(literal_column(str(part)).label("part"), *cols_out)))
    return selects


def lookup_selects(dialect: str, lookup: Lookup, cap: int) -> list[Select]:
    """The selects of one lookup as a search runs them, parameters bound: the prefix
    select, then the substring selects (for plans and tests)."""
    shape, params = _shape_and_params(dialect, [lookup], cap)
    return [select_.params(**params) for _, select_ in _part_selects(dialect, shape)]


def substring_query(dialect: str, words: Sequence[str], fields: Collection[str], cap: int) -> Any:
    """Terms of ``fields`` that contain every word (each of 3+ characters), through the
    substring indexes: the substring selects of a search for one lookup."""
    selects = lookup_selects(dialect, Lookup(words[0], frozenset(fields), tuple(words)), cap)[1:]
    if not selects:
        raise ValueError("no substring index for these fields")
    return selects[0] if len(selects) == 1 else union_all(*selects)


def prefix_query(dialect: str, term: str, fields: Collection[str], cap: int) -> Select:
    """Terms of ``fields`` equal to or starting with ``term`` (B-tree range): the prefix
    select of a search for one lookup."""
    return lookup_selects(dialect, Lookup(term, frozenset(fields), ()), cap)[0]


async def substring_candidates(
    session: AsyncSession, words: Sequence[str], fields: Collection[str], cap: int
) -> list[Candidate]:
    dialect = session.get_bind().dialect.name
    result = await session.execute(substring_query(dialect, words, fields, cap))
    return [Candidate(row.owner_type, row.owner_id, row.field, row.term) for row in result]


# --- the search in one statement: lookups, best match per owner, ranked page, totals ------


class PageRow(NamedTuple):
    """A client (``a, b, c`` = kind, INN, main phone) or a car (plate, VIN, body number),
    with the tier and field of its best match."""

    owner_type: str
    id: int
    name: str
    a: str | None
    b: str | None
    c: str | None
    year: int | None
    last_activity_at: datetime
    tier: int
    field: str


class SearchPage(NamedTuple):
    rows: list[PageRow]  # the clients, then the cars, each ranked
    clients_total: int
    cars_total: int
    capped: bool  # a lookup hit its cap: there are more matches than the totals say


def _page_statement(
    dialect: str, shape: Shape, joined: bool, condition: ColumnElement[bool] | None
) -> Any:
    """The whole search as one statement. ``cand``: every lookup's rows; ``owners``: each
    client and car once, with its best tier (then the earliest lookup) and that match's
    field, kept by ``condition`` on the client when given; then each kind's page (ORDER BY
    tier, latest activity, name in code point order on both databases, id; LIMIT and
    OFFSET, the cars' counted after the clients when ``joined``); every row also carries
    the totals, and a page past the end is one row of totals alone."""
    parts = _part_selects(dialect, shape, with_term=False)
    cand = union_all(*(select_ for _, select_ in parts)).cte("cand")
    owners_q: Select
    if dialect == "sqlite":
        # SQLite's own: next to min(), a bare column takes its value from the row with the
        # minimum. A third cheaper than the window below for a few hundred candidates.
        # Grouped by one integer per owner (a car's id odd, a client's even) rather than
        # by (type, id): SQLite's sorter compares a lone integer key without decoding the
        # record, a twentieth of a surname search's SQLite work.
        is_car = type_coerce(cand.c.owner_type == literal_column("'car'"), Integer)
        best = (
            select(
                cand.c.owner_type,
                cand.c.owner_id,
                cand.c.field,
                func.min(cand.c.tier * PART_SPAN + cand.c.part).label("key"),
            )
            .group_by(cand.c.owner_id * literal_column("2") + is_car)
            .subquery("best")
        )
        tier = best.c.key.op("/")(PART_SPAN)  # integer division
        owners_q = select(best.c.owner_type, best.c.owner_id, best.c.field, tier.label("tier"))
    else:
        best = select(
            cand.c.owner_type,
            cand.c.owner_id,
            cand.c.field,
            cand.c.tier,
            func.row_number()
            .over(
                partition_by=(cand.c.owner_type, cand.c.owner_id),
                order_by=(cand.c.tier, cand.c.part),
            )
            .label("rn"),
        ).subquery("best")
        owners_q = select(best.c.owner_type, best.c.owner_id, best.c.field, best.c.tier).where(
            best.c.rn == 1
        )
    if condition is not None:
        cars_of_kept = (
            select(ClientCar.car_id)
            .join(Client, Client.id == ClientCar.client_id)
            .where(condition)
        )
        owners_q = owners_q.where(
            or_(
                and_(
                    best.c.owner_type == "client",
                    best.c.owner_id.in_(select(Client.id).where(condition)),
                ),
                and_(best.c.owner_type == "car", best.c.owner_id.in_(cars_of_kept)),
            )
        )
    owners = owners_q.cte("owners")
    n_clients = (
        select(func.count()).select_from(owners).where(owners.c.owner_type == "client")
    ).scalar_subquery()
    n_cars = (
        select(func.count()).select_from(owners).where(owners.c.owner_type == "car")
    ).scalar_subquery()
    greatest: Any = func.max if dialect == "sqlite" else func.greatest
    # The most rows any one lookup gave (it hit its cap if that is the cap): a count per
    # part, each a scan of the candidates, rather than a GROUP BY and its sorter.
    per_part = [
        select(func.count()).select_from(cand).where(cand.c.part == literal_column(str(part)))
        .scalar_subquery()
        for part, _ in parts
    ]  # fmt: skip
    capped = per_part[0] if len(per_part) == 1 else greatest(*per_part)

    def ranking(tier: Any, activity: Any, name: Any, id_: Any) -> tuple[Any, ...]:
        # Names in code point order on both databases.
        return (tier, activity.desc(), name.collate("C") if dialect == "postgresql" else name, id_)

    offset = bindparam("offset", type_=Integer)
    limit = bindparam("limit", type_=Integer)
    pages = []
    for kind in ("client", "car"):
        model: type[Client] | type[Car] = Client if kind == "client" else Car
        if kind == "client":
            cols: tuple[Any, ...] = (
                type_coerce(Client.kind, String).label("a"),
                Client.inn.label("b"),
                Client.main_phone.label("c"),
                cast(null(), Integer).label("year"),  # typed: PostgreSQL reads NULL as text
            )
        else:
            cols = (
                Car.plate.label("a"),
                Car.vin.label("b"),
                Car.body_number.label("c"),
                Car.year.label("year"),
            )
        start: Any = offset
        count: Any = limit
        if kind == "car" and joined:  # one list: the clients, then the cars
            start = greatest(offset - n_clients, 0)
            count = greatest(offset + limit - greatest(offset, n_clients), 0)
        ranked = (
            select(
                literal_column(f"'{kind}'", String).label("owner_type"),
                model.id,
                model.name,
                *cols,
                model.last_activity_at,
                owners.c.tier,
                owners.c.field,
            )
            .select_from(owners)
            .join(model, and_(owners.c.owner_type == kind, model.id == owners.c.owner_id))
            .order_by(*ranking(owners.c.tier, model.last_activity_at, model.name, model.id))
            .offset(start)
            .limit(count)
        )
        pages.append(select(ranked.subquery()))
    page = union_all(*pages).subquery("page")
    totals = select(
        n_clients.label("n_clients"), n_cars.label("n_cars"), capped.label("most")
    ).subquery("totals")
    return (
        select(totals, page)
        .select_from(totals.outerjoin(page, true()))
        .order_by(
            page.c.owner_type != "client",
            *ranking(page.c.tier, page.c.last_activity_at, page.c.name, page.c.id),
        )
    )


@functools.lru_cache(maxsize=256)
def _page_template(dialect: str, shape: Shape, joined: bool) -> Any:
    return _page_statement(dialect, shape, joined, None)


async def search_page(
    session: AsyncSession,
    lookups: Sequence[Lookup],
    cap: int,
    *,
    offset: int,
    limit: int,
    joined: bool,
    condition: ColumnElement[bool] | None = None,
) -> SearchPage:
    """One page of a search, found and ranked in one statement. ``joined``: ``offset`` and
    ``limit`` cut the list of the clients followed by the cars (one page of the search
    screen); else each kind's list on its own. ``condition``: only clients meeting it and
    the cars of such clients (the search's filters)."""
    dialect = session.get_bind().dialect.name
    shape, params = _shape_and_params(dialect, lookups, cap)
    params["offset"], params["limit"] = offset, limit
    stmt = (
        _page_template(dialect, shape, joined)
        if condition is None
        else _page_statement(dialect, shape, joined, condition)
    )
    result = (await read(session, stmt, params)).all()
    first = result[0]
    rows = [
        PageRow(
            r.owner_type, r.id, r.name, r.a, r.b, r.c, r.year,
            r.last_activity_at, r.tier, r.field,
        )
        for r in result
        if r.owner_type is not None
    ]  # fmt: skip
    return SearchPage(rows, first.n_clients, first.n_cars, first.most >= cap)
