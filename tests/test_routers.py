"""How the routers are put together: filters that stay in the event loop, and presses told
apart by their prefix before any handler unpacks them."""

from __future__ import annotations

from aiogram import Router
from aiogram.types import CallbackQuery, User

from bot.app import ROUTERS
from handlers import PressPrefixes, index_presses
from handlers.callbacks import OpenCar, OpenClient


def test_no_filter_is_a_plain_function():
    """aiogram runs a filter that is not a coroutine in a worker thread: a thread hand-off
    per update for every such filter on the way (``handlers.Magic`` instead of ``F``)."""
    plain = [
        (router.name, name, f.callback)
        for make in ROUTERS
        for router in [make()]
        for name, observer in router.observers.items()
        for handler in [observer._handler, *observer.handlers]
        for f in handler.filters or ()
        if not f.awaitable
    ]
    assert plain == []


def _press(data: str) -> CallbackQuery:
    user = User(id=1, is_bot=False, first_name="A")
    return CallbackQuery(id="1", from_user=user, chat_instance="x", data=data)


def _prefixes(router: Router) -> PressPrefixes | None:
    found = [f.callback for f in router.callback_query._handler.filters or ()]
    return next((f for f in found if isinstance(f, PressPrefixes)), None)


async def test_a_router_of_typed_presses_skips_the_others_in_one_check():
    router = Router()
    router.callback_query.register(lambda c: None, OpenClient.filter())
    router.callback_query.register(lambda c: None, OpenCar.filter())
    index_presses(router)
    prefixes = _prefixes(router)
    assert prefixes is not None
    assert await prefixes(_press(OpenClient(client_id=5).pack()))
    assert await prefixes(_press(OpenCar(car_id=5).pack()))
    assert not await prefixes(_press("zz:1"))
    assert not await prefixes(_press(""))


def test_a_router_with_a_handler_for_any_press_is_left_alone():
    router = Router()
    router.callback_query.register(lambda c: None, OpenClient.filter())
    router.callback_query.register(lambda c: None)  # stale and forged presses: any data
    index_presses(router)
    assert _prefixes(router) is None


def test_every_feature_router_of_typed_presses_is_indexed():
    indexed = {
        router.name
        for make in ROUTERS
        for router in [index_presses(make())]
        if _prefixes(router) is not None
    }
    assert {"navigation", "contact", "payments", "booking", "cart"} <= indexed
    assert "stale-buttons" not in indexed  # the last router takes every press left
