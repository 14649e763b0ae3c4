"""Search latency at scale: the indexed search service against a naive LIKE scan.

    python bench/search_bench.py --clients 1000000 --db both [--reuse]

Builds the demo shop (``services.demo``) with ``--clients`` clients on SQLite
(``bench/out/search-<clients>.sqlite3``) and/or PostgreSQL (database ``ccbot_bench`` at
``--pg-url``, created if missing), or reuses the one built before with the same count and
seed (``--reuse``; a marker file in ``bench/out/`` remembers what was built and how long it
took). Then, per kind of query, draws ``--queries`` queries deterministically from the data
and times ``SearchService().search(session, query)`` (the box that takes anything, as the
bot's text search), after ``--warmup`` other queries of the kind. The same queries, ``--naive``
of them, are timed as a naive scan: ``lower(column) LIKE '%query%'`` over the columns the
search terms come from (clients.name, contact_info.value, cars.plate, cars.vin,
cars.body_number), every match fetched, as a search without an index would.

Prints one table (markdown) per run, a breakdown of where the search spends its time (the
one statement of the search, the rest of the service), and with ``--explain`` the plan of
each kind's lookups.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import random
import statistics
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from sqlalchemy import event, func, select, text  # noqa: E402
from sqlalchemy.engine import make_url  # noqa: E402
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession  # noqa: E402

from bot import loop  # noqa: E402
from services.demo import generate  # noqa: E402
from services.search import SearchService  # noqa: E402
from storage import search_repo  # noqa: E402
from storage.db import make_engine, make_session_factory  # noqa: E402
from storage.migrate import upgrade  # noqa: E402
from storage.models import Car, Client, ContactInfo  # noqa: E402

OUT = ROOT / "bench" / "out"
PG_URL = "postgresql+asyncpg://postgres@127.0.0.1:5432/ccbot_bench"
KINDS = ("phone", "plate", "vin", "name")
LATIN = dict(zip("АВЕКМНОРСТУХ", "ABEKMHOPCTYX", strict=True))


# --- building -----------------------------------------------------------------------------


def _marker(db: str, clients: int) -> Path:
    """What was built: SQLite has a file per count, PostgreSQL one database for all."""
    return OUT / (f"search-sqlite-{clients}.json" if db == "sqlite" else "search-postgres.json")


async def _pg_admin(url: str, *statements: str) -> None:
    import asyncpg

    u = make_url(url)
    conn = await asyncpg.connect(
        host=u.host, port=u.port or 5432, user=u.username, password=u.password,
        database="postgres",
    )  # fmt: skip
    try:
        for statement in statements:
            await conn.execute(statement)
    finally:
        await conn.close()


async def _count_clients(url: str) -> int | None:
    engine = make_engine(url)
    try:
        async with engine.connect() as conn:
            return int(await conn.scalar(select(func.count()).select_from(Client)) or 0)
    except Exception:
        return None
    finally:
        await engine.dispose()


async def build(db: str, url: str, clients: int, seed: int, reuse: bool) -> dict[str, Any]:
    """Builds the demo shop (or finds it built) and returns the marker."""
    marker = _marker(db, clients)
    if reuse and marker.exists():
        info = json.loads(marker.read_text())
        matches = info.get("seed") == seed and info.get("clients") == clients
        if matches and await _count_clients(url) == clients:
            print(f"{db}: reusing {clients:,} clients built {info['built_at']}", flush=True)
            return info
        print(f"{db}: the database does not match {marker.name}; building again", flush=True)
    OUT.mkdir(parents=True, exist_ok=True)
    name = make_url(url).database
    if db == "sqlite":
        _remove_sqlite(name or "")
    else:
        await _pg_admin(url, f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        await _pg_admin(url, f'CREATE DATABASE "{name}"')
    engine = make_engine(url)
    try:
        await upgrade(engine)
        from tqdm import tqdm

        with tqdm(total=clients, unit=" clients", desc=f"{db} build", file=sys.stderr) as bar:
            started = time.perf_counter()
            summary = await generate(
                engine, clients=clients, seed=seed, tz=ZoneInfo("Europe/Moscow"),
                progress=bar.update,
            )  # fmt: skip
            seconds = time.perf_counter() - started
    finally:
        await engine.dispose()
    info = {
        "db": db,
        "clients": clients,
        "seed": seed,
        "build_seconds": round(seconds, 1),
        "built_at": datetime.now(UTC).isoformat(timespec="seconds"),
        "summary": str(summary),
        "size_bytes": await _size(db, url),
    }
    marker.write_text(json.dumps(info, ensure_ascii=False, indent=2) + "\n")
    print(f"{db}: built in {seconds:.0f} s: {summary}", flush=True)
    return info


def _remove_sqlite(name: str) -> None:
    for suffix in ("", "-wal", "-shm"):
        Path(f"{name}{suffix}").unlink(missing_ok=True)


def _sqlite_size(name: str) -> int:
    files = [Path(f"{name}{suffix}") for suffix in ("", "-wal")]
    return sum(f.stat().st_size for f in files if f.exists())


async def _size(db: str, url: str) -> int:
    if db == "sqlite":
        return _sqlite_size(make_url(url).database or "")
    engine = make_engine(url)
    try:
        async with engine.connect() as conn:
            return int(await conn.scalar(text("SELECT pg_database_size(current_database())")))
    finally:
        await engine.dispose()


# --- queries --------------------------------------------------------------------------------


async def _random_rows(
    session: AsyncSession, stmt_for: Callable[[int], Any], top: int, rng: random.Random, k: int
) -> list[Any]:
    rows: list[Any] = []
    tries = 0
    while len(rows) < k and tries < k * 50:
        tries += 1
        row = (await session.execute(stmt_for(rng.randint(1, top)))).first()
        if row is not None:
            rows.append(row)
    return rows


def _phone_query(rng: random.Random, e164: str) -> str:
    national = e164[1:]  # a Russian number: 7 + ten digits
    if rng.random() < 0.3:
        return "8" + national[: rng.randint(3, 6)]  # the start, typed with the trunk 8
    size = rng.randint(4, 7)
    start = rng.randint(0, len(national) - size)
    return national[start : start + size]


def _plate_query(rng: random.Random, plate: str) -> str:
    first, digits, letters = plate[0], plate[1:4], plate[4:6]
    form = rng.randrange(4)
    if form == 0:
        return (first + digits).lower()  # н123
    if form == 1:
        return (LATIN[first] + digits).lower()  # h123
    if form == 2:
        return (digits + letters).lower()  # 123ар
    return (LATIN[first] + digits + "".join(LATIN[c] for c in letters)).lower()  # a123bc


def _name_query(rng: random.Random, name: str) -> str:
    surname = name.split(" ")[0].lower()
    size = rng.randint(3, min(6, len(surname)))
    if rng.random() < 0.7:
        return surname[:size]  # петро, иванов
    start = rng.randint(0, len(surname) - size)
    return surname[start : start + size]


async def draw_queries(session: AsyncSession, count: int, seed: int) -> dict[str, list[str]]:
    """``count`` queries of each kind, drawn from the data by ``seed``."""
    rng = random.Random(seed)
    top_contact = await session.scalar(select(func.max(ContactInfo.id)))
    top_car = await session.scalar(select(func.max(Car.id)))
    top_client = await session.scalar(select(func.max(Client.id)))
    phones = await _random_rows(
        session,
        lambda i: select(ContactInfo.value).where(
            ContactInfo.id == i, ContactInfo.kind.in_(["mobile", "phone"])
        ),
        top_contact, rng, count,
    )  # fmt: skip
    plates = await _random_rows(
        session, lambda i: select(Car.plate).where(Car.id == i, Car.plate.is_not(None)),
        top_car, rng, count,
    )  # fmt: skip
    vins = await _random_rows(
        session, lambda i: select(Car.vin).where(Car.id == i, Car.vin.is_not(None)),
        top_car, rng, count,
    )  # fmt: skip
    names = await _random_rows(
        session, lambda i: select(Client.name).where(Client.id == i, Client.kind == "person"),
        top_client, rng, count,
    )  # fmt: skip
    return {
        "phone": [_phone_query(rng, r[0]) for r in phones],
        "plate": [_plate_query(rng, r[0]) for r in plates],
        "vin": [r[0][-rng.randint(4, 8) :] for r in vins],
        "name": [_name_query(rng, r[0]) for r in names],
    }


# --- timing ---------------------------------------------------------------------------------


@dataclass
class Timings:
    search: list[float] = field(default_factory=list)
    naive: list[float] = field(default_factory=list)
    statement: list[float] = field(default_factory=list)
    statements: list[int] = field(default_factory=list)
    cpu: list[float] = field(default_factory=list)
    clients: list[int] = field(default_factory=list)
    cars: list[int] = field(default_factory=list)
    capped: int = 0


_SEARCH_PAGE = search_repo.search_page


class _Clock:
    """Times the search's one statement (``search_repo.search_page``) from outside."""

    def __init__(self) -> None:
        self.statement = 0.0

    def install(self) -> None:
        async def timed(*args: Any, **kwargs: Any) -> Any:
            t = time.perf_counter()
            try:
                return await _SEARCH_PAGE(*args, **kwargs)
            finally:
                self.statement += time.perf_counter() - t

        search_repo.search_page = timed  # type: ignore[assignment]

    def reset(self) -> None:
        self.statement = 0.0


