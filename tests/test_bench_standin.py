"""The benchmark's Bot API stand-in answers as Telegram does (bench/dispatch_bench.py):
its figures count parsing what Telegram really sends back, so it must send that."""

from __future__ import annotations

import functools
import importlib.util
import json
import sys
from pathlib import Path
from typing import Any

from aiogram.types import Message

BENCH = Path(__file__).resolve().parent.parent / "bench" / "dispatch_bench.py"


@functools.cache
def _bench() -> Any:
    spec = importlib.util.spec_from_file_location("dispatch_bench", BENCH)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # its dataclasses look their module up
    spec.loader.exec_module(module)
    return module


def test_a_sent_screen_comes_back_as_plain_text_entities_and_its_keyboard():
    bench = _bench()
    keyboard = {"inline_keyboard": [[{"text": "👤 Иванов", "callback_data": "cl:5:i:0"}]]}
    sent = bench._message(
        7,
        3,
        {
            "text": '<b>Иванов</b> &amp; 😀 <a href="https://e.x/?a=1&amp;b=2">сайт</a>',
            "parse_mode": "HTML",
            "reply_markup": json.dumps(keyboard),  # as a form-encoded request carries it
        },
    )
    assert sent["text"] == "Иванов & 😀 сайт"
    assert sent["entities"] == [
        {"type": "bold", "offset": 0, "length": 6},
        # offsets count UTF-16 units: the emoji is two
        {"type": "text_link", "offset": 12, "length": 4, "url": "https://e.x/?a=1&b=2"},
    ]
    assert sent["reply_markup"] == keyboard
    message = Message.model_validate(sent)  # aiogram reads it as it reads Telegram's
    assert message.reply_markup is not None
    assert message.reply_markup.inline_keyboard[0][0].callback_data == "cl:5:i:0"


def test_a_press_carries_the_screen_it_came_from():
    bench = _bench()
    screen = bench._message(7, 3, {"text": "Карточка", "reply_markup": {"inline_keyboard": []}})
    update = json.loads(bench.press_update(11, "cl:5:i:0", screen))
    assert update["callback_query"]["message"] == screen
    assert update["callback_query"]["data"] == "cl:5:i:0"
