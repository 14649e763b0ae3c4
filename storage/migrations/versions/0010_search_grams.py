"""SQLite substring search: names apart from codes; codes by their grams in a B-tree

Revision ID: 0010
Revises: 0009
Create Date: 2026-12-04 10:00:00

Migration 0002 put every search term in one FTS5 trigram index. Digit trigrams are few
(a thousand) and every phone, VIN, plate, card and tax number is full of them, so a
fragment such as ``376712`` intersected lists of tens of thousands of terms to find five:
1-3 ms a lookup at a million clients, the largest share of a search. Now, on SQLite:

* names, e-mails and addresses (``name``, ``email``, ``contact``) keep an FTS5 trigram
  index of their own, ``search_fts_text``; contentless, its rowid is the term's id
  negated, so the index's natural order is the newest first and a capped lookup stops
  after its cap;
* codes and numbers (every other field) are found through ``search_grams``: for each
  position of a term, the (at most) 8 characters from there, with the term's id, in a
  B-tree. A fragment is then a range of that B-tree (its first 8 characters), checked
  against the whole term: a few hundred microseconds whatever the fragment.

PostgreSQL keeps its pg_trgm index (migration 0002): nothing changes there.
"""

import importlib
from collections.abc import Sequence
from types import ModuleType

from alembic import op

revision: str = "0010"
down_revision: str | None = "0009"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

# As services.normalize had them when this was written: the fields of free text.
TEXT_FIELDS = "('name', 'contact', 'email')"
GRAM = 8  # characters per gram
MAX_TERM = 200  # search_terms.term is String(200): a position for each character

TABLES_UP = [
    "CREATE VIRTUAL TABLE search_fts_text USING fts5("
    "term, content='', columnsize=0, tokenize='trigram')",
    "CREATE TABLE search_gram_positions (p INTEGER PRIMARY KEY)",
    f"""WITH RECURSIVE n(p) AS (SELECT 1 UNION ALL SELECT p + 1 FROM n WHERE p < {MAX_TERM})
        INSERT INTO search_gram_positions (p) SELECT p FROM n""",
    """CREATE TABLE search_grams (
        gram TEXT NOT NULL,
        term_id INTEGER NOT NULL,
        PRIMARY KEY (gram, term_id)
    ) WITHOUT ROWID""",
]
TABLES_DOWN = [
    "DROP TABLE IF EXISTS search_grams",
    "DROP TABLE IF EXISTS search_gram_positions",
    "DROP TABLE IF EXISTS search_fts_text",
]

# One block per change of a term: what goes into the indexes, what comes out. A gram
# starts at every position that leaves 3 characters or more (the shortest fragment).
_ADD = f"""
    INSERT INTO search_fts_text (rowid, term)
        SELECT -new.id, new.term WHERE new.field IN {TEXT_FIELDS};
    INSERT OR IGNORE INTO search_grams (gram, term_id)
        SELECT substr(new.term, p, {GRAM}), new.id FROM search_gram_positions
        WHERE new.field NOT IN {TEXT_FIELDS} AND p <= length(new.term) - 2;"""
_REMOVE = f"""
    INSERT INTO search_fts_text (search_fts_text, rowid, term)
        SELECT 'delete', -old.id, old.term WHERE old.field IN {TEXT_FIELDS};
    DELETE FROM search_grams WHERE term_id = old.id AND old.field NOT IN {TEXT_FIELDS}
        AND gram IN (SELECT substr(old.term, p, {GRAM}) FROM search_gram_positions
                     WHERE p <= length(old.term) - 2);"""
TRIGGERS_UP = [
    f"CREATE TRIGGER search_terms_ai AFTER INSERT ON search_terms BEGIN{_ADD}\nEND",
    f"CREATE TRIGGER search_terms_ad AFTER DELETE ON search_terms BEGIN{_REMOVE}\nEND",
    "CREATE TRIGGER search_terms_au AFTER UPDATE OF term, field ON search_terms "
    f"BEGIN{_REMOVE}{_ADD}\nEND",
]
TRIGGERS_DOWN = [
    "DROP TRIGGER IF EXISTS search_terms_au",
    "DROP TRIGGER IF EXISTS search_terms_ad",
    "DROP TRIGGER IF EXISTS search_terms_ai",
]
# What the triggers wrote, gone: a bulk load (storage.bulk) empties both indexes before
# it fills them again.
EMPTY = [
    "INSERT INTO search_fts_text (search_fts_text) VALUES ('delete-all')",
    "DELETE FROM search_grams",
]
# Both indexes from search_terms as it stands (the tables empty): the migration, and a
# bulk load that took the triggers down (storage.bulk).
FILL = [
    f"""INSERT INTO search_fts_text (rowid, term)
        SELECT -id, term FROM search_terms WHERE field IN {TEXT_FIELDS}""",
    # Merged into one segment: lookups read one b-tree instead of dozens.
    "INSERT INTO search_fts_text (search_fts_text) VALUES ('optimize')",
    # Sorted first, so the B-tree is written in order.
    f"""INSERT OR IGNORE INTO search_grams (gram, term_id)
        SELECT substr(t.term, n.p, {GRAM}), t.id
        FROM search_terms t JOIN search_gram_positions n ON n.p <= length(t.term) - 2
        WHERE t.field NOT IN {TEXT_FIELDS}
        ORDER BY 1, 2""",
]


def _migration_0002() -> ModuleType:
    return importlib.import_module("storage.migrations.versions.0002_search_index")


def upgrade() -> None:
    if op.get_bind().dialect.name != "sqlite":
        return
    # 0002's index goes: its triggers and its FTS5 table.
    for statement in [*_migration_0002().SQLITE_DOWN, *TABLES_UP, *FILL, *TRIGGERS_UP]:
        op.execute(statement)


def downgrade() -> None:
    if op.get_bind().dialect.name != "sqlite":
        return
    for statement in [*TRIGGERS_DOWN, *TABLES_DOWN, *_migration_0002().SQLITE_UP]:
        op.execute(statement)
