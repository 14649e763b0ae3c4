"""What the CSV imports (clients and cars, the price list) share: reading a file into a
table of named columns, whatever its encoding and delimiter; the rows refused with their
reasons, and writing them aside; price types found by code or name.

A broken line costs that line only: the reader resumes on the next physical line.
"""

from __future__ import annotations

import codecs
import csv
import io
import re
import unicodedata
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from services.normalize import normalize_name
from storage.models import PriceType


class ImportFailed(Exception):
    """Nothing was imported; ``problems`` says why (``file:line: reason`` per bad row)."""

    def __init__(self, problems: list[str]) -> None:
        super().__init__("; ".join(problems[:3]) + (" ..." if len(problems) > 3 else ""))
        self.problems = problems


# --- columns ------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Column:
    field: str
    headers: tuple[str, ...]  # as shown in docs and errors; matched folded
    required: bool = False
    many: bool = False  # every matching column is read (phones from two columns, ...)


_NON_ALNUM = re.compile(r"[\W_]+")


def fold(text: str) -> str:
    """Headers and keywords: case, ``ё``, spaces, dots and other punctuation folded."""
    folded = unicodedata.normalize("NFKC", text).casefold().replace("ё", "е")
    return _NON_ALNUM.sub("", folded)


# --- reading CSV --------------------------------------------------------------------


@dataclass(slots=True)
class Record:
    line: int  # physical line where the record starts (the header is line 1)
    values: list[str] | None  # None: the line could not be read as CSV
    raw: str = ""  # the line, when it could not be read
    error: str | None = None


@dataclass(slots=True)
class CsvTable:
    name: str  # the file name used in messages and in the rejects file
    delimiter: str
    header: list[str]
    columns: dict[str, list[int]]  # field -> positions
    records: list[Record]

    def one(self, values: list[str], field: str) -> str:
        positions = self.columns.get(field)
        return values[positions[0]].strip() if positions else ""

    def many(self, values: list[str], field: str) -> list[str]:
        return [v for i in self.columns.get(field, ()) if (v := values[i].strip())]


class _Lines:
    """The file's physical lines; the CSV reader takes them one by one, so that we know
    where each record starts and can resume after a broken one."""

    def __init__(self, lines: list[str], start: int) -> None:
        self.lines = lines
        self.next = start

    def __iter__(self) -> _Lines:
        return self

    def __next__(self) -> str:
        if self.next >= len(self.lines):
            raise StopIteration
        line = self.lines[self.next]
        self.next += 1
        return line


def _decode(data: bytes, name: str) -> str:
    if data.startswith(codecs.BOM_UTF8):
        try:
            return data[len(codecs.BOM_UTF8) :].decode("utf-8")
        except UnicodeDecodeError as exc:
            raise ImportFailed([f"{name}: not valid UTF-8 at byte {exc.start}"]) from None
    if data.startswith((codecs.BOM_UTF16_LE, codecs.BOM_UTF16_BE)) or b"\x00" in data[:4096]:
        raise ImportFailed([f"{name}: looks like UTF-16; save it as CSV in UTF-8 or cp1251"])
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError:
        pass
    try:
        return data.decode("cp1251")
    except UnicodeDecodeError as exc:
        raise ImportFailed([f"{name}: neither UTF-8 nor cp1251 (byte {exc.start})"]) from None


def _guess_delimiter(line: str) -> str:
    """``;`` or ``,``: whichever the header line has more of outside quotes."""
    counts = {",": 0, ";": 0}
    quoted = False
    for ch in line:
        if ch == '"':
            quoted = not quoted
        elif not quoted and ch in counts:
            counts[ch] += 1
    return ";" if counts[";"] > counts[","] else ","


def _records(lines: list[str], start: int, delimiter: str) -> Iterator[Record]:
    source = _Lines(lines, start)
    reader = csv.reader(source, delimiter=delimiter, strict=True)
    while True:
        first = source.next
        try:
            values = next(reader)
        except StopIteration:
            return
        except csv.Error as exc:
            reason = str(exc)
            if "unexpected end of data" in reason or "expected after" in reason:
                reason = "broken quotes"
            yield Record(first + 1, None, lines[first].rstrip("\r\n"), f"unreadable: {reason}")
            # Resume on the next physical line: one broken quote costs one row, not the
            # rest of the file.
            source.next = first + 1
            reader = csv.reader(source, delimiter=delimiter, strict=True)
            continue
        yield Record(first + 1, values)


def read_table(path: Path, columns: Sequence[Column]) -> CsvTable:
    name = path.name
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        raise ImportFailed([f"{path}: no such file"]) from None
    except OSError as exc:
        raise ImportFailed([f"{path}: cannot read ({exc.strerror})"]) from None
    lines = list(io.StringIO(_decode(data, name), newline=""))
    start = 0
    while start < len(lines) and not lines[start].strip():
        start += 1
    if start == len(lines):
        raise ImportFailed([f"{name}: the file is empty (a header line is needed)"])
    delimiter = None
    if lines[start].strip().lower().startswith("sep="):
        delimiter = lines[start].strip()[4:5] or ","  # Excel's "sep=;" hint
        start += 1
    if start == len(lines):
        raise ImportFailed([f"{name}: no header line"])
    delimiter = delimiter or _guess_delimiter(lines[start])
    records = _records(lines, start, delimiter)
    head = next(records)
    if head.values is None:
        raise ImportFailed([f"{name}:{head.line}: the header line is {head.error}"])
    header = [h.strip().lstrip("\ufeff") for h in head.values]
    by_header: dict[str, list[int]] = {}
    for pos, title in enumerate(header):
        by_header.setdefault(fold(title), []).append(pos)
    found: dict[str, list[int]] = {}
    missing: list[str] = []
    for col in columns:
        positions: list[int] = []
        for alias in col.headers:
            for pos in by_header.get(fold(alias), ()):
                if pos not in positions:
                    positions.append(pos)
        if positions:
            found[col.field] = sorted(positions) if col.many else positions[:1]
        elif col.required:
            accepted = ", ".join(col.headers)
            missing.append(f'{name}: missing column "{col.field}" (accepted headers: {accepted})')
    if missing:
        raise ImportFailed(missing)
    return CsvTable(name, delimiter, header, found, list(records))


