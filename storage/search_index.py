"""Keeps ``search_terms`` in step with clients and cars.

ORM writes are covered by a flush hook, so that every change made through a session is
searchable as soon as it commits. Bulk loaders (demo data, import) call
:func:`term_rows` themselves.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from sqlalchemy import delete, event, insert, inspect, select
from sqlalchemy.orm import Session, UOWTransaction

from services.normalize import Term, car_terms, client_terms
from storage.models import Car, Client, ContactInfo, DiscountCard, SearchTerm

MAX_TERM = 200


def term_rows(owner_type: str, owner_id: int, terms: Iterable[Term]) -> list[dict[str, Any]]:
    return [
        {
            "owner_type": owner_type,
            "owner_id": owner_id,
            "field": t.field,
            "term": t.term[:MAX_TERM],
        }
        for t in terms
    ]


def _client_rows(session: Session, client_ids: set[int]) -> list[dict[str, Any]]:
    rows: list[dict[str, Any]] = []
    if not client_ids:
        return rows
    ids = sorted(client_ids)
    clients = session.execute(
        select(Client.id, Client.name, Client.inn).where(Client.id.in_(ids))
    ).all()
    contacts: dict[int, list[tuple[str, str]]] = {}
    for cid, kind, value in session.execute(
        select(ContactInfo.client_id, ContactInfo.kind, ContactInfo.value).where(
            ContactInfo.client_id.in_(ids)
        )
    ):
        contacts.setdefault(cid, []).append((str(kind), value))
    cards: dict[int, list[str]] = {}
    for holder, number in session.execute(
        select(DiscountCard.client_id, DiscountCard.number).where(DiscountCard.client_id.in_(ids))
    ):
        if holder is None:
            continue
        cards.setdefault(holder, []).append(number)
    for cid, name, inn in clients:
        terms = client_terms(name, inn, cards.get(cid, []), contacts.get(cid, []))
        rows.extend(term_rows("client", cid, terms))
    return rows


def _car_rows(session: Session, car_ids: set[int]) -> list[dict[str, Any]]:
    rows: list[dict[str, Any]] = []
    if not car_ids:
        return rows
    for cid, plate, vin, body_number in session.execute(
        select(Car.id, Car.plate, Car.vin, Car.body_number).where(Car.id.in_(sorted(car_ids)))
    ):
        rows.extend(term_rows("car", cid, car_terms(plate, vin, body_number)))
    return rows


def refresh(session: Session, client_ids: set[int], car_ids: set[int]) -> None:
    """Rewrite the search terms of these clients and cars from what the database holds."""
    for owner_type, ids in (("client", client_ids), ("car", car_ids)):
        if ids:
            session.execute(
                delete(SearchTerm).where(
                    SearchTerm.owner_type == owner_type, SearchTerm.owner_id.in_(sorted(ids))
                )
            )
    rows = _client_rows(session, client_ids) + _car_rows(session, car_ids)
    if rows:
        session.execute(insert(SearchTerm), rows)


@event.listens_for(Session, "after_flush")
def _after_flush(session: Session, _flush: UOWTransaction) -> None:
    client_ids: set[int] = set()
    car_ids: set[int] = set()
    for obj in (*session.new, *session.dirty, *session.deleted):
        if isinstance(obj, Client):
            client_ids.add(obj.id)
        elif isinstance(obj, ContactInfo | DiscountCard):
            # the old holder too, when a row moved to another client
            history = inspect(obj).attrs.client_id.history  # type: ignore[attr-defined]
            client_ids.update(i for i in (obj.client_id, *history.deleted) if i is not None)
        elif isinstance(obj, Car):
            car_ids.add(obj.id)
    if client_ids or car_ids:
        refresh(session, client_ids, car_ids)
