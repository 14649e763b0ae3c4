"""The search queries, per dialect. Every query here is served by an index: for
substrings, on SQLite an FTS5 trigram index of the free-text fields and a B-tree of the
codes' grams (migration 0010), on PostgreSQL a pg_trgm GIN index (migration 0002); the
B-tree on ``search_terms.term`` for exact and prefix matches."""

from __future__ import annotations

import functools
import json
from collections.abc import Collection, Mapping, Sequence
from datetime import datetime
from typing import Any, NamedTuple

from sqlalchemy import (
    ColumnElement,
    Integer,
    Select,
    String,
    bindparam,
    case,
    cast,
    column,
    func,
    literal_column,
    null,
    select,
    table,
    type_coerce,
    union_all,
)
from sqlalchemy.ext.asyncio import AsyncSession

from storage.models import Car, Client, SearchTerm

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


class TaggedCandidate(NamedTuple):
    part: int  # PARTS × the lookup's position + PREFIX, TEXT or CODES
    owner_type: str
    owner_id: int
    field: str
    term: str


def _split(dialect: str, fields: Collection[str]) -> tuple[list[str], list[str]]:
    """The fields of a substring lookup by index: (free text, codes). PostgreSQL has one
    index for all of them."""
    if dialect != "sqlite":
        return sorted(fields), []
    return sorted(f for f in fields if f in TEXT_FIELDS), sorted(
        f for f in fields if f not in TEXT_FIELDS
    )


def lookups_query(dialect: str, lookups: Sequence[Lookup], cap: int) -> tuple[Any, dict]:
    """Every lookup of a search in one statement: per folded form, the B-tree prefix select
    and (with words) the substring selects, each with its own LIMIT, tagged with ``part``.
    One statement instead of several per form: in this process each statement costs more
    than the index lookup it runs. Returns the statement and its parameters; statements
    are built once per shape (how many forms, how many words, which indexes)."""
    params: dict[str, Any] = {"cap": cap}
    shape: list[tuple[int, tuple[str, ...], tuple[str, ...], tuple[str, ...]]] = []
    for i, lookup in enumerate(lookups):
        params[f"t{i}"] = lookup.term
        params[f"u{i}"] = lookup.term + TOP
        text, codes = _split(dialect, lookup.fields) if lookup.words else ([], [])
        shape.append((len(lookup.words), tuple(sorted(lookup.fields)), tuple(text), tuple(codes)))
        if text:
            if dialect == "sqlite":
                params[f"m{i}"] = " AND ".join(_fts_phrase(w) for w in lookup.words)
            else:
                for j, word in enumerate(lookup.words):
                    params[f"w{i}_{j}"] = f"%{_like_escape(word)}%"
        if codes:
            longest = max(lookup.words, key=len)
            params[f"g{i}"] = longest[:GRAM]
            params[f"h{i}"] = longest[:GRAM] + TOP
            for j, word in enumerate(lookup.words):
                params[f"w{i}_{j}"] = word
    return _lookups_template(dialect, tuple(shape)), params


def _fields_in(fields: tuple[str, ...]) -> ColumnElement[bool]:
    """``field IN ('name', ...)`` written into the statement: the fields are part of its
    shape, and a list parameter would be rendered anew on every execution."""
    if not all(f.isascii() and f.isalpha() for f in fields):
        raise ValueError(f"not a field name: {fields!r}")
    return SearchTerm.field.in_([literal_column(f"'{f}'") for f in fields])


@functools.lru_cache(maxsize=512)
def _lookups_template(
    dialect: str, shape: tuple[tuple[int, tuple[str, ...], tuple[str, ...], tuple[str, ...]], ...]
) -> Any:
    cols = (SearchTerm.owner_type, SearchTerm.owner_id, SearchTerm.field, SearchTerm.term)
    cap = bindparam("cap", type_=Integer)
    parts: list[Select] = []
    for i, (words, fields, text, codes) in enumerate(shape):
        prefix = (
            select(*cols)
            .where(SearchTerm.term >= bindparam(f"t{i}"), SearchTerm.term < bindparam(f"u{i}"))
            .where(_fields_in(fields))
            .order_by(SearchTerm.term)
            .limit(cap)
        )
        selects = [(PARTS * i + PREFIX, prefix)]
        if text and dialect == "sqlite":
            fts = SEARCH_FTS_TEXT
            selects.append(
                (
                    PARTS * i + TEXT,
                    select(*cols)
                    .select_from(fts)
                    .join(SearchTerm, SearchTerm.id == -fts.c.rowid)
                    .where(fts.c.term.op("MATCH")(bindparam(f"m{i}", type_=String)))
                    .where(_fields_in(text))
                    .limit(cap),  # the index's own order: the newest first
                )
            )
        elif text:
            likes = [
                SearchTerm.term.like(bindparam(f"w{i}_{j}", type_=String), escape="\\")
                for j in range(words)
            ]
            selects.append(
                (
                    PARTS * i + TEXT,
                    select(*cols).where(*likes).where(_fields_in(text)).limit(cap),
                )
            )
        if codes:
            grams = SEARCH_GRAMS
            found = [
                func.instr(SearchTerm.term, bindparam(f"w{i}_{j}", type_=String)) > 0
                for j in range(words)
            ]
            selects.append(
                (
                    PARTS * i + CODES,
                    select(*cols)
                    .select_from(grams)
                    .join(SearchTerm, SearchTerm.id == grams.c.term_id)
                    .where(
                        grams.c.gram >= bindparam(f"g{i}", type_=String),
                        grams.c.gram < bindparam(f"h{i}", type_=String),
                    )
                    .where(_fields_in(codes), *found)
                    .limit(cap),
                )
            )
        for tag, stmt in selects:
            sub = stmt.subquery()
            parts.append(select(literal_column(str(tag)).label("part"), *sub.c))
    return parts[0] if len(parts) == 1 else union_all(*parts)


def substring_query(dialect: str, words: Sequence[str], fields: Collection[str], cap: int) -> Any:
    """Terms of ``fields`` that contain every word (each of 3+ characters), through the
    substring indexes: the substring selects of :func:`lookups_query` for one lookup."""
    lookup = Lookup(words[0], frozenset(fields), tuple(words))
    stmt, params = lookups_query(dialect, [lookup], cap)
    selects = stmt.selects[1:] if hasattr(stmt, "selects") else []
    if not selects:
        raise ValueError("no substring index for these fields")
    query = selects[0] if len(selects) == 1 else union_all(*selects)
    return query.params(**params)


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
    return [Candidate(*row[1:]) for row in result]


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


def _ids(dialect: str, name: str) -> Any:
    """A list of ids as one parameter. On SQLite a JSON array read by ``json_each``: an
    expanding ``IN`` is rendered anew for every length, and SQLite prepares each rendering
    again (hundreds of parameters for a capped search)."""
    if dialect == "sqlite":
        return select(func.json_each(bindparam(name, type_=String)).table_valued("value").c.value)
    return bindparam(name, expanding=True)


def _id_list(dialect: str, ids: Sequence[int]) -> Any:
    return json.dumps(list(ids)) if dialect == "sqlite" else list(ids)


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
            (model.id.in_(_ids(dialect, f"tier_{kind}_{t}")), literal_column(str(t)))
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
        .where(model.id.in_(_ids(dialect, f"ids_{kind}")))
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
        params[f"ids_{kind}"] = _id_list(dialect, [i for t in tiers for i in by_tier[t]])
        for t in tiers[:-1]:
            params[f"tier_{kind}_{t}"] = _id_list(dialect, by_tier[t])
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
