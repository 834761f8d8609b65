"""Rooms relayed by interest: a document's updates reach its participants on every process,
and only the processes with a participant."""

from __future__ import annotations

import time

from pycrdt import Doc, Text

from dihya_realtime.kernel.relay import _from_json, _to_json
from tests.unit.conftest import Inbox


def test_bytes_cross_as_text_and_come_back_as_bytes_only_where_they_were():
    value = {"doc_id": "d", "update": b"\x00\x01\xff", "nested": [b"ab", {"k": b""}],
             "text": "AAE=", "fake": {"__b64__": "AAE="}}
    wire, paths = _to_json(value)
    assert sorted(map(str, paths)) == sorted(map(str, [["update"], ["nested", 0],
                                                        ["nested", 1, "k"]]))
    assert all(not isinstance(v, bytes) for v in (wire["update"], wire["nested"][0]))
    back = _from_json(wire, paths)
    assert back == value  # the client's own text that looks like base64 stays text


def update_of(chunk: str) -> bytes:
    doc = Doc()
    doc.get("text", type=Text).insert(0, chunk)
    return doc.get_update()


def test_a_documents_update_reaches_participants_elsewhere_and_no_other_process(
        process, connect) -> None:
    a, b, c = process("a"), process("b"), process("c")
    bob = connect(a, "bob")
    alice = Inbox(connect(b, "bob"))  # bob's other tab (the owner's: no grant needed)
    connect(c, "carol")  # c has a connection, no participant of the doc
    assert bob.call("doc:join", {"doc_id": "spec-1"})["ok"]
    assert alice.client.call("doc:join", {"doc_id": "spec-1"})["ok"]
    time.sleep(0.3)  # the joins' own messages (collab asks peers for awareness) have landed
    received_c = c.broker.fanout_received

    update = update_of("hello")
    reply = bob.call("doc:update", {"doc_id": "spec-1", "update": update})
    assert reply["ok"], reply

    [relayed] = alice.wait_for("doc:update")
    assert relayed["update"] == update and relayed["doc_id"] == "spec-1"
    time.sleep(0.2)
    assert c.broker.fanout_received == received_c
    assert not [m for m in bob.get_received() if m["name"] == "doc:update"]  # skip_sid


def test_a_process_stops_receiving_a_document_a_linger_after_its_last_participant_left(
        process, connect) -> None:
    a, b = process("a"), process("b", interest_linger=0)
    bob = connect(a, "bob")
    alice = connect(b, "bob")  # bob's other tab
    assert bob.call("doc:join", {"doc_id": "spec-2"})["ok"]
    assert alice.call("doc:join", {"doc_id": "spec-2"})["ok"]
    assert alice.call("doc:leave", {"doc_id": "spec-2"})["ok"]
    time.sleep(0.3)
    received_b = b.broker.fanout_received

    assert bob.call("doc:update", {"doc_id": "spec-2", "update": update_of("x")})["ok"]
    time.sleep(0.3)
    assert b.broker.fanout_received == received_b
