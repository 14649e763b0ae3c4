"""Who may do what. Checked on every message and on every button press, server side."""

from __future__ import annotations

import enum

from storage.models import Role, Staff


class Permission(enum.StrEnum):
    SEARCH = "search"  # search, filters, the client and car cards' Information
    CAR_HISTORY = "car_history"  # history of a car, works and goods of its documents
    EVENTS = "events"  # the contact log: events tab, register contact
    ORDERS = "orders"  # customer orders, debts
    PAYMENTS = "payments"  # take a payment
    DOCUMENTS = "documents"  # all of a client's documents, make documents
    EDIT_CLIENT = "edit_client"  # contact information
    STAFF = "staff"  # invite and deactivate staff
    LINK_CLIENTS = "link_clients"  # client invite links, deciding phone link requests


_ALL = frozenset(Permission)
ROLE_PERMISSIONS: dict[Role, frozenset[Permission]] = {
    Role.ADMIN: _ALL,
    Role.MANAGER: _ALL - {Permission.STAFF},
    Role.MASTER: frozenset({Permission.SEARCH, Permission.CAR_HISTORY, Permission.EVENTS}),
    Role.CASHIER: frozenset({Permission.SEARCH, Permission.ORDERS, Permission.PAYMENTS}),
}


def can(staff: Staff | None, permission: Permission) -> bool:
    """Only active staff, and only what their role allows."""
    if staff is None or not staff.active:
        return False
    return permission in ROLE_PERMISSIONS[Role(staff.role)]
