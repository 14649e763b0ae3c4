"""Batched inserts for big loads (the demo shop, benchmarks): a million clients in minutes.

The caller assigns every id itself, so rows can point at each other before anything is
written, and hands rows over as dicts keyed by column name (every row of a table with the
same keys). :meth:`BulkLoader.flush` writes what it holds in one transaction, parents before
children (``Base.metadata.sorted_tables``), each table in batches of ``batch_rows``:

* SQLite: the statement of a Core ``insert()`` run with ``executemany`` on the driver, the
  values converted the way the column types would (aware datetimes to UTC text);
* PostgreSQL: ``COPY`` through asyncpg's ``copy_records_to_table`` inside the same
  transaction; afterwards the id sequences are moved past the ids that were given.

With ``defer_reference_checks`` PostgreSQL checks the foreign keys once at the end instead
of row by row (see :meth:`BulkLoader._reference_triggers`).

These writes bypass the ORM, so the flush hook of ``storage.search_index`` does not see
them: the caller writes ``search_terms`` rows itself (``storage.search_index.term_rows``).
With ``defer_search_index`` the substring index over ``search_terms`` is taken down for the
load and built once at the end, which is much faster than keeping it up row by row: on
SQLite the three triggers are dropped, the indexes emptied and filled again from
``search_terms`` (migration 0010), on PostgreSQL the pg_trgm GIN index is dropped and
created again (migration 0002). Both use the statements of their migration, so the index
comes back exactly as the migration made it. :meth:`BulkLoader.finish` (also
run on the way out of ``async with`` after an error) restores the index and runs ANALYZE
(PostgreSQL: VACUUM ANALYZE).
"""

from __future__ import annotations

import importlib
from collections.abc import Callable, Iterable, Mapping, Sequence
from datetime import UTC, datetime
from operator import itemgetter
from types import ModuleType
from typing import Any

from sqlalchemy import Table, and_, exists, func, insert, select
from sqlalchemy.exc import DBAPIError
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from storage.models import Base, UTCDateTime

BATCH_ROWS = 10_000

Row = Mapping[str, Any]
_Convert = Callable[[Row], Sequence[Any]]


def search_index_migration(dialect: str) -> ModuleType:
    """The migration whose statements make the substring index over ``search_terms``:
    0010 on SQLite, 0002 on PostgreSQL."""
    name = "0010_search_grams" if dialect == "sqlite" else "0002_search_index"
    return importlib.import_module(f"storage.migrations.versions.{name}")


def _sqlite_datetime(value: datetime) -> str:
    """Exactly what SQLAlchemy's SQLite DateTime stores for UTCDateTime's value, so that
    comparisons with bound parameters hold: ``2024-01-02 03:04:05.000000``."""
    if value.tzinfo is None:
        raise ValueError("naive datetime given; use an aware UTC datetime")
    if value.tzinfo is not UTC:
        value = value.astimezone(UTC)
    text = value.replace(tzinfo=None).isoformat(" ")
    return text if value.microsecond else text + ".000000"


class RowBuffer:
    """Rows waiting to be written, per table. A producer (say, a thread making the next
    chunk) can fill one while :meth:`BulkLoader.write` writes another."""

    __slots__ = ("tables",)

    def __init__(self) -> None:
        self.tables: dict[str, list[Row]] = {}

    def add(self, table: str, row: Row) -> None:
        rows = self.tables.get(table)
        if rows is None:
            self.tables[table] = [row]
        else:
            rows.append(row)

    def extend(self, table: str, rows: Iterable[Row]) -> None:
        self.tables.setdefault(table, []).extend(rows)

    def __len__(self) -> int:
        return sum(len(rows) for rows in self.tables.values())


