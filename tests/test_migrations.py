"""The stairway: every migration goes up, down and up again, on SQLite and PostgreSQL."""

from __future__ import annotations

import uuid

import pytest
from sqlalchemy import inspect
from sqlalchemy.engine import make_url

from storage.db import make_engine
from storage.migrate import downgrade, include_object, revisions, upgrade
from storage.models import Base
from tests.conftest import PG_ADMIN_URL, _pg_exec_autocommit


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
async def empty_url(request, tmp_path):
    if request.param == "sqlite":
        yield f"sqlite+aiosqlite:///{tmp_path / 'stairway.sqlite3'}"
        return
    name = f"ccbot_stairway_{uuid.uuid4().hex[:8]}"
    try:
        await _pg_exec_autocommit(PG_ADMIN_URL, f'CREATE DATABASE "{name}"')
    except Exception as exc:
        pytest.skip(f"PostgreSQL not reachable at {PG_ADMIN_URL}: {exc!r}")
    yield make_url(PG_ADMIN_URL).set(database=name).render_as_string(hide_password=False)
    await _pg_exec_autocommit(PG_ADMIN_URL, f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


async def _tables(engine) -> set[str]:
    async with engine.connect() as conn:
        return await conn.run_sync(lambda c: set(inspect(c).get_table_names()))


async def test_stairway(empty_url):
    engine = make_engine(empty_url)
    try:
        revs = revisions()
        assert revs, "no migrations"
        previous = "base"
        for rev in revs:
            await upgrade(engine, rev)
            await downgrade(engine, previous)
            await upgrade(engine, rev)
            previous = rev
        tables = await _tables(engine)
        assert {t.name for t in Base.metadata.sorted_tables} <= tables
        await downgrade(engine, "base")
        assert await _tables(engine) <= {"alembic_version"}
    finally:
        await engine.dispose()


async def test_models_match_migrations(empty_url):
    """Autogenerate finds nothing to do: the models and the migrations agree."""
    from alembic.autogenerate import compare_metadata
    from alembic.migration import MigrationContext

    engine = make_engine(empty_url)
    try:
        await upgrade(engine)
        async with engine.connect() as conn:
            diff = await conn.run_sync(
                lambda c: compare_metadata(
                    MigrationContext.configure(c, opts={"include_object": include_object}),
                    Base.metadata,
                )
            )
        assert diff == []
    finally:
        await engine.dispose()
