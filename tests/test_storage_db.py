"""SQLite's connection (storage.db): one trip to aiosqlite's thread per statement, the BEGIN
of a transaction sent with its first statement, nothing sent for a transaction that ran
nothing, and the write lock still taken before the first read of a write transaction."""

from __future__ import annotations

import asyncio

import aiosqlite
import pytest
from sqlalchemy import select, text

from storage.db import (
    StatementCache,
    begin_immediate,
    begin_reads,
    make_engine,
    make_session_factory,
    write_transaction,
)
from storage.models import Staff


@pytest.fixture
async def sqlite_engine(sqlite_url):
    engine = make_engine(sqlite_url)
    yield engine
    await engine.dispose()


@pytest.fixture
def trips(monkeypatch):
    """Every call made on aiosqlite's worker thread, counted."""
    made = [0]
    original = aiosqlite.Connection._execute

    async def counted(self, fn, *args, **kwargs):
        made[0] += 1
        return await original(self, fn, *args, **kwargs)

    monkeypatch.setattr(aiosqlite.Connection, "_execute", counted)
    return made


async def _statements(session) -> list[str]:
    """What SQLite runs on the session's connection from now on."""
    raw = (await session.connection()).sync_connection.connection.dbapi_connection
    seen: list[str] = []
    await raw._connection._execute(raw._connection._conn.set_trace_callback, seen.append)
    return seen


async def test_a_read_transaction_is_begin_and_select_in_one_trip(sqlite_engine, trips):
    factory = make_session_factory(sqlite_engine)
    async with factory() as session:
        await session.execute(select(Staff.id))  # warm: the pool's connection exists
        await session.rollback()
        trips[0] = 0
        await session.execute(select(Staff.id).where(Staff.id == 1))
        assert trips[0] == 1  # BEGIN and the SELECT together
        await session.rollback()
        assert trips[0] == 2  # and the ROLLBACK


@pytest.mark.parametrize(
    ("start", "end", "sent", "trips_made"),
    [
        (None, "commit", ["BEGIN", "SELECT 1", "COMMIT"], 2),
        (begin_immediate, "rollback", ["BEGIN IMMEDIATE", "SELECT 1", "ROLLBACK"], 2),
        # A screen's reads (begin_reads): each SELECT on its own, nothing to end after.
        (begin_reads, "rollback", ["SELECT 1"], 1),
    ],
)
async def test_what_a_transaction_sends(sqlite_engine, trips, start, end, sent, trips_made):
    """BEGIN goes first, in the first statement's trip; reads alone send no BEGIN."""
    factory = make_session_factory(sqlite_engine)
    async with factory() as session:
        seen = await _statements(session)
        await session.rollback()
        trips[0] = 0
        if start is not None:
            await start(session)
        await session.execute(text("SELECT 1"))
        await getattr(session, end)()
        assert trips[0] == trips_made
    assert seen == sent


async def test_a_transaction_that_ran_nothing_sends_nothing(sqlite_engine, trips):
    factory = make_session_factory(sqlite_engine)
    async with factory() as session:
        await session.execute(text("SELECT 1"))
        await session.commit()
        trips[0] = 0
        await session.connection()  # begun, nothing run
        await session.commit()
        await session.connection()
        await session.rollback()
        assert trips[0] == 0
        seen = await _statements(session)
        await session.rollback()
        await session.execute(text("SELECT 2"))  # the next one is a transaction of its own
        await session.rollback()
    assert seen == ["BEGIN", "SELECT 2", "ROLLBACK"]


async def test_a_write_transaction_takes_the_lock_before_its_first_read(sqlite_engine):
    """Two read-then-write transactions at once: the second waits for the first at its
    BEGIN IMMEDIATE instead of failing with "database is locked" at its write."""
    factory = make_session_factory(sqlite_engine)
    order: list[str] = []

    async def bump(name: str, hold: float) -> None:
        async with write_transaction(factory) as session:
            count = await session.scalar(text("SELECT count(*) FROM staff"))
            order.append(f"{name} read {count}")
            await asyncio.sleep(hold)
            await session.execute(
                text("INSERT INTO staff (telegram_id, name, role, active, created_at) "
                     "VALUES (:t, :n, 'master', 1, '2026-01-01 00:00:00.000000')"),
                {"t": 1000 + count, "n": name},
            )  # fmt: skip

    await asyncio.gather(bump("first", 0.3), bump("second", 0))
    # Whichever took the lock first, the other read after its write: one read 0, one 1
    # (without the lock both read 0, and one write failed on the same telegram_id).
    assert sorted(line[-1] for line in order) == ["0", "1"]


