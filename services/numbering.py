"""Document numbers: ``ЦОА0000001``, a prefix and seven digits, one sequence per document
type and prefix (``doc_counters``).

The next value comes from a single upsert, ``INSERT ... ON CONFLICT DO UPDATE SET
last_value = last_value + 1 RETURNING last_value``, which PostgreSQL runs atomically under
the row lock and SQLite (3.35+) runs under its one write lock. Two callers can therefore
never get the same number, and a number is given only if its transaction commits (a rolled
back transaction gives its number back, so the sequence has no holes from failures).

The counter row stays locked until the caller's transaction ends, so the number should be
taken in the transaction that writes the document, as late as possible. On SQLite the
transaction must hold the write lock before it reads anything (``BEGIN IMMEDIATE``, see
``storage.db.write_transaction``), otherwise a read-then-write can fail with "database is
locked"; :func:`next_number` starts such a transaction itself when none is open yet.
"""

from __future__ import annotations

from sqlalchemy import Insert
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.ext.asyncio import AsyncSession

from storage.db import begin_immediate
from storage.models import DocCounter, DocType

DIGITS = 7
MAX_PREFIX = 5  # doc_counters.prefix is String(5)


def format_number(prefix: str, value: int) -> str:
    """``("ЦОА", 1)`` -> ``ЦОА0000001``."""
    return f"{prefix}{value:0{DIGITS}d}"


async def next_number(session: AsyncSession, doc_type: DocType, prefix: str) -> str:
    """The next number of ``doc_type`` with ``prefix``, e.g. ``ЦОА0000001``."""
    if len(prefix) > MAX_PREFIX:
        raise ValueError(f"the prefix {prefix!r} is longer than {MAX_PREFIX} characters")
    if not session.in_transaction():
        await begin_immediate(session)
    dialect = (await session.connection()).dialect.name
    values = {"doc_type": doc_type.value, "prefix": prefix, "last_value": 1}
    key = [DocCounter.doc_type, DocCounter.prefix]
    bump = {"last_value": DocCounter.last_value + 1}
    stmt: Insert
    if dialect == "postgresql":
        pg = postgresql.insert(DocCounter).values(values)
        stmt = pg.on_conflict_do_update(index_elements=key, set_=bump)
    elif dialect == "sqlite":
        lite = sqlite.insert(DocCounter).values(values)
        stmt = lite.on_conflict_do_update(index_elements=key, set_=bump)
    else:
        raise NotImplementedError(f"no atomic numbering for the {dialect} dialect")
    value = (await session.execute(stmt.returning(DocCounter.last_value))).scalar_one()
    return format_number(prefix, int(value))
