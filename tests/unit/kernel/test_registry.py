"""The ``@event`` registry: what a declaration records, and the mistakes it refuses."""

from __future__ import annotations

import pytest
from pydantic import BaseModel

from dihya_realtime.kernel.registry import Registry
from dihya_realtime.kernel.settings import RateLimit


class Payload(BaseModel):
    room_id: str


class Reply(BaseModel):
    id: str


def test_a_declaration_records_its_policy_beside_the_handler():
    reg = Registry()

    @reg.event("chat:send", payload=Payload, reply=Reply, permission="chat:write",
               rate=RateLimit(rate=5, burst=10), emits=("chat:message",))
    def send(ctx, payload):
        """Send a message.

        Payload example: ``{"room_id": "r1"}``.
        """

    spec = reg.events["chat:send"]
    assert spec.handler is send
    assert (spec.payload, spec.reply, spec.permission) == (Payload, Reply, "chat:write")
    assert (spec.rate.rate, spec.rate.burst) == (5, 10)
    assert spec.emits == ("chat:message",)
    assert spec.summary == "Send a message."
    assert spec.description == 'Payload example: ``{"room_id": "r1"}``.'


def test_the_feature_is_the_name_before_the_colon_or_core():
    reg = Registry()

    @reg.event("doc:join")
    def join(ctx, payload):
        """Join."""

    @reg.event("whoami")
    def whoami(ctx, payload):
        """Who am I."""

    @reg.event("ping", feature="health")
    def ping(ctx, payload):
        """Ping."""

    assert [s.feature for s in reg.events.values()] == ["doc", "core", "health"]


def test_declarations_keep_their_order():
    reg = Registry()
    for name in ("b", "a", "c"):
        def handler(ctx, payload):
            """An event."""

        reg.event(name)(handler)
    assert list(reg.events) == ["b", "a", "c"]


def test_a_handler_without_a_docstring_is_refused():
    reg = Registry()
    with pytest.raises(ValueError, match="needs a docstring"):
        reg.event("chat:send")(lambda ctx, payload: None)
    assert "chat:send" not in reg.events


def test_an_event_declared_twice_with_another_handler_is_refused():
    reg = Registry()

    def first(ctx, payload):
        """First."""

    def second(ctx, payload):
        """Second."""

    reg.event("chat:send")(first)
    reg.event("chat:send")(first)  # the same handler again (a module reloaded): harmless
    with pytest.raises(ValueError, match="declared twice"):
        reg.event("chat:send")(second)
    assert reg.events["chat:send"].handler is first


def test_a_server_event_records_its_schema_and_doc():
    reg = Registry()
    reg.server_event("chat:message", Reply, """
        A new message.

        Sent to members only.
    """)
    spec = reg.server_events["chat:message"]
    assert (spec.schema, spec.feature) == (Reply, "chat")
    assert (spec.summary, spec.description) == ("A new message.", "Sent to members only.")
