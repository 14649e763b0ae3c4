"""Engine and session factory. SQLite gets WAL, foreign keys and a busy timeout on every
connection, and write transactions that read first can ask for ``BEGIN IMMEDIATE``."""

from __future__ import annotations

import collections
import sqlite3
from collections.abc import AsyncIterator, Iterator, Mapping, MutableMapping
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import aiosqlite
from sqlalchemy import event
from sqlalchemy.dialects.sqlite.aiosqlite import (
    AsyncAdapt_aiosqlite_connection,
    AsyncAdapt_aiosqlite_cursor,
    AsyncAdapt_aiosqlite_dbapi,
)
from sqlalchemy.engine import Result, make_url
from sqlalchemy.ext.asyncio import (
    AsyncEngine,
    AsyncSession,
    async_sessionmaker,
    create_async_engine,
)
from sqlalchemy.sql import Executable
from sqlalchemy.util import LRUCache

# Imported for its flush hook, which keeps search terms in step with every ORM write.
from storage import search_index  # noqa: F401

IMMEDIATE = "ccbot_sqlite_immediate"
READS_ONLY = "ccbot_sqlite_reads_only"
MMAP_BYTES = 2**31 - 2**16  # SQLite's default upper limit (SQLITE_MAX_MMAP_SIZE)


def sqlite_path(url: str) -> Path | None:
    parsed = make_url(url)
    if parsed.get_backend_name() != "sqlite" or not parsed.database:
        return None
    if parsed.database == ":memory:" or parsed.database.startswith("file:"):
        return None
    return Path(parsed.database)


def make_engine(url: str, **kwargs: Any) -> AsyncEngine:
    """An engine for ``url``; an SQLite file's folder is created on first use. Its
    compiled statements are kept in a :class:`StatementCache`."""
    options = dict(kwargs.pop("execution_options", None) or {})
    options.setdefault("compiled_cache", StatementCache())
    kwargs["execution_options"] = options
    if make_url(url).get_backend_name() == "sqlite":
        path = sqlite_path(url)
        if path is not None:
            path.parent.mkdir(parents=True, exist_ok=True)
        kwargs.setdefault("module", _ONE_TRIP_DBAPI)
        engine = create_async_engine(url, connect_args={"timeout": 30}, **kwargs)
        _configure_sqlite(engine)
        return engine
    kwargs.setdefault("pool_pre_ping", True)
    return create_async_engine(url, **kwargs)


class StatementCache(MutableMapping[Any, Any]):
    """SQLAlchemy's cache of compiled statements (the engine's ``compiled_cache``), looked
    up first by the identity of the statement's cache key.

    SQLAlchemy finds a statement's compiled form by hashing its cache key, a nested tuple
    as large as the statement, on every execution. A statement built once (the search's
    page for each shape, the cards', the staff check) keeps the same key object for its
    life, so a key seen before is found by its ``id`` instead: hashing a search's key was
    150-230 thousand instructions, 1-2 % of a search message. Any other key falls back to
    an ordinary LRU cache by hash. Keys are SQLAlchemy's ``(dialect, statement key,
    column keys, schema map, executemany)``; one of another form only takes the LRU path."""

    def __init__(self, size: int = 500) -> None:
        self._lru: LRUCache[Any, Any] = LRUCache(size)
        self._size = size
        # id(statement key) -> (the whole key, kept so that the id stays its own; compiled)
        self._by_id: dict[int, tuple[tuple[Any, ...], Any]] = {}

    def get(self, key: Any, default: Any = None) -> Any:
        if type(key) is tuple and len(key) == 5:
            seen = self._by_id.get(id(key[1]))
            if seen is not None:
                known = seen[0]
                if known[1] is key[1] and known[0] is key[0] and known[2:] == key[2:]:
                    return seen[1]
        found = self._lru.get(key)
        if found is None:
            return default
        self._remember(key, found)
        return found

    def _remember(self, key: Any, compiled: Any) -> None:
        if type(key) is not tuple or len(key) != 5:
            return
        if len(self._by_id) >= self._size:  # the oldest goes: a statement built per call
            del self._by_id[next(iter(self._by_id))]  # brings a new key each time
        self._by_id[id(key[1])] = (key, compiled)

    def __getitem__(self, key: Any) -> Any:
        found = self.get(key)
        if found is None:
            raise KeyError(key)
        return found

    def __setitem__(self, key: Any, compiled: Any) -> None:
        self._lru[key] = compiled
        self._remember(key, compiled)

    def __delitem__(self, key: Any) -> None:
        del self._lru[key]
        if type(key) is tuple and len(key) == 5:
            seen = self._by_id.get(id(key[1]))
            if seen is not None and seen[0][1] is key[1]:
                del self._by_id[id(key[1])]

    def __iter__(self) -> Iterator[Any]:
        return iter(self._lru)

    def __len__(self) -> int:
        return len(self._lru)

    def clear(self) -> None:
        self._lru.clear()
        self._by_id.clear()


