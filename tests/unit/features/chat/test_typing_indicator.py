"""The typing indicator's sweeper (the kernel's ``Sweeper``): a task only while someone types."""

from __future__ import annotations

import time

from dihya_realtime.features.chat.service import Actor


def wait_for(predicate, timeout: float = 3.0) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(0.02)
    return bool(predicate())


def test_the_typing_sweeper_runs_while_someone_types_and_ends_when_it_lapses(make_rt):
    chat = make_rt(chat_typing_ttl=0.2, chat_typing_throttle=0).chat
    alice = Actor("alice", "Alice")
    room = chat.create_room(alice, "general", None, "public")["id"]
    sweeper = chat.typing_indicator.sweeper
    assert not sweeper.running
    assert chat.typing(alice, "sid-1", room, True)["sent"]
    assert sweeper.running and sweeper.interval == 0.05  # a quarter of the ttl
    assert wait_for(lambda: not sweeper.running)
    assert len(chat.typing_state) == 0 and sweeper.passes >= 1
