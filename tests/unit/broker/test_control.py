"""The control bus: one handler per action, every process asked over the broker, and a bad
message or a failing handler never stops the ones after it."""

from __future__ import annotations

import logging
from typing import Any

import pytest

from dihya_realtime.broker import (
    BrokerUnavailable,
    MemoryBroker,
    Message,
    PresenceEvent,
    Publication,
)
from dihya_realtime.broker.control import CONTROL_HISTORY, CONTROL_PREFIX, ControlBus
from dihya_realtime.kernel.errors import ErrorCode, RealtimeError


@pytest.fixture
def broker():
    broker = MemoryBroker()
    yield broker
    broker.close()


@pytest.fixture
def delivered() -> list[Any]:
    """What the broker fanned out, in order."""
    return []


@pytest.fixture
def bus(broker: MemoryBroker, delivered: list[Any]) -> ControlBus:
    """A bus whose broker delivers back to it (the memory broker fans out in ``publish``)."""
    bus = ControlBus(broker)

    def deliver(message: Any) -> None:
        delivered.append(message)
        bus.dispatch(message)

    broker.set_handler(deliver)
    return bus


def control_message(data: Any, channel: str = CONTROL_PREFIX + "x") -> Publication:
    return Publication(channel=channel, offset=1, epoch="e", id="i", ts=0.0, data=data)


def test_a_second_handler_for_one_action_is_refused(bus: ControlBus) -> None:
    bus.register("disconnect_user", lambda data: None)
    with pytest.raises(ValueError, match="disconnect_user"):
        bus.register("disconnect_user", lambda data: None)


def test_send_reaches_the_handler_of_its_action_with_its_arguments(bus: ControlBus) -> None:
    seen: list[tuple[str, dict]] = []
    bus.register("unsubscribe", lambda data: seen.append(("unsubscribe", data)))
    bus.register("disconnect_user", lambda data: seen.append(("disconnect_user", data)))
    bus.send("unsubscribe", user_id="17", channel="chat:a", reason="server")
    assert seen == [("unsubscribe", {"action": "unsubscribe", "user_id": "17",
                                     "channel": "chat:a", "reason": "server"})]


def test_send_publishes_on_the_actions_control_channel_with_no_history(
        bus: ControlBus, delivered: list[Any]) -> None:
    """The broker format processes of one version rely on: ``__control:<action>`` carrying
    ``{"action": action, **args}``."""
    bus.send("disconnect_user", user_id="17", reason="bye")
    (pub,) = delivered
    assert pub.channel == "__control:disconnect_user"
    assert pub.data == {"action": "disconnect_user", "user_id": "17", "reason": "bye"}
    assert bus.broker.history(pub.channel, history=CONTROL_HISTORY).publications == []


def test_dispatch_goes_by_the_action_named_in_the_message(bus: ControlBus) -> None:
    """A message sent by an older process on another control channel still finds its
    handler: the action in the data decides, not the channel name."""
    seen: list[dict] = []
    bus.register("doc_access", seen.append)
    data = {"action": "doc_access", "doc_id": "d", "node": "n"}
    assert bus.dispatch(control_message(data, CONTROL_PREFIX + "doc_awareness")) is True
    assert seen == [data]


def test_an_unknown_action_is_logged_and_ignored(bus: ControlBus, caplog) -> None:
    caplog.set_level(logging.DEBUG, logger="dihya_realtime.control")
    assert bus.dispatch(control_message({"action": "from_a_newer_version"})) is True
    assert bus.dispatch(control_message({"no": "action"})) is True
    assert bus.dispatch(control_message("not even a dict")) is True
    assert "from_a_newer_version" in caplog.text


def test_what_is_not_a_control_message_is_left_to_the_features(bus: ControlBus) -> None:
    bus.register("x", lambda data: pytest.fail("not a control message"))
    assert bus.dispatch(control_message({"action": "x"}, "chat:x")) is False
    assert bus.dispatch(PresenceEvent(CONTROL_PREFIX + "x", "join", {"user_id": "1"})) is False


def test_a_failing_handler_does_not_stop_the_next_message(bus: ControlBus, caplog) -> None:
    done: list[dict] = []

    def boom(data: dict) -> None:
        raise RuntimeError("handler bug")

    bus.register("boom", boom)
    bus.register("fine", done.append)
    with caplog.at_level(logging.ERROR, logger="dihya_realtime.control"):
        # straight from the broker's reader: nothing may raise into it
        assert bus.dispatch(control_message({"action": "boom"})) is True
        assert bus.dispatch(control_message({"action": "fine", "n": 1})) is True
    assert done == [{"action": "fine", "n": 1}]
    (record,) = [r for r in caplog.records if r.name == "dihya_realtime.control"]
    assert "boom" in record.getMessage() and "handler bug" in caplog.text


def test_send_with_the_broker_down_raises_unavailable() -> None:
    class DownBroker(MemoryBroker):
        def publish(self, *args: Any, **kwargs: Any) -> Any:
            raise BrokerUnavailable("redis is down")

    bus = ControlBus(DownBroker())
    with pytest.raises(RealtimeError) as caught:
        bus.send("disconnect_user", user_id="17")
    assert caught.value.code is ErrorCode.UNAVAILABLE


def test_an_action_to_users_travels_on_each_users_topic(bus: ControlBus,
                                                        delivered: list[Any]) -> None:
    seen: list[dict] = []
    bus.register("disconnect_user", seen.append, to_users=True)

    bus.send_to_users(["17", "18", "17"], "disconnect_user", reason="bye")

    assert [(m.topic, m.data) for m in delivered] == [
        ("__user:17", {"action": "disconnect_user", "reason": "bye"}),
        ("__user:18", {"action": "disconnect_user", "reason": "bye"})]
    assert seen == [{"action": "disconnect_user", "reason": "bye", "user_id": "17"},
                    {"action": "disconnect_user", "reason": "bye", "user_id": "18"}]


def test_an_action_to_users_watches_no_broadcast_channel(broker: MemoryBroker) -> None:
    watched: list[str] = []
    broker.watch = watched.append  # type: ignore[method-assign]
    bus = ControlBus(broker)
    bus.register("to_users", lambda data: None, to_users=True)
    bus.register("broadcast", lambda data: None)

    assert watched == [CONTROL_PREFIX + "broadcast"]


def test_a_message_on_another_topic_is_not_a_control_message(bus: ControlBus) -> None:
    assert bus.dispatch(Message("__other:1", {"action": "x"})) is False


def test_send_to_users_with_the_broker_down_raises_unavailable() -> None:
    class DownBroker(MemoryBroker):
        def send(self, *args: Any, **kwargs: Any) -> Any:
            raise BrokerUnavailable("redis is down")

    bus = ControlBus(DownBroker())
    with pytest.raises(RealtimeError) as caught:
        bus.send_to_users(["17"], "disconnect_user")
    assert caught.value.code is ErrorCode.UNAVAILABLE
