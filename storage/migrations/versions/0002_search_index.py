"""substring search index: FTS5 trigram on SQLite, pg_trgm GIN on PostgreSQL

Revision ID: 0002
Revises: 0001
Create Date: 2026-12-03 16:40:00
"""

from collections.abc import Sequence

from alembic import op

revision: str = "0002"
down_revision: str | None = "0001"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

SQLITE_UP = [
    # An external-content index over search_terms.term, kept in step by triggers.
    """CREATE VIRTUAL TABLE search_fts USING fts5(
        term, content='search_terms', content_rowid='id', tokenize='trigram'
    )""",
    """CREATE TRIGGER search_terms_ai AFTER INSERT ON search_terms BEGIN
        INSERT INTO search_fts(rowid, term) VALUES (new.id, new.term);
    END""",
    """CREATE TRIGGER search_terms_ad AFTER DELETE ON search_terms BEGIN
        INSERT INTO search_fts(search_fts, rowid, term) VALUES ('delete', old.id, old.term);
    END""",
    """CREATE TRIGGER search_terms_au AFTER UPDATE OF term ON search_terms BEGIN
        INSERT INTO search_fts(search_fts, rowid, term) VALUES ('delete', old.id, old.term);
        INSERT INTO search_fts(rowid, term) VALUES (new.id, new.term);
    END""",
    "INSERT INTO search_fts(search_fts) VALUES ('rebuild')",
]
SQLITE_DOWN = [
    "DROP TRIGGER IF EXISTS search_terms_au",
    "DROP TRIGGER IF EXISTS search_terms_ad",
    "DROP TRIGGER IF EXISTS search_terms_ai",
    "DROP TABLE IF EXISTS search_fts",
]
POSTGRES_UP = [
    "CREATE EXTENSION IF NOT EXISTS pg_trgm",
    "CREATE INDEX ix_search_terms_term_trgm ON search_terms USING gin (term gin_trgm_ops)",
]
POSTGRES_DOWN = ["DROP INDEX IF EXISTS ix_search_terms_term_trgm"]


def _run(statements: dict[str, list[str]]) -> None:
    dialect = op.get_bind().dialect.name
    if dialect not in statements:
        raise NotImplementedError(f"no search index for {dialect}")
    for statement in statements[dialect]:
        op.execute(statement)


def upgrade() -> None:
    _run({"sqlite": SQLITE_UP, "postgresql": POSTGRES_UP})


def downgrade() -> None:
    _run({"sqlite": SQLITE_DOWN, "postgresql": POSTGRES_DOWN})
