"""The fixed lists of the statements built once are written into them, so no execution
renders the statement's text again (SQLAlchemy's "post-compile" of a list parameter)."""

from __future__ import annotations

import pytest
from sqlalchemy.dialects import postgresql, sqlite

from services import cards
from storage.expr import in_constants
from storage.models import DocState, Document

DIALECTS = (sqlite.dialect(), postgresql.dialect())


def test_constants_are_written_into_the_statement():
    clause = in_constants(Document.state, [DocState.OPEN, "closed"])
    for dialect in DIALECTS:
        sql = str(clause.compile(dialect=dialect))
        assert sql == "documents.state IN ('open', 'closed')"


@pytest.mark.parametrize("bad", ["o'pen", "a b", "", "x--", 5])
def test_anything_but_a_plain_word_is_refused(bad):
    with pytest.raises(ValueError):
        in_constants(Document.state, [bad])


@pytest.mark.parametrize("dialect", DIALECTS, ids=lambda d: d.name)
def test_the_cards_need_no_rendering_per_execution(dialect):
    for query in (
        cards._client_card_query(dialect.name),
        cards._car_card_query(dialect.name),
        cards._car_card_with_history_query(dialect.name),
    ):
        compiled = query.compile(dialect=dialect)
        assert "POSTCOMPILE" not in str(compiled)