async def test_one_write_among_reads_is_kept(sqlite_engine):
    """The audit row of a refused press, written after a screen's reads, commits by itself."""
    factory = make_session_factory(sqlite_engine)
    async with factory() as session:
        await begin_reads(session)
        await session.execute(text("SELECT count(*) FROM staff"))
        await session.execute(
            text("INSERT INTO staff (telegram_id, name, role, active, created_at) "
                 "VALUES (7, 'A', 'master', 1, '2026-01-01 00:00:00.000000')")
        )  # fmt: skip
        await session.commit()
    async with factory() as session:
        assert await session.scalar(text("SELECT count(*) FROM staff")) == 1


# --- the compiled-statement cache ----------------------------------------------------------


class _Key:
    """A statement key whose hash is counted (SQLAlchemy's are tuples; a tuple hashes its
    items, so a counted item shows when the whole key was hashed)."""

    hashed = 0

    def __init__(self, name: str) -> None:
        self.name = name

    def __hash__(self) -> int:
        _Key.hashed += 1
        return hash(self.name)

    def __eq__(self, other: object) -> bool:
        return isinstance(other, _Key) and other.name == self.name


def _key(statement_key: tuple, dialect: object = "sqlite", columns: tuple = ()) -> tuple:
    return (dialect, statement_key, columns, False, False)


def test_a_statement_key_seen_before_is_found_without_hashing_it():
    cache = StatementCache()
    built_once = (_Key("select"), 1)
    cache[_key(built_once)] = "compiled"
    _Key.hashed = 0
    for _ in range(3):
        assert cache.get(_key(built_once)) == "compiled"
    assert _Key.hashed == 0


def test_an_equal_key_of_another_statement_is_found_by_hash_then_by_identity():
    cache = StatementCache()
    cache[_key((_Key("select"), 1))] = "compiled"
    rebuilt = (_Key("select"), 1)  # the same statement built again: equal, not identical
    _Key.hashed = 0
    assert cache.get(_key(rebuilt)) == "compiled"
    assert _Key.hashed == 1
    assert cache.get(_key(rebuilt)) == "compiled"
    assert _Key.hashed == 1


def test_the_rest_of_the_key_still_counts():
    cache = StatementCache()
    statement = (_Key("select"), 1)
    cache[_key(statement)] = "compiled"
    assert cache.get(_key(statement, columns=("a",))) is None
    assert cache.get(_key(statement, dialect="postgresql")) is None
    assert cache.get(("another", "shape")) is None
    with pytest.raises(KeyError):
        cache[("another", "shape")]


def test_keys_seen_once_do_not_grow_it_past_its_size():
    cache = StatementCache(size=10)
    for i in range(100):
        cache[_key((_Key(f"select {i}"),))] = i
    assert len(cache) <= 10 * 1.5  # SQLAlchemy's LRU trims in steps
    assert len(cache._by_id) <= 10
    del cache[_key((_Key("select 99"),))]
    assert cache.get(_key((_Key("select 99"),))) is None


async def test_the_engine_compiles_a_statement_once_and_finds_it_by_identity(sqlite_engine):
    cache = sqlite_engine.sync_engine.get_execution_options()["compiled_cache"]
    assert isinstance(cache, StatementCache)
    statement = select(Staff.id).where(Staff.telegram_id == 1)
    async with sqlite_engine.connect() as conn:
        await conn.execute(statement)
        size = len(cache)
        for _ in range(3):
            await conn.execute(statement)
    assert len(cache) == size
    assert id(statement._generate_cache_key().key) in cache._by_id
