"""Every kind of button's data (handlers.callbacks): ``Packed.pack`` gives what aiogram's
``CallbackData.pack`` gives, and refuses what it refuses."""

from __future__ import annotations

import enum
import importlib
import pkgutil
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from aiogram.filters.callback_data import CallbackData
from hypothesis import given
from hypothesis import strategies as st

import handlers
from handlers.callbacks import OpenClient, Packed


def _subclasses(cls: type) -> Iterator[type]:
    for sub in cls.__subclasses__():
        yield sub
        yield from _subclasses(sub)


def _buttons() -> list[type[CallbackData]]:
    for info in pkgutil.iter_modules(handlers.__path__):
        importlib.import_module(f"handlers.{info.name}")
    return sorted(
        (c for c in _subclasses(CallbackData) if c.__module__.startswith("handlers.")),
        key=lambda c: c.__name__,
    )


BUTTONS = _buttons()


def _values(annotation: Any) -> st.SearchStrategy[Any]:
    if isinstance(annotation, type) and issubclass(annotation, enum.Enum):
        return st.sampled_from(list(annotation))
    if annotation is bool:
        return st.booleans()
    if annotation is int:
        return st.integers(min_value=-(2**63), max_value=2**63)
    if annotation is str:  # the separator and long texts included: both must refuse them
        return st.text(alphabet=st.sampled_from("ab:ё9 -_"), max_size=70)
    raise AssertionError(f"no strategy for a field of type {annotation!r}")


def _instances(cls: type[CallbackData]) -> st.SearchStrategy[CallbackData]:
    fields = {name: _values(field.annotation) for name, field in cls.model_fields.items()}
    return st.builds(cls, **fields)


def _packed(pack: Callable[[], str]) -> str | type[Exception]:
    try:
        return pack()
    except ValueError:
        return ValueError


def test_every_button_prefix_is_unique():
    """Two kinds of button with one prefix would be read as each other."""
    prefixes = [c.__prefix__ for c in BUTTONS]
    assert len(BUTTONS) > 10
    assert len(prefixes) == len(set(prefixes)), sorted(prefixes)


def test_every_kind_of_button_packs_through_packed():
    assert len(BUTTONS) > 40
    for cls in BUTTONS:
        assert issubclass(cls, Packed), f"{cls.__name__} does not pack through Packed"
        assert cls.pack is Packed.pack, cls.__name__


@pytest.mark.parametrize("cls", BUTTONS, ids=lambda cls: cls.__name__)
@given(data=st.data())
def test_packs_as_aiogram_packs(cls: type[CallbackData], data: st.DataObject):
    button = data.draw(_instances(cls))
    packed = _packed(button.pack)
    assert packed == _packed(lambda: CallbackData.pack(button))
    if isinstance(packed, str):
        assert cls.unpack(packed) == button


def test_refusals_say_why():
    with pytest.raises(ValueError, match="too long"):
        OpenClient(client_id=10**70).pack()
