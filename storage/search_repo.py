"""The search queries, per dialect. Every query here is served by an index:
FTS5 trigram (SQLite) or pg_trgm GIN (PostgreSQL) for substrings, the B-tree on
``search_terms.term`` for exact and prefix matches."""

from __future__ import annotations

from collections.abc import Collection, Sequence
from typing import NamedTuple

from sqlalchemy import Select, and_, column, select, table
from sqlalchemy.ext.asyncio import AsyncSession

from storage.models import SearchTerm

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