def _configure_sqlite(engine: AsyncEngine) -> None:
    @event.listens_for(engine.sync_engine, "connect")
    def _on_connect(dbapi_connection: Any, _record: Any) -> None:
        # We emit BEGIN ourselves (below), so that BEGIN IMMEDIATE is possible.
        dbapi_connection.isolation_level = None
        cursor = dbapi_connection.cursor()
        cursor.execute("PRAGMA journal_mode=WAL")
        cursor.execute("PRAGMA foreign_keys=ON")
        cursor.execute("PRAGMA busy_timeout=30000")
        cursor.execute("PRAGMA synchronous=NORMAL")
        # Reads straight from the OS's page cache instead of copying every page into
        # SQLite's own 2 MB cache: a name search (a few hundred candidates from two
        # indexes, ranked) no longer evicts its own pages as it goes, about a third less
        # of its time at 1M clients (docs/performance.md). Address space only; SQLite caps
        # it at 2 GB by default.
        cursor.execute(f"PRAGMA mmap_size={MMAP_BYTES}")
        cursor.close()

    @event.listens_for(engine.sync_engine, "begin")
    def _on_begin(conn: Any) -> None:
        options = conn.get_execution_options()
        if options.get(READS_ONLY, False):
            return  # each SELECT is atomic on its own: see begin_reads
        begin = "BEGIN IMMEDIATE" if options.get(IMMEDIATE, False) else "BEGIN"
        dbapi = conn.connection.dbapi_connection
        if isinstance(dbapi, _OneTripConnection):
            dbapi.pending_begin = begin  # sent with the first statement, in its trip
        else:
            conn.exec_driver_sql(begin)


def make_session_factory(engine: AsyncEngine) -> async_sessionmaker[AsyncSession]:
    return async_sessionmaker(engine, expire_on_commit=False, autoflush=False)


@asynccontextmanager
async def write_transaction(
    factory: async_sessionmaker[AsyncSession],
) -> AsyncIterator[AsyncSession]:
    """A session in a transaction that takes the write lock first on SQLite (so that a
    read-then-write cannot fail with "database is locked" halfway) and commits on exit."""
    async with factory() as session, session.begin():
        await session.connection(execution_options={IMMEDIATE: True})
        yield session


async def begin_immediate(session: AsyncSession) -> None:
    """Start the session's transaction with the write lock (SQLite); no-op elsewhere."""
    await session.connection(execution_options={IMMEDIATE: True})


async def begin_reads(session: AsyncSession) -> None:
    """Start a "transaction" of reads that need no snapshot together: the staff check of
    every update, a search, a screen that only shows what it reads. On SQLite it needs no
    BEGIN, nor a trip to end it: each SELECT is atomic on its own (a screen's statements
    may then see moments a few milliseconds apart). Call it before anything else in the
    session's transaction; in one that ``begin_reads`` began already (the staff check's,
    which a handler flagged ``handlers.ONLY_READS`` goes on with) it does nothing. A write
    in it would commit on its own, at once: keep to a single statement (the audit row of a
    refused press)."""
    if in_reads(session):
        return
    await session.connection(execution_options={READS_ONLY: True})
    session.info[READS_ONLY] = session.get_transaction()


async def read(
    session: AsyncSession, statement: Executable, params: Mapping[str, Any] | None = None
) -> Result[Any]:
    """Run a statement of columns (no ORM objects in its rows) in the session's transaction
    on its connection, past the session's ORM execute path: about a sixth less of the
    statement's Python work, for the statements of every search and card
    (docs/performance.md). Nothing of the session's is skipped: its sessions never
    autoflush (:func:`session_factory`), and no ORM execute hook is installed."""
    connection = await session.connection()
    return await connection.execute(statement, params)


def in_reads(session: AsyncSession) -> bool:
    """Whether the session's transaction is one that :func:`begin_reads` began."""
    transaction = session.get_transaction()
    return transaction is not None and session.info.get(READS_ONLY) is transaction