def naive_sql(dialect: str) -> str:
    """Every client and car with the typed text in one of the source columns."""
    del dialect  # the same SQL on both; lower() of SQLite folds ASCII only
    return """
        SELECT 'client', id FROM clients WHERE lower(name) LIKE :p
        UNION SELECT 'client', client_id FROM contact_info WHERE lower(value) LIKE :p
        UNION SELECT 'car', id FROM cars
            WHERE lower(plate) LIKE :p OR lower(vin) LIKE :p OR lower(body_number) LIKE :p
    """


def _like(query: str) -> str:
    escaped = query.lower().replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
    return f"%{escaped}%"


async def measure(
    engine: AsyncEngine,
    queries: dict[str, list[str]],
    warmup: dict[str, list[str]],
    naive: int,
    cap: int | None = None,
) -> dict[str, Timings]:
    factory = make_session_factory(engine)
    service = SearchService() if cap is None else SearchService(cap=cap)
    clock = _Clock()
    clock.install()
    statements = [0]

    @event.listens_for(engine.sync_engine, "before_cursor_execute")
    def _count(*_args: Any) -> None:
        statements[0] += 1

    sql = text(naive_sql(engine.dialect.name))
    results: dict[str, Timings] = {}
    async with factory() as session:
        for kind in KINDS:
            for q in warmup[kind]:
                await service.search(session, q)
                await session.rollback()
            t = results[kind] = Timings()
            for q in queries[kind]:
                clock.reset()
                statements[0] = 0
                cpu = time.process_time()
                started = time.perf_counter()
                result = await service.search(session, q)
                t.search.append(time.perf_counter() - started)
                t.cpu.append(time.process_time() - cpu)
                t.statements.append(statements[0])
                await session.rollback()
                t.statement.append(clock.statement)
                t.clients.append(result.clients_total)
                t.cars.append(result.cars_total)
                t.capped += result.more
            for q in queries[kind][:naive]:
                started = time.perf_counter()
                (await session.execute(sql, {"p": _like(q)})).all()
                t.naive.append(time.perf_counter() - started)
                await session.rollback()
    return results