# --- rejected rows ------------------------------------------------------------------


@dataclass(slots=True)
class Reject:
    table: CsvTable
    record: Record
    error: str

    @property
    def message(self) -> str:
        return f"{self.table.name}:{self.record.line}: {self.error}"


class Rejects:
    """The rows of a file that were refused, with why; :meth:`values` yields the rest."""

    def __init__(self) -> None:
        self.rejects: list[Reject] = []

    def reject(self, table: CsvTable, record: Record, error: str) -> None:
        self.rejects.append(Reject(table, record, error))

    def values(self, table: CsvTable) -> Iterator[tuple[Record, list[str]]]:
        """The readable, non-blank records with the header's number of columns."""
        width = len(table.header)
        for record in table.records:
            if record.values is None:
                self.reject(table, record, record.error or "unreadable")
                continue
            values = record.values
            if not any(v.strip() for v in values):
                continue  # a blank line
            if len(values) > width and not any(v.strip() for v in values[width:]):
                values = values[:width]  # trailing delimiters
            if len(values) != width:
                self.reject(
                    table,
                    record,
                    f"expected {width} columns, found {len(values)}"
                    + (" (a delimiter inside an unquoted value?)" if len(values) > width else ""),
                )
                continue
            yield record, values


def check_rejects_path(path: Path, *inputs: Path | None) -> None:
    if not path.parent.is_dir():
        raise ImportFailed([f"{path}: the folder for the rejected rows does not exist"])
    for source in inputs:
        if source is not None and path.resolve() == source.resolve():
            raise ImportFailed([f"{path}: the rejected rows would overwrite an input file"])


def write_rejects(path: Path, rejects: list[Reject]) -> None:
    """The rejected rows with their original columns plus ``file``, ``line``, ``error``
    (and ``raw`` for lines that could not be read at all)."""
    columns: list[str] = []
    placement: dict[int, list[int]] = {}  # id(table) -> output column per position
    for rej in rejects:
        key = id(rej.table)
        if key in placement:
            continue
        used: set[int] = set()
        positions = []
        for header in rej.table.header:
            pos = next((i for i, c in enumerate(columns) if c == header and i not in used), None)
            if pos is None:
                columns.append(header)
                pos = len(columns) - 1
            used.add(pos)
            positions.append(pos)
        placement[key] = positions
    width = len(columns)
    extra = ["file", "line", "error"]
    with_raw = any(rej.record.values is None for rej in rejects)
    if with_raw:
        extra.append("raw")
    delimiter = rejects[0].table.delimiter
    with path.open("w", encoding="utf-8-sig", newline="") as out:
        writer = csv.writer(out, delimiter=delimiter)
        writer.writerow(columns + extra)
        for rej in rejects:
            row = [""] * width
            if rej.record.values is not None:
                for pos, value in zip(placement[id(rej.table)], rej.record.values, strict=False):
                    row[pos] = value
            tail = [rej.table.name, str(rej.record.line), rej.error]
            if with_raw:
                tail.append(rej.record.raw.rstrip("\r\n") if rej.record.values is None else "")
            writer.writerow(row + tail)


# --- price types --------------------------------------------------------------------


KNOWN_PRICE_TYPES = {
    "retail": ("retail", "Розничная"),
    "розничная": ("retail", "Розничная"),
    "розница": ("retail", "Розничная"),
    "wholesale": ("wholesale", "Оптовая"),
    "оптовая": ("wholesale", "Оптовая"),
    "опт": ("wholesale", "Оптовая"),
}


class PriceTypes:
    """Price types by code or name (folded); missing ones are created."""

    def __init__(self) -> None:
        self.ids: dict[str, int] = {}
        self.loaded = False

    async def id_for(self, session: AsyncSession, text: str) -> int:
        if not self.loaded:
            for pt in await session.scalars(select(PriceType)):
                self.ids.setdefault(normalize_name(pt.code), pt.id)
                self.ids.setdefault(normalize_name(pt.name), pt.id)
            self.loaded = True
        key = normalize_name(text)
        if key not in self.ids:
            code, name = KNOWN_PRICE_TYPES.get(fold(text), (text[:40], text))
            existing = self.ids.get(normalize_name(code)) or self.ids.get(normalize_name(name))
            if existing is None:
                created = PriceType(code=code, name=name)
                session.add(created)
                await session.flush()
                existing = created.id
                self.ids[normalize_name(code)] = existing
                self.ids[normalize_name(name)] = existing
            self.ids[key] = existing
        return self.ids[key]