# --- SQLite: one trip to aiosqlite's thread per statement --------------------------------


class _OneTripCursor(AsyncAdapt_aiosqlite_cursor):
    """Runs a statement, fetches its rows and closes the ``sqlite3`` cursor in one call on
    aiosqlite's worker thread. SQLAlchemy's own cursor makes four (cursor, execute,
    fetchall, close), each a hand-off to the thread and back to the event loop; at a few
    statements per update that was a large share of the bot's CPU time."""

    __slots__ = ("_one_description", "_one_lastrowid", "_one_rowcount")

    def __init__(self, adapt_connection: Any) -> None:
        self._adapt_connection = adapt_connection
        self._connection = adapt_connection._connection
        self._cursor = None  # type: ignore[assignment]
        self._soft_closed_memoized = {}  # type: ignore[assignment]
        self._rows = collections.deque()
        self._one_description: Any = None
        self._one_rowcount = -1
        self._one_lastrowid: int | None = None

    @property
    def description(self) -> Any:
        return self._one_description

    @property
    def rowcount(self) -> int:
        return self._one_rowcount

    @property
    def lastrowid(self) -> int:
        return self._one_lastrowid  # type: ignore[return-value]

    @property
    def arraysize(self) -> int:
        return 1

    @arraysize.setter
    def arraysize(self, value: int) -> None:
        pass

    async def _async_soft_close(self) -> None:
        pass  # nothing is open between calls

    async def _run(self, work: Any) -> None:
        conn: aiosqlite.Connection = self._connection  # type: ignore[assignment]
        adapted: _OneTripConnection = self._adapt_connection  # type: ignore[assignment]
        begin, adapted.pending_begin = adapted.pending_begin, None

        def call() -> tuple[Any, list[Any] | None, int, int | None]:
            cursor = conn._conn.cursor()
            try:
                if begin is not None:
                    cursor.execute(begin)
                work(cursor)
                rows = cursor.fetchall() if cursor.description else None
                return cursor.description, rows, cursor.rowcount, cursor.lastrowid
            finally:
                cursor.close()

        async with self._adapt_connection._execute_mutex:
            description, rows, rowcount, lastrowid = await conn._execute(call)
        self._one_description, self._one_rowcount = description, rowcount
        self._one_lastrowid = lastrowid
        self._rows = collections.deque(rows or ())

    async def _execute_async(self, operation: Any, parameters: Any) -> Any:
        def work(cursor: sqlite3.Cursor) -> None:
            if parameters is None:
                cursor.execute(operation)
            else:
                cursor.execute(operation, parameters)

        await self._run(work)

    async def _executemany_async(self, operation: Any, seq_of_parameters: Any) -> Any:
        await self._run(lambda cursor: cursor.executemany(operation, seq_of_parameters))


class _OneTripConnection(AsyncAdapt_aiosqlite_connection):
    """The BEGIN of a transaction waits for its first statement and goes to the thread in
    the same trip (``pending_begin``): a trip less per transaction, in the same order."""

    __slots__ = ("pending_begin",)
    _cursor_cls = _OneTripCursor

    def __init__(self, dbapi: Any, connection: Any) -> None:
        super().__init__(dbapi, connection)
        self.pending_begin: str | None = None

    # With isolation_level None, sqlite3 is in a transaction only after our BEGIN; ending
    # none is a trip to the thread for nothing: the pool rolls back every connection put
    # back, right after the session ended its transaction (twice per update).
    def commit(self) -> None:
        self.pending_begin = None  # a transaction that ran no statement: nothing to end
        if self._in_transaction():
            super().commit()

    def rollback(self) -> None:
        self.pending_begin = None
        if self._in_transaction():
            super().rollback()

    def _in_transaction(self) -> bool:
        conn: aiosqlite.Connection = self._connection  # type: ignore[assignment]
        try:
            return conn.in_transaction
        except Exception:  # closed or unusable: let the driver say so
            return True


class _OneTripDBAPI(AsyncAdapt_aiosqlite_dbapi):
    def connect(self, *arg: Any, **kw: Any) -> AsyncAdapt_aiosqlite_connection:
        adapted = super().connect(*arg, **kw)
        return _OneTripConnection(self, adapted._connection)


_ONE_TRIP_DBAPI = _OneTripDBAPI(aiosqlite, sqlite3)