def pct(values: list[float], p: float) -> float:
    """The p-th percentile (nearest rank), in milliseconds."""
    if not values:
        return float("nan")
    ordered = sorted(values)
    rank = max(1, min(len(ordered), round(p / 100 * len(ordered) + 0.5)))
    return ordered[rank - 1] * 1000


async def floor(engine: AsyncEngine, n: int = 200) -> tuple[float, float, float]:
    """The cost of one trivial statement through an AsyncSession (``SELECT 1``, then the
    rollback the bench does after every search): p50 and p95 wall ms, p50 CPU ms."""
    walls, cpus = [], []
    async with make_session_factory(engine)() as session:
        for _ in range(n):
            cpu, started = time.process_time(), time.perf_counter()
            await session.execute(text("SELECT 1"))
            await session.rollback()
            walls.append(time.perf_counter() - started)
            cpus.append(time.process_time() - cpu)
    return pct(walls, 50), pct(walls, 95), pct(cpus, 50)


async def explain(engine: AsyncEngine, queries: dict[str, list[str]]) -> None:
    """The plans of the lookups of each kind's first query, as the service makes them."""
    dialect = engine.dialect.name
    service = SearchService()
    async with make_session_factory(engine)() as session:
        for kind in KINDS:
            q = queries[kind][0]
            for lookup in service.lookups(q):
                selects = search_repo.lookup_selects(dialect, lookup, service.cap)
                for i, stmt in enumerate(selects):  # the prefix select, then the substring's
                    label = "prefix" if i == 0 else "substring"
                    sql = str(
                        stmt.compile(
                            dialect=engine.dialect, compile_kwargs={"literal_binds": True}
                        )
                    )
                    prefix = (
                        "EXPLAIN QUERY PLAN "
                        if dialect == "sqlite"
                        else "EXPLAIN (ANALYZE, BUFFERS) "
                    )
                    rows = (await session.execute(text(prefix + sql))).all()
                    print(
                        f"\n-- {dialect} {kind} {q!r} -> {label} {lookup.term!r} "
                        f"in {sorted(lookup.fields)}"
                    )
                    for row in rows:
                        print("   ", row[-1])
                    await session.rollback()


