"""SQL expressions the queries share."""

from __future__ import annotations

import enum
import re
from collections.abc import Iterable
from typing import Any

from sqlalchemy import ColumnElement, literal_column

_PLAIN = re.compile(r"[A-Za-z0-9_]+")


def in_constants(column: Any, values: Iterable[str | enum.Enum]) -> ColumnElement[bool]:
    """``column IN ('a', 'b')`` with the values written into the statement, for the fixed
    lists of a statement built once (document types and states, search fields). With a
    list parameter instead, SQLAlchemy renders the statement's text anew on every
    execution to expand it (for a client card, a tenth of its Python work). An enum gives
    its stored value; only plain words are taken, so nothing needs quoting."""
    words = [v.value if isinstance(v, enum.Enum) else v for v in values]
    for word in words:
        if not isinstance(word, str) or not _PLAIN.fullmatch(word):
            raise ValueError(f"not a plain constant: {word!r}")
    return column.in_([literal_column(f"'{word}'") for word in words])