class BulkLoader:
    """Buffers rows per table and writes them in big batches; see the module docstring.

    Use as ``async with BulkLoader(engine) as loader``: :meth:`add` rows and :meth:`flush`
    every few thousand clients, or :meth:`write` whole :class:`RowBuffer` s (one
    transaction each), and leave the block to finish.
    """

    def __init__(
        self,
        engine: AsyncEngine,
        *,
        batch_rows: int = BATCH_ROWS,
        defer_search_index: bool = False,
        defer_reference_checks: bool = False,
    ) -> None:
        self.engine = engine
        self.dialect = engine.dialect.name
        if self.dialect not in ("sqlite", "postgresql"):
            raise NotImplementedError(f"no bulk loading for {self.dialect}")
        self.batch_rows = batch_rows
        self.defer_search_index = defer_search_index
        self.defer_reference_checks = defer_reference_checks and self.dialect == "postgresql"
        self.tables: dict[str, Table] = {t.name: t for t in Base.metadata.sorted_tables}
        self.pending = RowBuffer()
        self.written: dict[str, int] = {}
        self._columns: dict[str, tuple[str, ...]] = {}
        self._convert: dict[str, _Convert] = {}
        self._sql: dict[str, str] = {}
        self._conn: AsyncConnection | None = None
        self._index_down = False
        self._checks_off = False
        self._finished = False

    # --- the public interface ---------------------------------------------------------

    async def __aenter__(self) -> BulkLoader:
        self._conn = await self.engine.connect()
        if self.dialect == "sqlite":
            # A bigger page cache keeps the B-trees of the big tables in memory.
            await self._conn.exec_driver_sql("PRAGMA cache_size=-262144")
            await self._conn.commit()
        if self.defer_search_index:
            await self._take_down_search_index()
        if self.defer_reference_checks:
            await self._reference_triggers(enabled=False)
        return self

    async def __aexit__(self, exc_type: object, exc: object, tb: object) -> None:
        if exc_type is None:
            await self.finish()
            return
        try:
            if self._conn is not None:
                await self._conn.rollback()
                await self._reference_triggers(enabled=True)
                if self.dialect == "postgresql":
                    # The chunks written so far stay: later inserts must not reuse their ids.
                    await self._reset_sequences(self._conn)
                    await self._conn.commit()
            await self._restore_search_index()
        finally:
            await self._close()

    def add(self, table: str, row: Row) -> None:
        self.pending.add(table, row)

    def extend(self, table: str, rows: Iterable[Row]) -> None:
        self.pending.extend(table, rows)

    async def flush(self) -> None:
        """Writes every row added so far, parents first, in one transaction."""
        pending, self.pending = self.pending, RowBuffer()
        await self.write(pending)

    async def write(self, buffer: RowBuffer) -> None:
        """Writes the rows of ``buffer``, parents first, in one transaction."""
        conn = self._connection()
        unknown = [
            name for name, rows in buffer.tables.items() if rows and name not in self.tables
        ]
        if unknown:
            raise ValueError(f"unknown tables: {sorted(unknown)}")
        if not len(buffer):
            return
        for name, table in self.tables.items():
            rows = buffer.tables.get(name)
            if not rows:
                continue
            for start in range(0, len(rows), self.batch_rows):
                await self._write(conn, table, rows[start : start + self.batch_rows])
            self.written[name] = self.written.get(name, 0) + len(rows)
        await conn.commit()

    async def finish(self) -> None:
        """Writes what is left, restores the search index, fixes sequences, ANALYZE."""
        if self._finished:
            return
        try:
            await self.flush()
            await self._restore_search_index()
            conn = self._connection()
            if self._checks_off:
                await self._reference_triggers(enabled=True)
                await self._check_references(conn)
            if self.dialect == "postgresql":
                await self._reset_sequences(conn)
                await conn.commit()
                await self._vacuum(conn)
            else:
                # A sample per index is enough for the planner and keeps ANALYZE short.
                await conn.exec_driver_sql("PRAGMA analysis_limit=2000")
                await conn.exec_driver_sql("ANALYZE")
                await conn.commit()
            self._finished = True
        finally:
            await self._close()

    # --- writing ----------------------------------------------------------------------

    def _connection(self) -> AsyncConnection:
        if self._conn is None:
            raise RuntimeError("use BulkLoader in 'async with'")
        return self._conn

    async def _close(self) -> None:
        if self._conn is not None:
            await self._conn.close()
            self._conn = None

    def _prepare(self, table: Table, first: Row) -> None:
        unknown = set(first) - set(table.c.keys())
        if unknown:
            raise ValueError(f"{table.name}: unknown columns {sorted(unknown)}")
        # In the table's order, which is the order the compiled INSERT names them in.
        columns = tuple(key for key in table.c.keys() if key in first)
        self._columns[table.name] = columns
        get = itemgetter(*columns) if len(columns) > 1 else (lambda row: (row[columns[0]],))
        datetimes = [i for i, c in enumerate(columns) if isinstance(table.c[c].type, UTCDateTime)]
        if self.dialect == "postgresql" or not datetimes:
            self._convert[table.name] = get
        else:

            def convert(row: Row) -> tuple[Any, ...]:
                values = list(get(row))
                for i in datetimes:
                    if values[i] is not None:
                        values[i] = _sqlite_datetime(values[i])
                return tuple(values)

            self._convert[table.name] = convert
        if self.dialect == "sqlite":
            stmt = insert(table).compile(dialect=self.engine.dialect, column_keys=list(columns))
            self._sql[table.name] = str(stmt)

    async def _write(self, conn: AsyncConnection, table: Table, rows: list[Row]) -> None:
        if table.name not in self._columns:
            self._prepare(table, rows[0])
        columns, convert = self._columns[table.name], self._convert[table.name]
        for row in rows:
            if len(row) != len(columns):
                raise ValueError(f"{table.name}: every row needs the columns {columns}")
        records = [convert(row) for row in rows]
        if self.dialect == "sqlite":
            await conn.exec_driver_sql(self._sql[table.name], records)
            return
        # Anything run through SQLAlchemy starts its transaction; COPY then runs inside it.
        await conn.exec_driver_sql("SELECT 1")
        raw = await conn.get_raw_connection()
        driver = raw.driver_connection
        assert driver is not None
        await driver.copy_records_to_table(table.name, records=records, columns=list(columns))

    async def _vacuum(self, conn: AsyncConnection) -> None:
        """VACUUM (ANALYZE) the tables written: besides the statistics, it sets the hint bits
        and the visibility map of the new pages, so that the first searches do not write
        and index-only scans are possible at all (VACUUM runs outside a transaction)."""
        names = ", ".join(f'"{name}"' for name in self.written)
        if not names:
            return
        auto = await conn.execution_options(isolation_level="AUTOCOMMIT")
        await auto.exec_driver_sql(f"VACUUM (ANALYZE) {names}")

    async def _reset_sequences(self, conn: AsyncConnection) -> None:
        for name in self.written:
            table = self.tables[name]
            if "id" not in table.c or not table.c.id.primary_key:
                continue
            await conn.exec_driver_sql(
                f"SELECT setval(pg_get_serial_sequence('{name}', 'id'), "
                f"COALESCE(MAX(id), 1), MAX(id) IS NOT NULL) FROM {name}"
            )

    # --- references (PostgreSQL) --------------------------------------------------------

    async def _reference_triggers(self, *, enabled: bool) -> None:
        """PostgreSQL checks every foreign key of every row with a trigger, which costs more
        than the insert; ``session_replication_role = replica`` skips them during the load
        (superusers only; others keep the row-by-row checks), and :meth:`_check_references`
        checks everything at the end with one anti-join per foreign key instead. SQLite's
        row checks are plain index look-ups, so it keeps them."""
        if self.dialect != "postgresql" or enabled != self._checks_off:
            return
        conn = self._connection()
        role = "DEFAULT" if enabled else "replica"
        try:
            await conn.exec_driver_sql(f"SET session_replication_role = {role}")
            await conn.commit()
        except DBAPIError:
            await conn.rollback()
            if enabled:
                raise
            return
        self._checks_off = not enabled

    async def _check_references(self, conn: AsyncConnection) -> None:
        """Every foreign key of the tables written points at a row (set-based)."""
        problems = []
        for name in self.written:
            table = self.tables[name]
            for fk in table.foreign_key_constraints:
                parent = fk.referred_table.alias("parent")
                child_cols = [elem.parent for elem in fk.elements]
                match = and_(*(parent.c[e.column.key] == e.parent for e in fk.elements))
                stmt = (
                    select(func.count())
                    .select_from(table)
                    .where(*(c.is_not(None) for c in child_cols))
                    .where(~exists().where(match))
                )
                dangling = await conn.scalar(stmt)
                if dangling:
                    cols = ", ".join(c.name for c in child_cols)
                    problems.append(f"{name}({cols}): {dangling} rows point nowhere")
        if problems:
            raise ValueError("bulk load broke references: " + "; ".join(problems))

    # --- the search index ---------------------------------------------------------------

    def _index_statements(self) -> tuple[list[str], list[str]]:
        """(take down, put back) statements for the substring index, from its migration."""
        m = search_index_migration(self.dialect)
        if self.dialect == "sqlite":
            return [*m.TRIGGERS_DOWN, *m.EMPTY], [*m.FILL, *m.TRIGGERS_UP]
        down = list(m.POSTGRES_DOWN)
        up = [s for s in m.POSTGRES_UP if s.lstrip().upper().startswith("CREATE INDEX")]
        if len(up) != 1:
            raise RuntimeError("migration 0002 no longer has the statements expected")
        return down, up

    async def _take_down_search_index(self) -> None:
        conn = self._connection()
        down, _up = self._index_statements()
        for statement in down:
            await conn.exec_driver_sql(statement)
        await conn.commit()
        self._index_down = True

    async def _restore_search_index(self) -> None:
        if not self._index_down:
            return
        conn = self._connection()
        _down, up = self._index_statements()
        if self.dialect == "postgresql":
            # Building a GIN index is mostly sorting: give it memory.
            await conn.exec_driver_sql("SET maintenance_work_mem = '1GB'")
        for statement in up:
            await conn.exec_driver_sql(statement)
        if self.dialect == "postgresql":
            await conn.exec_driver_sql("RESET maintenance_work_mem")
        await conn.commit()
        self._index_down = False


__all__ = ["BATCH_ROWS", "BulkLoader", "RowBuffer", "search_index_migration"]
