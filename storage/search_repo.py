"""The search queries, per dialect. Every query here is served by an index:
FTS5 trigram (SQLite) or pg_trgm GIN (PostgreSQL) for substrings, the B-tree on
``search_terms.term`` for exact and prefix matches."""

from __future__ import annotations

import functools
from collections.abc import Collection, Mapping, Sequence
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
    literal_column,
    null,
    select,
    table,
    type_coerce,
    union_all,
)
from sqlalchemy.ext.asyncio import AsyncSession

from storage.models import Car, Client, SearchTerm

# The FTS5 index made by migration 0002 (SQLite only).
SEARCH_FTS = table("search_fts", column("rowid"), column("term"))

# Above every character a normalised term can hold: term < prefix + TOP is a prefix range.
TOP = "\U0010ffff"


class Candidate(NamedTuple):
    owner_type: str
    owner_id: int
    field: str
    term: str


def _fts_phrase(word: str) -> str:
    return '"' + word.replace('"', '""') + '"'


def _like_escape(word: str) -> str:
    return word.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")


def substring_query(
    dialect: str, words: Sequence[str], fields: Collection[str], cap: int
) -> Select:
    """Terms of ``fields`` that contain every word (each of 3+ characters)."""
    cols = (SearchTerm.owner_type, SearchTerm.owner_id, SearchTerm.field, SearchTerm.term)
    if dialect == "sqlite":
        match = " AND ".join(_fts_phrase(w) for w in words)
        fts_rowid = SEARCH_FTS.c.rowid
        return (
            select(*cols)
            .select_from(SEARCH_FTS)
            .join(SearchTerm, SearchTerm.id == fts_rowid)
            .where(SEARCH_FTS.c.term.op("MATCH")(match))
            .where(SearchTerm.field.in_(sorted(fields)))
            .order_by(fts_rowid.desc())
            .limit(cap)
        )
    conditions = [SearchTerm.term.like(f"%{_like_escape(w)}%", escape="\\") for w in words]
    return (
        select(*cols)
        .where(and_(*conditions))
        .where(SearchTerm.field.in_(sorted(fields)))
        .limit(cap)
    )


def prefix_query(term: str, fields: Collection[str], cap: int) -> Select:
    """Terms of ``fields`` equal to or starting with ``term`` (B-tree range)."""
    return (
        select(SearchTerm.owner_type, SearchTerm.owner_id, SearchTerm.field, SearchTerm.term)
        .where(SearchTerm.term >= term, SearchTerm.term < term + TOP)
        .where(SearchTerm.field.in_(sorted(fields)))
        .order_by(SearchTerm.term)
        .limit(cap)
    )


async def substring_candidates(
    session: AsyncSession, words: Sequence[str], fields: Collection[str], cap: int
) -> list[Candidate]:
    dialect = session.get_bind().dialect.name
    result = await session.execute(substring_query(dialect, words, fields, cap))
    return [Candidate(*row) for row in result]


async def prefix_candidates(
    session: AsyncSession, term: str, fields: Collection[str], cap: int
) -> list[Candidate]:
    result = await session.execute(prefix_query(term, fields, cap))
    return [Candidate(*row) for row in result]


class Lookup(NamedTuple):
    """One folded form of a search: its term, the fields it is looked for in, and the
    words to find anywhere (empty: exact and prefix matches only)."""

    term: str
    fields: frozenset[str]
    words: tuple[str, ...]


class TaggedCandidate(NamedTuple):
    part: int  # 2 × the lookup's position, + 1 for its substring select
    owner_type: str
    owner_id: int
    field: str
    term: str


def lookups_query(dialect: str, lookups: Sequence[Lookup], cap: int) -> tuple[Any, dict]:
    """Every lookup of a search in one statement: per folded form, the B-tree prefix select
    and (with words) the substring select, each with its own LIMIT, tagged with ``part``.
    One statement instead of two per form: in this process each statement costs more than
    the index lookup it runs. Returns the statement and its parameters; statements are
    built once per shape (how many forms, how many words each)."""
    params: dict[str, Any] = {"cap": cap}
    for i, lookup in enumerate(lookups):
        params[f"t{i}"] = lookup.term
        params[f"u{i}"] = lookup.term + TOP
        params[f"f{i}"] = sorted(lookup.fields)
        if dialect == "sqlite":
            if lookup.words:
                params[f"m{i}"] = " AND ".join(_fts_phrase(w) for w in lookup.words)
        else:
            for j, word in enumerate(lookup.words):
                params[f"w{i}_{j}"] = f"%{_like_escape(word)}%"
    shape = tuple(len(lookup.words) for lookup in lookups)
    return _lookups_template(dialect, shape), params


