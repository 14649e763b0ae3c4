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
    WORK_ORDERS = "work_orders"  # move a work order on: in progress, completed, issued
    STAFF = "staff"  # invite and deactivate staff
    # The cart and estimates (issue 6). Managers build carts and estimates; cashiers see
    # them (to take the money of what comes out of them); masters see them and put works
    # of the car's repair plan in the cart, since they are the ones who planned them.
    CART_VIEW = "cart_view"  # see the cart and the estimates of a client
    CART = "cart"  # pick from the price list or the plan, quantities, cart -> document
    CART_PLAN_WORKS = "cart_plan_works"  # put works of the car's repair plan in the cart
    ESTIMATES = "estimates"  # make, change and send estimates; approved lines -> work order
    BOOKINGS = "bookings"  # repair bookings: make, move, cancel
    ARRIVAL = "arrival"  # check a car in (Машинозаезд): the work order in progress
    TIRE_HOTEL = "tire_hotel"  # store, find and issue tire sets
    LINK_CLIENTS = "link_clients"  # client invite links, deciding phone link requests


_ALL = frozenset(Permission)
ROLE_PERMISSIONS: dict[Role, frozenset[Permission]] = {
    Role.ADMIN: _ALL,
    Role.MANAGER: _ALL - {Permission.STAFF},
    # Masters take the car in and put the tires on the rack; booking is the office's.
    Role.MASTER: frozenset(
        {
            Permission.SEARCH,
            Permission.CAR_HISTORY,
            Permission.EVENTS,
            Permission.CART_VIEW,
            Permission.CART_PLAN_WORKS,
            Permission.WORK_ORDERS,
            Permission.ARRIVAL,
            Permission.TIRE_HOTEL,
        }
    ),
    Role.CASHIER: frozenset(
        {Permission.SEARCH, Permission.ORDERS, Permission.PAYMENTS, Permission.CART_VIEW}
    ),
}


def can(staff: Staff | None, permission: Permission) -> bool:
    """Only active staff, and only what their role allows."""
    if staff is None or not staff.active:
        return False
    return permission in ROLE_PERMISSIONS[Role(staff.role)]
