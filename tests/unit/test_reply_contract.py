"""Every declared reply model matches what its handler really sends.

The reply models are the documentation (events reference, AsyncAPI) and handlers build their
replies by hand, so this test walks the whole registry: for each client event with a ``reply``
model it makes a successful call in a unit-test world and checks ``data`` against the model,
key for key (a missing, extra or misnamed field fails, at any depth). An event with a reply
model and no entry in :data:`EXAMPLES` fails too, so a new event cannot skip the check.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import pytest
from pycrdt import Doc, Text, create_sync_message

from tests.unit.conftest import Client, fresh_registry


@dataclass
class World:
    """alice (who creates rooms, documents and gets notifications) and bob, both ``user``."""

    rt: Any
    alice: Client
    bob: Client
    make_token: Callable[..., str]

    def room(self) -> str:
        """A public room alice owns and bob has joined."""
        reply = self.alice.call("chat:create_room", {"name": "general", "visibility": "public"})
        room_id = reply["data"]["id"]
        assert self.bob.call("chat:join", {"room_id": room_id})["ok"]
        return room_id

    def message(self, room_id: str | None = None) -> str:
        """A message alice sent in ``room_id`` (default: a new :meth:`room`); returns its id."""
        reply = self.alice.call("chat:send", {"room_id": room_id or self.room(),
                                              "text": "hello @bob",
                                              "client_msg_id": str(uuid.uuid4())})
        return reply["data"]["id"]

    def document(self, doc_id: str = "spec-42", join: bool = True) -> str:
        """A document alice created, every ``user`` may edit; alice has it open."""
        self.rt.docs.create(doc_id, "hi", created_by="alice")
        self.rt.docs.set_grants(doc_id, [("role", "user", "edit")], by=None)
        if join:
            assert self.alice.call("doc:join", {"doc_id": doc_id})["ok"]
        return doc_id

    def notification(self) -> str:
        return self.rt.notify(user_id="alice", category="builds", title="Build 42")[0]["id"]


def _update() -> bytes:
    doc = Doc()
    doc.get("text", type=Text).insert(0, "typed")
    return doc.get_update()


def _sync_step1() -> bytes:
    return create_sync_message(Doc())


Example = Callable[[World], tuple[Client, dict[str, Any] | None]]


def _alice(payload: Callable[[World], dict[str, Any] | None]) -> Example:
    return lambda w: (w.alice, payload(w))


def _after(setup: Callable[[World], object], payload: dict[str, Any] | None) -> Example:
    """alice sends ``payload`` once ``setup`` has built what the reply should show."""

    def example(w: World) -> tuple[Client, dict[str, Any] | None]:
        setup(w)
        return w.alice, payload

    return example


def _unreact(w: World) -> tuple[Client, dict[str, Any]]:
    ref = {"message_id": w.message(), "emoji": "👍"}
    assert w.alice.call("chat:react", ref)["ok"]
    return w.alice, ref


def _history(w: World) -> tuple[Client, dict[str, Any]]:
    room_id = w.room()
    w.message(room_id)
    return w.alice, {"room_id": room_id}


def _unban(w: World) -> tuple[Client, dict[str, Any]]:
    ref = {"room_id": w.room(), "user_id": "bob"}
    assert w.alice.call("chat:ban", ref)["ok"]
    return w.alice, ref


def _with_web_push(payload: Callable[[World], dict[str, Any]]) -> Example:
    """alice sends ``payload`` to a server with Web Push on (a VAPID key made here)."""

    def example(w: World) -> tuple[Client, dict[str, Any]]:
        import tempfile
        from pathlib import Path

        from dihya_realtime.features.notifications.push_service import WebPush
        from dihya_realtime.features.notifications.push_vapid import (
            VapidKeys,
            generate_key_pair,
        )

        path = Path(tempfile.mkdtemp()) / "vapid.pem"
        generate_key_pair(path)
        service = w.rt.notifications
        service.web_push = WebPush(w.rt, VapidKeys.from_file(path, "mailto:ops@example.com"),
                                   service.critical)
        return w.alice, payload(w)

    return example


def _push_subscription(w: World) -> dict[str, Any]:
    import base64
    import os

    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import ec

    point = ec.generate_private_key(ec.SECP256R1()).public_key().public_bytes(
        serialization.Encoding.X962, serialization.PublicFormat.UncompressedPoint)
    b64 = lambda raw: base64.urlsafe_b64encode(raw).decode().rstrip("=")  # noqa: E731
    return {"subscription": {"endpoint": "https://fcm.googleapis.com/fcm/send/contract",
                             "keys": {"p256dh": b64(point), "auth": b64(os.urandom(16))}}}


def _admin(payload: dict[str, Any] | None) -> Example:
    """An ``admin`` (a new connection: alice and bob are plain users) sends ``payload``."""

    def example(w: World) -> tuple[Client, dict[str, Any] | None]:
        token = w.make_token("root", ("admin",))
        return Client(w.rt.app, w.rt.socketio, auth={"token": token}), payload

    return example


EXAMPLES: dict[str, Example] = {
    "admin:connections": _admin({}),
    "admin:channels": _admin({}),
    "admin:audit": _admin({}),
    "admin:audit_verify": _admin(None),
    "admin:disconnect_user": _admin({"user_id": "bob"}),
    "admin:metrics": _admin(None),
    # core
    "whoami": _alice(lambda w: None),
    "auth:refresh": _alice(lambda w: {"token": w.make_token("alice", ttl=600)}),
    # channels
    "subscribe": _alice(lambda w: {"channel": "chat:general", "presence": True}),
    "unsubscribe": _alice(lambda w: {"channel": "chat:general"}),
    "publish": _alice(lambda w: {"channel": "chat:general", "data": {"n": 1}}),
    "presence": _alice(lambda w: {"channel": "chat:general"}),
    "history": _alice(lambda w: {"channel": "chat:general"}),
    # chat
    "chat:create_room": _alice(lambda w: {"name": "general", "visibility": "public"}),
    "chat:rooms": _after(World.room, {}),
    "chat:room": _alice(lambda w: {"room_id": w.room()}),
    "chat:join": lambda w: (w.bob, {"room_id": w.alice.call(
        "chat:create_room", {"name": "g", "visibility": "public"})["data"]["id"]}),
    "chat:leave": lambda w: (w.bob, {"room_id": w.room()}),
    "chat:invite": _alice(lambda w: {"room_id": w.room(), "user_id": "carol"}),
    "chat:remove_member": _alice(lambda w: {"room_id": w.room(), "user_id": "bob"}),
    "chat:set_role": _alice(lambda w: {"room_id": w.room(), "user_id": "bob",
                                       "role": "moderator"}),
    "chat:dm": _alice(lambda w: {"user_id": "bob"}),
    "chat:send": _alice(lambda w: {"room_id": w.room(), "text": "hi @bob",
                                   "client_msg_id": str(uuid.uuid4())}),
    "chat:history": _history,
    "chat:edit": _alice(lambda w: {"message_id": w.message(), "text": "edited"}),
    "chat:delete": _alice(lambda w: {"message_id": w.message()}),
    "chat:react": _alice(lambda w: {"message_id": w.message(), "emoji": "👍"}),
    "chat:unreact": _unreact,
    "chat:reactors": _unreact,  # alice's 👍 is there: the page lists her
    "chat:typing": _alice(lambda w: {"room_id": w.room(), "typing": True}),
    "chat:read": _alice(lambda w: {"room_id": w.room(), "seq": 0}),
    "chat:mute": _alice(lambda w: {"room_id": w.room(), "user_id": "bob",
                                   "until": "2099-01-01T00:00:00Z"}),
    "chat:set_notifications": _alice(lambda w: {"room_id": w.room(), "muted": True}),
    "chat:kick": _alice(lambda w: {"room_id": w.room(), "user_id": "bob"}),
    "chat:ban": _alice(lambda w: {"room_id": w.room(), "user_id": "bob"}),
    "chat:unban": _unban,
    # collab
    "doc:join": _alice(lambda w: {"doc_id": w.document(join=False)}),
    "doc:update": _alice(lambda w: {"doc_id": w.document(), "update": _update()}),
    "doc:sync": _alice(lambda w: {"doc_id": w.document(), "message": _sync_step1()}),
    "doc:awareness": _alice(lambda w: {"doc_id": w.document(), "state": {"cursor": 1}}),
    "doc:leave": _alice(lambda w: {"doc_id": w.document()}),
    "doc:grant": _alice(lambda w: {"doc_id": w.document(), "user_id": "bob", "mode": "read"}),
    "doc:revoke": _alice(lambda w: {"doc_id": w.document(), "role": "user"}),
    "doc:access": _alice(lambda w: {"doc_id": w.document()}),
    # notifications
    "notifications:list": _after(World.notification, {}),
    "notifications:counts": _after(World.notification, None),
    "notifications:mark_read": _alice(lambda w: {"ids": [w.notification()]}),
    "notifications:mark_unread": _alice(lambda w: {"ids": [w.notification()]}),
    "notifications:mark_all_read": _after(World.notification, {}),
    "notifications:mark_seen": _alice(lambda w: {"ids": [w.notification()]}),
    "notifications:mark_all_seen": _after(World.notification, None),
    "notifications:archive": _alice(lambda w: {"ids": [w.notification()]}),
    "notifications:unarchive": _alice(lambda w: {"ids": [w.notification()]}),
    "notifications:preferences": _alice(lambda w: None),
    "notifications:set_preferences": _alice(
        lambda w: {"preferences": {"builds": {"push": False}}}),
    "notifications:set_digest": _alice(lambda w: {"digest": "daily"}),
    # Web Push
    "push:subscribe": _with_web_push(_push_subscription),
    "push:unsubscribe": _with_web_push(lambda w: {"endpoint": "https://fcm.googleapis.com/x"}),
    "push:quiet_hours": _with_web_push(lambda w: {"quiet_hours": {
        "start": "22:00", "end": "07:00", "timezone": "Europe/Paris"}}),
}

REGISTRY = fresh_registry()
WITH_REPLY = sorted(name for name, spec in REGISTRY.events.items() if spec.reply is not None)


def key_drift(sent: Any, declared: Any, path: str = "data") -> list[str]:
    """Where the keys of ``sent`` differ from the model's dump ``declared``, at any depth."""
    if isinstance(sent, dict) and isinstance(declared, dict):
        problems = [f"{path}.{k}: sent but not in the model" for k in sent.keys() - declared]
        problems += [f"{path}.{k}: in the model but not sent" for k in declared.keys() - sent]
        for k in sent.keys() & declared.keys():
            problems += key_drift(sent[k], declared[k], f"{path}.{k}")
        return problems
    if isinstance(sent, list) and isinstance(declared, list) and len(sent) == len(declared):
        return [p for i, (s, d) in enumerate(zip(sent, declared, strict=True))
                for p in key_drift(s, d, f"{path}[{i}]")]
    return []


def test_every_event_with_a_reply_model_has_an_example():
    assert set(WITH_REPLY) - EXAMPLES.keys() == set(), "add an entry to EXAMPLES"
    assert EXAMPLES.keys() - set(WITH_REPLY) == set(), "EXAMPLES names an unknown event"


@pytest.mark.parametrize("name", WITH_REPLY)
def test_real_reply_matches_the_declared_reply_model(name, make_rt, connect, make_token):
    if name not in EXAMPLES:
        pytest.fail(f"{name} declares a reply model but has no entry in EXAMPLES")
    rt = make_rt(registry_=REGISTRY, docs_compact_idle=0)
    world = World(rt, connect(rt, user="alice", name="Alice"),
                  connect(rt, user="bob", name="Bob"), make_token)
    client, payload = EXAMPLES[name](world)
    reply = client.call(name) if payload is None else client.call(name, payload)
    assert reply["ok"], reply

    model = REGISTRY.events[name].reply
    assert model is not None
    declared = model.model_validate(reply["data"]).model_dump(by_alias=True)
    assert key_drift(reply["data"], declared) == []