def report(db: str, results: dict[str, Timings]) -> list[str]:
    lines = []
    for kind in KINDS:
        t = results[kind]
        p50, p95 = pct(t.search, 50), pct(t.search, 95)
        n50, n95 = pct(t.naive, 50), pct(t.naive, 95)
        hits = statistics.mean(c + k for c, k in zip(t.clients, t.cars, strict=True))
        lines.append(
            f"| {db} | {kind} | {len(t.search)} | {p50:.1f} | {p95:.1f} | {len(t.naive)} "
            f"| {n50:.0f} | {n95:.0f} | {n50 / p50:.0f}x | {hits:.0f} "
            f"| {100 * t.capped / len(t.search):.0f}% |"
        )
    return lines


HEADER = [
    "| db | kind | n | p50 ms | p95 ms | naive n | naive p50 ms | naive p95 ms | speedup (p50) "
    "| avg hits | capped |",
    "|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
]


def breakdown(db: str, results: dict[str, Timings]) -> list[str]:
    lines = []
    for kind in KINDS:
        t = results[kind]
        rest = [s - q for s, q in zip(t.search, t.statement, strict=True)]
        lines.append(
            f"| {db} | {kind} | {pct(t.statement, 50):.1f} / {pct(t.statement, 95):.1f} "
            f"| {pct(rest, 50):.1f} / {pct(rest, 95):.1f} "
            f"| {pct(t.cpu, 50):.1f} | {statistics.mean(t.statements):.1f} |"
        )
    return lines


BREAKDOWN_HEADER = [
    "| db | kind | the search statement p50 / p95 ms "
    "| the rest p50 / p95 ms | CPU of this process p50 ms | statements per search |",
    "|---|---|---:|---:|---:|---:|",
]


async def run(args: argparse.Namespace) -> int:
    dbs = ["sqlite", "postgres"] if args.db == "both" else [args.db]
    urls = {
        "sqlite": f"sqlite+aiosqlite:///{OUT / f'search-{args.clients}.sqlite3'}",
        "postgres": args.pg_url,
    }
    infos = {db: await build(db, urls[db], args.clients, args.seed, args.reuse) for db in dbs}
    table, parts, context, queries_shown = [], [], [], None
    for db in dbs:
        engine = make_engine(urls[db])
        try:
            async with make_session_factory(engine)() as session:
                drawn = await draw_queries(session, args.queries + args.warmup, args.seed)
            warmup = {k: v[: args.warmup] for k, v in drawn.items()}
            queries = {k: v[args.warmup :] for k, v in drawn.items()}
            queries_shown = queries_shown or queries
            print(f"{db}: timing {sum(map(len, queries.values()))} queries ...", flush=True)
            load_before = os.getloadavg()[0]
            results = await measure(engine, queries, warmup, args.naive, args.cap)
            f50, f95, fcpu = await floor(engine)
            context.append(
                f"{db}: load average {load_before:.1f} before, {os.getloadavg()[0]:.1f} after "
                f"({os.cpu_count()} CPUs); one SELECT 1 through AsyncSession: p50 {f50:.1f} ms, "
                f"p95 {f95:.1f} ms, CPU {fcpu:.1f} ms"
            )
            table += report(db, results)
            parts += breakdown(db, results)
            if args.explain:
                await explain(engine, queries)
        finally:
            await engine.dispose()
    print()
    for db, info in infos.items():
        size = info.get("size_bytes", 0) / 2**30
        print(f"{db}: {info['clients']:,} clients, build {info['build_seconds']:.0f} s, "
              f"{size:.1f} GiB; {info.get('summary', '')}")  # fmt: skip
    print()
    if args.cap is not None:
        print(f"what if: SearchService(cap={args.cap})")
    print("\n".join(HEADER + table))
    print()
    print("\n".join(BREAKDOWN_HEADER + parts))
    print()
    print("\n".join(context))
    if queries_shown:
        print()
        for kind in KINDS:
            print(f"{kind} queries, first 12: {' '.join(queries_shown[kind][:12])}")
    return 0


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--clients", type=int, default=1_000_000)
    parser.add_argument("--db", choices=["sqlite", "postgres", "both"], default="both")
    parser.add_argument("--reuse", action="store_true", help="reuse a database built before")
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--queries", type=int, default=200, help="timed queries per kind")
    parser.add_argument("--warmup", type=int, default=50, help="untimed queries per kind first")
    parser.add_argument("--naive", type=int, default=20, help="queries per kind for the scan")
    parser.add_argument("--pg-url", default=PG_URL)
    parser.add_argument("--explain", action="store_true", help="print the lookup plans")
    parser.add_argument(
        "--cap", type=int, help="what if: SearchService(cap=N) instead of the default cap"
    )
    args = parser.parse_args()
    logging.basicConfig(level=logging.WARNING)
    return loop.run(run(args))  # the bot's own event loop


if __name__ == "__main__":
    raise SystemExit(main())