@functools.lru_cache(maxsize=512)
def _lookups_template(dialect: str, shape: tuple[int, ...]) -> Any:
    cols = (SearchTerm.owner_type, SearchTerm.owner_id, SearchTerm.field, SearchTerm.term)
    cap = bindparam("cap", type_=Integer)
    parts: list[Select] = []
    for i, words in enumerate(shape):
        fields: Any = bindparam(f"f{i}", expanding=True)
        prefix = (
            select(*cols)
            .where(SearchTerm.term >= bindparam(f"t{i}"), SearchTerm.term < bindparam(f"u{i}"))
            .where(SearchTerm.field.in_(fields))
            .order_by(SearchTerm.term)
            .limit(cap)
        )
        selects = [(2 * i, prefix)]
        if words and dialect == "sqlite":
            fts_rowid = SEARCH_FTS.c.rowid
            substring = (
                select(*cols)
                .select_from(SEARCH_FTS)
                .join(SearchTerm, SearchTerm.id == fts_rowid)
                .where(SEARCH_FTS.c.term.op("MATCH")(bindparam(f"m{i}", type_=String)))
                .where(SearchTerm.field.in_(fields))
                .order_by(fts_rowid.desc())
                .limit(cap)
            )
            selects.append((2 * i + 1, substring))
        elif words:
            likes = [
                SearchTerm.term.like(bindparam(f"w{i}_{j}", type_=String), escape="\\")
                for j in range(words)
            ]
            substring = select(*cols).where(*likes).where(SearchTerm.field.in_(fields)).limit(cap)
            selects.append((2 * i + 1, substring))
        for tag, stmt in selects:
            sub = stmt.subquery()
            parts.append(select(literal_column(str(tag)).label("part"), *sub.c))
    return parts[0] if len(parts) == 1 else union_all(*parts)


async def tagged_candidates(
    session: AsyncSession, lookups: Sequence[Lookup], cap: int
) -> list[TaggedCandidate]:
    """The candidates of every lookup, in the order of ``lookups`` (prefix before
    substring), each lookup's in the order its index gives them."""
    dialect = session.get_bind().dialect.name
    stmt, params = lookups_query(dialect, lookups, cap)
    result = await session.execute(stmt, params)
    return [TaggedCandidate(*row) for row in result]


# --- one ranked page of clients and of cars ------------------------------------------------


class PageRow(NamedTuple):
    """A client (``a, b, c`` = kind, INN, main phone) or a car (plate, VIN, body number)."""

    owner_type: str
    id: int
    name: str
    a: str | None
    b: str | None
    c: str | None
    year: int | None
    last_activity_at: datetime
    tier: int


@functools.lru_cache(maxsize=64)
def _ranked(dialect: str, kind: str, tiers: tuple[int, ...]) -> Select:
    """The page of ``kind`` among the ids (``ids_<kind>``) grouped by tier
    (``tier_<kind>_<n>``, for each tier in ``tiers``): tier, latest activity, name (code
    point order on both databases), id. Only the page's rows are read. Built once per
    shape."""
    model: type[Client] | type[Car] = Client if kind == "client" else Car
    order: list[Any] = []
    if len(tiers) == 1:
        tier: ColumnElement[int] = literal_column(str(tiers[0]), Integer)
    else:
        # The last tier needs no test: every id is in one of them.
        whens: list[Any] = [
            (model.id.in_(bindparam(f"tier_{kind}_{t}", expanding=True)), literal_column(str(t)))
            for t in tiers[:-1]
        ]
        tier = case(*whens, else_=literal_column(str(tiers[-1])))
        order.append(tier)
    name: Any = model.name
    if dialect == "postgresql":
        name = model.name.collate("C")
    if kind == "client":
        cols: tuple[Any, ...] = (
            type_coerce(Client.kind, String),
            Client.inn,
            Client.main_phone,
            cast(null(), Integer),  # typed: PostgreSQL reads a bare NULL as text
        )
    else:
        cols = (Car.plate, Car.vin, Car.body_number, Car.year)
    return (
        select(
            literal_column(f"'{kind}'", String).label("owner_type"),
            model.id,
            model.name,
            *cols,
            model.last_activity_at,
            tier.label("tier"),
        )
        .where(model.id.in_(bindparam(f"ids_{kind}", expanding=True)))
        .order_by(*order, model.last_activity_at.desc(), name, model.id)
        .offset(bindparam(f"offset_{kind}", type_=Integer))
        .limit(bindparam(f"limit_{kind}", type_=Integer))
    )


@functools.lru_cache(maxsize=64)
def _ranked_union(dialect: str, shapes: tuple[tuple[str, tuple[int, ...]], ...]) -> Any:
    stmts = [_ranked(dialect, kind, tiers) for kind, tiers in shapes]
    if len(stmts) == 1:
        return stmts[0]
    return union_all(*(select(s.subquery()) for s in stmts))


async def ranked_pages(
    session: AsyncSession,
    pages: Sequence[tuple[str, Mapping[int, Sequence[int]], int, int]],
) -> list[PageRow]:
    """One statement for a page of clients and a page of cars: ``pages`` holds
    ``(kind, ids by tier, offset, limit)`` per kind; rows come kind by kind, ranked."""
    dialect = session.get_bind().dialect.name
    shapes = []
    params: dict[str, Any] = {}
    for kind, by_tier, offset, limit in pages:
        if not by_tier or limit <= 0:
            continue
        tiers = tuple(sorted(by_tier))
        shapes.append((kind, tiers))
        params[f"ids_{kind}"] = [i for t in tiers for i in by_tier[t]]
        for t in tiers[:-1]:
            params[f"tier_{kind}_{t}"] = list(by_tier[t])
        params[f"offset_{kind}"], params[f"limit_{kind}"] = offset, limit
    if not shapes:
        return []
    stmt = _ranked_union(dialect, tuple(shapes))
    rows = [PageRow(*row) for row in await session.execute(stmt, params)]
    # The database ranked each page; a compound statement need not keep that order.
    rows.sort(key=_rank_key)
    return rows


def _rank_key(row: PageRow) -> tuple[bool, int, float, str, int]:
    return (
        row.owner_type != "client",
        row.tier,
        -row.last_activity_at.timestamp(),
        row.name,
        row.id,
    )
