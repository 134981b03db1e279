"""Shared fakes for the unit tests: a settable clock and an IncomingMessage factory."""
from __future__ import annotations

import itertools

import pytest

from messages.telegram import IncomingMessage


class FakeClock:
    """A clock the test moves by hand; callable like time.monotonic."""

    def __init__(self, start: float = 1000.0) -> None:
        self.t = start

    def __call__(self) -> float:
        return self.t

    def advance(self, dt: float) -> float:
        self.t += dt
        return self.t


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
def make_msg():
    counter = itertools.count(1)

    def make(chat_id: int = 100, text: str = "hello", chat_kind: str = "private",
             sender_id: int | None = None, message_id: int | None = None, **kw) -> IncomingMessage:
        mid = message_id if message_id is not None else next(counter)
        return IncomingMessage(
            bot=kw.pop("bot", "b1"),
            update_id=kw.pop("update_id", f"{chat_id}:{mid}"),
            chat_id=chat_id, chat_kind=chat_kind, message_id=mid,
            sender_id=sender_id if sender_id is not None else chat_id,
            text=text, received_at=kw.pop("received_at", 1234.5), **kw)

    return make
